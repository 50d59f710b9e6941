"""The HRA controller against an in-memory API server and a fake GitHub: scaling, status, conditions."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from runnerd.api import HorizontalRunnerAutoscaler
from runnerd.controller.hra.options import AutoscalingOptions
from runnerd.github import Runner as GitHubRunner
from runnerd.github import WorkflowJob, WorkflowRun
from runnerd.github.sansio import RateLimit
from runnerd.runtime import Key
from tests.unit.controller.hrakit import (
    NOW,
    NS,
    TRIGGER,
    condition,
    hra,
    informer,
    make_world,
    rd,
    reservation,
)

pytestmark = pytest.mark.timeout(10)


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
