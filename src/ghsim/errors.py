"""Errors raised by the pure model; the HTTP layer turns them into GitHub's error shapes."""

from __future__ import annotations


class SimError(Exception):
    """An error that GitHub would answer with ``status`` and ``message``."""

    status = 400

    def __init__(self, message: str, *, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


class BadRequest(SimError):
    status = 400


class Unauthorized(SimError):
    status = 401


class Forbidden(SimError):
    status = 403

    def __init__(
        self, message: str, *, accepted_scopes: str | None = None, errors: list[str] | None = None
    ) -> None:
        super().__init__(message, errors=errors)
        self.accepted_scopes = accepted_scopes


class NotFound(SimError):
    status = 404

    def __init__(self, message: str = "Not Found") -> None:
        super().__init__(message)


class Conflict(SimError):
    status = 409


class ValidationFailed(SimError):
    status = 422


class RegistrationError(Exception):
    """A virtual runner could not register (bad, expired or reused token or JIT config)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
