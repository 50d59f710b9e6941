from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from runnerd.runtime.errors import Forbidden
from runnerd.runtime.events import MAX_MESSAGE, EventRecorder
from runnerd.runtime.types import Obj
from tests.unit.runtime.fakes import FakeEventSink, eventually

RUNNER: Obj = {
    "apiVersion": "actions.summerwind.dev/v1alpha1",
    "kind": "Runner",
    "metadata": {"name": "r1", "namespace": "ci", "uid": "u-1", "resourceVersion": "42"},
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def sink() -> FakeEventSink:
    return FakeEventSink()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def recorder(sink: FakeEventSink, clock: Clock) -> EventRecorder:
    return EventRecorder(sink, component="runnerd", instance="runnerd-0", wall_clock=clock)


async def test_first_event_is_created_with_the_involved_object(
    recorder: EventRecorder, sink: FakeEventSink
) -> None:
    await recorder.normal(RUNNER, "Registered", "runner registered with GitHub")
    [event] = sink.events.values()
    assert event["metadata"]["namespace"] == "ci"
    assert event["metadata"]["name"].startswith("r1.")
    assert event["involvedObject"] == {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "Runner",
        "name": "r1",
        "namespace": "ci",
        "uid": "u-1",
        "resourceVersion": "42",
    }
    assert (event["type"], event["reason"], event["message"], event["count"]) == (
        "Normal",
        "Registered",
        "runner registered with GitHub",
        1,
    )
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-01-02T03:04:05Z"
    assert event["source"] == {"component": "runnerd", "host": "runnerd-0"}
    assert event["reportingComponent"] == "runnerd"


async def test_repeats_increment_the_count(
    recorder: EventRecorder, sink: FakeEventSink, clock: Clock
) -> None:
    await recorder.warning(RUNNER, "RegistrationFailed", "GitHub said 503")
    clock.now += timedelta(minutes=1)
    await recorder.warning(RUNNER, "RegistrationFailed", "GitHub said 503")
    await recorder.warning(RUNNER, "RegistrationFailed", "GitHub said 503")
    [event] = sink.events.values()
    assert event["count"] == 3
    assert event["lastTimestamp"] == "2026-01-02T03:05:05Z"
    assert event["firstTimestamp"] == "2026-01-02T03:04:05Z"
    assert (sink.creates, sink.patches) == (1, 2)


@pytest.mark.parametrize(
    ("change", "value"),
    [("type", "Normal"), ("reason", "Other"), ("message", "different"), ("object", "r2")],
)
async def test_different_events_are_separate(
    recorder: EventRecorder, sink: FakeEventSink, change: str, value: str
) -> None:
    args = {"type": "Warning", "reason": "RegistrationFailed", "message": "GitHub said 503"}
    await recorder.record(RUNNER, "Warning", "RegistrationFailed", "GitHub said 503")
    target = RUNNER
    if change == "object":
        target = {**RUNNER, "metadata": {**RUNNER["metadata"], "name": value, "uid": "u-2"}}
    else:
        args[change] = value
    await recorder.record(target, args["type"], args["reason"], args["message"])  # type: ignore[arg-type]
    assert sink.creates == 2
    assert all(e["count"] == 1 for e in sink.events.values())


async def test_an_expired_event_is_created_again(recorder: EventRecorder, sink: FakeEventSink) -> None:
    await recorder.normal(RUNNER, "Scaled", "to 3")
    sink.events.clear()  # the API server dropped it (TTL)
    await recorder.normal(RUNNER, "Scaled", "to 3")
    [event] = sink.events.values()
    assert event["count"] == 1
    assert sink.creates == 2


async def test_recording_never_raises(
    recorder: EventRecorder, sink: FakeEventSink, caplog: pytest.LogCaptureFixture
) -> None:
    sink.failing = Forbidden(403, "Forbidden", "events is forbidden")
    await recorder.normal(RUNNER, "Scaled", "to 3")
    assert "could not record event" in caplog.text


async def test_messages_are_redacted_and_truncated(recorder: EventRecorder, sink: FakeEventSink) -> None:
    await recorder.warning(RUNNER, "Failed", "token=ghs_0123456789abcdef " + "x" * 2000)
    [event] = sink.events.values()
    assert "ghs_0123456789abcdef" not in event["message"]
    assert len(event["message"]) == MAX_MESSAGE


async def test_cluster_scoped_objects_get_events_in_default(
    recorder: EventRecorder, sink: FakeEventSink
) -> None:
    await recorder.normal(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "n"}}, "Seen", "ok"
    )
    [(namespace, _)] = sink.events
    assert namespace == "default"


async def test_cache_is_bounded(sink: FakeEventSink, clock: Clock) -> None:
    recorder = EventRecorder(sink, component="runnerd", cache_size=2, wall_clock=clock)
    for message in ["a", "b", "c", "a"]:
        await recorder.normal(RUNNER, "R", message)
    assert sink.creates == 4, "'a' was evicted, so it is recorded anew"


class GatedSink(FakeEventSink):
    """Every create waits at a gate: shows which recordings are in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0

    async def create(self, namespace: str, event: Obj) -> Obj:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
            return await super().create(namespace, event)
        finally:
            self.in_flight -= 1


def _runner(i: int) -> Obj:
    return {**RUNNER, "metadata": {**RUNNER["metadata"], "name": f"r{i}", "uid": f"u-{i}"}}


async def test_different_events_are_written_concurrently() -> None:
    sink = GatedSink()
    recorder = EventRecorder(sink, component="runnerd")
    tasks = [asyncio.create_task(recorder.normal(_runner(i), "PodCreated", "created")) for i in range(8)]
    await eventually(lambda: sink.in_flight == 8, limit=5.0)
    sink.gate.set()
    await asyncio.gather(*tasks)
    assert (sink.most_in_flight, sink.creates) == (8, 8)
    assert all(e["count"] == 1 for e in sink.events.values())


async def test_repeats_in_flight_are_serialised_into_one_event() -> None:
    sink = GatedSink()
    recorder = EventRecorder(sink, component="runnerd")
    tasks = [asyncio.create_task(recorder.warning(RUNNER, "Failed", "GitHub said 503")) for _ in range(3)]
    await eventually(lambda: sink.in_flight == 1 and len(recorder.writes_in_flight_keys()) == 1, limit=5.0)
    sink.gate.set()
    await asyncio.gather(*tasks)
    [event] = sink.events.values()
    assert (event["count"], sink.creates, sink.patches, sink.most_in_flight) == (3, 1, 2, 1)


@pytest.mark.parametrize("failing", [False, True])
async def test_no_lock_is_kept_after_the_recordings(failing: bool) -> None:
    sink = FakeEventSink()
    if failing:
        sink.failing = Forbidden(403, "Forbidden", "events is forbidden")
    recorder = EventRecorder(sink, component="runnerd")
    await asyncio.gather(*(recorder.normal(_runner(i % 3), "R", "m") for i in range(9)))
    assert recorder.writes_in_flight_keys() == []
