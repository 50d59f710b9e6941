"""The chart's ``cost`` values: the schema accepts prices and refuses typos and negative prices, and
the defaults parse into the controller's price table (the same shape the ledger ConfigMap stores);
the chart passes them as the controller's ``--cost-*`` flags and grants the ledger ConfigMap by name."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from runnerd.cli_cost import cost_settings
from runnerd.controller.cost import CostSettings
from runnerd.reconcile.cost import LEDGER_CONFIGMAP, CardinalityLimits, PriceTable, prices_from_json
from tests.unit.chart.test_templates import container, parse, render

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


def test_the_chart_passes_the_prices_as_the_controllers_flags(helm_bin: Path, tmp_path: Path) -> None:
    values = """
cost:
  currency: EUR
  cpuHour: 0.04
  gpuHour: {NVIDIA-H100-80GB-HBM3: "3.00", NVIDIA-A100-SXM4-80GB: 1.5}
  defaultGpuHour: 0
  maxRepositories: 10
  maxWorkflows: 20
  maxPools: 5
"""
    args = parse(container(render(helm_bin, tmp_path, values=values).one("Deployment")))
    settings = cost_settings(args, "arc")
    assert settings == CostSettings(
        "arc",
        PriceTable(
            "EUR",
            Decimal("0.04"),
            {"NVIDIA-H100-80GB-HBM3": Decimal("3.00"), "NVIDIA-A100-SXM4-80GB": Decimal("1.5")},
            Decimal(0),  # a price of 0 is passed, not taken for "unpriced"
        ),
        CardinalityLimits(10, 20, 5),
    )


def test_by_default_nothing_is_priced_and_gpu_time_is_unpriced(helm_bin: Path, tmp_path: Path) -> None:
    c = container(render(helm_bin, tmp_path).one("Deployment"))
    assert cost_settings(parse(c), "arc") == CostSettings("arc")
    assert not [a for a in c["args"] if a.startswith("--cost-default-gpu-hour")]


def test_the_ledger_role_names_the_one_configmap(helm_bin: Path, tmp_path: Path) -> None:
    rendered = render(helm_bin, tmp_path, "scope.singleNamespace=true")
    role = rendered.one("Role", "rel-actions-runner-controller-cost-ledger")
    assert role["metadata"]["namespace"] == "arc"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [LEDGER_CONFIGMAP],
            "verbs": ["get", "update"],
        },
    ]
    binding = rendered.one("RoleBinding", "rel-actions-runner-controller-cost-ledger")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
