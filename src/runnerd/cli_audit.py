"""The ``runnerd controller`` flags of the webhook delivery audit (:mod:`runnerd.controller.deliveryaudit`).

``--webhook-audit org/<org>/<hook id>`` | ``repo/<owner>/<repo>/<hook id>`` | ``app`` names the hook
that delivers ``workflow_job`` events to us; without it nothing changes (the safety-net poll keeps
its own pace). The credentials need the hook's read and redeliver rights: a classic PAT with
``admin:org_hook`` (organization hooks) or ``admin:repo_hook``/``repo`` (repository hooks), an
installation token with ``organization_hooks``/``repository_hooks`` write, or, for ``app``, the
GitHub App's key (the App's own webhook is read with its JWT).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from runnerd.controller.deliveryaudit import POLL_BOUND, AuditSettings, install_delivery_audit
from runnerd.controller.process import Controllers
from runnerd.reconcile.deliveryaudit import INTERVAL, parse_hook


def add_audit_flags(p: argparse.ArgumentParser, duration: Callable[[str], float]) -> None:
    p.add_argument(
        "--webhook-audit",
        default=None,
        metavar="HOOK",
        help="redeliver the workflow_job deliveries GitHub failed, read from this hook's deliveries:"
        " org/<org>/<hook id>, repo/<owner>/<repo>/<hook id> or app",
    )
    p.add_argument(
        "--webhook-audit-interval",
        type=duration,
        default=INTERVAL,
        help="seconds between two passes of the delivery audit",
    )
    p.add_argument(
        "--webhook-audit-poll-bound",
        type=duration,
        default=POLL_BOUND,
        help="while the audit is healthy, the safety-net poll may stretch to this long",
    )


def audit_settings(args: argparse.Namespace) -> AuditSettings | None:
    """The audit's settings from the flags (``None``: no ``--webhook-audit``); ``ValueError`` when bad."""
    hook = getattr(args, "webhook_audit", None)
    if not hook:
        return None
    return AuditSettings(
        parse_hook(hook), interval=args.webhook_audit_interval, poll_bound=args.webhook_audit_poll_bound
    )


def configure_audit(controllers: Controllers, args: argparse.Namespace) -> None:
    """Install the audit when ``--webhook-audit`` is given (after autoscaling is configured)."""
    settings = audit_settings(args)
    if settings is not None:
        install_delivery_audit(controllers, settings)
