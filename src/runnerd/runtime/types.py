"""Plain value types shared by the runtime and the adapters that implement its protocols.

Kubernetes objects travel through the runtime as plain JSON dicts (:data:`Obj`), exactly as the API
server sends them. The runtime reads only ``metadata``; everything else belongs to the controllers.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeAlias

Obj: TypeAlias = dict[str, Any]
"""A Kubernetes object (or a ``Status``) as decoded JSON."""


class Key(NamedTuple):
    """Identifies an object: ``namespace/name``; the namespace is ``""`` for cluster-scoped objects."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Key:
        """The key of an object, from its ``metadata``."""
        meta = obj.get("metadata") or {}
        return cls(meta.get("namespace") or "", meta["name"])

    @classmethod
    def parse(cls, text: str) -> Key:
        """The inverse of ``str(key)``."""
        namespace, sep, name = text.partition("/")
        return cls(namespace, name) if sep else cls("", namespace)


def resource_version(obj: Mapping[str, Any]) -> str:
    """``metadata.resourceVersion`` of an object, or ``""``."""
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class WatchEventType(enum.StrEnum):
    """The ``type`` of an event on a Kubernetes watch stream."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One event of a watch stream. For ``ERROR`` the object is a ``Status`` (with ``code``)."""

    type: WatchEventType
    object: Obj


@dataclass(frozen=True, slots=True)
class Result:
    """What a reconcile asks of the work queue after it returns normally.

    ``requeue_after``: reconcile the key again after this many seconds (polling, e.g. GitHub).
    ``requeue``: reconcile the key again soon, with the key's back-off (like a failure, but not logged).
    Returning ``None`` or ``Result()`` means "done until something changes"; the key's back-off is reset.
    """

    requeue_after: float | None = None
    requeue: bool = False


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The part of a ``coordination.k8s.io/v1`` Lease that leader election reads and writes.

    ``resource_version`` is the object's version as read; writes made with it are conditional on it.
    """

    holder_identity: str
    lease_duration_seconds: int
    acquire_time: datetime | None
    renew_time: datetime | None
    lease_transitions: int = 0
    resource_version: str = ""
