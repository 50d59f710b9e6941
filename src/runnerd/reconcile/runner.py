"""The Runner kind's own pure pieces (no I/O): how it registers, and what its status says.

A Runner's lifecycle rules are :func:`runnerd.reconcile.lifecycle.decide`'s (kind ``RUNNER``); the
Runner controller (:mod:`runnerd.controller.runner`) observes, decides and acts with these.
"""

from __future__ import annotations

from typing import Any

from runnerd.api import Runner
from runnerd.reconcile.lifecycle import RunnerDecision
from runnerd.reconcile.podstate import RunnerPodState
from runnerd.reconcile.replicas import RunnerPhase

REGISTRATION_ANNOTATION_VALUES = ("jit", "token")
WRITTEN_PHASES = frozenset({RunnerPhase.IDLE, RunnerPhase.BUSY, RunnerPhase.FAILED})
"""The only phases written to a Runner's status (two writes for a typical ephemeral runner: Idle,
Running). A Runner with no ``status.phase`` is starting: pending, or registering with GitHub."""


def uses_jit(runner: Runner, *, forced: str | None, mode: str, default_image: str) -> bool:
    """A JIT config (else a registration token): ``forced`` by the Runner's annotation, else by the
    controller's ``mode`` (``auto``: tokens only for images that need RUNNER_TOKEN). GitHub's JIT
    runners are always ephemeral."""
    if forced in REGISTRATION_ANNOTATION_VALUES:
        return forced == "jit" and runner.spec.effective_ephemeral
    if not runner.spec.effective_ephemeral:
        return False
    if mode != "auto":
        return mode == "jit"
    image = runner.spec.image or default_image
    return "summerwind/actions-runner" not in image


def runner_status(
    runner: Runner, decision: RunnerDecision, pod_state: RunnerPodState | None
) -> dict[str, Any] | None:
    """The Runner's wanted ``status`` (None: leave it as it is)."""
    stuck = pod_state is not None and pod_state.stuck
    if decision.phase not in WRITTEN_PHASES and not stuck:
        return None
    phase = decision.phase or RunnerPhase.PENDING
    reason, message = (decision.reason, "") if phase is RunnerPhase.FAILED else ("", "")
    if pod_state is not None and pod_state.stuck:
        reason, message = pod_state.reason or pod_state.phase.value, pod_state.message
    scope = runner.spec.scope
    registration: dict[str, Any] = {"labels": list(runner.spec.labels)}
    if scope is not None:
        registration[scope.kind] = scope.name
    return {
        "phase": phase.value,
        "ready": phase in (RunnerPhase.IDLE, RunnerPhase.BUSY),
        "reason": reason,
        "message": message,
        "registration": registration,
    }
