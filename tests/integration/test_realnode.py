"""The devcluster's real node: kubelet (built from the control plane's Kubernetes version) with
containerd and runc registers, runs pods as real containers from the images built here, serves
their logs through the API server, and leaves nothing behind when stopped."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from devcluster.cluster import Cluster
from devcluster.realnode import REAL_NODE_LABEL, Image
from tests.integration.realnode_support import images, on_real_node, real_cluster
from tests.unit.gpu.fake import FakeNode

# 600 s: the first test to ask for the images builds them when `make images` has not (~4 min cold)
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]
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


# In the real DinD containers (the test runner image, which runs dockerd itself with
# dockerdWithinRunnerContainer, and the docker sidecar image): the fake driver tree goes where
# NVIDIA's runtime would put it (/proc/driver/nvidia cannot be written, so discovery reads the copy
# under /fake), runnerd-gpu-setup writes the CDI spec and turns CDI on for Debian's Docker 26,
# dockerd starts with it, and a job container asks for nvidia.com/gpu=all.
GPU_STEP = """set -e
cp -a /fake/dev/nvidia* /dev/
cp -a /fake/usr/lib/x86_64-linux-gnu/. /usr/lib/x86_64-linux-gnu/
cp -a /fake/usr/bin/nvidia-smi /usr/bin/
args=$(runnerd-gpu-setup --root /fake --devices all --dockerd dockerd)
mkdir -p /etc/cdi /etc/docker
cp /fake/etc/cdi/nvidia.yaml /etc/cdi/ && cp /fake/etc/docker/daemon.json /etc/docker/
dockerd --host=unix:///run/docker.sock $args >/tmp/dockerd.log 2>&1 &
n=0
until docker info >/dev/null 2>&1; do
  n=$((n+1)); [ $n -lt 300 ] || { cat /tmp/dockerd.log; exit 1; }; sleep 0.2
done
docker info --format 'cdi-dirs {{json .CDISpecDirs}}'
mkdir -p /tmp/ctx && cd /tmp/ctx
tar -chf rootfs.tar -C / usr/bin/dash usr/lib/x86_64-linux-gnu/libc.so.6 lib64/ld-linux-x86-64.so.2
printf 'FROM scratch\\nADD rootfs.tar /\\nENTRYPOINT ["/usr/bin/dash", "-c"]\\n' >Dockerfile
DOCKER_BUILDKIT=0 docker build -q -t runnerd-e2e/gpu . >/dev/null 2>&1
docker run --rm --network none --device nvidia.com/gpu=all runnerd-e2e/gpu \
  'for d in /dev/nvidia0 /dev/nvidia1 /dev/nvidiactl; do test -c $d && echo "$d: char device"; done
   test -e /usr/lib/x86_64-linux-gnu/libcuda.so.1 && echo "libcuda.so.1: mounted"
   echo "NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES"'
"""


@pytest.mark.parametrize(
    "image",
    [
        "test-runner",  # dockerd in the runner container; the helper from runnerd's Python packages
        "dind",  # the docker sidecar (no Python): the static helper, where runnerd-gpu-install puts it
    ],
)
def test_gpu_helper_writes_a_cdi_spec_the_real_dockerd_uses(
    real_cluster: Cluster, images: dict[str, Image], tmp_path: Path, image: str
) -> None:
    FakeNode(tmp_path / "fake", gpus=2).build()
    volumes: list[dict[str, Any]] = [{"name": "fake", "hostPath": {"path": str(tmp_path / "fake")}}]
    mounts: list[dict[str, Any]] = [{"name": "fake", "mountPath": "/fake"}]  # the helper writes under --root
    if image == "dind":
        helper = images["gpu-helper"].archive
        volumes.append({"name": "helper", "hostPath": {"path": str(helper), "type": "File"}})
        mounts.append({"name": "helper", "mountPath": "/runnerd/bin/runnerd-gpu-setup", "readOnly": True})
    name = f"gpu-helper-{image}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": on_real_node(
            {
                "restartPolicy": "Never",
                "volumes": volumes,
                "containers": [
                    {
                        "name": "dind",
                        "image": images[image].tag,
                        "imagePullPolicy": "Never",
                        "command": ["/bin/sh", "-c", GPU_STEP],
                        "securityContext": {"privileged": True, "runAsUser": 0},
                        "volumeMounts": mounts,
                    }
                ],
            }
        ),
    }
    real_cluster.request("POST", "/api/v1/namespaces/default/pods", pod)
    done = wait_pod(real_cluster, "default", name, {"Succeeded", "Failed"}, within=150)
    logs = real_cluster.kubectl("logs", name, "-n", "default").stdout
    assert done["status"]["phase"] == "Succeeded", logs
    assert 'cdi-dirs ["/etc/cdi"' in logs
    for line in ("/dev/nvidia0: char device", "/dev/nvidia1: char device", "/dev/nvidiactl: char device"):
        assert line in logs
    assert "libcuda.so.1: mounted" in logs
    assert "NVIDIA_VISIBLE_DEVICES=void" in logs  # the spec's own env edit reached the job container
    real_cluster.kubectl("delete", "pod", name, "-n", "default", "--wait=true", "--timeout=60s")
