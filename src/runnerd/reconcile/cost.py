"""Cost view: runner-seconds, CPU core-seconds and GPU-seconds per repository, workflow, pool and GPU
product, accrued from runner start/stop facts into a ledger, and turned into money by a price table.

The ledger is the durable state (docs/gpu-sizing.md, "Cost": the leader keeps it in a ConfigMap, so
totals survive restarts and leader changes). This module is its pure arithmetic:

* :func:`accrue` adds, for every runner, the time between what the ledger already counted for it
  (``counted_until``; its start the first time) and its finish (or ``now`` while it runs). A runner
  that finished is remembered in ``finished`` and never counted again, so **replaying the same facts,
  an older ``now`` or a ledger reloaded after a restart never counts a second twice**.
* Time is split into hourly buckets; :func:`compact` folds hourly buckets older than
  ``hourly_for_s`` into daily ones and daily ones older than ``daily_for_s`` into one ``earlier``
  bucket, so the ledger stays small and every all-time total is kept exactly.
* **Bounded label cardinality**: the first ``CardinalityLimits`` values of each dimension seen are
  admitted (and remembered in the ledger, so the set survives restarts); later new values are counted
  under ``(other)``. Metrics built from :func:`all_time` therefore have a bounded label set.
* :func:`report` sums buckets overlapping ``[since, now]`` (a bucket counts whole: the resolution is
  an hour for the last ``hourly_for_s``, a day before) grouped by any dimensions, with money.
* :func:`fold` is one writer pass (accrue, forget, compact); :func:`ledger_configmap` and
  :func:`read_ledger_configmap` are the stored form: the ConfigMap :data:`LEDGER_CONFIGMAP` with the
  ledger gzip-compressed (``binaryData``) and the price table as plain JSON (``data``), so
  ``runnerd status --cost`` prices without the chart's values. Encoding is deterministic (gzip mtime
  0, sorted keys): an unchanged ledger encodes to the same bytes.

Times are whole seconds since the epoch (Kubernetes timestamps have second resolution).
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

HOUR, DAY = 3600, 86400
OTHER = "(other)"
DIMENSIONS = ("repository", "workflow", "pool", "gpu_product")
_ZERO = Decimal(0)


@dataclass(frozen=True)
class RunnerFacts:
    """One runner pod, as the pod watch sees it."""

    uid: str
    repository: str
    workflow: str
    pool: str
    started_at: int
    finished_at: int | None = None
    cpu: Decimal = _ZERO
    """Cores requested."""
    gpus: Decimal = _ZERO
    """GPU devices (or MIG slices) requested."""
    gpu_product: str = ""
    """The node's GPU product label value ("" for none); MIG slices are priced as the product's."""


@dataclass(frozen=True)
class Usage:
    runner_seconds: Decimal = _ZERO
    cpu_seconds: Decimal = _ZERO
    gpu_seconds: Decimal = _ZERO

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.runner_seconds + other.runner_seconds,
            self.cpu_seconds + other.cpu_seconds,
            self.gpu_seconds + other.gpu_seconds,
        )

    @property
    def runner_hours(self) -> Decimal:
        return self.runner_seconds / HOUR

    @property
    def gpu_hours(self) -> Decimal:
        return self.gpu_seconds / HOUR


@dataclass(frozen=True, order=True)
class BucketKey:
    start: int
    """Bucket start (0 with span 0: everything before the daily buckets)."""
    span: int
    repository: str
    workflow: str
    pool: str
    gpu_product: str

    def dimension(self, name: str) -> str:
        value: str = getattr(self, name)
        return value


@dataclass(frozen=True)
class CardinalityLimits:
    repository: int = 100
    workflow: int = 200
    pool: int = 50
    gpu_product: int = 20


@dataclass(frozen=True)
class Ledger:
    buckets: Mapping[BucketKey, Usage] = field(default_factory=dict)
    counted_until: Mapping[str, int] = field(default_factory=dict)
    """Running runners: uid -> the second up to which they are counted."""
    finished: Mapping[str, int] = field(default_factory=dict)
    """Fully counted runners: uid -> finish time (kept until the pod is gone, see :func:`forget`)."""
    admitted: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Dimension -> the values admitted as metric labels, first come first served."""


# --- accrual --------------------------------------------------------------------------------------


