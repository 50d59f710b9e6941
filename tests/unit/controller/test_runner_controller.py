"""The Runner controller over fake Kubernetes and GitHub: observe -> decide -> act, one reconcile at a
time, with the clock moved by hand (the drain grace takes no real time)."""

from __future__ import annotations

from typing import Any

import pytest

from runnerd.controller.common import RUNNER_FINALIZER, ControllerOptions
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.runner import RunnerController
from runnerd.github import Scope
from runnerd.github.errors import ConflictError, RunnerBusyError
from runnerd.github.models import Runner as GitHubRunner
from runnerd.manifests.pod import PodOptions
from runnerd.reconcile.credentials import ENV_JIT_CONFIG
from runnerd.reconcile.lifecycle import BUSY_RETRY, GitHubState
from runnerd.reconcile.sizedjob import (
    ADMISSION_ANNOTATION,
    ADMITTED_NODE_ANNOTATION,
    SIZED_JOB_LABEL,
    SIZING_POLICY_LABEL,
)
from runnerd.runtime import AlreadyExists, Invalid, Key, ServerError
from tests.unit.controller.fakes import (
    Clock,
    FakeGitHub,
    FakeInformer,
    FakeKube,
    FakeRecorder,
    FakeStore,
    SecretRace,
    running_pod_status,
)

pytestmark = pytest.mark.timeout(10)

NS = "ci"
NAME = "example-abc-1"
KEY = Key(NS, NAME)
REPO = Scope.repository("octo/app")
IMAGE = "ghcr.io/actions/actions-runner:2.320.0"  # needs no registration token: JIT by default


def add_runner(
    kube: FakeKube, *, finalizers: tuple[str, ...] = (RUNNER_FINALIZER,), deleting: bool = False
) -> None:
    meta: dict[str, Any] = {
        "name": NAME,
        "namespace": NS,
        "uid": "runner-uid",
        "finalizers": list(finalizers),
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    kube.objects[("runners", NS, NAME)] = {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "Runner",
        "metadata": meta,
        "spec": {
            "repository": "octo/app",
            "ephemeral": True,
            "image": "ghcr.io/actions/actions-runner:2.320.0",
        },
    }


def add_running_pod(kube: FakeKube, runner_id: int, *, ready: bool = True) -> None:
    kube.objects[("pods", NS, NAME)] = {
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "uid": "pod-uid",
            "annotations": {"actions-runner/id": str(runner_id)},
        },
        "status": running_pod_status(ready=ready),
    }


def listed(github: FakeGitHub, runner_id: int, *, busy: bool = False, labels: tuple[str, ...] = ()) -> None:
    github.listed.append(GitHubRunner(runner_id, NAME, "linux", "online", busy, ("self-hosted", *labels)))


def controller(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock, **options: Any
) -> RunnerController:
    return RunnerController(
        kube=kube,  # type: ignore[arg-type]
        github=github,  # type: ignore[arg-type]
        directory=RunnerDirectory(github, clock=clock),  # type: ignore[arg-type]
        recorder=recorder,  # type: ignore[arg-type]
        runners=FakeInformer(FakeStore(kube, "runners")),  # type: ignore[arg-type]
        pods=FakeInformer(FakeStore(kube, "pods")),  # type: ignore[arg-type]
        options=ControllerOptions(drain_grace=30.0, **options),
        clock=clock,
    )


