"""The delivery audit's rules: which hook, how far to page, what to redeliver, when it is healthy."""

from __future__ import annotations

import pytest

from runnerd.reconcile.deliveryaudit import (
    AuditMemory,
    DeliveryAttempt,
    GuidFacts,
    HookRef,
    decide,
    fresh,
    healthy,
    parse_hook,
    reached_seen,
)
from runnerd.reconcile.pollpace import audited_bound


def attempt(
    id: int,
    guid: str,
    code: int,
    *,
    redelivery: bool = False,
    event: str = "workflow_job",
    at: float = 1000.0,
) -> DeliveryAttempt:
    return DeliveryAttempt(id, guid, event, "queued", code, redelivery, at)


@pytest.mark.parametrize(
    ("text", "hook"),
    [
        ("org/octo-org/42", HookRef("org", "octo-org", hook_id=42)),
        ("repo/octo-org/app/7", HookRef("repo", "octo-org", "app", 7)),
        ("app", HookRef("app")),
        (" org/o/1/ ", HookRef("org", "o", hook_id=1)),
    ],
)
def test_parse_hook(text: str, hook: HookRef) -> None:
    assert parse_hook(text) == hook
    assert parse_hook(str(hook)) == hook


@pytest.mark.parametrize(
    "text", ["", "org/o", "org/o/x", "repo/o/1", "repo/o/r/x", "apps", "org//1", "user/o/1"]
)
def test_parse_hook_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a hook"):
        parse_hook(text)


@pytest.mark.parametrize(
    ("facts", "verdict"),
    [
        (GuidFacts(), "nothing_failed"),
        (GuidFacts(failed_id=5), "redeliver"),
        (GuidFacts(ok=True, failed_id=5), "delivered"),  # a later (or earlier) attempt succeeded
        (GuidFacts(failed_id=5, redelivered=1, awaiting=True), "awaiting"),
        (GuidFacts(failed_id=9, redelivered=1), "redeliver"),  # the redelivery failed too
        (GuidFacts(failed_id=9, redelivered=3), "gave_up"),
    ],
)
def test_decide(facts: GuidFacts, verdict: str) -> None:
    assert decide(facts, max_redeliveries=3) == verdict


@pytest.mark.parametrize(
    ("seen", "since", "ids_fresh", "reached"),
    [
        (None, 0.0, [30, 20, 10], False),  # first pass, everything within the lookback
        (None, 950.0, [30, 20], True),  # first pass: attempt 10 is older than the lookback
        (20, 0.0, [30], True),  # later passes: stop at what was seen
        (5, 0.0, [30, 20, 10], False),
    ],
)
def test_paging_stops_at_what_was_seen(
    seen: int | None, since: float, ids_fresh: list[int], reached: bool
) -> None:
    page = [attempt(30, "c", 200, at=1000), attempt(20, "b", 200, at=990), attempt(10, "a", 200, at=900)]
    assert [a.id for a in fresh(page, seen, since)] == ids_fresh
    assert reached_seen(page, seen, since) is reached


@pytest.mark.parametrize(
    ("last", "now", "ok"),
    [(None, 100.0, False), (0.0, 120.0, True), (0.0, 120.1, False), (100.0, 130.0, True)],
)
def test_healthy_within_two_intervals(last: float | None, now: float, ok: bool) -> None:
    assert healthy(last, now, 60.0) is ok


@pytest.mark.parametrize(
    ("longest", "bound", "is_healthy", "expected"),
    [(300.0, 3600.0, True, 3600.0), (300.0, 3600.0, False, 300.0), (3927.0, 3600.0, True, 3927.0)],
)
def test_audited_bound(longest: float, bound: float, is_healthy: bool, expected: float) -> None:
    assert audited_bound(longest, bound, is_healthy) == expected


@pytest.mark.parametrize(
    ("attempts", "due"),
    [
        ([attempt(1, "a", 0)], [("a", 1)]),  # no answer (timeout, connection refused)
        ([attempt(1, "a", 500), attempt(2, "b", 202)], [("a", 1)]),
        ([attempt(1, "a", 404), attempt(2, "a", 200)], []),  # delivered since
        ([attempt(2, "a", 200), attempt(1, "a", 503)], []),  # order within a page does not matter
        ([attempt(1, "a", 0, event="ping")], []),  # only workflow_job deliveries
        ([attempt(1, "a", 301)], []),  # 3xx is success, as GitHub's filter says
        ([attempt(3, "b", 0), attempt(1, "a", 0)], [("a", 1), ("b", 3)]),  # oldest first
    ],
)
def test_what_is_redelivered(attempts: list[DeliveryAttempt], due: list[tuple[str, int]]) -> None:
    memory = AuditMemory()
    memory.observe(attempts)
    assert memory.due() == due


def test_a_redelivery_is_awaited_then_retried_a_bounded_number_of_times() -> None:
    memory = AuditMemory(max_redeliveries=2)
    memory.observe([attempt(1, "a", 0)])
    assert memory.due() == [("a", 1)]
    memory.redelivered("a")
    assert memory.due() == []  # its attempt is not listed yet
    memory.observe([attempt(2, "a", 0, redelivery=True)])
    assert memory.due() == [("a", 2)]
    memory.redelivered("a")
    memory.observe([attempt(3, "a", 502, redelivery=True)])
    assert memory.due() == []  # tried twice: left to the safety-net poll
    memory.observe([attempt(4, "b", 0)])
    memory.redelivered("b")
    memory.observe([attempt(5, "b", 200, redelivery=True)])
    assert memory.due() == []


def test_memory_is_bounded() -> None:
    memory = AuditMemory(max_guids=2)
    memory.observe([attempt(1, "a", 0), attempt(2, "b", 0), attempt(3, "c", 0)])
    assert list(memory.guids) == ["b", "c"]
