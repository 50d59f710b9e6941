"""The RunnerSet controller over fake Kubernetes and GitHub: runners made as StatefulSet + Secret,
removed through the one lifecycle (drain, deregister, delete, finalizer), with the clock moved by
hand."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runnerd.controller.common import ControllerOptions
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.runnerset import INDEX_RUNNERSET, RunnerSetController, index_by_runnerset
from runnerd.github import Scope
from runnerd.github.errors import ConflictError, RunnerBusyError
from runnerd.reconcile.credentials import ENV_JIT_CONFIG
from runnerd.reconcile.lifecycle import BUSY_RETRY, GitHubState
from runnerd.reconcile.runnerset import ANNOTATION_CONSUMED_BY, FINALIZER
from runnerd.runtime import Key
from tests.unit.controller.fakes import (
    Clock,
    FakeGitHub,
    FakeInformer,
    FakeKube,
    FakeRecorder,
    FakeStore,
    running_pod_status,
)

pytestmark = pytest.mark.timeout(10)

NS = "ci"
KEY = Key(NS, "example")
REPO = Scope.repository("octo/app")
STS = "example-bcdfg"
RUNNER = f"{STS}-0"
IMAGE = "ghcr.io/actions/actions-runner:2.320.0"


def add_runnerset(kube: FakeKube, *, replicas: int) -> None:
    kube.objects[("runnersets", NS, "example")] = {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "RunnerSet",
        "metadata": {"name": "example", "namespace": NS, "uid": "rs-uid"},
        "spec": {
            "repository": "octo/app",
            "replicas": replicas,
            "image": IMAGE,
            "template": {"spec": {"containers": [{"name": "runner"}]}},
        },
    }


def set_replicas(kube: FakeKube, replicas: int) -> None:
    kube.objects[("runnersets", NS, "example")]["spec"]["replicas"] = replicas


def add_running_pod(kube: FakeKube, *, ready: bool = True) -> None:
    sts = kube.objects[("statefulsets", NS, STS)]
    labels = copy.deepcopy(sts["spec"]["template"]["metadata"]["labels"])
    kube.objects[("pods", NS, RUNNER)] = {
        "metadata": {
            "name": RUNNER,
            "namespace": NS,
            "uid": "pod-uid",
            "labels": labels,
            "ownerReferences": [{"kind": "StatefulSet", "uid": sts["metadata"]["uid"], "controller": True}],
        },
        "status": running_pod_status(ready=ready),
    }


def controller(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> RunnerSetController:
    indexers = {INDEX_RUNNERSET: index_by_runnerset}
    return RunnerSetController(
        kube=kube,  # type: ignore[arg-type]
        github=github,  # type: ignore[arg-type]
        directory=RunnerDirectory(github, clock=clock),  # type: ignore[arg-type]
        recorder=recorder,  # type: ignore[arg-type]
        runner_sets=FakeInformer(FakeStore(kube, "runnersets")),  # type: ignore[arg-type]
        stateful_sets=FakeInformer(FakeStore(kube, "statefulsets", indexers)),  # type: ignore[arg-type]
        pods=FakeInformer(FakeStore(kube, "pods")),  # type: ignore[arg-type]
        secrets=FakeInformer(FakeStore(kube, "secrets")),  # type: ignore[arg-type]
        options=ControllerOptions(drain_grace=30.0),
        clock=clock,
        suffix=lambda: "bcdfg",
    )


async def online_runner(kube: FakeKube, github: FakeGitHub, clock: Clock, ctl: RunnerSetController) -> None:
    """One runner of the RunnerSet, created, running and listed online (its credential consumed)."""
    await ctl.reconcile(KEY)
    add_running_pod(kube)
    github.online(RUNNER)
    clock.now += 5.0  # past the listing's max age for a runner coming online
    await ctl.reconcile(KEY)
    kube.calls.clear()
    github.calls.clear()


async def test_a_runner_is_registered_then_its_statefulset_then_its_secret(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    add_runnerset(kube, replicas=1)
    await controller(kube, github, recorder, clock).reconcile(KEY)
    assert github.calls == ["GET runners", f"JIT {RUNNER}"]
    assert [c for c in kube.calls if c[0] == "create"] == [
        ("create", "statefulsets", STS),
        ("create", "secrets", STS),
    ]
    sts = kube.objects[("statefulsets", NS, STS)]
    assert sts["metadata"]["finalizers"] == [FINALIZER]
    assert "encoded-jit-config" not in repr(sts)  # the credential is only in the Secret
    secret = kube.objects[("secrets", NS, STS)]
    assert ENV_JIT_CONFIG in secret["data"]
    assert "RunnerCreated" in recorder.reasons()
    assert kube.objects[("runnersets", NS, "example")]["status"]["replicas"] == 1


async def test_a_registration_left_without_a_statefulset_is_removed_on_a_409(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    """The same recovery as the Runner controller's: the shared lifecycle registers for both."""
    add_runnerset(kube, replicas=1)
    await github.generate_jit_config(REPO, RUNNER)  # left by an attempt that stopped before its StatefulSet
    github.calls.clear()
    github.errors["jit"] = [ConflictError(status=409, endpoint="generate-jitconfig", message="exists")]
    await controller(kube, github, recorder, clock).reconcile(KEY)
    assert github.calls == ["GET runners", f"JIT {RUNNER}", "GET runners", "DELETE 100", f"JIT {RUNNER}"]
    assert "StaleRegistrationRemoved" in recorder.reasons()
    assert ("create", "statefulsets", STS) in kube.calls


