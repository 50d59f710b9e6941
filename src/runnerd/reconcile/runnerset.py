"""RunnerSet runners as StatefulSets: pure builders and decisions (no I/O).

ARC's RunnerSet makes one StatefulSet (``replicas: 1``) per runner and has a mutating pod webhook
inject ``RUNNER_NAME``/``RUNNER_TOKEN`` into the pods the StatefulSet controller creates. runnerd has
no admission webhooks, so:

* the runner's credentials (a JIT config, or a registration token) live in a per-runner Secret,
  owned by the StatefulSet (garbage-collected with it), and the runner container reads them with
  ``valueFrom.secretKeyRef``; the pod spec never holds them;
* ``RUNNER_NAME`` is the pod's name, ``<statefulset>-0``, known before the StatefulSet exists
  because the controller picks the StatefulSet's name itself (the same random suffix that
  ``generateName`` would give);
* a StatefulSet's pods must have ``restartPolicy: Always``, so the kubelet restarts a runner
  container that exits. Credentials are therefore made single-use: once GitHub lists the runner,
  the Secret's credential key is removed (:func:`consume_patch`) and a restarted or recreated
  container cannot register again (its env cannot be resolved). A runner container that has
  exited once is finished, whatever it does next (:func:`observe_pod`).

The lifecycle rules that protect jobs are :func:`runnerd.reconcile.runner.decide`'s, applied to the
StatefulSet as the unit (:func:`decide_runner`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from runnerd.api import JSON, RunnerConfig, RunnerPodSpec, RunnerScopeKind, RunnerSetSpec, RunnerSpec
from runnerd.manifests.pod import PodOptions, build_runner_pod
from runnerd.reconcile.credentials import (
    ANNOTATION_RUNNER_ID,
    ENV_JIT_CONFIG,
    CredentialKind,
    JitConfig,
    Registration,
    RegistrationToken,
    build_credentials_secret,
    owner_reference,
    secret_key,
)
from runnerd.reconcile.hashing import template_hash
from runnerd.reconcile.podstate import RunnerPodPhase, runner_container_state
from runnerd.reconcile.replicas import RunnerPhase, RunnerView
from runnerd.reconcile.runner import GitHubState, PodStatus, RunnerFacts, Step, decide
from runnerd.reconcile.runnerpod import (
    LABEL_RUNNER_TEMPLATE_HASH,
    RUNNER_CONTAINER,
    env_value,
    quantity_value,
)
from runnerd.reconcile.runnerreplicaset import ReplicaPlan, plan_replicas

LABEL_RUNNERSET_NAME = "runnerset-name"
"""On every StatefulSet, pod, Secret and volume claim of a RunnerSet (ARC's label)."""
LABEL_RUNNER_STATEFULSET_NAME = "runner-statefulset-name"
"""The runner's StatefulSet; in the StatefulSet's selector, so its volume claims carry it too."""
LABEL_TEMPLATE_HASH = LABEL_RUNNER_TEMPLATE_HASH
FINALIZER = "runnerd.dev/runner-registration"
"""On every runner StatefulSet: it goes only once its runner's registration is handled."""
ANNOTATION_CONSUMED_BY = "runnerd.dev/credentials-consumed-by"
"""On a runner Secret whose credentials were used: the UID of the pod that used them."""

STATEFULSET_NAME_MAX = 52
"""The StatefulSet controller labels pods ``controller-revision-hash: <name>-<hash>`` (<= 63)."""
SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The alphabet of the API server's ``generateName`` suffixes."""
SUFFIX_LENGTH = 5

_STATEFULSET_SPEC_OWN = frozenset({"replicas", "selector", "template"})
"""StatefulSetSpec fields the controller sets itself; the rest of the RunnerSet's pass through."""
_PASS_THROUGH_EXCLUDED = frozenset({"restartPolicy", "ephemeralContainers"})


def _json_names(cls: type[Any]) -> frozenset[str]:
    return frozenset(f.metadata["runnerd.api"].json for f in dataclasses.fields(cls) if f.metadata)


_RUNNER_CONFIG_FIELDS = _json_names(RunnerConfig)
_RUNNER_POD_FIELDS = _json_names(RunnerPodSpec)


# --- names -----------------------------------------------------------------------------------


def statefulset_name(runnerset: str, suffix: str) -> str:
    """``<runnerset>-<suffix>``, the RunnerSet's name cut so the result fits a StatefulSet."""
    if len(suffix) != SUFFIX_LENGTH or any(ch not in SUFFIX_ALPHABET for ch in suffix):
        raise ValueError(f"suffix must be {SUFFIX_LENGTH} characters of {SUFFIX_ALPHABET!r}")
    head = runnerset[: STATEFULSET_NAME_MAX - SUFFIX_LENGTH - 1].rstrip("-.")
    return f"{head}-{suffix}"


def runner_name(statefulset: str) -> str:
    """The runner's (and its pod's) name: the StatefulSet's only pod."""
    return f"{statefulset}-0"


def claim_template_name(claim_name: str, statefulset: str) -> str | None:
    """The volumeClaimTemplate a StatefulSet claim (``<template>-<statefulset>-0``) was made from."""
    tail = f"-{runner_name(statefulset)}"
    return claim_name[: -len(tail)] if claim_name.endswith(tail) and len(claim_name) > len(tail) else None


# --- the template ----------------------------------------------------------------------------


def runner_spec(spec: RunnerSetSpec) -> RunnerSpec:
    """The RunnerSet as the Runner spec the pod builder takes: its runner fields plus the pod
    fields of ``spec.template.spec`` (containers named ``runner``/``docker`` are merged into the
    generated ones, as in a Runner's ``containers``). ``spec.serviceAccountName`` and
    ``spec.workVolumeClaimTemplate`` win over the template's."""
    raw = spec.to_dict()
    data: dict[str, Any] = {k: v for k, v in raw.items() if k in _RUNNER_CONFIG_FIELDS}
    pod_spec = spec.template.get("spec") or {}
    data.update({k: copy.deepcopy(v) for k, v in pod_spec.items() if k in _RUNNER_POD_FIELDS})
    data.pop("ephemeralContainers", None)
    if spec.service_account_name:
        data["serviceAccountName"] = spec.service_account_name
    if spec.work_volume_claim_template is not None:
        data["workVolumeClaimTemplate"] = spec.work_volume_claim_template.to_dict()
    return RunnerSpec.from_dict(data, ".spec")


def runnerset_template_hash(spec: RunnerSetSpec, common_labels: Sequence[str] = ()) -> str:
    """Hash of everything a runner is made from (all of the spec but replicas and effectiveTime)."""
    raw = spec.to_dict()
    for key in ("replicas", "effectiveTime"):
        raw.pop(key, None)
    return template_hash({"spec": raw, "commonLabels": list(common_labels)})


def default_selector(runnerset: str) -> JSON:
    return {"matchLabels": {LABEL_RUNNERSET_NAME: runnerset}}


def runnerset_selector(runnerset: str, spec: RunnerSetSpec) -> JSON:
    """The RunnerSet's pod selector: the user's, or ``runnerset-name=<name>``."""
    return copy.deepcopy(spec.selector) if spec.selector else default_selector(runnerset)


def selector_string(selector: Mapping[str, Any]) -> str:
    """A label selector in the string form of ``status.selector`` (the scale subresource)."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or ():
        values = ",".join(expr.get("values") or ())
        op = expr.get("operator")
        if op == "In":
            parts.append(f"{expr['key']} in ({values})")
        elif op == "NotIn":
            parts.append(f"{expr['key']} notin ({values})")
        elif op == "Exists":
            parts.append(str(expr["key"]))
        elif op == "DoesNotExist":
            parts.append(f"!{expr['key']}")
    return ",".join(parts)


def build_runner_statefulset(
    *,
    runnerset: str,
    namespace: str,
    spec: RunnerSetSpec,
    name: str,
    template_hash_: str,
    credentials: CredentialKind,
    runner_id: int | None,
    options: PodOptions,
    owner_references: Sequence[Mapping[str, Any]] = (),
    finalizers: Sequence[str] = (),
) -> JSON:
    """The StatefulSet of one runner (``replicas: 1``) named ``name``.

    Its pod template is :func:`runnerd.reconcile.pod.build_runner_pod`'s runner pod for
    ``spec.template`` (env contract, docker modes, GPU setup), with the credential read from the
    Secret ``name`` and ``restartPolicy: Always`` (the only one a StatefulSet accepts). Pod fields
    the runner pod builder does not know (``hostNetwork``, ``schedulerName``, ...) are passed
    through from the template, and so are the StatefulSetSpec fields other than replicas, selector
    and template (``volumeClaimTemplates``, ``serviceName``, ...). Raises
    :class:`runnerd.reconcile.pod.RunnerPodError` for a spec that cannot make a runner pod.
    """
    if credentials == "jit" and runner_id is None:
        raise ValueError("a JIT runner's StatefulSet needs its runner id")
    rspec = runner_spec(spec)
    template = spec.template
    tmeta = template.get("metadata") or {}
    user_selector = runnerset_selector(runnerset, spec)
    own = {LABEL_RUNNERSET_NAME: runnerset, LABEL_TEMPLATE_HASH: template_hash_}
    selector_labels = {
        **(user_selector.get("matchLabels") or {}),
        **own,
        LABEL_RUNNER_STATEFULSET_NAME: name,
    }
    labels = {**(tmeta.get("labels") or {}), **selector_labels}
    annotations = dict(tmeta.get("annotations") or {})
    placeholder: Registration = (
        JitConfig("", runner_id or 0) if credentials == "jit" else RegistrationToken("")
    )
    pod = build_runner_pod(
        runner_name(name),
        namespace,
        rspec,
        placeholder,
        options,
        labels=labels,
        annotations=annotations,
        credentials_secret=name,
    )

    pod_spec: JSON = pod["spec"]
    pod_spec["restartPolicy"] = "Always"
    for k, v in (template.get("spec") or {}).items():
        if k not in _RUNNER_POD_FIELDS and k not in _PASS_THROUGH_EXCLUDED and k not in pod_spec:
            pod_spec[k] = copy.deepcopy(v)

    pod_meta: JSON = {"labels": pod["metadata"]["labels"]}
    if pod["metadata"].get("annotations"):
        pod_meta["annotations"] = pod["metadata"]["annotations"]
    sts_spec: JSON = {
        k: copy.deepcopy(v) for k, v in spec.stateful_set.items() if k not in _STATEFULSET_SPEC_OWN
    }
    selector: JSON = {"matchLabels": selector_labels}
    if user_selector.get("matchExpressions"):
        selector["matchExpressions"] = copy.deepcopy(user_selector["matchExpressions"])
    sts_spec = {
        "replicas": 1,
        "selector": selector,
        "template": {"metadata": pod_meta, "spec": pod_spec},
        **sts_spec,
    }
    meta: JSON = {
        "name": name,
        "namespace": namespace,
        "labels": {**own, LABEL_RUNNER_STATEFULSET_NAME: name},
    }
    if runner_id is not None:
        meta["annotations"] = {ANNOTATION_RUNNER_ID: str(runner_id)}
    if finalizers:
        meta["finalizers"] = list(finalizers)
    if owner_references:
        meta["ownerReferences"] = [copy.deepcopy(dict(o)) for o in owner_references]
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": sts_spec}


def build_runner_secret(
    statefulset: Mapping[str, Any], registration: Registration, *, runnerset: str
) -> JSON:
    """The Secret holding the runner's credential, owned by (and named as) its StatefulSet."""
    meta = statefulset["metadata"]
    return build_credentials_secret(
        meta["name"],
        meta["namespace"],
        registration,
        owner_ref=owner_reference(statefulset, "apps/v1", "StatefulSet"),
        labels={LABEL_RUNNERSET_NAME: runnerset, LABEL_RUNNER_STATEFULSET_NAME: meta["name"]},
    )


def consume_patch(kind: CredentialKind, pod_uid: str, runner_id: int | None) -> JSON:
    """Merge patch that removes a runner Secret's credential and records who used it."""
    annotations = {ANNOTATION_CONSUMED_BY: pod_uid}
    if runner_id is not None:
        annotations[ANNOTATION_RUNNER_ID] = str(runner_id)
    return {"metadata": {"annotations": annotations}, "data": {secret_key(kind): None}}


# --- observing one runner --------------------------------------------------------------------


class Credentials(StrEnum):
    FRESH = "Fresh"  # the Secret holds the credential: the runner can (still) start
    CONSUMED = "Consumed"  # the runner registered; the credential is gone from the Secret
    MISSING = "Missing"  # no Secret (or no credential in it): no container can start


@dataclass(frozen=True)
class SecretState:
    credentials: Credentials
    consumed_by: str | None = None
    runner_id: int | None = None


def secret_state(secret: Mapping[str, Any] | None, kind: CredentialKind) -> SecretState:
    if secret is None:
        return SecretState(Credentials.MISSING)
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    runner_id = _int(annotations.get(ANNOTATION_RUNNER_ID))
    consumed_by = annotations.get(ANNOTATION_CONSUMED_BY)
    if consumed_by is not None:
        return SecretState(Credentials.CONSUMED, str(consumed_by), runner_id)
    if (secret.get("data") or {}).get(secret_key(kind)):
        return SecretState(Credentials.FRESH, None, runner_id)
    return SecretState(Credentials.MISSING, None, runner_id)


_SCOPE_ENV: tuple[tuple[RunnerScopeKind, str], ...] = (
    ("enterprise", "RUNNER_ENTERPRISE"),
    ("organization", "RUNNER_ORG"),
    ("repository", "RUNNER_REPO"),
)


@dataclass(frozen=True)
class RunnerStatefulSet:
    """What one runner StatefulSet says about its runner (readable without its RunnerSet)."""

    name: str
    uid: str
    scope_kind: RunnerScopeKind | None
    scope_name: str
    ephemeral: bool
    credentials: CredentialKind
    runner_id: int | None
    template_hash: str
    deleting: bool
    finalizers: tuple[str, ...]
    runnerset: str

    @property
    def runner(self) -> str:
        return runner_name(self.name)


def parse_statefulset(sts: Mapping[str, Any]) -> RunnerStatefulSet:
    meta = sts.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    pod_spec = ((sts.get("spec") or {}).get("template") or {}).get("spec") or {}
    runner: Mapping[str, Any] = next(
        (ct for ct in pod_spec.get("containers") or () if ct.get("name") == RUNNER_CONTAINER), {}
    )
    env = runner.get("env") or []
    scope_kind: RunnerScopeKind | None = None
    scope_name = ""
    for kind, var in _SCOPE_ENV:
        value = env_value(env, var)
        if value:
            scope_kind, scope_name = kind, value
            break
    names = {e.get("name") for e in env}
    return RunnerStatefulSet(
        name=str(meta.get("name")),
        uid=str(meta.get("uid") or ""),
        scope_kind=scope_kind,
        scope_name=scope_name,
        ephemeral=env_value(env, "RUNNER_EPHEMERAL") != "false",
        credentials="jit" if ENV_JIT_CONFIG in names else "token",
        runner_id=_int(annotations.get(ANNOTATION_RUNNER_ID)),
        template_hash=str(labels.get(LABEL_TEMPLATE_HASH) or ""),
        deleting=bool(meta.get("deletionTimestamp")),
        finalizers=tuple(meta.get("finalizers") or ()),
        runnerset=str(labels.get(LABEL_RUNNERSET_NAME) or ""),
    )


@dataclass(frozen=True)
class PodObservation:
    status: PodStatus
    uid: str | None = None
    exit_code: int | None = None
    restarted: bool = False
    """The runner container has exited before (its pod has ``restartPolicy: Always``)."""
    running_since: float | None = None
    ready: bool = True
    """False while the runner container runs but the pod is not Ready (its job-started hook failed
    the readiness probe: a job is running)."""
    runner_id: int | None = None
    stuck_reason: str = ""
    stuck_message: str = ""


_LIFECYCLE = {
    "Pending": PodStatus.PENDING,
    "Running": PodStatus.RUNNING,
    "Exited": PodStatus.EXITED,
    "Deleting": PodStatus.DELETING,
}


def observe_pod(pod: Mapping[str, Any] | None) -> PodObservation:
    """The runner pod of a StatefulSet, as :class:`~runnerd.reconcile.runner.PodStatus`.

    A runner container that terminated and was restarted by the kubelet (``lastState.terminated``)
    counts as exited with its last exit code while it is not running; while it runs again it is
    ``restarted`` (the caller removes it: it may hold a job, so only through GitHub).
    """
    if pod is None:
        return PodObservation(PodStatus.ABSENT)
    state = runner_container_state(pod)
    meta = pod.get("metadata") or {}
    uid = str(meta.get("uid") or "") or None
    status = _LIFECYCLE[state.lifecycle]
    exit_code = state.exit_code
    if status is PodStatus.EXITED and exit_code is None:
        exit_code = 255  # Failed without a runner exit code (evicted, rejected): not a finished job
    restarted = False
    for cs in (pod.get("status") or {}).get("containerStatuses") or ():
        if cs.get("name") != RUNNER_CONTAINER:
            continue
        last = (cs.get("lastState") or {}).get("terminated")
        if isinstance(last, Mapping) and status is not PodStatus.EXITED and status is not PodStatus.DELETING:
            restarted = True
            if status is not PodStatus.RUNNING:
                status = PodStatus.EXITED
                code = last.get("exitCode")
                exit_code = code if isinstance(code, int) and not isinstance(code, bool) else 255
    since = state.ready_since or state.running_since
    return PodObservation(
        status=status,
        uid=uid,
        exit_code=exit_code,
        restarted=restarted,
        running_since=since.timestamp() if since is not None else None,
        ready=state.phase is not RunnerPodPhase.RUNNING,
        runner_id=state.runner_id,
        stuck_reason=state.reason if state.stuck else "",
        stuck_message=state.message if state.stuck else "",
    )


# --- deciding for one runner -----------------------------------------------------------------


class Action(StrEnum):
    ADD_FINALIZER = "AddFinalizer"
    CONSUME = "ConsumeCredentials"  # remove the credential from the Secret (the runner registered)
    DRAIN = "Drain"  # replace the runner's custom labels so no new job is routed to it
    DEREGISTER = "Deregister"  # DELETE the registration (204/404 ok; 422: busy, stop here)
    DELETE = "Delete"  # delete the StatefulSet (it stays while the finalizer is on)
    REMOVE_FINALIZER = "RemoveFinalizer"


@dataclass(frozen=True)
class RunnerSetRunnerFacts:
    now: float
    deleting: bool
    """The StatefulSet is being deleted (its finalizer holds it)."""
    has_finalizer: bool
    ephemeral: bool
    jit: bool
    pod: PodObservation
    secret: SecretState
    runner_id: int | None
    github: GitHubState
    remove: bool = False
    """The RunnerSet wants this runner gone (scale-down, old template)."""
    drained_at: float | None = None
    drain_grace: float = 30.0
    registration_timeout: float = 600.0
    job_finished_at: float | None = None
    """When a ``completed`` webhook named this registration (:func:`runnerd.reconcile.runner.job_over`)."""


@dataclass(frozen=True)
class RunnerSetRunnerDecision:
    actions: tuple[Action, ...]
    phase: RunnerPhase
    reason: str = ""
    requeue_after: float | None = None
    failed: bool = False
    """The runner failed (non-zero exit, never registered): counts toward the RunnerSet's back-off."""
    finished: bool = False
    """The runner no longer counts toward the replicas: it is being removed."""


_STEP_ACTIONS = {
    Step.ADD_FINALIZER: Action.ADD_FINALIZER,
    Step.DRAIN: Action.DRAIN,
    Step.DEREGISTER: Action.DEREGISTER,
    Step.DELETE_POD: Action.DELETE,
    Step.DELETE_RUNNER: Action.DELETE,
    Step.REMOVE_FINALIZER: Action.REMOVE_FINALIZER,
}


def finished_reason(f: RunnerSetRunnerFacts) -> str:
    """Why a runner StatefulSet can do no more work (``""`` while it can)."""
    pod = f.pod
    if f.secret.credentials is Credentials.CONSUMED:
        if pod.uid != f.secret.consumed_by:
            return "RunnerPodReplaced"  # the pod that used the credential is gone; no other can start
        if f.github is GitHubState.ABSENT and pod.status is not PodStatus.EXITED:
            return "RunnerRemovedFromGitHub"  # done (ephemeral) or removed: it can take no job
    elif f.secret.credentials is Credentials.MISSING and pod.status in (PodStatus.ABSENT, PodStatus.PENDING):
        return "NoCredentials"
    if pod.restarted and pod.status is PodStatus.RUNNING:
        return "RunnerRestarted"
    return ""


def decide_runner(f: RunnerSetRunnerFacts) -> RunnerSetRunnerDecision:
    """What to do with one runner StatefulSet, by :func:`runnerd.reconcile.runner.decide`'s rules.

    The StatefulSet is the unit: "delete the pod" deletes the StatefulSet (its pod and Secret go
    with it), and the StatefulSet's finalizer plays the Runner's. A runner that is over
    (:func:`finished_reason`) or no longer wanted is removed as a deleted Runner is: one that may
    hold a job only once GitHub accepted the removal of its registration (422 = busy: stop there).
    While it must wait (a registration-token runner not listed yet), the StatefulSet is deleted
    and its finalizer holds it, so the decision survives a restart of the controller.
    """
    finished = finished_reason(f) or ("Removing" if f.remove else "")
    phase = _phase(f)
    if not f.has_finalizer:
        if f.deleting:
            return RunnerSetRunnerDecision((), phase, reason="Deleting", finished=True)
        return RunnerSetRunnerDecision((Action.ADD_FINALIZER,), phase, requeue_after=0.0)
    pod_status = f.pod.status
    if finished in ("RunnerPodReplaced", "RunnerRemovedFromGitHub"):
        # No runner process can hold a job: the one that used the credential is gone (and no other
        # can start), or GitHub has no registration to route a job to. No drain: deregister, delete.
        pod_status = PodStatus.ABSENT
    facts = RunnerFacts(
        now=f.now,
        deleting=f.deleting or bool(finished),
        ephemeral=f.ephemeral,
        jit=f.jit,
        pod=pod_status,
        exit_code=f.pod.exit_code,
        runner_id=f.runner_id,
        github=f.github,
        pod_running_since=f.pod.running_since,
        pod_ready=f.pod.ready,
        drained_at=f.drained_at,
        drain_grace=f.drain_grace,
        registration_timeout=f.registration_timeout,
        job_finished_at=f.job_finished_at,
    )
    inner = decide(facts)
    actions = [_STEP_ACTIONS[s] for s in inner.steps if s in _STEP_ACTIONS]
    if f.remove and not f.deleting and not finished_reason(f) and not actions and phase is RunnerPhase.BUSY:
        # Chosen while it looked idle, but it holds a job now: keep it; it is not removed.
        return RunnerSetRunnerDecision((), phase, reason="RunnerBusy", requeue_after=inner.requeue_after)
    if f.deleting or finished:
        if f.deleting:
            actions = [a for a in actions if a is not Action.DELETE]
        elif Action.REMOVE_FINALIZER in actions and Action.DELETE not in actions:
            actions.insert(actions.index(Action.REMOVE_FINALIZER), Action.DELETE)
        elif Action.DELETE not in actions:
            actions.append(Action.DELETE)  # record the decision; the finalizer holds it while we wait
        if Action.REMOVE_FINALIZER not in actions and _should_consume(f):
            actions.insert(0, Action.CONSUME)
        return RunnerSetRunnerDecision(
            tuple(actions),
            phase,
            reason=finished or inner.reason,
            requeue_after=inner.requeue_after,
            failed=f.pod.status is PodStatus.EXITED and f.pod.exit_code != 0,
            finished=True,
        )
    if Action.DELETE in actions:
        # decide() found the pod safe to delete (exited, or never registered): nothing left to guard.
        actions.insert(actions.index(Action.DELETE) + 1, Action.REMOVE_FINALIZER)
    elif _should_consume(f):
        actions.append(Action.CONSUME)
    return RunnerSetRunnerDecision(
        tuple(actions),
        phase,
        reason=inner.reason,
        requeue_after=inner.requeue_after,
        failed=inner.failed,
        finished=Action.DELETE in actions,
    )


def _should_consume(f: RunnerSetRunnerFacts) -> bool:
    """GitHub lists the runner online, so the running pod has used its credential. (Not merely
    listed: a JIT runner is listed, offline, from the moment its config is generated.)"""
    return (
        f.secret.credentials is Credentials.FRESH
        and f.pod.status is PodStatus.RUNNING
        and f.pod.uid is not None
        and f.github in (GitHubState.IDLE, GitHubState.BUSY)
    )


def _phase(f: RunnerSetRunnerFacts) -> RunnerPhase:
    pod = f.pod
    if pod.status is PodStatus.EXITED:
        return RunnerPhase.COMPLETED if pod.exit_code == 0 and f.ephemeral else RunnerPhase.FAILED
    if pod.status in (PodStatus.ABSENT, PodStatus.PENDING):
        return RunnerPhase.PENDING
    if f.github is GitHubState.BUSY:
        return RunnerPhase.BUSY
    if f.github is GitHubState.IDLE:
        return RunnerPhase.IDLE if pod.ready else RunnerPhase.BUSY
    return RunnerPhase.REGISTERING


# --- the RunnerSet ---------------------------------------------------------------------------


def plan_runnerset(desired: int, current_hash: str, runners: Sequence[RunnerView]) -> ReplicaPlan:
    """Runners to create (with the current template) and to remove, never a busy one.

    Runners of the current template are kept at ``desired`` (:func:`plan_replicas`). Runners of an
    older template are removed once the current template has ``desired`` ready runners (or none are
    wanted): the non-busy ones at once, the busy ones when their job is done (an ephemeral runner
    exits; a persistent one becomes idle).
    """
    new = [r for r in runners if r.template_hash == current_hash]
    old = [r for r in runners if r.template_hash != current_hash]
    plan = plan_replicas(desired, new)
    ready = sum(r.active and r.phase in (RunnerPhase.IDLE, RunnerPhase.BUSY) for r in new)
    delete = list(plan.delete)
    if desired == 0 or ready >= desired:
        delete += plan_replicas(0, old).delete
    return ReplicaPlan(create=plan.create, delete=tuple(delete))


def runnerset_status(
    desired: int, current_hash: str, runners: Sequence[RunnerView], selector: str
) -> dict[str, Any]:
    active = [r for r in runners if r.active]
    ready = sum(r.phase in (RunnerPhase.IDLE, RunnerPhase.BUSY) for r in active)
    return {
        "replicas": len(active),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "busyReplicas": sum(r.phase is RunnerPhase.BUSY for r in runners),
        "desiredReplicas": desired,
        "updatedReplicas": sum(r.template_hash == current_hash for r in active),
        "selector": selector,
    }


# --- volumes ---------------------------------------------------------------------------------


def claim_fits_volume(claim: Mapping[str, Any], volume: Mapping[str, Any]) -> bool:
    """Whether the PersistentVolume could be bound to the (pending) claim: same storage class and
    volume mode, the claim's access modes offered, enough capacity."""
    cspec = claim.get("spec") or {}
    vspec = volume.get("spec") or {}
    if (cspec.get("storageClassName") or "") != (vspec.get("storageClassName") or ""):
        return False
    if (cspec.get("volumeMode") or "Filesystem") != (vspec.get("volumeMode") or "Filesystem"):
        return False
    if not set(cspec.get("accessModes") or ()) <= set(vspec.get("accessModes") or ()):
        return False
    want = quantity_value(((cspec.get("resources") or {}).get("requests") or {}).get("storage", 0))
    have = quantity_value((vspec.get("capacity") or {}).get("storage"))
    return want is not None and have is not None and want <= have


def claim_ref(claim: Mapping[str, Any]) -> JSON:
    """A PersistentVolume ``claimRef`` that reserves the volume for ``claim`` (pre-binding)."""
    meta = claim["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": meta["namespace"],
        "name": meta["name"],
    }


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


__all__ = [
    "ANNOTATION_CONSUMED_BY",
    "FINALIZER",
    "LABEL_RUNNERSET_NAME",
    "LABEL_RUNNER_STATEFULSET_NAME",
    "LABEL_TEMPLATE_HASH",
    "Action",
    "CredentialKind",
    "Credentials",
    "PodObservation",
    "RunnerSetRunnerDecision",
    "RunnerSetRunnerFacts",
    "RunnerStatefulSet",
    "SecretState",
    "build_runner_secret",
    "build_runner_statefulset",
    "claim_fits_volume",
    "claim_ref",
    "claim_template_name",
    "consume_patch",
    "decide_runner",
    "default_selector",
    "observe_pod",
    "parse_statefulset",
    "plan_runnerset",
    "runner_name",
    "runner_spec",
    "runnerset_selector",
    "runnerset_status",
    "runnerset_template_hash",
    "secret_state",
    "selector_string",
    "statefulset_name",
]
