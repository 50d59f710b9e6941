"""The ``runnerd`` command line.

  runnerd controller [flags]      the controller (ARC's flag names; credentials from the environment)
  runnerd controller --scale-sets the scale-set controllers and listeners only (credentials per
                                  AutoscalingRunnerSet); add --legacy to run both modes
  runnerd webhook-server [flags]  only the GitHub webhook endpoint (ARC's github-webhook-server)
  runnerd status [flags]          the runner fleet as tables (also: kubectl runnerd status)
  runnerd --version

The webhook secret comes from ``--github-webhook-secret-token`` or ``GITHUB_WEBHOOK_SECRET_TOKEN``.

GitHub credentials come from the environment, as ARC's chart provides them from its Secret:
``GITHUB_TOKEN``, or ``GITHUB_APP_ID`` + ``GITHUB_APP_INSTALLATION_ID`` + ``GITHUB_APP_PRIVATE_KEY``
(the PEM itself, or a path to it). They are never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from aiohttp import web

from runnerd import __version__, migrate, status
from runnerd.cli_audit import audit_settings, configure_audit
from runnerd.cli_autoscaling import configure_autoscaling
from runnerd.cli_cost import cost_settings
from runnerd.cli_flags import add_controller_parser, add_webhook_server_parser
from runnerd.controller.app import (
    build,
    build_scale_set_process,
    build_webhook_process,
    install_cost,
    install_scale_sets,
)
from runnerd.controller.common import ControllerOptions
from runnerd.controller.orphans import resolve_installation_label
from runnerd.controller.process import Controllers
from runnerd.controller.sizing import served as sizing_served
from runnerd.github import GitHubClient, GitHubConfig, load_credentials
from runnerd.github.actions.clients import ActionsClients
from runnerd.github.errors import CredentialsError, GitHubConfigError
from runnerd.kube.client import KubeClient
from runnerd.manifests.pod import PodOptions
from runnerd.runtime import LeaderElector
from runnerd.web import dashboard
from runnerd.web.server import Address, Servers, health_app, parse_address
from runnerd.web.webhook import WebhookServer

log = logging.getLogger("runnerd")

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


def endpoints(args: argparse.Namespace) -> dict[str, Address | None] | None:
    """The parsed addresses (None and an error logged when one is malformed or a secret is missing)."""
    try:
        found = {
            "webhook": parse_address(args.webhook_addr),
            "metrics": parse_address(args.metrics_addr),
            "health": parse_address(args.health_probe_bind_address),
        }
    except ValueError as exc:
        log.error("%s", exc)
        return None
    if found["webhook"] is not None and not args.github_webhook_secret_token:
        log.error("--webhook-addr needs --github-webhook-secret-token (or GITHUB_WEBHOOK_SECRET_TOKEN)")
        return None
    return found


async def serve(
    servers: Servers,
    addresses: Mapping[str, Address | None],
    apps: Mapping[str, Callable[[], web.Application]],
) -> None:
    """Start every endpoint that has an address; metrics and health share one server on one address."""
    health, metrics = addresses.get("health"), addresses.get("metrics")
    if health is not None and health == metrics:
        await servers.start("metrics+health", apps["metrics"](), health)
    else:
        for name in ("metrics", "health"):
            address = addresses.get(name)
            if address is not None:
                await servers.start(name, apps[name](), address)
    webhook = addresses.get("webhook")
    if webhook is not None:
        await servers.start("webhook", apps["webhook"](), webhook)


def ready_webhook(server: WebhookServer, ready: Callable[[], bool]) -> web.Application:
    """The webhook app, answering 503 until ``ready()`` (the caches it routes with have synced)."""
    server.ready = ready
    return server.app()


def listener_namespace(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """Where AutoscalingListeners live: the controller's namespace, as ARC's chart says it."""
    return env.get("CONTROLLER_MANAGER_POD_NAMESPACE") or env.get("POD_NAMESPACE") or args.watch_namespace


async def run_scale_set_controller(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``--scale-sets``: the scale-set controllers and listeners only; every AutoscalingRunnerSet
    names its own credentials Secret, so the process needs none and never watches the legacy kinds."""
    addresses = endpoints(args)
    if addresses is None:
        return 2
    options = ControllerOptions(namespace=args.watch_namespace, sync_period=args.sync_period)
    identity = env.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    async with await KubeClient.connect(args.kubeconfig) as kube:
        clients = ActionsClients()
        process = build_scale_set_process(
            kube=kube,
            options=options,
            clients=clients,
            elector=leader_elector(args, kube, identity),
            identity=identity,
            listener_namespace=listener_namespace(args, env),
        )
        manager, metrics = process.manager, process.metrics
        remove = manager.install_signal_handlers()
        log.info(
            "runnerd %s scale-set controller starting (namespace %s)", __version__, options.namespace or "all"
        )
        apps: dict[str, Callable[[], web.Application]] = {
            "metrics": lambda: health_app(ready=lambda: manager.ready, metrics=metrics),
            "health": lambda: health_app(ready=lambda: manager.ready),
        }
        try:
            async with Servers() as servers:
                await serve(servers, {**addresses, "webhook": None}, apps)
                await manager.run()
        finally:
            remove()
            await clients.close()
    log.info("runnerd controller stopped")
    return 0


