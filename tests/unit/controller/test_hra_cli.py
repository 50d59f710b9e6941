"""The autoscaling flags of ``runnerd controller`` and ``runnerd webhook-server`` (parsing only)."""

from __future__ import annotations

import logging

import pytest

from runnerd.cli import build_parser, controller_options, endpoints
from runnerd.github import GitHubConfig
from runnerd.web.server import Address

pytestmark = pytest.mark.timeout(10)


def test_controller_flags() -> None:
    args = build_parser().parse_args(
        [
            "controller",
            "--webhook-addr=:8000",
            "--github-webhook-secret-token=s3cret",
            "--metrics-addr=127.0.0.1:8080",
            "--health-probe-bind-address=:8081",
            "--default-scale-down-delay=5m",
            "--webhook-poll-bound=30s",
            "--webhook-poll-max-calls-per-hour=500",
            "--use-runner-groups-visibility",
        ]
    )
    assert args.default_scale_down_delay == 300.0
    assert args.webhook_poll_bound == 30.0
    assert args.webhook_poll_max_calls_per_hour == 500
    assert args.use_runner_groups_visibility
    assert not args.disable_webhook_poll
    assert endpoints(args) == {
        "webhook": Address(None, 8000),
        "metrics": Address("127.0.0.1", 8080),
        "health": Address(None, 8081),
    }


def test_controller_endpoints_are_off_by_default() -> None:
    args = build_parser().parse_args(["controller"])
    assert endpoints(args) == {"webhook": None, "metrics": None, "health": None}


def test_webhook_server_defaults_are_arcs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET_TOKEN", "from-env")
    args = build_parser().parse_args(["webhook-server", "--watch-namespace=ns"])
    assert args.github_webhook_secret_token == "from-env"
    assert endpoints(args) == {"webhook": Address(None, 8000), "metrics": Address(None, 8080), "health": None}


def test_a_webhook_without_a_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET_TOKEN", raising=False)
    args = build_parser().parse_args(["webhook-server"])
    with caplog.at_level(logging.ERROR):
        assert endpoints(args) is None
    assert "needs --github-webhook-secret-token" in caplog.text


def test_a_malformed_address_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    args = build_parser().parse_args(["controller", "--metrics-addr=8080"])
    with caplog.at_level(logging.ERROR):
        assert endpoints(args) is None
    assert "host:port" in caplog.text


@pytest.mark.parametrize("command", ["controller", "webhook-server"])
@pytest.mark.parametrize(
    ("flags", "journal"),
    [
        ([], True),
        (["--reservation-journal"], True),
        (["--reservation-journal=true"], True),
        (["--reservation-journal=false"], False),
        (["--reservation-journal", "false"], False),
        (["--reservation-journal=0"], False),
        (["--no-reservation-journal"], False),
        (["--no-reservation-journal", "--reservation-journal"], True),  # the last one wins
    ],
)
def test_the_reservation_journal_is_the_default_intake(command: str, flags: list[str], journal: bool) -> None:
    args = build_parser().parse_args([command, *flags])
    assert args.reservation_journal is journal
    if command == "controller":
        assert controller_options(args, GitHubConfig.resolve()).reservation_journal is journal


def test_a_journal_flag_value_that_is_not_a_boolean_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["controller", "--reservation-journal=maybe"])
    assert "expected true or false" in capsys.readouterr().err
