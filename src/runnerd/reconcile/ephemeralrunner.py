"""One EphemeralRunner's facts and status (pure): what the shared lifecycle needs to decide, and
what ARC's ``kubectl get ephemeralrunners`` columns show.

The EphemeralRunner is the :attr:`~runnerd.reconcile.lifecycle.RunnerKind.EPHEMERAL` kind of the
one runner lifecycle (:func:`runnerd.reconcile.lifecycle.decide` holds its rules). Its signals:

* its runner's id: ``status.runnerId`` (written once its JIT Secret exists), or the Secret's;
* a job: ``status.jobId`` (the listener writes it on ``JobStarted``; ARC >= 0.13) or a
  ``jobRequestId`` (older listeners) — :attr:`GitHubState.BUSY`; its pod not Ready is the same sign;
* the service no longer has its registration (it answered 404, or accepted its removal) —
  :attr:`GitHubState.ABSENT`; otherwise a registered runner with a running pod is ``IDLE`` (the
  scale-set API has no per-runner online/busy listing), and one without ``OFFLINE``;
* its pods' failures, ``status.failures`` (pod uid -> time): the next pod waits
  ``POD_BACKOFF[len(failures)]`` seconds after the last one (ARC's table).

Status: ``phase`` is ARC's (the pod's: ``Pending``/``Running``; ``Succeeded`` once its runner exited
0; ``Failed`` when the EphemeralRunner is over for a failure), ``ready``, ``reason``, ``message``,
``runnerId``, ``runnerName``, ``failures``. The job fields belong to the listener and are never
written here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from runnerd.api.scaleset import EphemeralRunner
from runnerd.api.scaleset import constants as c
from runnerd.reconcile.lifecycle import (
    POD_STATUS,
    GitHubState,
    PodStatus,
    RunnerDecision,
    RunnerFacts,
    RunnerKind,
)
from runnerd.reconcile.podstate import RunnerPodPhase, RunnerPodState
from runnerd.reconcile.replicas import RunnerPhase

POD_BACKOFF = (0.0, 5.0, 10.0, 20.0, 40.0, 80.0)
"""Seconds before a new pod after the last failure, by the number of failures so far (ARC)."""

JOB_STILL_RUNNING_RETRY = 30.0
"""ARC retries the removal of a runner that holds a job every 30 s."""


def next_attempt_at(failures: Mapping[str, dt.datetime]) -> float:
    if not failures:
        return 0.0
    last = max(t.timestamp() for t in failures.values())
    return last + POD_BACKOFF[min(len(failures), len(POD_BACKOFF) - 1)]


def runner_state(er: EphemeralRunner, pod: PodStatus, *, runner_id: int | None, gone: bool) -> GitHubState:
    """The service's side of one runner, from what the controller knows (module docstring)."""
    if er.status.busy:
        return GitHubState.BUSY
    if runner_id is None:
        return GitHubState.UNKNOWN
    if gone:
        return GitHubState.ABSENT
    return GitHubState.IDLE if pod in (PodStatus.RUNNING, PodStatus.DELETING) else GitHubState.OFFLINE


def runner_facts(
    er: EphemeralRunner,
    pod_state: RunnerPodState | None,
    *,
    runner_id: int | None,
    gone: bool,
    now: float,
) -> RunnerFacts:
    """The lifecycle's facts for one EphemeralRunner and its pod."""
    pod = POD_STATUS[pod_state.lifecycle] if pod_state is not None else PodStatus.ABSENT
    finalizers = er.metadata.finalizers
    running_since = None
    if pod_state is not None and pod_state.running_since is not None:
        running_since = pod_state.running_since.timestamp()
    return RunnerFacts(
        now=now,
        kind=RunnerKind.EPHEMERAL,
        deleting=er.metadata.deletion_timestamp is not None,
        has_finalizer=c.FINALIZER_RUNNER_REGISTRATION in finalizers
        or c.FINALIZER_EPHEMERAL_RUNNER in finalizers,
        pod=pod,
        exit_code=pod_state.exit_code if pod_state is not None else None,
        runner_id=runner_id,
        github=runner_state(er, pod, runner_id=runner_id, gone=gone),
        pod_running_since=running_since,
        pod_ready=pod_state is None or pod_state.phase is not RunnerPodPhase.RUNNING,
        next_attempt_at=next_attempt_at(er.status.failures),
        failures=len(er.status.failures),
    )


def runner_status(
    er: EphemeralRunner,
    decision: RunnerDecision,
    pod_state: RunnerPodState | None,
    *,
    runner_id: int | None,
) -> dict[str, Any]:
    """The status fields this controller owns (a merge patch; the listener's job fields untouched)."""
    phase = c.PHASE_PENDING
    if decision.phase is RunnerPhase.COMPLETED:
        phase = c.PHASE_SUCCEEDED
    elif decision.phase is RunnerPhase.FAILED and decision.reason in ("TooManyPodFailures", "InvalidPod"):
        phase = c.PHASE_FAILED
    elif pod_state is not None and pod_state.lifecycle in ("Running", "Deleting"):
        phase = c.PHASE_RUNNING
    ready = pod_state is not None and pod_state.phase is RunnerPodPhase.READY
    reason = pod_state.reason if pod_state is not None and pod_state.reason else ""
    message = pod_state.message if pod_state is not None and pod_state.message else ""
    if decision.phase is RunnerPhase.FAILED and decision.reason:
        reason = reason or decision.reason
    want: dict[str, Any] = {"phase": phase, "ready": ready, "reason": reason, "message": message}
    if runner_id is not None:
        want["runnerId"] = runner_id
        want["runnerName"] = er.metadata.name
    return want


def status_differs(current: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    return any(current.get(k) != v and not (v in ("", None) and not current.get(k)) for k, v in want.items())
