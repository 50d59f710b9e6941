"""``runnerd status`` (and ``kubectl runnerd status``): the fleet as terminal tables.

From the Kubernetes API: RunnerDeployments and RunnerSets (desired, current, ready, busy, queued
jobs, runners by state), HorizontalRunnerAutoscalers (min, max, desired, schedule), recent
Warning events and sized jobs waiting for capacity or refused, with their reasons
(:mod:`runnerd.views.sizedjobs`). With ``--metrics-url`` (the controller's ``/metrics``, e.g.
through ``kubectl port-forward``) also the job queue wait p50/p95, GPU-hours and the GitHub API
budget. With ``--cost [--since DURATION]`` it prints the cost ledger instead
(:mod:`runnerd.views.cost`), read from the ConfigMap the controller keeps it in
(docs/gpu-sizing.md, "Cost"). The numbers
are defined once, in :mod:`runnerd.reconcile.fleet` and :mod:`runnerd.views.dashboard`,
so they are the dashboard's numbers.

As a kubectl plugin the ``kubectl-runnerd`` executable (installed with runnerd) takes the same
arguments: ``kubectl runnerd status -A``. kubectl hands plugins its environment, so
``$KUBECONFIG`` applies; ``--kubeconfig`` and ``--context`` are the plugin's own flags.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from runnerd.api import constants as c
from runnerd.api import parse_time
from runnerd.kube.client import KubeClient
from runnerd.kube.config import ConfigError
from runnerd.kube.resources import EVENTS, PODS, STATEFUL_SETS, Resource
from runnerd.reconcile.fleet import STATES, FleetSnapshot, HraInfo, TargetInfo, snapshot
from runnerd.reconcile.runnerpod import LABEL_RUNNER
from runnerd.reconcile.runnerset import LABEL_RUNNERSET_NAME
from runnerd.runtime import ApiError, Forbidden, NotFound, redact
from runnerd.status_cost import add_cost_arguments, run_cost
from runnerd.views import dashboard as dm
from runnerd.views.sizedjobs import MAX_ROWS as MAX_SIZED_ROWS
from runnerd.views.sizedjobs import SizedJob, open_jobs, sized_job_json, sized_jobs_table

RUNNERS = Resource(c.GROUP, c.VERSION, "runners", "Runner")
RUNNER_DEPLOYMENTS = Resource(c.GROUP, c.VERSION, "runnerdeployments", "RunnerDeployment")
RUNNER_SETS = Resource(c.GROUP, c.VERSION, "runnersets", "RunnerSet")
HRAS = Resource(c.GROUP, c.VERSION, "horizontalrunnerautoscalers", "HorizontalRunnerAutoscaler")

OUR_KINDS = frozenset(
    {"Runner", "RunnerReplicaSet", "RunnerDeployment", "RunnerSet", "HorizontalRunnerAutoscaler"}
)
MAX_EVENTS = 10
MAX_EVENTS_WIDE = 30
MAX_ENDPOINTS = 8
MESSAGE_WIDTH = 90


# --- what is shown -----------------------------------------------------------------------------


@dataclass
class StatusData:
    fleet: FleetSnapshot
    events: list[Mapping[str, Any]] = field(default_factory=list)
    """Warning events about runnerd's objects and runner pods, newest first."""
    namespace: str | None = None
    """None: all namespaces."""
    metrics: dict[str, Any] | None = None
    """:func:`runnerd.views.dashboard.build` over the scraped metrics."""
    metrics_url: str | None = None
    notes: list[str] = field(default_factory=list)
    """What could not be read (missing CRDs, forbidden lists, an unreachable metrics endpoint)."""
    sized_jobs: list[SizedJob] = field(default_factory=list)
    """Sized jobs waiting for capacity or refused by admission, oldest first."""


