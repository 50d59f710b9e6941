"""One runner's lifecycle, for every runner kind: observed facts in, the next steps out (pure).

A registered runner goes through the same steps whatever holds it: register (a JIT config or a
registration token), come online, drain, deregister, release its pod, finalize. :func:`decide` is
the one decision for all of them; the runner kinds differ only in where its object, pod and
credential live (:class:`RunnerKind`), and :mod:`runnerd.controller.lifecycle` carries the steps
out through a per-kind adapter.

**Safety rule: never remove a runner that may hold a job.** GitHub's ``busy`` flag lags a job's
start by up to a minute and can flip back mid-job, and ``DELETE`` of a runner succeeds in those
moments too (``../shared/reference/peer-autoscalers.md`` §0.5), so neither is trusted alone:

* A runner pod that may hold a job is first *drained*: its custom labels are replaced, so no new job
  that asks for them is routed to it. Only after a grace period (longer than the time a job takes to
  show up in any signal) with no sign of a job is its registration removed and its pod released.
* Signs of a job: the listing's ``busy`` flag, a ``workflow_job`` webhook naming the runner, and the
  runner's own signal — its pod turns not-Ready while a job runs (the runner image's job-started hook
  fails its readiness probe). GitHub's 422 on ``DELETE`` is the last guard: nothing after it runs.
* A pod that cannot hold a job (not yet running, or its runner process has exited) needs no drain.
* An ephemeral runner whose process exited 0 has finished its job; GitHub removed it already.
* So has an ephemeral runner that a ``workflow_job`` ``completed`` webhook named (its name and its
  registration's id, ``job_finished_at``): it takes exactly one job, and GitHub removes its
  registration after it. It is neither drained nor deregistered (both calls would be answered 404);
  its pod is released without waiting for a drain grace when it is removed. A running one is left
  to exit on its own for ``drain_grace`` (its process is reporting and cleaning up; nothing is
  gained by cutting that short, and nothing is routed to it), then its runner is completed.

**Admission gate.** A sized job's Runner (``awaiting_admission``: docs/gpu-sizing.md, "Admission")
gets nothing until capacity admission admits it: no finalizer, no registration, no pod, no status
(admission writes its status). A Runner being deleted is finalized as always, and a pod that exists
is handled as always (the gate only keeps a new one from being made).

The kinds:

* :attr:`RunnerKind.RUNNER` — a Runner object outlives its pods: a failed pod is replaced
  (``CREATE_POD``), the object is deleted once an ephemeral runner's work is done, and its
  finalizer holds it until the registration is handled. Once the runner is online, its credential
  leaves its Secret (``CONSUME_CREDENTIALS``, first of the steps).
* :attr:`RunnerKind.STATEFULSET` — a RunnerSet's runner is one StatefulSet (``replicas: 1``) and is
  the unit: deleting the runner deletes the StatefulSet (its pod and Secret go with it), whose
  finalizer plays the Runner's (it holds the pod while the removal waits). Its credential is
  single-use (consumed once GitHub lists the runner online), so a runner whose credential was used
  by another pod, or that GitHub no longer lists, is over; so is one the kubelet restarted. The
  RunnerSet may also ask for a runner's removal (``remove``: scale-down, an old template).

* :attr:`RunnerKind.EPHEMERAL` — scale-set mode's EphemeralRunner: the Runner rules, except where
  ARC's differ. A scale set routes jobs to the set, not by a runner's labels, so there is nothing to
  drain: a runner that may hold a job is removed only when no sign of a job shows (the listener's
  ``jobId`` is ``BUSY``; a not-Ready pod) and the service accepts the removal (its
  ``JobStillRunningException`` stops the steps). Its JIT config stays in its Secret for the next pod:
  a pod that fails without a job is replaced after a back-off (``failures``), keeping its
  registration; one that fails holding a job, or more than :data:`MAX_POD_FAILURES` times, ends the
  EphemeralRunner (its finalizer deregisters it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from runnerd.reconcile.replicas import RunnerPhase


class RunnerKind(StrEnum):
    RUNNER = "Runner"
    STATEFULSET = "StatefulSet"
    EPHEMERAL = "EphemeralRunner"


class PodStatus(StrEnum):
    ABSENT = "Absent"
    PENDING = "Pending"  # created, not running (scheduling, pulling images)
    RUNNING = "Running"  # runner container running
    EXITED = "Exited"  # runner container terminated (exit code in facts), or pod Succeeded/Failed
    DELETING = "Deleting"  # deletionTimestamp set, containers may still run


class GitHubState(StrEnum):
    UNKNOWN = "Unknown"  # no listing of this scope yet
    ABSENT = "Absent"  # not in the latest listing
    OFFLINE = "Offline"
    IDLE = "Idle"
    BUSY = "Busy"


class Credentials(StrEnum):
    FRESH = "Fresh"  # the Secret holds the credential: the runner can (still) start
    CONSUMED = "Consumed"  # the runner registered; the credential is gone from the Secret
    MISSING = "Missing"  # no Secret (or no credential in it): no container can start


class Step(StrEnum):
    ADD_FINALIZER = "AddFinalizer"
    CREATE_POD = "CreatePod"  # register with GitHub (JIT config or registration token) then create the pod
    CONSUME_CREDENTIALS = "ConsumeCredentials"  # remove the used credential from its Secret
    DRAIN = "Drain"  # replace the runner's custom labels so no new job is routed to it
    DEREGISTER = "Deregister"  # DELETE the GitHub registration (204/404 ok; 422 = busy, stop here)
    DELETE_POD = "DeletePod"
    DELETE_RUNNER = "DeleteRunner"  # delete the runner's object (its work is done, or it is removed)
    REMOVE_FINALIZER = "RemoveFinalizer"


@dataclass(frozen=True)
class RunnerFacts:
    now: float
    deleting: bool = False
    has_finalizer: bool = True
    ephemeral: bool = True
    jit: bool = True  # registered with a JIT config (the id is known from the start)
    pod: PodStatus = PodStatus.ABSENT
    exit_code: int | None = None
    runner_id: int | None = None
    github: GitHubState = GitHubState.UNKNOWN
    pod_running_since: float | None = None
    pod_ready: bool = True  # a running runner pod is not Ready while its runner runs a job
    drained_at: float | None = None  # when its labels were replaced for removal
    drain_grace: float = 30.0
    registration_timeout: float = 600.0
    next_attempt_at: float = 0.0  # backoff after failures: no new pod before this time
    job_finished_at: float | None = None  # a `completed` webhook named this registration (when)
    kind: RunnerKind = RunnerKind.RUNNER
    awaiting_admission: bool = False  # a sized job's Runner that capacity admission has not admitted
    # --- the StatefulSet kind's own facts
    remove: bool = False  # its RunnerSet wants it gone (scale-down, old template)
    credentials: Credentials = Credentials.FRESH
    consumed_by: str | None = None  # the uid of the pod that used the credential
    pod_uid: str | None = None
    pod_restarted: bool = False  # its runner container exited before (restartPolicy: Always)
    # --- the EphemeralRunner kind's own facts
    failures: int = 0  # its pods that failed (ARC's status.failures)


@dataclass(frozen=True)
class RunnerDecision:
    steps: tuple[Step, ...] = ()
    phase: RunnerPhase | None = None  # what status.phase should say; None = leave it
    reason: str = ""  # why, for events and status.message
    requeue_after: float | None = None
    failed: bool = False  # the pod failed or never registered: count it for backoff
    finished: bool = False  # the runner no longer counts toward its set's replicas: being removed
    extra: dict[str, str] = field(default_factory=dict)


POD_STATUS = {
    "Pending": PodStatus.PENDING,
    "Running": PodStatus.RUNNING,
    "Exited": PodStatus.EXITED,
    "Deleting": PodStatus.DELETING,
}
"""A runner pod's ``lifecycle`` (:func:`runnerd.reconcile.podstate.runner_container_state`)."""

