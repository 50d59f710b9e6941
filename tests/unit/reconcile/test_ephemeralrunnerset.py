"""ARC's EphemeralRunnerSet rules (reconcile/ephemeralrunnerset.py): replicas with patchID."""

from __future__ import annotations

import pytest

from runnerd.api.scaleset import constants as c
from runnerd.reconcile.ephemeralrunnerset import RunnerView, SetDecision, decide_set, runner_view

P, R, S, F = c.PHASE_PENDING, c.PHASE_RUNNING, c.PHASE_SUCCEEDED, c.PHASE_FAILED


def v(
    name: str,
    phase: str = R,
    *,
    rid: int | None = 1,
    busy: bool = False,
    patch: int = 1,
    t: float = 0.0,
    deleting: bool = False,
) -> RunnerView:
    return RunnerView(name, phase, deleting, rid, busy, patch, t)


@pytest.mark.parametrize(
    ("replicas", "patch_id", "runners", "expected", "want"),
    [
        pytest.param(3, 1, [], 0, SetDecision(create=3), id="scale-up-from-zero"),
        pytest.param(3, 2, [v("a")], 1, SetDecision(create=1), id="expected-creations-count"),
        pytest.param(3, 1, [v("a", patch=1)], 0, SetDecision(), id="same-patch-already-acted-on"),
        pytest.param(1, 2, [v("a"), v("b")], 0, SetDecision(), id="patch-gt-0-never-scales-down"),
        pytest.param(
            0,
            0,
            [v("old", t=1), v("new", t=2), v("p", P, t=3)],
            0,
            SetDecision(remove=("p", "old", "new")),
            id="patch-0-trims-pending-then-oldest",
        ),
        pytest.param(
            1,
            0,
            [v("busy", busy=True, t=1), v("unreg", rid=None, t=2), v("idle", t=3)],
            0,
            SetDecision(remove=("idle",)),
            id="never-busy-or-unregistered",
        ),
        pytest.param(
            0,
            0,
            [v("done", S), v("gone", deleting=True)],
            0,
            SetDecision(delete_finished=("done",)),
            id="finished-deleted-deleting-ignored",
        ),
        pytest.param(2, 3, [v("bad", F, patch=1)], 0, SetDecision(create=1), id="failed-counts-toward-total"),
    ],
)
def test_decide_set(
    replicas: int, patch_id: int, runners: list[RunnerView], expected: int, want: SetDecision
) -> None:
    got = decide_set(replicas, patch_id, runners, expected=expected)
    assert (got.create, got.remove, got.delete_finished) == (want.create, want.remove, want.delete_finished)


def test_counts_and_status() -> None:
    runners = [v("a"), v("b", P), v("c", F), v("d", S), v("e", deleting=True)]
    status = decide_set(4, 1, runners).status()
    assert status == {
        "currentReplicas": 3,
        "pendingEphemeralRunners": 1,
        "runningEphemeralRunners": 1,
        "failedEphemeralRunners": 1,
    }


@pytest.mark.parametrize(
    ("obj", "view"),
    [
        pytest.param(
            {
                "metadata": {"name": "a", "annotations": {c.ANNOTATION_PATCH_ID: "4"}},
                "status": {"phase": "Running", "runnerId": 9, "jobId": "j"},
            },
            RunnerView("a", "Running", False, 9, True, 4, 5.0),
            id="busy-by-jobId",
        ),
        pytest.param(
            {
                "metadata": {"name": "b", "annotations": {c.ANNOTATION_PATCH_ID: "x"}},
                "status": {"runnerId": 0, "jobRequestId": 3},
            },
            RunnerView("b", "", False, None, True, 0, 5.0),
            id="old-listener-jobRequestId-bad-patch-id",
        ),
    ],
)
def test_runner_view(obj: dict[str, object], view: RunnerView) -> None:
    assert runner_view(obj, 5.0) == view
