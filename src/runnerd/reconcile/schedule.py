"""Scheduled overrides of an HRA's minReplicas (``spec.scheduledOverrides``), evaluated purely.

Semantics (ARC's, with the deviations listed at the end):

* An override is a window ``[startTime, endTime)``; with a ``recurrenceRule`` the window repeats at
  ``startTime`` + n days/weeks/months/years (RFC 5545 ``FREQ`` with ``DTSTART`` and no ``BYxxx``
  parts: a monthly rule starting on the 31st skips months without a 31st, a yearly rule starting on
  29 February happens in leap years only). ``untilTime`` is inclusive: a window whose start is at
  or before it still happens. A window is active at ``t`` when ``start <= t < end``.
* The first override in list order that is active wins, even when its ``minReplicas`` is null
  (then the HRA's own ``minReplicas`` applies): list order is priority.
* ``scheduledOverridesSummary`` is ``min=<n> time=<t>``: the minReplicas that takes effect next and
  when, ``t`` printed as Go prints a ``time.Time`` (``2026-11-27 09:00:00 +0000 UTC``), in UTC
  because that is how the Kubernetes API hands times to ARC in its containers.

Deviations from ARC, on purpose:

* The duration check does not depend on ``now``. ARC compares the window's length with "one
  period from now" (so a 30-day monthly window is valid in January and invalid in February); here
  the period is the shortest gap between two occurrences of the rule: 1 day, 7 days,
  ``max(28, day of month)`` days, 365 days (1461 for a yearly rule on 29 February). A window no
  longer than that never overlaps the next one.
* ``endTime`` before ``startTime`` is an error (ARC silently never activates it).
* The summary names the next *change* of the effective minReplicas, looking through all overrides
  and their priorities. ARC looks at the first active override and the earliest upcoming one only,
  prints nothing when one window ends exactly when the next starts, and nothing for an upcoming
  override without minReplicas.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from runnerd.api import ScheduledOverride

DAILY = "Daily"
WEEKLY = "Weekly"
MONTHLY = "Monthly"
YEARLY = "Yearly"
FREQUENCIES = (DAILY, WEEKLY, MONTHLY, YEARLY)

_MAX_STEPS = 1024
"""Window boundaries examined when looking for the next change (bounds the work for schedules whose
effective minimum never changes, e.g. a daily 24-hour override)."""


class ScheduleError(ValueError):
    """A scheduled override that cannot be evaluated (missing times, bad frequency, too long)."""


@dataclass(frozen=True)
class Window:
    """One occurrence of an override: active from ``start`` (inclusive) to ``end`` (exclusive)."""

    start: dt.datetime
    end: dt.datetime

    def contains(self, at: dt.datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True)
class ActiveOverride:
    index: int  # position in spec.scheduledOverrides
    override: ScheduledOverride
    window: Window

    @property
    def min_replicas(self) -> int | None:
        return self.override.min_replicas


@dataclass(frozen=True)
class Transition:
    """A future moment at which the schedule's outcome changes."""

    at: dt.datetime
    min_replicas: int  # effective minReplicas from ``at`` on
    active_index: int | None  # the override active from ``at`` on, if any


@dataclass(frozen=True)
class ScheduleState:
    """The schedule's outcome at ``now``.

    ``next_transition`` is the first moment after ``now`` at which the winning override or the
    effective minReplicas changes: requeue then. ``next_change`` is the first moment the effective
    minReplicas changes (what the summary shows). Both are ``None`` when nothing changes within the
    examined horizon (thousands of window boundaries) or ever.
    """

    min_replicas: int
    base_min_replicas: int
    active: ActiveOverride | None
    next_transition: Transition | None
    next_change: Transition | None

    @property
    def summary(self) -> str | None:
        """ARC's ``status.scheduledOverridesSummary`` (``None`` when nothing is scheduled to change)."""
        if self.next_change is None:
            return None
        return f"min={self.next_change.min_replicas} time={format_go_time(self.next_change.at)}"

    @property
    def reason(self) -> str:
        if self.active is None:
            return f"minReplicas {self.min_replicas} (no scheduled override active)"
        w = self.active.window
        span = f"{format_go_time(w.start)} until {format_go_time(w.end)}"
        if self.active.min_replicas is None:
            return (
                f"scheduledOverrides[{self.active.index}] active from {span} without minReplicas: "
                f"minReplicas {self.min_replicas}"
            )
        return f"scheduledOverrides[{self.active.index}] active from {span}: minReplicas {self.min_replicas}"


