"""What the ``workflow_job`` deliveries announced, per run: the evidence the safety-net poll paces itself by.

The :class:`~runnerd.controller.reservations.ReservationSink` records every delivery it applied to a
reservation (a ``queued`` that matched an HRA, or any action for a job a reservation holds); the poll
(:mod:`runnerd.controller.poller`) and the shared run observation (:mod:`runnerd.controller.runwatch`)
read it through :func:`runnerd.reconcile.pollpace.list_jobs` and
:func:`runnerd.reconcile.pollpace.next_interval`. Guarantees:

* Only applied deliveries count: a delivery no HRA matched announces nothing (a pull-only HRA's
  metric must still list that job's run).
* Memory is bounded: at most ``max_runs`` runs (the least recently announced dropped, with their
  jobs); a run dropped is simply listed again, as if no delivery had come.
* ``applied`` only grows (the poll compares it between rounds); ``in_progress`` deliveries (which
  reserve nothing) only mark a known job as started, so a queued announced job whose reservation is
  gone is told apart from a running one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container
from dataclasses import dataclass, field

from runnerd.reconcile.pollpace import RunFacts

MAX_RUNS = 4096


QUEUED, RUNNING, DONE = 0, 1, 2


@dataclass
class _Run:
    jobs: dict[int, int] = field(default_factory=dict)  # job id -> QUEUED, RUNNING or DONE


class DeliveryLedger:
    """Runs and jobs the applied deliveries announced (see the module docstring)."""

    def __init__(self, max_runs: int = MAX_RUNS) -> None:
        self._max = max_runs
        self._runs: OrderedDict[tuple[str, int], _Run] = OrderedDict()
        self._job_run: dict[tuple[str, int], int] = {}
        self.applied = 0

    def __len__(self) -> int:
        return len(self._runs)

    def record(self, repository: str, run_id: int | None, job_id: int, action: str) -> None:
        """A delivery for ``job_id`` of run ``run_id`` was applied (``action``: queued, completed, ...)."""
        self.applied += 1
        if run_id is None:
            return
        repo = repository.casefold()
        key = (repo, run_id)
        run = self._runs.get(key)
        if run is None:
            run = self._runs[key] = _Run()
        self._runs.move_to_end(key)
        step = DONE if action == "completed" else RUNNING if action == "in_progress" else QUEUED
        run.jobs[job_id] = max(run.jobs.get(job_id, QUEUED), step)  # a late delivery never goes back
        self._job_run[(repo, job_id)] = run_id
        while len(self._runs) > self._max:
            (old_repo, _), dropped = self._runs.popitem(last=False)
            for old_job in dropped.jobs:
                self._job_run.pop((old_repo, old_job), None)

    def started(self, repository: str, run_id: int | None, job_id: int) -> None:
        """An ``in_progress`` delivery for a job the ledger knows (not counted as applied)."""
        run = self._runs.get((repository.casefold(), run_id)) if run_id is not None else None
        if run is not None and job_id in run.jobs:
            run.jobs[job_id] = max(run.jobs[job_id], RUNNING)

    def facts(self, repository: str, run_id: int, unlisted_for: float, live: Container[int] = ()) -> RunFacts:
        """What the deliveries said about the run; ``live``: the jobs live reservations hold."""
        run = self._runs.get((repository.casefold(), run_id))
        if run is None:
            return RunFacts(0, 0, unlisted_for)
        open_jobs = sum(1 for s in run.jobs.values() if s != DONE)
        uncovered = sum(1 for j, s in run.jobs.items() if s == QUEUED and j not in live)
        return RunFacts(len(run.jobs), open_jobs, unlisted_for, uncovered)

    def run_of(self, repository: str, job_id: int) -> int | None:
        """The run of an announced job (``None``: no delivery named it, or it was dropped)."""
        return self._job_run.get((repository.casefold(), job_id))
