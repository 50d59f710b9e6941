"""The Actions service's runner scale-set protocol (ARC's ``actions.github.com`` mode), client side.

``api`` states what the controllers need (:class:`ScaleSetAPI`, :class:`ScaleSetClients`), ``models`` and
``errors`` the shapes both sides share. The protocol itself is described in the scale-set reference
(bootstrap through ``/actions/runner-registration``, scale sets, sessions, the message queue, JIT configs).
"""

from runnerd.github.actions.api import ScaleSetAPI, ScaleSetClients
from runnerd.github.actions.errors import (
    ActionsServiceError,
    JobStillRunning,
    MessageQueueTokenExpired,
    RunnerExists,
    RunnerNotFound,
    ScaleSetNotFound,
    SessionConflict,
    SessionExpired,
)
from runnerd.github.actions.models import (
    RunnerScaleSet,
    ScaleSetJitConfig,
    ScaleSetRunner,
    ScaleSetStatistics,
)

__all__ = [
    "ActionsServiceError",
    "JobStillRunning",
    "MessageQueueTokenExpired",
    "RunnerExists",
    "RunnerNotFound",
    "RunnerScaleSet",
    "ScaleSetAPI",
    "ScaleSetClients",
    "ScaleSetJitConfig",
    "ScaleSetNotFound",
    "ScaleSetRunner",
    "ScaleSetStatistics",
    "SessionConflict",
    "SessionExpired",
]
