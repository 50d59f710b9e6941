"""The one wait-for-condition helper of the dev tools, the tests and the benches.

Guarantees: ``probe`` (a function or a coroutine function) is polled every ``step`` seconds of the
running loop's clock (so under a virtual-time loop a wait costs no real time) until it returns
something truthy, which is returned. After ``within`` seconds it raises :class:`WaitTimeout` (an
``AssertionError``: in a test it fails the test), naming ``what`` and, if given, ``state()`` so the
failure says where things stood. ``guard`` runs before every poll and raises at once when waiting
longer is pointless (e.g. a process under test has exited).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class WaitTimeout(AssertionError):
    """A condition did not hold in time."""


async def wait_until(
    what: str,
    probe: Callable[[], Any],
    within: float = 30.0,
    guard: Callable[[], None] | None = None,
    *,
    state: Callable[[], object] | None = None,
    step: float = 0.1,
) -> Any:
    """Poll ``probe`` until it returns something truthy; return that value (see the module doc)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if guard is not None:
            guard()
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            suffix = f"; {state()}" if state is not None else ""
            raise WaitTimeout(f"timed out after {within}s waiting for {what}{suffix}")
        await asyncio.sleep(step)