def _admit(admitted: dict[str, tuple[str, ...]], dim: str, value: str, limit: int) -> str:
    values = admitted.get(dim, ())
    if value in values:
        return value
    if len(values) < limit:
        admitted[dim] = (*values, value)
        return value
    return OTHER


def _split_hours(start: int, end: int) -> Iterable[tuple[int, int]]:
    """``(hour start, seconds)`` pieces of ``[start, end)``."""
    t = start
    while t < end:
        hour = t - t % HOUR
        stop = min(end, hour + HOUR)
        yield hour, stop - t
        t = stop


def accrue(
    ledger: Ledger, runners: Iterable[RunnerFacts], now: int, limits: CardinalityLimits | None = None
) -> Ledger:
    """The ledger with every runner counted up to its finish or ``now`` (idempotent)."""
    limits = limits or CardinalityLimits()
    buckets = dict(ledger.buckets)
    counted = dict(ledger.counted_until)
    finished = dict(ledger.finished)
    admitted = dict(ledger.admitted)
    for r in sorted(runners, key=lambda r: r.uid):
        if r.uid in finished:
            continue
        begin = counted.get(r.uid, r.started_at)
        end = r.finished_at if r.finished_at is not None else now
        if end > begin:
            labels = {dim: _admit(admitted, dim, getattr(r, dim), getattr(limits, dim)) for dim in DIMENSIONS}
            for hour, seconds in _split_hours(begin, end):
                key = BucketKey(hour, HOUR, **labels)
                s = Decimal(seconds)
                buckets[key] = buckets.get(key, Usage()) + Usage(s, s * r.cpu, s * r.gpus)
        if r.finished_at is not None:
            finished[r.uid] = r.finished_at
            counted.pop(r.uid, None)
        elif end > begin:
            counted[r.uid] = end
    return Ledger(buckets, counted, finished, admitted)


def forget(ledger: Ledger, live_uids: Collection[str], now: int, keep_s: int = HOUR) -> Ledger:
    """Drop the bookkeeping of runners whose pods are gone (finished ones after ``keep_s``).

    A running runner whose pod vanished stays counted up to its last accrual.
    """
    finished = {u: t for u, t in ledger.finished.items() if u in live_uids or now - t < keep_s}
    counted = {u: t for u, t in ledger.counted_until.items() if u in live_uids}
    return replace(ledger, finished=finished, counted_until=counted)


def compact(ledger: Ledger, now: int, hourly_for_s: int = 2 * DAY, daily_for_s: int = 35 * DAY) -> Ledger:
    """Fold old hourly buckets into daily ones and old daily ones into ``earlier``; sums are kept."""
    out: dict[BucketKey, Usage] = {}
    for key, usage in ledger.buckets.items():
        new = key
        if key.span == HOUR and key.start < now - hourly_for_s:
            new = replace(key, start=key.start - key.start % DAY, span=DAY)
        if new.span == DAY and new.start < now - daily_for_s:
            new = replace(new, start=0, span=0)
        out[new] = out.get(new, Usage()) + usage
    return replace(ledger, buckets=out)


# --- reports and money ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceTable:
    currency: str = "USD"
    cpu_hour: Decimal = _ZERO
    """Price of one requested core for an hour."""
    gpu_hour: Mapping[str, Decimal] = field(default_factory=dict)
    """GPU product label value -> price of one GPU for an hour."""
    default_gpu_hour: Decimal | None = None
    """For products not in ``gpu_hour``; ``None``: such GPU time is reported as unpriced."""

    def gpu_price(self, product: str) -> Decimal | None:
        return self.gpu_hour.get(product, self.default_gpu_hour)


@dataclass(frozen=True)
class CostRow:
    group: tuple[str, ...]
    usage: Usage
    money: Decimal
    unpriced_gpu_seconds: Decimal = _ZERO


def money(usage: Usage, product: str, prices: PriceTable) -> tuple[Decimal, Decimal]:
    """``(money, unpriced GPU-seconds)`` of ``usage`` on GPUs of ``product``."""
    amount = usage.cpu_seconds * prices.cpu_hour / HOUR
    gpu_price = prices.gpu_price(product)
    if usage.gpu_seconds and gpu_price is None:
        return amount, usage.gpu_seconds
    return amount + usage.gpu_seconds * (gpu_price or _ZERO) / HOUR, _ZERO