def samples_from_text(text: str) -> list[dm.Sample]:
    """The samples of a Prometheus text exposition."""
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def _event_time(event: Mapping[str, Any]) -> dt.datetime | None:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        value = event.get(key) or (event.get("series") or {}).get("lastObservedTime")
        if isinstance(value, str) and value:
            try:
                return parse_time(value.replace("Z", "+00:00"))
            except ValueError:
                continue
    created = (event.get("metadata") or {}).get("creationTimestamp")
    if isinstance(created, str):
        try:
            return parse_time(created.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def warning_events(
    events: Iterable[Mapping[str, Any]], fleet: FleetSnapshot, limit: int
) -> list[Mapping[str, Any]]:
    """Warning events about runnerd's kinds, its runners' pods and StatefulSets, or written by
    runnerd; newest first, at most ``limit``."""
    runner_names = {(r.namespace, r.name) for r in fleet.runners}
    picked = []
    for event in events:
        if event.get("type") != "Warning":
            continue
        involved = event.get("involvedObject") or {}
        kind, name = involved.get("kind"), involved.get("name")
        namespace = involved.get("namespace") or (event.get("metadata") or {}).get("namespace") or ""
        source = str((event.get("source") or {}).get("component") or event.get("reportingComponent") or "")
        ours = (
            kind in OUR_KINDS
            or source.startswith("runnerd")
            or (kind == "Pod" and (namespace, name) in runner_names)
            or (kind == "StatefulSet" and (namespace, f"{name}-0") in runner_names)
        )
        if ours:
            picked.append(event)
    floor = dt.datetime.min.replace(tzinfo=dt.UTC)
    picked.sort(key=lambda e: _event_time(e) or floor, reverse=True)
    return picked[:limit]


# --- rendering (pure) --------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns as kubectl prints them: left-aligned, three spaces apart, headers in capitals."""
    text_rows = [[str(h).upper() for h in headers], *[["" if v is None else str(v) for v in r] for r in rows]]
    widths = [max(len(r[i]) for r in text_rows) for i in range(len(headers))]
    return "\n".join(
        "   ".join(v.ljust(widths[i]) if i < len(headers) - 1 else v for i, v in enumerate(r)).rstrip()
        for r in text_rows
    )


def age(then: dt.datetime | None, now: dt.datetime) -> str:
    """kubectl's short age: 45s, 12m, 3h, 2d."""
    if then is None:
        return "<unknown>"
    seconds = max(int((now - then).total_seconds()), 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{seconds / 3600:.1f}h"


def gpu_hours(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.3f}"


def states_summary(t: TargetInfo) -> str:
    parts = [f"{n} {state}" for state, n in t.runners.items() if n]
    return ", ".join(parts) if parts else "none"


def _target_rows(data: StatusData, wide: bool) -> tuple[list[str], list[list[object]]]:
    headers = ["kind", "name", "desired", "current", "ready", "busy", "queued"]
    if wide:
        headers += [*STATES, "gpu runners", "gpus", "autoscaler", "scope", "labels"]
    else:
        headers += ["runners"]
    rows: list[list[object]] = []
    for t in data.fleet.targets:
        row: list[object] = [t.kind, t.name, "-" if t.desired is None else t.desired, t.current, t.ready]
        row += [t.runners["busy"], t.queued_jobs]
        if wide:
            row += [t.runners[s] for s in STATES]
            row += [t.gpu_runners, t.gpus, t.hra or "-", t.scope or "-", ",".join(t.labels) or "-"]
        else:
            row.append(states_summary(t))
        rows.append(row)
    if data.namespace is None:
        headers.insert(0, "namespace")
        for t, row in zip(data.fleet.targets, rows, strict=True):
            row.insert(0, t.namespace)
    return headers, rows


def _hra_rows(data: StatusData, wide: bool) -> tuple[list[str], list[list[object]]]:
    headers = ["name", "target", "min", "max", "desired", "schedule"]
    if wide:
        headers += ["triggers", "reserved"]

    def dash(v: object) -> object:
        return "-" if v is None or v == "" else v

    rows: list[list[object]] = []
    for h in data.fleet.hras:
        row: list[object] = [
            h.name,
            f"{h.target[1]}/{h.target[2]}",
            dash(h.min_replicas),
            dash(h.max_replicas),
        ]
        row += [dash(h.desired_replicas), dash(h.schedule)]
        if wide:
            row += [",".join(h.triggers) or "-", h.reserved]
        if data.namespace is None:
            row.insert(0, h.namespace)
        rows.append(row)
    if data.namespace is None:
        headers.insert(0, "namespace")
    return headers, rows


def _event_rows(data: StatusData, now: dt.datetime, wide: bool) -> tuple[list[str], list[list[object]]]:
    headers = ["last seen", "object", "reason", "count", "message"]
    rows: list[list[object]] = []
    for e in data.events:
        involved = e.get("involvedObject") or {}
        message = " ".join(str(e.get("message") or "").split())
        if not wide and len(message) > MESSAGE_WIDTH:
            message = message[: MESSAGE_WIDTH - 1] + "…"
        row: list[object] = [age(_event_time(e), now), f"{involved.get('kind')}/{involved.get('name')}"]
        row += [e.get("reason") or "", e.get("count") or 1, message]
        if data.namespace is None:
            row.insert(0, involved.get("namespace") or "")
        rows.append(row)
    if data.namespace is None:
        headers.insert(0, "namespace")
    return headers, rows


def _v(c: Mapping[str, Any] | None) -> float | None:
    return None if c is None else c.get("v")


def _metrics_text(model: Mapping[str, Any], url: str, now: dt.datetime, wide: bool) -> list[str]:
    out: list[str] = []
    totals, wait = model["totals"], model["queue_wait"]
    window = model.get("window")
    recent = wait["recent"]
    if window and window % 60 == 0:
        label = f"last {window / 60:.0f} min"
    else:
        label = f"last {duration(window)}" if window else "recent window"
    out.append(f"METRICS ({url})")
    # a controller exports the fleet (runner gauges); a webhook server's endpoint only job events
    fleet = bool(model["targets"])
    jobs = (
        [f"{int(_v(totals['queued']) or 0)} queued", f"{int(_v(totals['running']) or 0)} running"]
        if fleet
        else []
    )
    jobs.append(f"{int(_v(totals['completed']) or 0)} completed")
    out.append("Jobs:          " + ", ".join(jobs))
    out.append(
        f"Queue wait:    {label}: p50 {duration(_v(recent['p50']))}, p95 {duration(_v(recent['p95']))} "
        f"({int(_v(recent['jobs']) or 0)} jobs); since start: p50 {duration(_v(wait['all']['p50']))}, "
        f"p95 {duration(_v(wait['all']['p95']))} ({int(_v(wait['all']['count']) or 0)} jobs)"
    )
    gpu_runners, gpus = int(_v(totals["gpu_runners"]) or 0), int(_v(totals["gpus"]) or 0)
    if fleet:
        out.append(
            f"GPU:           {gpu_runners} GPU runners ({gpus} GPUs); "
            f"{gpu_hours(_v(totals['gpu_busy_seconds']))} GPU-hours used of "
            f"{gpu_hours(_v(totals['gpu_reserved_seconds']))} reserved"
        )
    github = model["github"]
    out.append("")
    out.append("GITHUB API")
    if github["rate_limits"]:
        rows = []
        for r in github["rate_limits"]:
            reset = _v(r["reset_at"])
            resets = "-" if reset is None else "in " + age(now, dt.datetime.fromtimestamp(reset, dt.UTC))
            paused = "paused" if r.get("paused_until") else ""
            rows.append(
                [r["resource"], int(_v(r["remaining"]) or 0), int(_v(r["limit"]) or 0), resets, paused]
            )
        out.append(table(["resource", "remaining", "limit", "resets", ""], rows))
    else:
        out.append("no rate-limit reading yet")
    endpoints = github["endpoints"] if wide else github["endpoints"][:MAX_ENDPOINTS]
    if endpoints:
        out.append("")
        rows = []
        for e in endpoints:
            statuses = " ".join(f"{s['l'].get('status')}:{int(s['v'])}" for s in e["statuses"])
            rows.append([e["endpoint"], int(e["calls"]["v"]), statuses])
        out.append(table(["endpoint", "calls", "by status"], rows))
        hidden = len(github["endpoints"]) - len(endpoints)
        if hidden > 0:
            out.append(f"(and {hidden} more endpoints: -o wide shows all)")
    out.append(
        f"{int(_v(github['calls']) or 0)} calls, {int(_v(github['retries']) or 0)} retried, "
        f"{int(_v(github['rate_limit_waits']) or 0)} waited for a rate limit"
    )
    out.append(_audit_line(github.get("audit")))
    return out


def _audit_line(audit: Mapping[str, Any] | None) -> str:
    """The webhook delivery audit (``--webhook-audit``): how many hooks it reads, and whether the
    safety-net poll may stretch because of it."""
    hooks = int(_v((audit or {}).get("hooks")) or 0)
    if hooks == 0:
        return (
            "Delivery audit: no hook read (off, or none found: the controller's log says why); "
            "the safety-net poll keeps its own pace"
        )
    if _v((audit or {}).get("healthy")):
        return f"Delivery audit: {hooks} hook(s) read, healthy: the safety-net poll may stretch"
    return (
        f"Delivery audit: {hooks} hook(s) read, not healthy or not covering every scope: "
        "the safety-net poll keeps its own pace"
    )


def render_text(data: StatusData, *, now: dt.datetime, wide: bool = False) -> str:
    """The terminal tables."""
    where = "all namespaces" if data.namespace is None else f"namespace {data.namespace}"
    out: list[str] = []
    out.append(f"RUNNER DEPLOYMENTS AND RUNNER SETS ({where})")
    if data.fleet.targets:
        out.append(table(*_target_rows(data, wide)))
    else:
        out.append("none")
    out.append("")
    out.append("HORIZONTAL RUNNER AUTOSCALERS")
    out.append(table(*_hra_rows(data, wide)) if data.fleet.hras else "none")
    out.append("")
    out.append("RECENT WARNING EVENTS")
    out.append(table(*_event_rows(data, now, wide)) if data.events else "none")
    if data.sized_jobs:
        out.append("")
        out.append("SIZED JOBS WAITING OR REFUSED (oldest first)")
        out.append(
            table(*sized_jobs_table(data.sized_jobs, now, age=age, all_namespaces=data.namespace is None))
        )
        if len(data.sized_jobs) > MAX_SIZED_ROWS:
            out.append(f"(and {len(data.sized_jobs) - MAX_SIZED_ROWS} more: -o json lists all)")
    if data.metrics is not None and data.metrics_url is not None:
        out.append("")
        out += _metrics_text(data.metrics, data.metrics_url, now, wide)
    for note in data.notes:
        out.append(f"note: {note}")
    return "\n".join(out) + "\n"


def _target_json(t: TargetInfo) -> dict[str, Any]:
    return {
        "namespace": t.namespace,
        "kind": t.kind,
        "name": t.name,
        "desired": t.desired,
        "current": t.current,
        "ready": t.ready,
        "busy": t.runners["busy"],
        "queuedJobs": t.queued_jobs,
        "runningJobs": t.running_jobs,
        "runners": dict(t.runners),
        "gpuRunners": t.gpu_runners,
        "gpus": t.gpus,
        "autoscaler": t.hra,
        "scope": t.scope,
        "labels": list(t.labels),
    }


def _hra_json(h: HraInfo) -> dict[str, Any]:
    return {
        "namespace": h.namespace,
        "name": h.name,
        "target": {"kind": h.target[1], "name": h.target[2]},
        "minReplicas": h.min_replicas,
        "maxReplicas": h.max_replicas,
        "desiredReplicas": h.desired_replicas,
        "schedule": h.schedule,
        "triggers": list(h.triggers),
        "reservedReplicas": h.reserved,
    }


def render_json(data: StatusData, *, now: dt.datetime) -> str:
    """``-o json``: the same facts as data (metrics: the dashboard's model)."""

    def involved(e: Mapping[str, Any]) -> Mapping[str, Any]:
        return e.get("involvedObject") or {}

    doc = {
        "namespace": data.namespace,
        "time": now.isoformat(),
        "targets": [_target_json(t) for t in data.fleet.targets],
        "autoscalers": [_hra_json(h) for h in data.fleet.hras],
        "warningEvents": [
            {
                "namespace": involved(e).get("namespace"),
                "object": f"{involved(e).get('kind')}/{involved(e).get('name')}",
                "reason": e.get("reason"),
                "message": e.get("message"),
                "count": e.get("count") or 1,
                "lastSeen": (t.isoformat() if (t := _event_time(e)) else None),
            }
            for e in data.events
        ],
        "sizedJobs": [sized_job_json(j) for j in data.sized_jobs],
        "metricsUrl": data.metrics_url,
        "metrics": data.metrics,
        "notes": data.notes,
    }
    return json.dumps(doc, indent=2) + "\n"


# --- reading the cluster and the metrics endpoint ----------------------------------------------


def context_namespace(kubeconfig: str | None, context: str | None, env: Mapping[str, str]) -> str:
    """The namespace of the kubeconfig's (current) context, as kubectl picks it; ``default`` else."""
    path = (
        kubeconfig
        or (env.get("KUBECONFIG") or "").split(os.pathsep)[0]
        or os.path.expanduser("~/.kube/config")
    )
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return "default"
    if not isinstance(doc, dict):
        return "default"
    name = context or doc.get("current-context")
    for entry in doc.get("contexts") or ():
        if isinstance(entry, dict) and entry.get("name") == name:
            return str((entry.get("context") or {}).get("namespace") or "default")
    return "default"


async def _list(
    kube: KubeClient, resource: Resource, namespace: str | None, notes: list[str], **selectors: str
) -> list[dict[str, Any]]:
    try:
        return (await kube.list(resource, namespace=namespace, **selectors)).items
    except NotFound:
        notes.append(f"{resource.plural}.{resource.group or 'core'} is not served (CRDs not installed?)")
    except Forbidden:
        notes.append(f"not allowed to list {resource.plural}")
    return []


async def fetch_metrics(url: str, *, limit_s: float = 10.0) -> str:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit_s), trust_env=True) as session,
        session.get(url) as resp,
    ):
        resp.raise_for_status()
        return await resp.text()