def format_go_time(t: dt.datetime) -> str:
    """``t`` in UTC as Go's ``time.Time.String()`` prints it: ``2026-11-27 09:00:00 +0000 UTC``."""
    if t.tzinfo is None:
        raise ScheduleError(f"naive datetime {t!r}: times must be timezone-aware")
    u = t.astimezone(dt.UTC)
    text = u.strftime("%Y-%m-%d %H:%M:%S")
    if u.microsecond:
        text += f".{u.microsecond:06d}".rstrip("0")
    return text + " +0000 UTC"


# --- one override -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    index: int
    override: ScheduledOverride
    start: dt.datetime
    duration: dt.timedelta
    frequency: str  # "" = once
    until: dt.datetime | None

    # wall-clock occurrence n (in the start time's zone), or None when that month/year lacks the day
    def occurrence(self, n: int) -> dt.datetime | None:
        s = self.start
        if self.frequency in (DAILY, WEEKLY):
            step = 1 if self.frequency == DAILY else 7
            return s + dt.timedelta(days=step * n)
        if self.frequency == MONTHLY:
            month0 = s.month - 1 + n
            year, month = s.year + month0 // 12, month0 % 12 + 1
        else:  # YEARLY
            year, month = s.year + n, s.month
        if not dt.MINYEAR <= year <= dt.MAXYEAR or s.day > calendar.monthrange(year, month)[1]:
            return None
        return s.replace(year=year, month=month)

    def _allowed(self, occ: dt.datetime) -> bool:
        return self.until is None or occ <= self.until

    def _index_guess(self, at: dt.datetime) -> int:
        """An occurrence number close to ``at`` (the true neighbours are within a few steps)."""
        local = at.astimezone(self.start.tzinfo)
        if self.frequency in (DAILY, WEEKLY):
            step = 1 if self.frequency == DAILY else 7
            return (local - self.start) // dt.timedelta(days=step)
        if self.frequency == MONTHLY:
            return (local.year - self.start.year) * 12 + (local.month - self.start.month)
        return local.year - self.start.year

    def last_start_at_or_before(self, at: dt.datetime) -> dt.datetime | None:
        if self.frequency == "":  # once (untilTime does not apply, as in ARC)
            return self.start if self.start <= at else None
        limit = at if self.until is None else min(at, self.until)
        n = self._index_guess(limit) + 1
        for _ in range(16):
            if n < 0:
                return None
            occ = self.occurrence(n)
            if occ is not None and occ <= limit:
                return occ
            n -= 1
        return None  # pragma: no cover - at most 8 consecutive years lack a 29 February

    def first_start_after(self, at: dt.datetime) -> dt.datetime | None:
        if self.frequency == "":
            return self.start if self.start > at else None
        n = max(self._index_guess(at) - 1, 0)
        for _ in range(16):
            occ = self.occurrence(n)
            if occ is not None and occ > at:
                return occ if self._allowed(occ) else None
            n += 1
        return None  # pragma: no cover - see above

    def window_at(self, at: dt.datetime) -> Window | None:
        start = self.last_start_at_or_before(at)
        if start is None:
            return None
        w = Window(start, start + self.duration)
        return w if w.contains(at) else None

    def next_boundary(self, at: dt.datetime) -> dt.datetime | None:
        """The first moment after ``at`` at which this override's window opens or closes."""
        active = self.window_at(at)
        if active is not None:
            return active.end
        return self.first_start_after(at)


def min_period(frequency: str, start: dt.datetime) -> dt.timedelta | None:
    """The shortest gap between two occurrences of a rule starting at ``start`` (None: one-time)."""
    if frequency == "":
        return None
    if frequency == DAILY:
        return dt.timedelta(days=1)
    if frequency == WEEKLY:
        return dt.timedelta(days=7)
    if frequency == MONTHLY:
        return dt.timedelta(days=max(28, start.day))
    if frequency == YEARLY:
        return dt.timedelta(days=1461 if (start.month, start.day) == (2, 29) else 365)
    raise ScheduleError(
        f'invalid frequency {frequency!r}: it must be one of "Daily", "Weekly", "Monthly", "Yearly"'
    )


