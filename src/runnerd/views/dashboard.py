"""What the dashboard and ``runnerd status`` show, built from metric samples alone (pure).

The controller's ``/metrics`` and the dashboard's ``/dashboard/data.json`` come from one registry:
the page's data is :func:`build` over the registry's own samples, and ``runnerd status
--metrics-url`` runs the same :func:`build` over the scraped text. Every number in the model is a
:func:`cell`: its value with the metric it comes from (name and label subset: the value is the sum
of every series matching them; for histograms, the quantile of the summed buckets), which the page
writes into ``data-metric`` attributes so a test can check each one against ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from runnerd.reconcile.fleet import STATES, WaitPoint, histogram_quantile, sum_buckets

Sample = tuple[str, Mapping[str, str], float]
"""(sample name as exposed, e.g. ``..._total`` or ``..._bucket``; labels; value)."""

TARGET_LABELS = ("namespace", "kind", "name")

# Metrics of the fleet (exported by runnerd.web.dashboard's collector; docs/dashboard.md lists them).
RUNNERS = "runnerd_runners"
JOBS_QUEUED = "runnerd_jobs_queued"
JOBS_RUNNING = "runnerd_jobs_running"
GPU_RUNNERS = "runnerd_gpu_runners"
GPUS_REQUESTED = "runnerd_gpus_requested"
GPU_RESERVED_SECONDS = "runnerd_gpu_reserved_seconds"
GPU_BUSY_SECONDS = "runnerd_gpu_busy_seconds"
TARGET_AUTOSCALER = "runnerd_scale_target_autoscaler"
QUEUE_WAIT_RECENT = "runnerd_job_queue_wait_recent_seconds"
QUEUE_WAIT_RECENT_JOBS = "runnerd_job_queue_wait_recent_jobs"
QUEUE_WAIT_WINDOW = "runnerd_job_queue_wait_window_seconds"
# Metrics defined elsewhere (runnerd.web.metrics; ARC's names).
QUEUE_DURATION = "github_workflow_job_queue_duration_seconds"
JOBS_COMPLETED = "github_workflow_jobs_completed_total"
RD_REPLICAS = "runnerdeployment_spec_replicas"
RS_REPLICAS = "runnerset_spec_replicas"
HRA_MIN = "horizontalrunnerautoscaler_spec_min_replicas"
HRA_MAX = "horizontalrunnerautoscaler_spec_max_replicas"
HRA_DESIRED = "horizontalrunnerautoscaler_status_desired_replicas"
RATE_LIMIT = "github_rate_limit"
RATE_LIMIT_REMAINING = "github_rate_limit_remaining"
RATE_LIMIT_RESET = "runnerd_github_rate_limit_reset_timestamp_seconds"
RATE_LIMIT_PAUSED = "runnerd_github_rate_limit_paused_until_timestamp_seconds"
API_CALLS = "runnerd_github_api_calls_total"
API_RETRIES = "runnerd_github_api_retries_total"
RATE_LIMIT_WAITS = "runnerd_github_rate_limit_waits_total"
AUDIT_HOOKS = "runnerd_webhook_audit_hooks"
AUDIT_HEALTHY = "runnerd_webhook_audit_healthy"

QUANTILES = {"p50": 0.5, "p95": 0.95}


class Samples:
    """Samples indexed by name; :meth:`sum` adds up the series matching a label subset."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        self._by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
        for name, labels, value in samples:
            self._by_name.setdefault(name, []).append((dict(labels), float(value)))

    def series(self, name: str, match: Mapping[str, str] | None = None) -> list[tuple[dict[str, str], float]]:
        wanted = match or {}
        return [
            (labels, value)
            for labels, value in self._by_name.get(name, ())
            if all(labels.get(k) == v for k, v in wanted.items())
        ]

    def sum(self, name: str, match: Mapping[str, str] | None = None) -> float | None:
        """The sum over matching series; None when none matches."""
        found = self.series(name, match)
        return sum(v for _, v in found) if found else None

    def names(self) -> set[str]:
        return set(self._by_name)


def cell(
    value: float | None,
    metric: str,
    labels: Mapping[str, str] | None = None,
    *,
    quantile: float | None = None,
) -> dict[str, Any]:
    """A number and where it comes from: ``{"v": value, "m": metric, "l": labels[, "q": quantile]}``."""
    out: dict[str, Any] = {"v": value, "m": metric, "l": dict(labels or {})}
    if quantile is not None:
        out["q"] = quantile
    return out


def _sum_cell(
    s: Samples, metric: str, labels: Mapping[str, str] | None = None, default: float = 0.0
) -> dict[str, Any]:
    value = s.sum(metric, labels)
    return cell(default if value is None else value, metric, labels)


def _histogram_cells(s: Samples, base: str) -> dict[str, Any]:
    buckets = sum_buckets(s.series(base + "_bucket"))
    out = {name: cell(histogram_quantile(q, buckets), base, {}, quantile=q) for name, q in QUANTILES.items()}
    out["count"] = _sum_cell(s, base + "_count")
    return out


