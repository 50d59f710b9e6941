"""The RunnerReplicaSet's replica plan and effectiveTime hold (also the RunnerSet's)."""

from __future__ import annotations

import pytest

from runnerd.reconcile.replicas import RunnerPhase, RunnerView
from runnerd.reconcile.runnerreplicaset import FillMark, ReplicaPlan, plan_replicas, replacement_hold

P = RunnerPhase


def r(name: str, phase: RunnerPhase, created: float = 0.0, deleting: bool = False) -> RunnerView:
    return RunnerView(name=name, created_at=created, phase=phase, deleting=deleting)


@pytest.mark.parametrize(
    ("desired", "runners", "expected"),
    [
        pytest.param(0, [], ReplicaPlan(), id="nothing-to-do-at-zero"),
        pytest.param(3, [], ReplicaPlan(create=3), id="scale-from-zero"),
        pytest.param(2, [r("a", P.IDLE)], ReplicaPlan(create=1), id="scale-up-by-one"),
        pytest.param(1, [r("a", P.IDLE)], ReplicaPlan(), id="steady"),
        pytest.param(
            1, [r("a", P.IDLE), r("b", P.COMPLETED)], ReplicaPlan(), id="completed-runner-not-counted"
        ),
        pytest.param(
            2,
            [r("a", P.IDLE), r("b", P.BUSY, deleting=True)],
            ReplicaPlan(create=1),
            id="deleting-not-counted",
        ),
        pytest.param(
            0,
            [r("a", P.IDLE, 1), r("b", P.IDLE, 2), r("c", P.BUSY, 3)],
            ReplicaPlan(delete=("b", "a")),
            id="busy-never-removed-idle-newest-first",
        ),
        pytest.param(0, [r("a", P.BUSY), r("b", P.BUSY)], ReplicaPlan(), id="all-busy-remove-none"),
        pytest.param(
            1,
            [r("idle", P.IDLE, 9), r("pending", P.PENDING, 1), r("reg", P.REGISTERING, 5)],
            ReplicaPlan(delete=("pending", "reg")),
            id="not-yet-online-go-first",
        ),
        pytest.param(
            2,
            [r("f", P.FAILED, 1), r("p", P.PENDING, 2), r("i", P.IDLE, 3)],
            ReplicaPlan(delete=("f",)),
            id="failed-goes-before-pending",
        ),
        pytest.param(
            1,
            [r("b", P.BUSY, 1), r("i1", P.IDLE, 2), r("i2", P.IDLE, 3)],
            ReplicaPlan(delete=("i2", "i1")),
            id="keep-the-busy-one-even-if-older",
        ),
        pytest.param(
            0,
            [r("x", P.IDLE, 5), r("y", P.IDLE, 5)],
            ReplicaPlan(delete=("x", "y")),
            id="ties-broken-by-name",
        ),
    ],
)
def test_plan_replicas(desired: int, runners: list[RunnerView], expected: ReplicaPlan) -> None:
    assert plan_replicas(desired, runners) == expected


def test_plan_replicas_rejects_negative() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        plan_replicas(-1, [])


# --- effectiveTime: finished ephemeral runners wait for the autoscaler's next decision -------------

MARK = FillMark(effective_time=100.0, desired=3)


@pytest.mark.parametrize(
    ("ephemeral", "effective", "desired", "mark", "since", "held", "until"),
    [
        (True, 100.0, 3, MARK, None, True, 1030.0),  # a runner finished; no new decision: held
        (True, 90.0, 3, MARK, None, True, 1030.0),  # an older effectiveTime (a reservation released)
        (True, 100.0, 2, MARK, None, True, 1030.0),  # fewer wanted: still no new decision
        (True, 100.0, 3, MARK, 990.0, True, 1020.0),  # the hold counts from the first gap
        (True, 100.0, 3, MARK, 960.0, False, None),  # held 30 s: a lost completed delivery, replace
        (True, 101.0, 3, MARK, None, False, None),  # a newer decision (a new job): fill
        (True, 100.0, 4, MARK, None, False, None),  # more wanted (a metric): fill
        (True, None, 3, MARK, None, False, None),  # no effectiveTime: no webhook scaling
        (True, 100.0, 3, None, None, False, None),  # first fill after a start
        (False, 100.0, 3, MARK, None, False, None),  # persistent runners are always replaced
    ],
)
def test_replacement_hold(
    ephemeral: bool,
    effective: float | None,
    desired: int,
    mark: FillMark | None,
    since: float | None,
    held: bool,
    until: float | None,
) -> None:
    hold = replacement_hold(
        ephemeral=ephemeral,
        effective_time=effective,
        desired=desired,
        mark=mark,
        deficit_since=since,
        now=1000.0,
        max_hold=30.0,
    )
    assert (hold.held, hold.until) == (held, until)
