"""Capacity-aware admission: which waiting jobs get a runner pod now, and why the others wait.

Facts in: the nodes (allocatable resources, labels, taints, schedulable), the pods that hold
resources (bound to a node, or ours and not yet bound), the waiting jobs (their pod's requests,
node selector and tolerations, when they were queued) and each pool's rules. Steps out: one
:class:`Decision` per waiting job, in queue order (docs/gpu-sizing.md, "Admission").

Rules:

* **No pod that cannot be scheduled now.** A job is placed only on a node that is schedulable,
  matches its node selector, whose ``NoSchedule``/``NoExecute`` taints it tolerates, and whose free
  resources (allocatable less the requests of the pods there) cover every resource it asks for.
  The chosen node is a hint for the caller to record on the pod (``PodFacts.hint``): until the
  scheduler binds the pod, its requests count against that node, so two passes never hand out the
  same GPUs.
* **Pending allowance.** A pool whose ``max_pending`` is N may have up to N of its pods waiting
  ``Pending`` for a node autoscaler (pods admitted without a hint and not yet bound count); jobs
  that no node has room for take those slots oldest first. A job whose only nodes with room are
  held for an earlier job waits instead (a Pending pod would be bound there at once).
* **Order.** Jobs are considered oldest first (``queued_at``, then ``key``). A job that must wait
  *holds* every node that could ever run it when its pool's order is ``Fifo``: later jobs may only
  use other nodes. With ``Backfill`` it holds nothing (later jobs that fit start first) until it has
  waited ``backfill_limit_s``, after which it holds its nodes like a Fifo job.
* **Refused.** A job that no node matching it could hold even when empty is refused (reported,
  never given a pod) unless its pool allows Pending pods, since an autoscaler may add a larger node.
  A refused job holds nothing.

Cost: the matching, fitting and reasons are computed once per job *shape* (selector, tolerations,
requests) and state of the free capacity, so a pass over 1,000 waiting jobs of four sizes on 200
nodes takes tens of milliseconds, not a second.

Guarantees: pure and deterministic (same facts, same plan); never places more than a node has free;
every decision carries a human-readable reason, e.g. ``waiting for 2 × nvidia.com/gpu
(NVIDIA-H100-80GB-HBM3): 0 of 16 free``.
"""  # noqa: RUF002

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from runnerd.reconcile.runnerpod import quantity_value
from runnerd.reconcile.sizing import TIMES, format_bytes

Resources = Mapping[str, Decimal]
PODS = "pods"
_CORE_ORDER = ("cpu", "memory", "ephemeral-storage")


class Order(StrEnum):
    FIFO = "Fifo"
    BACKFILL = "Backfill"


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True)
class NodeFacts:
    name: str
    allocatable: Resources
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    schedulable: bool = True
    """Ready and not cordoned."""


@dataclass(frozen=True)
class PodFacts:
    """A non-terminal pod that holds (or will hold) resources."""

    name: str
    requests: Resources
    node: str | None = None
    """``spec.nodeName`` once bound."""
    hint: str | None = None
    """The node admission chose for this pod (ours only), used until it is bound."""
    pool: str | None = None
    """The pool of one of our runner pods (for the Pending allowance)."""


@dataclass(frozen=True)
class WaitingJob:
    key: str
    pool: str
    queued_at: float
    requests: Resources
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class PoolRules:
    order: Order = Order.FIFO
    max_pending: int = 0
    backfill_limit_s: float | None = None


@dataclass(frozen=True)
class Place:
    job: WaitingJob
    node: str
    reason: str


@dataclass(frozen=True)
class PlacePending:
    job: WaitingJob
    reason: str


@dataclass(frozen=True)
class Wait:
    job: WaitingJob
    reason: str
    behind: str | None = None
    """The earlier job holding the nodes this one could use now (``Fifo``)."""


@dataclass(frozen=True)
class Refuse:
    job: WaitingJob
    reason: str


Decision = Place | PlacePending | Wait | Refuse


@dataclass(frozen=True)
class Plan:
    decisions: tuple[Decision, ...]

    def of(self, kind: type[Decision]) -> list[Decision]:
        return [d for d in self.decisions if isinstance(d, kind)]

    def reasons(self) -> dict[str, str]:
        """job key -> reason, for status, events and the dashboard."""
        return {d.job.key: d.reason for d in self.decisions}


