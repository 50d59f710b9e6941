"""Fakes and a world for the HRA controller and reservation tests: an in-memory API server, a fake
GitHub, and HRA/RunnerDeployment objects."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from runnerd.controller.common import INDEX_CONTROLLER, ControllerOptions
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.hra.controller import HRAController
from runnerd.controller.hra.options import AutoscalingOptions
from runnerd.controller.targets import TargetResolver
from runnerd.github import RateLimitedError, WorkflowJob, WorkflowRun
from runnerd.github import Runner as GitHubRunner
from runnerd.github.sansio import RateLimit
from runnerd.kube.resources import Resource
from runnerd.runtime import Conflict, EventRecorder, Informer, Invalid, Key, NotFound, index_by_controller_uid
from runnerd.web.metrics import Metrics
from tests.unit.controller.fakes import KeptEvents, NoListWatcher, RateLimitsOf

NS = "ns"
NOW = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.UTC)


# --- fakes -------------------------------------------------------------------------------------------


class FakeKube:
    """Objects by (plural, namespace, name); merge and JSON (test/replace) patches with preconditions."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.version = 100
        self.patches: list[tuple[str, str, Any]] = []
        self.before_patch: Any = None  # a hook to simulate a concurrent writer

    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.version)
        obj["metadata"].setdefault("uid", f"uid-{obj['metadata']['name']}")
        obj["metadata"].setdefault("generation", 1)
        self.objects[(plural, obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
        return copy.deepcopy(obj)

    async def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        obj = self.objects.get((resource.plural, namespace or "", name))
        if obj is None:
            raise NotFound(404, "NotFound", name)
        return copy.deepcopy(obj)

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: Any,
        *,
        namespace: str | None = None,
        patch_type: str = "merge",
        resource_version: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        if self.before_patch is not None:
            hook, self.before_patch = self.before_patch, None
            hook()
        key = (resource.plural, namespace or "", name)
        obj = self.objects.get(key)
        if obj is None:
            raise NotFound(404, "NotFound", name)
        self.patches.append((resource.plural, subresource or "", patch))
        obj = copy.deepcopy(obj)
        if resource_version is not None and obj["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(409, "Conflict", "the object has been modified")
        if patch_type == "json":
            for op in patch:
                path = op["path"].strip("/").split("/")
                node = obj
                for part in path[:-1]:
                    node = node[part]
                if op["op"] == "test" and node.get(path[-1]) != op["value"]:
                    raise Invalid(422, "Invalid", "test failed")
                if op["op"] == "replace":
                    node[path[-1]] = op["value"]
        else:
            _merge(obj, patch)
        return self.put(resource.plural, obj)

    async def patch_status(self, resource: Resource, name: str, patch: Any, **kw: Any) -> dict[str, Any]:
        return await self.patch(resource, name, patch, subresource="status", **kw)

    async def create(self, resource: Resource, body: Any, *, namespace: str | None = None) -> dict[str, Any]:
        """A create; ``generateName`` gets a counter as its suffix."""
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        meta.setdefault("namespace", namespace or "")
        if "name" not in meta:
            meta["name"] = f"{meta['generateName']}{self.version + 1}"
        return self.put(resource.plural, obj)

    async def delete(
        self,
        resource: Resource,
        name: str,
        *,
        namespace: str | None = None,
        missing_ok: bool = False,
        **kw: Any,
    ) -> None:
        if self.objects.pop((resource.plural, namespace or "", name), None) is None and not missing_ok:
            raise NotFound(404, "NotFound", name)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if k == "metadata" and isinstance(v, dict):
            v = {kk: vv for kk, vv in v.items() if kk != "resourceVersion"}
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v)


@dataclass
class FakeGitHub(RateLimitsOf):
    runs: list[WorkflowRun] = field(default_factory=list)
    jobs: dict[int, list[WorkflowJob]] = field(default_factory=dict)
    limited: bool = False
    calls: int = 0
    listed: list[GitHubRunner] = field(default_factory=list)
    core: RateLimit | None = None

    def paused_until(self, resource: str | None = None) -> float | None:
        return None

    async def list_workflow_runs(self, repo: Any, *, status: str | None = None) -> list[WorkflowRun]:
        self.calls += 1
        if self.limited:
            raise RateLimitedError("limited", resume_at=NOW.timestamp() + 600, resource="core", status=403)
        return [r for r in self.runs if r.status == status]

    async def list_jobs_for_run(self, repo: Any, run_id: int) -> list[WorkflowJob]:
        self.calls += 1
        return self.jobs.get(run_id, [])

    async def list_runners(self, scope: Any) -> list[Any]:
        self.calls += 1
        return list(self.listed)


def informer(name: str, *objs: dict[str, Any]) -> Informer:
    inf = Informer(name, NoListWatcher(), indexers={INDEX_CONTROLLER: index_by_controller_uid})
    for obj in objs:
        inf.store.upsert(obj)
    return inf


def rd(name: str = "rd", replicas: int = 0, labels: tuple[str, ...] = ("self-hosted", "x")) -> dict[str, Any]:
    return {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "RunnerDeployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"repository": "octo/app", "labels": list(labels)}},
        },
    }


def hra(name: str = "hra", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "HorizontalRunnerAutoscaler",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"scaleTargetRef": {"name": "rd"}, "minReplicas": 0, "maxReplicas": 5, **spec},
    }


