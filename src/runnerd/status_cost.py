"""``runnerd status --cost [--since DURATION]``: the cost ledger, read from the ConfigMap the
controller keeps it in (docs/gpu-sizing.md, "Cost"), as a table or JSON (:mod:`runnerd.views.cost`).

It needs only ``get`` on that one ConfigMap; prices come from the ledger itself (the leader copies
the chart's ``cost`` values into it), so the CLI needs no chart values and no Prometheus.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

import aiohttp

from runnerd.kube.client import KubeClient
from runnerd.kube.config import ConfigError
from runnerd.kube.resources import CONFIGMAPS
from runnerd.reconcile.cost import LEDGER_CONFIGMAP, parse_duration, read_ledger_configmap
from runnerd.runtime import ApiError, NotFound, redact
from runnerd.views.cost import cost_json, cost_rows, cost_table

CONTROLLER_NAMESPACE = "actions-runner-system"
Table = Callable[[Sequence[str], Iterable[Sequence[object]]], str]


def add_cost_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cost",
        action="store_true",
        help="runner-, CPU- and GPU-hours and money per repository, workflow and pool, from the cost "
        f"ledger (ConfigMap {LEDGER_CONFIGMAP})",
    )
    p.add_argument(
        "--since",
        type=_since,
        default=None,
        metavar="DURATION",
        help="with --cost: only the last DURATION (30m, 24h, 7d); an hour's resolution for the last "
        "48 h, a day's before",
    )
    p.add_argument(
        "--ledger-namespace",
        default=CONTROLLER_NAMESPACE,
        help=f"with --cost: the controller's namespace, where the ledger is (default {CONTROLLER_NAMESPACE})",
    )


def _since(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def run_cost(args: argparse.Namespace, out: TextIO, now: dt.datetime, table: Table) -> int:
    """``runnerd status --cost``: the ledger ConfigMap as a table (or JSON)."""
    where = f"{args.ledger_namespace}/{LEDGER_CONFIGMAP}"
    try:
        async with await KubeClient.connect(args.kubeconfig, context=args.context) as kube:
            cm = await kube.get(CONFIGMAPS, LEDGER_CONFIGMAP, namespace=args.ledger_namespace)
        ledger, prices = read_ledger_configmap(cm)
    except NotFound:
        print(f"runnerd status: no cost ledger yet ({where}: the controller writes it)", file=sys.stderr)
        return 1
    except (ConfigError, ValueError) as exc:
        print(f"runnerd status: {where}: {exc}", file=sys.stderr)
        return 1
    except (ApiError, aiohttp.ClientError, OSError) as exc:
        print(
            f"runnerd status: cannot read {where}: {redact(str(exc)) or type(exc).__name__}", file=sys.stderr
        )
        return 1
    since = None if args.since is None else int(now.timestamp()) - args.since
    rows = cost_rows(ledger, prices, since=since)
    if args.output == "json":
        out.write(cost_json(rows, prices, since=since))
        return 0
    window = (
        "all time"
        if since is None
        else f"since {dt.datetime.fromtimestamp(since, dt.UTC):%Y-%m-%d %H:%M} UTC"
    )
    out.write(f"COST ({window})\n")
    out.write((table(*cost_table(rows, prices)) if rows else "none") + "\n")
    if prices is None:
        out.write("note: the ledger has no prices yet (set cost.* in the chart's values)\n")
    return 0