async def gather(
    kube: KubeClient,
    namespace: str | None,
    *,
    metrics_url: str | None = None,
    now: dt.datetime,
    wide: bool = False,
) -> StatusData:
    """Everything ``runnerd status`` shows, read from the API (and the metrics endpoint)."""
    notes: list[str] = []
    deployments, runner_sets, hras, runners, pods, stateful_sets, events = await asyncio.gather(
        _list(kube, RUNNER_DEPLOYMENTS, namespace, notes),
        _list(kube, RUNNER_SETS, namespace, notes),
        _list(kube, HRAS, namespace, notes),
        _list(kube, RUNNERS, namespace, notes),
        _list(kube, PODS, namespace, notes, label_selector=LABEL_RUNNER),
        _list(kube, STATEFUL_SETS, namespace, notes, label_selector=LABEL_RUNNERSET_NAME),
        _list(kube, EVENTS, namespace, notes, field_selector="type=Warning"),
    )
    fleet = snapshot(
        deployments=deployments,
        runner_sets=runner_sets,
        hras=hras,
        runners=runners,
        pods=pods,
        stateful_sets=stateful_sets,
        now=now,
    )
    data = StatusData(
        fleet=fleet,
        events=warning_events(events, fleet, MAX_EVENTS_WIDE if wide else MAX_EVENTS),
        namespace=namespace,
        metrics_url=metrics_url,
        notes=notes,
        sized_jobs=open_jobs(runners),
    )
    if metrics_url:
        try:
            text = await fetch_metrics(metrics_url)
            data.metrics = dm.build(samples_from_text(text), generated_at=now.timestamp())
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            data.notes.append(f"metrics from {metrics_url}: {redact(str(exc)) or type(exc).__name__}")
    return data


