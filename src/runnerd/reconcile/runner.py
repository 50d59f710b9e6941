"""Pure decisions for one Runner: observed facts in, the next steps out.

The rules that protect jobs live here. GitHub's ``busy`` flag lags a job's start by up to a minute
and can flip back mid-job, and ``DELETE`` of a runner succeeds in those moments too
(``../shared/reference/peer-autoscalers.md`` §0.5), so neither is trusted alone:

* A runner pod that may hold a job is first *drained*: its custom labels are replaced, so no new job
  that asks for them is routed to it. Only after a grace period (longer than the time a job takes to
  show up in any signal) with no sign of a job is its registration removed and its pod deleted.
* Signs of a job: the listing's ``busy`` flag, a ``workflow_job`` webhook naming the runner, and the
  runner's own signal — its pod turns not-Ready while a job runs (the runner image's job-started hook
  fails its readiness probe). GitHub's 422 on ``DELETE`` is the last guard.
* A pod that cannot hold a job (not yet running, or its runner process has exited) needs no drain.
* An ephemeral runner whose process exited 0 has finished its job; GitHub removed it already.
* So has an ephemeral runner that a ``workflow_job`` ``completed`` webhook named (its name and its
  registration's id, ``job_finished_at``): it takes exactly one job, and GitHub removes its
  registration after it. It is neither drained nor deregistered (both calls would be answered 404);
  its pod is deleted without waiting for a drain grace when its Runner is deleted. A running one is
  left to exit on its own for ``drain_grace`` (its process is reporting and cleaning up; nothing is
  gained by cutting that short, and nothing is routed to it), then its Runner is completed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from runnerd.reconcile.replicas import RunnerPhase


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


class Step(StrEnum):
    ADD_FINALIZER = "AddFinalizer"
    CREATE_POD = "CreatePod"  # register with GitHub (JIT config or registration token) then create the pod
    DRAIN = "Drain"  # replace the runner's custom labels so no new job is routed to it
    DEREGISTER = "Deregister"  # DELETE the GitHub registration (204/404 ok; 422 = busy, stop here)
    DELETE_POD = "DeletePod"
    DELETE_RUNNER = "DeleteRunner"  # the runner's work is done (ephemeral job finished)
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


@dataclass(frozen=True)
class RunnerDecision:
    steps: tuple[Step, ...] = ()
    phase: RunnerPhase | None = None  # what status.phase should say; None = leave it
    reason: str = ""  # why, for events and status.message
    requeue_after: float | None = None
    failed: bool = False  # the pod failed or never registered: count it for backoff
    extra: dict[str, str] = field(default_factory=dict)


REGISTERING_RECHECK = 5.0
BUSY_RETRY = 15.0


def _may_hold_job(f: RunnerFacts) -> bool:
    return f.pod in (PodStatus.RUNNING, PodStatus.DELETING)


def job_over(f: RunnerFacts) -> bool:
    """An ephemeral runner whose one job GitHub reported complete: it holds no job and GitHub has
    removed its registration."""
    return f.ephemeral and f.job_finished_at is not None and f.runner_id is not None


def _registered(f: RunnerFacts) -> bool:
    """GitHub may still hold a registration of this runner (so removing it needs a call)."""
    return f.runner_id is not None and not job_over(f)


def decide(f: RunnerFacts) -> RunnerDecision:
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
        if (f.exit_code == 0 and f.ephemeral) or job_over(f):
            return RunnerDecision(
                steps=(Step.DELETE_RUNNER,), phase=RunnerPhase.COMPLETED, reason="Completed"
            )
        steps = (Step.DEREGISTER, Step.DELETE_POD) if f.runner_id is not None else (Step.DELETE_POD,)
        if f.exit_code == 0:
            # A persistent runner's process ended (removed from GitHub, or updated): start it again.
            return RunnerDecision(steps=steps, phase=RunnerPhase.PENDING, reason="RunnerExited")
        return RunnerDecision(
            steps=steps, phase=RunnerPhase.FAILED, reason=f"RunnerFailed(exit {f.exit_code})", failed=True
        )

    # Running.
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
    # Running or being deleted by someone else: it may hold a job, unless GitHub reported its one job
    # complete (then GitHub has removed its registration: no drain, no deregistration).
    if job_over(f):
        return RunnerDecision(steps=(Step.DELETE_POD, Step.REMOVE_FINALIZER), reason="JobFinished")
    if f.runner_id is not None:
        if _busy(f):
            return RunnerDecision(reason="RunnerBusy", requeue_after=BUSY_RETRY)
        if f.github is GitHubState.UNKNOWN:
            return RunnerDecision(reason="WaitingForGitHub", requeue_after=REGISTERING_RECHECK)
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
