"""Runtime unit tests run on a virtual-time event loop: sleeps and timeouts take no real time.

The loop's clock only moves when every task is waiting on a timer; it then jumps to the next timer.
So a test of a 15-second lease or a 1000-second back-off runs in milliseconds, deterministically.
These tests do no real I/O; a test that waits on nothing at all hangs and is killed by pytest-timeout.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Mapping

import pytest

from tests.unit.runtime.fakes import LoopFactory


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:
            return super().select(None)  # no timers at all: only real I/O (e.g. threads) can wake us
        self.now += max(timeout, 0.0)
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, LoopFactory]:
    return {"virtual-time": VirtualTimeLoop}


@pytest.fixture(autouse=True)
def every_task_finished(no_leaked_tasks: None) -> None:
    """Every test here ends with no task of its own left running (see tests/conftest.py)."""