# --- facts from Kubernetes objects ------------------------------------------------------------


def _quantity(value: Any) -> Decimal:
    return quantity_value(value) or Decimal(0)


def _container_requests(container: Mapping[str, Any]) -> dict[str, Decimal]:
    """Requests, defaulting to limits where only a limit is set (as the API server defaults them)."""
    res = container.get("resources") or {}
    out = {k: _quantity(v) for k, v in (res.get("limits") or {}).items()}
    out.update({k: _quantity(v) for k, v in (res.get("requests") or {}).items()})
    return out


def pod_requests(pod_spec: Mapping[str, Any]) -> dict[str, Decimal]:
    """What the scheduler reserves for a pod: per resource, the larger of the containers' sum and
    any one init container, plus ``overhead``, plus one ``pods`` slot."""
    total: dict[str, Decimal] = {}
    for ct in pod_spec.get("containers") or []:
        for k, v in _container_requests(ct).items():
            total[k] = total.get(k, Decimal(0)) + v
    for ct in pod_spec.get("initContainers") or []:
        for k, v in _container_requests(ct).items():
            total[k] = max(total.get(k, Decimal(0)), v)
    for k, v in (pod_spec.get("overhead") or {}).items():
        total[k] = total.get(k, Decimal(0)) + _quantity(v)
    total[PODS] = Decimal(1)
    return {k: v for k, v in total.items() if v > 0}


TRANSIENT_TAINT_PREFIXES = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/")
"""Taints Kubernetes puts on a node for a while (cordoned, not ready, unreachable, under pressure,
not yet initialised): they say the node cannot take pods *now*, not which pods it is for."""


def node_facts(node: Mapping[str, Any]) -> NodeFacts:
    """Facts of a Node object (``status.allocatable``, labels, taints, Ready and cordon). Transient
    taints (:data:`TRANSIENT_TAINT_PREFIXES`) make a node unschedulable for now rather than never a
    match, so a job waits for a cordoned or recovering node instead of being refused."""
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    all_taints = [
        Taint(str(t.get("key", "")), str(t.get("value", "")), str(t.get("effect", "")))
        for t in spec.get("taints") or []
    ]
    transient = [t for t in all_taints if t.key.startswith(TRANSIENT_TAINT_PREFIXES)]
    blocked = any(t.effect in ("NoSchedule", "NoExecute") for t in transient)
    return NodeFacts(
        name=str(meta.get("name", "")),
        allocatable={k: _quantity(v) for k, v in (status.get("allocatable") or {}).items()},
        labels=dict(meta.get("labels") or {}),
        taints=tuple(t for t in all_taints if t not in transient),
        schedulable=ready and not spec.get("unschedulable") and not blocked,
    )


# --- matching and fitting ---------------------------------------------------------------------


def tolerated(taint: Taint, tolerations: Iterable[Mapping[str, Any]]) -> bool:
    """Kubernetes' rule: a toleration matches key (or is a wildcard ``Exists``), value and effect."""
    for t in tolerations:
        key, op = t.get("key") or "", t.get("operator") or "Equal"
        if key and key != taint.key:
            continue
        if not key and op != "Exists":
            continue
        if op != "Exists" and (t.get("value") or "") != taint.value:
            continue
        if (t.get("effect") or "") not in ("", taint.effect):
            continue
        return True
    return False


def matches(node: NodeFacts, job: WaitingJob) -> bool:
    """The node's labels satisfy the job's selector and the job tolerates its hard taints."""
    if any(node.labels.get(k) != v for k, v in job.node_selector.items()):
        return False
    hard = (t for t in node.taints if t.effect in ("NoSchedule", "NoExecute"))
    return all(tolerated(t, job.tolerations) for t in hard)


def fits(free: Resources, requests: Resources) -> bool:
    return all(free.get(k, Decimal(0)) >= v for k, v in requests.items() if k != PODS or PODS in free)


