"""The simulated (kwok) nodes of a dev cluster as Node manifests: a pure function of its
configuration, so a test can check the shapes without a cluster.

GPU nodes look as the NVIDIA device plugin and GPU Feature Discovery make them: allocatable
``nvidia.com/gpu`` (whole GPUs) and, with MIG slices, ``nvidia.com/mig-<profile>`` (the ``mixed``
strategy; a profile's ``+`` becomes ``.``, as the device plugin writes it: ``1g.10gb+me`` is
``nvidia.com/mig-1g.10gb.me``), the labels ``nvidia.com/gpu.product``, ``.count``, ``.present``,
``nvidia.com/mig.strategy`` and ``nvidia.com/mig-<profile>.count``, and the ``nvidia.com/gpu``
NoSchedule taint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cluster import ClusterConfig

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"


def node_manifests(cfg: ClusterConfig) -> list[dict[str, Any]]:
    """The kwok nodes of ``cfg``: CPU nodes, then each GPU shape's nodes (labelled, tainted and
    with allocatable GPUs as the NVIDIA device plugin and GPU feature discovery make them)."""
    nodes: list[dict[str, Any]] = []

    def node(
        name: str,
        cpu: str,
        memory: str,
        labels: dict[str, str],
        extra: dict[str, str],
        taints: list[dict[str, str]],
    ) -> dict[str, Any]:
        capacity = {"cpu": cpu, "memory": memory, "pods": str(cfg.max_pods), **extra}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    **labels,
                },
            },
            "spec": {"taints": taints},
            "status": {"capacity": capacity, "allocatable": dict(capacity)},
        }

    for i in range(cfg.cpu_nodes):
        nodes.append(node(f"cpu-node-{i}", cfg.node_cpu, cfg.node_memory, {}, {}, []))
    index = 0
    for shape in cfg.gpu_shapes:
        for _ in range(shape.nodes):
            labels = {
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": shape.product,
                "nvidia.com/gpu.count": str(shape.gpus),
            }
            resources = {GPU_RESOURCE: str(shape.gpus)}
            if shape.mig:
                labels["nvidia.com/mig.strategy"] = "mixed"
            for profile, count in shape.mig:
                name = MIG_RESOURCE_PREFIX + profile.replace("+", ".")  # no "+" in resource names
                labels[f"{name}.count"] = str(count)
                resources[name] = str(count)
            nodes.append(
                node(
                    f"gpu-node-{index}",
                    cfg.gpu_node_cpu,
                    cfg.gpu_node_memory,
                    labels,
                    resources,
                    [dict(GPU_TAINT)],
                )
            )
            index += 1
    return nodes
