"""Cost facts from Kubernetes objects: one :class:`~runnerd.reconcile.cost.RunnerFacts` per runner pod.

Guarantees: pure (no I/O). A pod yields facts only once its runner container has started, and they
are keyed by the pod's ``uid``, so the ledger counts each runner pod once however often it is seen
(an informer resync, a restart, a second leader). The finish is the runner container's
``finishedAt``; while it runs the writer's ``now`` closes the interval.

Where each fact comes from:

* **repository, workflow**: the annotations :data:`ANNOTATION_REPOSITORY` and
  :data:`ANNOTATION_WORKFLOW` of the pod, else of its Runner (a sized job's Runner carries them
  from its job), else the Runner's ``status.workflow`` (``repository``, ``name``), else (the
  repository only) the Runner's ``spec.repository`` (a repository-scoped pool's runners), else
  :data:`UNKNOWN`;
* **pool**: the pod's ``runner-deployment-name`` or ``runnerset-name`` label, else the
  RunnerDeployment or RunnerSet that owns its Runner (a sized job's), else :data:`UNKNOWN`;
* **cpu, GPUs**: what the scheduler reserves for the pod (``admission.pod_requests``); MIG slices
  (``nvidia.com/mig-*``) count as GPUs of the node's product;
* **product**: the node's GPU product label (``node_products``), else the pod's node selector for
  that label; ``""`` for pods without GPUs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

from runnerd.api import parse_time
from runnerd.api.sizing import DEFAULT_GPU_PRODUCT_LABEL
from runnerd.reconcile.admission import pod_requests
from runnerd.reconcile.cost import RunnerFacts
from runnerd.reconcile.fleet import LABEL_DEPLOYMENT_NAME
from runnerd.reconcile.runnerpod import GPU_RESOURCE, RUNNER_CONTAINER
from runnerd.reconcile.runnerset import LABEL_RUNNERSET_NAME

ANNOTATION_REPOSITORY: Final = "runnerd.dev/repository"
ANNOTATION_WORKFLOW: Final = "runnerd.dev/workflow"
UNKNOWN: Final = "(unknown)"
MIG_PREFIX: Final = "nvidia.com/mig-"
POOL_KINDS: Final = ("RunnerDeployment", "RunnerSet")


def _epoch(value: Any) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return int(parse_time(value).timestamp())
    except ValueError:
        return None


def _runner_times(pod: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(startedAt, finishedAt) of the runner container (the first container if none is named so)."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    chosen = next((s for s in statuses if s.get("name") == RUNNER_CONTAINER), statuses[0] if statuses else {})
    state = chosen.get("state") or {}
    if "running" in state:
        return _epoch((state["running"] or {}).get("startedAt")), None
    terminated = state.get("terminated") or {}
    return _epoch(terminated.get("startedAt")), _epoch(terminated.get("finishedAt"))


def _gpus(requests: Mapping[str, Decimal]) -> Decimal:
    return sum((v for k, v in requests.items() if k == GPU_RESOURCE or k.startswith(MIG_PREFIX)), Decimal(0))


def _owner_pool(runner_meta: Mapping[str, Any]) -> str:
    """A sized job's Runner is owned by its pool (outside every replica set's selector)."""
    for ref in runner_meta.get("ownerReferences") or ():
        if ref.get("kind") in POOL_KINDS and ref.get("name"):
            return str(ref["name"])
    return UNKNOWN


def runner_facts(
    pod: Mapping[str, Any],
    *,
    runner: Mapping[str, Any] | None = None,
    node_products: Mapping[str, str] | None = None,
    product_label: str = DEFAULT_GPU_PRODUCT_LABEL,
) -> RunnerFacts | None:
    """The cost facts of one runner pod (``runner``: its Runner object, if any); ``None`` until the
    runner container has started, or for a pod without a ``uid``."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    uid = meta.get("uid")
    started, finished = _runner_times(pod)
    if not uid or started is None:
        return None
    labels = meta.get("labels") or {}
    runner_meta = (runner or {}).get("metadata") or {}
    annotations = {**(runner_meta.get("annotations") or {}), **(meta.get("annotations") or {})}
    workflow = ((runner or {}).get("status") or {}).get("workflow") or {}
    scope = ((runner or {}).get("spec") or {}).get("repository")
    requests = pod_requests(spec)
    gpus = _gpus(requests)
    product = ""
    if gpus:
        node = str(spec.get("nodeName") or "")
        product = (node_products or {}).get(node) or (spec.get("nodeSelector") or {}).get(product_label) or ""
    return RunnerFacts(
        uid=str(uid),
        repository=str(
            annotations.get(ANNOTATION_REPOSITORY) or workflow.get("repository") or scope or UNKNOWN
        ),
        workflow=str(annotations.get(ANNOTATION_WORKFLOW) or workflow.get("name") or UNKNOWN),
        pool=str(
            labels.get(LABEL_DEPLOYMENT_NAME) or labels.get(LABEL_RUNNERSET_NAME) or _owner_pool(runner_meta)
        ),
        started_at=started,
        finished_at=None if finished is None else max(finished, started),
        cpu=requests.get("cpu", Decimal(0)),
        gpus=gpus,
        gpu_product=str(product),
    )


def node_products(
    nodes: Iterable[Mapping[str, Any]], product_label: str = DEFAULT_GPU_PRODUCT_LABEL
) -> dict[str, str]:
    """Node name -> GPU product label value, for nodes that have one."""
    out: dict[str, str] = {}
    for node in nodes:
        meta = node.get("metadata") or {}
        value = (meta.get("labels") or {}).get(product_label)
        if value and meta.get("name"):
            out[str(meta["name"])] = str(value)
    return out


def runner_terminated(pod: Mapping[str, Any]) -> bool:
    """Whether the pod's runner container has finished (its facts are final)."""
    return _runner_times(pod)[1] is not None


def cost_facts(
    pods: Iterable[Mapping[str, Any]],
    runner_of: Callable[[Mapping[str, Any]], Mapping[str, Any] | None],
    node_products: Mapping[str, str] | None = None,
    product_label: str = DEFAULT_GPU_PRODUCT_LABEL,
) -> tuple[list[RunnerFacts], set[str]]:
    """The facts of every runner pod that has started (``runner_of``: a pod's Runner, if any) and
    the uids of all of ``pods`` (the pods that still exist, for ``cost.forget``)."""
    facts: list[RunnerFacts] = []
    live: set[str] = set()
    for pod in pods:
        uid = (pod.get("metadata") or {}).get("uid")
        if uid:
            live.add(str(uid))
        found = runner_facts(
            pod, runner=runner_of(pod), node_products=node_products, product_label=product_label
        )
        if found is not None:
            facts.append(found)
    return facts, live
