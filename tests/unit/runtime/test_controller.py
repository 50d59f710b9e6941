from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from runnerd.runtime.controller import (
    Controller,
    EventFilter,
    by_label,
    controller_owner,
    own_key,
    spec_changed,
)
from runnerd.runtime.errors import Conflict, TooManyRequests
from runnerd.runtime.informer import EventType, Informer, InformerEvent
from runnerd.runtime.types import Key, Obj, Result
from tests.unit.runtime.fakes import FakeListWatcher, cancel_and_wait, eventually, now, obj, owned

RUNNER = "actions.summerwind.dev"


@pytest.mark.parametrize(
    ("mapper", "body", "expected"),
    [
        (own_key, obj("a"), [Key("ns", "a")]),
        (controller_owner("Runner", RUNNER), owned("pod", "r1"), [Key("ns", "r1")]),
        (controller_owner("Runner", RUNNER), owned("pod", "r1", controller=False), []),
        (controller_owner("Runner", RUNNER), owned("pod", "r1", kind="ReplicaSet"), []),
        (controller_owner("Runner", RUNNER), owned("pod", "r1", api_version="other.io/v1"), []),
        (controller_owner("Runner", RUNNER, namespaced=False), owned("pod", "r1"), [Key("", "r1")]),
        (
            controller_owner("ReplicaSet", "apps"),
            owned("pod", "rs", kind="ReplicaSet", api_version="apps/v1"),
            [Key("ns", "rs")],
        ),
        (controller_owner("Node"), owned("pod", "n1", kind="Node", api_version="v1"), [Key("ns", "n1")]),
        (controller_owner("Runner", RUNNER), obj("orphan"), []),
        (by_label("runner-set"), obj("pod", labels={"runner-set": "s1"}), [Key("ns", "s1")]),
        (by_label("runner-set"), obj("pod", labels={"other": "s1"}), []),
    ],
)
def test_mappers(mapper: object, body: Obj, expected: list[Key]) -> None:
    assert callable(mapper)
    assert list(mapper(body)) == expected


class Harness:
    """A controller over two fake resources: runners (primary) and pods (owned by runners)."""

    def __init__(self, *, coalesce: float = 0.0, urgent: EventFilter | None = None) -> None:
        self.runners = FakeListWatcher()
        self.pods = FakeListWatcher()
        self.runner_informer = Informer("runners", self.runners)
        self.pod_informer = Informer("pods", self.pods)
        self.calls: list[tuple[float, Key]] = []
        self.results: dict[Key, list[Result | Exception | None]] = {}
        self.active: set[Key] = set()
        self.overlaps = 0
        self.block: dict[Key, asyncio.Event] = {}
        self.controller = Controller("runner", self.reconcile, workers=3, backoff_base=1.0, backoff_max=8.0)
        self.controller.watch(self.runner_informer)
        self.controller.owns(self.pod_informer, kind="Runner", group=RUNNER, coalesce=coalesce, urgent=urgent)
        self.pods_seen: list[list[str]] = []
        """Per reconcile: the pod names in the cache as it started."""
        self.tasks: list[asyncio.Task[None]] = []

    async def reconcile(self, key: Key) -> Result | None:
        if key in self.active:
            self.overlaps += 1
        self.active.add(key)
        try:
            self.calls.append((now(), key))
            self.pods_seen.append(sorted(p["metadata"]["name"] for p in self.pod_informer.store))
            if key in self.block:
                await self.block[key].wait()
            script = self.results.get(key)
            outcome = script.pop(0) if script else None
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        finally:
            self.active.discard(key)

    def count(self, key: Key) -> int:
        return sum(k == key for _, k in self.calls)

    async def start(self) -> None:
        self.tasks += [asyncio.create_task(i.run()) for i in (self.runner_informer, self.pod_informer)]
        self.tasks.append(asyncio.create_task(self.controller.run()))
        await eventually(lambda: self.controller.queue is not None and self.runner_informer.synced)

    async def stop(self) -> None:
        await cancel_and_wait(*self.tasks)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    yield h
    await h.stop()


