"""The ``runnerd controller`` flags of the webhook delivery audit (:mod:`runnerd.controller.deliveryaudit`).

``--webhook-audit auto`` (the default) finds the hooks that deliver ``workflow_job`` events to us
(:mod:`runnerd.controller.hookdiscovery`): the GitHub App's own webhook, else the served
organizations' and repositories' hooks; ``--webhook-audit-url`` keeps only the hooks whose URL
starts with a prefix. ``org/<org>/<hook id>`` | ``repo/<owner>/<repo>/<hook id>`` | ``app`` names
the hook instead; ``off`` turns the audit off (the safety-net poll keeps its own pace). The
credentials need the hooks' read and redeliver rights: a classic PAT with ``admin:org_hook``
(organization hooks) or ``admin:repo_hook``/``repo`` (repository hooks), an installation token with
``organization_hooks``/``repository_hooks`` write, or, for the App's hook, the GitHub App's key (the
App's own webhook is read with its JWT). Without them ``auto`` finds nothing, says so once, and
nothing changes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from runnerd.controller.deliveryaudit import POLL_BOUND, AuditSettings, DeliveryAudit, install_delivery_audit
from runnerd.controller.hookdiscovery import AutoAudit, AutoSettings, install_auto_audit
from runnerd.controller.process import Controllers
from runnerd.reconcile.deliveryaudit import INTERVAL, parse_hook

AUTO = "auto"
OFF = "off"


def add_audit_flags(p: argparse.ArgumentParser, duration: Callable[[str], float]) -> None:
    p.add_argument(
        "--webhook-audit",
        default=AUTO,
        metavar="HOOK",
        help="redeliver the workflow_job deliveries GitHub failed, read from the hooks' deliveries:"
        " auto (find the hooks that deliver workflow_job; the default), org/<org>/<hook id>,"
        " repo/<owner>/<repo>/<hook id>, app, or off",
    )
    p.add_argument(
        "--webhook-audit-url",
        default=None,
        metavar="PREFIX",
        help="with --webhook-audit auto: only hooks whose URL starts with this prefix",
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


def audit_settings(args: argparse.Namespace) -> AuditSettings | AutoSettings | None:
    """The audit's settings from the flags (``None``: ``--webhook-audit off``); ``ValueError`` when bad."""
    hook = (getattr(args, "webhook_audit", None) or "").strip()
    if not hook or hook.casefold() == OFF:
        return None
    if hook.casefold() == AUTO:
        return AutoSettings(
            interval=args.webhook_audit_interval,
            poll_bound=args.webhook_audit_poll_bound,
            url_prefix=getattr(args, "webhook_audit_url", None) or None,
        )
    return AuditSettings(
        parse_hook(hook), interval=args.webhook_audit_interval, poll_bound=args.webhook_audit_poll_bound
    )


def configure_audit(controllers: Controllers, args: argparse.Namespace) -> AutoAudit | DeliveryAudit | None:
    """Install the audit unless ``--webhook-audit off`` (after autoscaling is configured)."""
    settings = audit_settings(args)
    if isinstance(settings, AutoSettings):
        return install_auto_audit(controllers, settings)
    if settings is not None:
        return install_delivery_audit(controllers, settings)
    return None
