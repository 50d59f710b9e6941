"""Pure replica decisions of a RunnerReplicaSet; RunnerSets apply the same two rules.

Scale-down never picks a runner that is (or may be) running a job: runners that are still starting
go first, then idle ones, newest first. A busy runner is never chosen; the caller removes the
chosen ones through GitHub first (``DELETE`` answers 422 when the runner has just taken a job, and
that answer, not the ``busy`` flag, is what protects the job).

Finished ephemeral runners are not replaced while the autoscaler made no new decision
(:func:`replacement_hold`, ARC's ``effectiveTime`` rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runnerd.reconcile.replicas import RunnerPhase, RunnerView

# Lower is removed first.
_REMOVAL_ORDER = {
    RunnerPhase.FAILED: 0,
    RunnerPhase.PENDING: 1,
    RunnerPhase.REGISTERING: 2,
    RunnerPhase.IDLE: 3,
}


@dataclass(frozen=True)
class ReplicaPlan:
    create: int = 0
    delete: tuple[str, ...] = ()


def plan_replicas(desired: int, runners: Sequence[RunnerView]) -> ReplicaPlan:
    """How many runners to create, and which to remove, to reach ``desired`` active runners."""
    if desired < 0:
        raise ValueError(f"desired replicas must be >= 0, got {desired}")
    active = [r for r in runners if r.active]
    if len(active) < desired:
        return ReplicaPlan(create=desired - len(active))
    excess = len(active) - desired
    if excess == 0:
        return ReplicaPlan()
    removable = sorted(
        (r for r in active if r.phase in _REMOVAL_ORDER),
        key=lambda r: (_REMOVAL_ORDER[r.phase], -r.created_at, r.name),
    )
    return ReplicaPlan(delete=tuple(r.name for r in removable[:excess]))


# --- effectiveTime: finished ephemeral runners are not replaced until the autoscaler decides again ----


@dataclass(frozen=True)
class FillMark:
    """What a replica set last filled up to: the target's ``effectiveTime`` and desired count then."""

    effective_time: float  # seconds since the epoch
    desired: int


@dataclass(frozen=True)
class ReplacementHold:
    held: bool
    until: float | None = None  # monotonic; when the hold gives up (a lost ``completed`` delivery)
    reason: str = ""


def replacement_hold(
    *,
    ephemeral: bool,
    effective_time: float | None,
    desired: int,
    mark: FillMark | None,
    deficit_since: float | None,
    now: float,
    max_hold: float,
) -> ReplacementHold:
    """Whether missing runners wait instead of being created (ARC's ``effectiveTime`` rule).

    An ephemeral runner that finished its job leaves a gap while the job's reservation is still
    effective (its ``completed`` delivery is on its way and will lower the desired count). Filling
    the gap would create a runner for a job that no longer exists. So the gap is held while the
    autoscaler made no new decision since the last fill: ``effectiveTime`` not newer than the fill's
    and the desired count not above it. Not held: non-ephemeral runners, targets without
    ``effectiveTime`` (no webhook scaling), the first fill after a start (``mark`` is None), and a gap
    older than ``max_hold`` seconds (``deficit_since``), so a lost ``completed`` delivery or a runner
    that exited without a job costs at most that long.
    """
    if not ephemeral or effective_time is None or mark is None:
        return ReplacementHold(False)
    if effective_time > mark.effective_time or desired > mark.desired:
        return ReplacementHold(False)
    since = now if deficit_since is None else deficit_since
    until = since + max_hold
    if now >= until:
        return ReplacementHold(False, reason=f"held {max_hold:g}s without a new decision: replacing")
    return ReplacementHold(
        True,
        until,
        "finished ephemeral runners are not replaced until the autoscaler decides again "
        "(effectiveTime not newer than the last fill)",
    )
