"""template_hash: deterministic, order-insensitive for keys, sensitive to every value."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest

from runnerd.reconcile.hashing import canonical_json, is_label_value, label_value, template_hash
from tests.unit.manifests.podkit import spec

RICH: dict[str, Any] = spec(
    {
        "repository": "octo/mlops",
        "labels": ["self-hosted", "arc-runner", "gpu"],
        "group": "ml",
        "ephemeral": True,
        "image": "summerwind/actions-runner-dind:latest",
        "dockerdWithinRunnerContainer": True,
        "dockerMTU": 1400,
        "volumeSizeLimit": "4Gi",
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        "resources": {"limits": {"nvidia.com/gpu": 1, "cpu": "4"}, "requests": {"cpu": "2"}},
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "terminationGracePeriodSeconds": 60,
    }
).to_dict()


def test_golden_value_is_stable_across_processes_and_versions() -> None:
    # Computed once; a change here means every existing runner template would look changed.
    assert (
        template_hash({"repository": "octo/mlops", "labels": ["self-hosted", "arc-runner"]}) == "ce91ab040f"
    )
    assert canonical_json({"b": 1, "a": [True, None, 1.0, "é"]}) == '{"a":[true,null,1,"é"],"b":1}'


def test_shape_is_label_safe() -> None:
    h = template_hash(RICH)
    assert re.fullmatch(r"[0-9a-f]{10}", h)
    assert is_label_value(h)


def test_key_order_does_not_matter() -> None:
    reordered = dict(reversed(list(RICH.items())))
    reordered["resources"] = {"requests": {"cpu": "2"}, "limits": {"cpu": "4", "nvidia.com/gpu": 1}}
    assert template_hash(reordered) == template_hash(RICH)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param({"x": 1, "labels": []}, {"x": 1}, id="empty-list-is-absent"),
        pytest.param({"x": 1, "image": None}, {"x": 1}, id="none-is-absent"),
        pytest.param({"x": 1.0}, {"x": 1}, id="integral-float"),
    ],
)
def test_equivalent_forms_hash_alike(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert template_hash(a) == template_hash(b)


def test_list_order_and_empty_objects_matter() -> None:
    assert template_hash({"l": ["a", "b"]}) != template_hash({"l": ["b", "a"]})
    assert template_hash({"v": {"emptyDir": {}}}) != template_hash({"v": {}})
    assert template_hash({"x": 1}) != template_hash({"x": "1"})
    assert template_hash({"x": True}) != template_hash({"x": 1})


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return f"{value}-changed"


LEAVES = list(_leaves(RICH))


@pytest.mark.parametrize("path", LEAVES, ids=[".".join(map(str, p)) for p in LEAVES])
def test_any_change_changes_the_hash(path: tuple[Any, ...]) -> None:
    changed = copy.deepcopy(RICH)
    node: Any = changed
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = _changed(node[path[-1]])
    assert template_hash(changed) != template_hash(RICH)


def test_structural_changes_change_the_hash() -> None:
    added = copy.deepcopy(RICH)
    added["env"].append({"name": "C", "value": "3"})
    removed = copy.deepcopy(RICH)
    del removed["group"]
    renamed = copy.deepcopy(RICH)
    renamed["nodeSelector"] = {"pool": "true"}
    hashes = {template_hash(x) for x in (RICH, added, removed, renamed)}
    assert len(hashes) == 4


@pytest.mark.parametrize("bad", [{"x": float("nan")}, {"x": float("inf")}, {1: "int key"}, {"x": object()}])
def test_non_json_values_are_rejected(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        template_hash(bad)


@pytest.mark.parametrize(
    "text",
    [
        "short",
        "x" * 63,
        "x" * 64,
        "runner-deployment-with-a-name-that-is-way-too-long-for-a-label-value.abcde",
        "-.-" * 30,
    ],
)
def test_label_value_is_always_valid(text: str) -> None:
    value = label_value(text)
    assert is_label_value(value)
    assert value == text or len(text) > 63 or not is_label_value(text)
    assert label_value(text) == value
