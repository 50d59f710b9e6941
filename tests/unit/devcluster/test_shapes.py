from __future__ import annotations

from pathlib import Path

import pytest

from devcluster.cluster import MIXED_GPU_SHAPES, ClusterConfig, GpuShape
from devcluster.nodes import GPU_RESOURCE, node_manifests

A100 = "NVIDIA-A100-SXM4-80GB"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NVIDIA-H100-80GB-HBM3:8:2", GpuShape("NVIDIA-H100-80GB-HBM3", 8, 2)),
        ("NVIDIA-A100-SXM4-40GB:4:1", GpuShape("NVIDIA-A100-SXM4-40GB", 4, 1)),
        ("Tesla-T4:1:0", GpuShape("Tesla-T4", 1, 0)),
        (f"{A100}:0:1:1g.10gb=7", GpuShape(A100, 0, 1, (("1g.10gb", 7),))),
        (f"{A100}:2:3:3g.40gb=1,1g.10gb+me=2", GpuShape(A100, 2, 3, (("3g.40gb", 1), ("1g.10gb+me", 2)))),
    ],
)
def test_gpu_shape_parses(text: str, expected: GpuShape) -> None:
    assert GpuShape.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("H100:8", "PRODUCT:GPUS_PER_NODE:NODES"),
        (":8:2", "PRODUCT:GPUS_PER_NODE:NODES"),
        ("H100:8:2:1g.10gb=1:x", "PRODUCT:GPUS_PER_NODE:NODES"),
        ("H100:eight:2", "must be integers"),
        ("H100:0:2", "at least 1 GPU"),
        ("H100:8:-1", r"at least 1 GPU per node \(0 with MIG slices\) and 0 or more nodes"),
        ("A100:-1:1:1g.10gb=7", "at least 1 GPU per node"),
        ("A100:0:1:mig-1g.10gb=7", "PROFILE=COUNT"),
        ("A100:0:1:1g.10gb", "PROFILE=COUNT"),
        ("A100:0:1:1g.10gb=0", "PROFILE=COUNT"),
        ("A100:0:1:1G.10GB=1", "PROFILE=COUNT"),
        ("A100:0:1:1g.10gb=1,1g.10gb=2", "listed twice"),
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


def test_node_manifests_mig_shape() -> None:
    config = ClusterConfig(
        state_dir=Path("/nonexistent"),
        cpu_nodes=0,
        gpu_shapes=(GpuShape(A100, 1, 1, (("1g.10gb", 7), ("3g.40gb", 1))),),
    )
    (node,) = node_manifests(config)
    assert node["status"]["allocatable"] == {
        "cpu": "96", "memory": "1Ti", "pods": "110",
        GPU_RESOURCE: "1", "nvidia.com/mig-1g.10gb": "7", "nvidia.com/mig-3g.40gb": "1",
    }  # fmt: skip
    labels = node["metadata"]["labels"]
    assert labels["nvidia.com/mig.strategy"] == "mixed"
    assert (labels["nvidia.com/mig-1g.10gb.count"], labels["nvidia.com/mig-3g.40gb.count"]) == ("7", "1")
    assert labels["nvidia.com/gpu.product"] == A100
    assert node["spec"]["taints"] == [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}]


def test_whole_gpu_nodes_carry_no_mig_labels() -> None:
    (node,) = node_manifests(
        ClusterConfig(state_dir=Path("/x"), cpu_nodes=0, gpu_shapes=(GpuShape(A100, 4, 1),))
    )
    assert not [k for k in node["metadata"]["labels"] if "mig" in k]
    assert not [k for k in node["status"]["allocatable"] if "mig" in k]


def test_mixed_gpu_fleet_places_every_sizing_label() -> None:
    """gpu=2 and gpu-type=h100 on H100 nodes, gpu-type=a100 on the A100 node, mig=1g.10gb on the split one."""
    nodes = node_manifests(ClusterConfig(state_dir=Path("/x"), cpu_nodes=1, gpu_shapes=MIXED_GPU_SHAPES))
    by_product: dict[str, list[dict[str, str]]] = {}
    for n in nodes[1:]:
        by_product.setdefault(n["metadata"]["labels"]["nvidia.com/gpu.product"], []).append(
            n["status"]["allocatable"]
        )
    h100 = by_product["NVIDIA-H100-80GB-HBM3"]
    assert [a[GPU_RESOURCE] for a in h100] == ["8", "8"]
    assert sorted((a[GPU_RESOURCE], a.get("nvidia.com/mig-1g.10gb")) for a in by_product[A100]) == [
        ("0", "7"),
        ("4", None),
    ]
    assert [n["metadata"]["name"] for n in nodes] == ["cpu-node-0", *(f"gpu-node-{i}" for i in range(4))]
    shapes = [
        GpuShape.parse(t) for t in ("NVIDIA-H100-80GB-HBM3:8:2", f"{A100}:4:1", f"{A100}:0:1:1g.10gb=7")
    ]
    assert tuple(shapes) == MIXED_GPU_SHAPES


def test_media_extension_profiles_become_valid_resource_names() -> None:
    shape = GpuShape.parse(f"{A100}:0:1:1g.10gb+me=1")
    (node,) = node_manifests(ClusterConfig(state_dir=Path("/x"), cpu_nodes=0, gpu_shapes=(shape,)))
    assert node["status"]["allocatable"]["nvidia.com/mig-1g.10gb.me"] == "1"
    assert node["metadata"]["labels"]["nvidia.com/mig-1g.10gb.me.count"] == "1"
    assert not [k for k in node["status"]["allocatable"] if "+" in k]
