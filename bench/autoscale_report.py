"""The autoscale bench's measures and its table (bench/autoscale_bench.py): what one scenario's
timeline, relay and counts say, from receipt and from ``queued_at``, and the side-by-side report."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from autoscale_parts import Relay, Timeline, rate, summary  # noqa: E402


def scale_measures(m: dict[str, Any], timeline: Timeline, jobs: int) -> dict[str, Any]:
    t0 = m["t0"]
    pods = sorted(p for p in timeline.pods if p >= t0)[:jobs]
    runners = sorted(r for r in timeline.runners if r >= t0)[:jobs]
    rs_at = timeline.replicas_reached(jobs, t0, replica_set=True)

    def calls(at: Counter[tuple[str, int]]) -> dict[str, int]:
        diff = {
            f"{ep} {status}": n - m["calls_before"].get((ep, status), 0) for (ep, status), n in at.items()
        }
        return {k: v for k, v in sorted(diff.items()) if v}

    done_calls = calls(m["calls_done"])
    return {
        "mode": "scale",
        "jobs": jobs,
        "conclusions": [],
        "replica_set_scaled_after_ms": round((rs_at - t0) * 1000, 1) if rs_at is not None else None,
        "runner_object_created_ms": summary([r - t0 for r in runners]),
        "runner_pod_created_ms": summary([p - t0 for p in pods]),
        "all_pods_after_s": m["all_assigned_after_s"],
        "all_online_after_s": m["all_online_after_s"],
        "pods_per_s_from_the_write": round(len(pods) / (pods[-1] - t0), 1) if pods else None,
        "pod_create_rate_per_s": rate(pods),
        "runner_create_rate_per_s": rate(runners),
        "github_calls_until_done": sum(done_calls.values()),
        "github_calls_by_endpoint_until_done": done_calls,
        "controller_cpu_s_until_assigned": m.get("controller_cpu_s_until_assigned"),
        "controller_cpu_s_until_done": m.get("controller_cpu_s_until_done"),
        "sample_pod": m["sample_pod"],
        **_writes(m, jobs),
    }


def _writes(m: dict[str, Any], jobs: int) -> dict[str, Any]:
    """The API server's writes from the burst until every job was assigned (scale: every pod)."""
    diff = {k: n - m["writes_before"].get(k, 0) for k, n in m["writes_assigned"].items()}
    diff = {k: v for k, v in sorted(diff.items(), key=lambda kv: -kv[1]) if v}
    total = sum(diff.values())
    return {"api_writes_until_assigned": diff, "api_writes_per_job": round(total / max(1, jobs), 2)}


def _paired(origins: list[float], times: list[float]) -> list[float]:
    """First come, first served: the i-th earliest time less the i-th earliest origin."""
    return [t - o for o, t in zip(sorted(origins), sorted(times), strict=False)]


