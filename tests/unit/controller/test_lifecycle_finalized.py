"""The memo of finalized objects (:class:`runnerd.controller.lifecycle.Finalized`): held by uid,
bounded in age and in number, oldest dropped first."""

from __future__ import annotations

from typing import Any

import pytest

from runnerd.controller.lifecycle import Finalized
from tests.unit.controller.fakes import Clock


def obj(uid: str | None) -> dict[str, Any]:
    return {"metadata": {"name": "runner", "uid": uid} if uid is not None else {"name": "runner"}}


@pytest.mark.parametrize(
    ("added", "age", "asked", "held"),
    [
        pytest.param(["a"], 0.0, "a", True, id="just finalized"),
        pytest.param(["a"], 0.0, "b", False, id="another uid (a new object of the same name)"),
        pytest.param(["a"], 9.9, "a", True, id="within the ttl"),
        pytest.param(["a"], 10.0, "a", False, id="past the ttl"),
        pytest.param(["a", "b", "c"], 0.0, "a", False, id="over the limit: the oldest goes"),
        pytest.param(["a", "b", "c"], 0.0, "c", True, id="over the limit: the newest stays"),
        pytest.param(["a", "b", "a", "c"], 0.0, "a", True, id="added again: young again"),
        pytest.param([""], 0.0, "", False, id="no uid: never held"),
        pytest.param(["a"], 0.0, None, False, id="an object without a uid"),
    ],
)
def test_held_by_uid_within_age_and_number(
    added: list[str], age: float, asked: str | None, held: bool
) -> None:
    clock = Clock()
    memo = Finalized(clock, ttl=10.0, limit=2)
    for uid in added:
        memo.add(uid)
    clock.now += age
    assert memo.holds(obj(asked)) is held


def test_expired_entries_leave_on_the_next_add() -> None:
    clock = Clock()
    memo = Finalized(clock, ttl=10.0, limit=1_000)
    for uid in "abc":
        memo.add(uid)
    clock.now += 10.0
    memo.add("d")
    assert len(memo) == 1
