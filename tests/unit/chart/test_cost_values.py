"""The chart's ``cost`` values: the schema accepts prices and refuses typos and negative prices, and
the defaults parse into the controller's price table (the same shape the ledger ConfigMap stores)."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from runnerd.reconcile.cost import PriceTable, prices_from_json

CHART = Path(__file__).resolve().parents[3] / "charts" / "actions-runner-controller"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())


def errors(cost: dict[str, Any]) -> list[str]:
    values = copy.deepcopy(DEFAULTS)
    values["cost"] = cost
    return [e.message for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(values)]


def test_defaults_are_valid_and_price_nothing() -> None:
    assert errors(DEFAULTS["cost"]) == []
    assert prices_from_json(DEFAULTS["cost"]) == PriceTable()


@pytest.mark.parametrize(
    "cost",
    [
        {"currency": "EUR", "cpuHour": 0.04, "gpuHour": {"NVIDIA-H100-80GB-HBM3": 3}},
        {"cpuHour": "0.04", "gpuHour": {"NVIDIA-A100-SXM4-80GB": "1.50"}, "defaultGpuHour": 2},
        {"maxRepositories": 10, "maxWorkflows": 20, "maxPools": 5},
    ],
)
def test_good_prices(cost: dict[str, Any]) -> None:
    assert errors(cost) == []
    prices_from_json(cost)


@pytest.mark.parametrize(
    ("cost", "message"),
    [
        ({"cpuHour": -1}, "-1 is less than the minimum of 0"),
        ({"gpuHour": {"NVIDIA-H100-80GB-HBM3": "three"}}, "'three' does not match"),
        ({"currency": "usd"}, "'usd' does not match"),
        ({"gpuHours": {}}, "Additional properties are not allowed ('gpuHours' was unexpected)"),
        ({"maxPools": 0}, "0 is less than the minimum of 1"),
    ],
)
def test_bad_prices(cost: dict[str, Any], message: str) -> None:
    assert any(message in e for e in errors(cost)), errors(cost)


def test_chart_prices_become_the_price_table() -> None:
    cost = {
        "currency": "EUR",
        "cpuHour": 0.04,
        "gpuHour": {"NVIDIA-H100-80GB-HBM3": "3.00"},
        "defaultGpuHour": 1,
    }
    assert prices_from_json(cost) == PriceTable(
        "EUR", Decimal("0.04"), {"NVIDIA-H100-80GB-HBM3": Decimal("3.00")}, Decimal(1)
    )
