"""The simulator's parts wired together (no HTTP server here; see :mod:`ghsim.server`)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .auth import Authenticator
from .clock import Clock
from .config import SimConfig
from .model import Event, JobEvent, RunnerWake, World
from .ratelimit import RateLimiter
from .render import Renderer
from .webhooks import WebhookDispatcher


@dataclass
class Stats:
    """Request counts: per operation, per principal, per (operation, principal), per status, and per
    (operation, principal, status): what a benchmark needs to tell a 404 from a 204."""

    by_endpoint: Counter[str] = field(default_factory=Counter)
    by_principal: Counter[str] = field(default_factory=Counter)
    by_endpoint_principal: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    by_endpoint_principal_status: Counter[tuple[str, str, int]] = field(default_factory=Counter)

    def count(self, endpoint: str, principal: str, status: int) -> None:
        self.by_endpoint[endpoint] += 1
        self.by_principal[principal] += 1
        self.by_endpoint_principal[(endpoint, principal)] += 1
        self.by_status[status] += 1
        self.by_endpoint_principal_status[(endpoint, principal, status)] += 1

    def calls_by_status(self, principal: str) -> dict[str, dict[str, int]]:
        """``principal``'s requests: operation -> status code -> count."""
        out: dict[str, dict[str, int]] = {}
        for (endpoint, who, status), n in sorted(self.by_endpoint_principal_status.items()):
            if who == principal:
                out.setdefault(endpoint, {})[str(status)] = n
        return out

    def to_dict(self) -> dict[str, Any]:
        per: dict[str, dict[str, int]] = {}
        for (endpoint, principal), n in sorted(self.by_endpoint_principal.items()):
            per.setdefault(principal, {})[endpoint] = n
        return {
            "by_endpoint": dict(sorted(self.by_endpoint.items())),
            "by_token": dict(sorted(self.by_principal.items())),
            "by_token_endpoint": per,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
        }

    def reset(self) -> None:
        self.by_endpoint.clear()
        self.by_principal.clear()
        self.by_endpoint_principal.clear()
        self.by_status.clear()
        self.by_endpoint_principal_status.clear()


class Core:
    def __init__(
        self, clock: Clock, config: SimConfig | None = None, api_url: str = "http://127.0.0.1"
    ) -> None:
        self.clock = clock
        self.config = config or SimConfig()
        self.world = World(clock, self.config, sink=self._on_event)
        self.renderer = Renderer(self.world, api_url)
        self.auth = Authenticator(self.world)
        self.limiter = RateLimiter(clock, self.config)
        self.dispatcher = WebhookDispatcher(self.world, self.renderer)
        self.stats = Stats()
        self.wakers: dict[int, asyncio.Event] = {}
        self.tick_wakeup: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None

    def set_urls(self, api_url: str, html_url: str | None = None) -> None:
        self.renderer = Renderer(self.world, api_url, html_url)
        self.dispatcher.renderer = self.renderer

    def notify(self) -> None:
        """The world may have changed: release :meth:`wait_for` callers to re-check."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds; re-checked whenever the world changes.

        Wrap it in ``asyncio.timeout(...)``.  Changes are REST, admin and runner calls, ticks and
        model events, so a predicate over the world's state is seen as soon as it becomes true.
        """
        while not predicate():
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    def _on_event(self, event: Event) -> None:
        self.notify()
        if isinstance(event, JobEvent):
            self.dispatcher.on_job_event(event)
        elif isinstance(event, RunnerWake):
            waker = self.wakers.get(event.runner_id)
            if waker is not None:
                waker.set()

    def poke(self) -> None:
        """Something changed that may move the next deadline: wake the ticker."""
        self.notify()
        if self.tick_wakeup is not None:
            self.tick_wakeup.set()
