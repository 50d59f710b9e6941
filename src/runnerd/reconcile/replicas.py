"""What a runner set knows of each of its runners: its phase and age (no I/O).

Shared by every kind that keeps runners: the Runner's own status phase
(:mod:`runnerd.reconcile.runner`), the RunnerReplicaSet's replica plan
(:mod:`runnerd.reconcile.runnerreplicaset`) and the RunnerSet's (:mod:`runnerd.reconcile.runnerset`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RunnerPhase(StrEnum):
    """Where one runner is in its life, as the controller observes it."""

    PENDING = "Pending"  # no pod yet, or pod not running: cannot hold a job
    REGISTERING = "Registering"  # pod running, runner not yet online in GitHub
    IDLE = "Idle"  # online, no job
    BUSY = "Running"  # running a job (GitHub busy flag or a workflow_job in_progress event)
    FAILED = "Failed"  # pod failed; the runner controller replaces it
    COMPLETED = "Completed"  # ephemeral runner finished its job; the runner controller removes it


@dataclass(frozen=True)
class RunnerView:
    name: str
    created_at: float  # seconds since the epoch; newer runners are removed first
    phase: RunnerPhase
    deleting: bool = False
    template_hash: str = ""

    @property
    def active(self) -> bool:
        """Counts toward the replica count: not being removed and not finished."""
        return not self.deleting and self.phase is not RunnerPhase.COMPLETED
