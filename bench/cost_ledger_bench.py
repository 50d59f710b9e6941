"""Benchmark: one cost ledger pass (docs/gpu-sizing.md, "Cost") on ledgers of growing size.

A pass of the leader's writer reads the ledger ConfigMap, decodes it (base64, gunzip, JSON), folds
the runners' facts in (``reconcile.cost.fold``: accrue, forget, compact) and encodes it again; the
decoding, folding and encoding run in a worker thread (``controller/cost.py``). This measures that
CPU work and the stored size, for ledgers of ``C`` active repository/workflow/pool combinations
accrued every hour for 48 hours (``C x 48`` hourly buckets; the design's worst case is 500
combinations, 24,000 buckets), with 200 runners running at the time of the pass.

Prints a table and a JSON line.  Run:  .venv/bin/python bench/cost_ledger_bench.py
(``--repeat N``: passes per size, the median is reported.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from decimal import Decimal

from runnerd.reconcile.cost import (
    LEDGER_KEY,
    CardinalityLimits,
    Ledger,
    PriceTable,
    RunnerFacts,
    fold,
    ledger_configmap,
    read_ledger_configmap,
)

T0 = 1_796_000_400
HOURS = 48
LIMITS = CardinalityLimits(repository=500, workflow=500, pool=500)


def facts(combos: int, hour: int, *, running: bool = False) -> list[RunnerFacts]:
    start = T0 + hour * 3600
    return [
        RunnerFacts(
            f"{'live' if running else hour}-{i}",
            f"octo/repo-{i}",
            f"wf-{i}",
            f"pool-{i % 50}",
            start,
            None if running else start + 1800,
            Decimal(4),
            Decimal(1),
            "NVIDIA-H100-80GB-HBM3",
        )
        for i in range(combos)
    ]


def ledger_of(combos: int) -> Ledger:
    ledger = Ledger()
    for hour in range(HOURS):
        ledger = fold(ledger, facts(combos, hour), set(), T0 + hour * 3600 + 3599, LIMITS)
    return ledger


def one_pass(configmap: dict[str, object], running: list[RunnerFacts], now: int) -> float:
    started = time.perf_counter()
    ledger, prices = read_ledger_configmap(configmap)
    new = fold(ledger, running, {f.uid for f in running}, now, LIMITS)
    ledger_configmap("ns", new, prices or PriceTable())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for combos in (20, 100, 500):
        ledger = ledger_of(combos)
        configmap = ledger_configmap("ns", ledger, PriceTable())
        running = facts(min(combos, 200), HOURS, running=True)
        now = T0 + HOURS * 3600 + 60
        times = [one_pass(configmap, running, now) for _ in range(args.repeat)]
        stored = len(str(configmap["binaryData"][LEDGER_KEY]))
        rows.append(
            {
                "combinations": combos,
                "buckets": len(ledger.buckets),
                "pass_s": statistics.median(times),
                "stored_bytes": stored,
            }
        )
    print(f"{'combinations':>12} {'buckets':>8} {'pass (s)':>9} {'stored (KiB)':>13}")
    for r in rows:
        print(
            f"{r['combinations']:>12} {r['buckets']:>8} {r['pass_s']:>9.3f} {r['stored_bytes'] / 1024:>13.1f}"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
