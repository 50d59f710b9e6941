from __future__ import annotations

import pytest

from runnerd.runtime.store import (
    Store,
    index_by_controller_uid,
    index_by_label,
    index_by_namespace,
    index_by_owner_uid,
)
from runnerd.runtime.types import Key, resource_version
from tests.unit.runtime.fakes import obj, owned


def make_store() -> Store:
    return Store(
        {
            "owner": index_by_owner_uid,
            "controller": index_by_controller_uid,
            "set": index_by_label("runner-set"),
            "namespace": index_by_namespace,
        }
    )


def test_upsert_get_delete() -> None:
    store = make_store()
    assert store.upsert(obj("a")) is None
    first = store.get(Key("ns", "a"))
    assert first is not None
    assert store.upsert(obj("a", labels={"x": "y"})) is first
    assert Key("ns", "a") in store
    assert len(store) == 1
    assert store.delete(Key("ns", "a")) is not None
    assert store.delete(Key("ns", "a")) is None
    assert len(store) == 0


@pytest.mark.parametrize(
    ("index", "value", "expected"),
    [
        ("owner", "uid-r1", ["p1", "p3"]),
        ("controller", "uid-r1", ["p1"]),
        ("controller", "uid-r2", ["p2"]),
        ("set", "s1", ["p2"]),
        ("namespace", "other", ["q"]),
        ("owner", "nobody", []),
    ],
)
def test_indexes(index: str, value: str, expected: list[str]) -> None:
    store = make_store()
    store.upsert(owned("p1", "r1"))
    p2 = owned("p2", "r2")
    p2["metadata"]["labels"] = {"runner-set": "s1"}
    store.upsert(p2)
    store.upsert(owned("p3", "r1", controller=False))
    store.upsert(obj("q", "other"))
    assert [o["metadata"]["name"] for o in store.by_index(index, value)] == expected


def test_indexes_follow_changes_and_deletes() -> None:
    store = make_store()
    store.upsert(owned("p", "r1"))
    store.upsert(owned("p", "r2"))  # re-owned
    assert store.index_keys("controller", "uid-r1") == []
    assert store.index_keys("controller", "uid-r2") == [Key("ns", "p")]
    store.delete(Key("ns", "p"))
    assert store.index_keys("controller", "uid-r2") == []


def test_indexed_is_every_object_under_any_value_once() -> None:
    store = make_store()
    store.upsert(owned("p1", "r1"))
    p2 = owned("p2", "r2")
    p2["metadata"]["labels"] = {"runner-set": "s1"}
    store.upsert(p2)
    store.upsert(obj("q", labels={"runner-set": "s2"}))
    store.upsert(obj("plain"))
    assert [o["metadata"]["name"] for o in store.indexed("set")] == ["p2", "q"]
    assert [o["metadata"]["name"] for o in store.indexed("owner")] == ["p1", "p2"]
    store.delete(Key("ns", "q"))
    assert [o["metadata"]["name"] for o in store.indexed("set")] == ["p2"]
    with pytest.raises(KeyError):
        store.indexed("nope")


def test_add_indexer_indexes_existing_objects() -> None:
    store = Store()
    store.upsert(obj("a", labels={"app": "x"}))
    store.add_indexer("app", index_by_label("app"))
    assert store.index_keys("app", "x") == [Key("ns", "a")]
    with pytest.raises(ValueError, match="already exists"):
        store.add_indexer("app", index_by_label("app"))
    with pytest.raises(KeyError):
        store.index_keys("nope", "x")


@pytest.mark.parametrize(
    ("text", "key"), [("ns/name", Key("ns", "name")), ("cluster-scoped", Key("", "cluster-scoped"))]
)
def test_key_round_trip(text: str, key: Key) -> None:
    assert Key.parse(text) == key
    assert str(key) == text


def test_key_of_and_resource_version() -> None:
    o = obj("a", resourceVersion="7")
    assert Key.of(o) == Key("ns", "a")
    assert Key.of({"metadata": {"name": "n"}}) == Key("", "n")
    assert resource_version(o) == "7"
    assert resource_version({}) == ""


def test_slim_pod_keeps_what_decisions_read() -> None:
    from runnerd.runtime import slim_pod

    pod = {
        "metadata": {"name": "r", "namespace": "ns", "managedFields": [{}], "labels": {"a": "b"}},
        "spec": {
            "nodeName": "node-1",
            "nodeSelector": {"nvidia.com/gpu.product": "H100"},
            "overhead": {"cpu": "250m"},
            "volumes": [{"name": "work"}],
            "containers": [
                {
                    "name": "runner",
                    "image": "img",
                    "env": [{"name": "ACTIONS_RUNNER_INPUT_JITCONFIG", "value": "secret"}],
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    "readinessProbe": {"exec": {}},
                }
            ],
            "initContainers": [{"name": "init", "command": ["x"], "resources": {}}],
        },
        "status": {"phase": "Running", "containerStatuses": [{"name": "runner"}]},
    }
    assert slim_pod(pod) == {
        "metadata": {"name": "r", "namespace": "ns", "labels": {"a": "b"}},
        "spec": {
            "nodeName": "node-1",
            "nodeSelector": {"nvidia.com/gpu.product": "H100"},
            "overhead": {"cpu": "250m"},
            "containers": [
                {"name": "runner", "image": "img", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
            ],
            "initContainers": [{"name": "init", "resources": {}}],
        },
        "status": {"phase": "Running", "containerStatuses": [{"name": "runner"}]},
    }
