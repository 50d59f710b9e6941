from __future__ import annotations

import datetime as dt

import pytest

from runnerd.api import RecurrenceRule, ScheduledOverride, parse_time
from runnerd.reconcile.schedule import (
    ScheduleError,
    Transition,
    Window,
    active_window,
    evaluate_schedule,
    format_go_time,
    min_period,
    next_window,
    validate_overrides,
)


def T(s: str) -> dt.datetime:
    return parse_time(s)


def ov(
    start: str,
    end: str,
    freq: str | None = None,
    until: str | None = None,
    min_replicas: int | None = None,
) -> ScheduledOverride:
    rule = None
    if freq is not None or until is not None:
        rule = RecurrenceRule(frequency=freq, until_time=None if until is None else T(until))
    return ScheduledOverride(
        start_time=T(start), end_time=T(end), min_replicas=min_replicas, recurrence_rule=rule
    )


def W(start: str, end: str) -> Window:
    return Window(T(start), T(end))


def fmt(w: Window | None) -> str:
    return "" if w is None else f"{w.start.isoformat()}-{w.end.isoformat()}"


# ARC's own oracle (schedule_test.go), plus daily and month-end rows.
J1, J3 = "2021-05-01T00:00:00+09:00", "2021-05-03T00:00:00+09:00"
UNTIL22, UNTIL23 = "2022-05-01T00:00:00+09:00", "2023-05-01T00:00:00+09:00"
ONE_TIME = ov(J1, J3)
WEEKLY = ov(J1, J3, "Weekly", UNTIL22)
WEEKLY_FOREVER = ov(J1, J3, "Weekly")
MONTHLY = ov(J1, J3, "Monthly", UNTIL22)
YEARLY = ov(J1, J3, "Yearly", UNTIL23)
DAILY = ov("2021-01-01T09:00:00Z", "2021-01-01T17:00:00Z", "Daily")
DAILY_UNTIL = ov("2021-01-01T09:00:00Z", "2021-01-01T17:00:00Z", "Daily", "2021-01-05T09:00:00Z")
JAN31 = ov("2021-01-31T09:00:00Z", "2021-01-31T17:00:00Z", "Monthly")
DEC31 = ov("2021-12-31T22:00:00Z", "2022-01-01T02:00:00Z", "Monthly")
LEAP = ov("2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z", "Yearly")
D30 = ov("2021-01-30T00:00:00Z", "2021-01-31T00:00:00Z", "Monthly")


def w9(day: str, start: str = "00:00:00", end_day: str | None = None, end: str = "00:00:00") -> str:
    return f"{day}T{start}+09:00-{end_day or day}T{end}+09:00"


