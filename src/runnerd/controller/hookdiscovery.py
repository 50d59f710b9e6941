"""The delivery audit without a hook id (``--webhook-audit auto``, the default): find the hooks that
deliver ``workflow_job`` to us, audit each, and tell the safety-net poll it may stretch only while
they cover every scope served and all are healthy.

The leader runs it as the audit's single-key controller (:func:`install_auto_audit`). Each wake-up
recomputes the scopes the webhook-scaled targets serve (no call) and, when
:func:`runnerd.reconcile.hookdiscovery.due` says so, discovers::

    GET /app/hook/config                 with GitHub App credentials (the App's JWT)
    GET /orgs/{org}/hooks                 per organization served, when the App has no webhook or with a PAT
    GET /repos/{owner}/{repo}/hooks       per repository target whose owner showed no matching hook

then runs one :class:`~runnerd.controller.deliveryaudit.DeliveryAudit` per hook found (its own
interval, memory and position; one found again keeps them). Guarantees:

* Discovery runs at the first pass, when the scopes change, and at most every ``retry`` seconds
  (600 by default) while it found nothing, not every scope, or could not finish, or while the audit
  of a found hook fails (a hook deleted: 404): a few calls per scope change, none per job. Every
  call is spent from the safety-net poll's budget, like the audit's own.
* A listing answered 403 or 404 (the token may not read the scope's hooks) is skipped and named in
  the reason; a 5xx, a connection error or the budget fails the discovery (retried as above).
* No hook found: the audit is *unavailable*; one warning per distinct reason (listing paths and
  status codes only, never a credential), ``runnerd_webhook_audit_discoveries_total{outcome}``,
  ``runnerd_webhook_audit_hooks`` 0 and ``runnerd_webhook_audit_healthy`` 0, and :meth:`healthy`
  stays false: the poll keeps exactly the pace it has without the audit.
* Hooks found for some scopes only (*partial*): they are audited (failed deliveries redelivered),
  but :meth:`healthy` stays false, so the poll's pace is unchanged for every scope.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from runnerd.controller.deliveryaudit import AUDIT_KEY, POLL_BOUND, AuditSettings, DeliveryAudit
from runnerd.controller.poller import POLL_KEY
from runnerd.controller.process import Controllers
from runnerd.github import GitHubClient, GitHubError
from runnerd.github.budget import CallWindow
from runnerd.github.credentials import GitHubAppCredentials
from runnerd.github.errors import NotFoundError, PermissionDeniedError
from runnerd.reconcile.deliveryaudit import INTERVAL, HookRef
from runnerd.reconcile.hookdiscovery import (
    MAX_HOOKS,
    RETRY,
    DiscoveryState,
    HookInfo,
    Listing,
    Outcome,
    Scopes,
    choose,
    due,
    listings,
    matches,
    repo_listings,
    scopes_of,
    uncovered,
    verdict,
)
from runnerd.runtime import Controller, Key, Result
from runnerd.web.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutoSettings:
    """``--webhook-audit auto``: the audit's interval and long bound, and how discovery looks."""

    interval: float = INTERVAL
    poll_bound: float = POLL_BOUND
    url_prefix: str | None = None
    """``--webhook-audit-url``: only hooks whose URL starts with it."""
    retry: float = RETRY
    max_hooks: int = MAX_HOOKS

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.poll_bound <= 0 or self.retry <= 0 or self.max_hooks < 1:
            raise ValueError("the audit's interval, long bound and retry must be positive")


class BudgetSpent(GitHubError):
    """The poll's hourly ceiling stopped a discovery (retried later)."""


