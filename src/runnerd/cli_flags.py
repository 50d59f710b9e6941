"""The flags of ``runnerd controller`` and ``runnerd webhook-server`` (ARC's names where ARC has one).

:func:`add_controller_parser` and :func:`add_webhook_server_parser` define the two subcommands;
:mod:`runnerd.cli` runs them. Durations are Go durations (``30s``, ``1m``, ``1h30m``).
Definitions only; some defaults come from the environment ARC's chart sets (``WATCH_NAMESPACE``,
``POD_NAMESPACE``, ``GITHUB_URL``, ``GITHUB_WEBHOOK_SECRET_TOKEN``, ...).
"""

from __future__ import annotations

import argparse
import os

from runnerd.api import parse_go_duration
from runnerd.cli_audit import add_audit_flags
from runnerd.cli_autoscaling import add_journal_flag
from runnerd.cli_cost import add_cost_flags
from runnerd.web.webhook import DEFAULT_MAX_BODY

DEFAULT_RUNNER_IMAGE = "ghcr.io/runnerd/runnerd-runner:2.329.0-ubuntu-24.04"
"""runnerd's runner image (images/Dockerfile, target runner): starts from a JIT config.
ARC's summerwind images still work (the controller gives them registration tokens)."""


def duration(text: str) -> float:
    try:
        return parse_go_duration(text).total_seconds()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration (like 30s, 1m, 1h30m): {text!r}") from None


def add_controller_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("controller", help="run the controller")
    _add_cluster_flags(p)
    _add_runner_flags(p)
    p.add_argument("--log-level", choices=("debug", "info", "warn", "error"), default="info")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    # Off unless asked for (ARC's chart passes --metrics-addr): several controllers may share a host in tests.
    add_endpoint_flags(p, metrics="0", health="0")
    p.add_argument("--webhook-addr", default="0", help="serve GitHub webhooks in this process (0: off)")
    _add_autoscaling_flags(p)
    p.add_argument(
        "--scale-sets",
        action="store_true",
        help="run scale-set mode (actions.github.com: controllers and in-process listeners) instead of "
        "the legacy controllers; the legacy flags and GitHub credentials are then not used",
    )
    p.add_argument("--legacy", action="store_true", help="with --scale-sets: run the legacy controllers too")
    add_cost_flags(p)


def _add_cluster_flags(p: argparse.ArgumentParser) -> None:
    """Where to watch, how often to resync, how runners register, leader election."""
    p.add_argument(
        "--kubeconfig", default=None, help="kubeconfig path (default: in-cluster, then $KUBECONFIG)"
    )
    p.add_argument("--watch-namespace", default=os.environ.get("WATCH_NAMESPACE") or None)
    p.add_argument("--sync-period", type=duration, default=60.0)
    p.add_argument("--registration-timeout", type=duration, default=600.0)
    p.add_argument("--registration-mode", choices=("auto", "jit", "token"), default="auto")
    p.add_argument("--enable-leader-election", action="store_true")
    p.add_argument("--leader-election-id", default="actions-runner-controller")
    p.add_argument("--leader-election-namespace", default=os.environ.get("POD_NAMESPACE") or "default")
    p.add_argument("--leader-election-lease-duration", type=duration, default=15.0)
    p.add_argument("--leader-election-renew-deadline", type=duration, default=10.0)
    p.add_argument("--leader-election-retry-period", type=duration, default=2.0)