@pytest.mark.parametrize(
    ("override", "now", "active", "upcoming"),
    [
        pytest.param(ONE_TIME, "2021-04-30T23:59:59+09:00", "", fmt(W(J1, J3)), id="once-about-to-start"),
        pytest.param(ONE_TIME, J1, fmt(W(J1, J3)), "", id="once-started-at-exact-start"),
        pytest.param(ONE_TIME, "2021-05-02T23:59:59+09:00", fmt(W(J1, J3)), "", id="once-about-to-end"),
        pytest.param(ONE_TIME, J3, "", "", id="once-ended-at-exact-end"),
        pytest.param(WEEKLY, "2021-04-30T23:59:59+09:00", "", fmt(W(J1, J3)), id="weekly-about-to-start"),
        pytest.param(
            WEEKLY,
            J1,
            fmt(W(J1, J3)),
            "2021-05-08T00:00:00+09:00-2021-05-10T00:00:00+09:00",
            id="weekly-started",
        ),
        pytest.param(
            WEEKLY,
            J3,
            "",
            "2021-05-08T00:00:00+09:00-2021-05-10T00:00:00+09:00",
            id="weekly-ended",
        ),
        pytest.param(
            WEEKLY,
            "2021-05-09T23:59:59+09:00",
            "2021-05-08T00:00:00+09:00-2021-05-10T00:00:00+09:00",
            "2021-05-15T00:00:00+09:00-2021-05-17T00:00:00+09:00",
            id="weekly-recurrence-about-to-end",
        ),
        pytest.param(
            WEEKLY,
            "2022-04-29T23:59:59+09:00",
            "",
            "2022-04-30T00:00:00+09:00-2022-05-02T00:00:00+09:00",
            id="weekly-last-about-to-start",
        ),
        pytest.param(
            WEEKLY,
            "2022-05-01T23:59:59+09:00",
            "2022-04-30T00:00:00+09:00-2022-05-02T00:00:00+09:00",
            "",
            id="weekly-last-runs-past-until",
        ),
        pytest.param(WEEKLY, "2022-05-02T00:00:00+09:00", "", "", id="weekly-last-ended"),
        pytest.param(
            WEEKLY_FOREVER,
            "2021-05-08T00:00:00+09:00",
            "2021-05-08T00:00:00+09:00-2021-05-10T00:00:00+09:00",
            "2021-05-15T00:00:00+09:00-2021-05-17T00:00:00+09:00",
            id="weekly-forever",
        ),
        pytest.param(
            MONTHLY,
            "2021-06-01T00:00:00+09:00",
            "2021-06-01T00:00:00+09:00-2021-06-03T00:00:00+09:00",
            "2021-07-01T00:00:00+09:00-2021-07-03T00:00:00+09:00",
            id="monthly-recurrence-started",
        ),
        pytest.param(
            MONTHLY,
            "2022-04-30T23:59:59+09:00",
            "",
            "2022-05-01T00:00:00+09:00-2022-05-03T00:00:00+09:00",
            id="monthly-last-about-to-start-until-inclusive",
        ),
        pytest.param(
            MONTHLY,
            "2022-05-01T00:00:01+09:00",
            "2022-05-01T00:00:00+09:00-2022-05-03T00:00:00+09:00",
            "",
            id="monthly-last-started",
        ),
        pytest.param(MONTHLY, "2022-05-03T00:00:00+09:00", "", "", id="monthly-last-ended"),
        pytest.param(
            YEARLY,
            "2022-05-01T00:00:00+09:00",
            "2022-05-01T00:00:00+09:00-2022-05-03T00:00:00+09:00",
            "2023-05-01T00:00:00+09:00-2023-05-03T00:00:00+09:00",
            id="yearly-recurrence-started",
        ),
        pytest.param(
            YEARLY,
            "2023-05-02T23:23:59+09:00",
            "2023-05-01T00:00:00+09:00-2023-05-03T00:00:00+09:00",
            "",
            id="yearly-last-ending",
        ),
        pytest.param(YEARLY, "2023-05-03T00:00:00+09:00", "", "", id="yearly-last-ended"),
        pytest.param(
            DAILY,
            "2021-01-03T08:59:59Z",
            "",
            "2021-01-03T09:00:00+00:00-2021-01-03T17:00:00+00:00",
            id="daily-before-window",
        ),
        pytest.param(
            DAILY,
            "2021-01-03T09:00:00Z",
            "2021-01-03T09:00:00+00:00-2021-01-03T17:00:00+00:00",
            "2021-01-04T09:00:00+00:00-2021-01-04T17:00:00+00:00",
            id="daily-at-start",
        ),
        pytest.param(
            DAILY,
            "2021-01-03T17:00:00Z",
            "",
            "2021-01-04T09:00:00+00:00-2021-01-04T17:00:00+00:00",
            id="daily-at-end",
        ),
        pytest.param(
            DAILY,
            "2020-12-31T12:00:00Z",
            "",
            "2021-01-01T09:00:00+00:00-2021-01-01T17:00:00+00:00",
            id="daily-before-dtstart",
        ),
        pytest.param(
            DAILY_UNTIL,
            "2021-01-05T10:00:00Z",
            "2021-01-05T09:00:00+00:00-2021-01-05T17:00:00+00:00",
            "",
            id="daily-until-equals-a-start-inclusive",
        ),
        pytest.param(DAILY_UNTIL, "2021-01-06T10:00:00Z", "", "", id="daily-after-until"),
        pytest.param(
            JAN31,
            "2021-02-15T00:00:00Z",
            "",
            "2021-03-31T09:00:00+00:00-2021-03-31T17:00:00+00:00",
            id="monthly-31st-skips-february",
        ),
        pytest.param(
            JAN31,
            "2021-04-30T10:00:00Z",
            "",
            "2021-05-31T09:00:00+00:00-2021-05-31T17:00:00+00:00",
            id="monthly-31st-skips-april",
        ),
        pytest.param(
            JAN31,
            "2021-03-31T16:59:59Z",
            "2021-03-31T09:00:00+00:00-2021-03-31T17:00:00+00:00",
            "2021-05-31T09:00:00+00:00-2021-05-31T17:00:00+00:00",
            id="monthly-31st-active-in-march",
        ),
        pytest.param(
            D30,
            "2024-02-10T00:00:00Z",
            "",
            "2024-03-30T00:00:00+00:00-2024-03-31T00:00:00+00:00",
            id="monthly-30th-skips-leap-february",
        ),
        pytest.param(
            DEC31,
            "2022-01-01T01:00:00Z",
            "2021-12-31T22:00:00+00:00-2022-01-01T02:00:00+00:00",
            "2022-01-31T22:00:00+00:00-2022-02-01T02:00:00+00:00",
            id="monthly-across-new-year",
        ),
        pytest.param(
            LEAP,
            "2024-03-01T00:00:00Z",
            "",
            "2028-02-29T00:00:00+00:00-2028-03-01T00:00:00+00:00",
            id="yearly-29-february-leap-years-only",
        ),
        pytest.param(
            LEAP,
            "2028-02-29T12:00:00Z",
            "2028-02-29T00:00:00+00:00-2028-03-01T00:00:00+00:00",
            "2032-02-29T00:00:00+00:00-2032-03-01T00:00:00+00:00",
            id="yearly-29-february-active",
        ),
        pytest.param(
            ov("2021-01-01T00:00:00Z", "2021-01-01T00:00:00Z", "Daily"),
            "2021-01-02T00:00:00Z",
            "",
            "2021-01-03T00:00:00+00:00-2021-01-03T00:00:00+00:00",
            id="zero-length-never-active",
        ),
        pytest.param(
            ov(J1, J3, until="2020-01-01T00:00:00Z"),
            J1,
            fmt(W(J1, J3)),
            "",
            id="until-ignored-for-one-time",
        ),
        pytest.param(ov(J1, J3, "Weekly", "2021-04-01T00:00:00Z"), J1, "", "", id="until-before-start-never"),
    ],
)
def test_windows(override: ScheduledOverride, now: str, active: str, upcoming: str) -> None:
    assert (fmt(active_window(override, T(now))), fmt(next_window(override, T(now)))) == (active, upcoming)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        pytest.param(ov(J1, "2021-05-02T00:00:00+09:00", "Daily"), None, id="daily-24h-equal-period-ok"),
        pytest.param(ov(J1, "2021-05-02T00:00:01+09:00", "Daily"), "longer than", id="daily-over-24h"),
        pytest.param(ov(J1, "2021-05-08T00:00:00+09:00", "Weekly"), None, id="weekly-7d-ok"),
        pytest.param(ov(J1, "2021-05-08T00:00:01+09:00", "Weekly"), "longer than", id="weekly-over-7d"),
        pytest.param(ov(J1, "2021-05-29T00:00:00+09:00", "Monthly"), None, id="monthly-1st-28d-ok"),
        pytest.param(
            ov(J1, "2021-05-29T00:00:01+09:00", "Monthly"), "longer than", id="monthly-1st-over-28d"
        ),
        pytest.param(
            ov("2021-01-31T00:00:00Z", "2021-03-03T00:00:00Z", "Monthly"),
            None,
            id="monthly-31st-31d-ok",
        ),
        pytest.param(
            ov("2021-01-31T00:00:00Z", "2021-03-03T00:00:01Z", "Monthly"),
            "longer than",
            id="monthly-31st-over-31d",
        ),
        pytest.param(ov(J1, "2022-05-01T00:00:00+09:00", "Yearly"), None, id="yearly-365d-ok"),
        pytest.param(ov(J1, "2022-05-01T00:00:01+09:00", "Yearly"), "longer than", id="yearly-over-365d"),
        pytest.param(ov(J1, "2031-05-01T00:00:00+09:00"), None, id="one-time-any-length"),
        pytest.param(ov(J1, J3, "Hourly"), "invalid frequency", id="bad-frequency"),
        pytest.param(ov(J3, J1), "before startTime", id="end-before-start"),
        pytest.param(
            ScheduledOverride(start_time=T(J1), end_time=None), "startTime and endTime", id="missing-end"
        ),
        pytest.param(
            ScheduledOverride(start_time=dt.datetime(2021, 1, 1), end_time=T(J3)),
            "timezone-aware",
            id="naive-start",
        ),
        pytest.param(
            ScheduledOverride(
                start_time=T(J1),
                end_time=T(J3),
                recurrence_rule=RecurrenceRule(frequency="Weekly", until_time=dt.datetime(2022, 1, 1)),
            ),
            "timezone-aware",
            id="naive-until",
        ),
    ],
)
def test_validation(override: ScheduledOverride, message: str | None) -> None:
    problems = validate_overrides([override])
    if message is None:
        assert problems == []
    else:
        assert len(problems) == 1
        assert message in problems[0]
        assert problems[0].startswith("scheduledOverrides[0]")
        with pytest.raises(ScheduleError, match=r"scheduledOverrides\[0\]"):
            evaluate_schedule([override], 1, T(J1))


