"""The admission controller: which sized jobs get a runner pod now (docs/gpu-sizing.md, "Admission").

It observes the nodes, a cluster-wide view of the pods that hold resources, the sized Runners and
the sizing policies; turns them into facts (:mod:`runnerd.reconcile.admitting`); asks
:func:`runnerd.reconcile.admission.admit` for a plan; and writes it on the sized Runners (the
``runnerd.dev/admission`` annotation, or the status of a job that waits or is refused). The Runner
controller's gate does the rest: an admitted Runner registers and gets its pod as any Runner does.

**One key for the cluster.** Admission is one decision over every job and node (FIFO across jobs,
nodes held for earlier jobs), so there is one work-queue key, :data:`ADMISSION_KEY`. It is enqueued
on every node change that matters (allocatable, labels, taints, Ready, cordon), on every pod that is
bound, finishes or is deleted, on every sized Runner's change and on every policy change; the queue
folds a burst into one pass, so freed capacity reaches the next job within a second.

**The pod view.** A second pod informer, cluster-wide (the GPUs of a node are shared by every
namespace), of non-terminal pods only (field selector ``status.phase!=Succeeded,
status.phase!=Failed``: a finished pod leaves the view, which is the "termination" event), each cut
down by :func:`~runnerd.reconcile.admitting.slim_cluster_pod` to a few hundred bytes (node, node
selector, overhead, container resources, phase, the sized-job labels and admitted-node annotation).
The runner-pod informer is namespaced and keeps more of each pod; listing every pod of the cluster
with it would cost more memory for nothing. Nodes are cut down the same way
(:func:`~runnerd.reconcile.admitting.slim_node`: no image lists).

**Never the same GPUs twice.** A placed Runner's pod is counted on its admitted node until the
scheduler binds it (the pod's annotation), and a placed Runner whose pod is not in the view yet
holds the node by itself (:func:`~runnerd.reconcile.admitting.reservation`). Admissions this process
wrote are remembered until the Runner cache shows them, so a pass that runs before the cache caught
up cannot admit the job again or hand its capacity to another.

Runs on the leader only (it is a :class:`~runnerd.runtime.Controller`), and only with
``--enable-sizing`` (:func:`install`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from runnerd.api import Runner
from runnerd.api.sizing import DEFAULT_GPU_PRODUCT_LABEL, RunnerSizingPolicy
from runnerd.controller.common import PODS, RUNNERS
from runnerd.controller.sizingpolicy import INDEX_SIZED_JOB, index_sized_runners
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import NODES, Resource
from runnerd.manifests.pod import PodOptions, RunnerPodError
from runnerd.manifests.sizedpod import sized_pod_spec
from runnerd.reconcile.admission import (
    NodeFacts,
    Order,
    Plan,
    PodFacts,
    PoolRules,
    Refuse,
    WaitingJob,
    admit,
    node_facts,
    pod_requests,
)
from runnerd.reconcile.admitting import (
    RunnerWrite,
    admission_of,
    admitted_node,
    gpu_totals,
    pod_facts,
    pool_key,
    pool_rules,
    reservation,
    runner_key,
    slim_cluster_pod,
    slim_node,
    stranded,
    unique_keys,
    waiting_job,
    writes,
)
from runnerd.reconcile.sizedjob import ADMISSION_ANNOTATION, PHASE_REFUSED, REASON_REFUSED, is_sized_runner
from runnerd.runtime import (
    Controller,
    EventRecorder,
    EventType,
    Informer,
    InformerEvent,
    Key,
    Manager,
    NotFound,
    Obj,
    Result,
)
from runnerd.web.metrics import Metrics

logger = logging.getLogger(__name__)

RUNNER_SIZING_POLICIES = Resource("runnerd.dev", "v1alpha1", "runnersizingpolicies", "RunnerSizingPolicy")
ADMISSION_KEY = Key("", "admission")
NON_TERMINAL = "status.phase!=Succeeded,status.phase!=Failed"
NODES_INFORMER, CLUSTER_PODS_INFORMER, POLICIES_INFORMER = "nodes", "cluster-pods", "runnersizingpolicies"


@dataclass
class AdmissionStats:
    passes: int = 0
    admitted: int = 0
    status_writes: int = 0


@dataclass
class Facts:
    """One pass's facts: the nodes; the pods that hold resources (and admitted Runners' reservations);
    the waiting Runners by job key, as jobs; those whose pod cannot be built, with the reason."""

    nodes: list[NodeFacts]
    pods: list[PodFacts]
    runners: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    jobs: list[WaitingJob] = field(default_factory=list)
    broken: list[tuple[Mapping[str, Any], str]] = field(default_factory=list)


@dataclass
class _Built:
    """The pod a sized Runner will get, built once per Runner generation."""

    generation: Any
    spec: Mapping[str, Any] | None
    error: str = ""
    requests: Mapping[str, Decimal] = field(default_factory=dict)


class AdmissionController:
    """See the module docstring."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        runners: Informer,
        pods: Informer,
        nodes: Informer,
        policies: Informer,
        pod_options: PodOptions,
        recorder: EventRecorder | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.runners, self.pods, self.nodes, self.policies = runners, pods, nodes, policies
        index_sized_runners(runners)
        self.pod_options = pod_options
        self.recorder = recorder
        self.metrics = metrics
        self.clock = clock
        self.stats = AdmissionStats()
        self._built: dict[str, _Built] = {}  # Runner uid -> its pod
        self._written: dict[str, dict[str, str]] = {}  # Runner key -> admission annotations written
        self._stranded: set[str] = set()  # uids of admitted pods reported unschedulable

    # ------------------------------------------------------------------------------- observe
    def sized_runners(self) -> list[Obj]:
        out: list[Obj] = []
        seen: set[str] = set()
        for obj in self.runners.store.indexed(INDEX_SIZED_JOB):
            seen.add(runner_key(obj))
            written = self._written.get(runner_key(obj))
            if written is not None:
                if admission_of(obj) is None:  # the cache has not caught up with our write yet
                    meta = {
                        **obj["metadata"],
                        "annotations": {**(obj["metadata"].get("annotations") or {}), **written},
                    }
                    obj = {**obj, "metadata": meta}
                else:
                    self._written.pop(runner_key(obj), None)
            out.append(obj)
        self._written = {k: v for k, v in self._written.items() if k in seen}
        return out

    def pool_rules(self) -> dict[str, PoolRules]:
        out: dict[str, PoolRules] = {}
        for obj in self.policies.store.objects():
            try:
                policy = RunnerSizingPolicy.from_dict(obj)
            except ValueError as exc:
                logger.warning("sizing policy %s: %s", runner_key(obj), exc)
                continue
            out[pool_key(policy.metadata.namespace or "", policy.metadata.name or "")] = pool_rules(
                policy.spec
            )
        return out

    def built(self, obj: Mapping[str, Any]) -> _Built:
        """The pod spec and requests of a sized Runner's pod (cached per uid and generation)."""
        meta = obj["metadata"]
        uid, generation = str(meta.get("uid") or runner_key(obj)), meta.get("generation")
        cached = self._built.get(uid)
        if cached is not None and cached.generation == generation:
            return cached
        try:
            runner = Runner.from_dict(obj)
            spec = sized_pod_spec(runner.name, runner.namespace, runner.spec, self.pod_options)
            built = _Built(generation, spec, requests=pod_requests(spec))
        except (RunnerPodError, ValueError) as exc:
            built = _Built(generation, None, error=f"its runner pod cannot be built: {exc}")
        self._built[uid] = built
        return built

    def facts(self) -> Facts:
        """The admission facts of this moment (see :class:`Facts`)."""
        in_view = {runner_key(p) for p in self.pods.store.objects()}
        pods = [f for f in (pod_facts(p) for p in self.pods.store.objects()) if f is not None]
        waiting: list[Mapping[str, Any]] = []
        for obj in self.sized_runners():
            deleting = bool(obj["metadata"].get("deletionTimestamp"))
            done = (obj.get("status") or {}).get("phase") == "Completed"
            if admission_of(obj) is None:
                if not deleting:
                    waiting.append(obj)
            elif not deleting and not done and runner_key(obj) not in in_view:
                pods.append(reservation(obj, self.built(obj).requests))
        facts = Facts(nodes=[node_facts(n) for n in self.nodes.store.objects()], pods=pods)
        facts.runners = unique_keys(waiting)
        for key, sized in facts.runners.items():
            built = self.built(sized)
            if built.spec is None:
                facts.broken.append((sized, built.error))
            else:
                facts.jobs.append(waiting_job(sized, built.spec, key))
        live = {str(o["metadata"].get("uid") or runner_key(o)) for o in self.runners.store.objects()}
        self._built = {uid: b for uid, b in self._built.items() if uid in live}
        return facts

    # ------------------------------------------------------------------------------- act
    async def reconcile(self, key: Key) -> Result | None:
        self.stats.passes += 1
        facts = self.facts()
        rules = self.pool_rules()
        now = self.clock()
        plan = admit(facts.jobs, facts.nodes, facts.pods, rules, now)
        todo = writes(plan, facts.runners)
        todo += [w for w in (self._refusal(obj, reason) for obj, reason in facts.broken) if w is not None]
        for write in todo:
            await self._write(write, facts.runners, now)
        await self._report_stranded()
        self._gauges(facts.nodes, facts.pods)
        return self._next_pass(plan, rules, now)

    async def _report_stranded(self) -> None:
        """A Warning on the Runner of each admitted pod the scheduler cannot place (once per pod)."""
        live: set[str] = set()
        for pod in self.pods.store.objects():
            uid = str(pod["metadata"].get("uid") or "")
            reason = stranded(pod)
            if reason is None:
                continue
            live.add(uid)
            if uid in self._stranded:
                continue
            self._stranded.add(uid)
            runner = self.runners.store.get(
                Key(pod["metadata"].get("namespace"), pod["metadata"].get("name"))
            )
            if runner is not None and self.recorder is not None:
                node = admitted_node(pod)
                message = f"admitted to node {node}, but the scheduler cannot place its pod: {reason}"
                await self.recorder.warning(runner, "AdmittedPodUnschedulable", message)
        self._stranded &= live

    def _refusal(self, obj: Mapping[str, Any], reason: str) -> RunnerWrite | None:
        status = obj.get("status") or {}
        want = {"phase": PHASE_REFUSED, "reason": REASON_REFUSED, "message": reason}
        if all(status.get(k) == v for k, v in want.items()):
            return None
        return RunnerWrite(runner_key(obj), status=want)

    async def _write(self, write: RunnerWrite, by_key: Mapping[str, Mapping[str, Any]], now: float) -> None:
        namespace, name = write.key.split("/", 1)
        obj = next((o for o in by_key.values() if runner_key(o) == write.key), None)
        try:
            if write.status is not None:  # first: see RunnerWrite
                await self.kube.patch_status(
                    RUNNERS, name, {"status": dict(write.status)}, namespace=namespace
                )
                self.stats.status_writes += 1
                refused = write.status.get("phase") == PHASE_REFUSED
                if obj is not None and self.recorder is not None and refused:
                    await self.recorder.warning(obj, REASON_REFUSED, str(write.status.get("message")))
            if write.annotations is not None:
                await self.kube.patch(
                    RUNNERS, name, {"metadata": {"annotations": dict(write.annotations)}}, namespace=namespace
                )
                self._written[write.key] = dict(write.annotations)
                self.stats.admitted += 1
                if write.admitted_at is not None:
                    self._observe_wait(namespace, obj, now - write.admitted_at)
                if obj is not None and self.recorder is not None:
                    await self.recorder.normal(obj, "Admitted", _admitted_message(write.annotations))
        except NotFound:
            return  # deleted meanwhile (its job completed or was cancelled)

    def _observe_wait(self, namespace: str, obj: Mapping[str, Any] | None, seconds: float) -> None:
        if self.metrics is None or obj is None:
            return
        pool = next((r.get("name", "") for r in obj["metadata"].get("ownerReferences") or []), "")
        self.metrics.admission_wait.labels(namespace, pool).observe(max(0.0, seconds))

    def _gauges(self, nodes: list[NodeFacts], pods: list[PodFacts]) -> None:
        if self.metrics is None:
            return
        totals = gpu_totals(nodes, pods, DEFAULT_GPU_PRODUCT_LABEL)
        self.metrics.set_gpu_capacity({k: (float(a), float(r)) for k, (a, r) in totals.items()})

    @staticmethod
    def _next_pass(plan: Plan, rules: Mapping[str, PoolRules], now: float) -> Result | None:
        """A Backfill job that reaches its limit starts holding nodes: look again then."""
        due: list[float] = []
        for decision in plan.decisions:
            job = decision.job
            pool = rules.get(job.pool)
            if isinstance(decision, Refuse) or pool is None or pool.order is not Order.BACKFILL:
                continue
            if pool.backfill_limit_s is not None and job.queued_at + pool.backfill_limit_s > now:
                due.append(job.queued_at + pool.backfill_limit_s - now)
        return Result(requeue_after=min(due) + 0.01) if due else None


