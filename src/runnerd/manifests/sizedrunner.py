"""The waiting Runner of a sized job, built from its pool's template (docs/gpu-sizing.md, "Wiring").

:func:`build_waiting_runner` sizes the pool's runner template for the job
(:func:`runnerd.manifests.sizedpod.sized_runner_spec`: labels exactly the job's, requests and
limits, GPU count or MIG slice, product node selector and tolerations) and wraps it in the
contract's Runner object (:func:`runnerd.reconcile.sizedjob.waiting_runner`). :func:`size_text`
is the ``runnerd.dev/size`` annotation: the size as admission describes it
(:func:`runnerd.reconcile.admission.describe`, e.g. ``2 × nvidia.com/gpu (NVIDIA-H100-80GB-HBM3)``).

Guarantees: pure; the template is never mutated.
"""  # noqa: RUF002

from __future__ import annotations

from runnerd.api import JSON, RunnerTemplate
from runnerd.manifests import gpu as g
from runnerd.manifests.sizedpod import size_resources, sized_runner_spec
from runnerd.reconcile.admission import WaitingJob, describe
from runnerd.reconcile.runnerpod import quantity_value
from runnerd.reconcile.sizedjob import JobFacts, PoolRef, waiting_runner
from runnerd.reconcile.sizing import PoolSizing, SizeRequest


def size_text(size: SizeRequest, pool: PoolSizing, gpu: g.GpuOptions | None = None) -> str:
    """``2 × nvidia.com/gpu (NVIDIA-H100-80GB-HBM3)``, ``8 cpu``: the job's main resource."""  # noqa: RUF002
    wanted = size_resources(size, gpu or g.GpuOptions())
    requests = {name: quantity_value(q) for name, q in wanted.items()}
    selector = {pool.product_label: size.product.node_label_value} if size.product is not None else {}
    job = WaitingJob(
        key="",
        pool="",
        queued_at=0.0,
        requests={k: v for k, v in requests.items() if v is not None},
        node_selector=selector,
    )
    return describe(job) if job.requests else size.describe()


def build_waiting_runner(
    job: JobFacts,
    pool: PoolRef,
    policy: str,
    template: RunnerTemplate,
    size: SizeRequest,
    sizing: PoolSizing,
    gpu: g.GpuOptions | None = None,
    attempt: int = 0,
) -> JSON:
    """The waiting Runner of ``job`` in ``pool`` under ``policy`` (see the module docstring);
    ``attempt``: how many of the job's Runners went before it finished (it names the Runner)."""
    spec = sized_runner_spec(template.spec, job.labels, size, sizing, gpu)
    return waiting_runner(
        job,
        pool,
        policy,
        spec.to_dict(),
        size_text(size, sizing, gpu),
        template.metadata.to_dict(),
        attempt,
    )
