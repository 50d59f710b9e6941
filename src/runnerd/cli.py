"""The ``runnerd`` command line.

  runnerd controller [flags]      the controller (ARC's flag names; credentials from the environment)
  runnerd --version

GitHub credentials come from the environment, as ARC's chart provides them from its Secret:
``GITHUB_TOKEN``, or ``GITHUB_APP_ID`` + ``GITHUB_APP_INSTALLATION_ID`` + ``GITHUB_APP_PRIVATE_KEY``
(the PEM itself, or a path to it). They are never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from runnerd import __version__
from runnerd.api import parse_go_duration
from runnerd.controller.app import build
from runnerd.controller.common import ControllerOptions
from runnerd.github import GitHubClient, GitHubConfig, load_credentials
from runnerd.github.errors import CredentialsError, GitHubConfigError
from runnerd.kube.client import KubeClient
from runnerd.reconcile.pod import PodOptions
from runnerd.runtime import LeaderElector

log = logging.getLogger("runnerd")

DEFAULT_RUNNER_IMAGE = "ghcr.io/runnerd/actions-runner:latest"
"""runnerd's runner image: starts from a JIT config (images/runner). ARC's summerwind images still work
(the controller gives them registration tokens)."""
ENV_TO_SECRET_KEY = {
    "GITHUB_TOKEN": "github_token",
    "GITHUB_APP_ID": "github_app_id",
    "GITHUB_APP_INSTALLATION_ID": "github_app_installation_id",
    "GITHUB_APP_PRIVATE_KEY": "github_app_private_key",
}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(
        {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING}.get(level, logging.ERROR)
    )


def duration(text: str) -> float:
    try:
        return parse_go_duration(text).total_seconds()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration (like 30s, 1m, 1h30m): {text!r}") from None


def credentials_from_env(env: Mapping[str, str]) -> dict[str, str]:
    data: dict[str, str] = {}
    for name, key in ENV_TO_SECRET_KEY.items():
        value = env.get(name)
        if value:
            data[key] = value
    pem = data.get("github_app_private_key")
    if pem and not pem.lstrip().startswith("-----") and Path(pem).is_file():
        data["github_app_private_key"] = Path(pem).read_text()
    return data


def add_controller_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("controller", help="run the controller")
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
    p.add_argument("--runner-workers", type=int, default=8)
    p.add_argument("--log-level", choices=("debug", "info", "warn", "error"), default="info")
    p.add_argument("--log-format", choices=("text", "json"), default="text")


async def run_controller(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        credentials = load_credentials(credentials_from_env(env))
        config = GitHubConfig.resolve(
            enterprise_url=args.github_enterprise_url,
            api_url=args.github_url,
            runner_github_url=args.runner_github_url,
        )
    except (CredentialsError, GitHubConfigError) as exc:
        log.error("%s (%s)", exc, exc.reason)
        return 2
    pod_options = PodOptions(
        runner_image=args.runner_image,
        docker_image=args.docker_image,
        docker_gid=args.docker_gid,
        runner_image_pull_secrets=tuple(args.runner_image_pull_secret),
        github_url=config.github_url,
        common_runner_labels=tuple(x for x in args.common_runner_labels.split(",") if x),
        docker_registry_mirror=args.docker_registry_mirror,
    )
    options = ControllerOptions(
        namespace=args.watch_namespace,
        sync_period=args.sync_period,
        registration_timeout=args.registration_timeout,
        registration_mode=args.registration_mode,
        drain_grace=args.drain_grace,
        runner_workers=args.runner_workers,
        pod=pod_options,
    )
    identity = env.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    async with (
        await KubeClient.connect(args.kubeconfig) as kube,
        GitHubClient(credentials, config=config, user_agent=f"runnerd/{__version__}") as github,
    ):
        elector = None
        if args.enable_leader_election:
            elector = LeaderElector(
                kube.lease_client(),
                namespace=args.leader_election_namespace,
                name=args.leader_election_id,
                identity=identity,
                lease_duration=args.leader_election_lease_duration,
                renew_deadline=args.leader_election_renew_deadline,
                retry_period=args.leader_election_retry_period,
            )
        controllers = build(kube=kube, github=github, options=options, elector=elector, identity=identity)
        remove = controllers.manager.install_signal_handlers()
        log.info(
            "runnerd %s controller starting (namespace %s, leader election %s, GitHub %s)",
            __version__,
            options.namespace or "all",
            "on" if elector else "off",
            config.api_url,
        )
        try:
            await controllers.manager.run()
        finally:
            remove()
    log.info("runnerd controller stopped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runnerd", description="GitHub Actions runners on Kubernetes")
    parser.add_argument("--version", action="version", version=f"runnerd {__version__}")
    sub = parser.add_subparsers(dest="command")
    add_controller_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "controller":
        setup_logging(args.log_level, args.log_format)
        return asyncio.run(run_controller(args, os.environ))
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
