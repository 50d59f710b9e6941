from __future__ import annotations

import itertools
import json
from decimal import Decimal

import pytest

from runnerd.reconcile.cost import (
    DAY,
    HOUR,
    OTHER,
    BucketKey,
    CardinalityLimits,
    Ledger,
    PriceTable,
    RunnerFacts,
    Usage,
    accrue,
    all_time,
    compact,
    forget,
    from_json,
    money,
    report,
    to_json,
)
from tests.unit.reconcile.sizingkit import A100, H100

D = Decimal
T0 = 1_796_000_400  # a whole hour (2026-12-01 ...)
assert T0 % HOUR == 0
PRICES = PriceTable(cpu_hour=D("0.04"), gpu_hour={H100: D("3.00"), A100: D("1.50")})


def run(
    uid: str,
    start: int,
    end: int | None = None,
    gpus: int = 0,
    product: str = "",
    cpu: str = "2",
    repo: str = "octo/ml",
    workflow: str = "train",
    pool: str = "gpu",
) -> RunnerFacts:
    return RunnerFacts(uid, repo, workflow, pool, start, end, D(cpu), D(gpus), product)


def total(ledger: Ledger) -> Usage:
    return sum(ledger.buckets.values(), Usage())


@pytest.mark.parametrize(
    ("runners", "now", "runner_s", "gpu_s"),
    [
        pytest.param([run("a", T0, T0 + 600, 2, H100)], T0 + 9999, 600, 1200, id="finished"),
        pytest.param([run("a", T0, None, 2, H100)], T0 + 300, 300, 600, id="running-up-to-now"),
        pytest.param([run("a", T0 + 100, None)], T0 + 50, 0, 0, id="not-started-yet"),
        pytest.param([run("a", T0, T0 + 60), run("b", T0, T0 + 30, 1, A100)], T0 + 60, 90, 30, id="two"),
        pytest.param([run("a", T0 - 1800, T0 + 1800, 1, H100)], T0 + 1800, 3600, 3600, id="across-hours"),
    ],
)
def test_accrue(runners: list[RunnerFacts], now: int, runner_s: int, gpu_s: int) -> None:
    ledger = accrue(Ledger(), runners, now)
    assert total(ledger).runner_seconds == runner_s
    assert total(ledger).gpu_seconds == gpu_s


def test_hour_split_and_cpu_seconds() -> None:
    ledger = accrue(Ledger(), [run("a", T0 - 1800, T0 + 1800, 1, H100, cpu="0.5")], T0 + 1800)
    hours = sorted((k.start, u.runner_seconds, u.cpu_seconds) for k, u in ledger.buckets.items())
    assert hours == [(T0 - HOUR, 1800, 900), (T0, 1800, 900)]


# --- idempotency: replays, restarts and clock skew never count a second twice ----------------

SCRIPT = [
    # (now, runners the pod watch shows at that moment)
    (T0 + 60, [run("a", T0, None, 2, H100), run("b", T0 + 30, None)]),
    (T0 + 120, [run("a", T0, None, 2, H100), run("b", T0 + 30, T0 + 90)]),
    (T0 + 4000, [run("a", T0, T0 + 3700, 2, H100), run("b", T0 + 30, T0 + 90)]),
]
EXPECTED = Usage(D(3700 + 60), D(2 * (3700 + 60)), D(2 * 3700))


def test_script_counts_each_second_once() -> None:
    ledger = Ledger()
    for now, runners in SCRIPT:
        ledger = accrue(ledger, runners, now)
    assert total(ledger) == EXPECTED
    assert ledger.counted_until == {}
    assert ledger.finished == {"a": T0 + 3700, "b": T0 + 90}


@pytest.mark.parametrize("replays", [1, 2, 3])
def test_replaying_every_step_changes_nothing(replays: int) -> None:
    ledger = Ledger()
    for now, runners in SCRIPT:
        for _ in range(replays):
            ledger = accrue(ledger, runners, now)
    assert total(ledger) == EXPECTED


