"""The ``runnerd controller`` flags of the cost ledger (docs/gpu-sizing.md, "Cost"), and the
:class:`~runnerd.controller.cost.CostSettings` they make.

The chart passes its ``cost.*`` values as these flags: ``--cost-currency``, ``--cost-cpu-hour``,
``--cost-gpu-hour PRODUCT=PRICE`` (repeatable, one per GPU product label value),
``--cost-default-gpu-hour`` (absent: GPU time of an unlisted product is unpriced),
``--cost-max-repositories``/``-workflows``/``-pools`` (the metrics' label cardinality) and
``--cost-ledger-interval`` (how often the leader writes the ledger; ``0`` turns the ledger off).
Bad prices are refused when the flags are parsed, with the flag's name.
"""

from __future__ import annotations

import argparse
import re
from decimal import Decimal

from runnerd.api import parse_go_duration
from runnerd.controller.cost import CostSettings
from runnerd.reconcile.cost import CardinalityLimits, PriceTable, prices_from_json

_CURRENCY = re.compile(r"^[A-Z]{3}$")


def _price(text: str) -> Decimal:
    try:
        return prices_from_json({"cpuHour": text}).cpu_hour
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a price (a number of 0 or more)") from None


def _product_price(text: str) -> tuple[str, Decimal]:
    product, sep, price = text.rpartition("=")
    if not sep or not product:
        raise argparse.ArgumentTypeError(f"{text!r} is not PRODUCT=PRICE (e.g. NVIDIA-H100-80GB-HBM3=3.00)")
    return product, _price(price)


def _currency(text: str) -> str:
    if not _CURRENCY.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 4217 code (e.g. USD)")
    return text


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return int(text)


def _interval(text: str) -> float:
    try:
        seconds = parse_go_duration(text).total_seconds()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration (like 30s, 1m): {text!r}") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the interval cannot be negative")
    return seconds


def add_cost_flags(p: argparse.ArgumentParser) -> None:
    """The cost flags on the controller's parser."""
    g = p.add_argument_group("cost ledger (docs/gpu-sizing.md)")
    g.add_argument("--cost-currency", type=_currency, default="USD", help="shown next to the money")
    g.add_argument(
        "--cost-cpu-hour", type=_price, default=Decimal(0), help="price of one requested core-hour"
    )
    g.add_argument(
        "--cost-gpu-hour",
        type=_product_price,
        action="append",
        default=[],
        metavar="PRODUCT=PRICE",
        help="price of one GPU-hour of a product (its node label value); repeatable",
    )
    g.add_argument(
        "--cost-default-gpu-hour",
        type=_price,
        default=None,
        help="price of a GPU-hour of unlisted products (default: such GPU time is unpriced)",
    )
    limits = CardinalityLimits()
    g.add_argument("--cost-max-repositories", type=_positive, default=limits.repository)
    g.add_argument("--cost-max-workflows", type=_positive, default=limits.workflow)
    g.add_argument("--cost-max-pools", type=_positive, default=limits.pool)
    g.add_argument(
        "--cost-ledger-interval",
        type=_interval,
        default=60.0,
        help="write the cost ledger this often, and when a runner finishes (0: no ledger)",
    )


def cost_settings(args: argparse.Namespace, namespace: str) -> CostSettings | None:
    """The ledger's settings from the flags (``None`` with ``--cost-ledger-interval 0``);
    ``namespace``: where the ledger ConfigMap lives (the controller's own)."""
    if args.cost_ledger_interval <= 0:
        return None
    prices = PriceTable(
        currency=args.cost_currency,
        cpu_hour=args.cost_cpu_hour,
        gpu_hour=dict(args.cost_gpu_hour),
        default_gpu_hour=args.cost_default_gpu_hour,
    )
    limits = CardinalityLimits(
        repository=args.cost_max_repositories, workflow=args.cost_max_workflows, pool=args.cost_max_pools
    )
    return CostSettings(
        namespace=namespace, prices=prices, limits=limits, interval_s=args.cost_ledger_interval
    )
