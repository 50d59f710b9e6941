"""RunnerSet: one runner's pod observed, its decision (the Runner rules with the StatefulSet as the
unit), and the RunnerSet's plan and status."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from runnerd.reconcile.lifecycle import Credentials, GitHubState, PodStatus, RunnerFacts, Step, decide
from runnerd.reconcile.replicas import RunnerPhase, RunnerView
from runnerd.reconcile.runnerset import (
    PodObservation,
    SecretState,
    observe_pod,
    plan_runnerset,
    runner_facts,
    runnerset_status,
)

NOW = 1_000_000.0
T = "2024-05-01T10:00:00Z"

D, DR, DEL, RF, C, AF = (
    Step.DRAIN,
    Step.DEREGISTER,
    Step.DELETE_RUNNER,
    Step.REMOVE_FINALIZER,
    Step.CONSUME_CREDENTIALS,
    Step.ADD_FINALIZER,
)

RUNNING = PodObservation(PodStatus.RUNNING, uid="pod-1", running_since=NOW - 60)
FRESH = SecretState(Credentials.FRESH, runner_id=7)
CONSUMED = SecretState(Credentials.CONSUMED, consumed_by="pod-1", runner_id=7)


def facts(**kw: Any) -> RunnerFacts:
    base: dict[str, Any] = {
        "now": NOW,
        "deleting": False,
        "has_finalizer": True,
        "ephemeral": True,
        "jit": True,
        "pod": RUNNING,
        "secret": CONSUMED,
        "runner_id": 7,
        "github": GitHubState.IDLE,
        "drain_grace": 30.0,
    }
    base.update(kw)
    return runner_facts(**base)


def pod(
    *,
    phase: str = "Running",
    state: dict[str, Any] | None = None,
    last: dict[str, Any] | None = None,
    ready: bool = True,
    deleting: bool = False,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": T}],
        "containerStatuses": [
            {
                "name": "runner",
                "state": state if state is not None else {"running": {"startedAt": T}},
                **({"lastState": {"terminated": last}} if last is not None else {}),
                "restartCount": 1 if last is not None else 0,
            }
        ],
    }
    meta: dict[str, Any] = {"name": "rs-bcdfg-0", "uid": "pod-1", "annotations": {"actions-runner/id": "7"}}
    if deleting:
        meta["deletionTimestamp"] = T
    return {"metadata": meta, "status": status}


# --- observing the pod -----------------------------------------------------------------------


def test_observe_running_ready_pod() -> None:
    seen = observe_pod(pod())
    assert seen.status is PodStatus.RUNNING
    assert seen.uid == "pod-1"
    assert seen.ready
    assert not seen.restarted
    assert seen.runner_id == 7
    assert seen.running_since is not None


def test_observe_not_ready_pod_signals_a_job() -> None:
    assert not observe_pod(pod(ready=False)).ready


def test_observe_absent_and_deleting() -> None:
    assert observe_pod(None).status is PodStatus.ABSENT
    assert observe_pod(pod(deleting=True)).status is PodStatus.DELETING


def test_observe_pod_that_ended() -> None:
    done = observe_pod(pod(phase="Succeeded", state={"terminated": {"exitCode": 0}}))
    assert (done.status, done.exit_code) == (PodStatus.EXITED, 0)
    evicted = {"metadata": {"uid": "p"}, "status": {"phase": "Failed", "reason": "Evicted"}}
    assert (observe_pod(evicted).status, observe_pod(evicted).exit_code) == (PodStatus.EXITED, 255)


def test_observe_container_restarted_by_the_kubelet() -> None:
    # restartPolicy Always: the runner exited 0, the kubelet cannot start it again (credential gone)
    waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": "couldn't find key"}}
    seen = observe_pod(pod(state=waiting, last={"exitCode": 0}))
    assert (seen.status, seen.exit_code, seen.restarted) == (PodStatus.EXITED, 0, True)
    # ... or it did start again: it may be running a job now
    again = observe_pod(pod(last={"exitCode": 1}))
    assert (again.status, again.restarted) == (PodStatus.RUNNING, True)


# --- one runner ------------------------------------------------------------------------------


def test_adds_the_finalizer() -> None:
    d = decide(facts(has_finalizer=False))
    assert d.steps == (AF,)


def test_registering_runner_waits() -> None:
    d = decide(facts(secret=FRESH, github=GitHubState.ABSENT))
    assert d.steps == ()
    assert d.phase is RunnerPhase.REGISTERING
    assert not d.finished


@pytest.mark.parametrize("github", [GitHubState.IDLE, GitHubState.BUSY])
def test_credentials_are_consumed_once_the_runner_is_online(github: GitHubState) -> None:
    assert decide(facts(secret=FRESH, github=github)).steps == (C,)


def test_credentials_are_kept_while_the_runner_is_only_registered() -> None:
    """A JIT runner is listed (offline) as soon as its config exists, before any pod used it."""
    assert decide(facts(secret=FRESH, github=GitHubState.OFFLINE)).steps == ()
    pending = PodObservation(PodStatus.PENDING, uid="pod-1")
    assert decide(facts(secret=FRESH, github=GitHubState.IDLE, pod=pending)).steps == ()


def test_idle_and_busy_runner() -> None:
    assert decide(facts()).phase is RunnerPhase.IDLE
    assert decide(facts(github=GitHubState.BUSY)).phase is RunnerPhase.BUSY
    not_ready = dataclasses.replace(RUNNING, ready=False)
    assert decide(facts(pod=not_ready)).phase is RunnerPhase.BUSY


def test_ephemeral_runner_done_goes_without_deregistration() -> None:
    exited = PodObservation(PodStatus.EXITED, uid="pod-1", exit_code=0)
    d = decide(facts(pod=exited, github=GitHubState.ABSENT))
    assert d.steps == (DEL, RF)
    assert d.phase is RunnerPhase.COMPLETED
    assert d.finished
    assert not d.failed


def test_failed_runner_is_deregistered_then_replaced() -> None:
    exited = PodObservation(PodStatus.EXITED, uid="pod-1", exit_code=1)
    d = decide(facts(pod=exited))
    assert d.steps == (DR, DEL, RF)
    assert d.failed
    assert d.finished


def test_runner_that_never_registers_is_replaced() -> None:
    old = dataclasses.replace(RUNNING, running_since=NOW - 700)
    d = decide(facts(pod=old, secret=FRESH, github=GitHubState.ABSENT, registration_timeout=600))
    assert d.steps == (DR, DEL, RF)
    assert d.failed


def test_restarted_runner_may_hold_a_job_so_it_is_drained_first() -> None:
    again = dataclasses.replace(RUNNING, restarted=True)
    d = decide(facts(pod=again))
    assert d.steps == (D, DEL)  # drained; the finalizer holds the StatefulSet through the grace
    assert d.reason == "RunnerRestarted"
    busy = decide(facts(pod=again, github=GitHubState.BUSY))
    assert busy.steps == (DEL,)  # held by the finalizer until the job is done


def test_replaced_pod_after_use_needs_no_drain() -> None:
    """The pod that used the credential is gone and no other can start: no job can be held."""
    other = dataclasses.replace(RUNNING, uid="pod-2")
    d = decide(facts(pod=other))
    assert d.steps == (DR, DEL, RF)
    assert d.reason == "RunnerPodReplaced"
    gone = decide(facts(pod=PodObservation(PodStatus.ABSENT), github=GitHubState.ABSENT))
    assert gone.steps == (DEL, RF)


def test_runner_gone_from_github_is_removed() -> None:
    d = decide(facts(github=GitHubState.ABSENT))
    assert d.steps == (DEL, RF)
    assert d.reason == "RunnerRemovedFromGitHub"


def test_statefulset_without_credentials_is_replaced() -> None:
    pending = PodObservation(PodStatus.PENDING, uid="pod-1")
    d = decide(facts(pod=pending, secret=SecretState(Credentials.MISSING), github=GitHubState.ABSENT))
    assert d.steps == (DR, DEL, RF)
    assert d.reason == "NoCredentials"


def test_scale_down_drains_an_idle_runner_then_removes_it_through_github() -> None:
    first = decide(facts(remove=True))
    assert first.steps == (D, DEL)
    assert first.finished
    waiting = decide(facts(deleting=True, drained_at=NOW - 10))
    assert waiting.steps == ()
    assert waiting.requeue_after == pytest.approx(20.0)
    done = decide(facts(deleting=True, drained_at=NOW - 31))
    assert done.steps == (DR, RF)


def test_finished_ephemeral_runner_is_removed_without_github_calls() -> None:
    """A `completed` webhook named its registration: GitHub removed it; no drain, no deregistration."""
    for f, actions in (
        (facts(remove=True, job_finished_at=NOW - 1), (DEL, RF)),
        (
            facts(remove=True, pod=dataclasses.replace(RUNNING, ready=False), job_finished_at=NOW - 1),
            (DEL, RF),
        ),
        (facts(deleting=True, job_finished_at=NOW - 1), (RF,)),  # the StatefulSet is being deleted
        (facts(deleting=True, github=GitHubState.BUSY, job_finished_at=NOW - 1), (RF,)),  # a stale flag
    ):
        d = decide(f)
        assert d.steps == actions, f
        assert d.finished
    live = decide(facts(job_finished_at=NOW - 1))
    assert live.steps == ()  # its process exits on its own
    assert live.requeue_after == pytest.approx(29.0)
    late = decide(facts(job_finished_at=NOW - 31))
    assert late.steps == (DEL, RF)
    persistent = decide(facts(remove=True, ephemeral=False, job_finished_at=NOW - 1))
    assert persistent.steps == (D, DEL)  # takes more jobs: drained as before


def test_scale_down_never_takes_a_busy_runner() -> None:
    for busy in (
        facts(remove=True, github=GitHubState.BUSY),
        facts(remove=True, pod=dataclasses.replace(RUNNING, ready=False)),
    ):
        d = decide(busy)
        assert d.steps == ()
        assert not d.finished
        assert d.phase is RunnerPhase.BUSY


def test_deleted_busy_runner_waits_for_its_job() -> None:
    d = decide(facts(deleting=True, github=GitHubState.BUSY))
    assert d.steps == ()
    assert d.finished


def test_removal_of_a_token_runner_not_listed_yet_waits_for_its_registration() -> None:
    d = decide(
        facts(
            remove=True,
            jit=False,
            runner_id=None,
            secret=SecretState(Credentials.FRESH),
            github=GitHubState.ABSENT,
        )
    )
    assert d.steps == (DEL,)  # recorded; removed once GitHub lists it (or never does)


def test_pending_runner_removal_needs_no_drain() -> None:
    pending = PodObservation(PodStatus.PENDING, uid="pod-1")
    d = decide(facts(remove=True, pod=pending, secret=FRESH, github=GitHubState.ABSENT))
    assert d.steps == (DR, DEL, RF)


def test_runner_being_removed_still_has_its_credential_consumed() -> None:
    d = decide(facts(remove=True, secret=FRESH))
    assert d.steps == (C, D, DEL)


def test_deleted_statefulset_without_finalizer_is_left_alone() -> None:
    d = decide(facts(deleting=True, has_finalizer=False))
    assert d.steps == ()
    assert d.finished


# --- the RunnerSet ---------------------------------------------------------------------------


def view(
    name: str, phase: RunnerPhase, hash_: str = "new", created: float = 0.0, deleting: bool = False
) -> RunnerView:
    return RunnerView(name=name, created_at=created, phase=phase, deleting=deleting, template_hash=hash_)


def test_plan_creates_up_to_replicas() -> None:
    plan = plan_runnerset(3, "new", [view("a", RunnerPhase.IDLE)])
    assert plan.create == 2
    assert plan.delete == ()


def test_plan_scale_down_takes_idle_runners_never_busy_ones() -> None:
    runners = [view("a", RunnerPhase.BUSY), view("b", RunnerPhase.IDLE), view("c", RunnerPhase.PENDING)]
    assert set(plan_runnerset(0, "new", runners).delete) == {"b", "c"}
    assert plan_runnerset(2, "new", runners).delete == ("c",)


def test_plan_rolls_a_template_without_touching_busy_runners() -> None:
    old = [view("o1", RunnerPhase.IDLE, "old"), view("o2", RunnerPhase.BUSY, "old")]
    start = plan_runnerset(2, "new", old)
    assert start.create == 2
    assert start.delete == ()  # old runners serve until the new ones are ready
    rolling = [*old, view("n1", RunnerPhase.IDLE), view("n2", RunnerPhase.PENDING)]
    assert plan_runnerset(2, "new", rolling).delete == ()
    ready = [*old, view("n1", RunnerPhase.IDLE), view("n2", RunnerPhase.BUSY)]
    assert plan_runnerset(2, "new", ready).delete == ("o1",)


def test_status() -> None:
    runners = [
        view("a", RunnerPhase.BUSY),
        view("b", RunnerPhase.IDLE, "old"),
        view("c", RunnerPhase.REGISTERING),
        view("d", RunnerPhase.BUSY, deleting=True),
        view("e", RunnerPhase.COMPLETED),
    ]
    assert runnerset_status(3, "new", runners, "app=x") == {
        "replicas": 3,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "busyReplicas": 2,
        "desiredReplicas": 3,
        "updatedReplicas": 2,
        "selector": "app=x",
    }
