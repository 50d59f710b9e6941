"""The cost ledger's writer pass (fold), its ConfigMap form, the price table and --since durations."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
from decimal import Decimal
from typing import Any

import pytest

from runnerd.reconcile.cost import (
    DAY,
    HOUR,
    LEDGER_CONFIGMAP,
    LEDGER_KEY,
    PRICES_KEY,
    Ledger,
    PriceTable,
    RunnerFacts,
    Usage,
    decode_ledger,
    encode_ledger,
    fold,
    ledger_configmap,
    parse_duration,
    prices_from_json,
    prices_to_json,
    read_ledger_configmap,
)
from tests.unit.reconcile.sizingkit import A100, H100

D = Decimal
T0 = 1_796_000_400
PRICES = PriceTable(cpu_hour=D("0.04"), gpu_hour={H100: D("3.00"), A100: D("1.50")})
FACTS = [
    RunnerFacts("a", "octo/ml", "train", "gpu", T0, T0 + 1800, D(16), D(4), H100),
    RunnerFacts("b", "octo/ml", "eval", "gpu", T0 + 600, None, D(2), D(1), A100),
    RunnerFacts("c", "octo/web", "lint", "cpu", T0 + 60, T0 + 120, D("0.5")),
]


def total(ledger: Ledger) -> Usage:
    return sum(ledger.buckets.values(), Usage())


def test_fold_is_idempotent_and_order_free() -> None:
    now = T0 + 2400
    once = fold(Ledger(), FACTS, {"a", "b", "c"}, now)
    assert fold(once, FACTS, {"a", "b", "c"}, now) == once
    for perm in itertools.permutations(FACTS):
        assert fold(Ledger(), perm, {"a", "b", "c"}, now) == once
    assert total(once) == Usage(D(1800 + 1800 + 60), D(1800 * 16 + 1800 * 2 + 30), D(1800 * 4 + 1800))


def test_fold_after_a_restart_or_by_a_late_leader_counts_nothing_twice() -> None:
    ledger = fold(Ledger(), FACTS, {"a", "b", "c"}, T0 + 2400)
    reloaded = decode_ledger(encode_ledger(ledger))
    assert reloaded == ledger
    behind = fold(reloaded, FACTS, {"a", "b", "c"}, T0 + 1200)  # a new leader whose clock is behind
    assert total(behind) == total(ledger)
    later = fold(reloaded, FACTS, {"a", "b", "c"}, T0 + 3000)
    assert total(later).runner_seconds == total(ledger).runner_seconds + 600  # only b still runs


def test_fold_forgets_gone_pods_and_compacts() -> None:
    ledger = fold(Ledger(), FACTS, {"a", "b", "c"}, T0 + 2400)
    assert set(ledger.finished) == {"a", "c"}
    gone = fold(ledger, [], set(), T0 + 3 * DAY)
    assert (gone.finished, gone.counted_until) == ({}, {})
    assert {k.span for k in gone.buckets} == {DAY}
    assert total(gone) == total(ledger)


def test_configmap_round_trip() -> None:
    ledger = fold(Ledger(), FACTS, {"a", "b", "c"}, T0 + 2400)
    cm = ledger_configmap("arc", ledger, PRICES, resource_version="42")
    assert cm["metadata"] | {} == {
        "name": LEDGER_CONFIGMAP,
        "namespace": "arc",
        "resourceVersion": "42",
        "labels": {"app.kubernetes.io/component": "cost-ledger", "app.kubernetes.io/managed-by": "runnerd"},
    }
    assert json.loads(cm["data"][PRICES_KEY]) == {
        "currency": "USD",
        "cpuHour": "0.04",
        "gpuHour": {A100: "1.50", H100: "3.00"},
    }
    raw = gzip.decompress(base64.b64decode(cm["binaryData"][LEDGER_KEY]))
    assert json.loads(raw)["version"] == 1
    assert read_ledger_configmap(json.loads(json.dumps(cm))) == (ledger, PRICES)
    assert "resourceVersion" not in ledger_configmap("arc", ledger, PRICES)["metadata"]


def test_encoding_is_deterministic() -> None:
    ledger = fold(Ledger(), FACTS, {"a", "b", "c"}, T0 + 2400)
    assert encode_ledger(ledger) == encode_ledger(decode_ledger(encode_ledger(ledger)))


@pytest.mark.parametrize(
    ("cm", "expected"),
    [
        pytest.param({}, (Ledger(), None), id="empty"),
        pytest.param({"data": {}}, (Ledger(), None), id="no-prices"),
        pytest.param(
            {"data": {PRICES_KEY: '{"cpuHour": "1"}'}}, (Ledger(), PriceTable(cpu_hour=D(1))), id="prices"
        ),
    ],
)  # fmt: skip
def test_read_configmap_without_a_ledger(
    cm: dict[str, Any], expected: tuple[Ledger, PriceTable | None]
) -> None:
    assert read_ledger_configmap(cm) == expected


@pytest.mark.parametrize(
    ("cm", "message"),
    [
        pytest.param({"binaryData": {LEDGER_KEY: "not base64!"}}, "malformed cost ledger", id="base64"),
        pytest.param(
            {"binaryData": {LEDGER_KEY: base64.b64encode(b"plain").decode()}}, "malformed", id="gzip"
        ),
        pytest.param(
            {"binaryData": {LEDGER_KEY: base64.b64encode(gzip.compress(b"[1]")).decode()}},
            "not a JSON object", id="not-object",
        ),
        pytest.param(
            {"binaryData": {LEDGER_KEY: base64.b64encode(gzip.compress(b'{"version": 9}')).decode()}},
            "unknown cost ledger version 9", id="version",
        ),
        pytest.param({"data": {PRICES_KEY: "{"}}, "malformed prices.json", id="prices-json"),
        pytest.param({"data": {PRICES_KEY: '{"cpuHour": "-1"}'}}, "cpuHour", id="negative-price"),
    ],
)  # fmt: skip
def test_malformed_configmap_is_refused(cm: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_ledger_configmap(cm)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({}, PriceTable(), id="defaults"),
        pytest.param(
            {"currency": "EUR", "cpuHour": 0.04, "gpuHour": {H100: "3"}, "defaultGpuHour": 1},
            PriceTable("EUR", D("0.04"), {H100: D(3)}, D(1)), id="chart-values",
        ),
    ],
)  # fmt: skip
def test_prices_from_json(data: dict[str, Any], expected: PriceTable) -> None:
    assert prices_from_json(data) == expected
    assert prices_from_json(prices_to_json(expected)) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"cpuHour": "x"}, "cpuHour: 'x' is not a number"),
        ({"gpuHour": {H100: -3}}, "must be a number of 0 or more"),
        ({"gpuHour": [1]}, "expected a map"),
        ({"defaultGpuHour": "NaN"}, "defaultGpuHour"),
    ],
)
def test_bad_prices(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prices_from_json(data)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("24h", DAY), ("7d", 7 * DAY), ("1w", 7 * DAY), ("1h30m", HOUR + 1800), ("90s", 90),
     (" 2D ", 2 * DAY)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "1y", "-1h", "0h", "1h 30m", "1.5h"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
