"""The runner fleet as the dashboard, ``/metrics`` and ``runnerd status`` show it (pure).

One function, :func:`snapshot`, turns the objects of the API (RunnerDeployments, RunnerSets, HRAs,
Runners, runner pods, RunnerSet StatefulSets) into per-target numbers; :class:`GpuLedger` adds
GPU time up as runners change state. The definitions (docs/dashboard.md repeats them):

* **scale target**: a RunnerDeployment or a RunnerSet. Runners of neither (a RunnerReplicaSet
  without a deployment, a Runner created by hand) are grouped under their owner's kind and name,
  or under kind ``Runner`` and their own name.
* **runner state**, one of :data:`STATES`:

  - ``draining``: being removed (the Runner, its pod or its StatefulSet is being deleted), or
    finished (its runner exited 0: an ephemeral runner after its job) and about to be removed;
  - ``failed``: the Runner's ``status.phase`` is ``Failed``, its pod failed, or its runner
    exited with another code;
  - ``busy``: running a job. A Runner says so in ``status.phase: Running`` (the controller writes
    it from GitHub's busy flag, ``workflow_job`` deliveries and the pod's readiness); the pod of an
    online runner that is not Ready while its runner container runs is busy too (runnerd's runner
    image fails its readiness probe while a job runs), which is all a RunnerSet runner (no Runner
    object) has: with images without that probe a RunnerSet runner shows ``idle`` while busy;
  - ``idle``: online, no job (``status.phase: Idle``; for RunnerSets: the pod is Ready);
  - ``starting``: anything else: no pod yet, pod pending or unschedulable, runner registering.

* **running jobs** of a target: its busy runners (a runner runs one job at a time).
* **queued jobs** of a target: jobs its HRA holds capacity reservations for (one replica each,
  not expired: ``workflow_job`` webhooks and the safety-net poll add them when a job is queued and
  release them when it completes) that no runner of the target runs yet:
  ``max(reserved - running, 0)``. Without an HRA with webhook triggers nothing is reserved, so
  queued is 0.
* **GPU runners**: runners whose pod requests ``nvidia.com/gpu``; **GPUs**: the sum of those
  requests (per container the larger of request and limit; an init container's counts if larger).
* **GPU-seconds reserved**: for every GPU runner pod, its GPUs times the time it is bound to a node
  and not finished (the GPUs are allocated to it, whether or not it runs a job).
  **GPU-seconds used**: its GPUs times the time its runner is ``busy``. The dashboard shows both in
  GPU-hours; the difference is GPU time paid for but idle.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from runnerd.api import parse_time
from runnerd.reconcile.podstate import RunnerPodPhase, runner_container_state
from runnerd.reconcile.runnerpod import GPU_RESOURCE, quantity_value
from runnerd.reconcile.runnerset import LABEL_RUNNER_STATEFULSET_NAME, LABEL_RUNNERSET_NAME, runner_name

STARTING = "starting"
IDLE = "idle"
BUSY = "busy"
DRAINING = "draining"
FAILED = "failed"
STATES = (STARTING, IDLE, BUSY, DRAINING, FAILED)
"""Every runner state, in the order the dashboard and ``runnerd status`` show them."""

RUNNER_DEPLOYMENT = "RunnerDeployment"
RUNNER_SET = "RunnerSet"
LABEL_DEPLOYMENT_NAME = "runner-deployment-name"
"""On the Runners (and pods) of a RunnerDeployment (ARC's label)."""

Obj = Mapping[str, Any]
TargetKey = tuple[str, str, str]
"""(namespace, kind, name) of a scale target."""


def _meta(obj: Obj) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _key(obj: Obj) -> tuple[str, str]:
    meta = _meta(obj)
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- one runner --------------------------------------------------------------------------------


def pod_gpus(pod: Obj | None) -> int:
    """The GPUs a pod requests (``nvidia.com/gpu``; per container the larger of request and limit)."""
    if pod is None:
        return 0
    spec = pod.get("spec") or {}

    def of(container: Mapping[str, Any]) -> Decimal:
        resources = container.get("resources") or {}
        values = [
            quantity_value((resources.get(kind) or {}).get(GPU_RESOURCE)) for kind in ("requests", "limits")
        ]
        return max((v for v in values if v is not None), default=Decimal(0))

    regular = sum((of(c) for c in spec.get("containers") or ()), Decimal(0))
    init = max((of(c) for c in spec.get("initContainers") or ()), default=Decimal(0))
    return int(max(regular, init).to_integral_value())


def pod_holds_node(pod: Obj | None) -> bool:
    """The pod is bound to a node and not finished (its resources are allocated to it)."""
    if pod is None:
        return False
    status = pod.get("status") or {}
    return bool((pod.get("spec") or {}).get("nodeName")) and status.get("phase") not in (
        "Succeeded",
        "Failed",
    )


def runner_state(runner: Obj | None, pod: Obj | None, *, deleting: bool = False) -> str:
    """The state (:data:`STATES`) of one runner from its Runner object (RunnerDeployments and plain
    Runners; ``None`` for RunnerSet runners) and its pod (``None`` before it exists).

    ``deleting``: something else that owns the runner is being deleted (a RunnerSet's StatefulSet).
    """
    if deleting or (runner is not None and _meta(runner).get("deletionTimestamp")):
        return DRAINING
    pod_state = runner_container_state(pod) if pod is not None else None
    if pod_state is not None:
        if pod_state.phase is RunnerPodPhase.DELETING:
            return DRAINING
        if pod_state.phase is RunnerPodPhase.FAILED:
            return FAILED
        if pod_state.phase in (RunnerPodPhase.SUCCEEDED, RunnerPodPhase.RUNNER_EXITED):
            return DRAINING if pod_state.exit_code in (0, None) else FAILED
    if runner is not None:
        phase = (runner.get("status") or {}).get("phase")
        if phase == "Failed":
            return FAILED
        if phase == "Running":
            return BUSY
        if phase == "Idle":
            # the runner's own job signal (runnerd's image: not Ready while a job runs), ahead of
            # the controller's next status write
            return BUSY if pod_state is not None and pod_state.phase is RunnerPodPhase.RUNNING else IDLE
        return STARTING
    if pod_state is None:
        return STARTING
    if pod_state.phase is RunnerPodPhase.RUNNING:  # runner container running, pod not Ready
        return BUSY
    if pod_state.phase is RunnerPodPhase.READY:
        return IDLE
    return STARTING


@dataclass(frozen=True)
class RunnerInfo:
    namespace: str
    name: str
    target: TargetKey
    state: str
    gpus: int = 0
    holds_node: bool = False
    node: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name


def runner_target(runner: Obj) -> TargetKey:
    """The scale target a Runner object belongs to."""
    namespace, name = _key(runner)
    meta = _meta(runner)
    deployment = (meta.get("labels") or {}).get(LABEL_DEPLOYMENT_NAME)
    if deployment:
        return namespace, RUNNER_DEPLOYMENT, str(deployment)
    for ref in meta.get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("controller") and ref.get("name"):
            return namespace, str(ref.get("kind") or "Runner"), str(ref["name"])
    return namespace, "Runner", name


def runner_info(runner: Obj, pod: Obj | None) -> RunnerInfo:
    """A RunnerDeployment's (or standalone) runner: its Runner object and its pod (same name)."""
    namespace, name = _key(runner)
    return RunnerInfo(
        namespace=namespace,
        name=name,
        target=runner_target(runner),
        state=runner_state(runner, pod),
        gpus=pod_gpus(pod),
        holds_node=pod_holds_node(pod),
        node=str(((pod or {}).get("spec") or {}).get("nodeName") or ""),
    )


def runnerset_runner_info(pod: Obj | None, statefulset: Obj | None) -> RunnerInfo | None:
    """A RunnerSet's runner: its StatefulSet and its pod (either may be missing, not both)."""
    source = pod if pod is not None else statefulset
    if source is None:
        return None
    labels = _meta(source).get("labels") or {}
    runnerset = labels.get(LABEL_RUNNERSET_NAME)
    if not runnerset:
        return None
    namespace, name = _key(source)
    if pod is None:
        name = runner_name(name)
    deleting = statefulset is not None and bool(_meta(statefulset).get("deletionTimestamp"))
    return RunnerInfo(
        namespace=namespace,
        name=name,
        target=(namespace, RUNNER_SET, str(runnerset)),
        state=runner_state(None, pod, deleting=deleting),
        gpus=pod_gpus(pod),
        holds_node=pod_holds_node(pod),
        node=str(((pod or {}).get("spec") or {}).get("nodeName") or ""),
    )


def runners_of(
    runners: Iterable[Obj], pods: Iterable[Obj], stateful_sets: Iterable[Obj] = ()
) -> list[RunnerInfo]:
    """Every runner: Runner objects (with their pods) and RunnerSet runners (pods and StatefulSets)."""
    pods_by_key = {_key(p): p for p in pods}
    out = [runner_info(r, pods_by_key.get(_key(r))) for r in runners]
    seen = {r.key for r in out}
    for sts in stateful_sets:
        namespace, name = _key(sts)
        if not (_meta(sts).get("labels") or {}).get(LABEL_RUNNERSET_NAME):
            continue
        pod = pods_by_key.get((namespace, runner_name(name)))
        info = runnerset_runner_info(pod, sts)
        if info is not None and info.key not in seen:
            out.append(info)
            seen.add(info.key)
    for key, pod in pods_by_key.items():
        labels = _meta(pod).get("labels") or {}
        if (
            key in seen
            or not labels.get(LABEL_RUNNERSET_NAME)
            or not labels.get(LABEL_RUNNER_STATEFULSET_NAME)
        ):
            continue
        info = runnerset_runner_info(pod, None)
        if info is not None:
            out.append(info)
            seen.add(info.key)
    return out


# --- targets and autoscalers -------------------------------------------------------------------


@dataclass(frozen=True)
class HraInfo:
    namespace: str
    name: str
    target: TargetKey
    min_replicas: int | None
    max_replicas: int | None
    desired_replicas: int | None
    schedule: str
    """``status.scheduledOverridesSummary``, else how many scheduled overrides the spec has."""
    triggers: tuple[str, ...]
    """Metric types and ``webhook`` for a ``workflowJob`` scale-up trigger."""
    reserved: int
    """Replicas held by live capacity reservations (queued or running jobs)."""


def _live_reservations(spec: Mapping[str, Any], now: dt.datetime) -> int:
    total = 0
    for r in spec.get("capacityReservations") or ():
        if not isinstance(r, Mapping):
            continue
        replicas = _int(r.get("replicas")) or 0
        if replicas <= 0:
            continue
        try:
            expires = parse_time(str(r["expirationTime"])) if r.get("expirationTime") else None
            effective = parse_time(str(r["effectiveTime"])) if r.get("effectiveTime") else None
        except ValueError:
            continue
        if (expires is not None and expires <= now) or (effective is not None and effective > now):
            continue
        total += replicas
    return total


def hra_info(hra: Obj, now: dt.datetime) -> HraInfo:
    namespace, name = _key(hra)
    spec, status = hra.get("spec") or {}, hra.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    overrides = spec.get("scheduledOverrides") or ()
    schedule = str(status.get("scheduledOverridesSummary") or "")
    if not schedule and overrides:
        schedule = f"{len(overrides)} override{'s' if len(overrides) != 1 else ''}"
    triggers = [
        str(m.get("type")) for m in spec.get("metrics") or () if isinstance(m, Mapping) and m.get("type")
    ]
    if any(
        isinstance(t, Mapping) and (t.get("githubEvent") or {}).get("workflowJob") is not None
        for t in spec.get("scaleUpTriggers") or ()
    ):
        triggers.append("webhook")
    return HraInfo(
        namespace=namespace,
        name=name,
        target=(namespace, str(ref.get("kind") or RUNNER_DEPLOYMENT), str(ref.get("name") or "")),
        min_replicas=_int(spec.get("minReplicas")),
        max_replicas=_int(spec.get("maxReplicas")),
        desired_replicas=_int(status.get("desiredReplicas")),
        schedule=schedule,
        triggers=tuple(triggers),
        reserved=_live_reservations(spec, now),
    )


@dataclass
class TargetInfo:
    namespace: str
    kind: str
    name: str
    desired: int | None = None
    """``spec.replicas`` (1 when unset, as ARC); None for a group that is not a scale target."""
    runners: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    gpu_runners: int = 0
    gpus: int = 0
    reserved: int = 0
    hra: str | None = None
    scope: str = ""
    """``repository``/``organization``/``enterprise`` name the runners register to."""
    labels: tuple[str, ...] = ()

    @property
    def key(self) -> TargetKey:
        return self.namespace, self.kind, self.name

    @property
    def current(self) -> int:
        """Runners that exist and are not being removed."""
        return sum(n for state, n in self.runners.items() if state != DRAINING)

    @property
    def ready(self) -> int:
        return self.runners[IDLE] + self.runners[BUSY]

    @property
    def running_jobs(self) -> int:
        return self.runners[BUSY]

    @property
    def queued_jobs(self) -> int:
        return max(self.reserved - self.running_jobs, 0)


@dataclass(frozen=True)
class FleetSnapshot:
    targets: tuple[TargetInfo, ...]
    runners: tuple[RunnerInfo, ...]
    hras: tuple[HraInfo, ...]

    def target(self, namespace: str, kind: str, name: str) -> TargetInfo | None:
        return next((t for t in self.targets if t.key == (namespace, kind, name)), None)


def _template_facts(obj: Obj, kind: str) -> tuple[str, tuple[str, ...]]:
    spec = obj.get("spec") or {}
    # a RunnerDeployment's runner spec is under template.spec; a RunnerSet's is inline
    rspec = (spec.get("template") or {}).get("spec") or {} if kind == RUNNER_DEPLOYMENT else spec
    scope = ""
    for field_ in ("repository", "organization", "enterprise"):
        if rspec.get(field_):
            scope = str(rspec[field_])
            break
    labels = tuple(str(x) for x in rspec.get("labels") or () if isinstance(x, str))
    return scope, labels


def snapshot(
    *,
    deployments: Iterable[Obj] = (),
    runner_sets: Iterable[Obj] = (),
    hras: Iterable[Obj] = (),
    runners: Iterable[Obj] = (),
    pods: Iterable[Obj] = (),
    stateful_sets: Iterable[Obj] = (),
    now: dt.datetime,
) -> FleetSnapshot:
    """The fleet from the objects (informer caches or a LIST), at wall-clock time ``now``.

    ``pods``: runner pods (label ``actions-runner``); ``stateful_sets``: those of RunnerSets.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    targets: dict[TargetKey, TargetInfo] = {}
    for kind, objs in ((RUNNER_DEPLOYMENT, deployments), (RUNNER_SET, runner_sets)):
        for obj in objs:
            namespace, name = _key(obj)
            value = (obj.get("spec") or {}).get("replicas")
            scope, labels = _template_facts(obj, kind)
            targets[(namespace, kind, name)] = TargetInfo(
                namespace, kind, name, desired=1 if value is None else int(value), scope=scope, labels=labels
            )
    infos = runners_of(runners, pods, stateful_sets)
    for info in infos:
        target = targets.get(info.target)
        if target is None:
            target = targets[info.target] = TargetInfo(*info.target)
        target.runners[info.state] += 1
        if info.gpus > 0:
            target.gpu_runners += 1
            target.gpus += info.gpus
    hra_infos = sorted((hra_info(h, now) for h in hras), key=lambda h: (h.namespace, h.name))
    for h in hra_infos:
        target = targets.get(h.target)
        if target is None:
            continue
        target.reserved += h.reserved
        target.hra = h.name if target.hra is None else f"{target.hra},{h.name}"
    return FleetSnapshot(
        targets=tuple(sorted(targets.values(), key=lambda t: t.key)),
        runners=tuple(sorted(infos, key=lambda r: r.key)),
        hras=tuple(hra_infos),
    )


# --- GPU time ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSeconds:
    reserved: float = 0.0
    used: float = 0.0


@dataclass
class _Open:
    target: TargetKey
    gpus: int
    busy: bool
    since: float


class GpuLedger:
    """GPU-seconds reserved and used per target, from the runners' state changes.

    Call :meth:`update` whenever a runner may have changed (an informer event) and :meth:`sync`
    now and then with every runner (catches anything missed, forgets runners that are gone); times
    are monotonic seconds. Each runner's last state holds until the next call about it.
    """

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], _Open] = {}
        self._closed: dict[TargetKey, list[float]] = {}

    def _close(self, key: tuple[str, str], now: float) -> None:
        held = self._open.pop(key, None)
        if held is None:
            return
        seconds = max(now - held.since, 0.0) * held.gpus
        totals = self._closed.setdefault(held.target, [0.0, 0.0])
        totals[0] += seconds
        if held.busy:
            totals[1] += seconds

    def update(self, info: RunnerInfo, now: float) -> None:
        old = self._open.get(info.key)
        want = info.gpus > 0 and info.holds_node
        busy = want and info.state == BUSY
        if old is not None and want and (old.target, old.gpus, old.busy) == (info.target, info.gpus, busy):
            return
        self._close(info.key, now)
        if want:
            self._open[info.key] = _Open(info.target, info.gpus, busy, now)
            self._closed.setdefault(info.target, [0.0, 0.0])

    def remove(self, key: tuple[str, str], now: float) -> None:
        self._close(key, now)

    def sync(self, infos: Iterable[RunnerInfo], now: float) -> None:
        present = set()
        for info in infos:
            present.add(info.key)
            self.update(info, now)
        for key in [k for k in self._open if k not in present]:
            self._close(key, now)

    def totals(self, now: float) -> dict[TargetKey, GpuSeconds]:
        out = {t: [v[0], v[1]] for t, v in self._closed.items()}
        for held in self._open.values():
            seconds = max(now - held.since, 0.0) * held.gpus
            totals = out.setdefault(held.target, [0.0, 0.0])
            totals[0] += seconds
            if held.busy:
                totals[1] += seconds
        return {t: GpuSeconds(v[0], v[1]) for t, v in out.items()}

    @property
    def holding(self) -> int:
        """Runners holding GPUs now."""
        return len(self._open)


# --- queue wait --------------------------------------------------------------------------------


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus's ``histogram_quantile``: ``buckets`` maps each upper bound (``le``, ``inf`` for
    the last) to its cumulative count. Linear interpolation within the bucket the rank falls in
    (from 0 for the first bucket); in the ``+Inf`` bucket, the largest finite bound. ``None``
    without observations."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile out of range: {q}")
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]] if math.isinf(bounds[-1]) else max(buckets.values())
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = (le if not math.isinf(le) else lower), count
    return lower


def bucket_delta(now: Mapping[float, float], then: Mapping[float, float]) -> dict[float, float]:
    """Observations between two cumulative bucket readings (a counter reset counts from zero)."""
    if any(now.get(le, 0.0) < count for le, count in then.items()):
        return dict(now)
    return {le: count - then.get(le, 0.0) for le, count in now.items()}


@dataclass(frozen=True)
class WaitPoint:
    t: float
    """Wall-clock time of the sample (seconds since the epoch)."""
    p50: float | None
    p95: float | None
    jobs: int
    """Jobs that started in the window before ``t``."""


class QueueWaitSeries:
    """Queue-wait p50/p95 over a sliding window, sampled now and then from a cumulative histogram
    (as ``histogram_quantile(q, increase(..._bucket[window]))`` would say), kept for ``keep``
    samples. The first window counts from the series' creation (an empty histogram)."""

    def __init__(self, *, window: float = 300.0, keep: int = 360) -> None:
        self.window = window
        self._history: deque[tuple[float, dict[float, float]]] = deque()
        self._base: tuple[float, dict[float, float]] | None = None
        self.points: deque[WaitPoint] = deque(maxlen=keep)

    def add(self, t: float, buckets: Mapping[float, float]) -> WaitPoint:
        """Record the cumulative ``buckets`` read at wall-clock time ``t``; returns the new point."""
        reading = dict(buckets)
        while self._history and self._history[0][0] <= t - self.window:
            self._base = self._history.popleft()
        base = self._base[1] if self._base is not None else {}
        delta = bucket_delta(reading, base)
        self._history.append((t, reading))
        jobs = max(delta.values(), default=0.0)
        point = WaitPoint(t, histogram_quantile(0.5, delta), histogram_quantile(0.95, delta), round(jobs))
        self.points.append(point)
        return point

    @property
    def last(self) -> WaitPoint | None:
        return self.points[-1] if self.points else None


def sum_buckets(series: Iterable[tuple[Mapping[str, str], float]]) -> dict[float, float]:
    """Bucket samples (their labels, with ``le``, and value) summed over every other label."""
    out: dict[float, float] = {}
    for labels, value in series:
        le = labels.get("le")
        if le is None:
            continue
        try:
            bound = float(le)
        except ValueError:
            continue
        out[bound] = out.get(bound, 0.0) + value
    return out


def ordered_states(counts: Mapping[str, int]) -> Sequence[tuple[str, int]]:
    return [(s, counts.get(s, 0)) for s in STATES]
