"""One runner scale set's server-side state: its jobs by stage, its runners, its session and its
message log.  Pure and synchronous; :mod:`ghsim.actions.jobs` moves jobs between stages.

Stages of a job the scale set holds (the Actions service's view, not the REST ``status``):

``queued``     routed to the scale set, waiting for capacity (broker mode)
``available``  offered with ``JobAvailable``, waiting for ``acquirejobs`` (GHES mode)
``acquired``   acquired by the listener, waiting for capacity (GHES mode)
``assigned``   assigned to the scale set (``JobAssigned`` sent), no runner has started it
``running``    started by one of the scale set's runners (``JobStarted`` sent)

Guarantees: ``counts`` always equals the number of held jobs per stage; ``admissible`` holds exactly
the jobs that the next admission may assign, oldest routing first; ``timing`` holds assigned jobs
only, in the order they were assigned; message ids start at
100000001 and only grow; the log keeps a message until it is acknowledged.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..entities import Scope

FIRST_MESSAGE_ID = 100_000_001
MESSAGE_TYPE = "RunnerScaleSetJobMessages"
UNLIMITED = 2_147_483_647

STAGES = ("queued", "available", "acquired", "assigned", "running")
#: the stage admission takes jobs from, per mode
ADMIT_FROM = {"broker": "queued", "ghes": "acquired"}


@dataclass(eq=False)
class Tenant:
    """An Actions-service tenant: one per repository, organization or enterprise registered."""

    id: str
    scope: Scope
    #: the absolute base URL handed out by the latest handshake (ends with ``/``)
    base_url: str = ""


@dataclass(eq=False)
class TrackedJob:
    job_id: int
    request_id: int
    uuid: str
    stage: str
    queue_time: float
    scale_set_assign_time: float | None = None
    runner_assign_time: float | None = None
    finish_time: float | None = None
    requeues: int = 0
    runner_id: int | None = None
    runner_name: str | None = None


@dataclass(eq=False)
class Session:
    id: str
    scale_set_id: int
    owner: str
    created_at: float
    last_active: float
    #: long polls being held right now (a session with a held poll is never idle)
    polls_held: int = 0


@dataclass(frozen=True)
class Message:
    id: int
    #: the whole 200 body, rendered when the message was appended (its statistics are a snapshot)
    raw: bytes
    entries: int


@dataclass(eq=False)
class ScaleSet:
    id: int
    tenant: str
    name: str
    group_id: int
    group_name: str
    labels: list[dict[str, str]]
    setting: dict[str, bool]
    created_on: float
    runner_ids: set[int] = field(default_factory=set)
    jobs: dict[int, TrackedJob] = field(default_factory=dict)
    by_request: dict[int, int] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    admissible: dict[int, None] = field(default_factory=dict)
    #: assigned jobs that may still time out, oldest assignment first: job id -> assigned at
    timing: dict[int, float] = field(default_factory=dict)
    session: Session | None = None
    #: the ``X-ScaleSetMaxCapacity`` of the latest poll (``None``: never polled, no limit)
    capacity: int | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)
    log: dict[int, Message] = field(default_factory=dict)
    log_ids: list[int] = field(default_factory=list)
    next_message_id: int = FIRST_MESSAGE_ID

    def label_set(self) -> frozenset[str]:
        return frozenset(lab["name"].lower() for lab in self.labels)

    # ---- jobs --------------------------------------------------------------------------------

    def hold(self, job: TrackedJob, admit_from: str) -> None:
        self.jobs[job.job_id] = job
        self.by_request[job.request_id] = job.job_id
        self.counts[job.stage] += 1
        if job.stage == admit_from:
            self.admissible[job.job_id] = None

    def move(self, job: TrackedJob, stage: str, admit_from: str) -> None:
        self.counts[job.stage] -= 1
        self.admissible.pop(job.job_id, None)
        self.timing.pop(job.job_id, None)
        job.stage = stage
        self.counts[stage] += 1
        if stage == admit_from:
            self.admissible[job.job_id] = None

    def drop(self, job: TrackedJob) -> None:
        self.jobs.pop(job.job_id, None)
        self.by_request.pop(job.request_id, None)
        self.admissible.pop(job.job_id, None)
        self.timing.pop(job.job_id, None)
        self.counts[job.stage] -= 1

    def statistics(self) -> dict[str, int]:
        registered = len(self.runner_ids)
        busy = self.counts["running"]
        return {
            "totalAvailableJobs": self.counts["available"],
            "totalAcquiredJobs": self.counts["acquired"],
            "totalAssignedJobs": self.counts["assigned"] + self.counts["running"],
            "totalRunningJobs": self.counts["running"],
            "totalRegisteredRunners": registered,
            "totalBusyRunners": busy,
            "totalIdleRunners": registered - busy,
        }

    # ---- the message log ---------------------------------------------------------------------

    def flush(self, batch: int) -> int:
        """Turn pending job messages into queue messages of at most ``batch`` each; returns how many."""
        if not self.pending:
            return 0
        stats = self.statistics()
        made = 0
        for start in range(0, len(self.pending), batch):
            chunk = self.pending[start : start + batch]
            mid = self.next_message_id
            self.next_message_id += 1
            body = {
                "messageId": mid,
                "messageType": MESSAGE_TYPE,
                "body": json.dumps(chunk, separators=(",", ":")),
                "statistics": stats,
            }
            self.log[mid] = Message(mid, json.dumps(body, separators=(",", ":")).encode(), len(chunk))
            self.log_ids.append(mid)
            made += 1
        self.pending.clear()
        return made

    def first_after(self, last_id: int) -> Message | None:
        i = bisect.bisect_right(self.log_ids, last_id)
        return self.log[self.log_ids[i]] if i < len(self.log_ids) else None

    def ack(self, message_id: int) -> bool:
        if self.log.pop(message_id, None) is None:
            return False
        i = bisect.bisect_left(self.log_ids, message_id)
        del self.log_ids[i]
        return True