async def test_existing_objects_are_reconciled_at_start(harness: Harness) -> None:
    harness.runners.put(obj("r1"))
    harness.runners.put(obj("r2"))
    harness.pods.put(owned("p1", "r3"))
    await harness.start()
    await eventually(lambda: len(harness.calls) == 3)
    assert sorted(k for _, k in harness.calls) == [Key("ns", "r1"), Key("ns", "r2"), Key("ns", "r3")]


async def test_owned_object_events_reconcile_the_owner(harness: Harness) -> None:
    harness.runners.put(obj("r1"))
    await harness.start()
    await eventually(lambda: harness.count(Key("ns", "r1")) == 1)
    harness.pods.put(owned("p1", "r1"))
    await eventually(lambda: harness.count(Key("ns", "r1")) == 2)
    harness.pods.delete("p1")
    await eventually(lambda: harness.count(Key("ns", "r1")) == 3)
    harness.pods.put(owned("p2", "r1", controller=False))  # not its controller: ignored
    await asyncio.sleep(10)
    assert harness.count(Key("ns", "r1")) == 3


async def test_owner_change_reconciles_old_and_new_owner(harness: Harness) -> None:
    harness.pods.put(owned("p1", "r1"))
    await harness.start()
    await eventually(lambda: len(harness.calls) == 1)
    harness.pods.put(owned("p1", "r2"))
    await eventually(lambda: len(harness.calls) == 3)
    assert Counter(k for _, k in harness.calls) == {Key("ns", "r1"): 2, Key("ns", "r2"): 1}


async def test_label_mapping(harness: Harness) -> None:
    secrets = FakeListWatcher()
    informer = Informer("secrets", secrets)
    harness.controller.watch(informer, by_label("runner"))
    harness.tasks.append(asyncio.create_task(informer.run()))
    await harness.start()
    secrets.put(obj("token", labels={"runner": "r9"}))
    await eventually(lambda: harness.count(Key("ns", "r9")) == 1)