@pytest.mark.parametrize(
    ("frequency", "start", "days"),
    [
        ("Daily", "2021-01-31T00:00:00Z", 1),
        ("Weekly", "2021-01-31T00:00:00Z", 7),
        ("Monthly", "2021-01-01T00:00:00Z", 28),
        ("Monthly", "2021-01-28T00:00:00Z", 28),
        ("Monthly", "2021-01-29T00:00:00Z", 29),
        ("Monthly", "2021-01-30T00:00:00Z", 30),
        ("Monthly", "2021-01-31T00:00:00Z", 31),
        ("Yearly", "2021-03-01T00:00:00Z", 365),
        ("Yearly", "2024-02-29T00:00:00Z", 1461),
    ],
)
def test_min_period(frequency: str, start: str, days: int) -> None:
    assert min_period(frequency, T(start)) == dt.timedelta(days=days)


def test_min_period_one_time_is_none() -> None:
    assert min_period("", T(J1)) is None


def test_duration_check_does_not_depend_on_now() -> None:
    # ARC measures one month from now: a 30-day window would pass in January, fail in February.
    o = ov("2021-01-31T00:00:00Z", "2021-03-02T00:00:00Z", "Monthly", min_replicas=2)
    assert evaluate_schedule([o], 1, T("2021-01-15T00:00:00Z")).min_replicas == 1
    assert evaluate_schedule([o], 1, T("2021-02-15T00:00:00Z")).min_replicas == 2


