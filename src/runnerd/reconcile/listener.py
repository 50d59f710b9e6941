"""The scale-set listener's desired-runner decision (no I/O): ARC's arithmetic, exactly.

Facts in: the scale set's ``minRunners``/``maxRunners``, the statistics' ``totalAssignedJobs`` of the
latest message (ARC ≤ 0.13 passes 0 for a poll that timed out with 202) and how many ``JobCompleted``
the message carried. Steps out: the EphemeralRunnerSet's ``replicas`` and ``patchID``.

Rules (ARC 0.9.1 to 0.13 ``setDesiredWorkerState``, reference §11):

* ``target = min(minRunners + assigned, maxRunners)``: ``minRunners`` are *extra idle* runners on top
  of assigned jobs, not a floor; ``maxRunners`` ``None`` means ARC's 2147483647;
* every decision takes the next patch id (the sequence starts at -1, so the first id is 0);
* an *empty batch* (``assigned == 0`` and no job completed, which includes every 202) never scales
  down: ``target = max(last_target, target)``; if that equals ``minRunners`` the patch id is **0**,
  the "reconcile to exactly N, deleting idle extras" signal to the EphemeralRunnerSet;
* the sequence wraps after 2147483647 to 1 (as ARC 0.14 does; 0 is reserved for the signal above).

A listener restart starts a new :class:`ScaleState` (ARC too restarts its sequence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MAX_INT32: Final = 2_147_483_647


@dataclass(frozen=True)
class ScaleState:
    """What the previous decisions leave behind: the last patch id and target (-1: none yet)."""

    patch_seq: int = -1
    last_target: int = -1


@dataclass(frozen=True)
class ScaleDecision:
    replicas: int
    patch_id: int
    empty_batch: bool
    state: ScaleState


def desired_runners(min_runners: int, max_runners: int | None, assigned: int) -> int:
    """``min(minRunners + assigned, maxRunners)`` (never below 0)."""
    ceiling = MAX_INT32 if max_runners is None else max_runners
    return max(0, min(min_runners + max(assigned, 0), ceiling))


def decide(
    state: ScaleState,
    *,
    min_runners: int,
    max_runners: int | None,
    assigned: int,
    jobs_completed: int,
) -> ScaleDecision:
    """The next patch of the EphemeralRunnerSet (see the module docstring)."""
    target = desired_runners(min_runners, max_runners, assigned)
    seq = state.patch_seq + 1 if state.patch_seq < MAX_INT32 else 1
    patch_id = seq
    empty = assigned <= 0 and jobs_completed <= 0
    if empty:
        target = max(state.last_target, target)
        if target == min_runners:
            patch_id = 0
    return ScaleDecision(
        replicas=target,
        patch_id=patch_id,
        empty_batch=empty,
        state=ScaleState(patch_seq=seq, last_target=target),
    )
