"""The GPU benchmark's workload (``bench/gpu_bench.py``, issue #16): the seeded GPU trace and the
two sides' pools. Pure: no cluster, no simulator.

- :func:`gpu_trace`: simulated-time jobs. GPU jobs of 1/2/4/8 GPUs (40/30/20/10 %) on H100 or A100
  (in proportion to a side's GPUs of each), 1-5 minutes long, arriving as a Poisson stream that asks
  ``load`` times a side's GPU-minutes over ``minutes``; CPU jobs, 6 a minute, 0.5-3 minutes. A GPU
  job is named ``train-<N>x<product>`` and labelled as the sized side asks
  (``[self-hosted, gpu, gpu=N, gpu-type=PRODUCT]``); :func:`fixed_labels` gives the fixed side's
  (``[self-hosted, gpu-N, PRODUCT]``).
- :func:`fixed_manifests`: one RunnerDeployment + webhook HRA per size and product, as ARC users
  run GPU runners; :func:`sized_manifests`: one pool and its RunnerSizingPolicy.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from devcluster import workload
from devcluster.cluster import GpuShape
from devcluster.stack import GROUP, VERSION
from ghsim.model import TraceEntry

SIDE_LABEL = "bench.runnerd.dev/side"
PRODUCT_LABEL = "nvidia.com/gpu.product"
PRODUCTS = {"h100": "NVIDIA-H100-80GB-HBM3", "a100": "NVIDIA-A100-SXM4-80GB"}
SIZES = (1, 2, 4, 8)
SIZE_WEIGHTS = (0.4, 0.3, 0.2, 0.1)
SIZED_POOL = "gpu-sized"
SIDES = ("fixed", "sized")


# ------------------------------------------------------------------------------------- the trace


def gpu_trace(*, minutes: float, gpus: Sequence[tuple[str, int]], load: float, seed: int) -> list[TraceEntry]:
    """Simulated-time jobs: GPU jobs asking ``load`` x the fleet's GPU-minutes over ``minutes``
    (``gpus``: product name and GPUs of one side), and CPU jobs, 6 a minute. A GPU job's name is
    ``train-<N>x<product>``; its labels are the sized side's (:func:`fixed_labels` maps them)."""
    rng = random.Random(seed)
    horizon = minutes * 60
    out: list[TraceEntry] = []
    total = sum(n for _, n in gpus)
    weights = [n / total for _, n in gpus]
    mean_size = sum(s * w for s, w in zip(SIZES, SIZE_WEIGHTS, strict=True))
    rate = load * total * horizon / (mean_size * 180.0) / horizon  # jobs/s (mean run 3 min)
    t = 0.0
    while (t := t + rng.expovariate(rate)) < horizon:
        size = rng.choices(SIZES, SIZE_WEIGHTS)[0]
        product = rng.choices([p for p, _ in gpus], weights)[0]
        labels = ("self-hosted", "gpu", f"gpu={size}", f"gpu-type={product}")
        out.append(
            TraceEntry(
                round(t, 2),
                rng.choice(workload.REPOS),
                labels,
                round(rng.uniform(60, 300), 1),
                workflow="train",
                name=f"train-{size}x{product}",
            )
        )
    t = 0.0
    while (t := t + rng.expovariate(6 / 60)) < horizon:
        repo = rng.choice(workload.REPOS)
        out.append(
            TraceEntry(
                round(t, 2), repo, workload.CPU_LABELS, round(rng.uniform(30, 180), 1), workflow="test"
            )
        )
    out.sort(key=lambda e: e.offset)
    return out


def job_size(name: str) -> int:
    """A GPU job's size from its name (``train-4xh100``: 4); 0 for a CPU job."""
    if not name.startswith("train-"):
        return 0
    return int(name.removeprefix("train-").split("x", 1)[0])