TRIGGER = [{"githubEvent": {"workflowJob": {}}, "duration": "10m"}]


def reservation(job: int, replicas: int = 1, minutes: int = 10) -> dict[str, Any]:
    return {
        "name": f"job-{job}",
        "effectiveTime": "2026-11-27T11:59:00Z",
        "expirationTime": (NOW + dt.timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z"),
        "replicas": replicas,
    }


@dataclass
class World:
    kube: FakeKube
    github: FakeGitHub
    events: KeptEvents
    informers: dict[str, Informer]
    controller: HRAController
    metrics: Metrics

    def sync(self) -> None:
        """Make the caches show what the fake API server holds (as the watches would)."""
        for (plural, _, _), obj in self.kube.objects.items():
            if plural in self.informers:
                self.informers[plural].store.upsert(copy.deepcopy(obj))

    def obj(self, plural: str, name: str) -> dict[str, Any]:
        return self.kube.objects[(plural, NS, name)]

    async def reconcile(self, name: str = "hra") -> Any:
        result = await self.controller.reconcile(Key(NS, name))
        await self.controller.close()  # flush the background status write
        self.sync()
        return result


def make_world(*objs: tuple[str, dict[str, Any]], options: AutoscalingOptions | None = None) -> World:
    kube, github, events = FakeKube(), FakeGitHub(), KeptEvents()
    informers = {
        plural: informer(plural)
        for plural in (
            "horizontalrunnerautoscalers",
            "runnerdeployments",
            "runnerreplicasets",
            "runners",
            "pods",
        )
    }
    for plural, obj in objs:
        informers[plural].store.upsert(kube.put(plural, obj))
    metrics = Metrics()
    controller = HRAController(
        kube=kube,  # type: ignore[arg-type]
        github=github,  # type: ignore[arg-type]
        directory=RunnerDirectory(github),  # type: ignore[arg-type]
        recorder=EventRecorder(events, component="test"),
        hras=informers["horizontalrunnerautoscalers"],
        resolver=TargetResolver(informers),
        informers=informers,
        options=options or AutoscalingOptions(),
        controller_options=ControllerOptions(namespace=NS, sync_period=60.0),
        metrics=metrics,
        clock=lambda: NOW,
    )
    return World(kube, github, events, informers, controller, metrics)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or ():
        if c["type"] == type_:
            return dict(c)
    raise AssertionError(f"no {type_} condition in {obj.get('status')}")
