"""What GitHub says about our runners: one listing per scope, shared by every Runner of that scope.

A listing costs one API call per 100 runners, and an unchanged one costs nothing against the rate
limit (the client sends ``If-None-Match``). Concurrent readers of a stale listing share a single
refresh. Runners still registering ask for a fresh listing (a few seconds old at most); everyone
else accepts an older one, so an idle installation polls slowly. With a ``budget`` (the autoscaler
sets the call window its metric and safety-net poll spend from), every listing is spent there too.

**Cost rule for large scopes.** A listing of ``P`` pages (100 runners a page) is not refreshed
sooner than ``spacing * (P - 1)`` seconds after the previous one, and never held longer than
``period`` (the sync period) for that reason: asking for freshness costs at most one call per
``spacing`` seconds per scope, so a registration wave of 1,000 runners costs a listing per sync
period, not one every few seconds. A scope of up to 100 runners is unaffected. What a stale listing
cannot say is covered by the webhooks: a runner that a ``workflow_job`` delivery names as running a
job is ``BUSY`` whatever the listing says, also when the listing (made before it registered) does
not show it yet; that hint is dropped by a ``completed`` delivery, or by a listing started after it
that no longer shows the runner. Nothing that removes a runner relies on freshness alone: a drain
grace and GitHub's 422 on ``DELETE`` guard a runner that takes a job (:mod:`runnerd.reconcile.lifecycle`).

Two bounded memories spare GitHub calls for runners GitHub has already removed (an ephemeral runner
is removed by GitHub after its one job):

* *finished* registrations: a ``workflow_job`` ``completed`` webhook named the runner (name and id).
  An ephemeral runner takes exactly one job, so its job is over and GitHub removes its registration.
* *gone* registrations: GitHub answered a call about the runner with 404, or we removed it ourselves.
  Neither is asked about again.

Each holds at most :data:`MEMORY` entries (the oldest are dropped: a dropped entry only costs the
call it would have saved).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from runnerd.github import GitHubClient, Scope
from runnerd.github.budget import CallWindow, pages
from runnerd.github.models import Runner as GitHubRunner
from runnerd.reconcile.lifecycle import GitHubState

MEMORY = 10_000
"""Most entries in each memory of finished and gone registrations."""
SPACING = 6.0
"""Seconds per page beyond the first that a scope's listing is at least held (the cost rule)."""


def held_for(max_age: float, runners: int, *, spacing: float, period: float) -> float:
    """How old a listing of ``runners`` runners may be served when ``max_age`` was asked (the cost rule)."""
    return max(max_age, min(period, spacing * (pages(runners) - 1)))


@dataclass
class Listing:
    fetched_at: float
    runners: dict[str, GitHubRunner] = field(default_factory=dict)

    def state(self, name: str) -> GitHubState:
        runner = self.runners.get(name)
        if runner is None:
            return GitHubState.ABSENT
        if runner.busy:
            return GitHubState.BUSY
        return GitHubState.IDLE if runner.status == "online" else GitHubState.OFFLINE


