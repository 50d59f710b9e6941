from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import pytest

from runnerd.runtime.errors import ServerError
from runnerd.runtime.leader import LeaderElector, LeadershipLost
from runnerd.runtime.types import LeaseRecord
from tests.unit.runtime.fakes import FakeLeaseClient, LeaseServer, cancel_and_wait, eventually, now

NS, NAME = "runnerd-system", "runnerd-leader"
DURATION, DEADLINE, RETRY = 15.0, 10.0, 2.0


def elector(server: LeaseServer, identity: str) -> tuple[LeaderElector, FakeLeaseClient]:
    client = FakeLeaseClient(server, identity)
    return (
        LeaderElector(
            client,
            namespace=NS,
            name=NAME,
            identity=identity,
            lease_duration=DURATION,
            renew_deadline=DEADLINE,
            retry_period=RETRY,
        ),
        client,
    )


class Work:
    """The work a leader runs: records when it started and when it was stopped."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.stopped: float | None = None
        self.finish = asyncio.Event()

    def __call__(self) -> Coroutine[Any, Any, None]:
        return self._run()

    async def _run(self) -> None:
        self.started = now()
        try:
            await self.finish.wait()
        finally:
            self.stopped = now()


def lease(server: LeaseServer) -> LeaseRecord:
    return server.records[NS, NAME]


def renewals_by(server: LeaseServer, who: str) -> list[float]:
    return [t for t, by, rec in server.writes if by == who and rec.holder_identity == who]


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"), [(10, 10, 2), (15, 10, 10), (15, 10, 0), (5, 10, 2)]
)
def test_timings_must_be_ordered(duration: float, deadline: float, retry: float) -> None:
    with pytest.raises(ValueError, match="lease_duration > renew_deadline > retry_period"):
        LeaderElector(
            FakeLeaseClient(LeaseServer()),
            namespace=NS,
            name=NAME,
            identity="a",
            lease_duration=duration,
            renew_deadline=deadline,
            retry_period=retry,
        )


def test_identity_is_required() -> None:
    with pytest.raises(ValueError, match="identity"):
        LeaderElector(FakeLeaseClient(LeaseServer()), namespace=NS, name=NAME, identity="")


async def test_acquires_a_missing_lease_and_renews_it() -> None:
    server = LeaseServer()
    a, _ = elector(server, "a")
    work = Work()
    run = asyncio.create_task(a.run(work))
    await eventually(lambda: work.started is not None)
    assert a.is_leader
    assert a.leader == "a"
    record = lease(server)
    assert (record.holder_identity, record.lease_duration_seconds, record.lease_transitions) == ("a", 15, 0)
    await asyncio.sleep(10 * RETRY)
    renewals = renewals_by(server, "a")
    assert len(renewals) >= 10
    assert max(b - x for x, b in itertools.pairwise(renewals)) == pytest.approx(RETRY, abs=0.01)
    assert lease(server).acquire_time == record.acquire_time, "renewals keep the acquire time"
    assert lease(server).lease_transitions == 0
    work.finish.set()
    await run


async def test_second_candidate_stays_passive_while_the_leader_renews() -> None:
    server = LeaseServer()
    a, _ = elector(server, "a")
    b, _ = elector(server, "b")
    work_a, work_b = Work(), Work()
    run_a = asyncio.create_task(a.run(work_a))
    await eventually(lambda: a.is_leader)
    run_b = asyncio.create_task(b.run(work_b))
    await asyncio.sleep(10 * DURATION)
    assert work_b.started is None
    assert not b.is_leader
    assert b.leader == "a"
    await cancel_and_wait(run_a, run_b)


async def test_a_candidate_takes_over_an_expired_lease() -> None:
    server = LeaseServer()
    # A leader that died: its last renewal was long ago, but nobody observed it changing since.
    server.store(
        NS,
        NAME,
        LeaseRecord("dead", 15, datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC), 3),
        "dead",
    )
    b, _ = elector(server, "b")
    work = Work()
    start = now()
    run = asyncio.create_task(b.run(work))
    await eventually(lambda: work.started is not None)
    # Expiry is measured from when *b* first saw the record (its own clock), never from renewTime.
    waited = now() - start
    assert DURATION <= waited <= DURATION + RETRY * 2.2 + 0.01
    assert lease(server).holder_identity == "b"
    assert lease(server).lease_transitions == 4
    work.finish.set()
    await run


async def test_leader_that_cannot_renew_stops_acting_before_its_lease_expires() -> None:
    server = LeaseServer()
    a, client_a = elector(server, "a")
    b, _ = elector(server, "b")
    work_a, work_b = Work(), Work()
    run_a = asyncio.create_task(a.run(work_a))
    await eventually(lambda: a.is_leader)
    run_b = asyncio.create_task(b.run(work_b))
    await asyncio.sleep(3 * RETRY)
    client_a.partitioned = True  # a's API calls hang from now on
    with pytest.raises(LeadershipLost):
        await run_a
    assert work_a.stopped is not None
    assert not a.is_leader
    last_renewal = renewals_by(server, "a")[-1]
    # a gave up by its renew deadline, measured from the start of its last successful renewal...
    assert work_a.stopped <= last_renewal + DEADLINE + 0.01
    await eventually(lambda: work_b.started is not None)
    took_over = work_b.started
    assert took_over is not None
    # ...and b took over only after the lease duration, counted from when b saw that renewal.
    assert took_over >= last_renewal + DURATION
    assert took_over <= last_renewal + DURATION + 2 * RETRY * 2.2 + 0.01
    assert work_a.stopped < took_over
    work_b.finish.set()
    await run_b


async def test_failing_renewals_are_retried_until_the_deadline() -> None:
    server = LeaseServer()
    a, client = elector(server, "a")
    work = Work()
    run = asyncio.create_task(a.run(work))
    await eventually(lambda: a.is_leader)
    client.failing = ServerError(503, "ServiceUnavailable", "etcd leader changed")
    await asyncio.sleep(DEADLINE / 2)
    client.failing = None  # the API recovers before the deadline
    await asyncio.sleep(5 * DURATION)
    assert a.is_leader
    assert work.stopped is None
    work.finish.set()
    await run


async def test_conflict_on_renew_is_retried() -> None:
    server = LeaseServer()
    a, client = elector(server, "a")
    work = Work()
    run = asyncio.create_task(a.run(work))
    await eventually(lambda: a.is_leader)
    client.conflicts = 2
    await eventually(lambda: client.conflicts == 0)
    await asyncio.sleep(3 * RETRY)
    assert a.is_leader
    work.finish.set()
    await run


async def test_leader_steps_down_at_once_when_another_holds_the_lease() -> None:
    server = LeaseServer()
    a, _ = elector(server, "a")
    work = Work()
    run = asyncio.create_task(a.run(work))
    await eventually(lambda: a.is_leader)
    stamp = datetime.now(UTC)
    server.store(
        NS, NAME, LeaseRecord("intruder", 15, stamp, stamp, 1, lease(server).resource_version), "intruder"
    )
    taken = now()
    with pytest.raises(LeadershipLost):
        await run
    assert work.stopped is not None
    assert work.stopped - taken <= RETRY + 0.01, "no waiting for the renew deadline"


async def test_graceful_end_releases_the_lease_for_a_fast_takeover() -> None:
    server = LeaseServer()
    a, _ = elector(server, "a")
    b, _ = elector(server, "b")
    work_a, work_b = Work(), Work()
    run_a = asyncio.create_task(a.run(work_a))
    await eventually(lambda: a.is_leader)
    run_b = asyncio.create_task(b.run(work_b))
    await asyncio.sleep(DURATION)
    work_a.finish.set()
    await run_a
    released = now()
    assert lease(server).holder_identity == ""
    assert lease(server).lease_duration_seconds == 1
    await eventually(lambda: work_b.started is not None)
    took_over = work_b.started
    assert took_over is not None
    assert took_over - released <= RETRY * 2.2 + 0.01, "within one retry, not a lease duration"
    assert lease(server).lease_transitions == 1
    work_b.finish.set()
    await run_b


async def test_cancelling_the_leader_stops_the_work_and_releases() -> None:
    server = LeaseServer()
    a, _ = elector(server, "a")
    work = Work()
    run = asyncio.create_task(a.run(work))
    await eventually(lambda: a.is_leader)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert work.stopped is not None
    assert lease(server).holder_identity == ""


async def test_a_candidate_cancelled_mid_acquisition_releases_what_it_won() -> None:
    server = LeaseServer()
    b, client = elector(server, "b")
    client.lose_responses = True
    work = Work()
    run = asyncio.create_task(b.run(work))
    await eventually(lambda: (NS, NAME) in server.records)
    assert lease(server).holder_identity == "b", "won on the server, but b never heard back"
    client.lose_responses = False
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert work.started is None
    assert lease(server).holder_identity == ""


async def test_a_candidate_cancelled_without_the_lease_leaves_it_alone() -> None:
    server = LeaseServer()
    a, _ = elector(server, "a")
    b, _ = elector(server, "b")
    work_a = Work()
    run_a = asyncio.create_task(a.run(work_a))
    await eventually(lambda: a.is_leader)
    run_b = asyncio.create_task(b.run(Work()))
    await asyncio.sleep(3 * RETRY)
    await cancel_and_wait(run_b)
    assert lease(server).holder_identity == "a"
    assert a.is_leader
    work_a.finish.set()
    await run_a


async def test_work_errors_propagate_after_release() -> None:
    server = LeaseServer()
    a, _ = elector(server, "a")

    async def crash() -> None:
        raise RuntimeError("controller bug")

    with pytest.raises(RuntimeError, match="controller bug"):
        await a.run(crash)
    assert lease(server).holder_identity == ""


async def test_exactly_one_of_many_candidates_leads() -> None:
    server = LeaseServer()
    electors = [elector(server, f"c{i}")[0] for i in range(5)]
    works = [Work() for _ in electors]
    runs = [asyncio.create_task(e.run(w)) for e, w in zip(electors, works, strict=True)]
    await eventually(lambda: any(e.is_leader for e in electors))
    for _ in range(20):
        await asyncio.sleep(RETRY)
        assert sum(e.is_leader for e in electors) == 1
        assert sum(w.started is not None for w in works) == 1
    await cancel_and_wait(*runs)
