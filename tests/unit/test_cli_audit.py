"""``runnerd controller --webhook-audit``: its flags (``auto`` by default, ``off``), and a malformed hook
refused before anything starts."""

from __future__ import annotations

import logging

import pytest

from runnerd.cli import build_parser, run_controller
from runnerd.cli_audit import audit_settings
from runnerd.controller.hookdiscovery import AutoSettings
from runnerd.reconcile.deliveryaudit import HookRef

pytestmark = pytest.mark.timeout(10)


def test_auto_is_the_default_and_takes_the_url_prefix() -> None:
    default = audit_settings(build_parser().parse_args(["controller"]))
    assert default == AutoSettings()
    flags = [
        "controller",
        "--webhook-audit=auto",
        "--webhook-audit-url=https://ci.example/",
        "--webhook-audit-interval=2m",
    ]
    assert audit_settings(build_parser().parse_args(flags)) == AutoSettings(
        interval=120.0, url_prefix="https://ci.example/"
    )


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--webhook-audit=off"], None),
        (["--webhook-audit=app"], (HookRef("app"), 60.0, 3600.0)),
        (
            ["--webhook-audit=repo/o/r/9", "--webhook-audit-interval=2m", "--webhook-audit-poll-bound=30m"],
            (HookRef("repo", "o", "r", 9), 120.0, 1800.0),
        ),
    ],
)
def test_flags(flags: list[str], expected: tuple[HookRef, float, float] | None) -> None:
    settings = audit_settings(build_parser().parse_args(["controller", *flags]))
    got = None if settings is None else (settings.hook, settings.interval, settings.poll_bound)
    assert got == expected


async def test_a_malformed_hook_is_refused_before_anything_starts(caplog: pytest.LogCaptureFixture) -> None:
    args = build_parser().parse_args(["controller", "--webhook-audit=org/octo-org"])
    with caplog.at_level(logging.ERROR):
        assert await run_controller(args, {"GITHUB_TOKEN": "ghp_test"}) == 2
    assert "--webhook-audit: not a hook: 'org/octo-org'" in caplog.text
    assert "ghp_test" not in caplog.text
