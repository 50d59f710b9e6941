"""Capacity reservations: one ``workflow_job`` delivery in, an HRA's new reservation list out (pure).

A reservation (``spec.capacityReservations[]`` of a HorizontalRunnerAutoscaler) asks for replicas
until its ``expirationTime``; :func:`runnerd.reconcile.hra.desired_replicas` adds the live ones to
the metrics' suggestion. This module decides how one delivery changes the list
(:func:`apply_workflow_job_event`, ARC's webhook-based scaler), how a group of deliveries does in one
pass over the list (:func:`apply_workflow_job_events`: the same decisions as applying them one after
another at the same time, each delivery's outcome included) and names a job's reservation
(:func:`job_reservation_name`, :func:`parse_job_reservation`).

Where this differs from ARC, on purpose: deliveries are correlated by job id (see
:func:`apply_workflow_job_event`), so duplicated and reordered deliveries neither over- nor
under-scale.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from runnerd.api import CapacityReservation
from runnerd.reconcile.schedule import format_go_time

JOB_RESERVATION_PREFIX = "job-"


def is_live(r: CapacityReservation) -> bool:
    """The reservation reserves replicas (a completion marker reserves none)."""
    return (r.replicas or 0) > 0


def is_active(r: CapacityReservation, now: dt.datetime) -> bool:
    """The reservation has not expired at ``now``."""
    return r.expiration_time is not None and r.expiration_time > now


def display_name(r: CapacityReservation) -> str:
    return r.name or "unnamed"


def job_reservation_name(job_id: int, repository: str | None = None) -> str:
    """``job-<id>``, or ``job-<id>@<owner>/<repo>`` when the job's repository is known (the safety net
    then knows where to ask whether the job finished, also after a restart)."""
    base = f"{JOB_RESERVATION_PREFIX}{job_id}"
    return f"{base}@{repository}" if repository else base


@functools.lru_cache(maxsize=4096)  # names are read once per entry per delivery
def parse_job_reservation(name: str | None) -> tuple[int, str | None] | None:
    """``(job id, repository or None)`` of a job reservation's name; ``None`` for any other name."""
    if not name or not name.startswith(JOB_RESERVATION_PREFIX):
        return None
    head, _, repository = name[len(JOB_RESERVATION_PREFIX) :].partition("@")
    if not head.isdigit():
        return None
    return int(head), repository or None


def job_of(r: CapacityReservation) -> int | None:
    """The job id a reservation is named after (``None``: not a job's reservation)."""
    parsed = parse_job_reservation(r.name)
    return parsed[0] if parsed is not None else None


@dataclass(frozen=True)
class Outcome:
    """What one delivery did to the list (a :class:`ReservationUpdate` without the list)."""

    changed: bool  # the list differs from the one before this delivery
    delta: int  # change of the reserved replicas caused by the event itself (+1, -1 or 0)
    expired: int  # reservations dropped because they expired
    starved_reset: int  # reservations beyond maxReplicas whose timers were restarted
    reason: str


@dataclass(frozen=True)
class ReservationUpdate:
    reservations: tuple[CapacityReservation, ...]  # the new spec.capacityReservations
    changed: bool  # False: nothing to patch
    delta: int  # change of the reserved replicas caused by the event itself (+1, -1 or 0)
    expired: int  # reservations dropped because they expired
    starved_reset: int  # reservations beyond maxReplicas whose timers were restarted
    reason: str

    @property
    def outcome(self) -> Outcome:
        return Outcome(self.changed, self.delta, self.expired, self.starved_reset, self.reason)


@dataclass(frozen=True)
class _Delivery:
    """One ``workflow_job`` delivery, as the steps of :func:`apply_workflow_job_event` read it."""

    action: str
    conclusion: str | None
    job_id: int | None
    name: str | None  # the job's reservation name (None: a delivery without job id)
    now: dt.datetime
    duration: dt.timedelta
    keep_markers: bool

    @property
    def who(self) -> str:
        return f"job {self.job_id}" if self.job_id is not None else "a job without id"