class RunnerDirectory:
    def __init__(self, github: GitHubClient, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._github = github
        self._clock = clock
        self._listings: dict[Scope, Listing] = {}
        self._inflight: dict[Scope, asyncio.Future[Listing]] = {}
        self._busy_hints: dict[tuple[Scope, str], float] = {}  # -> when the webhook said it
        self._listeners: list[Callable[[Scope, str], None]] = []
        self._finished: OrderedDict[tuple[str, int], float] = OrderedDict()  # (name, id) -> when
        self._gone: OrderedDict[tuple[Scope, int], None] = OrderedDict()
        self.refreshes = 0
        self.budget: CallWindow | None = None
        self.spacing = SPACING
        self.period = 60.0
        """The longest a listing is held by the cost rule (the controller sets its sync period)."""

    def cached(self, scope: Scope) -> Listing | None:
        return self._listings.get(scope)

    def scopes(self) -> Mapping[Scope, Listing]:
        return dict(self._listings)

    def state(self, scope: Scope, name: str) -> GitHubState:
        """The latest known state (``UNKNOWN`` before the first listing), with webhook hints applied."""
        listing = self._listings.get(scope)
        if listing is None:
            return GitHubState.UNKNOWN
        state = listing.state(name)
        if (scope, name) in self._busy_hints and state is not GitHubState.BUSY:
            return GitHubState.BUSY  # a webhook named it running a job (after this listing, if absent)
        return state

    def runner_id(self, scope: Scope, name: str) -> int | None:
        listing = self._listings.get(scope)
        runner = listing.runners.get(name) if listing else None
        return runner.id if runner else None

    def hint_busy(self, scope: Scope, name: str, busy: bool) -> None:
        """A webhook said this runner started (or finished) a job; faster than the next listing."""
        if busy:
            self._busy_hints[(scope, name)] = self._clock()
        else:
            self._busy_hints.pop((scope, name), None)
        for listener in self._listeners:
            listener(scope, name)

    def sibling(self, github: GitHubClient) -> RunnerDirectory:
        """A directory for other credentials (``githubAPICredentialsFrom``) whose hints wake the same
        listeners as this one's (the controllers re-reconcile the runner either way)."""
        other = RunnerDirectory(github, clock=self._clock)
        other._listeners = self._listeners
        other.spacing, other.period = self.spacing, self.period
        return other

    def on_hint(self, listener: Callable[[Scope, str], None]) -> None:
        """Call ``listener(scope, runner_name)`` on every hint (the controller re-reconciles that runner)."""
        self._listeners.append(listener)

    def hint_finished(self, name: str, runner_id: int) -> None:
        """A ``completed`` webhook named this runner: the registration ``runner_id`` ran its job."""
        key = (name, runner_id)
        self._finished[key] = self._clock()
        self._finished.move_to_end(key)
        while len(self._finished) > MEMORY:
            self._finished.popitem(last=False)

    def finished_age(self, name: str, runner_id: int | None) -> float | None:
        """Seconds since a ``completed`` webhook named this registration (``None``: none did)."""
        if runner_id is None:
            return None
        at = self._finished.get((name, runner_id))
        return None if at is None else max(0.0, self._clock() - at)

    def forget(self, scope: Scope, name: str) -> None:
        """The runner was removed from GitHub by us."""
        listing = self._listings.get(scope)
        if listing is not None:
            listing.runners.pop(name, None)
        self._busy_hints.pop((scope, name), None)

    def mark_gone(self, scope: Scope, name: str, runner_id: int) -> None:
        """GitHub has no registration ``runner_id`` any more (we removed it, or it answered 404):
        forget it, and make no further call about it (:meth:`gone`)."""
        self.forget(scope, name)
        key = (scope, runner_id)
        self._gone[key] = None
        self._gone.move_to_end(key)
        while len(self._gone) > MEMORY:
            self._gone.popitem(last=False)

    def gone(self, scope: Scope, runner_id: int) -> bool:
        """GitHub told us the registration ``runner_id`` no longer exists."""
        return (scope, runner_id) in self._gone

    async def refresh(self, scope: Scope, *, max_age: float) -> Listing:
        """A listing at most ``max_age`` seconds old, or as old as the cost rule holds a large one (one
        shared request when several ask at once)."""
        listing = self._listings.get(scope)
        if listing is not None:
            held = held_for(max_age, len(listing.runners), spacing=self.spacing, period=self.period)
            if self._clock() - listing.fetched_at <= held:
                return listing
        inflight = self._inflight.get(scope)
        if inflight is not None:
            return await asyncio.shield(inflight)
        future: asyncio.Future[Listing] = asyncio.get_running_loop().create_future()
        self._inflight[scope] = future
        try:
            started = self._clock()
            try:
                runners = await self._github.list_runners(scope)
            except BaseException:
                if self.budget is not None:
                    self.budget.spend(1)
                raise
            if self.budget is not None:
                self.budget.spend(pages(len(runners)))
            listing = Listing(started, {r.name: r for r in runners})
            self._listings[scope] = listing
            self.refreshes += 1
            for (hint_scope, name), hinted_at in list(self._busy_hints.items()):
                if hint_scope == scope and name not in listing.runners and hinted_at < started:
                    self._busy_hints.pop((hint_scope, name), None)
            future.set_result(listing)
            return listing
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self._inflight.pop(scope, None)
