"""Taking over what ARC's legacy controller left, without killing a running job (pure decisions).

``runnerd migrate-from-arc`` (:mod:`runnerd.migrate`) observes ARC's runner pods, ARC's RunnerSet
StatefulSets and GitHub's view of their runners, and asks :func:`plan` what may be done now:

* **ARC's pod finalizer** (``actions.summerwind.dev/runner-pod``, which only ARC removes: a pod
  that keeps it hangs in ``Terminating`` once deleted) is removed from a runner pod whose runner is
  *done* (the runner container has terminated, or the pod has finished) or *idle* (GitHub lists the
  runner online and not busy, or does not list it and its container has not started: no job can
  reach it). A *busy* runner's pod keeps it (the pod keeps its job either way; the finalizer only
  matters once something deletes the pod) and is looked at again on the next pass; so is a runner
  whose state GitHub could not tell (no credentials, or the listing failed).
* **ARC's RunnerSet StatefulSets** (``runnerset-name`` without runnerd's ``runner-statefulset-name``
  label): runnerd makes its own per-runner StatefulSets and Secrets, and ARC's pods, recreated
  without ARC's token-injecting webhook, could not register. A StatefulSet whose runner is done is
  deleted; one whose runner is idle is first removed from GitHub (which refuses a busy runner: 422,
  and the StatefulSet waits) and then deleted; a busy one waits for its job.

Nothing here deletes a busy runner's pod; every step can be repeated (the command loops with
``--wait`` until nothing is left).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from runnerd.api import RunnerScopeKind
from runnerd.reconcile.lifecycle import GitHubState
from runnerd.reconcile.podstate import runner_container_state
from runnerd.reconcile.runnerpod import LABEL_RUNNER, RUNNER_CONTAINER, env_value
from runnerd.reconcile.runnerset import LABEL_RUNNER_STATEFULSET_NAME, LABEL_RUNNERSET_NAME

ARC_POD_FINALIZER = "actions.summerwind.dev/runner-pod"
ARC_WEBHOOK_CONFIGURATIONS = (
    "actions-runner-controller-mutating-webhook-configuration",
    "actions-runner-controller-validating-webhook-configuration",
)
"""ARC's admission webhooks: they fail closed, so with ARC gone they block Runners and runner pods."""

_SCOPE_ENV: tuple[tuple[RunnerScopeKind, str], ...] = (
    ("enterprise", "RUNNER_ENTERPRISE"),
    ("organization", "RUNNER_ORG"),
    ("repository", "RUNNER_REPO"),
)


class RunnerState(StrEnum):
    DONE = "done"
    IDLE = "idle"
    BUSY = "busy"
    UNKNOWN = "unknown"


class Step(StrEnum):
    REMOVE_FINALIZER = "remove-finalizer"
    DEREGISTER = "deregister"
    DELETE_STATEFULSET = "delete-statefulset"
    WAIT = "wait"


@dataclass(frozen=True)
class Action:
    step: Step
    kind: str  # Pod or StatefulSet
    namespace: str
    name: str
    runner: str
    reason: str


def scope_of(pod_spec: Mapping[str, Any]) -> tuple[RunnerScopeKind, str] | None:
    """The runner's GitHub scope, from its container env (ARC's RUNNER_ORG/REPO/ENTERPRISE)."""
    runner: Mapping[str, Any] = next(
        (c for c in pod_spec.get("containers") or () if c.get("name") == RUNNER_CONTAINER), {}
    )
    for kind, var in _SCOPE_ENV:
        value = env_value(runner.get("env") or [], var)
        if value:
            return kind, value
    return None


def runner_state(pod: Mapping[str, Any] | None, github: GitHubState) -> RunnerState:
    """Done, idle, busy or unknown, from the pod and GitHub's listing (UNKNOWN: not asked)."""
    if pod is not None:
        state = runner_container_state(pod)
        phase = (pod.get("status") or {}).get("phase")
        if state.lifecycle == "Exited" or phase in ("Succeeded", "Failed"):
            return RunnerState.DONE
    if github is GitHubState.BUSY:
        return RunnerState.BUSY
    if github in (GitHubState.IDLE, GitHubState.OFFLINE):
        # OFFLINE: registered but not connected (a pod still starting): no job can reach it
        return RunnerState.IDLE
    if github is GitHubState.ABSENT:
        started = pod is not None and runner_container_state(pod).lifecycle != "Pending"
        return RunnerState.UNKNOWN if started else RunnerState.IDLE
    return RunnerState.UNKNOWN


def is_arc_runner_pod(pod: Mapping[str, Any]) -> bool:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    return ARC_POD_FINALIZER in (meta.get("finalizers") or ()) and (
        LABEL_RUNNER in labels or LABEL_RUNNERSET_NAME in labels
    )


def is_arc_statefulset(sts: Mapping[str, Any]) -> bool:
    labels = (sts.get("metadata") or {}).get("labels") or {}
    return LABEL_RUNNERSET_NAME in labels and LABEL_RUNNER_STATEFULSET_NAME not in labels


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def plan(
    pods: Sequence[Mapping[str, Any]],
    statefulsets: Sequence[Mapping[str, Any]],
    github: Mapping[tuple[str, str], GitHubState],
) -> list[Action]:
    """What may be done now. ``github`` maps (namespace, runner name) to GitHub's state of that
    runner (missing: not known). RunnerSet pods are ``<statefulset>-0``."""
    actions: list[Action] = []
    pods_by_key = {_key(p): p for p in pods}
    arc_sets = [s for s in statefulsets if is_arc_statefulset(s)]
    set_pods = {(ns, f"{name}-0") for ns, name in map(_key, arc_sets)}
    for key, pod in sorted(pods_by_key.items()):
        if not is_arc_runner_pod(pod) or key in set_pods:
            continue
        state = runner_state(pod, github.get(key, GitHubState.UNKNOWN))
        step = Step.REMOVE_FINALIZER if state in (RunnerState.DONE, RunnerState.IDLE) else Step.WAIT
        actions.append(Action(step, "Pod", key[0], key[1], key[1], state.value))
    for sts in sorted(arc_sets, key=_key):
        ns, name = _key(sts)
        runner = f"{name}-0"
        set_pod = pods_by_key.get((ns, runner))
        state = runner_state(set_pod, github.get((ns, runner), GitHubState.UNKNOWN))
        if state in (RunnerState.BUSY, RunnerState.UNKNOWN):
            actions.append(Action(Step.WAIT, "StatefulSet", ns, name, runner, state.value))
            continue
        if state is RunnerState.IDLE and github.get((ns, runner)) in (GitHubState.IDLE, GitHubState.OFFLINE):
            actions.append(Action(Step.DEREGISTER, "StatefulSet", ns, name, runner, state.value))
        if set_pod is not None and ARC_POD_FINALIZER in (
            (set_pod.get("metadata") or {}).get("finalizers") or ()
        ):
            actions.append(Action(Step.REMOVE_FINALIZER, "Pod", ns, runner, runner, state.value))
        actions.append(Action(Step.DELETE_STATEFULSET, "StatefulSet", ns, name, runner, state.value))
    return actions