REGISTERING_RECHECK = 5.0
BUSY_RETRY = 15.0
MAX_POD_FAILURES = 5
"""An EphemeralRunner whose pods failed more often than this is deleted (ARC 0.12+)."""


def decide(f: RunnerFacts) -> RunnerDecision:
    """The next steps for one runner of any kind (the module docstring states the rules)."""
    if f.kind is RunnerKind.STATEFULSET:
        return _decide_unit(f)
    if f.kind is RunnerKind.EPHEMERAL:
        return _decide_ephemeral(f)
    if f.awaiting_admission and not f.deleting and f.pod is PodStatus.ABSENT:
        return RunnerDecision(reason="AwaitingAdmission")  # the admission gate: nothing at all
    decision = _decide(f)
    if not f.deleting and f.pod is not PodStatus.ABSENT and f.github in (GitHubState.IDLE, GitHubState.BUSY):
        # Online: its container has read the credential, which leaves its Secret (once).
        return replace(decision, steps=(Step.CONSUME_CREDENTIALS, *decision.steps))
    return decision


def job_over(f: RunnerFacts) -> bool:
    """An ephemeral runner whose one job GitHub reported complete: it holds no job and GitHub has
    removed its registration."""
    return f.ephemeral and f.job_finished_at is not None and f.runner_id is not None


