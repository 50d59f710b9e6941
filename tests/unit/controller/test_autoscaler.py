"""The HRA controller against an in-memory API server and a fake GitHub: scaling, status, conditions."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pytest

from runnerd.api import HorizontalRunnerAutoscaler
from runnerd.controller.common import ControllerOptions
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.hra.controller import HRAController
from runnerd.controller.hra.options import AutoscalingOptions
from runnerd.controller.replicasets import INDEX_CONTROLLER
from runnerd.controller.targets import TargetResolver
from runnerd.github import RateLimitedError, WorkflowJob, WorkflowRun
from runnerd.github import Runner as GitHubRunner
from runnerd.github.sansio import RateLimit
from runnerd.kube.resources import Resource
from runnerd.runtime import Conflict, EventRecorder, Informer, Invalid, Key, NotFound, index_by_controller_uid
from runnerd.web.metrics import Metrics

pytestmark = pytest.mark.timeout(10)

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
class FakeEvents:
    events: list[dict[str, Any]] = field(default_factory=list)

    async def create(self, namespace: str, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        return event

    async def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return patch

    def reasons(self) -> list[str]:
        return [e["reason"] for e in self.events]


class NoListWatcher:
    async def list(self) -> tuple[list[Any], str]:
        raise AssertionError("not used")

    def watch(self, resource_version: str, *, timeout_seconds: int) -> Any:
        raise AssertionError("not used")


@dataclass
class FakeGitHub:
    runs: list[WorkflowRun] = field(default_factory=list)
    jobs: dict[int, list[WorkflowJob]] = field(default_factory=dict)
    limited: bool = False
    calls: int = 0
    listed: list[GitHubRunner] = field(default_factory=list)
    core: RateLimit | None = None

    @property
    def rate_limits(self) -> Any:
        github = self

        class Limits:
            def get(self, resource: str = "core") -> RateLimit | None:
                return github.core

        return Limits()

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
    events: FakeEvents
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
    kube, github, events = FakeKube(), FakeGitHub(), FakeEvents()
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


# --- tests -------------------------------------------------------------------------------------------


async def test_reservations_scale_the_target_and_the_status_says_why() -> None:
    w = make_world(
        ("runnerdeployments", rd()),
        (
            "horizontalrunnerautoscalers",
            hra(scaleUpTriggers=TRIGGER, capacityReservations=[reservation(1), reservation(2)]),
        ),
    )
    result = await w.reconcile()
    assert w.obj("runnerdeployments", "rd")["spec"]["replicas"] == 2
    assert w.obj("runnerdeployments", "rd")["spec"]["effectiveTime"] == "2026-11-27T11:59:00Z"
    status = w.obj("horizontalrunnerautoscalers", "hra")["status"]
    assert status["desiredReplicas"] == 2
    assert status["lastSuccessfulScaleOutTime"] == "2026-11-27T12:00:00Z"
    obj = w.obj("horizontalrunnerautoscalers", "hra")
    assert condition(obj, "ScalingActive")["status"] == "True"
    assert condition(obj, "AbleToScale")["reason"] == "ReadyForNewScale"
    assert condition(obj, "ScalingLimited")["status"] == "False"
    assert condition(obj, "GitHubAPIBudget")["status"] == "True"  # webhook-scaled: the poll uses GitHub
    assert "DesiredReplicasChanged" in w.events.reasons()
    # the reservations expire in 10 minutes: reconcile then
    assert result.requeue_after == pytest.approx(60.0)
    assert w.github.calls == 0  # no metric: GitHub is not asked
    # the conditions fit the CRD schema and survive the typed model
    parsed = HorizontalRunnerAutoscaler.from_dict(obj)
    assert [c["type"] for c in parsed.status.conditions] == [
        "ScalingActive",
        "AbleToScale",
        "ScalingLimited",
        "GitHubAPIBudget",
    ]


def test_the_crd_declares_status_conditions() -> None:
    from pathlib import Path

    import yaml

    crd_path = (
        Path(__file__).resolve().parents[3]
        / "charts/actions-runner-controller/crds/actions.summerwind.dev_horizontalrunnerautoscalers.yaml"
    )
    crd = yaml.safe_load(crd_path.read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    item = status["properties"]["conditions"]["items"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}


async def test_max_replicas_caps_and_says_so() -> None:
    w = make_world(
        ("runnerdeployments", rd()),
        (
            "horizontalrunnerautoscalers",
            hra(
                maxReplicas=1, scaleUpTriggers=TRIGGER, capacityReservations=[reservation(1), reservation(2)]
            ),
        ),
    )
    await w.reconcile()
    assert w.obj("runnerdeployments", "rd")["spec"]["replicas"] == 1
    limited = condition(w.obj("horizontalrunnerautoscalers", "hra"), "ScalingLimited")
    assert (limited["status"], limited["reason"]) == ("True", "TooManyReplicas")


async def test_a_missing_target_is_reported_and_retried() -> None:
    w = make_world(("horizontalrunnerautoscalers", hra()))
    result = await w.reconcile()
    active = condition(w.obj("horizontalrunnerautoscalers", "hra"), "ScalingActive")
    assert (active["status"], active["reason"]) == ("False", "FailedGetScaleTarget")
    assert "FailedGetScaleTarget" in w.events.reasons()
    assert result.requeue_after == 60.0


async def test_the_queued_jobs_metric_counts_fitting_jobs() -> None:
    w = make_world(
        ("runnerdeployments", rd()),
        (
            "horizontalrunnerautoscalers",
            hra(
                metrics=[
                    {"type": "TotalNumberOfQueuedAndInProgressWorkflowRuns", "repositoryNames": ["octo/app"]}
                ]
            ),
        ),
    )
    w.github.runs = [WorkflowRun.from_json({"id": 1, "status": "queued"})]
    w.github.jobs[1] = [
        WorkflowJob.from_json({"id": 10, "run_id": 1, "status": "queued", "labels": ["self-hosted", "x"]}),
        WorkflowJob.from_json({"id": 11, "run_id": 1, "status": "in_progress", "labels": ["X"]}),
        WorkflowJob.from_json({"id": 12, "run_id": 1, "status": "queued", "labels": ["gpu"]}),
    ]
    await w.reconcile()
    assert w.obj("runnerdeployments", "rd")["spec"]["replicas"] == 2
    labels = {
        "horizontalrunnerautoscaler": "hra",
        "namespace": NS,
        "enterprise": "",
        "organization": "",
        "repository": "octo/app",
        "kind": "RunnerDeployment",
        "name": "rd",
    }
    assert w.metrics.sample("horizontalrunnerautoscaler_necessary_replicas", labels) == 2
    assert w.metrics.sample("horizontalrunnerautoscaler_workflow_runs_queued", labels) == 1
    calls = w.github.calls
    # the reconcile caused by its own status write reuses the observation
    await w.reconcile()
    assert w.github.calls == calls


async def test_a_rate_limited_metric_never_scales_down_and_shows_the_budget() -> None:
    w = make_world(
        ("runnerdeployments", rd(replicas=3)),
        (
            "horizontalrunnerautoscalers",
            hra(
                metrics=[{"type": "TotalNumberOfQueuedAndInProgressWorkflowRuns"}],
                scaleUpTriggers=TRIGGER,
                capacityReservations=[reservation(1)],
            ),
        ),
    )
    w.github.limited = True
    await w.reconcile()
    assert w.obj("runnerdeployments", "rd")["spec"]["replicas"] == 3  # not 1 (the reservation alone)
    obj = w.obj("horizontalrunnerautoscalers", "hra")
    budget = condition(obj, "GitHubAPIBudget")
    assert (budget["status"], budget["reason"]) == ("False", "RateLimited")
    assert condition(obj, "ScalingActive")["reason"] == "FailedGetMetrics"


async def test_a_held_scale_down_is_a_condition_and_a_wake_up() -> None:
    recent = (NOW - dt.timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    w = make_world(
        ("runnerdeployments", rd(replicas=2)),
        ("horizontalrunnerautoscalers", hra(scaleUpTriggers=TRIGGER)),
        options=AutoscalingOptions(sync_period=3600.0),
    )
    w.kube.objects[("horizontalrunnerautoscalers", NS, "hra")]["status"] = {
        "desiredReplicas": 2,
        "lastSuccessfulScaleOutTime": recent,
    }
    w.sync()
    result = await w.reconcile()
    assert w.obj("runnerdeployments", "rd")["spec"]["replicas"] == 2
    able = condition(w.obj("horizontalrunnerautoscalers", "hra"), "AbleToScale")
    assert (able["status"], able["reason"]) == ("True", "ScaleDownStabilized")
    assert result.requeue_after == pytest.approx(570.05)  # the default 10-minute delay ends then


async def test_the_next_decision_sees_the_status_still_being_written() -> None:
    w = make_world(
        ("runnerdeployments", rd()),
        ("horizontalrunnerautoscalers", hra(scaleUpTriggers=TRIGGER, capacityReservations=[reservation(1)])),
    )
    gate = asyncio.Event()
    real = w.kube.patch_status

    async def slow(*args: Any, **kw: Any) -> Any:
        await gate.wait()
        return await real(*args, **kw)

    w.kube.patch_status = slow  # type: ignore[method-assign]
    await w.controller.reconcile(Key(NS, "hra"))
    # the reservation goes away before the status write lands: the scale-down is held (the decision
    # knows it just scaled out), instead of reading the stale status (no scale-out yet) and dropping
    hra_obj = w.kube.objects[("horizontalrunnerautoscalers", NS, "hra")]
    hra_obj["spec"]["capacityReservations"] = []
    w.sync()
    await w.controller.reconcile(Key(NS, "hra"))
    assert w.obj("runnerdeployments", "rd")["spec"]["replicas"] == 1
    gate.set()
    await w.controller.close()
    assert w.obj("horizontalrunnerautoscalers", "hra")["status"]["desiredReplicas"] == 1


async def test_ambiguity_conditions_expire() -> None:
    old = (NOW - dt.timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    w = make_world(("runnerdeployments", rd()), ("horizontalrunnerautoscalers", hra(scaleUpTriggers=TRIGGER)))
    w.kube.objects[("horizontalrunnerautoscalers", NS, "hra")]["status"] = {
        "conditions": [
            {
                "type": "AmbiguousWebhookTarget",
                "status": "True",
                "reason": "SeveralTargetsFit",
                "message": "2 targets",
                "lastTransitionTime": old,
            }
        ]
    }
    w.sync()
    await w.reconcile()
    ambiguous = condition(w.obj("horizontalrunnerautoscalers", "hra"), "AmbiguousWebhookTarget")
    assert (ambiguous["status"], ambiguous["reason"]) == ("False", "NoRecentAmbiguity")


async def test_invalid_metrics_are_reported() -> None:
    w = make_world(
        ("runnerdeployments", rd()),
        (
            "horizontalrunnerautoscalers",
            hra(metrics=[{"type": "TotalNumberOfQueuedAndInProgressWorkflowRuns"}] * 2),
        ),
    )
    await w.reconcile()
    active = condition(w.obj("horizontalrunnerautoscalers", "hra"), "ScalingActive")
    assert (active["status"], active["reason"]) == ("False", "InvalidMetricSpec")
    assert w.obj("runnerdeployments", "rd")["spec"]["replicas"] == 0


async def test_a_deleted_hra_forgets_its_series() -> None:
    w = make_world(
        ("runnerdeployments", rd()),
        ("horizontalrunnerautoscalers", hra(scaleUpTriggers=TRIGGER, capacityReservations=[reservation(1)])),
    )
    await w.reconcile()
    labels = {"horizontalrunnerautoscaler": "hra", "namespace": NS}
    assert w.metrics.sample("runnerd_horizontalrunnerautoscaler_reserved_replicas", labels) == 1
    w.informers["horizontalrunnerautoscalers"].store.delete(Key(NS, "hra"))
    assert await w.controller.reconcile(Key(NS, "hra")) is None
    assert w.metrics.sample("runnerd_horizontalrunnerautoscaler_reserved_replicas", labels) is None


def runner_set(replicas: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "RunnerSet",
        "metadata": {"name": "rs", "namespace": NS},
        "spec": {
            "replicas": replicas,
            "repository": "octo/app",
            "labels": ["x"],
            "selector": {"matchLabels": {"app": "rs"}},
            "serviceName": "rs",
            "template": {"metadata": {"labels": {"app": "rs"}}, "spec": {"containers": []}},
        },
    }


async def test_a_runner_set_target_is_scaled_through_the_runnersets_informer() -> None:
    spec = hra(scaleUpTriggers=TRIGGER, capacityReservations=[reservation(1)])
    spec["spec"]["scaleTargetRef"] = {"kind": "RunnerSet", "name": "rs"}
    w = make_world(("horizontalrunnerautoscalers", spec))
    w.informers["runnersets"] = informer("runnersets", w.kube.put("runnersets", runner_set()))
    await w.reconcile()
    assert w.obj("runnersets", "rs")["spec"]["replicas"] == 1
    assert condition(w.obj("horizontalrunnerautoscalers", "hra"), "ScalingActive")["status"] == "True"


async def test_a_runner_set_target_without_the_informer_is_skipped_cleanly() -> None:
    spec = hra(scaleUpTriggers=TRIGGER)
    spec["spec"]["scaleTargetRef"] = {"kind": "RunnerSet", "name": "rs"}
    w = make_world(("horizontalrunnerautoscalers", spec))
    result = await w.reconcile()
    active = condition(w.obj("horizontalrunnerautoscalers", "hra"), "ScalingActive")
    assert active["reason"] == "FailedGetScaleTarget"
    assert "no runnersets informer" in active["message"]
    assert result.requeue_after == 60.0


def owned(kind: str, name: str, owner: dict[str, Any]) -> dict[str, Any]:
    ref = {
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    return {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "ownerReferences": [ref]},
    }


async def test_percentage_runners_busy_counts_the_targets_runners() -> None:
    busy_metric = [{"type": "PercentageRunnersBusy", "scaleUpThreshold": "0.75", "scaleUpFactor": "2"}]
    w = make_world(
        ("runnerdeployments", rd(replicas=2)), ("horizontalrunnerautoscalers", hra(metrics=busy_metric))
    )
    deployment = w.informers["runnerdeployments"].store.get(Key(NS, "rd"))
    assert deployment is not None
    rrs = owned("RunnerReplicaSet", "rd-abc", {**deployment, "kind": "RunnerDeployment"})
    w.informers["runnerreplicasets"].store.upsert(rrs)
    for name in ("rd-abc-1", "rd-abc-2"):
        w.informers["runners"].store.upsert(owned("Runner", name, rrs))
    w.github.listed = [
        GitHubRunner(id=1, name="rd-abc-1", os="linux", status="online", busy=True, labels=("x",)),
        GitHubRunner(id=2, name="rd-abc-2", os="linux", status="online", busy=True, labels=("x",)),
    ]
    await w.reconcile()
    assert w.obj("runnerdeployments", "rd")["spec"]["replicas"] == 4  # 2 of 2 busy >= 0.75: x2
    labels = {
        "horizontalrunnerautoscaler": "hra",
        "namespace": NS,
        "enterprise": "",
        "organization": "",
        "repository": "octo/app",
        "kind": "RunnerDeployment",
        "name": "rd",
    }
    assert w.metrics.sample("horizontalrunnerautoscaler_runners_busy", labels) == 2
    assert w.metrics.sample("horizontalrunnerautoscaler_runners_registered", labels) == 2
    assert w.metrics.sample("horizontalrunnerautoscaler_replicas_desired", labels) == 4


async def test_an_unchanged_decision_writes_nothing() -> None:
    w = make_world(
        ("runnerdeployments", rd()),
        ("horizontalrunnerautoscalers", hra(scaleUpTriggers=TRIGGER, capacityReservations=[reservation(1)])),
    )
    await w.reconcile()
    writes = len(w.kube.patches)
    w.github.core = RateLimit("core", 5000, 4321, 0, NOW.timestamp() + 600, NOW.timestamp())
    await w.reconcile()  # e.g. woken by its own status write; the budget moved meanwhile
    assert len(w.kube.patches) == writes
    assert len(w.events.events) == 1
