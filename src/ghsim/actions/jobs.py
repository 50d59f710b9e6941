"""How jobs flow through runner scale sets: routing, admission, acquisition, start, completion,
re-queueing.  Pure and synchronous; driven by the model's events and ticks and by the listener's
calls (through :class:`ghsim.actions.service.ActionsService`).

Routing (what GitHub documents for labels, applied to scale sets): a job belongs to the scale set
whose labels include *every* ``runs-on`` label of the job (case-insensitive), whose runner group
matches the job's ``group`` if it names one, and whose scope and runner group admit the job's
repository.  A scale set created by ARC ≤ 0.13 has one label, its name, so ``runs-on: <name>``
routes there; a multi-label scale set (ARC 0.14 ``scaleSetLabels``) also takes a job that names a
subset of its labels.  When several scale sets match, repository ones win over organization ones
over enterprise ones, then the oldest (lowest id) — deterministic, as users report "always the same
one".

Stages and messages:

* broker mode: routed → ``queued``; on a poll, ``queued`` jobs are assigned while
  ``assigned + running < X-ScaleSetMaxCapacity`` (``JobAssigned``, ``runnerRequestId`` 0);
* GHES mode: routed → ``available`` (``JobAvailable``); ``acquirejobs`` → ``acquired``; on a poll,
  ``acquired`` jobs are assigned under the same capacity rule (``JobAssigned``);
* a runner of the scale set starts the job → ``running`` (``JobStarted``); a job that a runner of
  the scale set starts before it was assigned is assigned first (``JobAssigned`` + ``JobStarted``),
  and a job started by a runner of another scale set moves there;
* the job completes → ``JobCompleted`` (``result`` succeeded/failed/canceled/skipped) and leaves the
  scale set; a job cancelled before it was assigned leaves without a message;
* an assigned job no runner starts within ``assign_timeout_s`` gets ``JobCompleted{canceled}`` and
  goes back to ``queued``/``available``, at most ``max_requeues`` times (then it stays assigned).

Guarantees: the statistics a message carries are computed from the same state the message
describes; ``running`` jobs are always held by one of the scale set's registered runners, so
``totalBusyRunners == totalRunningJobs <= totalAssignedJobs`` and ``idle = registered - busy``.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any

from ..config import ActionsSettings
from ..entities import Job, RunnerGroup
from ..model import Event, JobEvent, JobSnapshot, RunnerWake, World
from . import render
from .scaleset import ADMIT_FROM, UNLIMITED, ScaleSet, Tenant, TrackedJob

_JOB_UUID_BASE = 0x6F1C1D2E_4B7A_4C1E << 64


def job_uuid(job_id: int) -> str:
    """The job's ``jobId`` in messages: a UUID, stable per job (GitHub's are random UUIDs)."""
    return str(uuid.UUID(int=_JOB_UUID_BASE | job_id))


class JobFlow:
    def __init__(self, world: World, scale_sets: dict[int, ScaleSet], tenants: dict[str, Tenant]) -> None:
        self.world = world
        self.scale_sets = scale_sets
        self.tenants = tenants
        #: job id → the scale set holding it; runner id → the scale set it belongs to
        self.job_owner: dict[int, int] = {}
        self.runner_owner: dict[int, int] = {}
        self.by_label: dict[str, set[int]] = {}
        self._request_ids = itertools.count(1001)
        #: told the id of a scale set whose messages or statistics may have changed
        self.on_change: Callable[[int], None] = lambda _id: None

    @property
    def settings(self) -> ActionsSettings:
        return self.world.config.actions

    @property
    def mode(self) -> str:
        return "ghes" if self.settings.mode == "ghes" else "broker"

    # ---- scale sets come and go ----------------------------------------------------------------

    def index(self, ss: ScaleSet) -> None:
        for name in ss.label_set():
            self.by_label.setdefault(name, set()).add(ss.id)

    def unindex(self, ss: ScaleSet) -> None:
        for name in ss.label_set():
            ids = self.by_label.get(name)
            if ids is not None:
                ids.discard(ss.id)
                if not ids:
                    del self.by_label[name]

    def claim_queued(self) -> None:
        """Route every queued job no scale set holds yet (a scale set appeared or changed)."""
        for job in list(self.world.jobs.values()):
            if job.status == "queued" and job.id not in self.job_owner:
                self._route(job)

    def release_all(self, ss: ScaleSet) -> None:
        """``ss`` is gone: its jobs go to another matching scale set, if any."""
        for tracked in list(ss.jobs.values()):
            ss.drop(tracked)
            self.job_owner.pop(tracked.job_id, None)
        for runner_id in ss.runner_ids:
            self.runner_owner.pop(runner_id, None)
        self.claim_queued()

    def add_runner(self, ss: ScaleSet, runner_id: int) -> None:
        ss.runner_ids.add(runner_id)
        self.runner_owner[runner_id] = ss.id

    # ---- the model's events ------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        if isinstance(event, JobEvent):
            if event.action == "queued":
                job = self.world.jobs.get(event.job.id)
                if job is not None and job.id not in self.job_owner:
                    self._route(job)
            elif event.action == "in_progress":
                self._started(event.job)
            elif event.action == "completed":
                self._completed(event.job)
        elif isinstance(event, RunnerWake):
            owner = self.runner_owner.get(event.runner_id)
            if owner is not None and event.runner_id not in self.world.runners:
                del self.runner_owner[event.runner_id]
                ss = self.scale_sets.get(owner)
                if ss is not None:
                    ss.runner_ids.discard(event.runner_id)
                    self.on_change(ss.id)

    def _route(self, job: Job) -> None:
        ss = self.match(job)
        if ss is None:
            return
        tracked = TrackedJob(
            job.id,
            next(self._request_ids),
            job_uuid(job.id),
            "available" if self.mode == "ghes" else "queued",
            job.queued_at or job.created_at,
        )
        ss.hold(tracked, ADMIT_FROM[self.mode])
        self.job_owner[job.id] = ss.id
        if tracked.stage == "available":
            self._say(ss, "JobAvailable", tracked, job)
        self.on_change(ss.id)

    def match(self, job: Job) -> ScaleSet | None:
        labels = job.labels_key()
        first = next(iter(labels), None)
        if first is None:
            return None
        repo = self.world.repos_by_id.get(job.repo_id)
        if repo is None:
            return None
        best: tuple[int, int] | None = None
        found: ScaleSet | None = None
        for ss_id in self.by_label.get(first, ()):
            ss = self.scale_sets[ss_id]
            tenant = self.tenants[ss.tenant]
            rank = (tenant.scope.level, ss.id)
            if best is not None and rank >= best:
                continue
            if not labels <= ss.label_set():
                continue
            if job.group is not None and job.group.lower() != ss.group_name.lower():
                continue
            if self.world.admits(tenant.scope, self.group_of(ss), repo):
                best, found = rank, ss
        return found

    def group_of(self, ss: ScaleSet) -> RunnerGroup | None:
        scope = self.tenants[ss.tenant].scope
        if scope.kind == "repo":
            return None
        return self.world.groups.get(scope.key, {}).get(ss.group_id)

    def _started(self, snap: JobSnapshot) -> None:
        job = self.world.jobs[snap.id]
        runner_id = job.runner_id
        owner_id = self.runner_owner.get(runner_id) if runner_id is not None else None
        held_id = self.job_owner.get(job.id)
        if held_id is not None and held_id != owner_id:
            self._let_go(self.scale_sets[held_id], job)
        if owner_id is None:
            return
        ss = self.scale_sets[owner_id]
        tracked = ss.jobs.get(job.id)
        if tracked is None:  # started by one of our runners before we routed it here
            tracked = TrackedJob(
                job.id,
                next(self._request_ids),
                job_uuid(job.id),
                "queued",
                job.queued_at or job.created_at,
            )
            ss.hold(tracked, ADMIT_FROM[self.mode])
            self.job_owner[job.id] = ss.id
        if tracked.stage != "assigned":
            self._assign(ss, tracked, job)
        now = self.world.now()
        tracked.runner_assign_time = job.assigned_at or now
        tracked.runner_id = runner_id
        tracked.runner_name = job.runner_name
        ss.move(tracked, "running", ADMIT_FROM[self.mode])
        self._say(ss, "JobStarted", tracked, job)
        self.on_change(ss.id)

    def _let_go(self, ss: ScaleSet, job: Job) -> None:
        tracked = ss.jobs[job.id]
        if tracked.stage in ("assigned", "running"):
            tracked.finish_time = self.world.now()
            self._say(ss, "JobCompleted", tracked, job, result="canceled")
        ss.drop(tracked)
        del self.job_owner[job.id]
        self.on_change(ss.id)

    def _completed(self, snap: JobSnapshot) -> None:
        held_id = self.job_owner.pop(snap.id, None)
        if held_id is None:
            return
        ss = self.scale_sets[held_id]
        tracked = ss.jobs[snap.id]
        job = self.world.jobs[snap.id]
        if tracked.stage in ("assigned", "running"):
            tracked.finish_time = job.completed_at or self.world.now()
            result = render.RESULTS.get(job.conclusion or "", job.conclusion or "")
            self._say(ss, "JobCompleted", tracked, job, result=result)
        ss.drop(tracked)
        self.on_change(ss.id)

    # ---- the listener's side -----------------------------------------------------------------

    def admit(self, ss: ScaleSet) -> int:
        """Assign waiting jobs while ``assigned + running`` is under the advertised capacity."""
        capacity = UNLIMITED if ss.capacity is None else ss.capacity
        free = capacity - ss.counts["assigned"] - ss.counts["running"]
        n = 0
        while free > 0 and ss.admissible:
            job_id = next(iter(ss.admissible))
            self._assign(ss, ss.jobs[job_id], self.world.jobs[job_id])
            free -= 1
            n += 1
        return n

    def acquire(self, ss: ScaleSet, request_ids: list[int]) -> list[int]:
        got: list[int] = []
        for rid in request_ids:
            job_id = ss.by_request.get(rid)
            tracked = ss.jobs.get(job_id) if job_id is not None else None
            if tracked is not None and tracked.stage == "available":
                ss.move(tracked, "acquired", ADMIT_FROM[self.mode])
                got.append(rid)
        if got:
            self.on_change(ss.id)
        return got

    def _assign(self, ss: ScaleSet, tracked: TrackedJob, job: Job) -> None:
        tracked.scale_set_assign_time = self.world.now()
        ss.move(tracked, "assigned", ADMIT_FROM[self.mode])
        if tracked.requeues < self.settings.max_requeues:
            ss.timing[tracked.job_id] = tracked.scale_set_assign_time
        self._say(ss, "JobAssigned", tracked, job)

    # ---- time --------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        timeout = self.settings.assign_timeout_s
        for ss in self.scale_sets.values():
            while ss.timing:
                job_id, since = next(iter(ss.timing.items()))
                if since + timeout > now:
                    break
                self._requeue(ss, ss.jobs[job_id])

    def _requeue(self, ss: ScaleSet, tracked: TrackedJob) -> None:
        job = self.world.jobs[tracked.job_id]
        tracked.finish_time = self.world.now()
        self._say(ss, "JobCompleted", tracked, job, result="canceled")
        tracked.requeues += 1
        tracked.scale_set_assign_time = tracked.finish_time = None
        back = "available" if self.mode == "ghes" else "queued"
        ss.move(tracked, back, ADMIT_FROM[self.mode])
        if back == "available":
            self._say(ss, "JobAvailable", tracked, job)
        self.on_change(ss.id)

    # ---- messages ----------------------------------------------------------------------------

    def _say(
        self, ss: ScaleSet, kind: str, tracked: TrackedJob, job: Job, *, result: str | None = None
    ) -> None:
        base = self.tenants[ss.tenant].base_url
        ss.pending.append(
            render.job_message(
                self.world,
                kind,
                tracked,
                job,
                request_id=tracked.request_id if self.mode == "ghes" else 0,
                acquire_url=f"{base}_apis/runtime/runnerscalesets/{ss.id}/acquirejobs",
                result=result,
            )
        )

    def recount(self, ss: ScaleSet) -> dict[str, int]:
        """The statistics counted again from scratch (the model's runners and jobs): for tests."""
        stages: dict[str, int] = dict.fromkeys(("queued", "available", "acquired", "assigned", "running"), 0)
        for tracked in ss.jobs.values():
            stages[tracked.stage] += 1
        runners = [self.world.runners[r] for r in ss.runner_ids if r in self.world.runners]
        busy = sum(
            1 for r in runners if r.job_id is not None and self.world.jobs[r.job_id].status == "in_progress"
        )
        out: dict[str, Any] = {
            "totalAvailableJobs": stages["available"],
            "totalAcquiredJobs": stages["acquired"],
            "totalAssignedJobs": stages["assigned"] + stages["running"],
            "totalRunningJobs": stages["running"],
            "totalRegisteredRunners": len(runners),
            "totalBusyRunners": busy,
            "totalIdleRunners": len(runners) - busy,
        }
        return out