def free_capacity(nodes: Iterable[NodeFacts], pods: Iterable[PodFacts]) -> dict[str, dict[str, Decimal]]:
    """Free resources per node: allocatable less the requests of pods bound (or hinted) there."""
    free = {n.name: dict(n.allocatable) for n in nodes}
    for pod in pods:
        where = pod.node or pod.hint
        if where in free:
            for k, v in pod.requests.items():
                if k in free[where]:
                    free[where][k] -= v
    return free


# --- reasons ------------------------------------------------------------------------------------


def _resource_order(requests: Resources) -> list[str]:
    extended = sorted(k for k in requests if k not in _CORE_ORDER and k != PODS)
    return [*extended, *(k for k in _CORE_ORDER if k in requests), *([PODS] if PODS in requests else [])]


def _fmt(resource: str, amount: Decimal) -> str:
    if resource == "memory" or resource == "ephemeral-storage":
        return format_bytes(amount)
    return str(amount.normalize()) if amount == amount.to_integral_value() else str(amount)


def describe(job: WaitingJob) -> str:
    """``2 × nvidia.com/gpu (NVIDIA-H100-80GB-HBM3)``: the job's main resource and its selector."""  # noqa: RUF002
    order = _resource_order(job.requests)
    main = next((r for r in order if r != PODS), PODS)
    amount = _fmt(main, job.requests.get(main, Decimal(0)))
    text = f"{amount} {TIMES} {main}" if main not in _CORE_ORDER else f"{amount} {main}"
    if job.node_selector:
        text += " (" + ", ".join(job.node_selector.values()) + ")"
    return text


def _shortage(job: WaitingJob, eligible: Sequence[NodeFacts], free: Mapping[str, Resources]) -> str:
    """Why no node has room now, naming the first resource no node has enough of."""
    for r in _resource_order(job.requests):
        need = job.requests[r]
        per_node = [max(free[n.name].get(r, Decimal(0)), Decimal(0)) for n in eligible]
        if any(f >= need for f in per_node):
            continue
        have = sum(per_node, Decimal(0))
        total = sum((n.allocatable.get(r, Decimal(0)) for n in eligible), Decimal(0))
        amount = f"{_fmt(r, need)} {TIMES} {r}" if r not in _CORE_ORDER else f"{_fmt(r, need)} {r}"
        sel = " (" + ", ".join(job.node_selector.values()) + ")" if job.node_selector else ""
        text = f"waiting for {amount}{sel}: {_fmt(r, have)} of {_fmt(r, total)} free"
        if have >= need:
            text += f", at most {_fmt(r, max(per_node, default=Decimal(0)))} on one node"
        return text
    return f"waiting for {describe(job)}: no node has all it asks for free at once"


# --- the decision -------------------------------------------------------------------------------


def _best_fit(candidates: Sequence[NodeFacts], job: WaitingJob, free: Mapping[str, Resources]) -> NodeFacts:
    """The node that is left with the least of the job's main resource (packs, keeps big holes)."""
    main = next((r for r in _resource_order(job.requests) if r != PODS), PODS)
    return min(
        candidates, key=lambda n: (free[n.name].get(main, Decimal(0)) - job.requests.get(main, 0), n.name)
    )


def _holds(job: WaitingJob, rules: PoolRules, now: float) -> bool:
    if rules.order is Order.FIFO:
        return True
    return rules.backfill_limit_s is not None and now - job.queued_at >= rules.backfill_limit_s