@pytest.mark.parametrize("restart_after", range(len(SCRIPT)))
def test_restart_from_the_stored_ledger_double_counts_nothing(restart_after: int) -> None:
    ledger = Ledger()
    for i, (now, runners) in enumerate(SCRIPT):
        ledger = accrue(ledger, runners, now)
        if i == restart_after:
            stored = json.dumps(to_json(ledger))  # what the ConfigMap holds
            ledger = from_json(json.loads(stored))
            ledger = accrue(ledger, runners, now)  # the new leader's first pass sees the same pods
    assert total(ledger) == EXPECTED


def test_older_now_after_a_leader_change_counts_nothing_more() -> None:
    ledger = accrue(Ledger(), [run("a", T0, None, 1, H100)], T0 + 600)
    skewed = accrue(ledger, [run("a", T0, None, 1, H100)], T0 + 500)
    assert skewed == ledger


def test_every_order_of_the_same_facts_gives_the_same_ledger() -> None:
    facts = [run("a", T0, T0 + 100, 1, H100), run("b", T0, None, 0), run("c", T0 + 5, T0 + 7, 4, A100)]
    results = {json.dumps(to_json(accrue(Ledger(), list(p), T0 + 50))) for p in itertools.permutations(facts)}
    assert len(results) == 1


def test_forget_drops_gone_pods_only() -> None:
    ledger = accrue(
        Ledger(), [run("done", T0, T0 + 10), run("live", T0, None), run("vanished", T0, None)], T0 + 20
    )
    kept = forget(ledger, live_uids={"live"}, now=T0 + 20)
    assert kept.counted_until == {"live": T0 + 20}
    assert kept.finished == {"done": T0 + 10}, "finished ones are kept for keep_s"
    later = forget(kept, live_uids={"live"}, now=T0 + 10 + HOUR)
    assert later.finished == {}
    assert total(later) == total(ledger), "forgetting never changes totals"


# --- cardinality ----------------------------------------------------------------------------------


def test_label_cardinality_is_bounded_and_stable() -> None:
    limits = CardinalityLimits(repository=2, workflow=1)
    runners = [run(f"r{i}", T0, T0 + 10, repo=f"octo/repo{i}", workflow=f"wf{i}") for i in range(4)]
    ledger = accrue(Ledger(), runners, T0 + 10, limits)
    assert ledger.admitted["repository"] == ("octo/repo0", "octo/repo1")
    repos = {k.repository for k in ledger.buckets}
    assert repos == {"octo/repo0", "octo/repo1", OTHER}
    assert {k.workflow for k in ledger.buckets} == {"wf0", OTHER}
    # admitted values survive a restart, and an admitted value keeps its label
    again = accrue(from_json(to_json(ledger)), [run("r9", T0, T0 + 10, repo="octo/repo1")], T0 + 20, limits)
    assert again.admitted == ledger.admitted
    assert report(again, PRICES, by=("repository",))[0].group in {("octo/repo1",), (OTHER,)}
    assert {r.group for r in report(again, PRICES)} == {("octo/repo0",), ("octo/repo1",), (OTHER,)}


# --- compaction keeps every total ---------------------------------------------------------------


def test_compaction_folds_buckets_and_keeps_sums() -> None:
    now = T0 + 40 * DAY
    runners = [run(f"r{d}", T0 + d * DAY, T0 + d * DAY + 7200, 1, H100) for d in range(40)]
    ledger = accrue(Ledger(), runners, now)
    small = compact(ledger, now)
    assert all_time(small) == all_time(ledger)
    spans = {k.span for k in small.buckets}
    assert spans == {0, DAY, HOUR}
    assert len(small.buckets) < len(ledger.buckets)
    assert compact(small, now) == small, "compaction is idempotent"


