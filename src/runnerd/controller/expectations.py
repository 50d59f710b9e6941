"""What this process wrote that its informers do not show yet, and gaps it is holding.

* :class:`Expectations`: names of child objects an owner created or deleted, remembered until the
  informer shows the change (or ``EXPECTATION_TTL`` passes), so a quick second reconcile never creates
  a child twice nor counts a deleted one as live.
* :class:`ReplacementHolds`: ``effectiveTime`` holds; a finished ephemeral runner is not replaced
  until the autoscaler decides again (see :func:`runnerd.reconcile.runnerreplicaset.replacement_hold`).

Time comes from the clock each is given (monotonic in the controllers, the loop's in tests).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from runnerd.reconcile.runnerreplicaset import FillMark, replacement_hold
from runnerd.runtime import Key

logger = logging.getLogger(__name__)

EXPECTATION_TTL = 30.0
REPLACEMENT_HOLD = 30.0
"""At most this long a finished ephemeral runner's gap waits for the autoscaler's next decision."""


class Expectations:
    """Names created or deleted by this process that the informer has not shown yet."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._created: dict[Key, dict[str, float]] = {}
        self._deleted: dict[Key, dict[str, float]] = {}

    def created(self, owner: Key, name: str) -> None:
        self._created.setdefault(owner, {})[name] = self._clock()

    def deleted(self, owner: Key, name: str) -> None:
        self._deleted.setdefault(owner, {})[name] = self._clock()

    def cancel(self, owner: Key, name: str) -> None:
        """A creation that certainly did not happen."""
        self._created.get(owner, {}).pop(name, None)

    def pending_creations(self, owner: Key, seen: set[str]) -> list[str]:
        return self._prune(self._created, owner, lambda n: n not in seen)

    def pending_deletions(self, owner: Key, live: set[str]) -> set[str]:
        return set(self._prune(self._deleted, owner, lambda n: n in live))

    def forget(self, owner: Key) -> None:
        self._created.pop(owner, None)
        self._deleted.pop(owner, None)

    def _prune(
        self, table: dict[Key, dict[str, float]], owner: Key, still_pending: Callable[[str], bool]
    ) -> list[str]:
        entries = table.get(owner, {})
        now = self._clock()
        for name in list(entries):
            if not still_pending(name) or now - entries[name] > EXPECTATION_TTL:
                del entries[name]
        return list(entries)


class ReplacementHolds:
    """Per owner: what it last filled up to, and since when a gap is held (see
    :func:`runnerd.reconcile.runnerreplicaset.replacement_hold`). In memory: after a restart the first gap is
    filled (at most one spare runner per finished one)."""

    def __init__(self, clock: Callable[[], float], max_hold: float = REPLACEMENT_HOLD) -> None:
        self._clock = clock
        self.max_hold = max_hold
        self._filled: dict[Key, FillMark] = {}
        self._deficit_since: dict[Key, float] = {}
        self.held = 0
        """Gaps held (each counted once), for tests and the benchmark."""

    def forget(self, key: Key) -> None:
        self._filled.pop(key, None)
        self._deficit_since.pop(key, None)

    def check(
        self, key: Key, ephemeral: bool, effective_time: dt.datetime | None, desired: int, missing: int
    ) -> tuple[int, float | None]:
        """``(runners to create now, monotonic time the hold ends or None)``."""
        effective = effective_time.timestamp() if effective_time is not None else None
        mark = self._filled.get(key)
        if mark is not None and desired < mark.desired:
            mark = self._filled[key] = FillMark(mark.effective_time, desired)
        filled = None
        if effective is not None:
            filled = FillMark(max(effective, mark.effective_time if mark else effective), desired)
        if missing > 0:
            now = self._clock()
            hold = replacement_hold(
                ephemeral=ephemeral,
                effective_time=effective,
                desired=desired,
                mark=mark,
                deficit_since=self._deficit_since.get(key),
                now=now,
                max_hold=self.max_hold,
            )
            if hold.held:
                if key not in self._deficit_since:
                    self._deficit_since[key] = now
                    self.held += 1
                    logger.debug("%s: %d missing runner(s) held: %s", key, missing, hold.reason)
                return 0, hold.until
        self._deficit_since.pop(key, None)
        if filled is not None:  # full for this decision once created (the first time after a start too)
            self._filled[key] = filled
        return max(missing, 0), None
