"""The Grafana dashboard (dashboards/runnerd.json, in a ConfigMap when metrics.grafanaDashboard is on):
the panels the issue asks for, every expression valid PromQL (``promtool check rules``), and the
ConfigMap as Grafana's sidecar expects it. tests/integration/test_ops_metrics.py checks each metric
name against a live controller's ``/metrics``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.chart import tools

pytestmark = [pytest.mark.timeout(60)]

GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "6h", "$job": ".*"}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(tools.DASHBOARD.read_text())
    return data


def panels() -> dict[str, list[str]]:
    return {
        p["title"]: [t["expr"] for t in p.get("targets") or ()]
        for p in dashboard()["panels"]
        if p["type"] != "row"
    }


def test_the_panels_the_issue_asks_for() -> None:
    exprs = panels()
    wanted = {  # panel title -> metric names it must use
        "Job queue wait p50 / p95 per pool (runs-on labels)": {
            "github_workflow_job_queue_duration_seconds_bucket"
        },
        "Runners by state": {"runnerd_runners"},
        "Desired vs current runners per scale target": {
            "horizontalrunnerautoscaler_status_desired_replicas",
            "runnerd_runners",
        },
        "GPU-hours used": {"runnerd_gpu_busy_seconds_total"},
        "GPU-hours reserved": {"runnerd_gpu_reserved_seconds_total"},
        "GitHub API budget left": {"github_rate_limit_remaining", "github_rate_limit"},
        "GitHub API calls by endpoint (304s excluded)": {"runnerd_github_api_calls_total"},
        "Webhook → runner pod latency p50 / p95": {"runnerd_webhook_to_pod_create_seconds_bucket"},
    }
    for title, names in wanted.items():
        used = set().union(*(tools.metric_names(e) for e in exprs[title]))
        assert names <= used, title
    queue_wait = exprs["Job queue wait p50 / p95 per pool (runs-on labels)"]
    assert [e.split(",")[0] for e in queue_wait] == ["histogram_quantile(0.5", "histogram_quantile(0.95"]
    assert all("by (runs_on, le)" in e for e in queue_wait)


def test_every_expression_is_valid_promql(tmp_path: Path) -> None:
    rules = []
    for i, expr in enumerate(tools.dashboard_queries(dashboard())):
        if expr.startswith("label_values("):
            continue  # a Grafana function, not PromQL
        for var, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:expr_{i}", "expr": expr})
    assert len(rules) > 30
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]}))
    out = tools.run([tools.tool_dir() / "promtool", "check", "rules", "dashboard.yaml"], cwd=tmp_path)
    assert f"SUCCESS: {len(rules)} rules found" in out


def test_the_layout_has_unique_ids_and_no_overlap() -> None:
    ps = dashboard()["panels"]
    assert len({p["id"] for p in ps}) == len(ps)
    cells = set()
    for p in ps:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    assert all(p["datasource"] == datasource for p in ps if p["type"] != "row")


def test_the_configmap_for_grafanas_sidecar(tmp_path: Path) -> None:
    assert not [o for o in tools.render(tmp_path) if o["kind"] == "ConfigMap"], "off by default"
    values = {"metrics": {"grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "CI"}}}}
    (cm,) = [o for o in tools.render(tmp_path, values) if o["kind"] == "ConfigMap"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "CI"}
    assert json.loads(cm["data"]["runnerd.json"]) == dashboard()
