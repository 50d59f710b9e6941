"""Capacity reservations from workflow_job deliveries: by job id, ARC's rules without one, bounded."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import replace

import pytest

from runnerd.api import (
    CapacityReservation,
)
from runnerd.reconcile.reservations import (
    ReservationUpdate,
    apply_workflow_job_event,
    job_reservation_name,
    parse_job_reservation,
)
from tests.unit.reconcile.hrakit import MIN, NOW, SEC, res

# --- webhook fast path -------------------------------------------------------------------------------

DUR = 10 * MIN


def apply(
    reservations: Sequence[CapacityReservation],
    action: str,
    conclusion: str | None = None,
    runner_id: int | None = 1,
    job_id: int | None = None,
    max_replicas: int | None = 10,
    now: dt.datetime = NOW,
) -> ReservationUpdate:
    return apply_workflow_job_event(
        reservations, action, conclusion, runner_id, now, DUR, max_replicas, job_id=job_id
    )


def shape(rs: Sequence[CapacityReservation]) -> list[tuple[str | None, int | None]]:
    return [(r.name, r.replicas) for r in rs]


@pytest.mark.parametrize(
    ("before", "event", "after", "delta", "changed"),
    [
        pytest.param([], {"action": "queued"}, [(None, 1)], 1, True, id="queued-no-id-arc"),
        pytest.param([], {"action": "queued", "job_id": 1}, [("job-1", 1)], 1, True, id="queued"),
        pytest.param(
            [res(name="job-1")],
            {"action": "queued", "job_id": 1},
            [("job-1", 1)],
            0,
            False,
            id="queued-duplicate",
        ),
        pytest.param(
            [res(name="job-1")],
            {"action": "completed", "conclusion": "success", "job_id": 1},
            [("job-1", 0)],
            -1,
            True,
            id="completed-releases",
        ),
        pytest.param(
            [res(name="job-1", replicas=0)],
            {"action": "completed", "conclusion": "success", "job_id": 1},
            [("job-1", 0)],
            0,
            False,
            id="completed-duplicate",
        ),
        pytest.param(
            [],
            {"action": "completed", "conclusion": "failure", "job_id": 2},
            [("job-2", 0)],
            0,
            True,
            id="completed-before-queued-remembered",
        ),
        pytest.param(
            [res(name="job-2", replicas=0)],
            {"action": "queued", "job_id": 2},
            [("job-2", 0)],
            0,
            False,
            id="queued-after-completed-ignored",
        ),
        pytest.param(
            [res(name="job-1"), res(name="job-2")],
            {"action": "completed", "conclusion": "cancelled", "job_id": 2},
            [("job-1", 1), ("job-2", 0)],
            -1,
            True,
            id="completion-releases-only-its-job",
        ),
        pytest.param(
            [res(name="job-1")],
            {"action": "completed", "conclusion": "success", "runner_id": None, "job_id": 1},
            [("job-1", 0)],
            -1,
            True,
            id="correlated-success-without-runner-releases",
        ),
        pytest.param(
            [res(name="job-1")],
            {"action": "completed", "conclusion": "skipped", "job_id": 1},
            [("job-1", 0)],
            -1,
            True,
            id="correlated-skipped-releases",
        ),
        pytest.param(
            [res(name="job-1")],
            {"action": "completed", "conclusion": "success", "job_id": 9},
            [("job-1", 1), ("job-9", 0)],
            0,
            True,
            id="unknown-job-completion-releases-nothing",
        ),
        pytest.param(
            [res()], {"action": "completed", "conclusion": "skipped"}, [(None, 1)], 0, False, id="skipped-arc"
        ),
        pytest.param(
            [res()],
            {"action": "completed", "conclusion": "success", "runner_id": None},
            [(None, 1)],
            0,
            False,
            id="success-without-runner-arc",
        ),
        pytest.param(
            [res(), res(eff=-2 * MIN)],
            {"action": "completed", "conclusion": "failure", "runner_id": None},
            [(None, 1)],
            -1,
            True,
            id="failure-without-runner-arc-releases-oldest",
        ),
        pytest.param(
            [res(name="job-1"), res(), res()],
            {"action": "completed", "conclusion": "success"},
            [("job-1", 1), (None, 1)],
            -1,
            True,
            id="uncorrelated-prefers-unnamed",
        ),
        pytest.param(
            [res(name="job-1", replicas=0), res(name="job-2")],
            {"action": "completed", "conclusion": "success"},
            [("job-1", 0)],
            -1,
            True,
            id="uncorrelated-falls-back-to-oldest-live",
        ),
        pytest.param(
            [], {"action": "completed", "conclusion": "success"}, [], 0, False, id="never-below-zero"
        ),
        pytest.param(
            [res()], {"action": "in_progress", "job_id": 1}, [(None, 1)], 0, False, id="in-progress-ignored"
        ),
        pytest.param(
            [res()], {"action": "waiting", "job_id": 1}, [(None, 1)], 0, False, id="waiting-ignored"
        ),
        pytest.param(
            [res(exp=-MIN)],
            {"action": "in_progress"},
            [(None, 1)],
            0,
            False,
            id="ignored-event-no-housekeeping",
        ),
        pytest.param(
            [res(exp=-MIN, name="job-1"), res(exp=dt.timedelta(0), name="job-3")],
            {"action": "queued", "job_id": 2},
            [("job-2", 1)],
            1,
            True,
            id="expired-dropped",
        ),
        pytest.param(
            [res(exp=-MIN, name="job-1")],
            {"action": "queued", "job_id": 1},
            [("job-1", 1)],
            1,
            True,
            id="dedupe-window-is-reservation-lifetime",
        ),
    ],
)
def test_apply_event(
    before: list[CapacityReservation],
    event: dict[str, object],
    after: list[tuple[str | None, int]],
    delta: int,
    changed: bool,
) -> None:
    u = apply(before, **event)  # type: ignore[arg-type]
    assert (shape(u.reservations), u.delta, u.changed) == (after, delta, changed)


def test_queued_reservation_fields() -> None:
    (r,) = apply([], "queued", job_id=42).reservations
    assert (r.name, r.effective_time, r.expiration_time, r.replicas) == ("job-42", NOW, NOW + DUR, 1)


def test_completion_marker_fields() -> None:
    (r,) = apply([res(name="job-42")], "completed", "success", job_id=42).reservations
    assert (r.name, r.effective_time, r.expiration_time, r.replicas) == ("job-42", NOW, NOW + DUR, 0)


def test_starved_reservations_get_their_timers_reset() -> None:
    # max 2: the third live reservation has no runner yet; it keeps its own 4-minute length.
    rs = [
        res(name="job-1", exp=MIN, eff=-MIN),
        res(name="job-0", replicas=0),
        res(name="job-2", exp=MIN, eff=-MIN),
        res(name="job-3", exp=-MIN, eff=-5 * MIN),
    ]
    u = apply(rs, "queued", job_id=4, max_replicas=2)
    assert u.starved_reset == 1
    assert u.expired == 0
    by_name = {r.name: r for r in u.reservations}
    assert (by_name["job-3"].effective_time, by_name["job-3"].expiration_time) == (NOW, NOW + 4 * MIN)
    assert by_name["job-1"].expiration_time == NOW + MIN  # within max: untouched
    assert by_name["job-4"].expiration_time == NOW + DUR  # added after the reset


def test_no_starvation_handling_without_max() -> None:
    rs = [res(exp=-MIN) for _ in range(3)]
    u = apply(rs, "queued", job_id=1, max_replicas=None)
    assert (u.starved_reset, u.expired, shape(u.reservations)) == (0, 3, [("job-1", 1)])


def test_input_not_mutated() -> None:
    rs = [res(name="job-1", exp=MIN, eff=-MIN), res(name="job-2", exp=-MIN, eff=-2 * MIN)]
    snapshot = [replace(r) for r in rs]
    apply(rs, "completed", "success", job_id=1, max_replicas=1)
    assert rs == snapshot


def test_event_reasons() -> None:
    assert "queued again" in apply([res(name="job-1")], "queued", job_id=1).reason
    assert "before it was seen queued" in apply([], "completed", "success", job_id=1).reason
    assert "ignored" in apply([], "in_progress", job_id=1).reason


@pytest.mark.parametrize("seed", range(300))
def test_random_deliveries_never_over_reserve(seed: int) -> None:
    rng = random.Random(seed)
    jobs = rng.sample(range(1, 1000), rng.randint(1, 8))
    deliveries: list[tuple[str, int]] = []
    for j in jobs:
        if rng.random() < 0.9:
            deliveries += [("queued", j)] * rng.randint(1, 3)
        if rng.random() < 0.6:
            deliveries += [("completed", j)] * rng.randint(1, 3)
    rng.shuffle(deliveries)
    max_replicas = rng.choice([None, 0, 1, 3, 10])

    reservations: tuple[CapacityReservation, ...] = ()
    queued: set[int] = set()
    completed: set[int] = set()
    now = NOW
    for action, j in deliveries:
        now += SEC * rng.randint(0, 10)  # at most 48 deliveries: all within the 10-minute lifetime
        conclusion = "success" if action == "completed" else None
        reservations = apply_workflow_job_event(
            reservations, action, conclusion, rng.choice([None, 5]), now, DUR, max_replicas, job_id=j
        ).reservations
        (queued if action == "queued" else completed).add(j)
        live = {r.name for r in reservations if (r.replicas or 0) > 0}
        assert len(live) <= len(queued - completed)
        assert live == {f"job-{j}" for j in queued - completed}
    assert sum(r.replicas or 0 for r in reservations) == len(queued - completed)


# --- bounded reservations (no markers in the HRA) ---------------------------------------------------


def _bounded(
    reservations: Sequence[CapacityReservation], action: str, job_id: int, repository: str | None = "o/r"
) -> ReservationUpdate:
    return apply_workflow_job_event(
        reservations,
        action,
        "success",
        7,
        NOW,
        dt.timedelta(minutes=10),
        10,
        job_id=job_id,
        repository=repository,
        keep_markers=False,
    )


@pytest.mark.parametrize(
    ("before", "action", "job_id", "after", "delta"),
    [
        ([], "queued", 1, ["job-1@o/r"], 1),
        (["job-1@o/r"], "queued", 1, ["job-1@o/r"], 0),  # a redelivery
        (["job-1"], "queued", 1, ["job-1"], 0),  # an old-style name is the same job
        (["job-1@o/r", "job-2@o/r"], "completed", 1, ["job-2@o/r"], -1),  # removed, no marker
        (["job-1"], "completed", 1, [], -1),
        (["job-2@o/r"], "completed", 1, ["job-2@o/r"], 0),  # completed before queued: nothing written
        (["marker:job-9@o/r", "job-2@o/r"], "queued", 3, ["job-2@o/r", "job-3@o/r"], 1),  # compacted
    ],
)
def test_reservations_stay_as_long_as_the_live_jobs(
    before: list[str], action: str, job_id: int, after: list[str], delta: int
) -> None:
    existing = [
        CapacityReservation(
            name=n.removeprefix("marker:"),
            effective_time=NOW - dt.timedelta(minutes=1),
            expiration_time=NOW + dt.timedelta(minutes=5),
            replicas=0 if n.startswith("marker:") else 1,
        )
        for n in before
    ]
    update = _bounded(existing, action, job_id)
    assert [r.name for r in update.reservations] == after
    assert update.delta == delta


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("job-12", (12, None)),
        ("job-12@octo/app", (12, "octo/app")),
        ("job-x", None),
        ("nightly", None),
        (None, None),
    ],
)
def test_job_reservation_names(name: str | None, parsed: tuple[int, str | None] | None) -> None:
    assert parse_job_reservation(name) == parsed
    if parsed is not None:
        assert job_reservation_name(*parsed) == name
