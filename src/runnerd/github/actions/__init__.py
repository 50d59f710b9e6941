"""The Actions service's runner scale-set protocol (ARC's ``actions.github.com`` mode), client side.

``api`` states what the controllers need (:class:`ScaleSetAPI`, :class:`ScaleSetClients`), ``models`` and
``errors`` the shapes both sides share. ``client`` (:class:`ActionsClient`, over ``transport`` and
``config``, ``connection``: a scale set's ``proxy`` and ``githubServerTLS`` as a :class:`Connection`)
and ``clients`` (:class:`ActionsClients`) implement them; ``session``
(:class:`MessageSession`) is the listener's side: sessions, the message queue, job acquisition.
The protocol itself is described in the scale-set reference (bootstrap through
``/actions/runner-registration``, scale sets, sessions, the message queue, JIT configs).
"""

from runnerd.github.actions.api import ScaleSetAPI, ScaleSetClients
from runnerd.github.actions.client import ActionsClient
from runnerd.github.actions.clients import ActionsClients
from runnerd.github.actions.config import ConfigURL
from runnerd.github.actions.connection import Connection, ProxyServer
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
    ScaleSetJob,
    ScaleSetMessage,
    ScaleSetRunner,
    ScaleSetSession,
    ScaleSetStatistics,
)
from runnerd.github.actions.session import ConflictPolicy, MessageSession

__all__ = [
    "ActionsClient",
    "ActionsClients",
    "ActionsServiceError",
    "ConfigURL",
    "ConflictPolicy",
    "Connection",
    "JobStillRunning",
    "MessageQueueTokenExpired",
    "MessageSession",
    "ProxyServer",
    "RunnerExists",
    "RunnerNotFound",
    "RunnerScaleSet",
    "ScaleSetAPI",
    "ScaleSetClients",
    "ScaleSetJitConfig",
    "ScaleSetJob",
    "ScaleSetMessage",
    "ScaleSetNotFound",
    "ScaleSetRunner",
    "ScaleSetSession",
    "ScaleSetStatistics",
    "SessionConflict",
    "SessionExpired",
]
