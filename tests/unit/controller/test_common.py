"""Helpers shared by the controllers (``runnerd.controller.common``)."""

from __future__ import annotations

from typing import Any

import pytest

from runnerd.controller.common import ObjectMemo
from runnerd.runtime import Key


def test_object_memo_reuses_only_the_very_object() -> None:
    memo: ObjectMemo[int] = ObjectMemo()
    calls: list[Any] = []

    def work(obj: Any) -> int:
        calls.append(obj)
        return len(calls)

    a, same_content = {"metadata": {"resourceVersion": "1"}}, {"metadata": {"resourceVersion": "1"}}
    key, other = Key("ns", "a"), Key("ns", "b")
    assert memo.get(key, a, work) == 1
    assert memo.get(key, a, work) == 1
    assert memo.get(other, a, work) == 2  # by key
    assert memo.get(key, same_content, work) == 3  # a new object, whatever it holds
    assert memo.get(key, a, work) == 4  # one entry per key: the last object
    memo.forget(key)
    assert len(memo) == 1


def test_object_memo_remembers_nothing_when_the_work_raises() -> None:
    memo: ObjectMemo[int] = ObjectMemo()
    obj: dict[str, Any] = {}

    def fail(_: Any) -> int:
        raise ValueError("bad spec")

    with pytest.raises(ValueError, match="bad spec"):
        memo.get(Key("ns", "a"), obj, fail)
    assert len(memo) == 0
    assert memo.get(Key("ns", "a"), obj, lambda _: 7) == 7