def _targets(s: Samples) -> list[dict[str, Any]]:
    keys = sorted(
        {tuple(labels.get(k, "") for k in TARGET_LABELS) for labels, _ in s.series(RUNNERS)}
        | {tuple(labels.get(k, "") for k in TARGET_LABELS) for labels, _ in s.series(TARGET_AUTOSCALER)}
    )
    out = []
    for namespace, kind, name in keys:
        tl = {"namespace": namespace, "kind": kind, "name": name}
        desired: dict[str, Any] | None = None
        replicas = {
            "RunnerDeployment": (RD_REPLICAS, "runnerdeployment"),
            "RunnerSet": (RS_REPLICAS, "runnerset"),
        }
        if kind in replicas:
            metric, label = replicas[kind]
            dl = {label: name, "namespace": namespace}
            desired = cell(s.sum(metric, dl), metric, dl)
        if desired is not None and desired["v"] is None:
            desired = None
        hras = []
        for labels, _ in s.series(TARGET_AUTOSCALER, tl):
            hra = labels.get("horizontalrunnerautoscaler", "")
            hl = {"horizontalrunnerautoscaler": hra, "namespace": namespace}
            hras.append(
                {
                    "name": hra,
                    "min": cell(s.sum(HRA_MIN, hl), HRA_MIN, hl),
                    "max": cell(s.sum(HRA_MAX, hl), HRA_MAX, hl),
                    "desired": cell(s.sum(HRA_DESIRED, hl), HRA_DESIRED, hl),
                }
            )
        out.append(
            {
                **tl,
                "desired": desired,
                "runners": {state: _sum_cell(s, RUNNERS, {**tl, "state": state}) for state in STATES},
                "queued": _sum_cell(s, JOBS_QUEUED, tl),
                "running": _sum_cell(s, JOBS_RUNNING, tl),
                "gpu_runners": _sum_cell(s, GPU_RUNNERS, tl),
                "gpus": _sum_cell(s, GPUS_REQUESTED, tl),
                "gpu_reserved_seconds": _sum_cell(s, GPU_RESERVED_SECONDS + "_total", tl),
                "gpu_busy_seconds": _sum_cell(s, GPU_BUSY_SECONDS + "_total", tl),
                "hras": sorted(hras, key=lambda h: str(h["name"])),
            }
        )
    return out


def _github(s: Samples) -> dict[str, Any]:
    resources = sorted({labels.get("resource", "") for labels, _ in s.series(RATE_LIMIT_REMAINING)})
    limits = []
    for resource in resources:
        rl = {"resource": resource}
        paused = s.sum(RATE_LIMIT_PAUSED, rl)
        limits.append(
            {
                "resource": resource,
                "remaining": cell(s.sum(RATE_LIMIT_REMAINING, rl), RATE_LIMIT_REMAINING, rl),
                "limit": cell(s.sum(RATE_LIMIT, rl), RATE_LIMIT, rl),
                "reset_at": cell(s.sum(RATE_LIMIT_RESET, rl), RATE_LIMIT_RESET, rl),
                "paused_until": cell(paused, RATE_LIMIT_PAUSED, rl) if paused is not None else None,
            }
        )
    endpoints: dict[str, dict[str, float]] = {}
    for labels, value in s.series(API_CALLS):
        by_status = endpoints.setdefault(labels.get("endpoint", ""), {})
        status = labels.get("status", "")
        by_status[status] = by_status.get(status, 0.0) + value
    rows: list[dict[str, Any]] = []
    for endpoint, by_status in endpoints.items():
        el = {"endpoint": endpoint}
        rows.append(
            {
                "endpoint": endpoint,
                "calls": cell(sum(by_status.values()), API_CALLS, el),
                "statuses": [
                    cell(n, API_CALLS, {**el, "status": status})
                    for status, n in sorted(by_status.items(), key=lambda kv: (-kv[1], kv[0]))
                ],
            }
        )
    rows.sort(key=lambda r: (-float(r["calls"]["v"]), str(r["endpoint"])))
    return {
        "rate_limits": limits,
        "endpoints": rows,
        "calls": _sum_cell(s, API_CALLS),
        "retries": _sum_cell(s, API_RETRIES),
        "rate_limit_waits": _sum_cell(s, RATE_LIMIT_WAITS),
        "audit": {"hooks": _sum_cell(s, AUDIT_HOOKS), "healthy": _sum_cell(s, AUDIT_HEALTHY)},
    }


def build(
    samples: Iterable[Sample],
    *,
    points: Sequence[WaitPoint] = (),
    generated_at: float,
    interval: float | None = None,
    window: float | None = None,
) -> dict[str, Any]:
    """The dashboard's model (JSON-ready) from metric samples and the queue-wait series.

    ``window``: the recent queue-wait window (default: as the metrics say)."""
    s = Samples(samples)
    if window is None:
        window = s.sum(QUEUE_WAIT_WINDOW)
    targets = _targets(s)
    recent_labels = {name: {"quantile": str(q)} for name, q in QUANTILES.items()}
    return {
        "generated_at": generated_at,
        "interval": interval,
        "window": window,
        "totals": {
            "queued": _sum_cell(s, JOBS_QUEUED),
            "running": _sum_cell(s, JOBS_RUNNING),
            "completed": _sum_cell(s, JOBS_COMPLETED),
            "runners": {state: _sum_cell(s, RUNNERS, {"state": state}) for state in STATES},
            "gpu_runners": _sum_cell(s, GPU_RUNNERS),
            "gpus": _sum_cell(s, GPUS_REQUESTED),
            "gpu_reserved_seconds": _sum_cell(s, GPU_RESERVED_SECONDS + "_total"),
            "gpu_busy_seconds": _sum_cell(s, GPU_BUSY_SECONDS + "_total"),
        },
        "targets": targets,
        "queue_wait": {
            "recent": {
                **{
                    name: cell(s.sum(QUEUE_WAIT_RECENT, labels), QUEUE_WAIT_RECENT, labels)
                    for name, labels in recent_labels.items()
                },
                "jobs": _sum_cell(s, QUEUE_WAIT_RECENT_JOBS),
            },
            "all": _histogram_cells(s, QUEUE_DURATION),
            "series": [[p.t, p.p50, p.p95, p.jobs] for p in points],
        },
        "github": _github(s),
    }
