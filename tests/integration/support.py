"""Helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from ghsim import Simulator


async def wait_until(
    what: str,
    probe: Callable[[], Any],
    within: float = 30.0,
    guard: Callable[[], None] | None = None,
    *,
    state: Callable[[], object] | None = None,
) -> Any:
    """Poll ``probe`` (a function or coroutine function) until it returns something truthy; return it.

    Fails the test after ``within`` seconds, naming ``what`` (and ``state()``, if given, to say where
    things stood). ``guard`` runs before every poll and fails the test at once when waiting longer is
    pointless (e.g. a process under test has exited).
    """
    deadline = time.monotonic() + within
    while True:
        if guard is not None:
            guard()
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            suffix = f"; {state()}" if state is not None else ""
            pytest.fail(f"timed out after {within}s waiting for {what}{suffix}")
        await asyncio.sleep(0.1)


def job_of(sim: Simulator) -> Callable[[str], int | None]:
    """``job_of(runner_name)``: the id of the job the simulator has given that runner, if any."""

    def lookup(name: str) -> int | None:
        for runner in sim.world.runners.values():
            if runner.name == name:
                return runner.job_id
        return None

    return lookup
