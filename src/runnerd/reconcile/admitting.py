"""Admission glue: sized Runners, nodes and pods -> the facts of :func:`~runnerd.reconcile.admission.admit`,
and its plan -> the writes on each sized Runner (docs/gpu-sizing.md, "Admission" and "Wiring").

A **sized Runner** is a Runner the intake made for one sized job (label :data:`SIZED_JOB_LABEL`). It
is *awaiting admission* until its annotation :data:`ADMISSION_ANNOTATION` says ``placed`` or
``pending``; until then the Runner controller does nothing for it (no registration, no pod, no
status write: :func:`awaiting_admission`), and admission owns its ``status``.

Facts in:

* a sized Runner and the ``spec`` of the pod the Runner controller would build for it (the caller
  builds it with the real pod builder, :func:`runnerd.manifests.sizedpod.sized_pod_spec`) ->
  :class:`~runnerd.reconcile.admission.WaitingJob` (:func:`waiting_job`);
* a pool's policy -> :class:`~runnerd.reconcile.admission.PoolRules` (:func:`pool_rules`);
* a pod of the cluster-wide pod view (:func:`slim_cluster_pod`) -> ``PodFacts`` (:func:`pod_facts`); an
  admitted Runner whose pod is not in the view yet holds its admitted node (or a Pending slot) by
  itself (:func:`reservation`), so two passes never hand out the same GPUs;

Steps out: :func:`writes`, per Runner, only what differs from what it already says: the annotations
``runnerd.dev/admission: placed`` and ``runnerd.dev/admitted-node: <node>`` (or ``pending``) for an
admitted Runner (and the Waiting/Refused status it had removed); ``status`` ``{phase: Waiting,
reason: WaitingForCapacity, message}`` or ``{phase: Refused, reason: SizeRefused, message}`` for the
others.

Guarantees: pure; an admitted Runner is never written again by admission (the decision is final:
its status then belongs to the Runner controller); nothing is written that the Runner already says.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from runnerd.api.sizing import ORDER_BACKFILL, RunnerSizingPolicySpec
from runnerd.reconcile.admission import (
    NodeFacts,
    Order,
    Place,
    PlacePending,
    Plan,
    PodFacts,
    PoolRules,
    Refuse,
    WaitingJob,
    pod_requests,
)
from runnerd.reconcile.sizedjob import (
    ADMISSION_ANNOTATION,
    ADMISSION_PENDING,
    ADMISSION_PLACED,
    ADMITTED,
    ADMITTED_NODE_ANNOTATION,
    PHASE_REFUSED,
    PHASE_WAITING,
    QUEUED_AT_ANNOTATION,
    REASON_REFUSED,
    REASON_WAITING,
    SIZED_JOB_LABEL,
    SIZING_POLICY_LABEL,
    is_sized_runner,
)

PLACED, PENDING = ADMISSION_PLACED, ADMISSION_PENDING
CLEARED_STATUS: Mapping[str, None] = {"phase": None, "reason": None, "message": None}
"""A merge patch of ``status`` that removes what admission wrote."""

POD_SPEC_KEPT = ("nodeName", "nodeSelector", "overhead", "containers", "initContainers")
TERMINAL_PHASES = frozenset(("Succeeded", "Failed"))


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return _meta(obj).get("labels") or {}


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return _meta(obj).get("annotations") or {}


def admission_of(obj: Mapping[str, Any]) -> str | None:
    """``placed`` or ``pending`` once admitted, else ``None``."""
    value = _annotations(obj).get(ADMISSION_ANNOTATION)
    return value if value in ADMITTED else None


def awaiting_admission(obj: Mapping[str, Any]) -> bool:
    """A sized Runner that admission has not admitted: the Runner controller's gate."""
    return is_sized_runner(obj) and admission_of(obj) is None


def admitted_node(obj: Mapping[str, Any]) -> str | None:
    return _annotations(obj).get(ADMITTED_NODE_ANNOTATION) or None


def pool_key(namespace: str, policy: str) -> str:
    """Admission's pool key: a policy names exactly one pool, so its ``namespace/name`` is the pool's."""
    return f"{namespace}/{policy}"


def runner_pool(obj: Mapping[str, Any]) -> str | None:
    """The pool key of a sized Runner or pod (from its policy label)."""
    policy = _labels(obj).get(SIZING_POLICY_LABEL)
    return None if not policy else pool_key(str(_meta(obj).get("namespace") or ""), policy)


def pool_rules(spec: RunnerSizingPolicySpec) -> PoolRules:
    limit = spec.admission.backfill_limit_seconds
    return PoolRules(
        order=Order.BACKFILL if spec.effective_order == ORDER_BACKFILL else Order.FIFO,
        max_pending=spec.effective_max_pending,
        backfill_limit_s=None if limit is None else float(limit),
    )


