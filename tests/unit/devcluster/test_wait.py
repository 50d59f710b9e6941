"""The one wait helper: returns the probe's first truthy value, fails naming what and where."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from devcluster.wait import WaitTimeout, wait_until


def counting(values: list[Any]) -> Callable[[], Any]:
    it = iter(values)
    return lambda: next(it)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([0, None, "", 7], 7), ([["x"]], ["x"]), ([False, True], True)],
)
async def test_returns_the_first_truthy_value(values: list[Any], expected: Any) -> None:
    assert await wait_until("a value", counting(values), 5, step=0.001) == expected


async def test_awaits_a_coroutine_probe() -> None:
    calls = itertools.count()

    async def probe() -> int:
        return next(calls)

    assert await wait_until("the second call", probe, 5, step=0.001) == 1


async def test_fails_naming_what_and_where() -> None:
    with pytest.raises(WaitTimeout, match=r"timed out after 0.01s waiting for nothing; state 3"):
        await wait_until("nothing", lambda: False, 0.01, step=0.001, state=lambda: "state 3")


async def test_a_failing_guard_ends_the_wait_at_once() -> None:
    def guard() -> None:
        raise RuntimeError("the process exited")

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RuntimeError, match="exited"):
        await wait_until("never", lambda: False, 30, guard)
    assert loop.time() - started < 1
