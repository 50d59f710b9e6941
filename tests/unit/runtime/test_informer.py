from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from runnerd.runtime.informer import EventType, Informer, InformerEvent
from runnerd.runtime.store import LAST_APPLIED, index_by_label
from runnerd.runtime.types import Key, WatchEvent, WatchEventType
from tests.unit.runtime.fakes import FakeListWatcher, cancel_and_wait, eventually, now, obj

Seen = list[tuple[EventType, str]]


@pytest.fixture
def server() -> FakeListWatcher:
    return FakeListWatcher()


@pytest.fixture
async def informer(server: FakeListWatcher) -> AsyncIterator[tuple[Informer, Seen]]:
    """A running informer (60 s idle timeout) and the (type, name) of the events it dispatched."""
    informer = Informer("cms", server, idle_timeout=60.0, indexers={"app": index_by_label("app")})
    seen: Seen = []
    informer.add_handler(lambda e: seen.append((e.type, e.obj["metadata"]["name"])))
    server.put(obj("a"))
    server.put(obj("b", labels={"app": "x"}))
    task = asyncio.create_task(informer.run())
    await informer.wait_synced()
    yield informer, seen
    await cancel_and_wait(task)


def names(informer: Informer) -> list[str]:
    return sorted(o["metadata"]["name"] for o in informer.store)


async def test_initial_list_fills_the_store(informer: tuple[Informer, Seen], server: FakeListWatcher) -> None:
    inf, seen = informer
    assert inf.synced
    assert names(inf) == ["a", "b"]
    assert sorted(seen) == [(EventType.ADDED, "a"), (EventType.ADDED, "b")]
    assert inf.store.by_index("app", "x")[0]["metadata"]["name"] == "b"
    await eventually(lambda: server.watch_versions == ["2"])  # watched from the list's version


async def test_watch_applies_add_update_delete(
    informer: tuple[Informer, Seen], server: FakeListWatcher
) -> None:
    inf, seen = informer
    seen.clear()
    server.put(obj("c"))
    server.put(obj("a", labels={"app": "x"}))
    server.delete("b")
    await eventually(lambda: len(seen) == 3)
    assert seen == [(EventType.ADDED, "c"), (EventType.MODIFIED, "a"), (EventType.DELETED, "b")]
    assert names(inf) == ["a", "c"]
    assert [o["metadata"]["name"] for o in inf.store.by_index("app", "x")] == ["a"]
    assert inf.resource_version == str(server.version)
    assert inf.lists == 1


async def test_modified_event_carries_the_old_object(server: FakeListWatcher) -> None:
    inf = Informer("cms", server)
    events: list[InformerEvent] = []
    inf.add_handler(events.append)
    task = asyncio.create_task(inf.run())
    await inf.wait_synced()
    server.put(obj("a", labels={"v": "1"}))
    server.put(obj("a", labels={"v": "2"}))
    await eventually(lambda: len(events) == 2)
    assert events[1].type is EventType.MODIFIED
    assert events[1].old is not None
    assert events[1].old["metadata"]["labels"] == {"v": "1"}
    assert events[1].obj["metadata"]["labels"] == {"v": "2"}
    await cancel_and_wait(task)


async def test_bookmark_advances_the_resource_version(
    informer: tuple[Informer, Seen], server: FakeListWatcher
) -> None:
    inf, seen = informer
    await eventually(lambda: bool(server.watchers))
    server.bookmark()
    await eventually(lambda: inf.resource_version == str(server.version))
    assert len(seen) == 2, "bookmarks are not dispatched"
    server.end_watches()  # the server's timeout: resume from the bookmark, no relist
    await eventually(lambda: len(server.watch_versions) == 2)
    assert server.watch_versions[1] == str(server.version)
    assert inf.lists == 1


@pytest.mark.parametrize("via_event", [False, True], ids=["exception", "error-event"])
async def test_410_relists_and_diffs(server: FakeListWatcher, via_event: bool) -> None:
    server.expire_with_event = via_event
    for name in "abcd":
        server.put(obj(name))
    inf = Informer("cms", server, idle_timeout=60.0)
    events: list[InformerEvent] = []
    inf.add_handler(events.append)
    task = asyncio.create_task(inf.run())
    await inf.wait_synced()
    await eventually(lambda: bool(server.watchers))
    events.clear()
    # The informer misses these (its connection is dead), then the history is compacted.
    server.stall()
    server.delete("a")
    server.put(obj("b", labels={"changed": "yes"}))
    server.put(obj("e"))
    server.compact()
    server.end_watches()
    await eventually(lambda: inf.lists == 2)
    assert sorted((e.type, e.obj["metadata"]["name"]) for e in events) == [
        (EventType.ADDED, "e"),
        (EventType.DELETED, "a"),
        (EventType.MODIFIED, "b"),
    ]
    deleted = next(e for e in events if e.type is EventType.DELETED)
    assert deleted.obj["metadata"]["name"] == "a", "the last known state of a deleted object is passed on"
    assert names(inf) == ["b", "c", "d", "e"]
    assert inf.store.get(Key("ns", "b")) == server.objects[Key("ns", "b")]
    await eventually(lambda: server.watch_versions[-1] == str(server.version))
    await cancel_and_wait(task)


