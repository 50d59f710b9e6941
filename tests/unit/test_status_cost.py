"""runnerd status --cost [--since DURATION]: the ledger ConfigMap as a table and as JSON (a fake API
server answers the one ``get``)."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
from decimal import Decimal
from typing import Any

import pytest

from runnerd import cli, status, status_cost
from runnerd.reconcile.cost import (
    LEDGER_CONFIGMAP,
    LEDGER_KEY,
    Ledger,
    PriceTable,
    RunnerFacts,
    fold,
    ledger_configmap,
)
from runnerd.runtime import Forbidden, NotFound
from runnerd.views.cost import cost_json, cost_rows, cost_table, dashboard_cost

D = Decimal
H100, V100 = "NVIDIA-H100-80GB-HBM3", "Tesla-V100"
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
T = int(NOW.timestamp())
PRICES = PriceTable(cpu_hour=D("0.04"), gpu_hour={H100: D(3)})
FACTS = [
    # The design's worked example: 30 min, 4 x H100, 16 cores -> 2 GPU-h, 8 core-h, 6.32.
    RunnerFacts(
        "train", "octo/ml", "train", "gpu-runners", T - 3 * 3600, T - 3 * 3600 + 1800, D(16), D(4), H100
    ),
    RunnerFacts("old", "octo/web", "lint", "cpu-runners", T - 10 * 86400, T - 10 * 86400 + 3600, D(2)),
    RunnerFacts("v", "octo/ml", "eval", "gpu-runners", T - 3600, T - 1800, D(1), D(1), V100),
]
LEDGER = fold(Ledger(), FACTS, set(), T)


def test_table_rows_totals_and_unpriced_gpus() -> None:
    headers, rows = cost_table(cost_rows(LEDGER, PRICES, since=None), PRICES)
    assert headers == [
        *("repository", "workflow", "pool", "runner-h", "cpu-h", "gpu-h", "cost (USD)", "unpriced gpu-h"),
    ]
    assert rows == [
        ["octo/ml", "train", "gpu-runners", "0.50", "8.00", "2.00", "6.32", ""],
        ["octo/web", "lint", "cpu-runners", "1.00", "2.00", "0.00", "0.08", ""],
        ["octo/ml", "eval", "gpu-runners", "0.50", "0.50", "0.50", "0.02", "0.50"],
        ["TOTAL", "", "", "2.00", "10.50", "2.50", "6.42", "0.50"],
    ]


def test_since_keeps_the_window_and_no_prices_means_no_money() -> None:
    rows = cost_rows(LEDGER, None, since=T - 86400)
    headers, table_rows = cost_table(rows, None)
    assert headers[6] == "cost (-)"
    assert [r[:3] for r in table_rows] == [
        ["octo/ml", "train", "gpu-runners"], ["octo/ml", "eval", "gpu-runners"], ["TOTAL", "", ""]
    ]  # fmt: skip
    assert {r[6] for r in table_rows} == {"-"}
    assert cost_table([], PRICES)[1] == []


def test_json_is_exact() -> None:
    doc = json.loads(cost_json(cost_rows(LEDGER, PRICES, since=T - 86400), PRICES, since=T - 86400))
    assert doc["since"] == T - 86400
    assert doc["currency"] == "USD"
    train = doc["rows"][0]
    assert (train["repository"], train["workflow"], train["pool"]) == ("octo/ml", "train", "gpu-runners")
    assert D(train["gpuHours"]) == 2
    assert D(train["cost"]) == D("6.32")
    assert D(doc["rows"][1]["unpricedGpuHours"]) == D("0.5")


@pytest.mark.parametrize(
    ("argv", "since", "ledger_namespace"),
    [
        (["status", "--cost"], None, "actions-runner-system"),
        (["status", "--cost", "--since", "7d", "--ledger-namespace", "arc"], 7 * 86400, "arc"),
        (["status", "--cost", "--since", "1h30m", "-o", "json"], 5400, "actions-runner-system"),
    ],
)
def test_flags(argv: list[str], since: int | None, ledger_namespace: str) -> None:
    args = cli.build_parser().parse_args(argv)
    assert (args.cost, args.since, args.ledger_namespace) == (True, since, ledger_namespace)


def test_a_bad_duration_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["status", "--cost", "--since", "a week"])
    assert "not a duration: 'a week'" in capsys.readouterr().err


class FakeKube:
    def __init__(self, answer: dict[str, Any] | Exception) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str | None]] = []

    async def __aenter__(self) -> FakeKube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def get(self, resource: Any, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        self.asked.append((f"{resource.plural}/{name}", namespace))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def _run_async(
    kube: FakeKube, monkeypatch: pytest.MonkeyPatch, *, at: dt.datetime | None = None, **over: Any
) -> tuple[int, str]:
    """``runnerd status --cost`` (through ``run_status``; ``at``: straight to ``run_cost`` at that time)."""

    async def connect(*_a: Any, **_k: Any) -> FakeKube:
        return kube

    monkeypatch.setattr(status_cost.KubeClient, "connect", connect)
    args = argparse.Namespace(
        kubeconfig=None, context=None, namespace=None, all_namespaces=False, output=None, metrics_url=None,
        cost=True, since=None, ledger_namespace="arc",
    )  # fmt: skip
    for k, v in over.items():
        setattr(args, k, v)
    out = io.StringIO()
    if at is not None:
        return await status_cost.run_cost(args, out, at, status.table), out.getvalue()
    code = await status.run_status(args, {}, out)
    return code, out.getvalue()


async def test_prints_the_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FakeKube(ledger_configmap("arc", LEDGER, PRICES))
    code, text = await _run_async(kube, monkeypatch)
    assert code == 0
    assert kube.asked == [(f"configmaps/{LEDGER_CONFIGMAP}", "arc")]
    lines = text.splitlines()
    assert lines[0] == "COST (all time)"
    assert lines[1].split()[:3] == ["REPOSITORY", "WORKFLOW", "POOL"]
    assert lines[2].split() == ["octo/ml", "train", "gpu-runners", "0.50", "8.00", "2.00", "6.32"]
    assert lines[-1].split()[0] == "TOTAL"


async def test_since_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FakeKube(ledger_configmap("arc", LEDGER, PRICES))
    code, text = await _run_async(kube, monkeypatch, at=NOW, since=86400)
    assert code == 0
    assert text.splitlines()[0] == "COST (since 2026-11-30 12:00 UTC)"
    assert "octo/web" not in text
    code, text = await _run_async(kube, monkeypatch, at=NOW, since=86400, output="json")
    assert (code, json.loads(text)["since"]) == (0, T - 86400)


async def test_a_ledger_without_prices_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    cm = ledger_configmap("arc", LEDGER, PRICES)
    del cm["data"]
    code, text = await _run_async(FakeKube(cm), monkeypatch)
    assert code == 0
    assert "note: the ledger has no prices yet" in text


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (NotFound("configmaps not found"), "no cost ledger yet (arc/runnerd-cost-ledger"),
        ({"binaryData": {LEDGER_KEY: "garbage"}}, "arc/runnerd-cost-ledger: malformed cost ledger"),
        (Forbidden("forbidden"), "cannot read arc/runnerd-cost-ledger: forbidden"),
    ],
)
async def test_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], answer: Any, message: str
) -> None:
    code, text = await _run_async(FakeKube(answer), monkeypatch)
    assert (code, text) == (1, "")
    assert message in capsys.readouterr().err


def test_dashboard_cost_windows() -> None:
    model = dashboard_cost(LEDGER, PRICES, now=T)
    assert model["currency"] == "USD"
    assert model["windows"] == ["24h", "7d", "30d"]
    rows = {(r["repository"], r["workflow"]): r for r in model["rows"]}
    assert next(iter(rows)) == ("octo/ml", "train")  # most expensive first
    train, lint = rows[("octo/ml", "train")], rows[("octo/web", "lint")]
    assert (train["gpuHours24h"], train["cost24h"], train["cost30d"]) == (2.0, 6.32, 6.32)
    assert (lint["cost24h"], lint["cost7d"], lint["cost30d"]) == (None, None, 0.08) or (
        lint["cost24h"],
        lint["cost7d"],
        lint["cost30d"],
    ) == (0.0, 0.0, 0.08)
    assert dashboard_cost(LEDGER, None, now=T)["rows"][0]["cost30d"] is None
