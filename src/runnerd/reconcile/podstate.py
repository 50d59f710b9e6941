"""Where a runner pod stands, classified from the pod dict alone (pure).

The controller turns these into Runner status, events and conditions: a pod that cannot be
scheduled or whose image cannot be pulled will not fix itself, and the user needs the reason and
the message the cluster gave, not just "Pending".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from runnerd.api import parse_time
from runnerd.reconcile.credentials import ANNOTATION_RUNNER_ID
from runnerd.reconcile.runnerpod import RUNNER_CONTAINER

IMAGE_PULL_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "RegistryUnavailable",
        "SignatureValidationFailed",
    }
)
"""Waiting reasons of a container whose image cannot be pulled."""

CONTAINER_ERROR_REASONS = frozenset(
    {
        "CreateContainerConfigError",  # e.g. a Secret/ConfigMap in env/envFrom does not exist
        "CreateContainerError",
        "RunContainerError",
        "PreCreateHookError",
        "PreStartHookError",
        "CrashLoopBackOff",
    }
)
"""Waiting reasons of a container that cannot be started."""


class RunnerPodPhase(StrEnum):
    PENDING = "Pending"  # being scheduled, pulling images, starting containers
    UNSCHEDULABLE = "Unschedulable"  # PodScheduled=False, reason Unschedulable
    IMAGE_PULL_ERROR = "ImagePullError"  # a container waits on ErrImagePull/ImagePullBackOff/...
    CONTAINER_ERROR = (
        "ContainerError"  # a container cannot be created/started (CreateContainerConfigError, ...)
    )
    RUNNING = "Running"  # runner container running, pod not Ready
    READY = "Ready"  # runner container running, pod Ready
    RUNNER_EXITED = "RunnerExited"  # runner container terminated, pod not finished yet (sidecars)
    SUCCEEDED = "Succeeded"  # pod phase Succeeded
    FAILED = "Failed"  # pod phase Failed (container error, eviction, node rejection, ...)
    DELETING = "Deleting"  # deletionTimestamp set
    UNKNOWN = "Unknown"  # pod phase Unknown (node lost contact)


_STUCK = frozenset(
    {RunnerPodPhase.UNSCHEDULABLE, RunnerPodPhase.IMAGE_PULL_ERROR, RunnerPodPhase.CONTAINER_ERROR}
)
_EXITED = frozenset({RunnerPodPhase.RUNNER_EXITED, RunnerPodPhase.SUCCEEDED, RunnerPodPhase.FAILED})

Lifecycle = Literal["Pending", "Running", "Exited", "Deleting"]


@dataclass(frozen=True)
class RunnerPodState:
    phase: RunnerPodPhase
    reason: str = ""
    """The cluster's reason (Unschedulable, ImagePullBackOff, Evicted, Error, OOMKilled, ...)."""
    message: str = ""
    """The cluster's message, e.g. "0/4 nodes are available: 4 Insufficient nvidia.com/gpu. ..."."""
    container: str | None = None
    """The container the reason is about (image pull and container errors, terminations)."""
    exit_code: int | None = None
    """Exit code of the runner container once it terminated."""
    runner_id: int | None = None
    """From the ``actions-runner/id`` annotation."""
    running_since: dt.datetime | None = None
    """When the runner container started running."""
    ready_since: dt.datetime | None = None
    """When the pod last became Ready (ARC's registration timeout counts from here)."""

    @property
    def exited(self) -> bool:
        """The runner process is gone: it can hold no job any more."""
        return self.phase in _EXITED

    @property
    def stuck(self) -> bool:
        """Pending for a reason that needs a change by someone (capacity, image, config)."""
        return self.phase in _STUCK

    @property
    def lifecycle(self) -> Lifecycle:
        """The coarse view: Pending / Running / Exited / Deleting."""
        if self.phase is RunnerPodPhase.DELETING:
            return "Deleting"
        if self.exited:
            return "Exited"
        if self.phase in (RunnerPodPhase.RUNNING, RunnerPodPhase.READY):
            return "Running"
        return "Pending"


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return cond
    return None