def measures(mode: str, world: Any, m: dict[str, Any], relay: Relay, timeline: Timeline) -> dict[str, Any]:
    t0 = m["t0"]
    jobs = [world.jobs[j] for j in m["job_ids"]]
    queued = sorted(j.queued_at for j in jobs if j.queued_at is not None)
    burst_pods = sorted(p for p in timeline.pods if p >= t0)
    runners = sorted(r for r in timeline.runners if r >= t0)
    if mode != "pull":
        start = {j.id: relay.received.get(j.id) for j in jobs}
        missing = [j for j, at in start.items() if at is None]
        if missing:
            print(f"{len(missing)} jobs had no queued delivery", file=sys.stderr)
    else:
        start = {j.id: j.queued_at for j in jobs}
    origins = sorted(at for at in start.values() if at is not None)
    to_pod = _paired(origins, burst_pods[: len(origins)])
    to_assign = [
        j.assigned_at - start[j.id] for j in jobs if j.assigned_at is not None and start[j.id] is not None
    ]

    def calls(at: Counter[tuple[str, int]]) -> dict[str, int]:
        diff = {
            f"{ep} {status}": n - m["calls_before"].get((ep, status), 0) for (ep, status), n in at.items()
        }
        return {k: v for k, v in sorted(diff.items()) if v}

    assigned_calls, done_calls = calls(m["calls_assigned"]), calls(m["calls_done"])
    result: dict[str, Any] = {
        "mode": mode,
        "jobs": len(jobs),
        "conclusions": sorted({j.conclusion or "" for j in jobs}),
        "queued_to_pod_create_ms": summary(_paired(queued, burst_pods)),
        "to_pod_create_ms": summary(to_pod),
        "to_assignment_ms": summary(to_assign),
        "all_assigned_after_s": m["all_assigned_after_s"],
        "github_calls_until_assigned": sum(assigned_calls.values()),
        "github_calls_per_job_until_assigned": round(sum(assigned_calls.values()) / len(jobs), 3),
        "github_calls_until_done": sum(done_calls.values()),
        "github_calls_per_job_until_done": round(sum(done_calls.values()) / len(jobs), 3),
        "github_calls_by_endpoint_until_done": done_calls,
        "pods_created": len(burst_pods),
        "pods_per_job": round(len(burst_pods) / len(jobs), 3),
        "runners_created": m.get("runners_created", len(runners)),
        "pod_create_rate_per_s": rate(burst_pods[: len(jobs)]),
        "runner_create_rate_per_s": rate(runners[: len(jobs)]),
        "controller_cpu_s_until_assigned": m.get("controller_cpu_s_until_assigned"),
        "controller_cpu_s_until_done": m.get("controller_cpu_s_until_done"),
        "sample_pod": m["sample_pod"],
        **_writes(m, len(jobs)),
    }
    if mode == "pull":
        return result
    received = sorted(relay.received.values())
    reserved = sorted(relay.answered.values())
    stage_rd, stage_rs = [], []
    for i, o in enumerate(received):
        at = timeline.replicas_reached(i + 1, t0)
        if at is not None:
            stage_rd.append(at - o)
        at = timeline.replicas_reached(i + 1, t0, replica_set=True)
        if at is not None:
            stage_rs.append(at - o)
    rd_at = [o + d for o, d in zip(received, stage_rd, strict=False)]
    rs_at = [o + d for o, d in zip(received, stage_rs, strict=False)]
    result["deliveries_received_over_s"] = round(received[-1] - received[0], 2) if received else None
    hops = {
        "delivery_received": received,
        "reservation_written": reserved,
        "deployment_replicas_reached": rd_at,
        "replica_set_replicas_reached": rs_at,
        "runner_object_created": runners,
        "runner_pod_created": burst_pods,
    }
    result["breakdown_from_receipt_ms"] = {
        name: summary(_paired(received, times)) for name, times in hops.items() if name != "delivery_received"
    }
    result["breakdown_from_queued_ms"] = {
        name: summary(_paired(queued, times)) for name, times in hops.items()
    }
    return result


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    rows: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("jobs (conclusions)", lambda r: f"{r['jobs']} {r['conclusions']}"),
        ("job queued → pod created p50 / p99 (ms)", lambda r: _pp(r.get("queued_to_pod_create_ms"))),
        ("receipt → pod created p50 / p99 (ms)", lambda r: _pp(r.get("to_pod_create_ms"))),
        ("receipt → job assigned p50 / p99 (ms)", lambda r: _pp(r.get("to_assignment_ms"))),
        ("GitHub calls per job, until all assigned", lambda r: r.get("github_calls_per_job_until_assigned")),
        ("GitHub calls per job, until done, back to 0", lambda r: r.get("github_calls_per_job_until_done")),
        ("pods per job", lambda r: r.get("pods_per_job", "—")),
        ("from receipt: reservation / replica set / Runner / pod p50 (ms)", _hops),
        ("scale: from the write, Runner / pod p50 / p99 (ms)", lambda r: (
            f"{_pp(r.get('runner_object_created_ms'))} / {_pp(r.get('runner_pod_created_ms'))}")),
        ("Runner objects/s", lambda r: r.get("runner_create_rate_per_s")),
        ("API server writes per job (all clients, until assigned)", lambda r: r.get("api_writes_per_job")),
        ("controller CPU s until assigned / done", lambda r: (
            f"{r.get('controller_cpu_s_until_assigned')} / {r.get('controller_cpu_s_until_done')}")),
        ("pod creations/s (share of the ceiling)",
         lambda r: f"{r['pod_create_rate_per_s']} ({r.get('creation_rate_share_of_ceiling')})"),
    ]  # fmt: skip
    lines = ["| measure | " + " | ".join(r["mode"] for r in results) + " |"]
    lines.append("|---|" + "---:|" * len(results))
    lines += [f"| {name} | " + " | ".join(str(get(r)) for r in results) + " |" for name, get in rows]
    lines.append(f"(pull and article metric sync period: {args.pull_sync:g} s)")
    lines.append("(controller: " + ("in the benchmark's process)" if args.in_process else "its own process)"))
    return "\n".join(lines)


def _hops(r: dict[str, Any]) -> str:
    hops = r.get("breakdown_from_receipt_ms")
    if not hops:
        return "—"
    names = (
        "reservation_written",
        "replica_set_replicas_reached",
        "runner_object_created",
        "runner_pod_created",
    )
    return " / ".join(f"{hops[n]['p50']:.0f}" for n in names)


def _pp(s: dict[str, float] | None) -> str:
    if s is None:
        return "—"
    return f"{s['p50']:.1f} / {s['p99']:.1f}"