def _registered(f: RunnerFacts) -> bool:
    """GitHub may still hold a registration of this runner (so removing it needs a call)."""
    return f.runner_id is not None and not job_over(f)


def _decide(f: RunnerFacts) -> RunnerDecision:
    if f.deleting:
        return _finalize(f)
    if not f.has_finalizer:
        return RunnerDecision(steps=(Step.ADD_FINALIZER,), requeue_after=0.0)

    if f.pod is PodStatus.ABSENT:
        if f.now < f.next_attempt_at:
            return RunnerDecision(
                phase=RunnerPhase.FAILED,
                reason="BackOff",
                requeue_after=f.next_attempt_at - f.now,
            )
        return RunnerDecision(steps=(Step.CREATE_POD,), phase=RunnerPhase.PENDING, reason="Created")

    if f.pod is PodStatus.PENDING:
        return RunnerDecision(phase=RunnerPhase.PENDING)

    if f.pod is PodStatus.DELETING:
        # Someone else deleted the pod; it goes away on its own. Keep the registration until then.
        return RunnerDecision(requeue_after=REGISTERING_RECHECK)

    if f.pod is PodStatus.EXITED:
        return _exited(f)
    return _running(f)


def _exited(f: RunnerFacts) -> RunnerDecision:
    if (f.exit_code == 0 and f.ephemeral) or job_over(f):
        return RunnerDecision(steps=(Step.DELETE_RUNNER,), phase=RunnerPhase.COMPLETED, reason="Completed")
    steps = (Step.DEREGISTER, Step.DELETE_POD) if f.runner_id is not None else (Step.DELETE_POD,)
    if f.exit_code == 0:
        # A persistent runner's process ended (removed from GitHub, or updated): start it again.
        return RunnerDecision(steps=steps, phase=RunnerPhase.PENDING, reason="RunnerExited")
    return RunnerDecision(
        steps=steps, phase=RunnerPhase.FAILED, reason=f"RunnerFailed(exit {f.exit_code})", failed=True
    )


