"""Kubernetes API errors: from HTTP responses to the runtime's taxonomy (:mod:`runnerd.runtime.errors`)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from runnerd.runtime.errors import ApiError, api_error, from_status
from runnerd.runtime.redact import redact

__all__ = ["error_from_response"]


def error_from_response(status: int, reason: str, headers: Mapping[str, str], body: bytes) -> ApiError:
    """The error for a non-2xx response: from its ``Status`` body if it has one, else from the status line."""
    retry_after: float | None = None
    header = headers.get("Retry-After")
    if header and header.strip().isdigit():
        retry_after = float(header.strip())
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("kind") == "Status":
        error = from_status(decoded, http_status=status)
        if error.retry_after is None and retry_after is not None:
            error.retry_after = retry_after
        return error
    message = redact(body[:500].decode("utf-8", "replace").strip())
    return api_error(status, reason, message, retry_after=retry_after)
