"""Times, Go durations, quantities and the generic field codec."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from runnerd.api import ApiParseError, format_time, parse_go_duration, parse_quantity, parse_time
from runnerd.api._codec import decode

UTC = dt.UTC
JST = dt.timezone(dt.timedelta(hours=9))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01T10:00:00Z", dt.datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("2021-06-01T00:00:00+09:00", dt.datetime(2021, 6, 1, tzinfo=JST)),
        ("2024-03-01T10:00:00.123456Z", dt.datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: dt.datetime) -> None:
    assert parse_time(text) == expected
    assert parse_time(text).tzinfo is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [("2024-03-01T10:00:00", "without a UTC offset"), ("yesterday", "not an RFC 3339 time")],
)
def test_parse_time_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_time(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.datetime(2024, 3, 1, 10, tzinfo=UTC), "2024-03-01T10:00:00Z"),
        (dt.datetime(2024, 3, 1, 10, 0, 0, 5, tzinfo=UTC), "2024-03-01T10:00:00.000005Z"),
        (dt.datetime(2021, 6, 1, tzinfo=JST), "2021-06-01T00:00:00+09:00"),
    ],
)
def test_format_time(value: dt.datetime, expected: str) -> None:
    assert format_time(value) == expected
    assert parse_time(expected) == value


def test_format_time_rejects_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(dt.datetime(2024, 3, 1))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10m", 600),
        ("30m", 1800),
        ("1h30m", 5400),
        ("1h2m3s", 3723),
        ("1.5h", 5400),
        ("300ms", 0.3),
        ("0", 0),
        ("0s", 0),
        ("-5m", -300),
        ("+2s", 2),
    ],
)
def test_parse_go_duration(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "m", "1d", "10 minutes", "1h 30m"])
def test_parse_go_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a Go duration"):
        parse_go_duration(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1Gi", Decimal(2**30)),
        ("500m", Decimal("0.5")),
        ("1M", Decimal(10**6)),
        ("1e3", Decimal(1000)),
        ("1.5", Decimal("1.5")),
        ("0", Decimal(0)),
        (2, Decimal(2)),
        ("+4k", Decimal(4000)),
    ],
)
def test_parse_quantity(value: int | str, expected: Decimal) -> None:
    assert parse_quantity(value) == expected


@pytest.mark.parametrize("value", ["1 Gi", "Gi", "1GB", "", True])
def test_parse_quantity_rejects(value: int | str) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity(value)


@pytest.mark.parametrize(
    ("tp", "value", "message"),
    [
        (int, "3", "expected an integer, got str"),
        (int, True, "expected an integer, got bool"),
        (bool, "true", "expected a boolean, got str"),
        (str, 120, "expected a string, got int"),
        (list[str], "linux", "expected a list, got str"),
        (dict[str, str], [], "expected an object, got list"),
        (int | str, 1.5, "expected a quantity"),
        (dt.datetime, 1, "expected an RFC 3339 time string"),
        (dt.datetime, "noon", "not an RFC 3339 time"),
    ],
)
def test_decode_rejects_with_path(tp: object, value: object, message: str) -> None:
    with pytest.raises(ApiParseError, match=message) as excinfo:
        decode(tp, value, ".spec.x")
    assert excinfo.value.path == ".spec.x"


def test_decode_accepts_integral_float() -> None:
    assert decode(int, 3.0, ".x") == 3
