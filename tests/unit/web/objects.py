"""API objects as the API server returns them, for the fleet, dashboard and status tests."""

from __future__ import annotations

from typing import Any

NS = "ci"
T0 = "2026-01-01T12:00:00Z"


def meta(name: str, namespace: str = NS, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"}
    out["creationTimestamp"] = T0
    out.update(extra)
    return out


def rd(
    name: str,
    replicas: int | None = 2,
    *,
    namespace: str = NS,
    repository: str = "octo-org/app",
    labels: tuple[str, ...] = ("self-hosted", "linux"),
) -> dict[str, Any]:
    spec: dict[str, Any] = {"template": {"spec": {"repository": repository, "labels": list(labels)}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "RunnerDeployment",
        "metadata": meta(name, namespace),
        "spec": spec,
    }


def runnerset(
    name: str, replicas: int = 1, *, namespace: str = NS, organization: str = "octo-org"
) -> dict[str, Any]:
    return {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "RunnerSet",
        "metadata": meta(name, namespace),
        "spec": {
            "replicas": replicas,
            "organization": organization,
            "labels": ["big"],
            "selector": {"matchLabels": {"app": name}},
            "serviceName": name,
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "runner"}]}},
        },
    }


def runner(
    name: str,
    deployment: str | None,
    phase: str | None = None,
    *,
    namespace: str = NS,
    deleting: bool = False,
) -> dict[str, Any]:
    m = meta(name, namespace)
    if deployment is not None:
        m["labels"] = {"runner-deployment-name": deployment, "runner-template-hash": "abc"}
        m["ownerReferences"] = [
            {"kind": "RunnerReplicaSet", "name": f"{deployment}-abc", "uid": "rrs", "controller": True}
        ]
    if deleting:
        m["deletionTimestamp"] = T0
    obj: dict[str, Any] = {"apiVersion": "actions.summerwind.dev/v1alpha1", "kind": "Runner", "metadata": m}
    obj["spec"] = {"repository": "octo-org/app"}
    if phase is not None:
        obj["status"] = {"phase": phase}
    return obj


def pod(
    name: str,
    *,
    namespace: str = NS,
    phase: str = "Running",
    ready: bool = True,
    node: str | None = "kwok-cpu-0",
    gpus: int = 0,
    labels: dict[str, str] | None = None,
    exit_code: int | None = None,
    deleting: bool = False,
    scheduled: bool = True,
) -> dict[str, Any]:
    m = meta(name, namespace, labels={"actions-runner": "", **(labels or {})})
    if deleting:
        m["deletionTimestamp"] = T0
    runner_c: dict[str, Any] = {"name": "runner", "image": "runner"}
    if gpus:
        runner_c["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    spec: dict[str, Any] = {"containers": [runner_c]}
    if node is not None:
        spec["nodeName"] = node
    if exit_code is not None:
        state: dict[str, Any] = {
            "terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error"}
        }
    elif phase == "Running":
        state = {"running": {"startedAt": T0}}
    else:
        state = {"waiting": {"reason": "ContainerCreating"}}
    conditions = [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": T0}]
    if not scheduled:
        conditions = [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/4 nodes"}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": m,
        "spec": spec,
        "status": {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": [{"name": "runner", "state": state}],
        },
    }


def runnerset_pod(sts: str, runnerset_name: str, **kw: Any) -> dict[str, Any]:
    labels = {"runnerset-name": runnerset_name, "runner-statefulset-name": sts}
    return pod(f"{sts}-0", labels=labels, **kw)


def statefulset(
    name: str, runnerset_name: str, *, namespace: str = NS, deleting: bool = False
) -> dict[str, Any]:
    m = meta(name, namespace, labels={"runnerset-name": runnerset_name, "runner-statefulset-name": name})
    if deleting:
        m["deletionTimestamp"] = T0
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": m, "spec": {"replicas": 1}}


def hra(
    name: str,
    target: str,
    *,
    namespace: str = NS,
    kind: str | None = None,
    min_replicas: int = 0,
    max_replicas: int = 5,
    desired: int | None = None,
    reservations: list[dict[str, Any]] | None = None,
    webhook: bool = True,
    schedule: str | None = None,
) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": target}
    if kind is not None:
        ref["kind"] = kind
    spec: dict[str, Any] = {"scaleTargetRef": ref, "minReplicas": min_replicas, "maxReplicas": max_replicas}
    if webhook:
        spec["scaleUpTriggers"] = [{"githubEvent": {"workflowJob": {}}, "duration": "30m"}]
    if reservations:
        spec["capacityReservations"] = reservations
    status: dict[str, Any] = {}
    if desired is not None:
        status["desiredReplicas"] = desired
    if schedule is not None:
        status["scheduledOverridesSummary"] = schedule
    return {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "HorizontalRunnerAutoscaler",
        "metadata": meta(name, namespace),
        "spec": spec,
        "status": status,
    }


def reservation(job: int, *, replicas: int = 1, expires: str = "2026-01-01T12:30:00Z") -> dict[str, Any]:
    return {"name": f"job-{job}", "effectiveTime": T0, "expirationTime": expires, "replicas": replicas}


def warning(
    name: str,
    kind: str,
    obj: str,
    reason: str,
    message: str,
    *,
    namespace: str = NS,
    last: str = T0,
    count: int = 1,
    component: str = "runnerd-controller",
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": meta(name, namespace),
        "type": "Warning",
        "reason": reason,
        "message": message,
        "count": count,
        "lastTimestamp": last,
        "firstTimestamp": last,
        "involvedObject": {"kind": kind, "name": obj, "namespace": namespace},
        "source": {"component": component},
    }


def fleet_objects() -> dict[str, list[dict[str, Any]]]:
    """A small fleet: a CPU deployment (2 runners: idle, busy; a draining one; a failed one), a GPU
    deployment (1 busy GPU runner, 1 starting), a RunnerSet (1 idle, 1 busy), two HRAs."""
    gpu: dict[str, Any] = {"labels": {"runner-deployment-name": "gpu"}}
    return {
        "deployments": [rd("cpu", 2), rd("gpu", 2, labels=("self-hosted", "gpu"))],
        "runner_sets": [runnerset("big", 2)],
        "hras": [
            hra(
                "cpu-hra",
                "cpu",
                min_replicas=1,
                max_replicas=4,
                desired=2,
                reservations=[reservation(1), reservation(2), reservation(3), reservation(4, replicas=0)],
            ),
            hra(
                "gpu-hra",
                "gpu",
                min_replicas=0,
                max_replicas=2,
                desired=2,
                reservations=[reservation(5)],
                schedule="min 1 9:00-17:00",
            ),
        ],
        "runners": [
            runner("cpu-a", "cpu", "Idle"),
            runner("cpu-b", "cpu", "Running"),
            runner("cpu-c", "cpu", "Running", deleting=True),
            runner("cpu-d", "cpu", "Failed"),
            runner("gpu-a", "gpu", "Running"),
            runner("gpu-b", "gpu", None),
        ],
        "pods": [
            pod("cpu-a"),
            pod("cpu-b", ready=False),
            pod("cpu-c", ready=False),
            pod("cpu-d", phase="Failed", exit_code=1),
            pod("gpu-a", node="kwok-gpu-0", gpus=1, ready=False, **gpu),
            pod("gpu-b", phase="Pending", node=None, gpus=1, scheduled=False, **gpu),
            runnerset_pod("big-x", "big"),
            runnerset_pod("big-y", "big", ready=False, node="kwok-gpu-1", gpus=2),
        ],
        "stateful_sets": [statefulset("big-x", "big"), statefulset("big-y", "big")],
    }
