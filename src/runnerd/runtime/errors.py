"""The error taxonomy of Kubernetes API calls, as the runtime and the controllers see it.

Adapters (``runnerd.kube``) translate their client's failures into these classes, so the runtime and
the controllers can handle a conflict or a missing object without knowing the HTTP client. Messages
come from the API server's ``Status``; they never carry request headers or credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """A Kubernetes API call failed with an HTTP status (``status`` 0: no response at all)."""

    def __init__(
        self,
        status: int,
        reason: str = "",
        message: str = "",
        *,
        retry_after: float | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.details: Mapping[str, Any] = details or {}
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")


class BadRequest(ApiError):
    """400: the request was malformed."""


class Unauthorized(ApiError):
    """401: the credentials were missing, wrong or expired."""


class Forbidden(ApiError):
    """403: RBAC does not allow this call."""


class NotFound(ApiError):
    """404: the object (or its namespace, or the resource type) does not exist."""


class Conflict(ApiError):
    """409: the object changed since it was read (stale ``resourceVersion`` or failed precondition)."""


class AlreadyExists(ApiError):
    """409 with reason ``AlreadyExists``: create of an object whose name is taken."""


class ResourceExpired(ApiError):
    """410 Gone: the requested ``resourceVersion`` is too old (compacted); list again."""


class Invalid(ApiError):
    """422: the object failed validation (or a JSON patch ``test`` operation failed)."""


class TooManyRequests(ApiError):
    """429: throttled by API priority and fairness; ``retry_after`` says when to retry."""


class ServerError(ApiError):
    """5xx (or no response, status 0): worth retrying later."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: ResourceExpired,
    422: Invalid,
    429: TooManyRequests,
}


def api_error(
    status: int,
    reason: str = "",
    message: str = "",
    *,
    retry_after: float | None = None,
    details: Mapping[str, Any] | None = None,
) -> ApiError:
    """The most specific :class:`ApiError` subclass for an HTTP status and ``Status.reason``."""
    cls: type[ApiError]
    if status == 409 and reason == "AlreadyExists":
        cls = AlreadyExists
    elif status == 0 or status >= 500:
        cls = ServerError
    else:
        cls = _BY_STATUS.get(status, ApiError)
    return cls(status, reason, message, retry_after=retry_after, details=details)


def from_status(status: Mapping[str, Any], *, http_status: int = 0) -> ApiError:
    """The error for a ``meta/v1`` ``Status`` object (an error body, or an ``ERROR`` watch event)."""
    code = int(status.get("code") or http_status or 0)
    details = status.get("details") or {}
    retry = details.get("retryAfterSeconds")
    return api_error(
        code,
        str(status.get("reason") or ""),
        str(status.get("message") or ""),
        retry_after=float(retry) if retry else None,
        details=details,
    )
