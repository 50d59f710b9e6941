"""runner_container_state: classification of realistic runner pods (kwok's and real kubelets')."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from runnerd.reconcile.podstate import RunnerPodPhase, RunnerPodState, runner_container_state

P = RunnerPodPhase
T0 = "2026-11-27T17:15:53Z"
T1 = "2026-11-27T17:15:58Z"


def cond(
    kind: str, status: str, reason: str | None = None, message: str | None = None, at: str = T0
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": at}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def cstatus(name: str, state: dict[str, Any], ready: bool = False, image: str = "img") -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imageID": "",
        "lastState": {},
        "ready": ready,
        "restartCount": 0,
        "state": state,
    }


def running(at: str = T0) -> dict[str, Any]:
    return {"running": {"startedAt": at}}


def terminated(code: int, reason: str, message: str | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {"exitCode": code, "reason": reason, "startedAt": T0, "finishedAt": T1}
    if message:
        t["message"] = message
    return {"terminated": t}


def waiting(reason: str, message: str | None = None) -> dict[str, Any]:
    return {"waiting": {"reason": reason, **({"message": message} if message else {})}}


def pod(status: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "rd-abcde-fghij",
            "namespace": "ns",
            "uid": "9bac3faf",
            "creationTimestamp": T0,
            **metadata,
        },
        "spec": {
            "containers": [{"name": "runner", "image": "img"}, {"name": "docker", "image": "docker:dind"}]
        },
        "status": status,
    }


# As kwok 0.8 reports a scheduled runner pod (captured from the devcluster).
KWOK_RUNNING = pod(
    {
        "conditions": [
            cond("Initialized", "True"),
            cond("Ready", "True"),
            cond("ContainersReady", "True"),
            cond("PodScheduled", "True"),
        ],
        "containerStatuses": [
            cstatus("runner", running(), ready=True),
            cstatus("docker", running(), ready=True, image="docker:dind"),
        ],
        "initContainerStatuses": [cstatus("runnerd-gpu-install", terminated(0, "Completed"), ready=True)],
        "hostIP": "10.63.0.1",
        "phase": "Running",
        "podIP": "10.64.0.1",
        "qosClass": "BestEffort",
        "startTime": T0,
    },
    annotations={"actions-runner/id": "42"},
)

# After `kubectl annotate pod P devcluster.runnerd.dev/exit-code=1 .../exit-container=runner`.
KWOK_FAILED = pod(
    {
        "conditions": [
            cond("Initialized", "True"),
            cond("Ready", "False", "PodFailed", at=T1),
            cond("ContainersReady", "False", "PodFailed", at=T1),
            cond("PodScheduled", "True"),
        ],
        "containerStatuses": [
            cstatus("runner", terminated(1, "Error")),
            cstatus("docker", terminated(0, "Completed"), image="docker:dind"),
        ],
        "phase": "Failed",
        "qosClass": "BestEffort",
        "startTime": T0,
    }
)

KWOK_SUCCEEDED = pod(
    {
        "conditions": [cond("Ready", "False", "PodCompleted", at=T1), cond("PodScheduled", "True")],
        "containerStatuses": [
            cstatus("runner", terminated(0, "Completed")),
            cstatus("docker", terminated(0, "Completed")),
        ],
        "phase": "Succeeded",
    }
)

UNSCHEDULABLE_MSG = (
    "0/4 nodes are available: 4 Insufficient nvidia.com/gpu. no new claims to deallocate, preemption: "
    "0/4 nodes are available: 4 Preemption is not helpful for scheduling."
)
KWOK_UNSCHEDULABLE = pod(
    {
        "conditions": [
            cond("PodScheduled", "False", "Unschedulable", UNSCHEDULABLE_MSG) | {"observedGeneration": 1}
        ],
        "phase": "Pending",
        "qosClass": "BestEffort",
    }
)

PULL_MSG = (
    'failed to pull and unpack image "docker.io/summerwind/actions-runner:latst": '
    'failed to resolve reference "docker.io/summerwind/actions-runner:latst": '
    "docker.io/summerwind/actions-runner:latst: not found"
)


def pending_with(runner_state: dict[str, Any], docker_state: dict[str, Any] | None = None) -> dict[str, Any]:
    return pod(
        {
            "conditions": [
                cond("Initialized", "True"),
                cond("Ready", "False", "ContainersNotReady"),
                cond("PodScheduled", "True"),
            ],
            "containerStatuses": [
                cstatus("runner", runner_state),
                cstatus("docker", docker_state or waiting("ContainerCreating")),
            ],
            "phase": "Pending",
        }
    )


CASES: list[tuple[str, dict[str, Any], RunnerPodState]] = [
    (
        "kwok-running-ready",
        KWOK_RUNNING,
        RunnerPodState(
            P.READY,
            runner_id=42,
            running_since=dt.datetime(2026, 11, 27, 17, 15, 53, tzinfo=dt.UTC),
            ready_since=dt.datetime(2026, 11, 27, 17, 15, 53, tzinfo=dt.UTC),
        ),
    ),
    (
        "kwok-failed-exit-1",
        KWOK_FAILED,
        RunnerPodState(P.FAILED, reason="Error", container="runner", exit_code=1),
    ),
    (
        "kwok-succeeded",
        KWOK_SUCCEEDED,
        RunnerPodState(P.SUCCEEDED, reason="Completed", container="runner", exit_code=0),
    ),
    (
        "kwok-unschedulable",
        KWOK_UNSCHEDULABLE,
        RunnerPodState(P.UNSCHEDULABLE, "Unschedulable", UNSCHEDULABLE_MSG),
    ),
    (
        "container-creating",
        pending_with(waiting("ContainerCreating")),
        RunnerPodState(P.PENDING, reason="ContainerCreating", container="runner"),
    ),
    (
        "err-image-pull",
        pending_with(waiting("ErrImagePull", PULL_MSG)),
        RunnerPodState(P.IMAGE_PULL_ERROR, "ErrImagePull", PULL_MSG, container="runner"),
    ),
    (
        "image-pull-backoff",
        pending_with(waiting("ImagePullBackOff", 'Back-off pulling image "summerwind/actions-runner:latst"')),
        RunnerPodState(
            P.IMAGE_PULL_ERROR,
            "ImagePullBackOff",
            'Back-off pulling image "summerwind/actions-runner:latst"',
            container="runner",
        ),
    ),
    (
        "invalid-image-name",
        pending_with(
            waiting(
                "InvalidImageName",
                'Failed to apply default image tag "Summerwind/Runner": couldn\'t parse image name '
                '"Summerwind/Runner": invalid reference format: repository name must be lowercase',
            )
        ),
        RunnerPodState(
            P.IMAGE_PULL_ERROR,
            "InvalidImageName",
            'Failed to apply default image tag "Summerwind/Runner": couldn\'t parse image name '
            '"Summerwind/Runner": invalid reference format: repository name must be lowercase',
            container="runner",
        ),
    ),
    (
        "sidecar-image-pull-while-runner-runs",
        pod(
            {
                "conditions": [cond("Ready", "False", "ContainersNotReady"), cond("PodScheduled", "True")],
                "containerStatuses": [
                    cstatus("runner", running(), ready=True),
                    cstatus("docker", waiting("ImagePullBackOff", 'Back-off pulling image "docker:dnd"')),
                ],
                "phase": "Running",
            }
        ),
        RunnerPodState(
            P.IMAGE_PULL_ERROR,
            "ImagePullBackOff",
            'Back-off pulling image "docker:dnd"',
            container="docker",
            running_since=dt.datetime(2026, 11, 27, 17, 15, 53, tzinfo=dt.UTC),
        ),
    ),
    (
        "init-container-image-pull",
        pod(
            {
                "conditions": [
                    cond("Initialized", "False", "ContainersNotInitialized"),
                    cond("PodScheduled", "True"),
                ],
                "initContainerStatuses": [cstatus("runnerd-gpu-install", waiting("ErrImagePull", PULL_MSG))],
                "containerStatuses": [cstatus("runner", waiting("PodInitializing"))],
                "phase": "Pending",
            }
        ),
        RunnerPodState(P.IMAGE_PULL_ERROR, "ErrImagePull", PULL_MSG, container="runnerd-gpu-install"),
    ),
    (
        "missing-secret",
        pending_with(waiting("CreateContainerConfigError", 'secret "gh-extra-env" not found')),
        RunnerPodState(
            P.CONTAINER_ERROR,
            "CreateContainerConfigError",
            'secret "gh-extra-env" not found',
            container="runner",
        ),
    ),
    (
        "pod-initializing",
        pod(
            {
                "conditions": [
                    cond("Initialized", "False", "ContainersNotInitialized"),
                    cond("PodScheduled", "True"),
                ],
                "initContainerStatuses": [cstatus("runnerd-gpu-install", running())],
                "containerStatuses": [cstatus("runner", waiting("PodInitializing"))],
                "phase": "Pending",
            }
        ),
        RunnerPodState(P.PENDING, reason="PodInitializing", container="runner"),
    ),
    (
        "running-not-ready",
        pod(
            {
                "conditions": [cond("Ready", "False", "ContainersNotReady"), cond("PodScheduled", "True")],
                "containerStatuses": [cstatus("runner", running()), cstatus("docker", running())],
                "phase": "Running",
            }
        ),
        RunnerPodState(P.RUNNING, running_since=dt.datetime(2026, 11, 27, 17, 15, 53, tzinfo=dt.UTC)),
    ),
    (
        "runner-exited-sidecar-still-running",
        pod(
            {
                "conditions": [cond("Ready", "False", "ContainersNotReady"), cond("PodScheduled", "True")],
                "containerStatuses": [
                    cstatus("runner", terminated(0, "Completed")),
                    cstatus("docker", running()),
                ],
                "phase": "Running",
            }
        ),
        RunnerPodState(P.RUNNER_EXITED, reason="Completed", container="runner", exit_code=0),
    ),
    (
        "runner-oom-killed",
        pod(
            {
                "conditions": [cond("PodScheduled", "True")],
                "containerStatuses": [
                    cstatus("runner", terminated(137, "OOMKilled")),
                    cstatus("docker", running()),
                ],
                "phase": "Running",
            }
        ),
        RunnerPodState(P.RUNNER_EXITED, reason="OOMKilled", container="runner", exit_code=137),
    ),
    (
        "evicted",
        pod(
            {
                "phase": "Failed",
                "reason": "Evicted",
                "message": "The node was low on resource: ephemeral-storage. "
                "Container runner was using 12Gi, request is 0, "
                "has larger consumption of ephemeral-storage. ",
                "containerStatuses": [
                    cstatus(
                        "runner",
                        terminated(137, "ContainerStatusUnknown", "The container could not be located"),
                    ),
                ],
            }
        ),
        RunnerPodState(
            P.FAILED,
            reason="Evicted",
            message="The node was low on resource: ephemeral-storage. Container runner was using 12Gi, "
            "request is 0, has larger consumption of ephemeral-storage. ",
            container="runner",
            exit_code=137,
        ),
    ),
    (
        "node-rejected",
        pod(
            {
                "phase": "Failed",
                "reason": "OutOfnvidia.com/gpu",
                "message": "Pod was rejected: Node didn't have enough resource: "
                "nvidia.com/gpu, requested: 1, used: 8, capacity: 8",
            }
        ),
        RunnerPodState(
            P.FAILED,
            reason="OutOfnvidia.com/gpu",
            message="Pod was rejected: Node didn't have enough resource: nvidia.com/gpu, requested: 1, "
            "used: 8, capacity: 8",
        ),
    ),
    (
        "init-container-failed",
        pod(
            {
                "phase": "Failed",
                "initContainerStatuses": [cstatus("warm-cache", terminated(2, "Error"))],
                "containerStatuses": [cstatus("runner", waiting("PodInitializing"))],
            }
        ),
        RunnerPodState(
            P.FAILED, reason="Error", message="init container exited with 2", container="warm-cache"
        ),
    ),
    (
        "deleting",
        copy.deepcopy(KWOK_RUNNING)
        | {
            "metadata": KWOK_RUNNING["metadata"] | {"deletionTimestamp": T1, "deletionGracePeriodSeconds": 30}
        },
        RunnerPodState(
            P.DELETING,
            reason="Terminating",
            runner_id=42,
            running_since=dt.datetime(2026, 11, 27, 17, 15, 53, tzinfo=dt.UTC),
            ready_since=dt.datetime(2026, 11, 27, 17, 15, 53, tzinfo=dt.UTC),
        ),
    ),
    (
        "deleting-after-exit",
        copy.deepcopy(KWOK_FAILED) | {"metadata": KWOK_FAILED["metadata"] | {"deletionTimestamp": T1}},
        RunnerPodState(P.DELETING, reason="Terminating", exit_code=1),
    ),
    (
        "scheduling-gated",
        pod({"phase": "Pending", "conditions": [cond("PodScheduled", "False", "SchedulingGated", "gated")]}),
        RunnerPodState(P.PENDING, reason="SchedulingGated", message="gated"),
    ),
    (
        "unknown",
        pod(
            {
                "phase": "Unknown",
                "reason": "NodeLost",
                "message": "node gpu-node-0 which was running the pod is unresponsive",
            }
        ),
        RunnerPodState(P.UNKNOWN, "NodeLost", "node gpu-node-0 which was running the pod is unresponsive"),
    ),
    ("just-created", pod({"phase": "Pending", "qosClass": "BestEffort"}), RunnerPodState(P.PENDING)),
    ("no-status-at-all", {"metadata": {"name": "x"}}, RunnerPodState(P.PENDING)),
]


@pytest.mark.parametrize(("case", "pod_dict", "expected"), CASES, ids=[c[0] for c in CASES])
def test_classification(case: str, pod_dict: dict[str, Any], expected: RunnerPodState) -> None:
    assert runner_container_state(pod_dict) == expected


@pytest.mark.parametrize(
    ("phase", "lifecycle", "exited", "stuck"),
    [
        (P.PENDING, "Pending", False, False),
        (P.UNSCHEDULABLE, "Pending", False, True),
        (P.IMAGE_PULL_ERROR, "Pending", False, True),
        (P.CONTAINER_ERROR, "Pending", False, True),
        (P.RUNNING, "Running", False, False),
        (P.READY, "Running", False, False),
        (P.RUNNER_EXITED, "Exited", True, False),
        (P.SUCCEEDED, "Exited", True, False),
        (P.FAILED, "Exited", True, False),
        (P.DELETING, "Deleting", False, False),
        (P.UNKNOWN, "Pending", False, False),
    ],
)
def test_derived_views(phase: RunnerPodPhase, lifecycle: str, exited: bool, stuck: bool) -> None:
    state = RunnerPodState(phase)
    assert (state.lifecycle, state.exited, state.stuck) == (lifecycle, exited, stuck)


@pytest.mark.parametrize("raw", ["not-a-number", "", None])
def test_bad_runner_id_annotation_is_ignored(raw: str | None) -> None:
    p = copy.deepcopy(KWOK_RUNNING)
    p["metadata"]["annotations"] = {"actions-runner/id": raw}
    assert runner_container_state(p).runner_id is None


def test_bad_times_are_ignored() -> None:
    p = copy.deepcopy(KWOK_RUNNING)
    p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"] = "yesterday"
    assert runner_container_state(p).running_since is None


def test_other_container_name() -> None:
    state = runner_container_state(KWOK_FAILED, container="docker")
    assert (state.phase, state.exit_code, state.container) == (P.FAILED, 0, "docker")
