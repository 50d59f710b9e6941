"""GitHub's REST rate limits, as a pure bookkeeping class.

*Primary* limits are hourly budgets per principal and *resource* (``core``, and
``actions_runner_registration`` for registration/remove tokens and JIT configs).  A window opens at
the principal's first request and resets ``window_s`` later, like GitHub's ``x-ratelimit-reset``.

*Secondary* limits are the number of requests a principal has in flight, and REST "points" per
minute (GET costs ``read_points``, other methods ``write_points``).  Exceeding one is answered with
``retry-after``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .clock import Clock
from .config import SimConfig

RESOURCES = ("core", "actions_runner_registration")


@dataclass
class Bucket:
    limit: int
    used: int
    window_start: float
    window_s: float
    #: set by the admin API: pretend this many remain until the window resets
    override_remaining: int | None = None

    @property
    def reset(self) -> int:
        return math.ceil(self.window_start + self.window_s)

    @property
    def remaining(self) -> int:
        if self.override_remaining is not None:
            return max(0, self.override_remaining)
        return max(0, self.limit - self.used)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    used: int
    reset: int
    resource: str


@dataclass(frozen=True)
class SecondaryVerdict:
    allowed: bool
    retry_after: int = 0
    reason: str = ""


class RateLimiter:
    def __init__(self, clock: Clock, config: SimConfig) -> None:
        self.clock = clock
        self.config = config
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._inflight: dict[str, int] = {}
        self._points: dict[str, tuple[int, int]] = {}  # principal -> (minute, points used)

    # ---- primary ---------------------------------------------------------------------------

    def limit_for(self, principal_kind: str, resource: str) -> int:
        p = self.config.primary
        if resource == "actions_runner_registration":
            return p.registration
        return {"pat": p.pat, "installation": p.installation, "app": p.app}.get(principal_kind, p.anonymous)

    def bucket(self, principal: str, principal_kind: str, resource: str) -> Bucket:
        now = self.clock.now()
        key = (principal, resource)
        bucket = self._buckets.get(key)
        window = self.config.primary.window_s
        if bucket is None or now >= bucket.window_start + bucket.window_s:
            bucket = Bucket(self.limit_for(principal_kind, resource), 0, now, window)
            self._buckets[key] = bucket
        else:
            bucket.limit = self.limit_for(principal_kind, resource)
        return bucket

    def check(self, principal: str, principal_kind: str, resource: str) -> Verdict:
        """May the principal make a request now?  Does not consume anything."""
        b = self.bucket(principal, principal_kind, resource)
        allowed = not self.config.primary.enabled or b.remaining > 0
        return Verdict(allowed, b.limit, b.remaining, b.used, b.reset, resource)

    def consume(self, principal: str, principal_kind: str, resource: str) -> Verdict:
        b = self.bucket(principal, principal_kind, resource)
        if self.config.primary.enabled:
            b.used += 1
            if b.override_remaining is not None:
                b.override_remaining = max(0, b.override_remaining - 1)
        return Verdict(True, b.limit, b.remaining, b.used, b.reset, resource)

    def set_remaining(self, principal: str, principal_kind: str, resource: str, remaining: int) -> Bucket:
        b = self.bucket(principal, principal_kind, resource)
        b.override_remaining = max(0, remaining)
        b.used = max(b.used, b.limit - b.override_remaining)
        return b

    def reset(self, principal: str, resource: str | None = None) -> None:
        """Start fresh windows (every resource, unless one is named) for the principal."""
        for key in [k for k in self._buckets if k[0] == principal and (resource is None or k[1] == resource)]:
            del self._buckets[key]
        self._points.pop(principal, None)

    def snapshot(self, principal: str, principal_kind: str) -> dict[str, Bucket]:
        return {res: self.bucket(principal, principal_kind, res) for res in RESOURCES}

    # ---- secondary ---------------------------------------------------------------------------

    def enter(self, principal: str, method: str) -> SecondaryVerdict:
        """Account a request that starts now; call :meth:`leave` when it ends (if allowed)."""
        s = self.config.secondary
        if not s.enabled:
            self._inflight[principal] = self._inflight.get(principal, 0) + 1
            return SecondaryVerdict(True)
        inflight = self._inflight.get(principal, 0)
        if inflight >= s.max_concurrent:
            return SecondaryVerdict(False, s.retry_after_s, "concurrent requests")
        now = self.clock.now()
        minute = int(now // 60)
        cost = s.read_points if method in ("GET", "HEAD") else s.write_points
        m, used = self._points.get(principal, (minute, 0))
        if m != minute:
            used = 0
        if used + cost > s.points_per_minute:
            retry = max(1, math.ceil((minute + 1) * 60 - now))
            return SecondaryVerdict(False, max(retry, 1), "points per minute")
        self._points[principal] = (minute, used + cost)
        self._inflight[principal] = inflight + 1
        return SecondaryVerdict(True)

    def leave(self, principal: str) -> None:
        n = self._inflight.get(principal, 0) - 1
        if n <= 0:
            self._inflight.pop(principal, None)
        else:
            self._inflight[principal] = n