@dataclass
class _Shapes:
    """Per job shape (selector, tolerations, requests): the nodes it matches and could ever fit, and,
    per state of the free capacity, the nodes it fits now and why it cannot run. Jobs of one size
    share them, so a pass over many waiting jobs costs per shape, not per job."""

    nodes: Sequence[NodeFacts]
    fixed: dict[tuple[Any, ...], tuple[list[NodeFacts], list[NodeFacts]]] = field(default_factory=dict)
    now: dict[tuple[Any, ...], tuple[list[NodeFacts], str]] = field(default_factory=dict)
    version: int = 0
    """Bumped whenever a placement changes the free capacity."""

    @staticmethod
    def key(job: WaitingJob) -> tuple[Any, ...]:
        return (
            tuple(sorted(job.node_selector.items())),
            repr([sorted(t.items()) for t in job.tolerations]),
            tuple(sorted(job.requests.items())),
        )

    def eligible_ever(self, job: WaitingJob) -> tuple[list[NodeFacts], list[NodeFacts]]:
        key = self.key(job)
        if key not in self.fixed:
            eligible = [n for n in self.nodes if matches(n, job)]
            self.fixed[key] = (eligible, [n for n in eligible if fits(n.allocatable, job.requests)])
        return self.fixed[key]

    def fit_now(
        self, job: WaitingJob, eligible: Sequence[NodeFacts], free: Mapping[str, Resources]
    ) -> tuple[list[NodeFacts], str]:
        """The schedulable nodes with room for ``job`` now (held or not), and its shortage reason."""
        key = (self.version, *self.key(job))
        if key not in self.now:
            schedulable = [n for n in eligible if n.schedulable]
            self.now = {k: v for k, v in self.now.items() if k[0] == self.version}
            self.now[key] = (
                [n for n in schedulable if fits(free[n.name], job.requests)],
                _shortage(job, schedulable, free),
            )
        return self.now[key]


def _cannot_place(
    job: WaitingJob,
    rules: PoolRules,
    eligible: Sequence[NodeFacts],
    ever: Sequence[NodeFacts],
    held: Mapping[str, WaitingJob],
    fit_now: tuple[Sequence[NodeFacts], str],
    pending: dict[str, int],
) -> Decision:
    now_fit, shortage = fit_now
    if now_fit:
        holder = held[now_fit[0].name]
        shortage = (
            f"waiting for {describe(job)}: the nodes with room are held for {holder.key}, "
            f"queued earlier ({describe(holder)}; first in, first out)"
        )
    if not now_fit and pending.get(job.pool, 0) < rules.max_pending:
        pending[job.pool] = pending.get(job.pool, 0) + 1
        slot = f"{pending[job.pool]} of {rules.max_pending}"
        return PlacePending(job, f"{shortage}; may wait Pending for the node autoscaler ({slot})")
    if not ever and rules.max_pending == 0:
        if not eligible:
            return Refuse(job, f"no node matches {describe(job)} (node selector and taints)")
        main = next(r for r in _resource_order(job.requests) if r != PODS)
        largest = max(n.allocatable.get(main, Decimal(0)) for n in eligible)
        return Refuse(job, f"asks for {describe(job)}; the largest matching node has {_fmt(main, largest)}")
    if now_fit:
        return Wait(job, shortage, behind=held[now_fit[0].name].key)
    return Wait(job, shortage)


def admit(
    jobs: Iterable[WaitingJob],
    nodes: Iterable[NodeFacts],
    pods: Iterable[PodFacts],
    pools: Mapping[str, PoolRules],
    now: float,
) -> Plan:
    """One decision per job, oldest first (see the module docstring)."""
    nodes = sorted(nodes, key=lambda n: n.name)
    pods = list(pods)
    free = free_capacity(nodes, pods)
    known = {n.name for n in nodes}
    pending: dict[str, int] = {}
    for pod in pods:
        if pod.pool is not None and pod.node is None and pod.hint not in known:
            pending[pod.pool] = pending.get(pod.pool, 0) + 1
    held: dict[str, WaitingJob] = {}
    shapes = _Shapes(nodes)
    out: list[Decision] = []
    for job in sorted(jobs, key=lambda j: (j.queued_at, j.key)):
        rules = pools.get(job.pool, PoolRules())
        eligible, ever = shapes.eligible_ever(job)
        room = [n for n in ever if n.schedulable and n.name not in held and fits(free[n.name], job.requests)]
        if room:
            node = _best_fit(room, job, free)
            for k, v in job.requests.items():
                if k in free[node.name]:
                    free[node.name][k] -= v
            shapes.version += 1
            out.append(Place(job, node.name, f"placed on {node.name}: {describe(job)}"))
            continue
        fit_now = shapes.fit_now(job, eligible, free)
        decision = _cannot_place(job, rules, eligible, ever, held, fit_now, pending)
        out.append(decision)
        if isinstance(decision, Wait) and _holds(job, rules, now):
            for n in ever:
                held.setdefault(n.name, job)
    return Plan(tuple(out))
