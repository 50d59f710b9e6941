"""Shared sizing inputs for the sizing, sized-pod and admission tests."""

from __future__ import annotations

from typing import Any

from runnerd.api.sizing import RunnerSizingPolicySpec
from runnerd.reconcile.sizing import PoolSizing

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"
PRODUCT_LABEL = "nvidia.com/gpu.product"

POLICY: dict[str, Any] = {
    "scaleTargetRef": {"kind": "RunnerDeployment", "name": "gpu-runners"},
    "max": {"cpu": "32", "memory": "256Gi", "gpu": 8},
    "gpuProducts": [
        {"name": "h100", "nodeLabelValue": H100},
        {
            "name": "a100",
            "nodeLabelValue": A100,
            "maxGpus": 4,
            "tolerations": [{"key": "a100-only", "operator": "Exists", "effect": "NoSchedule"}],
        },
    ],
    "migProfiles": ["1g.10gb", "3g.40gb"],
    "admission": {"order": "Fifo", "maxPending": 0},
}

POOL = PoolSizing.from_spec(RunnerSizingPolicySpec.from_dict(POLICY))
