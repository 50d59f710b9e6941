"""An EphemeralRunnerSet toward ``spec.replicas`` with ARC's ``patchID`` semantics (pure).

Facts in (the set's ``replicas`` and ``patchID``, its EphemeralRunners), what to do out. ARC's rules
(``../shared/reference/scale-set-protocol.md`` §12.3):

* runners are bucketed by ``status.phase``: ``Running``; ``Succeeded`` (finished); ``Failed``;
  anything else pending; one being deleted counts in no bucket. ``total = pending + running +
  failed`` (plus creations this process made that the informer does not show yet);
* only when ``patchID == 0`` or ``patchID`` differs from the newest ``patch-id`` annotation of its
  runners (the listener's patch has not been acted on): ``total < replicas`` creates the
  difference; ``patchID > 0`` never scales down (runners leave when their job is done);
  ``patchID == 0`` removes up to ``total - replicas`` idle runners, pending before running, oldest
  first, skipping any that is not registered yet (no ``runnerId``) or holds a job (``jobId``);
* finished runners are deleted.

**Never-kill rule:** a runner chosen for removal is only a candidate: the controller asks the
service to remove its registration first and deletes the object only when the service accepts
(``JobStillRunning`` leaves it be); the EphemeralRunner's own finalizer guards it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runnerd.api.scaleset import constants as c


@dataclass(frozen=True)
class RunnerView:
    """One EphemeralRunner as the set sees it."""

    name: str
    phase: str = ""
    deleting: bool = False
    runner_id: int | None = None
    busy: bool = False
    patch_id: int = 0
    created: float = 0.0


@dataclass(frozen=True)
class Counts:
    pending: int = 0
    running: int = 0
    failed: int = 0
    finished: int = 0
    deleting: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.running + self.failed


@dataclass(frozen=True)
class SetDecision:
    create: int = 0
    remove: tuple[str, ...] = ()
    """Idle runners to remove: deregister, then delete the object (in this order)."""
    delete_finished: tuple[str, ...] = ()
    counts: Counts = field(default_factory=Counts)

    def status(self) -> dict[str, Any]:
        return {
            "currentReplicas": self.counts.total,
            "pendingEphemeralRunners": self.counts.pending,
            "runningEphemeralRunners": self.counts.running,
            "failedEphemeralRunners": self.counts.failed,
        }


def runner_view(obj: Mapping[str, Any], created: float) -> RunnerView:
    """A raw EphemeralRunner's view (its phase, registration, job and patch id)."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    try:
        patch_id = int((meta.get("annotations") or {}).get(c.ANNOTATION_PATCH_ID) or 0)
    except ValueError:
        patch_id = 0
    runner_id = status.get("runnerId")
    return RunnerView(
        name=str(meta.get("name")),
        phase=str(status.get("phase") or ""),
        deleting=bool(meta.get("deletionTimestamp")),
        runner_id=int(runner_id) if isinstance(runner_id, int) and runner_id > 0 else None,
        busy=bool(status.get("jobId")) or int(status.get("jobRequestId") or 0) > 0,
        patch_id=patch_id,
        created=created,
    )


def count(runners: Sequence[RunnerView], expected: int = 0) -> Counts:
    pending = running = failed = finished = deleting = 0
    for r in runners:
        if r.deleting:
            deleting += 1
        elif r.phase == c.PHASE_RUNNING:
            running += 1
        elif r.phase == c.PHASE_SUCCEEDED:
            finished += 1
        elif r.phase == c.PHASE_FAILED:
            failed += 1
        else:
            pending += 1
    return Counts(pending + expected, running, failed, finished, deleting)


def decide_set(
    replicas: int, patch_id: int, runners: Sequence[RunnerView], *, expected: int = 0
) -> SetDecision:
    """What to do with one EphemeralRunnerSet (the module docstring states the rules);
    ``expected``: runners created by this process that ``runners`` does not show yet."""
    counts = count(runners, expected)
    finished = tuple(r.name for r in runners if not r.deleting and r.phase == c.PHASE_SUCCEEDED)
    latest = max((r.patch_id for r in runners), default=0)
    if patch_id != 0 and patch_id == latest:
        return SetDecision(delete_finished=finished, counts=counts)
    if counts.total < replicas:
        return SetDecision(create=replicas - counts.total, delete_finished=finished, counts=counts)
    if patch_id == 0 and counts.total > replicas:
        excess = counts.total - replicas
        live = [r for r in runners if not r.deleting and r.phase not in (c.PHASE_SUCCEEDED, c.PHASE_FAILED)]
        order = sorted(live, key=lambda r: (r.phase == c.PHASE_RUNNING, r.created, r.name))
        idle = [r.name for r in order if r.runner_id is not None and not r.busy]
        return SetDecision(remove=tuple(idle[:excess]), delete_finished=finished, counts=counts)
    return SetDecision(delete_finished=finished, counts=counts)
