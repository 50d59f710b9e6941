"""The Grafana dashboard and the alert rules against real ``runnerd controller`` processes: every
metric name their PromQL uses is on a live ``/metrics`` page (the exposition's ``# TYPE`` lines, so
a series that has no sample yet still counts), and ``runnerd_leader`` (the "leader lost" alert's
input) says which replica leads, also after the leader dies."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest

from devcluster.wait import wait_until
from tests.integration.test_controller_process import Procs, procs
from tests.unit.chart import tools
from tests.unit.web import checks

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]
__all__ = ["procs"]

PORT_LINE = re.compile(r"metrics listening on 127\.0\.0\.1:(\d+)")


def election_flags(p: Procs) -> tuple[str, ...]:
    return (
        "--metrics-addr=127.0.0.1:0",
        "--enable-leader-election",
        "--leader-election-id=runnerd-ops",
        f"--leader-election-namespace={p.namespace}",
        "--leader-election-lease-duration=4s",
        "--leader-election-renew-deadline=3s",
        "--leader-election-retry-period=500ms",
    )


async def scrape(port: int) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def leading(port: int) -> float | None:
    samples = checks.parse(await scrape(port)).get("runnerd_leader") or []
    return samples[0][1] if samples else None


def used_metric_names(tmp: Path) -> dict[str, set[str]]:
    """Metric name -> where the dashboard or the rendered alert rules use it."""
    users: dict[str, set[str]] = {}
    for expr in tools.dashboard_queries(json.loads(tools.DASHBOARD.read_text())):
        for name in tools.metric_names(expr):
            users.setdefault(name, set()).add("dashboard")
    objects = tools.render(tmp, {"metrics": {"prometheusRule": {"enabled": True}}})
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    for alert, expr in tools.rule_exprs(rule["spec"]["groups"]).items():
        for name in tools.metric_names(expr):
            users.setdefault(name, set()).add(alert)
    return users


async def test_dashboard_and_alerts_use_only_what_a_live_controller_exports(
    procs: Procs, tmp_path: Path
) -> None:
    p = procs
    for name in ("alpha", "beta"):
        p.start(name, *election_flags(p))

    def port_of(name: str) -> int | None:
        m = PORT_LINE.search((p.log_dir / f"{name}.log").read_text(errors="replace"))  # the whole log
        return int(m.group(1)) if m else None

    ports = {name: await wait_until(f"{name}'s metrics port", lambda n=name: port_of(n)) for name in p.procs}

    async def roles() -> dict[str, float | None] | None:
        found = {name: await leading(port) for name, port in ports.items()}
        return found if sorted(v or 0 for v in found.values()) == [0, 1] else None

    found = await wait_until("one replica leading, the other standing by", roles, 30)
    leader = next(name for name, value in found.items() if value == 1)

    exported = tools.exposed_names(await scrape(ports[leader]))
    users = used_metric_names(tmp_path)
    assert len(users) > 25
    missing = {name: sorted(where) for name, where in users.items() if name not in exported}
    assert not missing, f"not on /metrics: {missing}"
    assert "runnerd_workflow_jobs_unmatched_total" in exported
    assert {"runnerd_orphan_registrations", "runnerd_orphan_registrations_removed_total"} <= exported

    # the leader dies: the standby takes the Lease and says so
    p.kill(leader)
    follower = next(name for name in ports if name != leader)
    await wait_until(
        "the standby to report leading",
        lambda: _is_leading(ports[follower]),
        20,
        state=lambda: p.log(follower),
    )


async def _is_leading(port: int) -> bool:
    return await leading(port) == 1
