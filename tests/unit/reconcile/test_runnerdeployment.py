"""The RunnerDeployment's rollout between the replica sets of its templates."""

from __future__ import annotations

import pytest

from runnerd.reconcile.runnerdeployment import ReplicaSetView, RolloutPlan, plan_rollout


def rs(name: str, h: str, replicas: int, ready: int, runners: int, created: float = 0.0) -> ReplicaSetView:
    return ReplicaSetView(
        name=name, template_hash=h, replicas=replicas, ready=ready, runners=runners, created_at=created
    )


@pytest.mark.parametrize(
    ("desired", "replica_sets", "expected"),
    [
        pytest.param(2, [], RolloutPlan(create=True), id="first-replica-set"),
        pytest.param(2, [rs("a", "h1", 2, 2, 2)], RolloutPlan(), id="steady"),
        pytest.param(5, [rs("a", "h1", 2, 2, 2)], RolloutPlan(scale={"a": 5}), id="scale-current"),
        pytest.param(
            2,
            [rs("old", "h0", 2, 2, 2)],
            RolloutPlan(create=True),
            id="template-change-creates-new-keeps-old",
        ),
        pytest.param(
            2,
            [rs("old", "h0", 2, 2, 2, 1), rs("new", "h1", 2, 1, 2, 2)],
            RolloutPlan(),
            id="old-kept-until-new-ready",
        ),
        pytest.param(
            2,
            [rs("old", "h0", 2, 2, 2, 1), rs("new", "h1", 2, 2, 2, 2)],
            RolloutPlan(scale={"old": 0}),
            id="old-scaled-to-zero-once-new-ready",
        ),
        pytest.param(
            2,
            [rs("old", "h0", 0, 0, 1, 1), rs("new", "h1", 2, 2, 2, 2)],
            RolloutPlan(),
            id="old-waits-for-busy-runner",
        ),
        pytest.param(
            2,
            [rs("old", "h0", 0, 0, 0, 1), rs("new", "h1", 2, 2, 2, 2)],
            RolloutPlan(delete=("old",)),
            id="empty-old-deleted",
        ),
        pytest.param(
            0,
            [rs("old", "h0", 3, 3, 3, 1), rs("new", "h1", 3, 0, 0, 2)],
            RolloutPlan(scale={"new": 0, "old": 0}),
            id="scale-to-zero-during-rollout",
        ),
        pytest.param(
            1,
            [rs("dup", "h1", 1, 0, 0, 1), rs("new", "h1", 1, 1, 1, 2)],
            RolloutPlan(scale={"dup": 0}),
            id="older-duplicate-of-current-hash-retired",
        ),
    ],
)
def test_plan_rollout(desired: int, replica_sets: list[ReplicaSetView], expected: RolloutPlan) -> None:
    assert plan_rollout(desired, "h1", replica_sets) == expected
