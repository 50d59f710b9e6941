"""The webhook delivery audit: GitHub's own record of the hook's deliveries, read once a minute, and
the ``workflow_job`` deliveries it failed asked for again.

The leader runs it (a single-key controller) when ``--webhook-audit`` names the hook that delivers
to us, or one per hook that ``--webhook-audit auto`` (the default) found
(:mod:`runnerd.controller.hookdiscovery`). Each pass (every ``interval`` seconds, 60 by default)::

    GET {hook}/deliveries?per_page=100            newest first, until an attempt seen before
    POST {hook}/deliveries/{id}/attempts           for each failed workflow_job GUID (same GUID)

The rules (how far to page, what to redeliver, when it is healthy) are
:mod:`runnerd.reconcile.deliveryaudit`'s. Guarantees:

* Every call is spent from the safety-net poll's budget (the same sliding hour, the poll's ceiling,
  the same window the pull metric and the runner listings spend from); a pass that the budget
  stops is finished by the next one (the position in the listing moves only when a pass reached
  the attempts it saw before, so nothing is skipped).
* One pass per interval, however often the controller is woken (every HRA event enqueues its key:
  an early wake-up sends nothing). An idle hook costs one call per pass: 60 an hour by default. A
  burst costs one more per 100 attempts (about 3 per job: ``queued``, ``in_progress``,
  ``completed``), plus one per redelivery.
* A 403, 404, 5xx or malformed answer fails the pass: a warning names the hook and GitHub's status
  (never a credential), ``runnerd_webhook_audit_passes_total{outcome="failed"}`` counts it, and once
  no pass has succeeded for two intervals the audit is unhealthy
  (``runnerd_webhook_audit_healthy`` 0): the safety-net poll goes back to its own pace at once
  (``on_unhealthy`` enqueues it; :func:`runnerd.reconcile.pollpace.audited_bound`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from runnerd.controller.poller import POLL_KEY
from runnerd.controller.process import Controllers
from runnerd.github import GitHubClient, GitHubError
from runnerd.github.budget import CallWindow
from runnerd.reconcile.deliveryaudit import (
    INTERVAL,
    AuditMemory,
    HookRef,
    fresh,
    healthy,
    reached_seen,
)
from runnerd.runtime import Controller, Key, Result
from runnerd.web.metrics import Metrics

log = logging.getLogger(__name__)

AUDIT_KEY = Key("", "webhook-delivery-audit")
POLL_BOUND = 3600.0
"""The default long bound of the safety-net poll while the audit is healthy (seconds)."""


@dataclass(frozen=True)
class AuditSettings:
    hook: HookRef
    interval: float = INTERVAL
    poll_bound: float = POLL_BOUND
    """How long the safety-net poll may stretch while the audit is healthy."""
    lookback: float | None = None
    """How far back the first pass looks (``None``: ``poll_bound``)."""

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.poll_bound <= 0:
            raise ValueError("the audit's interval and the poll's long bound must be positive")


class DeliveryAudit:
    """One hook's delivery audit (see the module docstring); run as a single-key controller."""

    def __init__(
        self,
        *,
        github: GitHubClient,
        settings: AuditSettings,
        window: CallWindow,
        ceiling: Callable[[], int],
        metrics: Metrics,
        on_unhealthy: Callable[[], None] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.github = github
        self.settings = settings
        self.window = window
        self.ceiling = ceiling
        self.metrics = metrics
        self.on_unhealthy = on_unhealthy
        self._monotonic = monotonic
        self._wall = wall
        self.memory = AuditMemory()
        self.seen_id: int | None = None
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.passes = 0
        self.failures = 0
        self.calls = 0
        self.redeliveries = 0
        self._was_healthy = False
        self._next_pass = float("-inf")

    @property
    def bound(self) -> float:
        """The safety-net poll's long bound while the audit is healthy."""
        return self.settings.poll_bound

    def healthy(self) -> bool:
        return healthy(self.last_success, self._monotonic(), self.settings.interval)

    async def reconcile(self, key: Key) -> Result | None:
        wait = self._next_pass - self._monotonic()
        if wait > 0:  # woken by an HRA event before the interval: nothing is sent
            return Result(requeue_after=wait)
        self._next_pass = self._monotonic() + self.settings.interval
        try:
            outcome = await self._pass()
        except GitHubError as exc:
            outcome = "failed"
            self.failures += 1
            self.last_error = str(exc)
            log.warning("webhook delivery audit of hook %s failed: %s", self.settings.hook, exc)
        if outcome == "ok":
            self.passes += 1
            self.last_success = self._monotonic()
            self.last_error = None
        self.metrics.audit_passes.labels(outcome).inc()
        self._health_changed()
        return Result(requeue_after=self.settings.interval)

    def _health_changed(self) -> None:
        now_healthy = self.healthy()
        self.metrics.audit_healthy.set(1 if now_healthy else 0)
        if self._was_healthy and not now_healthy:
            log.warning(
                "webhook delivery audit of hook %s is unhealthy (%s): the safety-net poll keeps its own pace",
                self.settings.hook,
                self.last_error or "no pass succeeded for two intervals",
            )
            self.on_unhealthy()
        self._was_healthy = now_healthy

    def _budget_left(self) -> bool:
        return self.window.free_at(1, self.ceiling()) <= self._monotonic()

    async def _pass(self) -> str:
        """One pass: list what is new, redeliver what is due; ``ok`` or ``budget``."""
        since = self._wall() - (self.settings.lookback or self.settings.poll_bound)
        newest: int | None = None
        next_url: str | None = None
        while True:
            if not self._budget_left():
                return "budget"
            page, next_url = await self.github.list_hook_deliveries(self.settings.hook, next_url=next_url)
            self._spent()
            self.memory.observe(fresh(page, self.seen_id, since))
            if page:
                top = max(a.id for a in page)
                newest = top if newest is None else max(newest, top)
            if next_url is None or reached_seen(page, self.seen_id, since):
                break
        if newest is not None:
            self.seen_id = max(self.seen_id or 0, newest)
        for guid, attempt_id in self.memory.due():
            if not self._budget_left():
                return "budget"
            await self.github.redeliver_hook_delivery(self.settings.hook, attempt_id)
            self._spent()
            self.memory.redelivered(guid)
            self.redeliveries += 1
            self.metrics.audit_redeliveries.inc()
            log.info(
                "webhook delivery audit: asked GitHub to redeliver %s (attempt %s failed)", guid, attempt_id
            )
        return "ok"

    def _spent(self) -> None:
        self.window.spend(1)
        self.calls += 1


def install_delivery_audit(controllers: Controllers, settings: AuditSettings) -> DeliveryAudit:
    """Add the audit to a process with autoscaling: leader-only, one key, the poll's budget and
    ceiling, the poll told at once when the audit turns unhealthy."""
    autoscaling = controllers.autoscaling
    if autoscaling is None:
        raise ValueError("the webhook delivery audit needs HRA autoscaling (the safety-net poll)")
    poller, options = autoscaling.poller, autoscaling.options
    poll_ctl = autoscaling.poll_controller
    audit = DeliveryAudit(
        github=controllers.github,
        settings=settings,
        window=poller.window,
        ceiling=lambda: options.poll_max_calls_per_hour,
        metrics=autoscaling.metrics,
        on_unhealthy=lambda: poll_ctl.enqueue(POLL_KEY),
    )
    poller.audit = audit
    ctl = Controller("webhook-delivery-audit", audit.reconcile, workers=1)
    ctl.watch(autoscaling.hras, lambda obj: [AUDIT_KEY])
    controllers.manager.add_controller(ctl)
    return audit