async def test_a_new_runner_gets_its_finalizer_first(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    add_runner(kube, finalizers=())
    result = await controller(kube, github, recorder, clock).reconcile(KEY)
    assert kube.calls == [("patch", "runners", NAME)]
    assert kube.objects[("runners", NS, NAME)]["metadata"]["finalizers"] == [RUNNER_FINALIZER]
    assert github.calls == []
    assert result is not None
    assert result.requeue_after == 0.0


async def test_a_runner_without_a_pod_registers_by_jit_and_its_pod_reads_the_secret(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    add_runner(kube)
    await controller(kube, github, recorder, clock).reconcile(KEY)
    assert github.calls == [f"JIT {NAME}"]
    assert [c for c in kube.calls if c[0] == "create"] == [
        ("create", "secrets", NAME),
        ("create", "pods", NAME),
    ]
    secret = kube.objects[("secrets", NS, NAME)]
    assert ENV_JIT_CONFIG in secret["data"]
    pod = kube.objects[("pods", NS, NAME)]
    assert "encoded-jit-config" not in repr(pod)  # the credential reaches the pod only through its Secret
    assert "PodCreated" in recorder.reasons()


async def test_a_first_pod_and_its_secret_are_written_at_once(
    github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    kube = SecretRace()
    add_runner(kube)
    await controller(kube, github, recorder, clock).reconcile(KEY)  # sequential: the Secret times out
    assert ("pods", NS, NAME) in kube.objects
    assert ("secrets", NS, NAME) in kube.objects
    assert kube.pod_saw_secret is False


async def test_a_replacement_pod_waits_for_its_secret(
    github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    kube = SecretRace(wait_for_pod=False)
    add_runner(kube)
    kube.objects[("runners", NS, NAME)]["status"] = {"phase": "Failed"}  # a pod ran before
    await controller(kube, github, recorder, clock).reconcile(KEY)
    assert kube.pod_saw_secret is True  # its Secret holds the last credential until overwritten


@pytest.mark.parametrize(
    ("error", "patch_error"),
    [
        (AlreadyExists(409, "AlreadyExists", "taken"), Invalid(422, "Invalid", "test failed")),
        (ServerError(500, "InternalError", "etcd"), None),
    ],
)
async def test_a_pod_whose_secret_could_not_be_written_is_deleted_again(
    github: FakeGitHub, recorder: FakeRecorder, clock: Clock, error: Exception, patch_error: Exception | None
) -> None:
    kube = SecretRace(secret_error=error)
    add_runner(kube)
    if patch_error is not None:  # a Secret of that name that is not this Runner's

        async def refuse(*_: Any, **__: Any) -> Any:
            raise patch_error

        kube.patch = refuse  # type: ignore[method-assign]
    ctl = controller(kube, github, recorder, clock)
    if patch_error is None:
        with pytest.raises(ServerError):
            await ctl.reconcile(KEY)
    else:
        await ctl.reconcile(KEY)
        assert "CredentialsSecretConflict" in recorder.reasons()
    assert kube.pod_saw_secret is False  # the pod's create went out with the Secret's
    assert ("delete", "pods", NAME) in kube.calls
    assert ("pods", NS, NAME) not in kube.objects
    assert github.calls[-1].startswith("DELETE ")  # the unused registration is removed
    assert "PodCreated" not in recorder.reasons()


async def test_a_replica_sets_runner_gets_no_pod_created_event(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    add_runner(kube)
    owner = {"apiVersion": "actions.summerwind.dev/v1alpha1", "kind": "RunnerReplicaSet", "name": "rs"}
    kube.objects[("runners", NS, NAME)]["metadata"]["ownerReferences"] = [
        {**owner, "uid": "rs-uid", "controller": True}
    ]
    await controller(kube, github, recorder, clock).reconcile(KEY)
    assert ("create", "pods", NAME) in kube.calls
    assert "PodCreated" not in recorder.reasons()  # its replica set records RunnersCreated per round


async def test_a_registration_left_without_a_pod_is_removed_on_a_409(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    add_runner(kube)
    listed(github, 41)  # from an attempt that stopped before its pod was created
    github.errors["jit"] = [ConflictError(status=409, endpoint="generate-jitconfig", message="exists")]
    await controller(kube, github, recorder, clock).reconcile(KEY)
    assert github.calls == [f"JIT {NAME}", "GET runners", "DELETE 41", f"JIT {NAME}"]
    assert recorder.reasons() == ["StaleRegistrationRemoved", "PodCreated"]
    assert ("create", "pods", NAME) in kube.calls


async def test_a_409_for_another_installations_runner_stands(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    add_runner(kube)
    listed(github, 41)  # no installation label: another cluster's runner of the same name
    github.errors["jit"] = [ConflictError(status=409, endpoint="generate-jitconfig", message="exists")]
    ctl = controller(kube, github, recorder, clock, pod=PodOptions(installation_label="cluster-a"))
    result = await ctl.reconcile(KEY)
    assert github.calls == [f"JIT {NAME}", "GET runners"]  # nothing deleted
    assert "RunnerNameTaken" in recorder.reasons()
    assert ("create", "pods", NAME) not in kube.calls
    assert result is not None
    assert result.requeue


async def test_an_online_runner_is_idle_and_its_credential_is_consumed(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    add_runner(kube)
    add_running_pod(kube, 7)
    listed(github, 7)
    result = await controller(kube, github, recorder, clock).reconcile(KEY)
    assert kube.objects[("runners", NS, NAME)]["status"]["phase"] == "Idle"
    assert ("patch", "secrets", NAME) in kube.calls  # the credential leaves the Secret
    assert result is not None
    assert result.requeue_after == 60.0


async def test_a_deleted_runner_is_drained_then_deregistered_then_released(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    add_runner(kube, deleting=True)
    add_running_pod(kube, 7)
    listed(github, 7)
    ctl = controller(kube, github, recorder, clock)
    await ctl.reconcile(KEY)
    assert github.calls == ["GET runners", "PUT labels 7"]
    assert kube.calls == []  # the drain grace holds the pod
    assert "Draining" in recorder.reasons()

    clock.now += 29.0
    await ctl.reconcile(KEY)
    assert "DELETE 7" not in github.calls
    clock.now += 2.0
    await ctl.reconcile(KEY)
    assert github.calls[-1] == "DELETE 7"
    assert kube.calls == [("delete", "pods", NAME), ("patch", "runners", NAME)]  # pod, then finalizer
    assert ctl.stats.deregistrations == 1


async def test_a_deletion_reuses_the_listing_that_knows_the_runner(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    """A wave of deletions costs no listings: a runner GitHub listed 10 s ago is drained on that
    listing (the drain grace and GitHub's 422 guard a job it may have taken since)."""
    add_runner(kube, deleting=True)
    add_running_pod(kube, 7)
    listed(github, 7)
    ctl = controller(kube, github, recorder, clock)
    await ctl.directory.refresh(REPO, max_age=0.0)
    clock.now += 10.0
    await ctl.reconcile(KEY)
    assert github.calls == ["GET runners", "PUT labels 7"]


async def test_after_a_busy_answer_the_retry_reads_a_fresh_listing(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    add_runner(kube, deleting=True)
    add_running_pod(kube, 7)
    listed(github, 7)
    ctl = controller(kube, github, recorder, clock)
    await ctl.reconcile(KEY)  # drained
    clock.now += 31.0
    await ctl.directory.refresh(REPO, max_age=0.0)  # listed idle just before the job showed up
    github.errors["delete"] = [
        RunnerBusyError(status=422, endpoint="DELETE runner", message="busy", runner_id=7)
    ]
    await ctl.reconcile(KEY)  # 422
    github.listed = []
    listed(github, 7, busy=True)  # GitHub now lists it busy
    clock.now += BUSY_RETRY
    await ctl.reconcile(KEY)
    assert github.calls[-1] == "GET runners"  # not the 15 s old listing that said idle
    assert github.calls.count("DELETE 7") == 1
    assert kube.calls == []


async def test_a_busy_answer_stops_the_removal_and_tells_the_directory(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    add_runner(kube, deleting=True)
    add_running_pod(kube, 7)
    listed(github, 7)
    ctl = controller(kube, github, recorder, clock)
    await ctl.reconcile(KEY)  # drained
    clock.now += 31.0
    github.errors["delete"] = [
        RunnerBusyError(status=422, endpoint="DELETE runner", message="busy", runner_id=7)
    ]
    result = await ctl.reconcile(KEY)
    assert result is not None
    assert result.requeue_after == BUSY_RETRY
    assert kube.calls == []  # nothing after the refusal ran
    assert "RunnerBusy" in recorder.reasons()
    assert ctl.directory.state(REPO, NAME) is GitHubState.BUSY
    assert ctl.stats.busy_refusals == 1

    clock.now += BUSY_RETRY - 1.0
    await ctl.reconcile(KEY)
    assert github.calls.count("DELETE 7") == 1  # still hinted busy: no call
    clock.now += 1.0  # the 422's hint expires: the removal starts over (its job is over now)
    await ctl.reconcile(KEY)
    assert github.calls.count("PUT labels 7") == 2
    clock.now += 31.0
    await ctl.reconcile(KEY)
    assert github.calls.count("DELETE 7") == 2
    assert kube.calls == [("delete", "pods", NAME), ("patch", "runners", NAME)]


async def test_a_failed_pod_is_replaced_after_a_back_off(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    add_runner(kube)
    add_running_pod(kube, 7)
    pod = kube.objects[("pods", NS, NAME)]
    pod["status"]["phase"] = "Failed"
    pod["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 1}}
    ctl = controller(kube, github, recorder, clock)
    await ctl.reconcile(KEY)
    assert github.calls == ["DELETE 7"]
    assert ("delete", "pods", NAME) in kube.calls
    assert "RunnerPodReplaced" in recorder.reasons()
    kube.calls.clear()
    result = await ctl.reconcile(KEY)  # no pod now, but the back-off holds the next one
    assert ("create", "pods", NAME) not in kube.calls
    assert result is not None
    assert result.requeue_after == pytest.approx(5.0)
    clock.now += 5.0
    await ctl.reconcile(KEY)
    assert ("create", "pods", NAME) in kube.calls


def _sized(kube: FakeKube, **annotations: str) -> None:
    meta = kube.objects[("runners", NS, NAME)]["metadata"]
    meta["labels"] = {SIZED_JOB_LABEL: "41", SIZING_POLICY_LABEL: "gpu"}
    meta["annotations"] = dict(annotations)


@pytest.mark.parametrize("finalizers", [(), (RUNNER_FINALIZER,)], ids=["new", "with-finalizer"])
@pytest.mark.parametrize("admission", [None, "waiting", ""], ids=["none", "other-value", "empty"])
async def test_a_sized_runner_not_admitted_gets_nothing(
    kube: FakeKube,
    github: FakeGitHub,
    recorder: FakeRecorder,
    clock: Clock,
    finalizers: tuple[str, ...],
    admission: str | None,
) -> None:
    """The admission gate: no finalizer, no GitHub call (not even credentials), no pod, no status."""
    add_runner(kube, finalizers=finalizers)
    _sized(kube, **({} if admission is None else {ADMISSION_ANNOTATION: admission}))
    before = dict(kube.objects[("runners", NS, NAME)])
    result = await controller(kube, github, recorder, clock).reconcile(KEY)
    assert result is None
    assert kube.calls == []
    assert github.calls == []
    assert recorder.reasons() == []
    assert kube.objects[("runners", NS, NAME)] == before


async def test_a_sized_runner_not_admitted_is_still_finalized_when_deleted(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    add_runner(kube, deleting=True)
    _sized(kube)
    await controller(kube, github, recorder, clock).reconcile(KEY)
    assert ("patch", "runners", NAME) in kube.calls  # the finalizer is removed: never stuck
    assert ("create", "pods", NAME) not in kube.calls


@pytest.mark.parametrize(
    ("annotations", "node"),
    [
        ({ADMISSION_ANNOTATION: "placed", ADMITTED_NODE_ANNOTATION: "gpu-node-1"}, "gpu-node-1"),
        ({ADMISSION_ANNOTATION: "pending"}, None),
    ],
    ids=["placed", "pending"],
)
async def test_an_admitted_sized_runner_runs_as_today_its_pod_carrying_the_node(
    kube: FakeKube,
    github: FakeGitHub,
    recorder: FakeRecorder,
    clock: Clock,
    annotations: dict[str, str],
    node: str | None,
) -> None:
    add_runner(kube)
    _sized(kube, **annotations)
    await controller(kube, github, recorder, clock).reconcile(KEY)
    assert github.calls == [f"JIT {NAME}"]
    pod = kube.objects[("pods", NS, NAME)]
    assert pod["metadata"]["annotations"][ADMISSION_ANNOTATION] == annotations[ADMISSION_ANNOTATION]
    assert pod["metadata"]["annotations"].get(ADMITTED_NODE_ANNOTATION) == node
    preferred = pod["spec"].get("affinity", {}).get("nodeAffinity", {})
    terms = preferred.get("preferredDuringSchedulingIgnoredDuringExecution", [])
    if node is None:
        assert terms == []
    else:
        assert terms == [
            {
                "weight": 100,
                "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]},
            }
        ]
