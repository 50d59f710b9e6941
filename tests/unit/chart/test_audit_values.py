"""``webhookAudit``: the controller's ``--webhook-audit`` flags; ``auto`` unless a hook or ``off`` is set."""

from __future__ import annotations

from pathlib import Path

import pytest

from runnerd.cli_audit import audit_settings
from runnerd.controller.hookdiscovery import AutoSettings
from runnerd.reconcile.deliveryaudit import HookRef
from tests.unit.chart.test_templates import container, parse, render, render_raw


def test_auto_by_default(helm_bin: Path, tmp_path: Path) -> None:
    args = parse(container(render(helm_bin, tmp_path).one("Deployment")))
    assert args.webhook_audit == "auto"
    assert audit_settings(args) == AutoSettings(interval=60.0, poll_bound=3600.0)


@pytest.mark.parametrize("hook", ["off", ""])
def test_off_or_empty_turns_it_off(helm_bin: Path, tmp_path: Path, hook: str) -> None:
    args = parse(container(render(helm_bin, tmp_path, f"webhookAudit.hook={hook}").one("Deployment")))
    assert args.webhook_audit == "off"
    assert audit_settings(args) is None


def test_auto_takes_the_url_prefix(helm_bin: Path, tmp_path: Path) -> None:
    r = render(helm_bin, tmp_path, "webhookAudit.url=https://ci.example/hook")
    assert audit_settings(parse(container(r.one("Deployment")))) == AutoSettings(
        url_prefix="https://ci.example/hook"
    )


def test_a_named_hook_becomes_the_flags_runnerd_accepts(helm_bin: Path, tmp_path: Path) -> None:
    r = render(helm_bin, tmp_path, "webhookAudit.hook=org/octo-org/42", "webhookAudit.pollBound=30m")
    settings = audit_settings(parse(container(r.one("Deployment"))))
    assert settings is not None
    assert (settings.hook, settings.interval, settings.poll_bound) == (
        HookRef("org", "octo-org", hook_id=42),
        60.0,
        1800.0,
    )


@pytest.mark.parametrize("hook", ["octo-org", "org/octo-org", "org/octo-org/x", "repo/o/1"])
def test_a_malformed_hook_is_refused_by_the_schema(helm_bin: Path, tmp_path: Path, hook: str) -> None:
    proc = render_raw(helm_bin, tmp_path, "--set", f"webhookAudit.hook={hook}")
    assert proc.returncode != 0
    assert "at '/webhookAudit/hook'" in proc.stderr
