"""Fakes and fixtures shared by the controller unit tests: informers fed by hand, a real EventRecorder whose
events are kept (``event_recorder``), and the workload controllers' fakes of ``fakes.py``
(``kube``, ``github``, ``recorder``, ``clock``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from runnerd.controller.common import INDEX_CONTROLLER
from runnerd.runtime import EventRecorder, Informer, index_by_controller_uid
from tests.unit.controller.fakes import Clock, FakeGitHub, FakeKube, FakeRecorder


class NoListWatcher:
    """An informer's source that is never started: the tests fill the store themselves."""

    async def list(self) -> tuple[list[Any], str]:
        raise AssertionError("not used")

    def watch(self, resource_version: str, *, timeout_seconds: int) -> Any:
        raise AssertionError("not used")


@dataclass
class KeptEvents:
    """An event sink that keeps what the recorder sends."""

    events: list[dict[str, Any]] = field(default_factory=list)

    async def create(self, namespace: str, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        return event

    async def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return patch

    def reasons(self) -> list[str]:
        return [e["reason"] for e in self.events]


InformerFactory = Callable[..., Informer]


@pytest.fixture
def hand_fed_informer() -> InformerFactory:
    """``make(name, owned=False)``: an informer whose store the test fills; ``owned=True`` indexes
    it by controller UID, as the controller process does for Runners and RunnerReplicaSets."""

    def make(name: str, *, owned: bool = False) -> Informer:
        indexers = {INDEX_CONTROLLER: index_by_controller_uid} if owned else None
        return Informer(name, NoListWatcher(), indexers=indexers)

    return make


@pytest.fixture
def kept_events() -> KeptEvents:
    return KeptEvents()


@pytest.fixture
def event_recorder(kept_events: KeptEvents) -> EventRecorder:
    """An event recorder writing to :func:`kept_events`."""
    return EventRecorder(kept_events, component="test")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def github() -> FakeGitHub:
    return FakeGitHub()


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def recorder() -> FakeRecorder:
    return FakeRecorder()
