"""migrate-from-arc's decisions: ARC's finalizers and StatefulSets go only when their runner is done
or idle; a busy (or unknown) runner waits."""

from __future__ import annotations

from typing import Any

import pytest

from runnerd.reconcile.lifecycle import GitHubState
from runnerd.reconcile.migration import ARC_POD_FINALIZER, Action, RunnerState, Step, plan, runner_state

NS = "ci"


def pod(
    name: str, *, state: str = "running", runnerset: str | None = None, finalizer: bool = True
) -> dict[str, Any]:
    labels = {"runnerset-name": runnerset} if runnerset else {"actions-runner": ""}
    statuses = {
        "pending": ({"waiting": {"reason": "ContainerCreating"}}, "Pending"),
        "running": ({"running": {"startedAt": "2024-05-01T10:00:00Z"}}, "Running"),
        "exited": ({"terminated": {"exitCode": 0}}, "Running"),
        "succeeded": ({"terminated": {"exitCode": 0}}, "Succeeded"),
    }
    container_state, phase = statuses[state]
    return {
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": labels,
            "finalizers": [ARC_POD_FINALIZER] if finalizer else [],
        },
        "spec": {"containers": [{"name": "runner", "env": [{"name": "RUNNER_ORG", "value": "octo"}]}]},
        "status": {"phase": phase, "containerStatuses": [{"name": "runner", "state": container_state}]},
    }


def arc_sts(name: str) -> dict[str, Any]:
    return {
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NS, "labels": {"runnerset-name": "rs"}},
    }


@pytest.mark.parametrize(
    ("state", "github", "expected"),
    [
        ("succeeded", GitHubState.BUSY, RunnerState.DONE),
        ("exited", GitHubState.UNKNOWN, RunnerState.DONE),
        ("running", GitHubState.BUSY, RunnerState.BUSY),
        ("running", GitHubState.IDLE, RunnerState.IDLE),
        ("running", GitHubState.OFFLINE, RunnerState.IDLE),
        ("pending", GitHubState.ABSENT, RunnerState.IDLE),
        ("running", GitHubState.ABSENT, RunnerState.UNKNOWN),
        ("running", GitHubState.UNKNOWN, RunnerState.UNKNOWN),
    ],
)
def test_runner_state(state: str, github: GitHubState, expected: RunnerState) -> None:
    assert runner_state(pod("r", state=state), github) is expected


def test_finalizers_go_for_done_and_idle_runners_only() -> None:
    pods = [
        pod("busy"),
        pod("idle"),
        pod("done", state="succeeded"),
        pod("unknown"),
        pod("released", finalizer=False),
        {
            **pod("not-a-runner"),
            "metadata": {"name": "x", "namespace": NS, "finalizers": [ARC_POD_FINALIZER]},
        },
    ]
    github = {(NS, "busy"): GitHubState.BUSY, (NS, "idle"): GitHubState.IDLE}
    assert plan(pods, [], github) == [
        Action(Step.WAIT, "Pod", NS, "busy", "busy", "busy"),
        Action(Step.REMOVE_FINALIZER, "Pod", NS, "done", "done", "done"),
        Action(Step.REMOVE_FINALIZER, "Pod", NS, "idle", "idle", "idle"),
        Action(Step.WAIT, "Pod", NS, "unknown", "unknown", "unknown"),
    ]


def test_arc_statefulsets_deregistered_when_idle_deleted_when_done_kept_when_busy() -> None:
    sets = [
        arc_sts("rs-idle"),
        arc_sts("rs-done"),
        arc_sts("rs-busy"),
        {**arc_sts("rs-ours"), "metadata": {**arc_sts("rs-ours")["metadata"], "labels": {
            "runnerset-name": "rs", "runner-statefulset-name": "rs-ours"}}},
    ]  # fmt: skip
    pods = [
        pod("rs-idle-0", runnerset="rs"),
        pod("rs-done-0", runnerset="rs", state="succeeded", finalizer=False),
        pod("rs-busy-0", runnerset="rs"),
    ]
    github = {(NS, "rs-idle-0"): GitHubState.IDLE, (NS, "rs-busy-0"): GitHubState.BUSY}
    assert plan(pods, sets, github) == [
        Action(Step.WAIT, "StatefulSet", NS, "rs-busy", "rs-busy-0", "busy"),
        Action(Step.DELETE_STATEFULSET, "StatefulSet", NS, "rs-done", "rs-done-0", "done"),
        Action(Step.DEREGISTER, "StatefulSet", NS, "rs-idle", "rs-idle-0", "idle"),
        Action(Step.REMOVE_FINALIZER, "Pod", NS, "rs-idle-0", "rs-idle-0", "idle"),
        Action(Step.DELETE_STATEFULSET, "StatefulSet", NS, "rs-idle", "rs-idle-0", "idle"),
    ]
