"""The one runner lifecycle decision (reconcile/lifecycle.py): the Runner kind's table, and the
invariant that protects jobs, for every kind."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from runnerd.reconcile.lifecycle import (
    Credentials,
    GitHubState,
    PodStatus,
    RunnerFacts,
    RunnerKind,
    Step,
    decide,
    finished_reason,
)
from runnerd.reconcile.replicas import RunnerPhase

NOW = 1_000_000.0
F = RunnerFacts(now=NOW)
G = GitHubState
S = Step


@pytest.mark.parametrize(
    ("facts", "steps", "phase"),
    [
        pytest.param(replace(F, has_finalizer=False), (S.ADD_FINALIZER,), None, id="finalizer-first"),
        pytest.param(F, (S.CREATE_POD,), RunnerPhase.PENDING, id="no-pod-create"),
        pytest.param(
            replace(F, next_attempt_at=NOW + 30), (), RunnerPhase.FAILED, id="backoff-holds-creation"
        ),
        pytest.param(replace(F, pod=PodStatus.PENDING), (), RunnerPhase.PENDING, id="pending"),
        pytest.param(
            replace(F, pod=PodStatus.RUNNING, runner_id=1, github=G.OFFLINE, pod_running_since=NOW - 10),
            (),
            RunnerPhase.REGISTERING,
            id="registering",
        ),
        pytest.param(
            replace(F, pod=PodStatus.RUNNING, runner_id=1, github=G.IDLE),
            (S.CONSUME_CREDENTIALS,),  # online: the credential leaves its Secret
            RunnerPhase.IDLE,
            id="idle",
        ),
        pytest.param(
            replace(F, pod=PodStatus.RUNNING, runner_id=1, github=G.BUSY),
            (S.CONSUME_CREDENTIALS,),
            RunnerPhase.BUSY,
            id="busy",
        ),
        pytest.param(
            replace(F, pod=PodStatus.RUNNING, runner_id=1, github=G.OFFLINE, pod_running_since=NOW - 601),
            (S.DEREGISTER, S.DELETE_POD),
            RunnerPhase.FAILED,
            id="registration-timeout-replaces-pod",
        ),
        pytest.param(
            replace(
                F,
                pod=PodStatus.RUNNING,
                runner_id=None,
                github=G.ABSENT,
                pod_running_since=NOW - 601,
                jit=False,
            ),
            (S.DELETE_POD,),
            RunnerPhase.FAILED,
            id="registration-timeout-without-id",
        ),
        pytest.param(
            replace(F, pod=PodStatus.RUNNING, runner_id=1, github=G.UNKNOWN, pod_running_since=NOW - 9999),
            (),
            RunnerPhase.REGISTERING,
            id="unknown-github-state-never-times-out",
        ),
        pytest.param(
            replace(F, pod=PodStatus.EXITED, exit_code=0, runner_id=1),
            (S.DELETE_RUNNER,),
            RunnerPhase.COMPLETED,
            id="ephemeral-done",
        ),
        pytest.param(
            replace(F, pod=PodStatus.EXITED, exit_code=0, runner_id=1, ephemeral=False),
            (S.DEREGISTER, S.DELETE_POD),
            RunnerPhase.PENDING,
            id="persistent-runner-exited-restarts",
        ),
        pytest.param(
            replace(F, pod=PodStatus.EXITED, exit_code=1, runner_id=1),
            (S.DEREGISTER, S.DELETE_POD),
            RunnerPhase.FAILED,
            id="failed-pod-replaced",
        ),
        pytest.param(
            replace(F, pod=PodStatus.DELETING, runner_id=1), (), None, id="pod-deleted-by-someone-else"
        ),
        pytest.param(
            replace(F, pod=PodStatus.RUNNING, runner_id=1, github=G.ABSENT, job_finished_at=NOW - 1),
            (),
            RunnerPhase.COMPLETED,
            id="job-finished-process-left-to-exit",
        ),
        pytest.param(
            replace(F, pod=PodStatus.RUNNING, runner_id=1, github=G.BUSY, job_finished_at=NOW - 31),
            (S.CONSUME_CREDENTIALS, S.DELETE_RUNNER),
            RunnerPhase.COMPLETED,
            id="job-finished-process-not-exiting-runner-completed",
        ),
        pytest.param(
            replace(F, pod=PodStatus.EXITED, exit_code=1, runner_id=1, job_finished_at=NOW - 1),
            (S.DELETE_RUNNER,),
            RunnerPhase.COMPLETED,
            id="job-finished-then-failed-exit-is-completed-no-deregister",
        ),
        pytest.param(
            replace(
                F, pod=PodStatus.RUNNING, runner_id=1, github=G.IDLE, ephemeral=False, job_finished_at=NOW
            ),
            (S.CONSUME_CREDENTIALS,),
            RunnerPhase.IDLE,
            id="persistent-runner-takes-more-jobs",
        ),
    ],
)
def test_decide_live_runner(facts: RunnerFacts, steps: tuple[Step, ...], phase: RunnerPhase | None) -> None:
    decision = decide(facts)
    assert decision.steps == steps
    assert decision.phase == phase


def test_failure_is_counted_for_backoff() -> None:
    assert decide(replace(F, pod=PodStatus.EXITED, exit_code=1)).failed
    assert not decide(replace(F, pod=PodStatus.EXITED, exit_code=0)).failed


D = replace(F, deleting=True)


@pytest.mark.parametrize(
    ("facts", "steps"),
    [
        pytest.param(replace(D, has_finalizer=False), (), id="nothing-left-to-do"),
        pytest.param(D, (S.REMOVE_FINALIZER,), id="never-had-a-pod"),
        pytest.param(
            replace(D, runner_id=1, github=G.OFFLINE),
            (S.DEREGISTER, S.REMOVE_FINALIZER),
            id="orphan-registration-removed",
        ),
        pytest.param(
            replace(D, runner_id=1, github=G.ABSENT), (S.REMOVE_FINALIZER,), id="already-gone-in-github"
        ),
        pytest.param(
            replace(D, pod=PodStatus.PENDING, runner_id=1),
            (S.DEREGISTER, S.DELETE_POD, S.REMOVE_FINALIZER),
            id="pending-pod-deregistered-then-deleted",
        ),
        pytest.param(
            replace(D, pod=PodStatus.PENDING, jit=False),
            (S.DELETE_POD, S.REMOVE_FINALIZER),
            id="pending-no-id",
        ),
        pytest.param(
            replace(D, pod=PodStatus.RUNNING, runner_id=1, github=G.IDLE),
            (S.DRAIN,),
            id="idle-runner-is-drained-first",
        ),
        pytest.param(
            replace(D, pod=PodStatus.RUNNING, runner_id=1, github=G.IDLE, drained_at=NOW - 5),
            (),
            id="drain-grace-not-over",
        ),
        pytest.param(
            replace(D, pod=PodStatus.RUNNING, runner_id=1, github=G.IDLE, drained_at=NOW - 31),
            (S.DEREGISTER, S.DELETE_POD, S.REMOVE_FINALIZER),
            id="drained-idle-runner-removed-through-github",
        ),
        pytest.param(
            replace(D, pod=PodStatus.RUNNING, runner_id=1, github=G.OFFLINE, drained_at=NOW - 31),
            (S.DEREGISTER, S.DELETE_POD, S.REMOVE_FINALIZER),
            id="drained-offline-runner-removed",
        ),
        pytest.param(
            replace(D, pod=PodStatus.RUNNING, runner_id=1, github=G.BUSY, drained_at=NOW - 999),
            (),
            id="busy-flag-waits",
        ),
        pytest.param(
            replace(
                D, pod=PodStatus.RUNNING, runner_id=1, github=G.IDLE, pod_ready=False, drained_at=NOW - 999
            ),
            (),
            id="runner-signal-not-ready-means-busy-whatever-the-flag",
        ),
        pytest.param(
            replace(D, pod=PodStatus.RUNNING, runner_id=1, github=G.UNKNOWN, drained_at=NOW - 999),
            (),
            id="no-listing-no-removal",
        ),
        pytest.param(
            replace(D, pod=PodStatus.EXITED, exit_code=0, runner_id=1),
            (S.DELETE_POD, S.REMOVE_FINALIZER),
            id="ephemeral-completed-no-github-call",
        ),
        pytest.param(
            replace(D, pod=PodStatus.EXITED, exit_code=2, runner_id=1),
            (S.DEREGISTER, S.DELETE_POD, S.REMOVE_FINALIZER),
            id="failed-runner-deregistered",
        ),
        pytest.param(
            replace(D, pod=PodStatus.RUNNING, jit=False, pod_running_since=NOW - 5),
            (),
            id="regtoken-runner-may-still-register-wait",
        ),
        pytest.param(
            replace(D, pod=PodStatus.RUNNING, jit=False, pod_running_since=NOW - 601, github=G.ABSENT),
            (S.DELETE_POD, S.REMOVE_FINALIZER),
            id="regtoken-runner-never-registered",
        ),
        pytest.param(
            replace(D, pod=PodStatus.RUNNING, jit=False, pod_running_since=NOW - 601, github=G.UNKNOWN),
            (),
            id="regtoken-runner-no-listing-yet-wait",
        ),
        pytest.param(
            replace(D, pod=PodStatus.RUNNING, runner_id=1, github=G.IDLE, job_finished_at=NOW - 1),
            (S.DELETE_POD, S.REMOVE_FINALIZER),
            id="job-finished-no-drain-no-deregister",
        ),
        pytest.param(
            replace(D, pod=PodStatus.RUNNING, runner_id=1, github=G.BUSY, job_finished_at=NOW - 1),
            (S.DELETE_POD, S.REMOVE_FINALIZER),
            id="job-finished-beats-a-stale-busy-flag",
        ),
        pytest.param(
            replace(D, pod=PodStatus.RUNNING, runner_id=1, github=G.UNKNOWN, job_finished_at=NOW - 1),
            (S.DELETE_POD, S.REMOVE_FINALIZER),
            id="job-finished-needs-no-listing",
        ),
        pytest.param(
            replace(D, pod=PodStatus.DELETING, runner_id=1, github=G.IDLE, job_finished_at=NOW - 1),
            (S.DELETE_POD, S.REMOVE_FINALIZER),
            id="job-finished-pod-deleted-by-someone-else",
        ),
        pytest.param(
            replace(D, pod=PodStatus.EXITED, exit_code=2, runner_id=1, job_finished_at=NOW - 1),
            (S.DELETE_POD, S.REMOVE_FINALIZER),
            id="job-finished-failed-exit-no-deregister",
        ),
        pytest.param(
            replace(D, runner_id=1, github=G.OFFLINE, job_finished_at=NOW - 1),
            (S.REMOVE_FINALIZER,),
            id="job-finished-no-pod-no-deregister",
        ),
        pytest.param(
            replace(
                D, pod=PodStatus.RUNNING, runner_id=1, github=G.IDLE, ephemeral=False, job_finished_at=NOW
            ),
            (S.DRAIN,),
            id="persistent-runner-job-finished-still-drained",
        ),
        pytest.param(
            replace(D, pod=PodStatus.RUNNING, jit=False, github=G.IDLE, job_finished_at=NOW - 1),
            (),
            id="job-finished-without-a-known-id-is-no-evidence",
        ),
    ],
)
def test_decide_finalizer(facts: RunnerFacts, steps: tuple[Step, ...]) -> None:
    assert decide(facts).steps == steps


GRID = [
    replace(
        F,
        pod=pod,
        runner_id=rid,
        github=gh,
        exit_code=code,
        pod_running_since=since,
        pod_ready=ready,
        drained_at=drained,
        ephemeral=ephemeral,
        job_finished_at=finished,
    )
    for pod in (PodStatus.RUNNING, PodStatus.DELETING)
    for rid in (1, None)
    for gh in GitHubState
    for code in (None, 0, 1)
    for since in (NOW, NOW - 10_000)
    for ready in (True, False)
    for drained in (None, NOW - 5, NOW - 10_000)
    for ephemeral in (True, False)
    for finished in (None, NOW - 1, NOW - 100)
]
"""Every pod that may hold a job, against every signal (the kind's own facts are added per test)."""

KIND_FACTS = (
    [
        pytest.param(
            {"kind": RunnerKind.RUNNER, "deleting": deleting, "awaiting_admission": awaiting},
            id=f"runner-deleting={deleting}-awaiting-admission={awaiting}",
        )
        for deleting in (True, False)
        for awaiting in (True, False)
    ]
    + [
        pytest.param(
            {
                "kind": RunnerKind.STATEFULSET,
                "pod_uid": "pod-1",
                "credentials": credentials,
                "consumed_by": consumed_by,
                "remove": remove,
                "deleting": deleting,
                "pod_restarted": restarted,
            },
            id=f"statefulset-{credentials}-{consumed_by}-remove={remove}-deleting={deleting}-restarted={restarted}",
        )
        for credentials, consumed_by in (
            (Credentials.FRESH, None),
            (Credentials.CONSUMED, "pod-1"),
            (Credentials.CONSUMED, "pod-0"),
            (Credentials.MISSING, None),
        )
        for remove in (True, False)
        for deleting in (True, False)
        for restarted in (True, False)
    ]
    + [
        pytest.param(
            {"kind": RunnerKind.EPHEMERAL, "deleting": deleting, "failures": failures},
            id=f"ephemeral-deleting={deleting}-failures={failures}",
        )
        for deleting in (True, False)
        for failures in (0, 6)
    ]
)


@pytest.mark.parametrize("kind_facts", KIND_FACTS)
def test_pod_that_may_hold_a_job_is_never_released_without_drain_and_checks(
    kind_facts: dict[str, Any],
) -> None:
    """The invariant behind 'never kill a runner that is running a job', for every runner kind: a
    pod that may hold one is released (its pod deleted; for the StatefulSet kind, the finalizer that
    holds its pod removed) only after drain, deregistration and the checks; or when the runner is
    ephemeral and a `completed` webhook named its registration (its one job is over; GitHub removed
    it: no call); or, for the StatefulSet kind, when no runner process can hold a job (the pod that
    used the single-use credential is gone) or GitHub lists no registration for a used credential;
    or, while nothing asked for its removal, when it never came online within the registration
    timeout."""
    for base in GRID:
        facts = replace(base, **kind_facts)
        _check_release(facts, decide(facts).steps)


def _check_release(f: RunnerFacts, steps: tuple[Step, ...]) -> None:
    unit = f.kind is RunnerKind.STATEFULSET
    over = f.ephemeral and f.job_finished_at is not None and f.runner_id is not None
    if over:
        assert Step.DRAIN not in steps, f
        assert Step.DEREGISTER not in steps, f
    release = Step.REMOVE_FINALIZER if unit else Step.DELETE_POD
    if release not in steps or over:
        if over and not unit and f.deleting and release in steps:
            assert steps == (Step.DELETE_POD, Step.REMOVE_FINALIZER), f
        return
    if (
        unit
        and f.credentials is Credentials.CONSUMED
        and (f.pod_uid != f.consumed_by or f.github is G.ABSENT)
    ):
        return
    since = f.pod_running_since if f.pod_running_since is not None else f.now
    removing = f.deleting or (unit and (f.remove or bool(finished_reason(f))))
    if not removing:
        assert f.github in (G.OFFLINE, G.ABSENT), f
        assert f.now - since > f.registration_timeout, f
        return
    if f.runner_id is not None:
        assert Step.DEREGISTER in steps, f
        assert steps.index(Step.DEREGISTER) < steps.index(release), f
        if f.kind is RunnerKind.EPHEMERAL:
            # no drain (a scale set routes by the set): no sign of a job, and the service's
            # acceptance of the removal (JobStillRunning stops the steps before the release)
            assert f.github in (G.IDLE, G.OFFLINE, G.ABSENT), f
            assert f.pod_ready or f.github is not G.IDLE, f
            return
        assert f.drained_at is not None, f
        assert f.now >= f.drained_at + f.drain_grace, f
        assert f.github in (G.IDLE, G.OFFLINE, G.ABSENT), f
        assert f.pod_ready or f.github is not G.IDLE, f
    else:
        # only after the registration timeout, when a listing shows it never registered
        assert f.now - since > f.registration_timeout, f
        assert f.github is G.ABSENT, f


E = RunnerFacts(now=NOW, kind=RunnerKind.EPHEMERAL, runner_id=7)


@pytest.mark.parametrize(
    ("facts", "steps", "phase"),
    [
        pytest.param(replace(E, runner_id=None), (S.CREATE_POD,), RunnerPhase.PENDING, id="create"),
        pytest.param(
            replace(E, pod=PodStatus.RUNNING, github=G.IDLE), (), RunnerPhase.IDLE, id="idle-keeps-secret"
        ),
        pytest.param(replace(E, pod=PodStatus.RUNNING, github=G.BUSY), (), RunnerPhase.BUSY, id="busy"),
        pytest.param(
            replace(E, pod=PodStatus.EXITED, exit_code=0, github=G.IDLE),
            (S.DELETE_RUNNER,),
            RunnerPhase.COMPLETED,
            id="done",
        ),
        pytest.param(
            replace(E, pod=PodStatus.EXITED, exit_code=1, github=G.IDLE),
            (S.DELETE_POD,),  # the registration stays for the next pod
            RunnerPhase.FAILED,
            id="failed-without-job-new-pod",
        ),
        pytest.param(
            replace(E, pod=PodStatus.EXITED, exit_code=1, github=G.BUSY),
            (S.DELETE_RUNNER,),
            RunnerPhase.FAILED,
            id="failed-with-job-over",
        ),
        pytest.param(replace(E, failures=6), (S.DELETE_RUNNER,), RunnerPhase.FAILED, id="too-many-failures"),
        pytest.param(replace(E, failures=5), (S.CREATE_POD,), RunnerPhase.PENDING, id="five-failures-retry"),
        pytest.param(
            replace(E, pod=PodStatus.RUNNING, github=G.ABSENT),
            (S.DELETE_RUNNER,),
            RunnerPhase.COMPLETED,
            id="removed-by-the-service",
        ),
        pytest.param(
            replace(E, deleting=True, pod=PodStatus.RUNNING, github=G.IDLE),
            (S.DEREGISTER, S.DELETE_POD, S.REMOVE_FINALIZER),  # no drain: the refusal guards
            None,
            id="deleting-idle",
        ),
        pytest.param(
            replace(E, deleting=True, pod=PodStatus.RUNNING, github=G.BUSY), (), None, id="deleting-busy"
        ),
        pytest.param(
            replace(E, deleting=True, github=G.ABSENT),
            (S.REMOVE_FINALIZER,),
            None,
            id="deleting-gone-in-github-never-wedges",
        ),
    ],
)
def test_decide_ephemeral_runner(
    facts: RunnerFacts, steps: tuple[Step, ...], phase: RunnerPhase | None
) -> None:
    decision = decide(facts)
    assert decision.steps == steps
    assert decision.phase == phase


@pytest.mark.parametrize("pod", list(PodStatus))
@pytest.mark.parametrize("deleting", [True, False])
@pytest.mark.parametrize("has_finalizer", [True, False])
@pytest.mark.parametrize("next_attempt_at", [0.0, NOW + 10])
def test_admission_gate(pod: PodStatus, deleting: bool, has_finalizer: bool, next_attempt_at: float) -> None:
    """A sized job's Runner not admitted gets nothing (no finalizer, no pod, no registration, no
    status) until admitted; deletion and an existing pod are handled exactly as without the gate."""
    for rid in (None, 7):
        for gh in GitHubState:
            facts = replace(
                F,
                pod=pod,
                deleting=deleting,
                has_finalizer=has_finalizer,
                next_attempt_at=next_attempt_at,
                runner_id=rid,
                github=gh,
                exit_code=0 if pod is PodStatus.EXITED else None,
            )
            gated = decide(replace(facts, awaiting_admission=True))
            if pod is PodStatus.ABSENT and not deleting:
                assert gated.steps == (), facts
                assert gated.phase is None, facts
                assert gated.requeue_after is None, facts
            else:
                assert gated == decide(facts), facts
