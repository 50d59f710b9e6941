"""The local control plane is real: schema validation, optimistic concurrency, watches and relists,
scheduling against GPU capacity, simulated container exits, garbage collection, namespace deletion."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devcluster.cluster import EXIT_CODE_ANNOTATION, Cluster, ClusterConfig, GpuShape
from devcluster.nodes import GPU_RESOURCE, node_manifests

pytestmark = pytest.mark.cluster

GROUP = "test.runnerd.dev"
WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def http_error(cluster: Cluster, method: str, path: str, body: Any = None) -> urllib.error.HTTPError:
    with pytest.raises(urllib.error.HTTPError) as info:
        cluster.request(method, path, body)
    return info.value


def ensure_widget_crd(cluster: Cluster) -> None:
    try:
        cluster.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD)
    except urllib.error.HTTPError as e:
        if e.code != 409:
            raise

    def established() -> bool:
        crd = cluster.request(
            "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{GROUP}"
        )
        conds = (crd.get("status") or {}).get("conditions") or []  # null right after creation
        return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

    wait_for("the Widget CRD to be Established", established)


def test_crd_round_trip_validation_and_conflict(cluster: Cluster, namespace: str) -> None:
    ensure_widget_crd(cluster)
    base = f"/apis/{GROUP}/v1/namespaces/{namespace}/widgets"
    created = cluster.request(
        "POST",
        base,
        {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}},
    )
    assert created["spec"] == {"size": 3}
    got = cluster.request("GET", f"{base}/w")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]

    bad = http_error(
        cluster,
        "POST",
        base,
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": "bad"},
            "spec": {"size": "large"},
        },
    )
    assert bad.code == 422
    assert "spec.size" in json.loads(bad.read())["message"]

    stale = dict(got, spec={"size": 4})
    cluster.request("PUT", f"{base}/w", dict(got, spec={"size": 5}))
    conflict = http_error(cluster, "PUT", f"{base}/w", stale)
    assert conflict.code == 409
    assert "the object has been modified" in json.loads(conflict.read())["message"]
    assert cluster.request("GET", f"{base}/w")["spec"] == {"size": 5}


def _watch(cluster: Cluster, path: str, resource_version: str, stop_after: int) -> list[dict[str, Any]]:
    url = f"{cluster.server}{path}?watch=true&resourceVersion={resource_version}&timeoutSeconds=10"
    ctx: ssl.SSLContext = cluster.admin_ssl()
    events: list[dict[str, Any]] = []
    with urllib.request.urlopen(url, context=ctx, timeout=15) as resp:
        for line in resp:
            events.append(json.loads(line))
            if len(events) >= stop_after:
                break
    return events


def test_watch_sees_create_update_delete(cluster: Cluster, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    listed = cluster.request("GET", path)
    rv = listed["metadata"]["resourceVersion"]
    cluster.request("POST", path, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    cm = cluster.request("GET", f"{path}/cm")
    cm["data"] = {"a": "2"}
    cluster.request("PUT", f"{path}/cm", cm)
    cluster.request("DELETE", f"{path}/cm")
    events = _watch(cluster, path, rv, stop_after=3)
    assert [(e["type"], e["object"]["data"]["a"]) for e in events] == [
        ("ADDED", "1"),
        ("MODIFIED", "2"),
        ("DELETED", "2"),
    ]


def test_relist_after_watch_expires(cluster: Cluster, namespace: str) -> None:
    """A watch from a compacted resourceVersion gets 410 Gone; a fresh list then sees the current state."""
    path = f"/api/v1/namespaces/{namespace}/podtemplates"
    template = {
        "metadata": {"name": "pt"},
        "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}},
    }
    old_rv = cluster.request("GET", path)["metadata"]["resourceVersion"]
    cluster.request("POST", path, template)
    cluster.request("POST", path, dict(template, metadata={"name": "pt2"}))
    cluster.request("DELETE", f"{path}/pt")
    cluster.compact_etcd()

    events = _watch(cluster, path, old_rv, stop_after=1)
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410

    relisted = cluster.request("GET", path)
    assert [i["metadata"]["name"] for i in relisted["items"]] == ["pt2"]
    cluster.request("DELETE", f"{path}/pt2")
    after = _watch(cluster, path, relisted["metadata"]["resourceVersion"], stop_after=1)
    assert (after[0]["type"], after[0]["object"]["metadata"]["name"]) == ("DELETED", "pt2")


def _pod(name: str, gpus: int = 0, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "runner", "image": "ghcr.io/example/runner:latest"}
    spec: dict[str, Any] = {"containers": [container], "restartPolicy": "Never"}
    if gpus:
        container["resources"] = {"limits": {GPU_RESOURCE: str(gpus)}}
        spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    return {"metadata": {"name": name, "annotations": annotations or {}}, "spec": spec}


def test_gpu_pod_scheduled_to_gpu_node_and_oversized_pod_unschedulable(
    cluster: Cluster, namespace: str
) -> None:
    pods = f"/api/v1/namespaces/{namespace}/pods"
    cluster.request("POST", pods, _pod("one-gpu", gpus=1))
    cluster.request("POST", pods, _pod("nine-gpus", gpus=9))

    def running() -> dict[str, Any] | None:
        pod: dict[str, Any] = cluster.request("GET", f"{pods}/one-gpu")
        return pod if pod["status"].get("phase") == "Running" else None

    pod = wait_for("the 1-GPU pod to run", running)
    node = cluster.request("GET", f"/api/v1/nodes/{pod['spec']['nodeName']}")
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert node["status"]["allocatable"][GPU_RESOURCE] == "8"

    def unschedulable() -> dict[str, Any] | None:
        p = cluster.request("GET", f"{pods}/nine-gpus")
        for cond in p["status"].get("conditions", []):
            if cond["type"] == "PodScheduled" and cond["status"] == "False":
                return dict(cond)
        return None

    cond = wait_for("the 9-GPU pod to be marked unschedulable", unschedulable)
    assert cond["reason"] == "Unschedulable"
    assert "nvidia.com/gpu" in cond["message"]
    assert cluster.request("GET", f"{pods}/nine-gpus")["status"]["phase"] == "Pending"


def test_mig_slices_are_schedulable(cluster: Cluster, namespace: str) -> None:
    """A MIG-only node of the devcluster shapes (``--gpu-shape ...:0:1:1g.10gb=2,1g.10gb+me=1``),
    added beside the session's nodes and removed after: the API server takes its resources, and a
    pod asking for one slice is bound to it."""
    shape = GpuShape.parse("NVIDIA-A100-SXM4-80GB:0:1:1g.10gb=2,1g.10gb+me=1")
    (node,) = node_manifests(ClusterConfig(state_dir=Path("/nonexistent"), cpu_nodes=0, gpu_shapes=(shape,)))
    name = f"mig-{namespace}"
    node["metadata"]["name"] = node["metadata"]["labels"]["kubernetes.io/hostname"] = name
    cluster.request("POST", "/api/v1/nodes", node)
    pods = f"/api/v1/namespaces/{namespace}/pods"
    try:
        stored = cluster.request("GET", f"/api/v1/nodes/{name}")
        assert stored["status"]["capacity"]["nvidia.com/mig-1g.10gb.me"] == "1"
        for pod_name, resource in (
            ("slice", "nvidia.com/mig-1g.10gb"),
            ("slice-me", "nvidia.com/mig-1g.10gb.me"),
        ):
            pod = _pod(pod_name)
            pod["spec"]["containers"][0]["resources"] = {"limits": {resource: "1"}}
            pod["spec"]["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
            cluster.request("POST", pods, pod)

        def bound(pod_name: str) -> Callable[[], str | None]:
            return lambda: cluster.request("GET", f"{pods}/{pod_name}")["spec"].get("nodeName")

        assert wait_for("the 1g.10gb pod to be bound", bound("slice")) == name
        assert wait_for("the 1g.10gb+me pod to be bound", bound("slice-me")) == name
    finally:
        for pod_name in ("slice", "slice-me"):
            try:
                cluster.request("DELETE", f"{pods}/{pod_name}", {"gracePeriodSeconds": 0})
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise
        cluster.request("DELETE", f"/api/v1/nodes/{name}")


def test_cpu_pod_avoids_gpu_nodes(cluster: Cluster, namespace: str) -> None:
    pods = f"/api/v1/namespaces/{namespace}/pods"
    cluster.request("POST", pods, _pod("cpu-only"))
    pod = wait_for(
        "the CPU pod to be scheduled",
        lambda: (p := cluster.request("GET", f"{pods}/cpu-only"))["spec"].get("nodeName") and p,
    )
    assert pod["spec"]["nodeName"].startswith("cpu-node-")


@pytest.mark.parametrize(("code", "phase"), [("0", "Succeeded"), ("1", "Failed"), ("137", "Failed")])
def test_simulated_container_exit(cluster: Cluster, namespace: str, code: str, phase: str) -> None:
    pods = f"/api/v1/namespaces/{namespace}/pods"
    cluster.request("POST", pods, _pod("p"))
    wait_for(
        "the pod to run", lambda: cluster.request("GET", f"{pods}/p")["status"].get("phase") == "Running"
    )
    # the documented way for tests and tools: annotate the pod
    cluster.kubectl("annotate", "pod", "p", "-n", namespace, f"{EXIT_CODE_ANNOTATION}={code}")
    pod = wait_for(
        f"the pod to reach {phase}",
        lambda: (p := cluster.request("GET", f"{pods}/p"))["status"].get("phase") == phase and p,
    )
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == int(code)


def test_owner_deletion_garbage_collects_children(cluster: Cluster, namespace: str) -> None:
    cms = f"/api/v1/namespaces/{namespace}/configmaps"
    owner = cluster.request("POST", cms, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    cluster.request("POST", cms, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    cluster.request("DELETE", f"{cms}/owner")

    def child_gone() -> bool:
        try:
            cluster.request("GET", f"{cms}/child")
        except urllib.error.HTTPError as e:
            return e.code == 404
        return False

    wait_for("the garbage collector to delete the child", child_gone)


def test_namespace_deletion_completes(cluster: Cluster) -> None:
    name = "ns-delete-test"
    cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    cluster.request("POST", f"/api/v1/namespaces/{name}/configmaps", {"metadata": {"name": "cm"}})
    cluster.request("POST", f"/api/v1/namespaces/{name}/pods", _pod("p"))
    cluster.request("DELETE", f"/api/v1/namespaces/{name}")

    def gone() -> bool:
        try:
            cluster.request("GET", f"/api/v1/namespaces/{name}")
        except urllib.error.HTTPError as e:
            return e.code == 404
        return False

    wait_for("the namespace to finish deleting", gone, timeout=60)


def test_kube_apiserver_reports_real_version(cluster: Cluster) -> None:
    version = cluster.request("GET", "/version")
    assert version["gitVersion"].startswith("v1.36.")
    assert version["major"] == "1"
