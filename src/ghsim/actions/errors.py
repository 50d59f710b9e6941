"""The Actions service's errors: ``{"typeName": "<.NET type>, <assembly>", "message": ...}``.

Clients match on a substring of ``typeName`` (ARC: ``strings.Contains(typeName, "<ShortName>")``), so
the short names below are the contract; the namespace is the one the service uses.
"""

from __future__ import annotations

from typing import Any

NAMESPACE = "GitHub.Actions.Runtime.WebApi"

INVALID_TOKEN = "InvalidTokenException"
SESSION_CONFLICT = "RunnerScaleSetSessionConflictException"
SESSION_EXPIRED = "RunnerScaleSetSessionExpiredException"
SCALE_SET_NOT_FOUND = "RunnerScaleSetNotFoundException"
SCALE_SET_EXISTS = "RunnerScaleSetExistsException"
RUNNER_GROUP_NOT_FOUND = "RunnerGroupNotFoundException"
AGENT_EXISTS = "AgentExistsException"
AGENT_NOT_FOUND = "AgentNotFoundException"
JOB_STILL_RUNNING = "JobStillRunningException"
ARGUMENT = "ArgumentException"
TOO_MANY_REQUESTS = "TooManyRequestsException"
SERVICE_UNAVAILABLE = "ServiceUnavailableException"


def type_name(short: str) -> str:
    return f"{NAMESPACE}.{short}, {NAMESPACE}"


class ActionsError(Exception):
    """An Actions-service error answer: ``status`` with the JSON envelope of ``short``."""

    def __init__(self, status: int, short: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.short = short
        self.message = message

    def envelope(self) -> dict[str, Any]:
        return {"typeName": type_name(self.short), "message": self.message}


class QueueUnauthorized(Exception):
    """401 on a message-queue call (expired or unknown queue token); the body does not matter."""


def scale_set_not_found(scale_set_id: int) -> ActionsError:
    return ActionsError(
        404, SCALE_SET_NOT_FOUND, f"No runner scale set found with identifier {scale_set_id}."
    )


def session_expired(session_id: str) -> ActionsError:
    return ActionsError(400, SESSION_EXPIRED, f"The session identifier {session_id} is not valid.")


def invalid_token(reason: str = "The access token is expired or invalid.") -> ActionsError:
    return ActionsError(401, INVALID_TOKEN, reason)


def bad_argument(message: str) -> ActionsError:
    return ActionsError(400, ARGUMENT, message)


#: the exception a fault answers with when it names only a status
DEFAULT_FOR_STATUS = {
    400: ARGUMENT,
    401: INVALID_TOKEN,
    404: SCALE_SET_NOT_FOUND,
    409: SESSION_CONFLICT,
    429: TOO_MANY_REQUESTS,
}
