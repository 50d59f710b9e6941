"""The runtime and the Kubernetes adapter against the real kube-apiserver (v1.36.3, devcluster)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from runnerd.kube import (
    CONFIGMAPS,
    CUSTOM_RESOURCE_DEFINITIONS,
    EVENTS,
    KubeClient,
    KubeListWatcher,
    Resource,
    load_config,
)
from runnerd.runtime import (
    AlreadyExists,
    Conflict,
    Controller,
    EventRecorder,
    EventType,
    Informer,
    InformerEvent,
    Key,
    LeaderElector,
    LeadershipLost,
    LeaseRecord,
    Manager,
    NotFound,
    Obj,
    Result,
    WatchEvent,
)

pytestmark = pytest.mark.cluster

# Not served from the watch cache (see devcluster): after an etcd compaction, a watch from an older
# resourceVersion gets 410 Gone at once.
PODTEMPLATES = Resource("", "v1", "podtemplates", "PodTemplate")
WIDGETS = Resource("runnerd-test.example.com", "v1", "widgets", "Widget")


@pytest.fixture
async def kube(cluster: Cluster) -> AsyncIterator[KubeClient]:
    async with await KubeClient.connect(str(cluster.kubeconfig)) as client:
        yield client


def configmap(name: str, namespace: str, **data: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def podtemplate(name: str, namespace: str, image: str = "busybox") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "template": {"spec": {"containers": [{"name": "c", "image": image}]}},
    }


class Recorder:
    def __init__(self) -> None:
        self.events: list[InformerEvent] = []

    def __call__(self, event: InformerEvent) -> None:
        self.events.append(event)

    def seen(self, type: EventType, name: str) -> bool:
        return any(e.type is type and e.obj["metadata"]["name"] == name for e in self.events)


async def cancel(*tasks: asyncio.Task[Any]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_load_config_from_kubeconfig(cluster: Cluster) -> None:
    config = await load_config(cluster.kubeconfig)
    assert config.host == cluster.server
    assert config.source == f"kubeconfig:{cluster.kubeconfig}"
    assert "token" not in repr(config).lower()


async def test_informer_sees_create_update_delete(kube: KubeClient, cluster: Cluster, namespace: str) -> None:
    await kube.create(CONFIGMAPS, configmap("before", namespace, a="1"))
    informer = Informer("configmaps", kube.list_watcher(CONFIGMAPS, namespace=namespace))
    seen = Recorder()
    informer.add_handler(seen)
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.wait_synced(), 30)
        assert seen.seen(EventType.ADDED, "before")
        listed = informer.resource_version
        assert listed

        await asyncio.to_thread(
            cluster.kubectl, "-n", namespace, "create", "configmap", "cm", "--from-literal=k=v"
        )
        await wait_until("the ADDED event of cm", lambda: seen.seen(EventType.ADDED, "cm"), step=0.02)
        await kube.patch(CONFIGMAPS, "cm", {"data": {"k": "v2"}}, namespace=namespace)
        await wait_until("the MODIFIED event of cm", lambda: seen.seen(EventType.MODIFIED, "cm"), step=0.02)
        cached = informer.store.get(Key(namespace, "cm"))
        assert cached is not None
        assert cached["data"] == {"k": "v2"}
        await kube.delete(CONFIGMAPS, "cm", namespace=namespace)
        await wait_until("the DELETED event of cm", lambda: seen.seen(EventType.DELETED, "cm"), step=0.02)
        assert Key(namespace, "cm") not in informer.store
        assert int(informer.resource_version) > int(listed)
        assert informer.lists == 1
    finally:
        await cancel(task)


async def test_bookmarks_advance_quiet_watches_which_resume_without_relisting(
    kube: KubeClient, namespace: str
) -> None:
    # The API server ends each watch after 3-6 s, sending a bookmark shortly before it does.
    watched = kube.list_watcher(CONFIGMAPS, namespace=namespace, label_selector="app=runnerd-test")
    informer = Informer("configmaps", watched, watch_timeout=3)
    seen = Recorder()
    informer.add_handler(seen)
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.wait_synced(), 30)
        listed = int(informer.resource_version)
        for i in range(3):  # changes the informer does not see: only a bookmark tells it about them
            await kube.create(CONFIGMAPS, configmap(f"noise{i}", namespace))
        await wait_until(
            "a resource version past the list", lambda: int(informer.resource_version) > listed, 20, step=0.02
        )
        assert seen.events == [], "bookmarks are not dispatched to handlers"
        await wait_until("a second watch", lambda: informer.watches >= 2, 20, step=0.02)
        late = configmap("late", namespace)
        late["metadata"]["labels"] = {"app": "runnerd-test"}
        await kube.create(CONFIGMAPS, late)
        await wait_until("the ADDED event of late", lambda: seen.seen(EventType.ADDED, "late"), step=0.02)
        assert [e.obj["metadata"]["name"] for e in seen.events] == ["late"], "the label selector applies"
        assert informer.lists == 1, "an ended watch resumes from its resourceVersion; it does not relist"
    finally:
        await cancel(task)


class GatedListWatcher:
    """Delegates to a real ListWatcher, but holds each watch until the test opens the gate."""

    def __init__(self, inner: KubeListWatcher) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()
        self.watch_versions: list[str] = []

    async def list(self) -> tuple[list[Obj], str]:
        return await self.inner.list()

    async def watch(self, resource_version: str, *, timeout_seconds: int) -> AsyncIterator[WatchEvent]:
        self.watch_versions.append(resource_version)
        self.waiting.set()
        await self.gate.wait()
        stream = self.inner.watch(resource_version, timeout_seconds=timeout_seconds)
        try:
            async for event in stream:
                yield event
        finally:
            await stream.aclose()  # type: ignore[attr-defined]


async def test_watch_from_a_compacted_version_relists_with_the_right_diff(
    kube: KubeClient, cluster: Cluster, namespace: str
) -> None:
    for name in ("a", "b", "keep"):
        await kube.create(PODTEMPLATES, podtemplate(name, namespace))
    lister = GatedListWatcher(kube.list_watcher(PODTEMPLATES, namespace=namespace))
    informer = Informer("podtemplates", lister)
    seen = Recorder()
    informer.add_handler(seen)
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(lister.waiting.wait(), 30)
        listed = informer.resource_version
        seen.events.clear()
        # While the informer is not watching: a change of each kind, then history is compacted away.
        await kube.delete(PODTEMPLATES, "a", namespace=namespace)
        await kube.replace(
            PODTEMPLATES,
            {
                **podtemplate("b", namespace, image="alpine"),
                "metadata": (await kube.get(PODTEMPLATES, "b", namespace=namespace))["metadata"],
            },
        )
        await kube.create(PODTEMPLATES, podtemplate("c", namespace))
        revision = await asyncio.to_thread(cluster.compact_etcd)
        assert revision > int(listed)
        lister.gate.set()
        await wait_until("a second list", lambda: informer.lists == 2, step=0.02)
        await wait_until("three events", lambda: len(seen.events) >= 3, step=0.02)
        assert sorted((e.type.value, e.obj["metadata"]["name"]) for e in seen.events) == [
            ("ADDED", "c"),
            ("DELETED", "a"),
            ("MODIFIED", "b"),
        ]
        assert sorted(o["metadata"]["name"] for o in informer.store) == ["b", "c", "keep"]
        b = informer.store.get(Key(namespace, "b"))
        assert b is not None
        assert b["template"]["spec"]["containers"][0]["image"] == "alpine"
        assert lister.watch_versions[0] == listed
        await wait_until("a second watch", lambda: len(lister.watch_versions) >= 2, step=0.02)
        assert int(lister.watch_versions[1]) >= revision, "the new watch starts from the relist"
    finally:
        await cancel(task)


class HangingLeaseClient:
    """A real LeaseClient whose calls hang once ``dead`` is set (a partitioned or frozen leader)."""

    def __init__(self, kube: KubeClient) -> None:
        self.inner = kube.lease_client()
        self.dead = False

    async def _check(self) -> None:
        if self.dead:
            await asyncio.Event().wait()

    async def get(self, namespace: str, name: str) -> LeaseRecord | None:
        await self._check()
        return await self.inner.get(namespace, name)

    async def create(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        await self._check()
        return await self.inner.create(namespace, name, record)

    async def update(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        await self._check()
        return await self.inner.update(namespace, name, record)


class Work:
    def __init__(self) -> None:
        self.started: float | None = None
        self.stopped: float | None = None

    def __call__(self) -> Coroutine[Any, Any, None]:
        return self._run()

    async def _run(self) -> None:
        self.started = asyncio.get_running_loop().time()
        try:
            await asyncio.Event().wait()
        finally:
            self.stopped = asyncio.get_running_loop().time()


def lease_of(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("-n", namespace, "get", "lease", name, "-o", "json").stdout
    spec: dict[str, Any] = json.loads(out)["spec"]
    return spec


LEASE_DURATION, RENEW_DEADLINE, RETRY = 3.0, 2.0, 0.5


def make_elector(client: Any, namespace: str, identity: str) -> LeaderElector:
    return LeaderElector(
        client,
        namespace=namespace,
        name="runnerd-leader",
        identity=identity,
        lease_duration=LEASE_DURATION,
        renew_deadline=RENEW_DEADLINE,
        retry_period=RETRY,
    )


async def test_leader_election_on_a_real_lease(kube: KubeClient, cluster: Cluster, namespace: str) -> None:
    client_a = HangingLeaseClient(kube)
    a = make_elector(client_a, namespace, "a")
    b = make_elector(kube.lease_client(), namespace, "b")
    work_a, work_b = Work(), Work()
    run_a = asyncio.create_task(a.run(work_a))
    await wait_until("a to lead", lambda: a.is_leader, step=0.02)
    run_b = asyncio.create_task(b.run(work_b))
    try:
        await asyncio.sleep(LEASE_DURATION + 2 * RETRY)
        assert not b.is_leader, "b stays passive while a renews"
        assert b.transitions == 0
        spec = await asyncio.to_thread(lease_of, cluster, namespace, "runnerd-leader")
        assert spec["holderIdentity"] == "a"
        assert spec["leaseDurationSeconds"] == 3

        # a freezes: it stops acting by its renew deadline; b takes over within the lease duration.
        client_a.dead = True
        frozen = asyncio.get_running_loop().time()
        with pytest.raises(LeadershipLost):
            await asyncio.wait_for(run_a, 10)
        await wait_until("b's work to start", lambda: work_b.started is not None, 10, step=0.02)
        assert work_a.stopped is not None
        assert work_b.started is not None
        assert work_a.stopped < work_b.started, "the old leader stopped before the new one started"
        assert work_a.stopped - frozen <= RENEW_DEADLINE + 0.5
        assert work_b.started - frozen <= LEASE_DURATION + 2 * RETRY * 2.2 + 1.0
        spec = await asyncio.to_thread(lease_of, cluster, namespace, "runnerd-leader")
        assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)

        # b is cancelled (graceful shutdown): it releases, and a new candidate takes over at once.
        c = make_elector(kube.lease_client(), namespace, "c")
        work_c = Work()
        run_c = asyncio.create_task(c.run(work_c))
        await asyncio.sleep(RETRY)
        assert not c.is_leader
        run_b.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run_b
        released = asyncio.get_running_loop().time()
        await wait_until("c's work to start", lambda: work_c.started is not None, 10, step=0.02)
        assert work_c.started is not None
        assert work_c.started - released < LEASE_DURATION, (
            "a released lease is taken without waiting for expiry"
        )
        await cancel(run_c)
    finally:
        await cancel(run_a, run_b)


async def test_manager_reconciles_as_leader_and_releases_on_stop(
    kube: KubeClient, cluster: Cluster, namespace: str
) -> None:
    informer = Informer("configmaps", kube.list_watcher(CONFIGMAPS, namespace=namespace))

    async def reconcile(key: Key) -> Result | None:
        cm = informer.store.get(key)
        if cm is None or (cm.get("data") or {}).get("seen") == "yes":
            return None
        await kube.patch(
            CONFIGMAPS,
            key.name,
            {"data": {"seen": "yes"}},
            namespace=key.namespace,
            resource_version=cm["metadata"]["resourceVersion"],
        )
        return None

    controller = Controller("seen", reconcile, workers=2)
    controller.watch(informer)
    manager = Manager(elector=make_elector(kube.lease_client(), namespace, "m"), shutdown_timeout=5)
    manager.add_controller(controller)
    task = asyncio.create_task(manager.run())
    try:
        await wait_until(
            "the manager leading and ready", lambda: manager.leading and manager.ready, step=0.02
        )
        await asyncio.to_thread(
            cluster.kubectl, "-n", namespace, "create", "configmap", "x", "--from-literal=a=b"
        )
        await wait_until(
            "the controller to mark x seen",
            lambda: ((informer.store.get(Key(namespace, "x")) or {}).get("data") or {}).get("seen") == "yes",
            step=0.02,
        )
        manager.stop()
        await asyncio.wait_for(task, 15)
        spec = await asyncio.to_thread(lease_of, cluster, namespace, "runnerd-leader")
        assert spec.get("holderIdentity", "") == ""
    finally:
        await cancel(task)


async def test_event_recording(kube: KubeClient, cluster: Cluster, namespace: str) -> None:
    cm = await kube.create(CONFIGMAPS, configmap("subject", namespace))
    recorder = EventRecorder(kube.event_sink(), component="runnerd-test", instance="pod-0")
    await recorder.warning(cm, "RegistrationFailed", "GitHub answered 503")
    await recorder.warning(cm, "RegistrationFailed", "GitHub answered 503")
    await recorder.normal(cm, "Registered", "runner registered")
    found = await kube.list(EVENTS, namespace=namespace, field_selector="involvedObject.name=subject")
    by_reason = {e["reason"]: e for e in found.items}
    assert set(by_reason) == {"RegistrationFailed", "Registered"}
    failed = by_reason["RegistrationFailed"]
    assert (failed["type"], failed["count"], failed["message"]) == ("Warning", 2, "GitHub answered 503")
    assert failed["involvedObject"]["uid"] == cm["metadata"]["uid"]
    assert failed["source"]["component"] == "runnerd-test"
    described = await asyncio.to_thread(cluster.kubectl, "-n", namespace, "describe", "configmap", "subject")
    assert "RegistrationFailed" in described.stdout


async def test_conflicts_and_the_error_taxonomy(kube: KubeClient, namespace: str) -> None:
    created = await kube.create(CONFIGMAPS, configmap("c", namespace, v="1"))
    stale = created["metadata"]["resourceVersion"]
    updated = await kube.replace(CONFIGMAPS, {**created, "data": {"v": "2"}})
    assert updated["metadata"]["resourceVersion"] != stale

    with pytest.raises(Conflict):
        await kube.replace(CONFIGMAPS, {**created, "data": {"v": "3"}})
    with pytest.raises(Conflict):
        await kube.patch(CONFIGMAPS, "c", {"data": {"v": "3"}}, namespace=namespace, resource_version=stale)
    with pytest.raises(Conflict):
        await kube.patch(
            CONFIGMAPS,
            "c",
            [{"op": "replace", "path": "/data/v", "value": "3"}],
            namespace=namespace,
            patch_type="json",
            resource_version=stale,
        )
    with pytest.raises(Conflict):
        await kube.delete(CONFIGMAPS, "c", namespace=namespace, resource_version=stale)
    with pytest.raises(Conflict):
        await kube.delete(CONFIGMAPS, "c", namespace=namespace, uid="not-the-uid")
    current = updated["metadata"]["resourceVersion"]
    patched = await kube.patch(
        CONFIGMAPS,
        "c",
        [{"op": "add", "path": "/data/w", "value": "x"}],
        namespace=namespace,
        patch_type="json",
        resource_version=current,
    )
    assert patched["data"] == {"v": "2", "w": "x"}

    with pytest.raises(AlreadyExists):
        await kube.create(CONFIGMAPS, configmap("c", namespace))
    with pytest.raises(NotFound):
        await kube.get(CONFIGMAPS, "missing", namespace=namespace)
    assert await kube.delete(CONFIGMAPS, "missing", namespace=namespace, missing_ok=True) is None
    await kube.delete(
        CONFIGMAPS,
        "c",
        namespace=namespace,
        uid=created["metadata"]["uid"],
        resource_version=patched["metadata"]["resourceVersion"],
        propagation_policy="Background",
    )
    with pytest.raises(NotFound):
        await kube.get(CONFIGMAPS, "c", namespace=namespace)


async def test_custom_resource_with_status_subresource(kube: KubeClient, namespace: str) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.runnerd-test.example.com"},
        "spec": {
            "group": "runnerd-test.example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
    with contextlib.suppress(AlreadyExists):
        await kube.create(CUSTOM_RESOURCE_DEFINITIONS, crd)

    async def established() -> bool:
        got = await kube.get(CUSTOM_RESOURCE_DEFINITIONS, "widgets.runnerd-test.example.com")
        return any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (got.get("status") or {}).get("conditions") or ()
        )

    async with asyncio.timeout(30):
        while not await established():  # noqa: ASYNC110 - polls the API server
            await asyncio.sleep(0.1)

    name = f"w-{uuid.uuid4().hex[:6]}"
    body = {
        "apiVersion": WIDGETS.api_version,
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"size": 1},
    }

    async def create_widget() -> Obj:
        async with asyncio.timeout(30):
            while True:
                try:
                    return await kube.create(WIDGETS, body)
                except NotFound:  # discovery of a new CRD takes a moment
                    await asyncio.sleep(0.1)

    widget = await create_widget()
    with_status = await kube.patch_status(
        WIDGETS,
        name,
        {"status": {"phase": "Ready"}, "spec": {"size": 99}},
        namespace=namespace,
        resource_version=widget["metadata"]["resourceVersion"],
    )
    assert with_status["status"] == {"phase": "Ready"}
    assert with_status["spec"] == {"size": 1}, "the status subresource ignores spec changes"
    replaced = await kube.replace_status(WIDGETS, {**with_status, "status": {"phase": "Done"}})
    assert replaced["status"] == {"phase": "Done"}
    with pytest.raises(Conflict):
        await kube.replace_status(WIDGETS, {**with_status, "status": {"phase": "Stale"}})
    intent = {
        "apiVersion": WIDGETS.api_version,
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": 2},
    }
    with pytest.raises(Conflict, match=r"\.spec\.size"):  # the creator's field manager owns spec.size
        await kube.patch(
            WIDGETS, name, intent, namespace=namespace, patch_type="apply", field_manager="runnerd-test"
        )
    applied = await kube.patch(
        WIDGETS,
        name,
        intent,
        namespace=namespace,
        patch_type="apply",
        field_manager="runnerd-test",
        force=True,
    )
    assert applied["spec"]["size"] == 2
    listed = await kube.list(WIDGETS, namespace=namespace)
    assert [w["metadata"]["name"] for w in listed.items] == [name]
    assert listed.items[0]["kind"] == "Widget"
    await kube.patch(WIDGETS, name, {"metadata": {"finalizers": ["runnerd-test/hold"]}}, namespace=namespace)
    deleting = await kube.delete(WIDGETS, name, namespace=namespace, propagation_policy="Foreground")
    assert deleting is not None
    assert deleting["metadata"].get("deletionTimestamp")
    await kube.patch(
        WIDGETS,
        name,
        [{"op": "remove", "path": "/metadata/finalizers"}],
        namespace=namespace,
        patch_type="json",
    )
    async with asyncio.timeout(30):
        while True:
            try:
                await kube.get(WIDGETS, name, namespace=namespace)
            except NotFound:
                break
            await asyncio.sleep(0.05)


async def test_list_pages_through_large_collections(kube: KubeClient, namespace: str) -> None:
    small_pages = KubeClient(kube.config, page_size=2)
    async with small_pages:
        for i in range(5):
            await small_pages.create(CONFIGMAPS, configmap(f"p{i}", namespace))
        listed = await small_pages.list(CONFIGMAPS, namespace=namespace, label_selector="!absent")
    names = sorted(o["metadata"]["name"] for o in listed.items)
    assert [n for n in names if n.startswith("p")] == ["p0", "p1", "p2", "p3", "p4"]
    assert listed.resource_version
