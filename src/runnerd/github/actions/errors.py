"""Errors of the Actions service, by the exception name in its error envelope (``typeName``)."""

from __future__ import annotations


class ActionsServiceError(Exception):
    """A non-success answer: ``status`` (0: transport failure), the exception's short name, the message."""

    def __init__(self, status: int, exception: str = "", message: str = "") -> None:
        super().__init__(f"{status} {exception}: {message}" if exception else f"{status}: {message}")
        self.status = status
        self.exception = exception
        self.message = message


class ScaleSetNotFound(ActionsServiceError):
    """``RunnerScaleSetNotFoundException``: the scale set is gone (GitHub deletes long-offline ones)."""


class RunnerExists(ActionsServiceError):
    """``AgentExistsException``: a JIT config was asked for a name already registered."""


class RunnerNotFound(ActionsServiceError):
    """``AgentNotFoundException``."""


class JobStillRunning(ActionsServiceError):
    """``JobStillRunningException``: the runner holds a job; do not remove it yet."""


class SessionConflict(ActionsServiceError):
    """``RunnerScaleSetSessionConflictException``: another listener holds the scale set's session."""


class SessionExpired(ActionsServiceError):
    """``RunnerScaleSetSessionExpiredException``."""


class MessageQueueTokenExpired(ActionsServiceError):
    """A 401 from the message queue (or ``acquirejobs``): refresh the session and retry once."""
