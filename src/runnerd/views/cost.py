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

from runnerd.reconcile.cost import DAY, HOUR, CostRow, Ledger, PriceTable, report

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


DASHBOARD_WINDOWS: tuple[tuple[str, int], ...] = (("24h", DAY), ("7d", 7 * DAY), ("30d", 30 * DAY))
"""The dashboard's "Cost" table columns (docs/gpu-sizing.md): money per window."""
MAX_DASHBOARD_ROWS = 50


def dashboard_cost(ledger: Ledger, prices: PriceTable | None, *, now: int) -> dict[str, Any]:
    """The dashboard's "Cost" table model: per repository, workflow and pool, GPU-hours and money
    over the last 24 h, 7 d and 30 d (the 30-day order, most expensive first, at most
    :data:`MAX_DASHBOARD_ROWS` rows), served by ``web/dashboard.py`` from the ledger the leader
    last wrote."""
    per_window = {
        name: {r.group: r for r in cost_rows(ledger, prices, since=now - span)}
        for name, span in DASHBOARD_WINDOWS
    }
    order = list(per_window[DASHBOARD_WINDOWS[-1][0]].values())[:MAX_DASHBOARD_ROWS]
    rows = []
    for r in order:
        row: dict[str, Any] = dict(zip(GROUP_BY, r.group, strict=True))
        for name, _span in DASHBOARD_WINDOWS:
            hit = per_window[name].get(r.group)
            row[f"gpuHours{name}"] = float(hit.usage.gpu_seconds / HOUR) if hit else 0.0
            row[f"cost{name}"] = None if prices is None else float(hit.money) if hit else 0.0
        rows.append(row)
    return {
        "currency": prices.currency if prices else None,
        "windows": [n for n, _ in DASHBOARD_WINDOWS],
        "rows": rows,
    }
