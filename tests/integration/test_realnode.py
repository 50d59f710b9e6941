"""The devcluster's real node: kubelet (built from the control plane's Kubernetes version) with
containerd and runc registers, runs pods as real containers from the images built here, serves
their logs through the API server, and leaves nothing behind when stopped."""

from __future__ import annotations

import time
from typing import Any

import pytest

from devcluster.cluster import Cluster
from devcluster.realnode import REAL_NODE_LABEL, Image
from tests.integration.realnode_support import images, on_real_node, real_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]
__all__ = ["images", "real_cluster"]


def wait_pod(
    cluster: Cluster, namespace: str, name: str, phases: set[str], within: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        pod: dict[str, Any] = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        if pod.get("status", {}).get("phase") in phases:
            return pod
        assert time.monotonic() < deadline, f"pod {name} not {phases}: {pod.get('status')}"
        time.sleep(0.2)


def test_real_node_registers_with_the_control_planes_version(real_cluster: Cluster) -> None:
    nodes = real_cluster.request("GET", f"/api/v1/nodes?labelSelector={REAL_NODE_LABEL}%3Dtrue")["items"]
    assert [n["metadata"]["name"] for n in nodes] == ["real-node-0"]
    info = nodes[0]["status"]["nodeInfo"]
    version = real_cluster.kubectl("version", "-o", "json").stdout
    assert f'"gitVersion": "{info["kubeletVersion"]}"' in version  # kubelet == kube-apiserver
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert {"key": REAL_NODE_LABEL, "value": "true", "effect": "NoSchedule"} in nodes[0]["spec"]["taints"]


@pytest.mark.parametrize(
    ("script", "phase", "code"), [("echo hello; exit 0", "Succeeded", 0), ("exit 7", "Failed", 7)]
)
def test_a_pod_runs_as_a_real_container(
    real_cluster: Cluster, images: dict[str, Image], script: str, phase: str, code: int
) -> None:
    name = f"real-{code}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": on_real_node(
            {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": images["dind"].tag,
                        "imagePullPolicy": "Never",
                        "command": ["/bin/sh", "-c", f"id -u; {script}"],
                    }
                ],
            }
        ),
    }
    real_cluster.request("POST", "/api/v1/namespaces/default/pods", pod)
    done = wait_pod(real_cluster, "default", name, {"Succeeded", "Failed"})
    assert done["status"]["phase"] == phase
    state = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == code
    assert done["status"]["podIP"].startswith(real_cluster.real_nodes[0].subnet.rsplit(".", 1)[0])
    logs = real_cluster.kubectl("logs", name, "-n", "default").stdout  # API server -> kubelet
    assert logs.splitlines()[0] == "0"
    real_cluster.kubectl("delete", "pod", name, "-n", "default", "--wait=true", "--timeout=60s")