@pytest.mark.parametrize(
    ("since", "gpu_hours"),
    [
        (None, 4),
        (T0 + 10 * DAY - 1, 2),  # the two runs in the last 2 days, at hour resolution
        (T0 + 11 * DAY + 1800, 1),  # a bucket that overlaps the window counts whole
        (T0 + 12 * DAY, 0),
    ],
)
def test_report_since(since: int | None, gpu_hours: int) -> None:
    now = T0 + 12 * DAY
    runners = [run(f"r{d}", T0 + d * DAY, T0 + d * DAY + 3600, 1, H100) for d in (0, 1, 10, 11)]
    ledger = compact(accrue(Ledger(), runners, now), now)
    rows = report(ledger, PRICES, by=(), since=since)
    assert sum((r.usage.gpu_hours for r in rows), D(0)) == gpu_hours


# --- money ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "product", "amount", "unpriced"),
    [
        (Usage(D(3600), D(7200), D(7200)), H100, D("6.08"), D(0)),
        (Usage(D(3600), D(3600), D(3600)), A100, D("1.54"), D(0)),
        (Usage(D(3600), D(3600), D(0)), "", D("0.04"), D(0)),
        (Usage(D(3600), D(0), D(3600)), "Tesla-T4", D(0), D(3600)),
    ],
)
def test_money(usage: Usage, product: str, amount: Decimal, unpriced: Decimal) -> None:
    assert money(usage, product, PRICES) == (amount, unpriced)


def test_default_gpu_price() -> None:
    prices = PriceTable(gpu_hour={}, default_gpu_hour=D("0.50"))
    assert money(Usage(D(1), D(0), D(7200)), "Tesla-T4", prices) == (D("1.00"), D(0))


def test_report_groups_and_orders_by_money() -> None:
    runners = [
        run("a", T0, T0 + 3600, 2, H100, repo="octo/ml", workflow="train", cpu="1"),
        run("b", T0, T0 + 3600, 1, A100, repo="octo/ml", workflow="eval", cpu="1"),
        run("c", T0, T0 + 3600, 0, "", repo="octo/web", workflow="lint", pool="cpu", cpu="1"),
    ]
    ledger = accrue(Ledger(), runners, T0 + 3600)
    by_repo = report(ledger, PRICES, by=("repository",))
    assert [(r.group, r.money, r.usage.gpu_hours, r.usage.runner_hours) for r in by_repo] == [
        (("octo/ml",), D("7.58"), 3, 2),
        (("octo/web",), D("0.04"), 0, 1),
    ]
    by_pool_wf = report(ledger, PRICES, by=("pool", "workflow"))
    assert [r.group for r in by_pool_wf] == [("gpu", "train"), ("gpu", "eval"), ("cpu", "lint")]
    with pytest.raises(ValueError, match="unknown dimensions"):
        report(ledger, PRICES, by=("team",))


def test_all_time_is_the_counter_values() -> None:
    ledger = accrue(Ledger(), [run("a", T0, T0 + 10, 1, H100)], T0 + 10)
    assert all_time(ledger) == {("octo/ml", "train", "gpu", H100): Usage(D(10), D(20), D(10))}


# --- the stored form --------------------------------------------------------------------------


def test_json_round_trip() -> None:
    ledger = accrue(Ledger(), [run("a", T0, None, 1, H100, cpu="0.25"), run("b", T0, T0 + 5)], T0 + 7)
    data = to_json(ledger)
    assert from_json(json.loads(json.dumps(data))) == ledger
    assert data["buckets"][0][:6] == [T0, HOUR, "octo/ml", "train", "gpu", ""]


@pytest.mark.parametrize(
    "data",
    [
        {"version": 2},
        {"version": 1, "buckets": [[1, 2, 3]]},
        {"version": 1, "buckets": [[0, 3600, "r", "w", "p", "", "x", "0", "0"]]},
        {"version": 1, "countedUntil": {"a": "soon"}},
    ],
)
def test_malformed_ledger_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="ledger"):
        from_json(data)


def test_bucket_key_dimension() -> None:
    key = BucketKey(0, 0, "r", "w", "p", "g")
    assert [key.dimension(d) for d in ("repository", "workflow", "pool", "gpu_product")] == [
        "r",
        "w",
        "p",
        "g",
    ]