def _overlaps(key: BucketKey, since: int | None) -> bool:
    if since is None:
        return True
    return key.span > 0 and key.start + key.span > since


def report(
    ledger: Ledger, prices: PriceTable, by: Sequence[str] = ("repository",), since: int | None = None
) -> list[CostRow]:
    """Usage and money grouped by ``by`` (names from :data:`DIMENSIONS`), most expensive first."""
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown dimensions {unknown}; choose from {list(DIMENSIONS)}")
    usage: dict[tuple[str, ...], Usage] = {}
    cash: dict[tuple[str, ...], tuple[Decimal, Decimal]] = {}
    for key, u in ledger.buckets.items():
        if not _overlaps(key, since):
            continue
        group = tuple(key.dimension(d) for d in by)
        usage[group] = usage.get(group, Usage()) + u
        m, unpriced = money(u, key.gpu_product, prices)
        before = cash.get(group, (_ZERO, _ZERO))
        cash[group] = (before[0] + m, before[1] + unpriced)
    rows = [CostRow(g, usage[g], cash[g][0], cash[g][1]) for g in usage]
    return sorted(rows, key=lambda r: (-r.money, -r.usage.gpu_seconds, -r.usage.runner_seconds, r.group))


def all_time(ledger: Ledger) -> dict[tuple[str, str, str, str], Usage]:
    """All-time usage per (repository, workflow, pool, gpu_product): the values of the counters."""
    out: dict[tuple[str, str, str, str], Usage] = {}
    for key, u in ledger.buckets.items():
        labels = (key.repository, key.workflow, key.pool, key.gpu_product)
        out[labels] = out.get(labels, Usage()) + u
    return out


# --- the stored form --------------------------------------------------------------------------


def to_json(ledger: Ledger) -> dict[str, Any]:
    """A JSON-safe form (numbers as strings, so no precision is lost); ``from_json`` inverts it."""
    return {
        "version": 1,
        "buckets": [
            [k.start, k.span, k.repository, k.workflow, k.pool, k.gpu_product, *(str(v) for v in _values(u))]
            for k, u in sorted(ledger.buckets.items())
        ],
        "countedUntil": dict(sorted(ledger.counted_until.items())),
        "finished": dict(sorted(ledger.finished.items())),
        "admitted": {k: list(v) for k, v in sorted(ledger.admitted.items())},
    }


def _values(u: Usage) -> tuple[Decimal, Decimal, Decimal]:
    return u.runner_seconds, u.cpu_seconds, u.gpu_seconds


def from_json(data: Mapping[str, Any]) -> Ledger:
    """Parse :func:`to_json`'s form; raises ``ValueError`` on anything else."""
    if data.get("version") != 1:
        raise ValueError(f"unknown cost ledger version {data.get('version')!r}")
    try:
        buckets: dict[BucketKey, Usage] = {}
        for row in data.get("buckets", []):
            start, span, repo, wf, pool, product, rs, cs, gs = row
            buckets[BucketKey(int(start), int(span), str(repo), str(wf), str(pool), str(product))] = Usage(
                Decimal(rs), Decimal(cs), Decimal(gs)
            )
        return Ledger(
            buckets,
            {str(k): int(v) for k, v in data.get("countedUntil", {}).items()},
            {str(k): int(v) for k, v in data.get("finished", {}).items()},
            {str(k): tuple(str(x) for x in v) for k, v in data.get("admitted", {}).items()},
        )
    except (TypeError, ValueError, ArithmeticError) as e:
        raise ValueError(f"malformed cost ledger: {e}") from None


# --- one writer pass, the ConfigMap form and durations ------------------------------------------

LEDGER_CONFIGMAP = "runnerd-cost-ledger"
LEDGER_KEY = "ledger.json.gz"
PRICES_KEY = "prices.json"


def fold(
    ledger: Ledger,
    runners: Iterable[RunnerFacts],
    live_uids: Collection[str],
    now: int,
    limits: CardinalityLimits | None = None,
) -> Ledger:
    """One writer pass: :func:`accrue`, then :func:`forget` what is gone, then :func:`compact`.

    Idempotent: ``fold(fold(l, f, u, t), f, u, t) == fold(l, f, u, t)``, so a writer that lost a
    conditional write can reread the ledger and fold the same facts again."""
    return compact(forget(accrue(ledger, runners, now, limits), live_uids, now), now)