def _rule(index: int, o: ScheduledOverride) -> _Rule:
    where = f"scheduledOverrides[{index}]"
    if o.start_time is None or o.end_time is None:
        raise ScheduleError(f"{where}: startTime and endTime are required")
    for name, t in (("startTime", o.start_time), ("endTime", o.end_time)):
        if t.tzinfo is None:
            raise ScheduleError(f"{where}.{name}: naive datetime, times must be timezone-aware")
    duration = o.end_time - o.start_time
    if duration < dt.timedelta(0):
        raise ScheduleError(
            f"{where}: endTime {o.end_time.isoformat()} is before startTime {o.start_time.isoformat()}"
        )
    rr = o.recurrence_rule
    frequency = (rr.frequency if rr is not None else None) or ""
    until = rr.until_time if rr is not None else None
    if until is not None and until.tzinfo is None:
        raise ScheduleError(f"{where}.recurrenceRule.untilTime: naive datetime, times must be timezone-aware")
    try:
        period = min_period(frequency, o.start_time)
    except ScheduleError as e:
        raise ScheduleError(f"{where}.recurrenceRule: {e}") from None
    if period is not None and duration > period:
        raise ScheduleError(
            f"{where}: the override lasts {_human(duration)}, longer than the shortest {frequency} period "
            f"({_human(period)}); windows would overlap"
        )
    return _Rule(index, o, o.start_time, duration, frequency, until)


def _human(d: dt.timedelta) -> str:
    return str(d)


def validate_overrides(overrides: Sequence[ScheduledOverride]) -> list[str]:
    """Every override's problem, one message each (empty when all can be evaluated)."""
    problems: list[str] = []
    for i, o in enumerate(overrides):
        try:
            _rule(i, o)
        except ScheduleError as e:
            problems.append(str(e))
    return problems


def active_window(override: ScheduledOverride, at: dt.datetime) -> Window | None:
    """The window of ``override`` that contains ``at``, if any."""
    return _rule(0, override).window_at(at)


def next_window(override: ScheduledOverride, after: dt.datetime) -> Window | None:
    """The first window of ``override`` that starts strictly after ``after``."""
    r = _rule(0, override)
    start = r.first_start_after(after)
    return None if start is None else Window(start, start + r.duration)


# --- all overrides --------------------------------------------------------------------------------


def _winner(rules: Sequence[_Rule], at: dt.datetime) -> ActiveOverride | None:
    for r in rules:
        w = r.window_at(at)
        if w is not None:
            return ActiveOverride(r.index, r.override, w)
    return None


def _effective(base: int, active: ActiveOverride | None) -> int:
    if active is None or active.min_replicas is None:
        return base
    return active.min_replicas


def evaluate_schedule(
    overrides: Sequence[ScheduledOverride], base_min_replicas: int, now: dt.datetime
) -> ScheduleState:
    """The effective minReplicas at ``now`` and when it (or the winning override) changes next.

    ``base_min_replicas`` is the HRA's own minReplicas (already defaulted). Raises
    :class:`ScheduleError` for an override that cannot be evaluated.
    """
    if now.tzinfo is None:
        raise ScheduleError("now must be timezone-aware")
    rules = [_rule(i, o) for i, o in enumerate(overrides)]
    active = _winner(rules, now)
    current_min = _effective(base_min_replicas, active)
    current_index = None if active is None else active.index

    next_transition: Transition | None = None
    next_change: Transition | None = None
    t = now
    for _ in range(_MAX_STEPS):
        boundaries = [b for b in (r.next_boundary(t) for r in rules) if b is not None]
        if not boundaries:
            break
        t = min(boundaries)
        winner = _winner(rules, t)
        m = _effective(base_min_replicas, winner)
        index = None if winner is None else winner.index
        if next_transition is None and (m != current_min or index != current_index):
            next_transition = Transition(t, m, index)
        if m != current_min:
            next_change = Transition(t, m, index)
            break
    return ScheduleState(
        min_replicas=current_min,
        base_min_replicas=base_min_replicas,
        active=active,
        next_transition=next_transition,
        next_change=next_change,
    )