def parse_time(text: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 time (``None`` if absent or malformed)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def queued_at(obj: Mapping[str, Any]) -> float:
    """When the job was queued: its annotation, else the Runner's creation (never in the future of it)."""
    meta = _meta(obj)
    when = parse_time(_annotations(obj).get(QUEUED_AT_ANNOTATION))
    if when is None:
        when = parse_time(meta.get("creationTimestamp"))
    return 0.0 if when is None else when


def runner_key(obj: Mapping[str, Any]) -> str:
    meta = _meta(obj)
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"


def job_key(obj: Mapping[str, Any]) -> str:
    """The name a job goes by in reasons (``job 41``); the Runner's own key where it has no job id."""
    job = _labels(obj).get(SIZED_JOB_LABEL)
    return f"job {job}" if job else runner_key(obj)


def waiting_job(obj: Mapping[str, Any], pod_spec: Mapping[str, Any], key: str | None = None) -> WaitingJob:
    """A sized Runner as a waiting job: the requests, node selector and tolerations of the pod the
    Runner controller would create (``pod_spec``), its queue time and its pool."""
    return WaitingJob(
        key=key or job_key(obj),
        pool=runner_pool(obj) or "",
        queued_at=queued_at(obj),
        requests=pod_requests(pod_spec),
        node_selector=dict(pod_spec.get("nodeSelector") or {}),
        tolerations=tuple(pod_spec.get("tolerations") or ()),
    )


def slim_cluster_pod(obj: dict[str, Any]) -> dict[str, Any]:
    """The cluster-wide pod view's cache transform: only what capacity needs (name, namespace, uid,
    the two sized-job labels, the admission annotations, the node, node selector, overhead, each
    container's resources, the phase, and a ``PodScheduled: False`` condition if there is one). A few
    hundred bytes per pod, whatever the pod carries."""
    meta = _meta(obj)
    labels = {
        k: v for k, v in (meta.get("labels") or {}).items() if k in (SIZED_JOB_LABEL, SIZING_POLICY_LABEL)
    }
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k in (ADMITTED_NODE_ANNOTATION, ADMISSION_ANNOTATION)
    }
    slim_meta: dict[str, Any] = {
        k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion") if k in meta
    }
    if meta.get("deletionTimestamp"):
        slim_meta["deletionTimestamp"] = meta["deletionTimestamp"]
    if labels:
        slim_meta["labels"] = labels
    if annotations:
        slim_meta["annotations"] = annotations
    spec = obj.get("spec") or {}
    slim_spec: dict[str, Any] = {k: spec[k] for k in POD_SPEC_KEPT if k in spec}
    for kind in ("containers", "initContainers"):
        if isinstance(slim_spec.get(kind), list):
            slim_spec[kind] = [
                {"resources": c.get("resources") or {}} for c in slim_spec[kind] if isinstance(c, dict)
            ]
    status = obj.get("status") or {}
    out: dict[str, Any] = {"metadata": slim_meta, "spec": slim_spec}
    slim_status: dict[str, Any] = {"phase": status["phase"]} if status.get("phase") else {}
    refused = [_slim_condition(c) for c in status.get("conditions") or [] if _unschedulable(c)]
    if refused:
        slim_status["conditions"] = refused
    if slim_status:
        out["status"] = slim_status
    return out


def _unschedulable(condition: Any) -> bool:
    return (
        isinstance(condition, Mapping)
        and condition.get("type") == "PodScheduled"
        and condition.get("status") == "False"
    )


def _slim_condition(condition: Mapping[str, Any]) -> dict[str, Any]:
    return {k: condition[k] for k in ("type", "status", "reason", "message") if k in condition}


def stranded(pod: Mapping[str, Any]) -> str | None:
    """Why the scheduler cannot place a pod admission placed (hinted, unbound, ``PodScheduled`` False),
    else ``None``: admission's view and the scheduler's disagree (another scheduler's pods, a node
    that changed), which is reported on the Runner."""
    if not is_sized_runner(pod) or (pod.get("spec") or {}).get("nodeName") or admitted_node(pod) is None:
        return None
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if _unschedulable(condition):
            return str(condition.get("message") or condition.get("reason") or "Unschedulable")
    return None


def pod_facts(pod: Mapping[str, Any]) -> PodFacts | None:
    """What a pod holds (``None`` for a finished pod, which holds nothing)."""
    if ((pod.get("status") or {}).get("phase")) in TERMINAL_PHASES:
        return None
    spec = pod.get("spec") or {}
    node = spec.get("nodeName") or None
    return PodFacts(
        name=runner_key(pod),
        requests=pod_requests(spec),
        node=node,
        hint=None if node else admitted_node(pod),
        pool=runner_pool(pod) if is_sized_runner(pod) else None,
    )


def reservation(obj: Mapping[str, Any], requests: Mapping[str, Decimal]) -> PodFacts:
    """An admitted Runner whose pod is not in the pod view yet: it holds its admitted node (placed)
    or a Pending slot of its pool (pending) until its pod shows up."""
    hint = admitted_node(obj) if admission_of(obj) == PLACED else None
    return PodFacts(name=runner_key(obj), requests=dict(requests), hint=hint, pool=runner_pool(obj))


@dataclass(frozen=True)
class RunnerWrite:
    """What to write on one sized Runner: annotations (a merge patch of ``metadata.annotations``)
    and/or its ``status`` (a merge patch; written first, so admission's own status is gone before
    the Runner controller, which the annotation lets in, writes one)."""

    key: str
    annotations: Mapping[str, str] | None = None
    status: Mapping[str, Any] | None = None
    admitted_at: float | None = None
    """Set when this write admits the job: its queue time (for the wait metric)."""


