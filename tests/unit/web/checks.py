"""Checking the dashboard's numbers against a /metrics scrape (unit and browser tests share this)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from html.parser import HTMLParser
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from devcluster.wait import wait_until


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A /metrics text as {sample name: [(labels, value)]}."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def _matching(scrape: Mapping[str, list[tuple[dict[str, str], float]]], name: str, labels: Mapping[str, str]):  # type: ignore[no-untyped-def]
    return [(lab, v) for lab, v in scrape.get(name, ()) if all(lab.get(k) == w for k, w in labels.items())]


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus's histogram_quantile, written out again here (independent of the product's)."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] == 0:
        return None
    rank = q * ordered[-1][1]
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (
                count - previous_count
            )
        previous_bound, previous_count = bound, count
    return None


def expected(
    scrape: Mapping[str, list[tuple[dict[str, str], float]]],
    metric: str,
    labels: Mapping[str, str],
    q: float | None = None,
) -> float | None:
    """What /metrics says for a dashboard number: the sum over matching series, or the quantile of
    the summed buckets; None when no series matches."""
    if q is not None:
        buckets: dict[float, float] = {}
        for lab, v in _matching(scrape, metric + "_bucket", labels):
            bound = float(lab["le"])
            buckets[bound] = buckets.get(bound, 0.0) + v
        return quantile(q, buckets)
    found = _matching(scrape, metric, labels)
    return sum(v for _, v in found) if found else None


def cells(model: Any) -> Iterator[dict[str, Any]]:
    """Every number (``{"v", "m", "l"[, "q"]}``) in a dashboard model."""
    if isinstance(model, dict):
        if "m" in model and "v" in model and "l" in model:
            yield model
            return
        for value in model.values():
            yield from cells(value)
    elif isinstance(model, list):
        for value in model:
            yield from cells(value)


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


class MetricElements(HTMLParser):
    """Collects the elements with ``data-metric`` of a dumped DOM, with their text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[dict[str, Any]] = []
        self._open: list[dict[str, Any]] = []
        self.attrs_by_id: dict[str, dict[str, str]] = {}
        self.body: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        if "id" in a:
            self.attrs_by_id[a["id"]] = a
        if "data-metric" in a:
            item = {
                "metric": a["data-metric"],
                "labels": json.loads(a.get("data-labels") or "{}"),
                "value": None if a.get("data-value", "") == "" else float(a["data-value"]),
                "quantile": float(a["data-quantile"]) if a.get("data-quantile") else None,
                "text": "",
                "tag": tag,
            }
            self.found.append(item)
            self._open.append(item)
        elif self._open:
            self._open.append({})

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for item in self._open:
            if "text" in item:
                item["text"] += data


def dom_numbers(html: str) -> MetricElements:
    parser = MetricElements()
    parser.feed(html)
    return parser


async def wait_for(condition: Callable[[], bool], *, within: float = 5.0, step: float = 0.005) -> None:
    """Until ``condition()`` holds (state the code under test changes), at most ``within`` seconds."""
    await wait_until("the condition", condition, within, step=step)