def _add_runner_flags(p: argparse.ArgumentParser) -> None:
    """What the runner pods look like, where they register, and their lifecycle's timings."""
    p.add_argument(
        "--drain-grace",
        type=duration,
        default=30.0,
        help="how long a runner takes no new jobs before it is removed on scale-down",
    )
    p.add_argument("--runner-image", default=DEFAULT_RUNNER_IMAGE)
    p.add_argument("--docker-image", default="docker:dind")
    p.add_argument("--docker-gid", type=int, default=1001)
    p.add_argument("--runner-image-pull-secret", action="append", default=[])
    p.add_argument("--docker-registry-mirror", default="")
    p.add_argument("--github-url", default=os.environ.get("GITHUB_URL") or None, help="GitHub API URL")
    p.add_argument("--github-enterprise-url", default=os.environ.get("GITHUB_ENTERPRISE_URL") or None)
    p.add_argument("--runner-github-url", default=os.environ.get("GITHUB_RUNNER_GITHUB_URL") or None)
    p.add_argument("--common-runner-labels", default="", help="comma-separated labels added to every runner")
    p.add_argument("--runner-workers", type=int, default=32)
    p.add_argument(
        "--runner-sets",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the RunnerSet controller (--no-runner-sets: no StatefulSet, Secret or claim access)",
    )
    p.add_argument(
        "--volume-recycling",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hand RunnerSet volumes on to the next runner (needs cluster-wide persistentvolumes rights)",
    )
    add_default_labels_flag(p)
    p.add_argument(
        "--kubernetes-mode-service-accounts",
        action="store_true",
        help="containerMode kubernetes without serviceAccountName: a ServiceAccount and Role per runner",
    )
    p.add_argument(
        "--credentials-refresh", type=duration, default=60.0, help="re-read githubAPICredentialsFrom Secrets"
    )
    p.add_argument("--runner-group-ttl", type=duration, default=600.0, help="re-read runner group ids after")
    p.add_argument(
        "--installation-id",
        default=os.environ.get("RUNNERD_INSTALLATION_ID") or "",
        help="marks this installation's GitHub registrations (default: from the cluster's kube-system"
        " Namespace UID and the watched namespace)",
    )
    p.add_argument(
        "--orphan-grace",
        type=duration,
        default=900.0,
        help="remove this installation's registrations without a Runner only after this long offline",
    )


def _add_autoscaling_flags(p: argparse.ArgumentParser) -> None:
    """The HRA's scale-down delay, the safety-net poll and the GitHub budget of observation."""
    p.add_argument("--default-scale-down-delay", type=duration, default=600.0)
    p.add_argument(
        "--webhook-poll-bound",
        type=duration,
        default=60.0,
        help="a queued job whose webhook was lost gets a runner within about this long",
    )
    p.add_argument("--webhook-poll-max-calls-per-hour", type=int, default=1000)
    p.add_argument("--disable-webhook-poll", action="store_true", help="no safety-net poll")
    p.add_argument(
        "--enable-sizing",
        action="store_true",
        help="watch RunnerSizingPolicy objects and size jobs whose labels ask for it (needs the CRD)",
    )
    p.add_argument(
        "--github-observe-max-calls-per-hour",
        type=int,
        default=3000,
        help="one budget for the metric, the safety-net poll and the runner listings",
    )
    p.add_argument(
        "--count-jobs-twice",
        action="store_true",
        help="ARC's sum: webhook reservations on top of the metric's count, even for the same job",
    )
    add_journal_flag(p)
    add_audit_flags(p, duration)


def add_default_labels_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--github-default-labels",
        default="",
        help="comma-separated labels GitHub gives every runner (e.g. linux,x64) that job matching counts;"
        " default none, as ARC",
    )


def add_endpoint_flags(p: argparse.ArgumentParser, *, metrics: str, health: str) -> None:
    """Flags of the HTTP endpoints (Go host:port; 0 disables one)."""
    p.add_argument("--metrics-addr", default=metrics, help="/metrics (0: off)")
    p.add_argument("--health-probe-bind-address", default=health, help="/healthz and /readyz (0: off)")
    p.add_argument(
        "--github-webhook-secret-token",
        default=os.environ.get("GITHUB_WEBHOOK_SECRET_TOKEN") or None,
        help="HMAC secret of the webhook (default: $GITHUB_WEBHOOK_SECRET_TOKEN)",
    )
    p.add_argument("--webhook-max-body", type=int, default=DEFAULT_MAX_BODY, help="bytes")
    p.add_argument(
        "--use-runner-groups-visibility",
        action="store_true",
        help="ask GitHub which runner groups a repository may use before routing a webhook",
    )


def add_webhook_server_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("webhook-server", help="serve GitHub webhooks only (ARC's github-webhook-server)")
    p.add_argument("--kubeconfig", default=None)
    p.add_argument("--watch-namespace", default=os.environ.get("WATCH_NAMESPACE") or None)
    p.add_argument("--webhook-addr", default=":8000")
    add_endpoint_flags(p, metrics=":8080", health="0")
    p.add_argument("--common-runner-labels", default="", help="comma-separated labels every runner has")
    add_default_labels_flag(p)
    p.add_argument("--github-url", default=os.environ.get("GITHUB_URL") or None, help="GitHub API URL")
    p.add_argument("--github-enterprise-url", default=os.environ.get("GITHUB_ENTERPRISE_URL") or None)
    p.add_argument("--log-level", choices=("debug", "info", "warn", "error"), default="info")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    add_journal_flag(p)