async def test_an_online_runner_has_its_credential_consumed(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    add_runnerset(kube, replicas=1)
    ctl = controller(kube, github, recorder, clock)
    await ctl.reconcile(KEY)
    add_running_pod(kube)
    github.online(RUNNER)
    clock.now += 5.0  # past the listing's max age for a runner coming online
    await ctl.reconcile(KEY)
    secret = kube.objects[("secrets", NS, STS)]
    assert secret["metadata"]["annotations"][ANNOTATION_CONSUMED_BY] == "pod-uid"
    assert ENV_JIT_CONFIG not in (secret.get("data") or {})
    status = kube.objects[("runnersets", NS, "example")]["status"]
    assert status["readyReplicas"] == 1


async def test_scale_down_drains_then_deregisters_then_deletes_the_statefulset(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    add_runnerset(kube, replicas=1)
    ctl = controller(kube, github, recorder, clock)
    await online_runner(kube, github, clock, ctl)
    set_replicas(kube, 0)
    await ctl.reconcile(KEY)
    assert "PUT labels 100" in github.calls
    assert "DELETE 100" not in github.calls
    # the StatefulSet is deleted at once; its finalizer holds the pod while the drain grace runs
    assert ("delete", "statefulsets", STS) in kube.calls
    assert kube.objects[("statefulsets", NS, STS)]["metadata"]["finalizers"] == [FINALIZER]

    clock.now += 31.0
    kube.calls.clear()
    await ctl.reconcile(KEY)
    assert github.calls[-1] == "DELETE 100"
    assert kube.calls == [("patch", "statefulsets", STS)]  # the finalizer: the pod goes with the StatefulSet
    assert ("statefulsets", NS, STS) in kube.objects  # the fake keeps it; its finalizer is gone
    assert not kube.objects[("statefulsets", NS, STS)]["metadata"].get("finalizers")
    assert ctl.stats.deregistrations == 1


async def test_a_busy_answer_keeps_the_runner_and_tells_the_directory(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    add_runnerset(kube, replicas=1)
    ctl = controller(kube, github, recorder, clock)
    await online_runner(kube, github, clock, ctl)
    set_replicas(kube, 0)
    await ctl.reconcile(KEY)  # drained
    clock.now += 31.0
    github.errors["delete"] = [
        RunnerBusyError(status=422, endpoint="DELETE runner", message="busy", runner_id=100)
    ]
    kube.calls.clear()
    result = await ctl.reconcile(KEY)
    assert result is not None
    assert result.requeue_after is not None
    assert result.requeue_after <= BUSY_RETRY
    assert ("patch", "statefulsets", STS) not in kube.calls  # the finalizer still holds the pod
    assert "RunnerBusy" in recorder.reasons()
    assert ctl.directory.state(REPO, RUNNER) is GitHubState.BUSY
    assert ctl.stats.busy_refusals == 1

    clock.now += BUSY_RETRY  # the 422's hint expires: asked again (its job is over now)
    await ctl.reconcile(KEY)
    assert github.calls.count("DELETE 100") == 2
    assert ("patch", "statefulsets", STS) in kube.calls


async def test_a_runner_that_exits_0_is_replaced_without_a_github_call(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    add_runnerset(kube, replicas=1)
    ctl = controller(kube, github, recorder, clock)
    await online_runner(kube, github, clock, ctl)
    pod: dict[str, Any] = kube.objects[("pods", NS, RUNNER)]
    pod["status"]["phase"] = "Succeeded"
    pod["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 0}}
    await ctl.reconcile(KEY)
    assert not [c for c in github.calls if c.startswith(("DELETE", "PUT"))]
    assert ("delete", "statefulsets", STS) in kube.calls
    assert ("patch", "statefulsets", STS) in kube.calls  # its finalizer goes with it


async def test_a_finalized_statefulset_seen_again_from_a_stale_cache_is_left_alone(
    kube: FakeKube, github: FakeGitHub, recorder: FakeRecorder, clock: Clock
) -> None:
    """Its pod's deletion reaches the cache before its own: the StatefulSet whose finalizer this
    process removed shows it again. No deregistration (GitHub removed the runner that exited 0: a
    404) and no second finalization; a new StatefulSet of the same name (a new uid) is handled."""
    add_runnerset(kube, replicas=1)
    ctl = controller(kube, github, recorder, clock)
    await online_runner(kube, github, clock, ctl)
    pod: dict[str, Any] = kube.objects[("pods", NS, RUNNER)]
    pod["status"]["phase"] = "Succeeded"
    pod["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 0}}
    set_replicas(kube, 0)
    stale = copy.deepcopy(kube.objects[("statefulsets", NS, STS)])
    await ctl.reconcile(KEY)
    assert ("patch", "statefulsets", STS) in kube.calls  # finalized once
    stale["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    kube.objects[("statefulsets", NS, STS)] = stale  # what the lagging cache shows
    del kube.objects[("pods", NS, RUNNER)]  # the pod's deletion arrived
    kube.calls.clear()
    github.calls.clear()
    await ctl.reconcile(KEY)
    assert github.calls == []
    assert ("patch", "statefulsets", STS) not in kube.calls

    fresh = copy.deepcopy(stale)
    del fresh["metadata"]["deletionTimestamp"]
    fresh["metadata"]["uid"] = "a-new-uid"
    kube.objects[("statefulsets", NS, STS)] = fresh
    kube.calls.clear()
    await ctl.reconcile(KEY)  # not wanted (replicas 0) and without a pod: removed as usual
    assert ("delete", "statefulsets", STS) in kube.calls