def _running(f: RunnerFacts) -> RunnerDecision:
    if job_over(f) and f.job_finished_at is not None:
        wait = f.job_finished_at + f.drain_grace - f.now
        if wait > 0:  # its process is exiting: let it
            return RunnerDecision(phase=RunnerPhase.COMPLETED, reason="JobFinished", requeue_after=wait)
        return RunnerDecision(steps=(Step.DELETE_RUNNER,), phase=RunnerPhase.COMPLETED, reason="Completed")
    if _busy(f):
        return RunnerDecision(phase=RunnerPhase.BUSY)
    if f.github is GitHubState.IDLE:
        return RunnerDecision(phase=RunnerPhase.IDLE)
    since = f.pod_running_since if f.pod_running_since is not None else f.now
    if f.github in (GitHubState.ABSENT, GitHubState.OFFLINE) and f.now - since > f.registration_timeout:
        steps = (Step.DEREGISTER, Step.DELETE_POD) if f.runner_id is not None else (Step.DELETE_POD,)
        return RunnerDecision(
            steps=steps, phase=RunnerPhase.FAILED, reason="RegistrationTimeout", failed=True
        )
    return RunnerDecision(
        phase=RunnerPhase.REGISTERING,
        requeue_after=min(REGISTERING_RECHECK, max(0.0, f.registration_timeout - (f.now - since)) + 0.1),
    )


def _finalize(f: RunnerFacts) -> RunnerDecision:
    if not f.has_finalizer:
        return RunnerDecision()
    if f.pod is PodStatus.ABSENT:
        # No pod, so no job: make sure no registration is left behind.
        if _registered(f) and f.github not in (GitHubState.ABSENT,):
            return RunnerDecision(steps=(Step.DEREGISTER, Step.REMOVE_FINALIZER), reason="Deregistering")
        return RunnerDecision(steps=(Step.REMOVE_FINALIZER,), reason="Removed")
    if f.pod is PodStatus.EXITED:
        if (f.exit_code == 0 and f.ephemeral) or job_over(f):
            return RunnerDecision(steps=(Step.DELETE_POD, Step.REMOVE_FINALIZER), reason="Completed")
        if f.runner_id is not None:
            return RunnerDecision(
                steps=(Step.DEREGISTER, Step.DELETE_POD, Step.REMOVE_FINALIZER), reason="Deregistering"
            )
        return RunnerDecision(steps=(Step.DELETE_POD, Step.REMOVE_FINALIZER), reason="Removed")
    if f.pod is PodStatus.PENDING:
        # Not running: it cannot hold a job. Remove the registration so nothing can be routed to it.
        if _registered(f):
            return RunnerDecision(
                steps=(Step.DEREGISTER, Step.DELETE_POD, Step.REMOVE_FINALIZER), reason="Deregistering"
            )
        return RunnerDecision(steps=(Step.DELETE_POD, Step.REMOVE_FINALIZER), reason="Removed")
    return _finalize_live(f)


def _finalize_live(f: RunnerFacts) -> RunnerDecision:
    """Running or being deleted by someone else: it may hold a job, unless GitHub reported its one
    job complete (then GitHub has removed its registration: no drain, no deregistration)."""
    if job_over(f):
        return RunnerDecision(steps=(Step.DELETE_POD, Step.REMOVE_FINALIZER), reason="JobFinished")
    if f.runner_id is not None:
        if _busy(f):
            return RunnerDecision(reason="RunnerBusy", requeue_after=BUSY_RETRY)
        if f.github is GitHubState.UNKNOWN:
            return RunnerDecision(reason="WaitingForGitHub", requeue_after=REGISTERING_RECHECK)
        if f.kind is RunnerKind.EPHEMERAL:  # nothing to drain: the service's refusal is the guard
            return RunnerDecision(
                steps=(Step.DEREGISTER, Step.DELETE_POD, Step.REMOVE_FINALIZER),
                reason="Deregistering",
                requeue_after=BUSY_RETRY,
            )
        if f.drained_at is None:
            return RunnerDecision(steps=(Step.DRAIN,), reason="Draining", requeue_after=f.drain_grace)
        if f.now < f.drained_at + f.drain_grace:
            return RunnerDecision(reason="Draining", requeue_after=f.drained_at + f.drain_grace - f.now)
        return RunnerDecision(
            steps=(Step.DEREGISTER, Step.DELETE_POD, Step.REMOVE_FINALIZER),
            reason="Deregistering",
            requeue_after=BUSY_RETRY,
        )
    # Registration-token runner whose id we have not seen yet: it may register at any moment.
    # Delete it only when a listing shows it never registered and the registration timeout has passed.
    since = f.pod_running_since if f.pod_running_since is not None else f.now
    if f.github is not GitHubState.ABSENT or f.now - since <= f.registration_timeout:
        return RunnerDecision(reason="WaitingForRegistration", requeue_after=REGISTERING_RECHECK)
    return RunnerDecision(steps=(Step.DELETE_POD, Step.REMOVE_FINALIZER), reason="NeverRegistered")


