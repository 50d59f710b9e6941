from __future__ import annotations

from pathlib import Path

import pytest

from devcluster.cluster import ClusterConfig, GpuShape
from devcluster.nodes import GPU_RESOURCE, node_manifests


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NVIDIA-H100-80GB-HBM3:8:2", GpuShape("NVIDIA-H100-80GB-HBM3", 8, 2)),
        ("NVIDIA-A100-SXM4-40GB:4:1", GpuShape("NVIDIA-A100-SXM4-40GB", 4, 1)),
        ("Tesla-T4:1:0", GpuShape("Tesla-T4", 1, 0)),
    ],
)
def test_gpu_shape_parses(text: str, expected: GpuShape) -> None:
    assert GpuShape.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("H100:8", "PRODUCT:GPUS_PER_NODE:NODES"),
        (":8:2", "PRODUCT:GPUS_PER_NODE:NODES"),
        ("H100:eight:2", "must be integers"),
        ("H100:0:2", "at least 1 GPU"),
        ("H100:8:-1", "at least 1 GPU per node and 0 or more nodes"),
    ],
)
def test_gpu_shape_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GpuShape.parse(text)


def test_node_manifests_default_shape() -> None:
    nodes = node_manifests(ClusterConfig(state_dir=Path("/nonexistent")))
    assert [n["metadata"]["name"] for n in nodes] == ["cpu-node-0", "cpu-node-1", "gpu-node-0", "gpu-node-1"]
    cpu, gpu = nodes[0], nodes[2]
    assert GPU_RESOURCE not in cpu["status"]["allocatable"]
    assert cpu["spec"]["taints"] == []
    assert gpu["status"]["allocatable"][GPU_RESOURCE] == "8"
    assert gpu["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert gpu["metadata"]["labels"]["nvidia.com/gpu.count"] == "8"
    assert gpu["spec"]["taints"] == [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}]
    assert all(n["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake" for n in nodes)


def test_node_manifests_mixed_shapes() -> None:
    config = ClusterConfig(
        state_dir=Path("/nonexistent"),
        cpu_nodes=0,
        gpu_shapes=(GpuShape("A100", 4, 1), GpuShape("H100", 8, 2)),
        max_pods=500,
    )
    nodes = node_manifests(config)
    assert [(n["metadata"]["name"], n["status"]["capacity"][GPU_RESOURCE]) for n in nodes] == [
        ("gpu-node-0", "4"),
        ("gpu-node-1", "8"),
        ("gpu-node-2", "8"),
    ]
    assert {n["status"]["capacity"]["pods"] for n in nodes} == {"500"}
