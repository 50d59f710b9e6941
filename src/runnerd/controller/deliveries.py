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
* ``applied`` only grows (the poll compares it between rounds).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from runnerd.reconcile.pollpace import RunFacts

MAX_RUNS = 4096


@dataclass
class _Run:
    jobs: dict[int, bool] = field(default_factory=dict)  # job id -> still open (no completed yet)


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
        was_open = run.jobs.get(job_id, True)
        run.jobs[job_id] = was_open and action != "completed"
        self._job_run[(repo, job_id)] = run_id
        while len(self._runs) > self._max:
            (old_repo, _), dropped = self._runs.popitem(last=False)
            for old_job in dropped.jobs:
                self._job_run.pop((old_repo, old_job), None)

    def facts(self, repository: str, run_id: int, unlisted_for: float) -> RunFacts:
        run = self._runs.get((repository.casefold(), run_id))
        if run is None:
            return RunFacts(0, 0, unlisted_for)
        return RunFacts(len(run.jobs), sum(run.jobs.values()), unlisted_for)

    def run_of(self, repository: str, job_id: int) -> int | None:
        """The run of an announced job (``None``: no delivery named it, or it was dropped)."""
        return self._job_run.get((repository.casefold(), job_id))
