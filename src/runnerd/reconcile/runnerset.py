"""RunnerSet runners as StatefulSets: the pure observations and the plan (no I/O).

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
  the Secret's credential key is removed (:func:`runnerd.manifests.runnerset.consume_patch`) and a
  restarted or recreated container cannot register again (its env cannot be resolved). A runner
  container that has exited once is finished, whatever it does next (:func:`observe_pod`).

The lifecycle rules that protect jobs are :func:`runnerd.reconcile.lifecycle.decide`'s, kind
``STATEFULSET`` (:func:`runner_facts` states one runner's facts for it). The objects are built by
:mod:`runnerd.manifests.runnerset`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runnerd.api import JSON, RunnerScopeKind, RunnerSetSpec
from runnerd.reconcile.credentials import ANNOTATION_RUNNER_ID, ENV_JIT_CONFIG, CredentialKind, secret_key
from runnerd.reconcile.hashing import SUFFIX_ALPHABET, SUFFIX_LENGTH, template_hash
from runnerd.reconcile.lifecycle import (
    POD_STATUS,
    Credentials,
    GitHubState,
    PodStatus,
    RunnerFacts,
    RunnerKind,
)
from runnerd.reconcile.podstate import RunnerPodPhase, runner_container_state
from runnerd.reconcile.replicas import RunnerPhase, RunnerView
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


# --- observing one runner --------------------------------------------------------------------


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


def observe_pod(pod: Mapping[str, Any] | None) -> PodObservation:
    """The runner pod of a StatefulSet, as :class:`~runnerd.reconcile.lifecycle.PodStatus`.

    A runner container that terminated and was restarted by the kubelet (``lastState.terminated``)
    counts as exited with its last exit code while it is not running; while it runs again it is
    ``restarted`` (the caller removes it: it may hold a job, so only through GitHub).
    """
    if pod is None:
        return PodObservation(PodStatus.ABSENT)
    state = runner_container_state(pod)
    meta = pod.get("metadata") or {}
    uid = str(meta.get("uid") or "") or None
    status = POD_STATUS[state.lifecycle]
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


def runner_facts(
    *,
    now: float,
    deleting: bool,
    has_finalizer: bool,
    ephemeral: bool,
    jit: bool,
    pod: PodObservation,
    secret: SecretState,
    runner_id: int | None,
    github: GitHubState,
    remove: bool = False,
    drained_at: float | None = None,
    drain_grace: float = 30.0,
    registration_timeout: float = 600.0,
    job_finished_at: float | None = None,
) -> RunnerFacts:
    """One runner StatefulSet's facts for :func:`runnerd.reconcile.lifecycle.decide`."""
    return RunnerFacts(
        now=now,
        kind=RunnerKind.STATEFULSET,
        deleting=deleting,
        has_finalizer=has_finalizer,
        ephemeral=ephemeral,
        jit=jit,
        pod=pod.status,
        exit_code=pod.exit_code,
        runner_id=runner_id,
        github=github,
        pod_running_since=pod.running_since,
        pod_ready=pod.ready,
        pod_uid=pod.uid,
        pod_restarted=pod.restarted,
        credentials=secret.credentials,
        consumed_by=secret.consumed_by,
        remove=remove,
        drained_at=drained_at,
        drain_grace=drain_grace,
        registration_timeout=registration_timeout,
        job_finished_at=job_finished_at,
    )


def credential_kind(
    spec: RunnerSetSpec, *, forced: str | None, mode: str, default_image: str
) -> CredentialKind:
    """JIT config or registration token, as for Runners (:func:`runnerd.reconcile.runner.uses_jit`):
    ``forced`` by an annotation, else by the controller's ``mode`` (``auto``: tokens only for images
    that need RUNNER_TOKEN, the runner container's image of the template counting too)."""
    ephemeral = spec.effective_ephemeral
    if forced in ("jit", "token"):
        return "jit" if forced == "jit" and ephemeral else "token"
    if not ephemeral:
        return "token"  # GitHub's JIT runners are always ephemeral
    if mode != "auto":
        return "jit" if mode == "jit" else "token"
    containers = (spec.template.get("spec") or {}).get("containers") or ()
    template_image = next((ct.get("image") for ct in containers if ct.get("name") == RUNNER_CONTAINER), None)
    image = spec.image or template_image or default_image
    return "token" if "summerwind/actions-runner" in str(image) else "jit"


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
    "CredentialKind",
    "PodObservation",
    "RunnerStatefulSet",
    "SecretState",
    "claim_fits_volume",
    "claim_template_name",
    "credential_kind",
    "default_selector",
    "observe_pod",
    "parse_statefulset",
    "plan_runnerset",
    "runner_facts",
    "runner_name",
    "runnerset_selector",
    "runnerset_status",
    "runnerset_template_hash",
    "secret_state",
    "selector_string",
    "statefulset_name",
]