def _busy(f: RunnerFacts) -> bool:
    """Any sign that the runner holds a job: GitHub's flag or a webhook (``BUSY``), or a runner that
    GitHub lists as online whose pod is not Ready (its job-started hook failed the readiness probe)."""
    if f.github is GitHubState.BUSY:
        return True
    return f.github is GitHubState.IDLE and not f.pod_ready


# --- the EphemeralRunner kind ----------------------------------------------------------------


def _decide_ephemeral(f: RunnerFacts) -> RunnerDecision:
    """The Runner rules with ARC's failure path: a failed pod without a job is replaced (after the
    back-off) on the same registration; with a job, or after too many failures, the EphemeralRunner
    is over. No credential is consumed: the JIT config stays in its Secret until the object goes."""
    if f.deleting or not f.has_finalizer:
        return _decide(f)
    if f.github is GitHubState.ABSENT and f.runner_id is not None and f.pod is not PodStatus.EXITED:
        # The service removed its registration (a scale-down, or it expired): no job can reach it.
        return RunnerDecision(
            steps=(Step.DELETE_RUNNER,), phase=RunnerPhase.COMPLETED, reason="RunnerRemoved"
        )
    if f.pod is PodStatus.ABSENT and f.failures > MAX_POD_FAILURES:
        return RunnerDecision(
            steps=(Step.DELETE_RUNNER,), phase=RunnerPhase.FAILED, reason="TooManyPodFailures"
        )
    if f.pod is PodStatus.EXITED and f.exit_code != 0:
        reason = f"RunnerFailed(exit {f.exit_code})"
        if f.github is GitHubState.BUSY:  # it held a job: the job failed with it, the runner is over
            return RunnerDecision(steps=(Step.DELETE_RUNNER,), phase=RunnerPhase.FAILED, reason=reason)
        return RunnerDecision(steps=(Step.DELETE_POD,), phase=RunnerPhase.FAILED, reason=reason, failed=True)
    return _decide(f)


# --- the StatefulSet kind: the object is the unit ---------------------------------------------


def finished_reason(f: RunnerFacts) -> str:
    """Why a runner StatefulSet can do no more work (``""`` while it can)."""
    if f.credentials is Credentials.CONSUMED:
        if f.pod_uid != f.consumed_by:
            return "RunnerPodReplaced"  # the pod that used the credential is gone; no other can start
        if f.github is GitHubState.ABSENT and f.pod is not PodStatus.EXITED:
            return "RunnerRemovedFromGitHub"  # done (ephemeral) or removed: it can take no job
    elif f.credentials is Credentials.MISSING and f.pod in (PodStatus.ABSENT, PodStatus.PENDING):
        return "NoCredentials"
    if f.pod_restarted and f.pod is PodStatus.RUNNING:
        return "RunnerRestarted"
    return ""


