"""Latency histograms fed from informer events: webhook -> pod create, and runner startup.

* webhook -> pod create: every ``queued`` delivery that reserved a runner leaves its arrival time
  with its scale target; the next runner pod of that target that appears takes the oldest waiting
  arrival (first come, first served, which is how the replica set fills up). Arrivals nobody took
  within ``max_age`` are dropped.
* runner startup: from a runner pod appearing to its Runner turning ``Idle`` or ``Running`` (online
  in GitHub). Pods that were already there when the process started are timed from their
  ``creationTimestamp``.

Both observe the informers' view, so they include the watch latency (a few milliseconds): they are
what a user would see, not less.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import deque
from collections.abc import Callable

from runnerd.controller.common import LABEL_DEPLOYMENT_NAME
from runnerd.reconcile.replicas import RunnerPhase
from runnerd.reconcile.runnerset import LABEL_RUNNERSET_NAME
from runnerd.runtime import EventType, InformerEvent, Key, Obj
from runnerd.web.metrics import Metrics

ONLINE = frozenset({RunnerPhase.IDLE.value, RunnerPhase.BUSY.value})


def _creation(obj: Obj) -> float | None:
    text = (obj.get("metadata") or {}).get("creationTimestamp")
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


MAX_WAITING = 10_000
"""Reservations per target waiting for their pod, at most (a target capped at maxReplicas)."""


class PodCreateLatency:
    def __init__(
        self,
        metrics: Metrics,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        max_age: float = 600.0,
    ) -> None:
        self.metrics = metrics
        self._monotonic = monotonic
        self.max_age = max_age
        self._waiting: dict[tuple[str, str, str], deque[float]] = {}
        self.samples: list[float] = []
        """Every observed latency (seconds), for the benchmark; bounded."""

    def expect(self, namespace: str, kind: str, name: str, received: float) -> None:
        """A delivery that arrived at ``received`` (monotonic) reserved a runner of this target.
        Bounded: entries older than ``max_age`` and beyond :data:`MAX_WAITING` per target are dropped."""
        queue = self._waiting.setdefault((namespace, kind, name), deque(maxlen=MAX_WAITING))
        now = self._monotonic()
        while queue and now - queue[0] > self.max_age:
            queue.popleft()
        queue.append(received)

    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    def on_pod(self, event: InformerEvent) -> None:
        if event.type is not EventType.ADDED:
            return
        meta = event.obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        namespace = str(meta.get("namespace") or "")
        if LABEL_DEPLOYMENT_NAME in labels:
            key = (namespace, "RunnerDeployment", str(labels[LABEL_DEPLOYMENT_NAME]))
        elif LABEL_RUNNERSET_NAME in labels:
            key = (namespace, "RunnerSet", str(labels[LABEL_RUNNERSET_NAME]))
        else:
            return
        queue = self._waiting.get(key)
        if not queue:
            return
        now = self._monotonic()
        while queue and now - queue[0] > self.max_age:
            queue.popleft()
        if not queue:
            return
        latency = now - queue.popleft()
        self.metrics.webhook_to_pod_create.observe(latency)
        if len(self.samples) < 100_000:
            self.samples.append(latency)


class RunnerStartup:
    def __init__(self, metrics: Metrics, *, clock: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self._clock = clock
        self._created: dict[Key, float] = {}
        self.samples: list[float] = []

    def on_pod(self, event: InformerEvent) -> None:
        key = Key.of(event.obj)
        if event.type is EventType.DELETED:
            self._created.pop(key, None)
        elif event.type is EventType.ADDED and key not in self._created:
            now = self._clock()
            created = _creation(event.obj)
            # a pod we see being created is timed from now (sub-second); an old one from its timestamp
            self._created[key] = now if created is None or now - created < 2.0 else created

    def on_runner(self, event: InformerEvent) -> None:
        if event.type is not EventType.MODIFIED:
            return
        phase = (event.obj.get("status") or {}).get("phase")
        before = ((event.old or {}).get("status") or {}).get("phase")
        if phase not in ONLINE or before in ONLINE:
            return
        created = self._created.pop(Key.of(event.obj), None)
        if created is None:
            return
        seconds = max(self._clock() - created, 0.0)
        self.metrics.runner_startup.observe(seconds)
        if len(self.samples) < 100_000:
            self.samples.append(seconds)
