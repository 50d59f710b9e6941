"""The generated runner pods are accepted by a real kube-apiserver (v1.36, admission included), and a
GPU runner pod is placed by the real scheduler on a GPU node; the pod-state classifier reads the
status that kwok then writes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from devcluster.cluster import EXIT_CODE_ANNOTATION, EXIT_CONTAINER_ANNOTATION, Cluster
from runnerd.manifests.pod import RunnerPodMode, runner_pod_mode
from runnerd.reconcile.podstate import RunnerPodPhase, runner_container_state
from tests.integration.test_devcluster import wait_for
from tests.unit.manifests.podkit import (
    ARTICLE_DIND,
    ARTICLE_ORG,
    ARTICLE_REPO,
    GPU_LIMIT,
    JIT,
    KUBERNETES_MODE,
    MODES,
    TOKEN,
    pod,
    spec,
)

pytestmark = pytest.mark.cluster

PRIORITY_CLASS = "runnerd-test-low"
RUNTIME_CLASSES = ("runnerd-test-gvisor", "nvidia")

EVERY_FIELD: dict[str, Any] = {
    **ARTICLE_REPO,
    "image": "ghcr.io/acme/runner:2",
    "ephemeral": False,
    "group": "ml",
    "workDir": "/work",
    "dockerMTU": 1400,
    "dockerRegistryMirror": "https://mirror.gcr.io",
    "dockerVarRunVolumeSizeLimit": "2M",
    "volumeSizeLimit": "4Gi",
    "volumeStorageMedium": "Memory",
    "dockerdContainerResources": {"limits": {"memory": "8Gi"}, "requests": {"cpu": "500m"}},
    "dockerVolumeMounts": [{"name": "docker-cache", "mountPath": "/var/lib/docker"}],
    "dockerEnv": [{"name": "DOCKER_TLS_CERTDIR", "value": ""}],
    "containers": [
        {
            "name": "runner",
            "ports": [{"containerPort": 8080}],
            "env": [{"name": "FROM_CONTAINERS", "value": "1"}],
        },
        {"name": "docker", "args": ["--storage-driver=overlay2"]},
    ],
    "imagePullPolicy": "IfNotPresent",
    "env": [{"name": "FOO", "value": "bar"}, {"name": "RUNNER_GRACEFUL_STOP_TIMEOUT", "value": "90"}],
    "envFrom": [{"configMapRef": {"name": "ci-env", "optional": True}}],
    "resources": {"limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "1"}},
    "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
    "volumes": [{"name": "cache", "emptyDir": {}}, {"name": "docker-cache", "emptyDir": {}}],
    "enableServiceLinks": False,
    "initContainers": [{"name": "warm-cache", "image": "busybox", "command": ["true"]}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "serviceAccountName": "ci-runner",
    "automountServiceAccountToken": False,
    "sidecarContainers": [{"name": "cache-proxy", "image": "squid:6"}],
    "securityContext": {"fsGroup": 1001},
    "imagePullSecrets": [{"name": "regcred"}],
    "affinity": {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 1,
                    "preference": {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ci"]}]},
                }
            ]
        }
    },
    "tolerations": [{"key": "ci", "operator": "Exists", "effect": "NoSchedule"}],
    "priorityClassName": PRIORITY_CLASS,
    "terminationGracePeriodSeconds": 100,
    "ephemeralContainers": [{"name": "debug", "image": "busybox"}],
    "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["ghes.internal"]}],
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}
    ],
    "runtimeClassName": "runnerd-test-gvisor",
    "dnsPolicy": "None",
    "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["corp"]},
}

CASES: dict[str, tuple[dict[str, Any], Any]] = {
    "article-repository": (ARTICLE_REPO, TOKEN),
    "article-organization": (ARTICLE_ORG, TOKEN),
    "article-dind-in-runner": (ARTICLE_DIND, TOKEN),
    "jit": (ARTICLE_REPO, JIT),
    "every-arc-field": (EVERY_FIELD, TOKEN),
    "selinux": ({**ARTICLE_REPO, "securityContext": {"seLinuxOptions": {"level": "s0:c1,c2"}}}, TOKEN),
    "gpu-requests-only": ({**ARTICLE_REPO, "resources": {"requests": {"nvidia.com/gpu": 1}}}, TOKEN),
    "gpu-runtime-class-nvidia": ({**ARTICLE_DIND, **GPU_LIMIT, "runtimeClassName": "nvidia"}, TOKEN),
    **{mode: (raw, TOKEN) for mode, raw in MODES.items()},
    **{f"gpu-{mode}": ({**raw, **GPU_LIMIT}, JIT) for mode, raw in MODES.items()},
}


def _send(cluster: Cluster, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """(HTTP status, decoded body), for errors too."""
    req = urllib.request.Request(
        f"{cluster.server}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Accept": "application/json", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, context=cluster.admin_ssl(), timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def _ensure(cluster: Cluster, path: str, body: dict[str, Any]) -> None:
    code, answer = _send(cluster, "POST", path, body)
    assert code in (201, 409), answer


@pytest.fixture
def prerequisites(cluster: Cluster, namespace: str) -> str:
    """What the pods refer to and admission checks: classes, service accounts."""
    _ensure(
        cluster,
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": PRIORITY_CLASS},
            "value": 10,
        },
    )
    for name in RUNTIME_CLASSES:
        _ensure(
            cluster,
            "/apis/node.k8s.io/v1/runtimeclasses",
            {
                "apiVersion": "node.k8s.io/v1",
                "kind": "RuntimeClass",
                "metadata": {"name": name},
                "handler": name,
            },
        )
    for sa in ("ci-runner", "runner-hooks"):  # the second: the kubernetes-mode example's account
        _ensure(cluster, f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": sa}})
    return namespace


@pytest.mark.parametrize("case", sorted(CASES))
def test_pod_passes_server_validation(cluster: Cluster, prerequisites: str, case: str) -> None:
    raw, registration = CASES[case]
    manifest = pod(raw, registration=registration, namespace=prerequisites)
    code, answer = _send(cluster, "POST", f"/api/v1/namespaces/{prerequisites}/pods?dryRun=All", manifest)
    assert code == 201, f"{case}: {code} {answer and answer.get('message')}"
    # defaulting/admission did not drop or rewrite what we built
    assert [c["name"] for c in answer["spec"]["containers"]] == [
        c["name"] for c in manifest["spec"]["containers"]
    ]
    assert answer["spec"]["restartPolicy"] == "Never"


def test_ephemeral_containers_cannot_be_set_on_create(cluster: Cluster, prerequisites: str) -> None:
    """Why build_runner_pod leaves spec.ephemeralContainers out (ARC passes it through)."""
    manifest = pod(ARTICLE_REPO, namespace=prerequisites)
    manifest["spec"]["ephemeralContainers"] = [{"name": "debug", "image": "busybox"}]
    code, answer = _send(cluster, "POST", f"/api/v1/namespaces/{prerequisites}/pods?dryRun=All", manifest)
    assert code == 422
    assert "cannot be set on create" in answer["message"]


@pytest.mark.parametrize("mode", ["dind-sidecar", "dind-in-runner"])
def test_gpu_runner_pod_is_scheduled_on_a_gpu_node(cluster: Cluster, namespace: str, mode: str) -> None:
    raw = {**MODES[mode], **GPU_LIMIT}
    assert runner_pod_mode(spec(raw)) is RunnerPodMode(mode)
    manifest = pod(raw, name=f"gpu-{mode}", namespace=namespace)
    pods = f"/api/v1/namespaces/{namespace}/pods"
    cluster.request("POST", pods, manifest)

    def ready() -> dict[str, Any] | None:
        got: dict[str, Any] = cluster.request("GET", f"{pods}/gpu-{mode}")
        return got if runner_container_state(got).phase is RunnerPodPhase.READY else None

    running = wait_for("the GPU runner pod to be Ready", ready)
    node = cluster.request("GET", f"/api/v1/nodes/{running['spec']['nodeName']}")
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"

    # the runner exits 1 (kwok's container-exit stage): classified from the real status
    cluster.kubectl(
        "annotate",
        "-n",
        namespace,
        "pod",
        f"gpu-{mode}",
        f"{EXIT_CODE_ANNOTATION}=1",
        f"{EXIT_CONTAINER_ANNOTATION}=runner",
    )

    def failed() -> Any:
        state = runner_container_state(cluster.request("GET", f"{pods}/gpu-{mode}"))
        return state if state.phase is RunnerPodPhase.FAILED else None

    state = wait_for("the runner pod to fail", failed)
    assert (state.exit_code, state.container, state.reason) == (1, "runner", "Error")


def test_gpu_toleration_is_what_gets_it_scheduled(cluster: Cluster, namespace: str) -> None:
    """Control: the same pod without the generated toleration is refused by the GPU nodes' taint;
    an oversized request is Unschedulable for capacity. Both come back with the scheduler's message."""
    pods = f"/api/v1/namespaces/{namespace}/pods"
    untolerated = pod({**ARTICLE_REPO, **GPU_LIMIT}, name="no-toleration", namespace=namespace)
    del untolerated["spec"]["tolerations"]
    oversized = pod(
        {**ARTICLE_REPO, "resources": {"limits": {"nvidia.com/gpu": 100}}},
        name="oversized",
        namespace=namespace,
    )
    for manifest in (untolerated, oversized):
        cluster.request("POST", pods, manifest)

    def unschedulable(name: str) -> Callable[[], Any]:
        def probe() -> Any:
            state = runner_container_state(cluster.request("GET", f"{pods}/{name}"))
            return state if state.phase is RunnerPodPhase.UNSCHEDULABLE else None

        return probe

    state = wait_for("the untolerated pod to be unschedulable", unschedulable("no-toleration"))
    assert "untolerated taint" in state.message
    state = wait_for("the oversized pod to be unschedulable", unschedulable("oversized"))
    assert "Insufficient nvidia.com/gpu" in state.message
    assert state.stuck


def test_kubernetes_mode_claim_template_is_valid(cluster: Cluster, prerequisites: str) -> None:
    manifest = pod(KUBERNETES_MODE, namespace=prerequisites)
    code, answer = _send(cluster, "POST", f"/api/v1/namespaces/{prerequisites}/pods?dryRun=All", manifest)
    assert code == 201, answer
    (work,) = [v for v in answer["spec"]["volumes"] if v["name"] == "work"]
    assert work["ephemeral"]["volumeClaimTemplate"]["spec"]["storageClassName"] == "standard"