class AutoAudit:
    """Discovery plus one audit per hook found (see the module docstring)."""

    def __init__(
        self,
        *,
        github: GitHubClient,
        settings: AutoSettings,
        scopes: Callable[[], Scopes],
        make_audit: Callable[[AuditSettings], DeliveryAudit],
        window: CallWindow,
        ceiling: Callable[[], int],
        metrics: Metrics,
        on_unhealthy: Callable[[], None] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.github = github
        self.settings = settings
        self.scopes = scopes
        self.make_audit = make_audit
        self.window = window
        self.ceiling = ceiling
        self.metrics = metrics
        self.on_unhealthy = on_unhealthy
        self._monotonic = monotonic
        self.state = DiscoveryState()
        self.audits: dict[HookRef, DeliveryAudit] = {}
        self.discoveries = 0
        self.calls = 0
        self.reason = "not discovered yet"
        self._logged: str | None = None
        self._was_healthy = False

    @property
    def bound(self) -> float:
        return self.settings.poll_bound

    def healthy(self) -> bool:
        """Every served scope is covered by an audited hook and every such audit is healthy."""
        return (
            self.state.outcome.complete
            and bool(self.audits)
            and all(a.healthy() for a in self.audits.values())
        )

    @property
    def redeliveries(self) -> int:
        return sum(a.redeliveries for a in self.audits.values())

    async def reconcile(self, key: Key) -> Result | None:
        scopes = self.scopes()
        failing = any(a.last_error is not None for a in self.audits.values())
        go, why = due(self.state, scopes, self._monotonic(), self.settings.retry, failing)
        if go:
            await self._discover(scopes, why)
        waits = [self.settings.interval]  # the scopes are looked at again (no call) every interval
        for audit in list(self.audits.values()):
            result = await audit.reconcile(key)
            if result is not None and result.requeue_after is not None:
                waits.append(result.requeue_after)
        self._publish()
        return Result(requeue_after=max(min(waits), 0.001))

    def _publish(self) -> None:
        now_healthy = self.healthy()
        self.metrics.audit_healthy.set(1 if now_healthy else 0)
        self.metrics.audit_hooks.set(len(self.audits))
        if self._was_healthy and not now_healthy:
            self.on_unhealthy()
        self._was_healthy = now_healthy

    async def _discover(self, scopes: Scopes, why: str) -> None:
        self.discoveries += 1
        log.debug("webhook delivery audit: discovering hooks (%s)", why)
        try:
            outcome = await self._find(scopes)
        except GitHubError as exc:
            self.state = dataclasses.replace(self.state, scopes=scopes, at=self._monotonic(), failed=True)
            self.metrics.audit_discoveries.labels("failed").inc()
            self._report(f"hook discovery failed: {exc}")
            return
        self.state = DiscoveryState(scopes, self._monotonic(), outcome, failed=False)
        state, reason = verdict(outcome)
        if scopes.empty and not outcome.available:
            state, reason = "unavailable", "no webhook-scaled HorizontalRunnerAutoscaler yet"
        self.metrics.audit_discoveries.labels(state).inc()
        self._adopt(outcome.hooks)
        self._report(reason, quiet=state == "covered" or scopes.empty)

    def _adopt(self, hooks: tuple[HookRef, ...]) -> None:
        """Keep the audits of hooks found again (their memory and position), start the new ones."""
        kept = {ref: audit for ref, audit in self.audits.items() if ref in hooks}
        for ref in hooks:
            if ref not in kept:
                kept[ref] = self.make_audit(
                    AuditSettings(ref, interval=self.settings.interval, poll_bound=self.settings.poll_bound)
                )
        self.audits = kept

    def _report(self, reason: str, *, quiet: bool = False) -> None:
        self.reason = reason
        if reason == self._logged:
            return
        self._logged = reason
        if quiet:
            log.info("webhook delivery audit: %s", reason)
        else:
            log.warning(
                "webhook delivery audit: %s; the safety-net poll keeps its own pace (--webhook-audit=off "
                "silences this)",
                reason,
            )

    async def _find(self, scopes: Scopes) -> Outcome:
        app = isinstance(self.github.credentials, GitHubAppCredentials)
        if app:
            self._spend()
            if await self.github.get_app_hook_url():
                hooks = (HookRef("app"),)
                return Outcome(hooks=hooks, uncovered=tuple(uncovered(scopes, hooks)))
        found: list[HookInfo] = []
        unreadable: list[tuple[Listing, int]] = []
        for listing in listings(scopes, app=False):
            found += await self._read(listing, unreadable)
        prefix = self.settings.url_prefix
        with_hooks = {h.owner.casefold() for h in found if matches(h, prefix)}
        for listing in repo_listings(scopes, with_hooks):
            found += await self._read(listing, unreadable)
        chosen, left_out = choose(found, prefix, self.settings.max_hooks)
        return Outcome(
            hooks=tuple(chosen),
            left_out=tuple(left_out),
            unreadable=tuple(unreadable),
            uncovered=tuple(uncovered(scopes, chosen)),
        )

    async def _read(self, listing: Listing, unreadable: list[tuple[Listing, int]]) -> list[HookInfo]:
        self._spend()
        try:
            if listing.kind == "org":
                return await self.github.list_hooks(listing.owner)
            return await self.github.list_hooks(listing.owner, listing.repo)
        except (PermissionDeniedError, NotFoundError) as exc:
            unreadable.append((listing, exc.status))
            return []

    def _spend(self) -> None:
        if self.window.free_at(1, self.ceiling()) > self._monotonic():
            raise BudgetSpent("the safety-net poll's hourly budget is spent")
        self.window.spend(1)
        self.calls += 1


def served_scopes(controllers: Controllers) -> Scopes:
    """The scopes the webhook-scaled targets serve (their runner configs)."""
    autoscaling = controllers.autoscaling
    if autoscaling is None:
        return Scopes()
    configs = (t.target.config for t in autoscaling.poller.sink.targets())
    return scopes_of((c.organization, c.repository, c.enterprise) for c in configs)


def install_auto_audit(controllers: Controllers, settings: AutoSettings) -> AutoAudit:
    """Add the discovering audit to a process with autoscaling: leader-only, one key (woken by HRA
    events and its own requeue), the poll's budget and ceiling, the poll told when it turns unhealthy."""
    autoscaling = controllers.autoscaling
    if autoscaling is None:
        raise ValueError("the webhook delivery audit needs HRA autoscaling (the safety-net poll)")
    poller, options = autoscaling.poller, autoscaling.options
    poll_ctl = autoscaling.poll_controller

    def ceiling() -> int:
        return options.poll_max_calls_per_hour

    def make_audit(hook: AuditSettings) -> DeliveryAudit:
        return DeliveryAudit(
            github=controllers.github,
            settings=hook,
            window=poller.window,
            ceiling=ceiling,
            metrics=autoscaling.metrics,
        )

    audit = AutoAudit(
        github=controllers.github,
        settings=settings,
        scopes=lambda: served_scopes(controllers),
        make_audit=make_audit,
        window=poller.window,
        ceiling=ceiling,
        metrics=autoscaling.metrics,
        on_unhealthy=lambda: poll_ctl.enqueue(POLL_KEY),
    )
    poller.audit = audit
    ctl = Controller("webhook-delivery-audit", audit.reconcile, workers=1)
    ctl.watch(autoscaling.hras, lambda obj: [AUDIT_KEY])
    controllers.manager.add_controller(ctl)
    return audit