# --- command line ------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kubeconfig", default=None, help="kubeconfig path (default: $KUBECONFIG, ~/.kube/config)"
    )
    p.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    p.add_argument("-n", "--namespace", default=None, help="namespace (default: the context's)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    p.add_argument("-o", "--output", choices=("wide", "json"), default=None, help="wide or json")
    p.add_argument(
        "--metrics-url",
        default=None,
        help="the controller's metrics endpoint, e.g. http://127.0.0.1:8080/metrics (after kubectl "
        "port-forward): adds queue wait, GPU-hours and the GitHub API budget",
    )
    add_cost_arguments(p)


def add_status_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="the runner fleet as tables (kubectl runnerd status)")
    add_arguments(p)


async def run_status(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    now = dt.datetime.now(dt.UTC)
    if getattr(args, "cost", False):
        return await run_cost(args, out, now, table)
    namespace = (
        None
        if args.all_namespaces
        else args.namespace or context_namespace(args.kubeconfig, args.context, env)
    )
    try:
        async with await KubeClient.connect(args.kubeconfig, context=args.context) as kube:
            data = await gather(
                kube, namespace, metrics_url=args.metrics_url, now=now, wide=args.output == "wide"
            )
    except ConfigError as exc:
        print(f"runnerd status: {exc}", file=sys.stderr)
        return 1
    except (ApiError, aiohttp.ClientError, OSError) as exc:
        print(
            f"runnerd status: cannot read the cluster: {redact(str(exc)) or type(exc).__name__}",
            file=sys.stderr,
        )
        return 1
    if args.output == "json":
        out.write(render_json(data, now=now))
    else:
        out.write(render_text(data, now=now, wide=args.output == "wide"))
    return 0


def kubectl_main(argv: Sequence[str] | None = None) -> int:
    """``kubectl-runnerd``: the kubectl plugin (``kubectl runnerd status ...``)."""
    parser = argparse.ArgumentParser(prog="kubectl runnerd", description="runnerd, as a kubectl plugin")
    sub = parser.add_subparsers(dest="command")
    add_status_parser(sub)
    args = parser.parse_args(argv)
    if args.command != "status":
        parser.print_help()
        return 0 if args.command is None else 2
    return asyncio.run(run_status(args, os.environ, sys.stdout))
