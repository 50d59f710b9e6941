"""What callers hand the model to create work: a job of a run, a line of a trace file."""

from __future__ import annotations

from dataclasses import dataclass

from ..entities import CONCLUSIONS
from ..errors import ValidationFailed


@dataclass(frozen=True)
class JobSpec:
    """One job of a workflow run to enqueue."""

    labels: tuple[str, ...]
    name: str = "build"
    duration: float = 0.0
    conclusion: str = "success"
    #: runner group name the job requires (``runs-on: {group: ...}``)
    group: str | None = None
    #: start in ``waiting`` (environment approval) until approved, or until this many seconds pass
    wait: float | None = None

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValidationFailed("a job needs at least one label")
        if self.conclusion not in CONCLUSIONS:
            raise ValidationFailed(f"conclusion must be one of {', '.join(CONCLUSIONS)}")
        if self.duration < 0:
            raise ValidationFailed("duration must not be negative")


@dataclass(frozen=True)
class TraceEntry:
    """One line of a trace file: a single-job run enqueued ``offset`` seconds after replay starts."""

    offset: float
    repo: str
    labels: tuple[str, ...]
    duration: float
    conclusion: str = "success"
    workflow: str = "trace"
    name: str = "job"
    group: str | None = None