def _decide_unit(f: RunnerFacts) -> RunnerDecision:
    """The Runner rules with the StatefulSet as the unit: "delete the pod" deletes the StatefulSet,
    and the StatefulSet's finalizer plays the Runner's. A runner that is over
    (:func:`finished_reason`) or no longer wanted is removed as a deleted Runner is: one that may
    hold a job only once GitHub accepted the removal of its registration (422 = busy: stop there).
    While it must wait (a registration-token runner not listed yet), the StatefulSet is deleted and
    its finalizer holds it, so the decision survives a restart of the controller."""
    over = finished_reason(f)
    finished = over or ("Removing" if f.remove else "")
    phase = _unit_phase(f)
    if not f.has_finalizer:
        if f.deleting:
            return RunnerDecision(phase=phase, reason="Deleting", finished=True)
        return RunnerDecision(steps=(Step.ADD_FINALIZER,), phase=phase, requeue_after=0.0)
    pod = f.pod
    if over in ("RunnerPodReplaced", "RunnerRemovedFromGitHub"):
        # No runner process can hold a job: the one that used the credential is gone (and no other
        # can start), or GitHub has no registration to route a job to. No drain: deregister, delete.
        pod = PodStatus.ABSENT
    inner = _decide(replace(f, kind=RunnerKind.RUNNER, deleting=f.deleting or bool(finished), pod=pod))
    steps = _unit_steps(inner.steps)
    if f.remove and not f.deleting and not over and not steps and phase is RunnerPhase.BUSY:
        # Chosen while it looked idle, but it holds a job now: keep it; it is not removed.
        return RunnerDecision(phase=phase, reason="RunnerBusy", requeue_after=inner.requeue_after)
    if f.deleting or finished:
        if f.deleting:
            steps = [s for s in steps if s is not Step.DELETE_RUNNER]
        elif Step.REMOVE_FINALIZER in steps and Step.DELETE_RUNNER not in steps:
            steps.insert(steps.index(Step.REMOVE_FINALIZER), Step.DELETE_RUNNER)
        elif Step.DELETE_RUNNER not in steps:
            steps.append(Step.DELETE_RUNNER)  # record the decision; the finalizer holds it while we wait
        if Step.REMOVE_FINALIZER not in steps and _should_consume(f):
            steps.insert(0, Step.CONSUME_CREDENTIALS)
        return RunnerDecision(
            tuple(steps),
            phase,
            reason=finished or inner.reason,
            requeue_after=inner.requeue_after,
            failed=f.pod is PodStatus.EXITED and f.exit_code != 0,
            finished=True,
        )
    if Step.DELETE_RUNNER in steps:
        # The Runner rules found the pod safe to delete (exited, or never registered): nothing left
        # to guard.
        steps.insert(steps.index(Step.DELETE_RUNNER) + 1, Step.REMOVE_FINALIZER)
    elif _should_consume(f):
        steps.append(Step.CONSUME_CREDENTIALS)
    return RunnerDecision(
        tuple(steps),
        phase,
        reason=inner.reason,
        requeue_after=inner.requeue_after,
        failed=inner.failed,
        finished=Step.DELETE_RUNNER in steps,
    )


def _unit_steps(steps: tuple[Step, ...]) -> list[Step]:
    """The Runner steps for a unit object: deleting its pod or itself is deleting the object."""
    out: list[Step] = []
    for step in steps:
        step = Step.DELETE_RUNNER if step is Step.DELETE_POD else step
        if step is not Step.CREATE_POD and step not in out:
            out.append(step)
    return out


def _should_consume(f: RunnerFacts) -> bool:
    """GitHub lists the runner online, so the running pod has used its credential. (Not merely
    listed: a JIT runner is listed, offline, from the moment its config is generated.)"""
    return (
        f.credentials is Credentials.FRESH
        and f.pod is PodStatus.RUNNING
        and f.pod_uid is not None
        and f.github in (GitHubState.IDLE, GitHubState.BUSY)
    )


def _unit_phase(f: RunnerFacts) -> RunnerPhase:
    if f.pod is PodStatus.EXITED:
        return RunnerPhase.COMPLETED if f.exit_code == 0 and f.ephemeral else RunnerPhase.FAILED
    if f.pod in (PodStatus.ABSENT, PodStatus.PENDING):
        return RunnerPhase.PENDING
    if f.github is GitHubState.BUSY:
        return RunnerPhase.BUSY
    if f.github is GitHubState.IDLE:
        return RunnerPhase.IDLE if f.pod_ready else RunnerPhase.BUSY
    return RunnerPhase.REGISTERING
