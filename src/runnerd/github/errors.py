"""Errors of the GitHub adapter.

Every error carries a ``reason``: a short CamelCase word the controller can use as-is for a Kubernetes
Event reason or a condition reason. Messages never include credentials: GitHub's own error messages
are quoted, request headers never are.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar


class GitHubError(Exception):
    """Base class of every error raised by :mod:`runnerd.github`."""

    reason: ClassVar[str] = "GitHubAPIError"


class GitHubConfigError(GitHubError, ValueError):
    """A GitHub URL or scope that cannot be used (bad scheme, malformed ``owner/repo``, ...)."""

    reason = "InvalidGitHubConfig"


# -- credentials -----------------------------------------------------------------------------------


class CredentialsError(GitHubError):
    """The credentials Secret cannot be used."""

    reason = "InvalidGitHubCredentials"


class MissingCredentialsError(CredentialsError):
    """Neither a token nor a complete set of GitHub App fields is present."""

    reason = "MissingGitHubCredentials"

    def __init__(self, message: str, *, missing: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.missing = missing


class InvalidCredentialsError(CredentialsError):
    """A credential field is present but malformed (e.g. a private key that is not an RSA PEM)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


# -- transport -------------------------------------------------------------------------------------


class GitHubConnectionError(GitHubError):
    """GitHub could not be reached (connection refused/reset, DNS, TLS, timeout), after any retries."""

    reason = "GitHubUnreachable"


class UnexpectedResponseError(GitHubError):
    """GitHub answered with a body we cannot interpret (not JSON, missing fields, foreign next link)."""

    reason = "UnexpectedGitHubResponse"


class RateLimitedError(GitHubError):
    """GitHub's rate limit is in force until ``resume_at`` (seconds since the epoch).

    Raised by the call that hit the limit (``status`` is GitHub's 403/429) and, afterwards, by calls
    that would have had to wait longer than the client's maximum wait (:class:`RateLimitWaitExceeded`,
    ``status`` ``None``: nothing was sent). ``resource`` is the bucket (``core``,
    ``actions_runner_registration``, ...) or ``"*"`` for a secondary limit that applies to every call.
    """

    reason = "GitHubRateLimited"

    def __init__(self, message: str, *, resume_at: float, resource: str, status: int | None = None) -> None:
        super().__init__(message)
        self.resume_at = resume_at
        self.resource = resource
        self.status = status

    def retry_after(self, now: float) -> float:
        """Seconds from ``now`` until calls may resume (never negative)."""
        return max(self.resume_at - now, 0.0)

    @property
    def resume_at_datetime(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.resume_at, dt.UTC)


class RateLimitWaitExceeded(RateLimitedError):
    """A call did not wait for a rate limit to lift because that would exceed the configured max wait."""


# -- HTTP errors -----------------------------------------------------------------------------------


class GitHubHTTPError(GitHubError):
    """GitHub answered a call with an error status.

    ``endpoint`` is the call's template (``DELETE /orgs/{org}/actions/runners/{runner_id}``),
    ``message`` GitHub's explanation, ``request_id`` its ``x-github-request-id`` (for support tickets).
    """

    def __init__(
        self, *, status: int, endpoint: str, message: str | None, request_id: str | None = None
    ) -> None:
        text = f"{endpoint}: HTTP {status}"
        if message:
            text += f": {message}"
        super().__init__(text)
        self.status = status
        self.endpoint = endpoint
        self.message = message
        self.request_id = request_id


class BadCredentialsError(GitHubHTTPError):
    """401: GitHub rejected the token, App JWT or installation token."""

    reason = "GitHubBadCredentials"


class PermissionDeniedError(GitHubHTTPError):
    """403 (not a rate limit): the credentials lack a permission or scope for this call."""

    reason = "GitHubPermissionDenied"


class NotFoundError(GitHubHTTPError):
    """404: the scope or object does not exist, or the credentials may not see it (GitHub hides which)."""

    reason = "GitHubNotFound"


class ConflictError(GitHubHTTPError):
    """409: e.g. a JIT runner with this name already exists."""

    reason = "GitHubConflict"


class ValidationFailedError(GitHubHTTPError):
    """422: GitHub rejected the request's content."""

    reason = "GitHubValidationFailed"


class RunnerBusyError(GitHubHTTPError):
    """422 on ``DELETE .../actions/runners/{id}``: the runner is running a job and cannot be removed."""

    reason = "RunnerBusy"

    def __init__(
        self,
        *,
        status: int,
        endpoint: str,
        message: str | None,
        request_id: str | None = None,
        runner_id: int,
    ) -> None:
        super().__init__(status=status, endpoint=endpoint, message=message, request_id=request_id)
        self.runner_id = runner_id


class RunnerGroupNotFoundError(GitHubError):
    """No runner group of that name is visible in the scope."""

    reason = "RunnerGroupNotFound"

    def __init__(self, message: str, *, group: str) -> None:
        super().__init__(message)
        self.group = group


class GitHubServerError(GitHubHTTPError):
    """5xx from GitHub, after any retries."""

    reason = "GitHubServerError"


def http_error_class(status: int) -> type[GitHubHTTPError]:
    """The error class for a non-rate-limit error status."""
    if status == 401:
        return BadCredentialsError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 409:
        return ConflictError
    if status == 422:
        return ValidationFailedError
    if status >= 500:
        return GitHubServerError
    return GitHubHTTPError
