"""A group of deliveries in one pass decides exactly as the deliveries one after another."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence

import pytest

from runnerd.api import CapacityReservation
from runnerd.reconcile.reservations import (
    BatchUpdate,
    JobDelivery,
    apply_workflow_job_event,
    apply_workflow_job_events,
)
from tests.unit.reconcile.hrakit import MIN, NOW, res

DUR = 10 * MIN


def sequential(
    reservations: Sequence[CapacityReservation],
    deliveries: Sequence[JobDelivery],
    max_replicas: int | None,
    keep_markers: bool,
    duration: dt.timedelta = DUR,
) -> BatchUpdate:
    """The reference: :func:`apply_workflow_job_event` once per delivery."""
    current, outcomes = tuple(reservations), []
    for d in deliveries:
        update = apply_workflow_job_event(
            current, d.action, d.conclusion, d.runner_id, NOW, duration, max_replicas,
            job_id=d.job_id, repository=d.repository, keep_markers=keep_markers,
        )  # fmt: skip
        current = update.reservations
        outcomes.append(update.outcome)
    return BatchUpdate(current, current != tuple(reservations), tuple(outcomes))


def q(job: int | None, repository: str | None = "o/r") -> JobDelivery:
    return JobDelivery("queued", job_id=job, repository=repository)


def c(job: int | None, conclusion: str = "success", runner_id: int | None = 7) -> JobDelivery:
    return JobDelivery("completed", conclusion, runner_id, job, "o/r")


def p(job: int | None) -> JobDelivery:
    return JobDelivery("in_progress", job_id=job, repository="o/r")


LIVE = [res(name="job-1@o/r"), res(name="job-2@o/r", exp=2 * MIN), res(name="job-3")]
STARVED = [
    res(name="job-1@o/r", exp=MIN, eff=-MIN),
    res(name="job-2@o/r", exp=-MIN, eff=-3 * MIN),  # expired, still counted by the restart rule
    res(name="job-3@o/r", exp=MIN, eff=-MIN),
    res(name="job-4@o/r", exp=2 * MIN, eff=-2 * MIN),
    res(name="job-5", exp=3 * MIN, eff=-MIN),
]
MARKERS = [res(name="job-1@o/r"), res(name="job-9@o/r", replicas=0), res(name="job-8", replicas=0)]

CASES = [
    pytest.param([], [q(1), p(1), c(1)], 10, id="queued-in-progress-completed-one-job"),
    pytest.param([], [c(1), q(1), p(1)], 10, id="completed-before-queued"),
    pytest.param([], [q(1), q(1), q(2), q(1)], 10, id="duplicate-queued"),
    pytest.param(LIVE, [c(1), c(1), c(1)], 10, id="duplicate-completed"),
    pytest.param(LIVE, [c(40), c(41, "skipped", None), q(42)], 10, id="unknown-jobs"),
    pytest.param(LIVE, [q(3), q(3, None), c(3), q(3)], 10, id="name-forms-of-one-job"),
    pytest.param(LIVE, [p(1), JobDelivery("waiting", job_id=2)], 10, id="nothing-applies"),
    pytest.param(LIVE, [p(1), q(10), c(2)], 10, id="ignored-first-then-housekeeping"),
    pytest.param(STARVED, [q(6), q(7), c(1), q(8)], 2, id="capacity-limit-restarts"),
    pytest.param(STARVED, [q(6), q(7), q(8)], 0, id="capacity-zero"),
    pytest.param(STARVED, [c(3), c(4), q(9)], -1, id="capacity-negative"),
    pytest.param(STARVED, [q(6), c(6), q(6)], None, id="no-limit"),
    pytest.param(STARVED, [p(1)], 1, id="only-ignored-keeps-expired"),
    pytest.param(MARKERS, [q(9), q(8), c(1), q(1), c(10)], 10, id="markers"),
    pytest.param(LIVE, [q(None), c(None), q(5), c(None, "skipped", None)], 10, id="without-job-id"),
    pytest.param(LIVE, [c(None, "success", None), q(None), q(7)], 2, id="without-id-arc-rule"),
]


@pytest.mark.parametrize("keep_markers", [True, False])
@pytest.mark.parametrize(("before", "deliveries", "max_replicas"), CASES)
def test_a_batch_decides_as_one_by_one(
    before: list[CapacityReservation],
    deliveries: list[JobDelivery],
    max_replicas: int | None,
    keep_markers: bool,
) -> None:
    got = apply_workflow_job_events(before, deliveries, NOW, DUR, max_replicas, keep_markers=keep_markers)
    assert got == sequential(before, deliveries, max_replicas, keep_markers)


@pytest.mark.parametrize("duration", [dt.timedelta(0), -MIN])
def test_a_duration_that_expires_at_once_decides_as_one_by_one(duration: dt.timedelta) -> None:
    deliveries = [q(1), q(1), q(2), c(2), q(2)]
    got = apply_workflow_job_events(LIVE, deliveries, NOW, duration, 10, keep_markers=True)
    assert got == sequential(LIVE, deliveries, 10, True, duration)


def test_the_outcomes_say_what_each_delivery_did() -> None:
    got = apply_workflow_job_events([], [q(1), q(1), c(1), c(2)], NOW, DUR, 10, keep_markers=False)
    assert [(o.delta, o.changed) for o in got.outcomes] == [(1, True), (0, False), (-1, True), (0, False)]
    assert (got.reservations, got.changed) == ((), False)  # queued and completed in one group
    assert "queued again" in got.outcomes[1].reason


def test_an_empty_group_changes_nothing_and_a_naive_time_is_refused() -> None:
    assert apply_workflow_job_events(LIVE, [], NOW, DUR, 10) == BatchUpdate(tuple(LIVE), False, ())
    with pytest.raises(ValueError, match="timezone-aware"):
        apply_workflow_job_events(LIVE, [q(1)], NOW.replace(tzinfo=None), DUR, 10)


def test_the_input_is_not_mutated() -> None:
    before = list(STARVED)
    snapshot = [CapacityReservation.from_dict(r.to_dict()) for r in before]
    apply_workflow_job_events(before, [q(6), c(1)], NOW, DUR, 1, keep_markers=False)
    assert before == snapshot


@pytest.mark.parametrize("seed", range(200))
def test_random_groups_decide_as_one_by_one(seed: int) -> None:
    rng = random.Random(seed)
    jobs = list(range(1, 12))
    names = [f"job-{j}@o/r" if rng.random() < 0.7 else f"job-{j}" for j in jobs]
    before = [
        res(
            name=rng.choice([n, None]),
            exp=rng.choice([-MIN, MIN, 5 * MIN]),
            replicas=rng.choice([0, 1, 1, 2]),
        )
        for n in rng.sample(names, rng.randint(0, 8))
    ]
    kinds = [q, c, p, lambda j: c(j, "skipped", None)]
    deliveries = [rng.choice(kinds)(rng.choice(jobs)) for _ in range(rng.randint(1, 24))]
    max_replicas = rng.choice([None, 0, 1, 3, 10])
    keep_markers = rng.random() < 0.5
    got = apply_workflow_job_events(before, deliveries, NOW, DUR, max_replicas, keep_markers=keep_markers)
    assert got == sequential(before, deliveries, max_replicas, keep_markers)
