"""Fakes of the workload controllers' unit tests: GitHub, Kubernetes, events, stores, clock.

The fakes keep what a controller did (calls, objects, events) so a test asserts on effects; none
of them does I/O or sleeps. GitHub's answers can be scripted per call (``errors``).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runnerd.github import Scope
from runnerd.github.actions.connection import Connection
from runnerd.github.actions.errors import JobStillRunning, RunnerExists, ScaleSetNotFound
from runnerd.github.actions.models import RunnerScaleSet, ScaleSetJitConfig, ScaleSetRunner
from runnerd.github.models import JitConfig, RegistrationToken
from runnerd.github.models import Runner as GitHubRunner
from runnerd.github.sansio import RateLimit
from runnerd.kube.client import ObjectList
from runnerd.kube.resources import Resource
from runnerd.reconcile.cost import LEDGER_CONFIGMAP, Ledger, read_ledger_configmap
from runnerd.runtime import AlreadyExists, Conflict, Key, NotFound, Obj


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeGitHub:
    """A scope's runner registrations. ``errors[call]`` lists exceptions the next calls raise."""

    listed: list[GitHubRunner] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    errors: dict[str, list[Exception]] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))

    def _fail(self, call: str) -> None:
        queued = self.errors.get(call)
        if queued:
            raise queued.pop(0)

    async def list_runners(self, scope: Scope, *, name: str | None = None, **_: Any) -> list[GitHubRunner]:
        self.calls.append("GET runners")
        return [r for r in self.listed if name is None or r.name == name]

    async def set_runner_labels(self, scope: Scope, runner_id: int, labels: Any) -> list[str]:
        self.calls.append(f"PUT labels {runner_id}")
        self._fail("labels")
        return list(labels)

    async def delete_runner(self, scope: Scope, runner_id: int) -> bool:
        self.calls.append(f"DELETE {runner_id}")
        self._fail("delete")
        self.listed = [r for r in self.listed if r.id != runner_id]
        return True

    async def generate_jit_config(self, scope: Scope, name: str, **_: Any) -> JitConfig:
        self.calls.append(f"JIT {name}")
        self._fail("jit")
        runner = GitHubRunner(next(self.ids), name, "linux", "offline", False, ("self-hosted",))
        self.listed.append(runner)
        return JitConfig(runner, "encoded-jit-config")

    async def create_registration_token(self, scope: Scope) -> RegistrationToken:
        self.calls.append("POST registration-token")
        self._fail("token")
        return RegistrationToken("registration-token", 0.0)

    def online(self, name: str, *, busy: bool = False) -> None:
        """The runner of this name comes online (as its process would)."""
        self.listed = [
            GitHubRunner(r.id, r.name, r.os, "online", busy, r.labels) if r.name == name else r
            for r in self.listed
        ]