def prices_to_json(prices: PriceTable) -> dict[str, Any]:
    out: dict[str, Any] = {
        "currency": prices.currency,
        "cpuHour": str(prices.cpu_hour),
        "gpuHour": {k: str(v) for k, v in sorted(prices.gpu_hour.items())},
    }
    if prices.default_gpu_hour is not None:
        out["defaultGpuHour"] = str(prices.default_gpu_hour)
    return out


def _price(value: Any, where: str) -> Decimal:
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{where}: {value!r} is not a number") from None
    if not price.is_finite() or price < 0:
        raise ValueError(f"{where}: {value!r} must be a number of 0 or more")
    return price


def prices_from_json(data: Mapping[str, Any]) -> PriceTable:
    """Parse :func:`prices_to_json`'s form (also the chart's ``cost`` values); ``ValueError`` if bad."""
    gpu = data.get("gpuHour") or {}
    if not isinstance(gpu, Mapping):
        raise ValueError(f"gpuHour: expected a map of product -> price, got {gpu!r}")
    default = data.get("defaultGpuHour")
    return PriceTable(
        currency=str(data.get("currency") or "USD"),
        cpu_hour=_price(data.get("cpuHour", 0), "cpuHour"),
        gpu_hour={str(k): _price(v, f"gpuHour[{k}]") for k, v in gpu.items()},
        default_gpu_hour=None if default is None else _price(default, "defaultGpuHour"),
    )


def encode_ledger(ledger: Ledger) -> str:
    """Base64 of the gzip-compressed JSON (deterministic), as ``binaryData`` holds it."""
    raw = json.dumps(to_json(ledger), separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode()


def decode_ledger(text: str) -> Ledger:
    try:
        raw = gzip.decompress(base64.b64decode(text, validate=True))
        data = json.loads(raw)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"malformed cost ledger: {e}") from None
    if not isinstance(data, Mapping):
        raise ValueError("malformed cost ledger: not a JSON object")
    return from_json(data)


def ledger_configmap(
    namespace: str,
    ledger: Ledger,
    prices: PriceTable,
    *,
    name: str = LEDGER_CONFIGMAP,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """The ConfigMap holding ``ledger`` and ``prices`` (``resource_version``: the write's precondition)."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/component": "cost-ledger", "app.kubernetes.io/managed-by": "runnerd"},
    }
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {PRICES_KEY: json.dumps(prices_to_json(prices), sort_keys=True)},
        "binaryData": {LEDGER_KEY: encode_ledger(ledger)},
    }


def read_ledger_configmap(configmap: Mapping[str, Any]) -> tuple[Ledger, PriceTable | None]:
    """The ledger (empty if the ConfigMap has none yet) and the prices it carries (``None``: none).
    Raises ``ValueError`` on a malformed ledger: a writer must then not overwrite it."""
    binary = configmap.get("binaryData") or {}
    ledger = decode_ledger(binary[LEDGER_KEY]) if LEDGER_KEY in binary else Ledger()
    text = (configmap.get("data") or {}).get(PRICES_KEY)
    if text is None:
        return ledger, None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValueError(f"malformed {PRICES_KEY}: {e}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"malformed {PRICES_KEY}: not a JSON object")
    return ledger, prices_from_json(data)


_DURATION = re.compile(r"(\d+)([wdhms])")
_UNIT_S = {"w": 7 * DAY, "d": DAY, "h": HOUR, "m": 60, "s": 1}


def parse_duration(text: str) -> int:
    """Seconds of ``30m``, ``24h``, ``7d``, ``1w``, ``1h30m`` (``--since``); ``ValueError`` if not one."""
    value = text.strip().lower()
    if not value or _DURATION.sub("", value):
        raise ValueError(f"not a duration: {text!r} (e.g. 30m, 24h, 7d, 1h30m)")
    seconds = sum(int(n) * _UNIT_S[u] for n, u in _DURATION.findall(value))
    if seconds <= 0:
        raise ValueError(f"not a positive duration: {text!r}")
    return seconds