async def test_error_event_during_a_live_watch_relists(
    informer: tuple[Informer, Seen], server: FakeListWatcher
) -> None:
    inf, _ = informer
    await eventually(lambda: bool(server.watchers))
    server.send_to_watches(
        WatchEvent(WatchEventType.ERROR, {"code": 410, "reason": "Expired", "message": "gone"})
    )
    await eventually(lambda: inf.lists == 2)
    server.send_to_watches(WatchEvent(WatchEventType.ERROR, {"code": 500, "reason": "InternalError"}))
    await eventually(lambda: inf.lists == 3)  # after a back-off


async def test_quiet_stream_reconnects_from_the_last_version(server: FakeListWatcher) -> None:
    server.put(obj("a"))
    inf = Informer("cms", server, idle_timeout=30.0)
    seen: Seen = []
    inf.add_handler(lambda e: seen.append((e.type, e.obj["metadata"]["name"])))
    task = asyncio.create_task(inf.run())
    await eventually(lambda: bool(server.watchers))
    started = now()
    server.stall()  # nothing arrives any more, not even an end of stream
    server.put(obj("b"))
    await eventually(lambda: (EventType.ADDED, "b") in seen)
    assert now() - started == pytest.approx(30.0, abs=0.1)
    assert server.watch_versions == ["1", "1"]
    assert inf.lists == 1, "a reconnect is not a relist"
    await cancel_and_wait(task)


async def test_server_timeout_is_randomised_per_watch(server: FakeListWatcher) -> None:
    inf = Informer("cms", server, watch_timeout=100)
    task = asyncio.create_task(inf.run())
    for i in range(1, 6):
        await eventually(lambda: len(server.watchers) == 1 and len(server.watch_timeouts) == i)  # noqa: B023
        server.end_watches()
    assert all(100 <= t <= 200 for t in server.watch_timeouts)
    await cancel_and_wait(task)


async def test_resync_redelivers_every_object(server: FakeListWatcher) -> None:
    server.put(obj("a"))
    server.put(obj("b"))
    inf = Informer("cms", server, resync_period=60.0, idle_timeout=1000.0)
    seen: Seen = []
    inf.add_handler(lambda e: seen.append((e.type, e.obj["metadata"]["name"])))
    task = asyncio.create_task(inf.run())
    await inf.wait_synced()
    start = now()
    await eventually(lambda: sum(t is EventType.SYNC for t, _ in seen) == 4)
    assert now() - start == pytest.approx(120.0, abs=0.1)
    assert sorted(n for t, n in seen if t is EventType.SYNC) == ["a", "a", "b", "b"]
    await cancel_and_wait(task)


async def test_failed_list_is_retried_with_backoff(server: FakeListWatcher) -> None:
    server.put(obj("a"))
    server.list_failures = 3
    inf = Informer("cms", server, retry_base=1.0, retry_max=100.0)
    task = asyncio.create_task(inf.run())
    start = now()
    await inf.wait_synced()
    # 1 + 2 + 4 seconds of back-off, plus up to 10 % jitter
    assert 7.0 <= now() - start <= 7.7
    assert server.list_calls == 4
    await cancel_and_wait(task)


async def test_watch_connection_error_rewatches_without_relist(
    informer: tuple[Informer, Seen], server: FakeListWatcher
) -> None:
    inf, _ = informer
    await eventually(lambda: bool(server.watchers))
    server.send_to_watches(ConnectionResetError("reset by peer"))  # type: ignore[arg-type]
    await eventually(lambda: len(server.watch_versions) == 2)
    assert server.watch_versions == ["2", "2"]
    assert inf.lists == 1


async def test_repeated_410_right_after_relist_backs_off(server: FakeListWatcher) -> None:
    inf = Informer("cms", server, retry_base=1.0, retry_max=100.0)
    task = asyncio.create_task(inf.run())
    await inf.wait_synced()
    await eventually(lambda: bool(server.watchers))
    start = now()
    server.compacted = 10**9  # the server can serve no watch at all
    server.end_watches()
    await eventually(lambda: inf.lists >= 5)
    assert now() - start >= 1 + 2 + 4, "no hot loop of list, watch, 410"
    await cancel_and_wait(task)


async def test_a_failing_handler_does_not_stop_the_informer(
    informer: tuple[Informer, Seen], server: FakeListWatcher
) -> None:
    inf, seen = informer

    def broken(event: InformerEvent) -> None:
        raise RuntimeError("bug")

    remove = inf.add_handler(broken)
    server.put(obj("c"))
    await eventually(lambda: (EventType.ADDED, "c") in seen)
    remove()
    remove()  # idempotent
    assert names(inf) == ["a", "b", "c"]


def _heavy(name: str) -> dict[str, object]:
    body = obj(name, annotations={LAST_APPLIED: "{...}", "keep": "me"})
    body["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    return body


@pytest.mark.parametrize("transform", ["default", None])
async def test_the_cache_holds_no_managed_fields(server: FakeListWatcher, transform: str | None) -> None:
    inf = Informer("cms", server) if transform == "default" else Informer("cms", server, transform=None)
    server.put(_heavy("listed"))
    task = asyncio.create_task(inf.run())
    await inf.wait_synced()
    server.put(_heavy("watched"))
    await eventually(lambda: len(inf.store) == 2)
    for cached in inf.store:
        meta = cached["metadata"]
        assert meta["annotations"]["keep"] == "me"
        assert ("managedFields" in meta) is (transform is None)
        assert (LAST_APPLIED in meta["annotations"]) is (transform is None)
    await cancel_and_wait(task)