def _admitted_message(annotations: Mapping[str, str]) -> str:
    node = annotations.get("runnerd.dev/admitted-node")
    if node:
        return f"admitted: placed on node {node}"
    return f"admitted: {annotations.get(ADMISSION_ANNOTATION)} (may wait Pending for the node autoscaler)"


def node_changed(event: InformerEvent) -> bool:
    if event.type is EventType.SYNC:
        return False
    if event.type is not EventType.MODIFIED or event.old is None:
        return True
    return node_facts(event.obj) != node_facts(event.old)


def pod_changed(event: InformerEvent) -> bool:
    """Bound, finished (it leaves the view) or deleted; a new pod that holds resources; refused by
    the scheduler; not the status churn of a running pod (the slim view drops it, so old and new
    compare equal)."""
    if event.type is EventType.SYNC:
        return False
    if event.type is not EventType.MODIFIED or event.old is None:
        return True

    def shape(pod: Obj) -> tuple[Any, ...]:
        return (pod.get("spec"), pod.get("status"), pod["metadata"].get("annotations"))

    return shape(event.obj) != shape(event.old)


def install(
    *,
    kube: KubeClient,
    manager: Manager,
    informers: MutableMapping[str, Informer],
    namespace: str | None,
    pod_options: PodOptions,
    recorder: EventRecorder | None = None,
    metrics: Metrics | None = None,
) -> tuple[AdmissionController, Controller]:
    """Add admission to a controller process (``--enable-sizing``): the node informer, the
    cluster-wide pod view, the policy informer (shared under :data:`POLICIES_INFORMER` with whatever
    else reads policies) and the one-key controller, which runs while this process leads."""
    nodes = informers.get(NODES_INFORMER) or Informer(
        NODES_INFORMER, kube.list_watcher(NODES), transform=slim_node
    )
    pods = informers.get(CLUSTER_PODS_INFORMER) or Informer(
        CLUSTER_PODS_INFORMER,
        kube.list_watcher(PODS, field_selector=NON_TERMINAL),
        transform=slim_cluster_pod,
    )
    policies = informers.get(POLICIES_INFORMER) or Informer(
        POLICIES_INFORMER, kube.list_watcher(RUNNER_SIZING_POLICIES, namespace=namespace)
    )
    for informer in (nodes, pods, policies):
        if informer.name not in informers:  # a shared one is already in the manager
            informers[informer.name] = informer
            manager.add_informer(informer)
    runners = informers["runners"]
    admission = AdmissionController(
        kube=kube,
        runners=runners,
        pods=pods,
        nodes=nodes,
        policies=policies,
        pod_options=pod_options,
        recorder=recorder,
        metrics=metrics,
    )
    ctl = Controller("admission", admission.reconcile, workers=1)
    ctl.watch(runners, lambda obj: [ADMISSION_KEY] if is_sized_runner(obj) else [])
    ctl.watch(policies, lambda obj: [ADMISSION_KEY])
    ctl.reads(nodes, pods)
    nodes.add_handler(lambda event: ctl.enqueue(ADMISSION_KEY) if node_changed(event) else None)
    pods.add_handler(lambda event: ctl.enqueue(ADMISSION_KEY) if pod_changed(event) else None)
    manager.add_controller(ctl)
    return admission, ctl