def fixed_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """The fixed side's labels for a sized job: ``gpu=2``, ``gpu-type=h100`` -> ``gpu-2``, ``h100``."""
    pairs = dict(label.split("=", 1) for label in labels if "=" in label)
    if "gpu" not in pairs:
        return tuple(labels)
    return ("self-hosted", f"gpu-{pairs['gpu']}", pairs["gpu-type"])


def for_side(entries: Sequence[TraceEntry], side: str, scale: float) -> list[TraceEntry]:
    scaled = list(workload.scaled(entries, scale))
    if side == "sized":
        return scaled
    return [
        TraceEntry(e.offset, e.repo, fixed_labels(e.labels), e.duration, e.conclusion, e.workflow, e.name)
        for e in scaled
    ]


# ------------------------------------------------------------------------------------- manifests


def side_gpus(shapes: Sequence[GpuShape]) -> list[tuple[str, int]]:
    """Each product's GPUs on one side (``shapes``: one side's nodes)."""
    names = {v: k for k, v in PRODUCTS.items()}
    out: Counter[str] = Counter()
    for s in shapes:
        out[names[s.product]] += s.gpus * s.nodes
    return sorted(out.items())


def pool(namespace: str, name: str, labels: Sequence[str], extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RunnerDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 0,
            "template": {"spec": {"organization": workload.ORG, "labels": list(labels), **extra}},
        },
    }


def fixed_manifests(namespace: str, gpus: Sequence[tuple[str, int]], delay_s: int) -> list[dict[str, Any]]:
    """One RunnerDeployment + webhook HRA per size and product (``maxReplicas``: the product's GPUs / N)."""
    out = []
    for product, total in gpus:
        for size in SIZES:
            name = f"gpu-{size}-{product}"
            selector = {PRODUCT_LABEL: PRODUCTS[product], SIDE_LABEL: "fixed"}
            extra = {"nodeSelector": selector, "resources": {"limits": {"nvidia.com/gpu": size}}}
            out.append(pool(namespace, name, ("self-hosted", f"gpu-{size}", product), extra))
            out.append(
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "HorizontalRunnerAutoscaler",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {
                        "scaleTargetRef": {"name": name},
                        "minReplicas": 0,
                        "maxReplicas": max(1, total // size),
                        "scaleDownDelaySecondsAfterScaleOut": delay_s,
                        "scaleUpTriggers": [{"githubEvent": {"workflowJob": {}}, "duration": "30m"}],
                    },
                }
            )
    return out


def sized_manifests(namespace: str, order: str, backfill_s: int) -> list[dict[str, Any]]:
    """One pool ``[self-hosted, gpu]`` on the sized half of the fleet, and its RunnerSizingPolicy."""
    admission: dict[str, Any] = {"order": order, "maxPending": 0}
    if order == "Backfill":
        admission["backfillLimitSeconds"] = backfill_s
    policy = {
        "apiVersion": "runnerd.dev/v1alpha1",
        "kind": "RunnerSizingPolicy",
        "metadata": {"name": SIZED_POOL, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"kind": "RunnerDeployment", "name": SIZED_POOL},
            "max": {"gpu": 8},
            "gpuProducts": [{"name": k, "nodeLabelValue": v} for k, v in PRODUCTS.items()],
            "admission": admission,
        },
    }
    target = pool(namespace, SIZED_POOL, ("self-hosted", "gpu"), {"nodeSelector": {SIDE_LABEL: "sized"}})
    return [target, policy]


def job_product(name: str) -> str:
    """A GPU job's product from its name (``train-4xh100``: h100)."""
    return name.rsplit("x", 1)[1]


def demand(trace: Sequence[TraceEntry], gpus: Sequence[tuple[str, int]], minutes: float) -> float:
    """GPU-seconds the trace's GPU jobs ask, over a side's GPU-seconds in the arrival window."""
    asked = sum(job_size(e.name) * e.duration for e in trace)
    return asked / (sum(n for _, n in gpus) * minutes * 60)