def _statuses(status: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    return [s for s in status.get(key) or [] if isinstance(s, Mapping)]


def _state(container_status: Mapping[str, Any], which: str) -> Mapping[str, Any] | None:
    state = container_status.get("state") or {}
    value = state.get(which)
    return value if isinstance(value, Mapping) else None


def _runner_id(metadata: Mapping[str, Any]) -> int | None:
    raw = (metadata.get("annotations") or {}).get(ANNOTATION_RUNNER_ID)
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _waiting_problem(
    statuses: Sequence[Mapping[str, Any]],
) -> tuple[RunnerPodPhase, str, str, str] | None:
    for cs in statuses:
        waiting = _state(cs, "waiting")
        if waiting is None:
            continue
        reason = str(waiting.get("reason") or "")
        message = str(waiting.get("message") or "")
        if reason in IMAGE_PULL_REASONS:
            return RunnerPodPhase.IMAGE_PULL_ERROR, reason, message, str(cs.get("name"))
        if reason in CONTAINER_ERROR_REASONS:
            return RunnerPodPhase.CONTAINER_ERROR, reason, message, str(cs.get("name"))
    return None


def runner_container_state(pod: Mapping[str, Any], container: str = RUNNER_CONTAINER) -> RunnerPodState:
    """Classify a runner pod (as the API returns it). First match wins:

    deleting; pod Succeeded / Failed; runner container terminated; a container waiting on an image
    pull or container error; PodScheduled=False (Unschedulable); Running (Ready or not); Pending.
    """
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    init_statuses = _statuses(status, "initContainerStatuses")
    statuses = _statuses(status, "containerStatuses")
    runner = next((s for s in statuses if s.get("name") == container), None)
    terminated = _state(runner, "terminated") if runner is not None else None
    running = _state(runner, "running") if runner is not None else None
    exit_code = terminated.get("exitCode") if terminated is not None else None
    exit_code = exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None
    ready_cond = _condition(status, "Ready")
    ready = ready_cond is not None and ready_cond.get("status") == "True"
    common: dict[str, Any] = {
        "exit_code": exit_code,
        "runner_id": _runner_id(metadata),
        "running_since": _time(running.get("startedAt")) if running is not None else None,
        "ready_since": _time(ready_cond.get("lastTransitionTime")) if ready and ready_cond else None,
    }
    pod_phase = status.get("phase")

    if metadata.get("deletionTimestamp"):
        return RunnerPodState(RunnerPodPhase.DELETING, reason="Terminating", **common)

    if pod_phase in ("Succeeded", "Failed"):
        phase = RunnerPodPhase.SUCCEEDED if pod_phase == "Succeeded" else RunnerPodPhase.FAILED
        reason, message, about = _why_finished(status, terminated, init_statuses, container)
        return RunnerPodState(phase, reason=reason, message=message, container=about, **common)

    if terminated is not None:
        return RunnerPodState(
            RunnerPodPhase.RUNNER_EXITED,
            reason=str(terminated.get("reason") or ""),
            message=str(terminated.get("message") or ""),
            container=container,
            **common,
        )

    problem = _waiting_problem([*init_statuses, *statuses])
    if problem is not None:
        phase, reason, message, about_container = problem
        return RunnerPodState(phase, reason=reason, message=message, container=about_container, **common)

    scheduled = _condition(status, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        reason = str(scheduled.get("reason") or "")
        phase = RunnerPodPhase.UNSCHEDULABLE if reason == "Unschedulable" else RunnerPodPhase.PENDING
        return RunnerPodState(phase, reason=reason, message=str(scheduled.get("message") or ""), **common)

    if pod_phase == "Running" and (running is not None or runner is None):
        phase = RunnerPodPhase.READY if ready else RunnerPodPhase.RUNNING
        return RunnerPodState(phase, **common)

    if pod_phase == "Unknown":
        reason, message = str(status.get("reason") or ""), str(status.get("message") or "")
        return RunnerPodState(RunnerPodPhase.UNKNOWN, reason=reason, message=message, **common)

    # Pending (or Running with the runner container not started yet): say what it waits for.
    reason, message, about = _waiting_for(init_statuses, statuses, container)
    return RunnerPodState(RunnerPodPhase.PENDING, reason=reason, message=message, container=about, **common)


def _why_finished(
    status: Mapping[str, Any],
    terminated: Mapping[str, Any] | None,
    init_statuses: Sequence[Mapping[str, Any]],
    container: str,
) -> tuple[str, str, str | None]:
    """Reason, message and container of a pod that Succeeded or Failed: the pod's own, else the
    runner container's termination, else the first init container that exited non-zero."""
    reason, message = str(status.get("reason") or ""), str(status.get("message") or "")
    if terminated is not None:
        reason = reason or str(terminated.get("reason") or "")
        message = message or str(terminated.get("message") or "")
        return reason, message, container
    failed_init = next(
        (s for s in init_statuses if (_state(s, "terminated") or {}).get("exitCode", 0) != 0), None
    )
    if failed_init is None:
        return reason, message, None
    t = _state(failed_init, "terminated") or {}
    reason = reason or str(t.get("reason") or "")
    message = message or str(t.get("message") or f"init container exited with {t.get('exitCode')}")
    return reason, message, str(failed_init.get("name"))


def _waiting_for(
    init_statuses: Sequence[Mapping[str, Any]], statuses: Sequence[Mapping[str, Any]], container: str
) -> tuple[str, str, str | None]:
    """Reason, message and container of what a pending pod waits for: the first init container or
    the runner container in ``waiting``; empty when none is."""
    for cs in [*init_statuses, *statuses]:
        waiting = _state(cs, "waiting")
        if waiting is not None and (cs.get("name") == container or cs in init_statuses):
            return str(waiting.get("reason") or ""), str(waiting.get("message") or ""), str(cs.get("name"))
    return "", "", None