async def test_failure_backs_off_exponentially_then_success_resets(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    key = Key("ns", "r1")
    harness.results[key] = [RuntimeError("boom")] * 3 + [None]
    harness.runners.put(obj("r1"))
    await harness.start()
    await eventually(lambda: harness.count(key) == 4)
    times = [t for t, k in harness.calls if k == key]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([1.0, 2.0, 4.0])
    queue = harness.controller.queue
    assert queue is not None
    assert queue.failures(key) == 0
    assert harness.controller.errors == 3
    assert "RuntimeError: boom" in caplog.text
    await asyncio.sleep(100)
    assert harness.count(key) == 4, "no requeue after success"


async def test_requeue_after(harness: Harness) -> None:
    key = Key("ns", "r1")
    harness.results[key] = [Result(requeue_after=30.0), Result(requeue_after=5.0), None]
    harness.runners.put(obj("r1"))
    await harness.start()
    await eventually(lambda: harness.count(key) == 3)
    times = [t for t, k in harness.calls if k == key]
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([30.0, 5.0])


async def test_requeue_uses_backoff(harness: Harness) -> None:
    key = Key("ns", "r1")
    harness.results[key] = [Result(requeue=True), Result(requeue=True), None]
    harness.runners.put(obj("r1"))
    await harness.start()
    await eventually(lambda: harness.count(key) == 3)
    times = [t for t, k in harness.calls if k == key]
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([1.0, 2.0])


async def test_retry_after_of_429_is_honoured(harness: Harness) -> None:
    key = Key("ns", "r1")
    harness.results[key] = [TooManyRequests(429, "TooManyRequests", "slow down", retry_after=7.0)]
    harness.runners.put(obj("r1"))
    await harness.start()
    await eventually(lambda: harness.count(key) == 2)
    times = [t for t, k in harness.calls if k == key]
    assert times[1] - times[0] == pytest.approx(7.0)


async def test_events_during_a_reconcile_are_coalesced(harness: Harness) -> None:
    key = Key("ns", "r1")
    harness.block[key] = asyncio.Event()
    harness.runners.put(obj("r1"))
    await harness.start()
    await eventually(lambda: harness.count(key) == 1)
    for i in range(5):
        harness.pods.put(owned(f"p{i}", "r1"))
    await eventually(lambda: len(harness.pod_informer.store) == 5)
    harness.block[key].set()
    await eventually(lambda: harness.count(key) == 2)
    await asyncio.sleep(10)
    assert harness.count(key) == 2
    assert harness.overlaps == 0


async def test_reconcile_errors_are_logged_without_secrets(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    key = Key("ns", "r1")
    harness.results[key] = [
        RuntimeError("request failed: Authorization: Bearer s3cr3t-t0ken, token=ghs_abcdef123")
    ]
    harness.runners.put(obj("r1"))
    with caplog.at_level(logging.DEBUG):
        await harness.start()
        await eventually(lambda: harness.count(key) == 2)
    assert "request failed" in caplog.text
    assert "s3cr3t" not in caplog.text
    assert "ghs_abcdef123" not in caplog.text


async def test_conflicts_are_retried_quietly(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    key = Key("ns", "r1")
    harness.results[key] = [Conflict(409, "Conflict", "the object has been modified")]
    harness.runners.put(obj("r1"))
    await harness.start()
    await eventually(lambda: harness.count(key) == 2)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_shutdown_lets_in_flight_reconciles_finish(harness: Harness) -> None:
    key = Key("ns", "r1")
    harness.block[key] = asyncio.Event()
    harness.runners.put(obj("r1"))
    harness.runners.put(obj("r2"))
    harness.controller = Controller("runner", harness.reconcile, workers=1)
    harness.controller.watch(harness.runner_informer)
    await harness.start()
    await eventually(lambda: harness.count(key) == 1)
    run = harness.tasks[-1]
    harness.controller.shutdown()
    await asyncio.sleep(1)
    assert not run.done(), "waits for the running reconcile"
    harness.controller.enqueue(Key("ns", "r3"))
    harness.block[key].set()
    await run
    assert [k for _, k in harness.calls] == [key], "r2 and r3 were not started after shutdown"
    assert harness.controller.queue is None


async def test_enqueue_from_outside(harness: Harness) -> None:
    harness.controller.enqueue(Key("ns", "early"))  # not running: ignored
    await harness.start()
    harness.controller.enqueue(Key("ns", "x"), after=3.0)
    start = now()
    await eventually(lambda: harness.count(Key("ns", "x")) == 1)
    assert now() - start == pytest.approx(3.0, abs=0.02)
    assert harness.count(Key("ns", "early")) == 0


async def test_seeded_keys_are_reconciled_at_every_start(harness: Harness) -> None:
    tick = Key("", "tick")
    harness.controller.seed(tick, tick)
    await harness.start()
    await eventually(lambda: harness.count(tick) == 1)
    assert [k for _, k in harness.calls] == [tick]  # no informer object, once although seeded twice
    harness.controller.shutdown()
    await harness.tasks.pop()
    harness.tasks.append(asyncio.create_task(harness.controller.run()))
    await eventually(lambda: harness.count(tick) == 2)  # a new leadership term seeds it again


def test_workers_must_be_positive() -> None:
    async def reconcile(key: Key) -> None:
        return None

    with pytest.raises(ValueError, match="workers"):
        Controller("x", reconcile, workers=0)


def _deleted(event: InformerEvent) -> bool:
    return event.type is EventType.DELETED


@pytest.fixture
async def coalescing() -> AsyncIterator[Harness]:
    """Pod events wait up to 2 s for their owner's pass, except deletions."""
    h = Harness(coalesce=2.0, urgent=_deleted)
    yield h
    await h.stop()


async def test_a_burst_of_coalesced_events_is_one_pass_that_sees_the_last(coalescing: Harness) -> None:
    key = Key("ns", "r1")
    coalescing.runners.put(obj("r1"))
    await coalescing.start()
    await eventually(lambda: coalescing.count(key) == 1)
    start = now()
    for i in range(50):
        coalescing.pods.put(owned(f"p{i}", "r1"))
        await asyncio.sleep(0.01)  # the burst spreads over 0.5 s, less than the window
    await eventually(lambda: coalescing.count(key) == 2)
    assert coalescing.calls[-1][0] - start == pytest.approx(2.0, abs=0.02)
    assert coalescing.pods_seen[-1] == sorted(f"p{i}" for i in range(50)), "the last event's state"
    await asyncio.sleep(10)
    assert coalescing.count(key) == 2


async def test_a_long_stream_of_coalesced_events_costs_one_pass_a_window(coalescing: Harness) -> None:
    key = Key("ns", "r1")
    coalescing.runners.put(obj("r1"))
    await coalescing.start()
    await eventually(lambda: coalescing.count(key) == 1)
    for i in range(200):  # 20 s of events, ten a second
        coalescing.pods.put({**owned("p", "r1"), "data": {"n": str(i)}})
        await asyncio.sleep(0.1)
    last_event = now() - 0.1
    await asyncio.sleep(5)
    assert 10 <= coalescing.count(key) - 1 <= 11, "one pass per 2-second window"
    assert last_event < coalescing.calls[-1][0] <= last_event + 2.0, "a pass after the last event"
    last = coalescing.pod_informer.store.get(Key("ns", "p"))
    assert last is not None
    assert last["data"] == {"n": "199"}


async def test_urgent_and_primary_events_do_not_wait_and_serve_the_coalesced(coalescing: Harness) -> None:
    key = Key("ns", "r1")
    coalescing.runners.put(obj("r1"))
    coalescing.pods.put(owned("p0", "r1"))
    await coalescing.start()
    await eventually(lambda: coalescing.count(key) == 1)
    coalescing.pods.put(owned("p1", "r1"))  # coalesced: waits
    start = now()
    coalescing.runners.put(obj("r1", labels={"replicas": "5"}))  # the primary object: at once
    await eventually(lambda: coalescing.count(key) == 2)
    assert now() - start < 0.1
    assert coalescing.pods_seen[-1] == ["p0", "p1"]
    coalescing.pods.put(owned("p2", "r1"))  # coalesced again
    start = now()
    coalescing.pods.delete("p0")  # urgent
    await eventually(lambda: coalescing.count(key) == 3)
    assert now() - start < 0.1
    assert coalescing.pods_seen[-1] == ["p1", "p2"]
    await asyncio.sleep(10)
    assert coalescing.count(key) == 3, "the pass at once served the waiting events"


async def test_a_coalesced_event_during_a_pass_gets_a_pass_after_it(coalescing: Harness) -> None:
    key = Key("ns", "r1")
    coalescing.block[key] = asyncio.Event()
    coalescing.runners.put(obj("r1"))
    await coalescing.start()
    await eventually(lambda: coalescing.count(key) == 1)
    coalescing.pods.put(owned("p1", "r1"))
    await eventually(lambda: len(coalescing.pod_informer.store) == 1)
    coalescing.block[key].set()
    await eventually(lambda: coalescing.count(key) == 2)
    assert coalescing.pods_seen == [[], ["p1"]]
    assert coalescing.overlaps == 0


def _versioned(generation: int | None, *, marked: bool = False) -> Obj:
    meta: dict[str, object] = {}
    if generation is not None:
        meta["generation"] = generation
    if marked:
        meta["deletionTimestamp"] = "2026-12-07T04:00:00Z"
    return obj("rs", **meta)


@pytest.mark.parametrize(
    ("kind", "old", "new", "changed"),
    [
        (EventType.ADDED, None, _versioned(1), True),
        (EventType.DELETED, _versioned(1), _versioned(1), True),
        (EventType.MODIFIED, _versioned(1), _versioned(2), True),  # a scale
        (EventType.MODIFIED, _versioned(2), _versioned(2), False),  # a status write
        (EventType.MODIFIED, _versioned(2), _versioned(2, marked=True), True),
        (EventType.MODIFIED, _versioned(None), _versioned(None), True),  # no generation: every change
        (EventType.MODIFIED, None, _versioned(2), True),
        (EventType.SYNC, None, _versioned(2), False),
    ],
)
def test_spec_changed(kind: EventType, old: Obj | None, new: Obj, changed: bool) -> None:
    assert spec_changed(InformerEvent(kind, new, old)) is changed


async def test_a_failing_urgency_filter_reconciles_at_once(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: InformerEvent) -> bool:
        raise KeyError("metadata")

    h = Harness(coalesce=2.0, urgent=broken)
    try:
        h.runners.put(obj("r1"))
        await h.start()
        await eventually(lambda: h.count(Key("ns", "r1")) == 1)
        start = now()
        h.pods.put(owned("p1", "r1"))
        await eventually(lambda: h.count(Key("ns", "r1")) == 2)
        assert now() - start < 0.1
        assert "urgency filter" in caplog.text
    finally:
        await h.stop()