@pytest.mark.parametrize(
    ("t", "text"),
    [
        ("2026-11-27T09:00:00Z", "2026-11-27 09:00:00 +0000 UTC"),
        ("2026-11-27T18:00:00+09:00", "2026-11-27 09:00:00 +0000 UTC"),
        ("2026-11-27T09:00:00.5Z", "2026-11-27 09:00:00.5 +0000 UTC"),
        ("2026-11-27T09:00:00.000123Z", "2026-11-27 09:00:00.000123 +0000 UTC"),
    ],
)
def test_format_go_time(t: str, text: str) -> None:
    assert format_go_time(T(t)) == text


def test_format_go_time_naive_rejected() -> None:
    with pytest.raises(ScheduleError):
        format_go_time(dt.datetime(2021, 1, 1))


# --- evaluate_schedule ----------------------------------------------------------------------------

BUSINESS = ov("2026-11-02T09:00:00Z", "2026-11-02T17:00:00Z", "Daily", min_replicas=5)
LONG = ov("2026-11-02T08:00:00Z", "2026-11-02T18:00:00Z", "Daily", min_replicas=2)
NULL_MIN = ov("2026-11-02T09:00:00Z", "2026-11-02T17:00:00Z", "Daily")
MORNING = ov("2026-11-27T09:00:00Z", "2026-11-27T12:00:00Z", min_replicas=3)
AFTERNOON = ov("2026-11-27T12:00:00Z", "2026-11-27T15:00:00Z", min_replicas=3)
ALWAYS = ov("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "Daily", min_replicas=4)
HOLIDAY = ov("2026-12-24T00:00:00Z", "2026-12-27T00:00:00Z", min_replicas=0)


@pytest.mark.parametrize(
    ("overrides", "base", "now", "min_replicas", "active_index", "transition", "summary"),
    [
        pytest.param([], 1, "2026-11-27T10:00:00Z", 1, None, None, None, id="no-overrides"),
        pytest.param(
            [MORNING],
            1,
            "2026-11-27T08:00:00Z",
            1,
            None,
            Transition(T("2026-11-27T09:00:00Z"), 3, 0),
            "min=3 time=2026-11-27 09:00:00 +0000 UTC",
            id="upcoming-one-time",
        ),
        pytest.param(
            [MORNING],
            1,
            "2026-11-27T09:00:00Z",
            3,
            0,
            Transition(T("2026-11-27T12:00:00Z"), 1, None),
            "min=1 time=2026-11-27 12:00:00 +0000 UTC",
            id="active-at-exact-start",
        ),
        pytest.param(
            [MORNING], 0, "2026-11-27T12:00:00Z", 0, None, None, None, id="ended-at-exact-end-nothing-next"
        ),
        pytest.param(
            [BUSINESS, LONG],
            1,
            "2026-11-27T10:00:00Z",
            5,
            0,
            Transition(T("2026-11-27T17:00:00Z"), 2, 1),
            "min=2 time=2026-11-27 17:00:00 +0000 UTC",
            id="overlap-first-in-list-wins",
        ),
        pytest.param(
            [BUSINESS, LONG],
            1,
            "2026-11-27T08:30:00Z",
            2,
            1,
            Transition(T("2026-11-27T09:00:00Z"), 5, 0),
            "min=5 time=2026-11-27 09:00:00 +0000 UTC",
            id="overlap-second-until-first-starts",
        ),
        pytest.param(
            [LONG, BUSINESS],
            1,
            "2026-11-27T10:00:00Z",
            2,
            0,
            Transition(T("2026-11-27T18:00:00Z"), 1, None),
            "min=1 time=2026-11-27 18:00:00 +0000 UTC",
            id="overlap-order-reversed",
        ),
        pytest.param(
            [NULL_MIN, LONG],
            7,
            "2026-11-27T10:00:00Z",
            7,
            0,
            Transition(T("2026-11-27T17:00:00Z"), 2, 1),
            "min=2 time=2026-11-27 17:00:00 +0000 UTC",
            id="active-null-min-shadows-later-overrides",
        ),
        pytest.param(
            [MORNING, AFTERNOON],
            1,
            "2026-11-27T10:00:00Z",
            3,
            0,
            Transition(T("2026-11-27T12:00:00Z"), 3, 1),
            "min=1 time=2026-11-27 15:00:00 +0000 UTC",
            id="adjacent-windows-same-min",
        ),
        pytest.param([ALWAYS], 1, "2026-11-27T10:00:00Z", 4, 0, None, None, id="daily-24h-always-on"),
        pytest.param(
            [HOLIDAY, ALWAYS],
            1,
            "2026-11-27T10:00:00Z",
            4,
            1,
            Transition(T("2026-12-24T00:00:00Z"), 0, 0),
            "min=0 time=2026-12-24 00:00:00 +0000 UTC",
            id="holiday-over-always-on",
        ),
        pytest.param(
            [HOLIDAY, ALWAYS],
            1,
            "2026-12-25T10:00:00Z",
            0,
            0,
            Transition(T("2026-12-27T00:00:00Z"), 4, 1),
            "min=4 time=2026-12-27 00:00:00 +0000 UTC",
            id="holiday-active-min-zero",
        ),
        pytest.param(
            [ov("2026-11-27T18:00:00+09:00", "2026-11-27T20:00:00+09:00", min_replicas=2)],
            1,
            "2026-11-27T08:00:00Z",
            1,
            None,
            Transition(T("2026-11-27T09:00:00Z"), 2, 0),
            "min=2 time=2026-11-27 09:00:00 +0000 UTC",
            id="offset-printed-in-utc",
        ),
    ],
)
def test_evaluate_schedule(
    overrides: list[ScheduledOverride],
    base: int,
    now: str,
    min_replicas: int,
    active_index: int | None,
    transition: Transition | None,
    summary: str | None,
) -> None:
    state = evaluate_schedule(overrides, base, T(now))
    active = None if state.active is None else state.active.index
    assert (state.min_replicas, active, state.next_transition, state.summary) == (
        min_replicas,
        active_index,
        transition,
        summary,
    )


def test_reason_names_the_active_override() -> None:
    state = evaluate_schedule([NULL_MIN, BUSINESS], 3, T("2026-11-27T10:00:00Z"))
    assert "scheduledOverrides[0]" in state.reason
    assert "without minReplicas" in state.reason
    assert evaluate_schedule([], 3, T("2026-11-27T10:00:00Z")).reason.startswith("minReplicas 3")


def test_next_change_is_after_next_transition_when_min_unchanged() -> None:
    state = evaluate_schedule([MORNING, AFTERNOON], 1, T("2026-11-27T10:00:00Z"))
    assert state.next_change == Transition(T("2026-11-27T15:00:00Z"), 1, None)


def test_naive_now_rejected() -> None:
    with pytest.raises(ScheduleError):
        evaluate_schedule([], 1, dt.datetime(2026, 1, 1))
