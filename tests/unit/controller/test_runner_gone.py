"""No GitHub call for a runner GitHub has already removed: a finished ephemeral runner (a `completed`
webhook named its registration), or one GitHub answered 404 about. Also the directory's memories."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from runnerd.controller.common import RUNNER_FINALIZER, ControllerOptions
from runnerd.controller.directory import MEMORY, RunnerDirectory
from runnerd.controller.runner import RunnerController
from runnerd.github import Scope
from runnerd.github.errors import NotFoundError
from runnerd.github.models import Runner as GitHubRunner
from runnerd.reconcile.credentials import ANNOTATION_RUNNER_ID
from runnerd.runtime import Key
from tests.unit.controller.fakes import Clock, FakeGitHub, FakeKube, FakeRecorder, running_pod_status

NS = "ci"
NAME = "example-abc-1"
REPO = Scope.repository("octo/app")
KEY = Key(NS, NAME)


def gone_github() -> FakeGitHub:
    """GitHub after it removed runner 7 (an ephemeral runner whose job completed): 404 to its labels."""
    github = FakeGitHub()
    github.errors["labels"] = [
        NotFoundError(status=404, endpoint="PUT labels", message="Not Found") for _ in range(5)
    ]
    return github


def verbs(kube: FakeKube) -> list[tuple[str, str]]:
    return [(verb, plural) for verb, plural, _ in kube.calls]


def runner_obj(*, deleting: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": NAME, "namespace": NS, "uid": "u-1", "finalizers": [RUNNER_FINALIZER]}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"repository": "octo/app", "ephemeral": True}}


def exited_pod(code: int) -> dict[str, Any]:
    pod = running_pod()
    pod["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
    pod["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": code}}
    return pod


def running_pod() -> dict[str, Any]:
    return {
        "metadata": {"name": NAME, "namespace": NS, "uid": "p-1", "annotations": {ANNOTATION_RUNNER_ID: "7"}},
        "status": running_pod_status(ready=True),
    }


def controller(github: FakeGitHub, kube: FakeKube, clock: Clock, runner: dict[str, Any]) -> RunnerController:
    directory = RunnerDirectory(github, clock=clock)  # type: ignore[arg-type]
    return RunnerController(
        kube=kube,  # type: ignore[arg-type]
        github=github,  # type: ignore[arg-type]
        directory=directory,
        recorder=FakeRecorder(),  # type: ignore[arg-type]
        runners=SimpleNamespace(store={KEY: runner}),  # type: ignore[arg-type]
        pods=SimpleNamespace(store={KEY: running_pod()}),  # type: ignore[arg-type]
        options=ControllerOptions(drain_grace=30.0),
        clock=clock,
    )


async def test_deleting_a_finished_ephemeral_runner_makes_no_github_call() -> None:
    github, kube, clock = gone_github(), FakeKube(), Clock()
    ctl = controller(github, kube, clock, runner_obj(deleting=True))
    ctl.directory.hint_finished(NAME, 7)  # the `completed` webhook named it; its pod still runs
    await ctl.reconcile(KEY)
    assert github.calls == []  # no listing, no drain, no deregistration
    assert verbs(kube) == [("delete", "pods"), ("patch", "runners")]  # pod deleted, finalizer removed


async def test_a_finished_hint_of_another_registration_is_no_evidence() -> None:
    github, kube, clock = gone_github(), FakeKube(), Clock()
    ctl = controller(github, kube, clock, runner_obj(deleting=True))
    ctl.directory.hint_finished(NAME, 6)  # an earlier registration of the same name
    github.listed = [GitHubRunner(7, NAME, "linux", "online", False, ("self-hosted",))]
    await ctl.reconcile(KEY)
    assert github.calls == ["GET runners", "PUT labels 7"]  # drained as any runner that may hold a job
    assert verbs(kube) == []


async def test_a_404_on_drain_forgets_the_runner_and_deregistration_makes_no_call() -> None:
    github, kube, clock = gone_github(), FakeKube(), Clock()
    github.listed = [GitHubRunner(7, NAME, "linux", "online", False, ("self-hosted",))]
    ctl = controller(github, kube, clock, runner_obj(deleting=True))
    await ctl.reconcile(KEY)
    assert github.calls == ["GET runners", "PUT labels 7"]
    assert ctl.directory.gone(REPO, 7)
    assert ctl.directory.runner_id(REPO, NAME) is None  # forgotten from the listing
    assert verbs(kube) == []  # the drain grace still holds the pod

    github.calls.clear()
    clock.now += 31.0
    github.listed = []
    await ctl.reconcile(KEY)
    assert github.calls == ["GET runners"]  # the listing; no second 404
    assert verbs(kube) == [("delete", "pods"), ("patch", "runners")]


async def test_a_running_finished_runner_is_left_to_exit_then_completed() -> None:
    github, kube, clock = gone_github(), FakeKube(), Clock()
    ctl = controller(github, kube, clock, runner_obj(deleting=False))
    ctl.directory.hint_finished(NAME, 7)
    result = await ctl.reconcile(KEY)
    assert result is not None
    assert result.requeue_after == 30.0
    assert github.calls == []
    assert verbs(kube) == []
    clock.now += 30.0
    await ctl.reconcile(KEY)
    assert github.calls == []
    assert verbs(kube) == [("delete", "runners")]  # Completed: its finalizer deletes the pod


def test_finished_memory_matches_name_and_id_and_is_bounded() -> None:
    clock = Clock()
    directory = RunnerDirectory(FakeGitHub(), clock=clock)  # type: ignore[arg-type]
    directory.hint_finished(NAME, 7)
    clock.now += 4.0
    assert directory.finished_age(NAME, 7) == 4.0
    assert directory.finished_age(NAME, 8) is None
    assert directory.finished_age(NAME, None) is None
    assert directory.finished_age("other", 7) is None
    for i in range(MEMORY):
        directory.hint_finished(f"r-{i}", i)
    assert directory.finished_age(NAME, 7) is None  # the oldest went first
    assert directory.finished_age("r-0", 0) is not None


def test_gone_memory_is_per_scope_and_bounded() -> None:
    directory = RunnerDirectory(FakeGitHub(), clock=Clock())  # type: ignore[arg-type]
    directory.mark_gone(REPO, NAME, 7)
    assert directory.gone(REPO, 7)
    assert not directory.gone(Scope.repository("octo/other"), 7)
    for i in range(MEMORY):
        directory.mark_gone(REPO, f"r-{i}", 100 + i)
    assert not directory.gone(REPO, 7)


async def test_an_ephemeral_runner_that_exited_0_is_removed_without_a_github_call() -> None:
    github, kube, clock = gone_github(), FakeKube(), Clock()
    ctl = controller(github, kube, clock, runner_obj(deleting=True))
    ctl.pods.store[KEY] = exited_pod(0)
    await ctl.reconcile(KEY)
    assert github.calls == []
    assert verbs(kube) == [("delete", "pods"), ("patch", "runners")]

    failed = controller(gone_github(), FakeKube(), Clock(), runner_obj(deleting=True))
    failed.pods.store[KEY] = exited_pod(1)
    await failed.reconcile(KEY)
    assert failed.github.calls == ["GET runners", "DELETE 7"]  # type: ignore[attr-defined]


async def test_a_runner_whose_finalizer_was_removed_is_not_finalized_again_from_a_stale_cache() -> None:
    """Under load the pod's deletion reaches the cache before the Runner's: the Runner, whose
    finalizer this process removed, still shows it. Reconciled again, it must not look like a Runner
    without a pod whose registration is left (a registration-token runner's id comes from the
    listing, which still shows the finished runner): no DELETE for a runner GitHub removed."""
    github, kube, clock = gone_github(), FakeKube(), Clock()
    github.listed.append(GitHubRunner(7, NAME, "linux", "online", True, ("self-hosted",)))
    ctl = controller(github, kube, clock, runner_obj(deleting=True))
    pod = exited_pod(0)
    pod["metadata"]["annotations"] = {}  # registered with a token: no id on the pod
    ctl.pods.store[KEY] = pod
    await ctl.reconcile(KEY)
    assert verbs(kube) == [("delete", "pods"), ("patch", "runners")]

    del ctl.pods.store[KEY]  # the pod's deletion arrived; the Runner's not yet
    await ctl.reconcile(KEY)
    assert github.calls == []
    assert verbs(kube) == [("delete", "pods"), ("patch", "runners")]


async def test_a_new_runner_of_a_finalized_runners_name_is_handled() -> None:
    """The memo holds the uid, not the name: a new Runner of the same name (a new uid) is reconciled."""
    github, kube, clock = gone_github(), FakeKube(), Clock()
    ctl = controller(github, kube, clock, runner_obj(deleting=True))
    ctl.pods.store[KEY] = exited_pod(0)
    await ctl.reconcile(KEY)
    assert verbs(kube) == [("delete", "pods"), ("patch", "runners")]

    fresh = runner_obj(deleting=False)
    fresh.update(apiVersion="actions.summerwind.dev/v1alpha1", kind="Runner")
    fresh["metadata"]["uid"] = "u-2"
    ctl.runners.store[KEY] = fresh
    del ctl.pods.store[KEY]
    kube.calls.clear()
    await ctl.reconcile(KEY)
    assert github.calls == ["POST registration-token"]  # registered and its pod created, as any new Runner
    assert ("create", "pods") in verbs(kube)
