"""An HRA's new version parses only the reservations no earlier version had, to the same result."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runnerd.api import HorizontalRunnerAutoscaler
from runnerd.controller.targets import ReservationMemo, TargetResolver


def hra(reservations: list[Any], version: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "HorizontalRunnerAutoscaler",
        "metadata": {"name": "h", "namespace": "ns", "uid": "u-1", "resourceVersion": version},
        "spec": {
            "scaleTargetRef": {"name": "rd"},
            "maxReplicas": 10,
            "scaleUpTriggers": [{"githubEvent": {"workflowJob": {}}, "duration": "5m"}],
            "capacityReservations": reservations,
        },
        "status": {"desiredReplicas": 2},
    }


def entry(job: int, replicas: Any = 1, until: Any = "2026-12-07T10:00:00Z") -> dict[str, Any]:
    return {
        "name": f"job-{job}@o/r",
        "effectiveTime": "2026-12-07T09:00:00Z",
        "expirationTime": until,
        "replicas": replicas,
    }


@pytest.mark.parametrize(
    "reservations",
    [
        pytest.param([], id="none"),
        pytest.param([entry(1), entry(2)], id="plain"),
        pytest.param([entry(1), {"replicas": 1}, {}], id="partial-entries"),
        pytest.param([entry(1, replicas=None), entry(2, until=None)], id="nulls"),
        pytest.param([entry(1), None], id="a-null-entry"),
        pytest.param([entry(1), {**entry(2), "extra": [1]}], id="an-unknown-field"),
    ],
)
def test_the_memo_parses_as_the_api_does(reservations: list[Any]) -> None:
    memo = ReservationMemo()
    for version in ("1", "2"):  # the second parse reads the memo (same uid)
        obj = hra(copy.deepcopy(reservations), version)
        assert memo.parse_hra(obj) == HorizontalRunnerAutoscaler.from_dict(obj)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(entry(1, replicas=True), id="a-boolean-is-not-a-count"),
        pytest.param(entry(1, replicas="1"), id="a-string-count"),
        pytest.param(entry(1, until="not a time"), id="a-bad-time"),
        pytest.param("job-1", id="not-an-object"),
    ],
)
def test_an_invalid_entry_fails_the_parse_also_after_a_valid_twin(bad: Any) -> None:
    resolver = TargetResolver({})
    assert resolver.parse_hra(hra([entry(1)], "1")) is not None  # a valid twin is in the memo
    assert resolver.parse_hra(hra([bad], "2")) is None


def test_a_new_version_shares_the_unchanged_reservations() -> None:
    resolver = TargetResolver({})
    first = resolver.parse_hra(hra([entry(1), entry(2)], "1"))
    second = resolver.parse_hra(hra([entry(2), entry(3)], "2"))
    assert first is not None
    assert second is not None
    assert second.spec.capacity_reservations[0] is first.spec.capacity_reservations[1]
    assert [r.name for r in second.spec.capacity_reservations] == ["job-2@o/r", "job-3@o/r"]
    assert resolver.parse_hra(hra([entry(2), entry(3)], "2")) is second  # same version: the cached parse


def test_the_memo_holds_the_latest_version_of_each_hra_only() -> None:
    memo = ReservationMemo()
    first = memo.parse("u-1", [entry(j) for j in range(1, 4)])
    memo.parse("u-2", [entry(1)])
    assert len(memo) == 4
    again = memo.parse("u-1", [entry(3), entry(4)])  # job 1 and 2 are gone from u-1's memo
    assert first is not None
    assert again is not None
    assert again[0] is first[2]
    assert len(memo) == 3


def test_the_memo_of_a_changed_entry_is_a_new_object() -> None:
    memo = ReservationMemo()
    before = memo.parse("u-1", [entry(1)])
    after = memo.parse("u-1", [entry(1, until="2026-12-07T11:00:00Z")])
    assert before is not None
    assert after is not None
    assert after[0] is not before[0]
    assert after[0].expiration_time != before[0].expiration_time