@dataclass
class FakeKube:
    """Kubernetes objects by (plural, namespace, name), with the calls made on them. ``gc=True``
    finishes deletions as the API server and its garbage collector do: an object being deleted goes
    once its last finalizer is removed, and the objects it controls are deleted with it."""

    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    gc: bool = False

    def _collect(self, key: tuple[str, str, str]) -> None:
        obj = self.objects.get(key)
        if obj is None or obj["metadata"].get("finalizers") or not self.gc:
            return
        del self.objects[key]
        uid = obj["metadata"].get("uid")
        for other, child in list(self.objects.items()):
            refs = child["metadata"].get("ownerReferences") or ()
            if any(r.get("controller") and r.get("uid") == uid for r in refs):
                child["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
                self._collect(other)

    def _key(self, resource: Resource, name: str, namespace: str | None) -> tuple[str, str, str]:
        return (resource.plural, namespace or "", name)

    def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((plural, namespace, name))

    async def create(
        self, resource: Resource, body: dict[str, Any], *, namespace: str | None = None
    ) -> dict[str, Any]:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        namespace = namespace or meta.get("namespace") or ""
        meta.setdefault("namespace", namespace)
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta["resourceVersion"] = str(next(self.versions))
        for key, value in (obj.pop("stringData", None) or {}).items():  # as the API server stores it
            obj.setdefault("data", {})[key] = base64.b64encode(str(value).encode()).decode()
        self.calls.append(("create", resource.plural, meta["name"]))
        self.objects[self._key(resource, meta["name"], namespace)] = obj
        return copy.deepcopy(obj)

    async def list(
        self, resource: Resource, *, namespace: str | None = None, label_selector: str | None = None
    ) -> ObjectList:
        """Objects of ``resource`` (in ``namespace``) with every ``key=value`` of the selector."""
        wanted = dict(term.split("=", 1) for term in (label_selector or "").split(",") if term)
        items = [
            copy.deepcopy(obj)
            for (plural, ns, _), obj in self.objects.items()
            if plural == resource.plural
            and namespace in (None, ns)
            and all((obj["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]
        return ObjectList(items, str(next(self.versions)))

    async def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        obj = self.objects.get(self._key(resource, name, namespace))
        if obj is None:
            raise NotFound(f"{resource.plural} {name}")
        return copy.deepcopy(obj)

    async def patch(
        self, resource: Resource, name: str, body: Any, *, namespace: str | None = None, **_: Any
    ) -> dict[str, Any]:
        self.calls.append(("patch", resource.plural, name))
        obj = self.objects.get(self._key(resource, name, namespace))
        if obj is None:
            return {"metadata": {"name": name, "namespace": namespace}}
        if isinstance(body, dict):
            _merge(obj, body)
        obj["metadata"]["resourceVersion"] = str(next(self.versions))
        if obj["metadata"].get("deletionTimestamp"):
            self._collect(self._key(resource, name, namespace))
        return copy.deepcopy(obj)

    async def patch_status(
        self, resource: Resource, name: str, body: Any, *, namespace: str | None = None
    ) -> dict[str, Any]:
        self.calls.append(("status", resource.plural, name))
        obj = self.objects.get(self._key(resource, name, namespace))
        if obj is not None:
            obj["status"] = copy.deepcopy(body["status"])
        return copy.deepcopy(obj or {})

    async def delete(
        self, resource: Resource, name: str, *, namespace: str | None = None, **_: Any
    ) -> dict[str, Any] | None:
        self.calls.append(("delete", resource.plural, name))
        obj = self.objects.get(self._key(resource, name, namespace))
        if obj is None:
            return None
        if obj["metadata"].get("finalizers"):
            obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            return copy.deepcopy(obj)
        if self.gc:
            obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            self._collect(self._key(resource, name, namespace))
            return None
        del self.objects[self._key(resource, name, namespace)]
        return None


@dataclass
class SecretRace(FakeKube):
    """A Secret's create answers only once a pod's create was sent (or fails after 1 s), or raises
    ``secret_error``; ``pod_saw_secret`` says whether the pod's Secret (named as the pod) existed
    when the pod's create was sent."""

    secret_error: Exception | None = None
    wait_for_pod: bool = True
    pod_sent: asyncio.Event | None = None
    pod_saw_secret: bool | None = None

    async def create(
        self, resource: Resource, body: dict[str, Any], *, namespace: str | None = None
    ) -> dict[str, Any]:
        if self.pod_sent is None:
            self.pod_sent = asyncio.Event()
        if resource.plural == "pods":
            self.pod_saw_secret = ("secrets", namespace or "", body["metadata"]["name"]) in self.objects
            self.pod_sent.set()
        if resource.plural == "secrets":
            if self.secret_error is not None:
                await asyncio.sleep(0)  # the pod's create goes out meanwhile
                raise self.secret_error
            if self.wait_for_pod:
                await asyncio.wait_for(self.pod_sent.wait(), 1.0)
        return await super().create(resource, body, namespace=namespace)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """A JSON merge patch (RFC 7386)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


@dataclass
class FakeRecorder:
    events: list[tuple[str, str, str]] = field(default_factory=list)

    async def normal(self, obj: Any, reason: str, message: str) -> None:
        self.events.append(("Normal", reason, message))

    async def warning(self, obj: Any, reason: str, message: str) -> None:
        self.events.append(("Warning", reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]


class FakeStore:
    """An informer's store over the fake cluster's objects of one resource (always in sync)."""

    def __init__(
        self,
        kube: FakeKube,
        plural: str,
        indexers: dict[str, Callable[[dict[str, Any]], list[str]]] | None = None,
    ) -> None:
        self.kube = kube
        self.plural = plural
        self.indexers = indexers or {}

    def get(self, key: Key) -> dict[str, Any] | None:
        obj = self.kube.objects.get((self.plural, key.namespace, key.name))
        return copy.deepcopy(obj) if obj is not None else None

    def objects(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (plural, _, _), o in self.kube.objects.items() if plural == self.plural]

    def by_index(self, index: str, value: str) -> list[dict[str, Any]]:
        return [o for o in self.objects() if value in self.indexers[index](o)]

    def indexed(self, index: str) -> list[dict[str, Any]]:
        return [o for o in self.objects() if self.indexers[index](o)]

    def add_indexer(self, name: str, func: Callable[[dict[str, Any]], list[str]]) -> None:
        if name in self.indexers:
            raise ValueError(f"index {name!r} already exists")
        self.indexers[name] = func


@dataclass
class FakeInformer:
    store: FakeStore


@dataclass
class FakeScaleSetAPI:
    """The Actions service's scale sets and runners. ``busy`` holds the ids of runners holding a
    job (their removal answers JobStillRunning); ``errors[call]`` as in :class:`FakeGitHub`."""

    scale_sets: dict[int, RunnerScaleSet] = field(default_factory=dict)
    runners: dict[int, ScaleSetRunner] = field(default_factory=dict)
    busy: set[int] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    errors: dict[str, list[Exception]] = field(default_factory=dict)
    configs: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    connections: list[Connection | None] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _fail(self, call: str) -> None:
        queued = self.errors.get(call)
        if queued:
            raise queued.pop(0)

    async def for_config(
        self, config_url: str, secret: Mapping[str, str], connection: Connection | None = None
    ) -> FakeScaleSetAPI:
        self.configs.append((config_url, dict(secret)))
        self.connections.append(connection)
        return self

    async def runner_group_id(self, name: str) -> int:
        return 1 if name.lower() in ("", "default") else 2

    async def get_scale_set(self, runner_group_id: int, name: str) -> RunnerScaleSet | None:
        self.calls.append(f"GET scaleset {name}")
        found = [
            s for s in self.scale_sets.values() if s.name == name and s.runner_group_id == runner_group_id
        ]
        return found[0] if found else None

    async def get_scale_set_by_id(self, scale_set_id: int) -> RunnerScaleSet | None:
        return self.scale_sets.get(scale_set_id)

    async def create_scale_set(
        self, name: str, runner_group_id: int, labels: Sequence[str]
    ) -> RunnerScaleSet:
        self.calls.append(f"POST scaleset {name}")
        self._fail("create_scale_set")
        group = "Default" if runner_group_id == 1 else "other"
        made = RunnerScaleSet(next(self.ids), name, runner_group_id, group, tuple(labels))
        self.scale_sets[made.id] = made
        return made

    async def update_scale_set(
        self, scale_set_id: int, *, name: str | None = None, runner_group_id: int | None = None
    ) -> RunnerScaleSet:
        self.calls.append(f"PATCH scaleset {scale_set_id}")
        old = self.scale_sets.get(scale_set_id)
        if old is None:
            raise ScaleSetNotFound(404, "RunnerScaleSetNotFoundException", str(scale_set_id))
        group = runner_group_id or old.runner_group_id
        new = RunnerScaleSet(
            old.id, name or old.name, group, "Default" if group == 1 else "other", old.labels
        )
        self.scale_sets[old.id] = new
        return new

    async def delete_scale_set(self, scale_set_id: int) -> None:
        self.calls.append(f"DELETE scaleset {scale_set_id}")
        self.scale_sets.pop(scale_set_id, None)
        self.runners = {k: r for k, r in self.runners.items() if r.scale_set_id != scale_set_id}

    async def generate_jit_config(
        self, scale_set_id: int, name: str, work_folder: str = ""
    ) -> ScaleSetJitConfig:
        self.calls.append(f"JIT {name}")
        self._fail("jit")
        if any(r.name == name for r in self.runners.values()):
            raise RunnerExists(409, "AgentExistsException", name)
        runner = ScaleSetRunner(next(self.ids) + 100, name, scale_set_id)
        self.runners[runner.id] = runner
        return ScaleSetJitConfig(runner, f"jit-config-of-{name}")

    async def get_runner(self, runner_id: int) -> ScaleSetRunner | None:
        return self.runners.get(runner_id)

    async def get_runner_by_name(self, name: str) -> ScaleSetRunner | None:
        self.calls.append(f"GET runner {name}")
        return next((r for r in self.runners.values() if r.name == name), None)

    async def remove_runner(self, runner_id: int) -> None:
        self.calls.append(f"DELETE runner {runner_id}")
        self._fail("remove")
        if runner_id in self.busy:
            raise JobStillRunning(400, "JobStillRunningException", str(runner_id))
        self.runners.pop(runner_id, None)  # one already gone: 204 (reference §8.3)

    def runner_named(self, name: str) -> ScaleSetRunner | None:
        return next((r for r in self.runners.values() if r.name == name), None)


class NoListWatcher:
    """An informer's source that is never started: the tests fill the store themselves."""

    async def list(self) -> tuple[list[Any], str]:
        raise AssertionError("not used")

    def watch(self, resource_version: str, *, timeout_seconds: int) -> Any:
        raise AssertionError("not used")


@dataclass
class KeptEvents:
    """An event sink that keeps what the recorder sends."""

    events: list[dict[str, Any]] = field(default_factory=list)

    async def create(self, namespace: str, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        return event

    async def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return patch

    def reasons(self) -> list[str]:
        return [e["reason"] for e in self.events]


class RateLimitsOf:
    """A GitHub client fake's ``rate_limits``: every resource answers with the fake's ``core``."""

    core: RateLimit | None

    @property
    def rate_limits(self) -> Any:
        github = self

        class Limits:
            def get(self, resource: str = "core") -> RateLimit | None:
                return github.core

        return Limits()


def running_pod_status(*, ready: bool) -> dict[str, Any]:
    """The status of a runner pod whose ``runner`` container runs (Ready as ``ready`` says)."""
    return {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [
            {"name": "runner", "ready": ready, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}
        ],
    }


class FakeConfigMaps:
    """One namespace's ConfigMaps with resourceVersion preconditions; ``before_write`` runs just
    before a write is checked (to let another writer in)."""

    def __init__(self) -> None:
        self.objects: dict[str, Obj] = {}
        self.version = 0
        self.writes = 0
        self.written = asyncio.Event()
        self.before_write: Callable[[], Any] | None = None

    async def get(self, namespace: str, name: str) -> Obj | None:
        obj = self.objects.get(name)
        return copy.deepcopy(obj) if obj is not None else None

    async def _store(self, body: Obj) -> Obj:
        self.version += 1
        self.writes += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.objects[stored["metadata"]["name"]] = stored
        self.written.set()
        return copy.deepcopy(stored)

    async def _hook(self) -> None:
        hook, self.before_write = self.before_write, None
        if hook is not None:
            await hook()

    async def create(self, namespace: str, body: Obj) -> Obj:
        await self._hook()
        if body["metadata"]["name"] in self.objects:
            raise AlreadyExists("exists")
        return await self._store(body)

    async def replace(self, body: Obj) -> Obj:
        await self._hook()
        current = self.objects[body["metadata"]["name"]]
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified")
        return await self._store(body)

    def ledger(self) -> Ledger:
        return read_ledger_configmap(self.objects[LEDGER_CONFIGMAP])[0]
