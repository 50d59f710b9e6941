"""``runnerd status --cost``: the cost ledger as a table and as JSON (pure; the CLI reads the ledger
ConfigMap, this module only shapes what it holds).

Rows are :func:`runnerd.reconcile.cost.report` grouped by repository, workflow and pool (most
expensive first), with hours rounded for the terminal and exact decimal strings in JSON. Money needs
the price table the leader copies into the ledger ConfigMap; without one (no writer has run with
prices yet) the money column says ``-``. GPU time of a product without a price is shown as unpriced,
never as free.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from runnerd.reconcile.cost import HOUR, CostRow, Ledger, PriceTable, report

GROUP_BY = ("repository", "workflow", "pool")


def _hours(seconds: Decimal) -> str:
    return f"{seconds / HOUR:.2f}"


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def cost_rows(ledger: Ledger, prices: PriceTable | None, *, since: int | None) -> list[CostRow]:
    return report(ledger, prices or PriceTable(), GROUP_BY, since)


def cost_table(rows: Sequence[CostRow], prices: PriceTable | None) -> tuple[list[str], list[list[object]]]:
    """Headers and rows (with a TOTAL row) for a kubectl-style table."""
    currency = prices.currency if prices is not None else "-"
    headers = [*GROUP_BY, "runner-h", "cpu-h", "gpu-h", f"cost ({currency})", "unpriced gpu-h"]
    out: list[list[object]] = []
    totals = [Decimal(0)] * 5
    for r in rows:
        u = r.usage
        values = [u.runner_seconds, u.cpu_seconds, u.gpu_seconds, r.money, r.unpriced_gpu_seconds]
        totals = [a + b for a, b in zip(totals, values, strict=True)]
        out.append([*r.group, *_cells(values, prices)])
    if rows:
        out.append(["TOTAL", "", "", *_cells(totals, prices)])
    return headers, out


def _cells(values: Sequence[Decimal], prices: PriceTable | None) -> list[object]:
    runner_s, cpu_s, gpu_s, money, unpriced = values
    cost = _money(money) if prices is not None else "-"
    return [_hours(runner_s), _hours(cpu_s), _hours(gpu_s), cost, _hours(unpriced) if unpriced else ""]


def cost_json(rows: Sequence[CostRow], prices: PriceTable | None, *, since: int | None) -> str:
    """Exact values: hours and money as decimal strings, the window start in epoch seconds."""
    items: list[dict[str, Any]] = [
        {
            **dict(zip(GROUP_BY, r.group, strict=True)),
            "runnerHours": str(r.usage.runner_seconds / HOUR),
            "cpuHours": str(r.usage.cpu_seconds / HOUR),
            "gpuHours": str(r.usage.gpu_seconds / HOUR),
            "cost": str(r.money) if prices is not None else None,
            "unpricedGpuHours": str(r.unpriced_gpu_seconds / HOUR),
        }
        for r in rows
    ]
    doc = {"since": since, "currency": prices.currency if prices else None, "rows": items}
    return json.dumps(doc, indent=2) + "\n"
