"""An EphemeralRunner's facts and status (reconcile/ephemeralrunner.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from runnerd.api.scaleset import EphemeralRunner
from runnerd.reconcile.ephemeralrunner import next_attempt_at, runner_facts, runner_state, runner_status
from runnerd.reconcile.lifecycle import GitHubState, PodStatus, RunnerDecision, RunnerKind, Step
from runnerd.reconcile.podstate import RunnerPodPhase, RunnerPodState
from runnerd.reconcile.replicas import RunnerPhase

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def er(status: dict[str, Any] | None = None, **meta: Any) -> EphemeralRunner:
    return EphemeralRunner.from_dict(
        {"metadata": {"name": "r", "namespace": "n", "uid": "u", **meta}, "status": status or {}}
    )


@pytest.mark.parametrize(
    ("status", "pod", "runner_id", "gone", "state"),
    [
        pytest.param({"jobId": "j"}, PodStatus.RUNNING, 1, False, GitHubState.BUSY, id="listener-says-job"),
        pytest.param(
            {"jobRequestId": 4}, PodStatus.RUNNING, 1, True, GitHubState.BUSY, id="old-listener-job"
        ),
        pytest.param({}, PodStatus.ABSENT, None, False, GitHubState.UNKNOWN, id="not-registered"),
        pytest.param({}, PodStatus.RUNNING, 1, True, GitHubState.ABSENT, id="service-removed-it"),
        pytest.param({}, PodStatus.RUNNING, 1, False, GitHubState.IDLE, id="running-registered"),
        pytest.param({}, PodStatus.PENDING, 1, False, GitHubState.OFFLINE, id="pod-not-running"),
    ],
)
def test_runner_state(
    status: dict[str, Any], pod: PodStatus, runner_id: int | None, gone: bool, state: GitHubState
) -> None:
    assert runner_state(er(status), pod, runner_id=runner_id, gone=gone) is state


@pytest.mark.parametrize(
    ("failures", "at"),
    [
        pytest.param({}, 0.0, id="none"),
        pytest.param({"p1": T0}, T0.timestamp() + 5, id="one-5s"),
        pytest.param({f"p{i}": T0 for i in range(9)}, T0.timestamp() + 80, id="capped-80s"),
    ],
)
def test_back_off(failures: dict[str, dt.datetime], at: float) -> None:
    assert next_attempt_at(failures) == at


def test_facts_carry_the_kind_finalizers_and_failures() -> None:
    runner = er({"failures": {"p1": "2026-01-01T00:00:00Z"}}, finalizers=["other"])
    facts = runner_facts(runner, None, runner_id=None, gone=False, now=1.0)
    assert facts.kind is RunnerKind.EPHEMERAL
    assert not facts.has_finalizer
    assert facts.failures == 1


@pytest.mark.parametrize(
    ("decision", "pod", "phase", "ready"),
    [
        pytest.param(RunnerDecision(phase=RunnerPhase.PENDING), None, "Pending", False, id="pending"),
        pytest.param(
            RunnerDecision(phase=RunnerPhase.IDLE),
            RunnerPodState(RunnerPodPhase.READY),
            "Running",
            True,
            id="ready",
        ),
        pytest.param(
            RunnerDecision((Step.DELETE_RUNNER,), RunnerPhase.COMPLETED), None, "Succeeded", False, id="done"
        ),
        pytest.param(
            RunnerDecision((Step.DELETE_RUNNER,), RunnerPhase.FAILED, reason="TooManyPodFailures"),
            None,
            "Failed",
            False,
            id="too-many-failures",
        ),
    ],
)
def test_status(decision: RunnerDecision, pod: RunnerPodState | None, phase: str, ready: bool) -> None:
    want = runner_status(er({"jobId": "j"}), decision, pod, runner_id=3)
    assert (want["phase"], want["ready"], want["runnerId"], want["runnerName"]) == (phase, ready, 3, "r")
    assert "jobId" not in want  # the listener's field