def apply_workflow_job_event(
    reservations: Sequence[CapacityReservation],
    action: str,
    conclusion: str | None,
    runner_id: int | None,
    now: dt.datetime,
    duration: dt.timedelta,
    max_replicas: int | None,
    *,
    job_id: int | None = None,
    repository: str | None = None,
    keep_markers: bool = True,
) -> ReservationUpdate:
    """Update an HRA's capacity reservations for one ``workflow_job`` delivery.

    Events that change nothing (``in_progress``, ``waiting``, unknown actions, and without a job id
    ``completed`` with ``conclusion`` ``skipped``, or ``success`` and no ``runner_id``) return the
    input unchanged. Otherwise, as in ARC: reservations beyond ``max_replicas`` (counted in list
    order, they have no runner yet) get their timers restarted with their own length, expired
    reservations are dropped, then the event applies.

    With a ``job_id`` (every GitHub delivery has one), reservations are correlated by job, so
    duplicated and reordered deliveries neither over- nor under-scale:

    * ``queued``: adds ``{name: job-<id>, effectiveTime: now, expirationTime: now + duration,
      replicas: 1}`` unless an entry named ``job-<id>`` exists (a duplicate, or the job already
      completed).
    * ``completed`` (any conclusion): replaces the job's entry (or adds one) with a marker
      ``{name: job-<id>, replicas: 0}`` lasting ``duration``, which reserves nothing and makes a
      late or repeated ``queued`` for the job a no-op. A completion never removes another job's
      reservation.

    Without a job id, ARC's rule: ``queued`` adds an unnamed reservation, ``completed`` removes
    the oldest live one (unnamed ones first), never going below zero.

    With ``keep_markers=False`` (what runnerd's writer uses) the list stays as long as the live jobs,
    whatever the number of past ones: ``completed`` removes the job's entry instead of leaving a
    marker, zero-replica markers already there are dropped, and a ``completed`` for a job without
    an entry changes nothing (the caller remembers finished jobs, outside the HRA). A reservation is
    named after its job (and ``repository``, when given, see :func:`job_reservation_name`); entries
    are matched by job id, whichever name form they have. Raises ``ValueError`` for a naive ``now``.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    name = None if job_id is None else job_reservation_name(job_id, repository)
    event = _Delivery(action, conclusion, job_id, name, now, duration, keep_markers)
    original = tuple(reservations)
    ignored = _ignored(event, runner_id)
    if ignored is not None:
        return ReservationUpdate(original, False, 0, 0, 0, ignored)

    kept, expired, starved = _housekeep(original, event, max_replicas)
    live_before = sum(r.replicas or 0 for r in kept if is_live(r))
    if action == "queued":
        kept, reason = _queued(kept, event)
    elif event.job_id is not None:
        kept, reason = _completed_job(kept, event)
    else:
        kept, reason = _completed_without_id(kept, event)

    live_after = sum(r.replicas or 0 for r in kept if is_live(r))
    result = tuple(kept)
    return ReservationUpdate(
        reservations=result,
        changed=result != original,
        delta=live_after - live_before,
        expired=expired,
        starved_reset=starved,
        reason=reason,
    )


def _ignored(event: _Delivery, runner_id: int | None) -> str | None:
    """Why the delivery changes nothing, or ``None`` when it applies."""
    who, conclusion = event.who, event.conclusion
    if event.action not in ("queued", "completed"):
        return f"workflow_job {event.action} for {who}: ignored"
    if event.action == "completed" and event.name is None:
        if conclusion == "skipped":
            return f"workflow_job completed ({conclusion}) for {who}: ignored"
        if conclusion == "success" and runner_id is None:
            return f"workflow_job completed ({conclusion}) without a runner for {who}: ignored"
    return None


def _housekeep(
    original: tuple[CapacityReservation, ...], event: _Delivery, max_replicas: int | None
) -> tuple[list[CapacityReservation], int, int]:
    """As ARC's batch scaler: restart starved reservations, drop expired ones (and, without
    ``keep_markers``, markers). Returns the kept list, the number expired and the number restarted."""
    now = event.now
    items = list(original)
    starved = 0
    if max_replicas is not None:
        live_seen = 0
        for i, r in enumerate(items):
            if not is_live(r):
                continue
            live_seen += 1
            if live_seen <= max(max_replicas, 0):
                continue
            length = (
                r.expiration_time - r.effective_time
                if r.expiration_time is not None and r.effective_time is not None
                else event.duration
            )
            items[i] = dataclasses.replace(r, effective_time=now, expiration_time=now + length)
            starved += 1
    kept = [r for r in items if is_active(r, now) and (event.keep_markers or is_live(r))]
    return kept, len(items) - len(kept), starved


def _queued(kept: list[CapacityReservation], event: _Delivery) -> tuple[list[CapacityReservation], str]:
    who, job_id, now, duration = event.who, event.job_id, event.now, event.duration
    if job_id is not None and any(job_of(r) == job_id for r in kept):
        done = not any(job_of(r) == job_id and is_live(r) for r in kept)
        return kept, _queued_again(who, done)
    reservation = CapacityReservation(
        name=event.name, effective_time=now, expiration_time=now + duration, replicas=1
    )
    return [*kept, reservation], _reserved(who, now + duration)


def _queued_again(who: str, done: bool) -> str:
    reason = f"{who} queued again" if not done else f"{who} queued after it completed"
    return reason + ": no new reservation"


def _reserved(who: str, until: dt.datetime) -> str:
    return f"{who} queued: reserved 1 replica until {format_go_time(until)}"


def _completed_again(who: str) -> str:
    return f"{who} completed again: nothing to release"


def _released(who: str, conclusion: str | None, had: bool, keep_markers: bool) -> str:
    if had:
        return f"{who} completed ({conclusion}): its reservation released"
    if not keep_markers:
        return f"{who} completed ({conclusion}) without a reservation: nothing to release"
    return f"{who} completed ({conclusion}) before it was seen queued: remembered, nothing released"


def _completed_job(
    kept: list[CapacityReservation], event: _Delivery
) -> tuple[list[CapacityReservation], str]:
    who, job_id, conclusion = event.who, event.job_id, event.conclusion
    had = [r for r in kept if job_of(r) == job_id]
    if had and not any(is_live(r) for r in had):
        return kept, _completed_again(who)
    others = [r for r in kept if job_of(r) != job_id]
    reason = _released(who, conclusion, bool(had), event.keep_markers)
    if not event.keep_markers:
        return others, reason
    return [*others, _marker(event)], reason


def _marker(event: _Delivery) -> CapacityReservation:
    return CapacityReservation(
        name=event.name, effective_time=event.now, expiration_time=event.now + event.duration, replicas=0
    )


def _completed_without_id(
    kept: list[CapacityReservation], event: _Delivery
) -> tuple[list[CapacityReservation], str]:
    who, conclusion = event.who, event.conclusion
    live = [i for i, r in enumerate(kept) if is_live(r)]
    unnamed = [i for i in live if not (kept[i].name or "").startswith(JOB_RESERVATION_PREFIX)]
    pick = (unnamed or live)[:1]
    if not pick:
        return kept, f"{who} completed ({conclusion}): no reservation left to release"
    rest = list(kept)
    released = rest.pop(pick[0])
    return rest, f"{who} completed ({conclusion}): released the oldest reservation ({display_name(released)})"


# --- a group of deliveries in one pass -----------------------------------------------------------


@dataclass(frozen=True)
class JobDelivery:
    """One ``workflow_job`` delivery of a group (the arguments of :func:`apply_workflow_job_event`)."""

    action: str
    conclusion: str | None = None
    runner_id: int | None = None
    job_id: int | None = None
    repository: str | None = None


@dataclass(frozen=True)
class BatchUpdate:
    reservations: tuple[CapacityReservation, ...]  # the new spec.capacityReservations
    changed: bool  # the list differs from the input (False: nothing to patch)
    outcomes: tuple[Outcome, ...]  # one per delivery, in order


def apply_workflow_job_events(
    reservations: Sequence[CapacityReservation],
    deliveries: Sequence[JobDelivery],
    now: dt.datetime,
    duration: dt.timedelta,
    max_replicas: int | None,
    *,
    keep_markers: bool = True,
) -> BatchUpdate:
    """Apply ``deliveries`` in order, at ``now``, as :func:`apply_workflow_job_event` applies them one
    after another: the same final list and, for each delivery, the same :class:`Outcome`.

    One pass over the list instead of one per delivery: housekeeping (starved timers restarted,
    expired entries and, without ``keep_markers``, markers dropped) runs once, at the first delivery
    that applies; at one ``now`` it changes nothing when run again (a restarted timer restarts to the
    same times, an entry added at ``now`` neither expires nor starves differently, and an entry's rank
    among the live ones never grows: entries are only removed or appended), so each later delivery
    only reports the live entries beyond ``max_replicas`` as restarted, as the sequential rule counts
    them. Then the entries are indexed by job id once and each delivery is a lookup. Deliveries
    without a job id (ARC's oldest-first rule) and a non-positive ``duration`` (entries that expire
    at once) are applied one after another. Raises ``ValueError`` for a naive ``now``."""
    original = tuple(reservations)
    if not deliveries:
        return BatchUpdate(original, False, ())
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    applies = ("queued", "completed")
    if duration <= dt.timedelta(0) or any(d.job_id is None and d.action in applies for d in deliveries):
        return _one_by_one(original, deliveries, now, duration, max_replicas, keep_markers)
    batch = _Batch(original, now, duration, max_replicas, keep_markers)
    outcomes = tuple(batch.apply(d) for d in deliveries)
    result = batch.result()
    return BatchUpdate(result, result != original, outcomes)


def _one_by_one(
    original: tuple[CapacityReservation, ...],
    deliveries: Sequence[JobDelivery],
    now: dt.datetime,
    duration: dt.timedelta,
    max_replicas: int | None,
    keep_markers: bool,
) -> BatchUpdate:
    current, outcomes = original, []
    for d in deliveries:
        update = apply_workflow_job_event(
            current, d.action, d.conclusion, d.runner_id, now, duration, max_replicas,
            job_id=d.job_id, repository=d.repository, keep_markers=keep_markers,
        )  # fmt: skip
        current = update.reservations
        outcomes.append(update.outcome)
    return BatchUpdate(current, current != original, tuple(outcomes))


class _Batch:
    """The list of one group of deliveries (every one with a job id), indexed by job id once."""

    def __init__(
        self,
        original: tuple[CapacityReservation, ...],
        now: dt.datetime,
        duration: dt.timedelta,
        max_replicas: int | None,
        keep_markers: bool,
    ) -> None:
        self.original = original
        self.now = now
        self.duration = duration
        self.max_replicas = max_replicas
        self.keep_markers = keep_markers
        self.items: list[CapacityReservation | None] | None = None  # None: not housekept yet
        self.jobs: dict[int, list[int]] = {}  # job id -> indexes of its entries in items
        self.live = 0  # live entries in items

    def result(self) -> tuple[CapacityReservation, ...]:
        if self.items is None:
            return self.original
        return tuple(r for r in self.items if r is not None)

    def apply(self, d: JobDelivery) -> Outcome:
        assert d.job_id is not None
        name = job_reservation_name(d.job_id, d.repository)
        event = _Delivery(d.action, d.conclusion, d.job_id, name, self.now, self.duration, self.keep_markers)
        ignored = _ignored(event, d.runner_id)
        if ignored is not None:
            return Outcome(False, 0, 0, 0, ignored)
        expired, starved, housekept = self._housekeep(event)
        if d.action == "queued":
            changed, delta, reason = self._queued(event, d.job_id)
        else:
            changed, delta, reason = self._completed(event, d.job_id)
        return Outcome(housekept or changed, delta, expired, starved, reason)

    def _housekeep(self, event: _Delivery) -> tuple[int, int, bool]:
        """The first time, :func:`_housekeep` and the index; later, the restarted count only."""
        if self.items is not None:
            if self.max_replicas is None:
                return 0, 0, False
            return 0, max(0, self.live - max(self.max_replicas, 0)), False
        kept, expired, starved = _housekeep(self.original, event, self.max_replicas)
        changed = expired > 0 or (starved > 0 and tuple(kept) != self.original)
        self.items = list(kept)
        for i, r in enumerate(kept):
            job = job_of(r)
            if job is not None:
                self.jobs.setdefault(job, []).append(i)
            self.live += is_live(r)
        return expired, starved, changed

    def _append(self, job_id: int, r: CapacityReservation) -> None:
        assert self.items is not None
        self.jobs.setdefault(job_id, []).append(len(self.items))
        self.items.append(r)
        self.live += is_live(r)

    def _queued(self, event: _Delivery, job_id: int) -> tuple[bool, int, str]:
        assert self.items is not None
        held = [self.items[i] for i in self.jobs.get(job_id, ())]
        if held:
            return False, 0, _queued_again(event.who, not any(r is not None and is_live(r) for r in held))
        until = self.now + self.duration
        self._append(
            job_id,
            CapacityReservation(name=event.name, effective_time=self.now, expiration_time=until, replicas=1),
        )
        return True, 1, _reserved(event.who, until)

    def _completed(self, event: _Delivery, job_id: int) -> tuple[bool, int, str]:
        assert self.items is not None
        had = [r for r in (self.items[i] for i in self.jobs.get(job_id, ())) if r is not None]
        live = [r for r in had if is_live(r)]
        if had and not live:
            return False, 0, _completed_again(event.who)
        for i in self.jobs.pop(job_id, ()):
            self.items[i] = None
        self.live -= len(live)
        delta = -sum(r.replicas or 0 for r in live)
        reason = _released(event.who, event.conclusion, bool(had), self.keep_markers)
        if not self.keep_markers:
            return bool(had), delta, reason
        self._append(job_id, _marker(event))
        return True, delta, reason