async def run_controller(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.scale_sets and not args.legacy:
        return await run_scale_set_controller(args, env)
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
    addresses = endpoints(args)
    if addresses is None:
        return 2
    try:
        audit_settings(args)
    except ValueError as exc:
        log.error("--webhook-audit: %s", exc)
        return 2
    options = controller_options(args, config)
    identity = env.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    async with (
        await KubeClient.connect(args.kubeconfig) as kube,
        GitHubClient(credentials, config=config, user_agent=f"runnerd/{__version__}") as github,
    ):
        label = await resolve_installation_label(kube, args.installation_id, options.namespace)
        options = dataclasses.replace(options, pod=dataclasses.replace(options.pod, installation_label=label))
        if options.enable_sizing and not await sizing_served(kube, options.namespace):
            options = dataclasses.replace(options, enable_sizing=False)
        elector = leader_elector(args, kube, identity)
        controllers = build(
            kube=kube,
            github=github,
            options=options,
            elector=elector,
            identity=identity,
            runner_sets=args.runner_sets,
            recycle_volumes=args.volume_recycling,
        )
        autoscaling = controllers.autoscaling
        assert autoscaling is not None
        configure_autoscaling(controllers, args)
        configure_audit(controllers, args)
        if (cost := cost_settings(args, args.leader_election_namespace)) is not None:
            install_cost(controllers, cost)
        if args.scale_sets:
            controllers.scale_sets = install_scale_sets(
                controllers,
                clients=ActionsClients(),
                metrics=autoscaling.metrics,
                listener_namespace=listener_namespace(args, env),
            )
        remove = controllers.manager.install_signal_handlers()
        log.info(
            "runnerd %s controller starting (namespace %s, leader election %s, GitHub %s)",
            __version__,
            options.namespace or "all",
            "on" if elector else "off",
            config.api_url,
        )
        try:
            async with Servers() as servers:
                await serve(servers, addresses, controller_apps(controllers, args))
                await controllers.manager.run()
        finally:
            remove()
            await autoscaling.close()
            await controllers.clients.close()
            if controllers.scale_sets is not None:
                await controllers.scale_sets.close()
    log.info("runnerd controller stopped")
    return 0


def controller_options(args: argparse.Namespace, config: GitHubConfig) -> ControllerOptions:
    """The controllers' options from the flags (the installation label is filled in once connected)."""
    pod_options = PodOptions(
        runner_image=args.runner_image,
        docker_image=args.docker_image,
        docker_gid=args.docker_gid,
        runner_image_pull_secrets=tuple(args.runner_image_pull_secret),
        github_url=config.github_url,
        common_runner_labels=tuple(x for x in args.common_runner_labels.split(",") if x),
        docker_registry_mirror=args.docker_registry_mirror,
        service_account_per_runner=args.kubernetes_mode_service_accounts,
    )
    return ControllerOptions(
        namespace=args.watch_namespace,
        sync_period=args.sync_period,
        registration_timeout=args.registration_timeout,
        registration_mode=args.registration_mode,
        drain_grace=args.drain_grace,
        runner_workers=args.runner_workers,
        orphan_grace=args.orphan_grace,
        github_default_labels=tuple(x for x in args.github_default_labels.split(",") if x),
        runner_group_ttl=args.runner_group_ttl,
        credentials_refresh=args.credentials_refresh,
        enable_sizing=args.enable_sizing,
        reservation_journal=args.reservation_journal,
        pod=pod_options,
    )


def leader_elector(args: argparse.Namespace, kube: KubeClient, identity: str) -> LeaderElector | None:
    """The Lease-based elector (``None`` without ``--enable-leader-election``)."""
    if not args.enable_leader_election:
        return None
    return LeaderElector(
        kube.lease_client(),
        namespace=args.leader_election_namespace,
        name=args.leader_election_id,
        identity=identity,
        lease_duration=args.leader_election_lease_duration,
        renew_deadline=args.leader_election_renew_deadline,
        retry_period=args.leader_election_retry_period,
    )


def controller_apps(
    controllers: Controllers, args: argparse.Namespace
) -> dict[str, Callable[[], web.Application]]:
    """The controller process's HTTP apps by endpoint name, for :func:`serve`."""
    autoscaling = controllers.autoscaling
    assert autoscaling is not None
    manager = controllers.manager
    secret = args.github_webhook_secret_token or ""
    return {
        # /metrics, /healthz, /readyz and the dashboard (/ and /dashboard)
        "metrics": lambda: dashboard.app(controllers),
        "health": lambda: health_app(ready=lambda: manager.ready),
        "webhook": lambda: ready_webhook(
            autoscaling.webhook_server(secret, max_body=args.webhook_max_body), lambda: manager.ready
        ),
    }


async def run_webhook_server(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """ARC's separate webhook Deployment: writes capacity reservations; the controller scales.

    ``/healthz``, ``/readyz`` and ``/metrics`` are on ``--metrics-addr`` (and on
    ``--health-probe-bind-address`` when that is set too). GitHub credentials are optional: only
    ``--use-runner-groups-visibility`` needs them.
    """
    addresses = endpoints(args)
    if addresses is None:
        return 2
    if addresses["webhook"] is None:
        log.error("--webhook-addr cannot be 0 for the webhook server")
        return 2
    secret = args.github_webhook_secret_token or ""
    labels = tuple(x for x in f"{args.common_runner_labels},{args.github_default_labels}".split(",") if x)
    identity = env.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    github: GitHubClient | None = None
    if args.use_runner_groups_visibility:
        try:
            github = GitHubClient(
                load_credentials(credentials_from_env(env)),
                config=GitHubConfig.resolve(
                    enterprise_url=args.github_enterprise_url, api_url=args.github_url
                ),
            )
        except (CredentialsError, GitHubConfigError) as exc:
            log.error("%s (%s)", exc, exc.reason)
            return 2
    try:
        async with await KubeClient.connect(args.kubeconfig) as kube:
            process = build_webhook_process(
                kube=kube,
                namespace=args.watch_namespace,
                github=github,
                default_labels=labels,
                identity=identity,
                reservation_journal=args.reservation_journal,
            )
            ready = lambda: process.ready  # noqa: E731
            apps: dict[str, Callable[[], web.Application]] = {
                "metrics": lambda: health_app(ready=ready, metrics=process.metrics),
                "health": lambda: health_app(ready=ready),
                "webhook": lambda: ready_webhook(
                    process.webhook_server(secret, max_body=args.webhook_max_body), ready
                ),
            }
            if addresses["health"] is None:
                addresses["health"] = addresses["metrics"]
            remove = process.manager.install_signal_handlers()
            log.info(
                "runnerd %s webhook server starting (namespace %s)",
                __version__,
                args.watch_namespace or "all",
            )
            try:
                async with Servers() as servers:
                    await serve(servers, addresses, apps)
                    await process.manager.run()
            finally:
                remove()
                await process.writer.close()
    finally:
        if github is not None:
            await github.close()
    log.info("runnerd webhook server stopped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runnerd", description="GitHub Actions runners on Kubernetes")
    parser.add_argument("--version", action="version", version=f"runnerd {__version__}")
    sub = parser.add_subparsers(dest="command")
    add_controller_parser(sub)
    add_webhook_server_parser(sub)
    status.add_status_parser(sub)
    migrate.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "controller":
        setup_logging(args.log_level, args.log_format)
        return asyncio.run(run_controller(args, os.environ))
    if args.command == "webhook-server":
        setup_logging(args.log_level, args.log_format)
        return asyncio.run(run_webhook_server(args, os.environ))
    if args.command == "status":
        return asyncio.run(status.run_status(args, os.environ, sys.stdout))
    if args.command == "migrate-from-arc":
        setup_logging("warn", "text")
        return asyncio.run(migrate.run(args, credentials_from_env(os.environ), sys.stdout))
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
