"""What the demo and the trace benchmark watch: the runner pods (:class:`TrackingPodAgent`, ghsim's
pod agent that also records each pod's life), the trace fed to the simulator ahead of time
(:class:`Feeder`) and the one-line summary (:class:`Snapshot`)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from devcluster.nodes import GPU_RESOURCE
from ghsim.model import TraceEntry
from ghsim.podagent import PodAgent
from ghsim.server import Simulator


@dataclass
class PodRecord:
    """One runner pod as the pod agent saw it (times are Unix seconds, as the simulator's)."""

    name: str
    gpus: int
    created: float
    ended: float | None = None
    deleted: float | None = None
    bound: float | None = None
    """first seen bound to a node (``spec.nodeName``)"""
    unschedulable: float | None = None
    """first seen refused by the scheduler (``PodScheduled`` False: Pending for capacity)"""

    def reserved_until(self, now: float) -> float:
        ends = [t for t in (self.ended, self.deleted) if t is not None]
        return min(ends) if ends else now


def pod_gpus(pod: Mapping[str, Any]) -> int:
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or ():
        value = ((c.get("resources") or {}).get("limits") or {}).get(GPU_RESOURCE)
        if value is not None:
            with contextlib.suppress(TypeError, ValueError):
                total += int(value)
    return total


def unschedulable(pod: Mapping[str, Any]) -> bool:
    """The scheduler found no node for ``pod`` (its ``PodScheduled`` condition is False)."""
    return any(
        c.get("type") == "PodScheduled" and c.get("status") == "False"
        for c in (pod.get("status") or {}).get("conditions") or ()
    )


class TrackingPodAgent(PodAgent):
    """ghsim's pod agent, also recording when each runner pod appeared and ended (for the summary and
    the benchmark's idle-time and GPU-hour accounting)."""

    def __init__(self, *args: Any, clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock
        self.pods: dict[str, PodRecord] = {}

    async def start(self) -> None:
        """As ghsim's, with no limit on connections to the simulator: every idle virtual runner holds
        a long poll, and aiohttp's default pool of 100 connections stalls the jobs of a fleet of more
        than 100 runners (their heartbeats and completions wait behind the polls)."""
        await super().start()
        default = self._session
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        if default is not None:
            await default.close()

    def handle(self, event_type: str, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        now = self.clock()
        record = self.pods.get(uid)
        if record is None and event_type != "DELETED":
            record = self.pods[uid] = PodRecord(str(meta.get("name", "")), pod_gpus(pod), now)
        if record is not None:
            phase = (pod.get("status") or {}).get("phase")
            if record.bound is None and (pod.get("spec") or {}).get("nodeName"):
                record.bound = now
            if record.unschedulable is None and record.bound is None and unschedulable(pod):
                record.unschedulable = now
            if record.ended is None and (phase in ("Succeeded", "Failed") or meta.get("deletionTimestamp")):
                record.ended = now
            if event_type == "DELETED" and record.deleted is None:
                record.deleted = now
                record.ended = record.ended or now
        super().handle(event_type, pod)

    def listed(self, pods: list[dict[str, Any]]) -> None:
        """A pod recorded alive that a relist no longer shows was deleted while the watch was down."""
        present = {str((pod.get("metadata") or {}).get("uid", "")) for pod in pods}
        now = self.clock()
        for uid, record in self.pods.items():
            if uid not in present and record.deleted is None:
                record.deleted = now
                record.ended = record.ended or now

    def alive(self) -> list[PodRecord]:
        return [p for p in self.pods.values() if p.ended is None]

    def by_name(self) -> dict[str, PodRecord]:
        return {p.name: p for p in self.pods.values()}


# ------------------------------------------------------------------------------------- trace feed


class Feeder:
    """Schedules trace entries into the simulator a little ahead of time (so endless workloads work)."""

    def __init__(self, sim: Simulator, entries: Iterable[TraceEntry], lookahead_s: float = 30.0) -> None:
        self.sim = sim
        self._entries: Iterator[TraceEntry] = iter(entries)
        self._next: TraceEntry | None = None
        self.lookahead_s = lookahead_s
        self.base = sim.world.now()
        self.scheduled = 0
        self.exhausted = False

    def feed(self) -> None:
        horizon = self.sim.world.now() - self.base + self.lookahead_s
        batch: list[TraceEntry] = []
        while True:
            if self._next is None:
                self._next = next(self._entries, None)
                if self._next is None:
                    self.exhausted = True
                    break
            if self._next.offset > horizon:
                break
            batch.append(self._next)
            self._next = None
        if batch:
            self.scheduled += self.sim.world.schedule_trace(batch, start=self.base)
            self.sim.core.poke()

    async def run(self, period: float = 1.0) -> None:
        while not self.exhausted:
            self.feed()
            await asyncio.sleep(period)


# ------------------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class Snapshot:
    elapsed: float
    queued: int
    running: int
    done: int
    done_on_gpu: int
    runners: int
    idle: int
    busy: int
    starting: int
    gpu_runners: int
    desired: dict[str, int | None]
    maximum: dict[str, int]
    wait_p50: float | None

    def line(self) -> str:
        desired = " ".join(
            f"{pool} {'?' if self.desired.get(pool) is None else self.desired[pool]}/{self.maximum[pool]}"
            for pool in self.maximum
        )
        wait = "-" if self.wait_p50 is None else f"{self.wait_p50:.1f}s"
        return (
            f"[{format_elapsed(self.elapsed)}] jobs: {self.queued} queued, {self.running} running, "
            f"{self.done} done ({self.done_on_gpu} on GPU) | runners: {self.runners} "
            f"({self.idle} idle, {self.busy} busy, {self.starting} starting), {self.gpu_runners} GPU | "
            f"desired: {desired} | queue wait p50 {wait}"
        )

    @property
    def at_zero(self) -> bool:
        return self.runners == 0 and all(v == 0 for v in self.desired.values())


def format_elapsed(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m:02d}:{s:02d}"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
