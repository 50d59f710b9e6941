"""The chart's alert rules (templates/prometheusrule.yaml): valid for Prometheus (``promtool check
rules``), and each alert fires and stays quiet when it should (``promtool test rules`` on synthetic
series, rules_test.yaml)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.chart import tools

pytestmark = [pytest.mark.timeout(60)]

RULES_TEST = Path(__file__).with_name("rules_test.yaml")
ALERTS = {
    "RunnerdQueueWaitSLOBurnFast",
    "RunnerdQueueWaitSLOBurnSlow",
    "RunnerdGitHubAPIBudgetLow",
    "RunnerdJobsWithNoMatchingPool",
    "RunnerdRunnersStuckRegistering",
    "RunnerdOrphanedRegistrations",
    "RunnerdWebhookSignatureFailures",
    "RunnerdLeaderLost",
}


def rendered_rule(tmp: Path, **values: Any) -> dict[str, Any]:
    objects = tools.render(tmp, {"metrics": {"prometheusRule": {"enabled": True, **values}}})
    rules = [o for o in objects if o["kind"] == "PrometheusRule"]
    assert len(rules) == 1
    return rules[0]


def test_off_by_default(tmp_path: Path) -> None:
    assert not [o for o in tools.render(tmp_path) if o["kind"] == "PrometheusRule"]


def test_every_alert_fires_and_stays_quiet_as_promtool_evaluates_it(tmp_path: Path) -> None:
    rule = rendered_rule(tmp_path, labels={"release": "kube-prometheus-stack"})
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    groups = rule["spec"]["groups"]
    assert set(tools.rule_exprs(groups)) == ALERTS
    for r in (r for g in groups for r in g["rules"]):
        assert r["labels"]["severity"] in ("critical", "warning")
        assert r["annotations"]["runbook_url"].startswith("https://")
        assert "#" in r["annotations"]["runbook_url"]

    full = tmp_path / "full.yaml"
    full.write_text(yaml.safe_dump({"groups": groups}))
    out = tools.run([tools.tool_dir() / "promtool", "check", "rules", full], cwd=tmp_path)
    assert f"SUCCESS: {len(ALERTS)} rules found" in out

    # promtool's unit tests compare annotations exactly: test the alerting logic without them
    # (their templates were checked above)
    for r in (r for g in groups for r in g["rules"]):
        r.pop("annotations")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    out = tools.run([tools.tool_dir() / "promtool", "test", "rules", RULES_TEST.name], cwd=tmp_path)
    assert "SUCCESS" in out


def test_the_rule_tests_cover_each_alert_firing_and_not_firing() -> None:
    cases = yaml.safe_load(RULES_TEST.read_text())["tests"]
    checks = [c for case in cases for c in case["alert_rule_test"]]
    firing = {c["alertname"] for c in checks if c["exp_alerts"]}
    quiet = {c["alertname"] for c in checks if not c["exp_alerts"]}
    assert firing == ALERTS
    assert quiet == ALERTS


@pytest.mark.parametrize(
    ("slo", "bucket", "budget"),
    [
        ({"objective": 0.95, "thresholdSeconds": 60}, "60", "(1 - 0.95)"),
        ({"objective": 0.99, "thresholdSeconds": 300}, "300", "(1 - 0.99)"),
    ],
)
def test_the_slo_values_reach_the_expressions(
    tmp_path: Path, slo: dict[str, Any], bucket: str, budget: str
) -> None:
    exprs = tools.rule_exprs(rendered_rule(tmp_path, queueWaitSLO=slo)["spec"]["groups"])
    fast = exprs["RunnerdQueueWaitSLOBurnFast"]
    assert f'le=~"{bucket}(\\\\.0)?"' in fast
    assert f"(14.4 * {budget})" in fast


@pytest.mark.parametrize(
    "values",
    [
        {"queueWaitSLO": {"objective": 0.95, "thresholdSeconds": 61}},  # not a bucket bound
        {"queueWaitSLO": {"objective": 1, "thresholdSeconds": 60}},
        {"stuckRegisteringFor": "15 minutes"},
        {"githubBudgetRemainingRatio": 0},
    ],
)
def test_the_schema_refuses_values_that_make_no_rule(tmp_path: Path, values: dict[str, Any]) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump({"metrics": {"prometheusRule": {"enabled": True, **values}}}))
    with pytest.raises(AssertionError, match="values don't meet the specifications of the schema"):
        tools.run([tools.helm(), "template", "rel", tools.CHART, "-f", path], cwd=tmp_path)


def test_each_runbook_url_points_at_its_section_of_operations_md(tmp_path: Path) -> None:
    doc = (tools.REPO / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", doc, re.M)
    }  # GitHub's heading anchors
    for group in rendered_rule(tmp_path)["spec"]["groups"]:
        for rule in group["rules"]:
            base, _, anchor = rule["annotations"]["runbook_url"].partition("#")
            assert base.endswith("/docs/operations.md")
            assert anchor in anchors, rule["alert"]