def _status_write(obj: Mapping[str, Any], phase: str, reason: str, message: str) -> Mapping[str, Any] | None:
    current = obj.get("status") or {}
    want = {"phase": phase, "reason": reason, "message": message}
    if all(current.get(k) == v for k, v in want.items()):
        return None
    return want


def _cleared(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """On admission: remove the Waiting/Refused status admission wrote (a Runner without
    ``status.phase`` is starting), so an admitted job does not read as waiting."""
    if (obj.get("status") or {}).get("phase") in (PHASE_WAITING, PHASE_REFUSED):
        return CLEARED_STATUS
    return None


def writes(plan: Plan, runners: Mapping[str, Mapping[str, Any]]) -> list[RunnerWrite]:
    """Per Runner (``runners`` by job key), what differs from what it already says."""
    out: list[RunnerWrite] = []
    for decision in plan.decisions:
        obj = runners.get(decision.job.key)
        if obj is None or admission_of(obj) is not None:
            continue
        key, queued = runner_key(obj), decision.job.queued_at
        if isinstance(decision, Place):
            annotations = {ADMISSION_ANNOTATION: PLACED, ADMITTED_NODE_ANNOTATION: decision.node}
            out.append(RunnerWrite(key, annotations, _cleared(obj), admitted_at=queued))
        elif isinstance(decision, PlacePending):
            out.append(RunnerWrite(key, {ADMISSION_ANNOTATION: PENDING}, _cleared(obj), admitted_at=queued))
        else:
            refused = isinstance(decision, Refuse)
            phase, reason = (PHASE_REFUSED, REASON_REFUSED) if refused else (PHASE_WAITING, REASON_WAITING)
            status = _status_write(obj, phase, reason, decision.reason)
            if status is not None:
                out.append(RunnerWrite(key, status=status))
    return out


def unique_keys(objs: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Sized Runners by job key; a job id seen twice (never, by the intake's naming) keeps both,
    the later one under its Runner's own key."""
    out: dict[str, Mapping[str, Any]] = {}
    for obj in sorted(objs, key=lambda o: (queued_at(o), runner_key(o))):
        key = job_key(obj)
        out[key if key not in out else runner_key(obj)] = obj
    return out


def prefer_node(affinity: Mapping[str, Any] | None, node: str) -> dict[str, Any]:
    """``affinity`` plus a preferred node affinity for the admitted node (weight 100, by
    ``metadata.name``): the scheduler still decides, but the NodeAffinity score (twice the weight
    of the resource scores) makes it pick that node whenever the node fits."""
    out = copy.deepcopy(dict(affinity or {}))
    node_affinity = out.setdefault("nodeAffinity", {})
    preferred = node_affinity.setdefault("preferredDuringSchedulingIgnoredDuringExecution", [])
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    preferred.append({"weight": 100, "preference": term})
    return out


def slim_node(obj: dict[str, Any]) -> dict[str, Any]:
    """The node informer's cache transform: what :func:`~runnerd.reconcile.admission.node_facts`
    reads (name, labels, taints, cordon, allocatable, the Ready condition); no images, addresses or
    other conditions (a node's image list alone can be tens of kilobytes)."""
    meta, spec, status = _meta(obj), obj.get("spec") or {}, obj.get("status") or {}
    slim_meta = {k: meta[k] for k in ("name", "uid", "resourceVersion", "labels") if k in meta}
    slim_spec = {k: spec[k] for k in ("taints", "unschedulable") if k in spec}
    ready = [c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"]
    slim_status: dict[str, Any] = {"allocatable": status.get("allocatable") or {}}
    if ready:
        slim_status["conditions"] = [{"type": "Ready", "status": ready[0].get("status")}]
    return {"metadata": slim_meta, "spec": slim_spec, "status": slim_status}


def is_gpu_resource(resource: str) -> bool:
    return resource == "nvidia.com/gpu" or resource.startswith("nvidia.com/mig-")


def gpu_totals(
    nodes: Sequence[NodeFacts], pods: Iterable[PodFacts], product_label: str
) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """``(resource, gpu_product) -> (allocatable, requested)`` over the nodes, for the GPU gauges; a
    pod counts on the node it is bound to (or admitted to, until bound). Nodes without the product
    label count under ``""``."""
    product = {n.name: n.labels.get(product_label, "") for n in nodes}
    out: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    for n in nodes:
        for resource, amount in n.allocatable.items():
            if is_gpu_resource(resource):
                alloc, req = out.get((resource, product[n.name]), (Decimal(0), Decimal(0)))
                out[(resource, product[n.name])] = (alloc + amount, req)
    for pod in pods:
        where = pod.node or pod.hint
        if where not in product:
            continue
        for resource, amount in pod.requests.items():
            if is_gpu_resource(resource):
                alloc, req = out.get((resource, product[where]), (Decimal(0), Decimal(0)))
                out[(resource, product[where])] = (alloc, req + amount)
    return out
