"""What the article's HRA (metric + workflowJob trigger) costs in GitHub calls, and how a job counts.

* A reservation write (it bumps the HRA's ``generation``) causes no GitHub call: the metric's
  observation is keyed by repository, not by the HRA.
* An unchanged metric spec, or another HRA over the same repository, reuses the observation until
  it is a sync period old; the shared call window counts every call.
* A job that the metric counts and a reservation names counts once (ARC's sum behind a flag).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runnerd.controller.hra.options import AutoscalingOptions
from runnerd.controller.runwatch import RunObserver
from runnerd.github import WorkflowJob, WorkflowRun
from runnerd.github.budget import CallWindow
from tests.unit.controller.hrakit import (
    TRIGGER,
    hra,
    make_world,
    rd,
    reservation,
)

pytestmark = pytest.mark.timeout(10)

METRIC = [{"type": "TotalNumberOfQueuedAndInProgressWorkflowRuns", "repositoryNames": ["octo/app"]}]


def queued_job(job_id: int, run_id: int = 1, status: str = "queued") -> WorkflowJob:
    return WorkflowJob.from_json(
        {"id": job_id, "run_id": run_id, "status": status, "labels": ["self-hosted", "x"]}
    )


def article_world(options: AutoscalingOptions | None = None, **spec: Any) -> Any:
    w = make_world(
        ("runnerdeployments", rd()),
        ("horizontalrunnerautoscalers", hra(metrics=METRIC, scaleUpTriggers=TRIGGER, **spec)),
        options=options,
    )
    w.github.runs = [WorkflowRun.from_json({"id": 1, "status": "queued", "updated_at": "t0"})]
    w.github.jobs[1] = [queued_job(10), queued_job(11)]
    return w


def observer_at(w: Any, now: list[float]) -> RunObserver:
    return RunObserver(w.github, CallWindow(lambda: now[0]), clock=lambda: now[0])


def write_reservation(w: Any, *reservations: dict[str, Any]) -> None:
    """What the webhook writer does: a spec change, so the generation moves."""
    obj = copy.deepcopy(w.obj("horizontalrunnerautoscalers", "hra"))
    obj["spec"]["capacityReservations"] = list(reservations)
    obj["metadata"]["generation"] = int(obj["metadata"]["generation"]) + 1
    w.kube.put("horizontalrunnerautoscalers", obj)
    w.sync()


async def test_a_reservation_write_triggers_no_github_call() -> None:
    w = article_world(maxReplicas=10)
    await w.reconcile()
    first = w.github.calls
    assert first == 3  # runs?status=queued, runs?status=in_progress, the run's jobs
    for n in range(1, 6):
        write_reservation(w, *(reservation(100 + i) for i in range(n)))
        await w.reconcile()
    assert w.github.calls == first
    assert w.obj("runnerdeployments", "rd")["spec"]["replicas"] == 2 + 5


async def test_an_unchanged_metric_spec_reuses_the_observation_until_a_sync_period_passes() -> None:
    now = [1000.0]
    w = article_world()
    w.controller.observer = observer_at(w, now)
    await w.reconcile()
    calls = w.github.calls
    now[0] += 30.0
    await w.reconcile()
    assert w.github.calls == calls
    now[0] += 31.0  # older than the sync period (60 s): asked again, and the window counts it
    await w.reconcile()
    assert w.github.calls == calls + 3
    assert w.controller.observer.window.spent() == 6


async def test_two_hras_over_one_repository_share_one_observation() -> None:
    w = article_world()
    other = hra("other", metrics=METRIC)
    w.informers["horizontalrunnerautoscalers"].store.upsert(w.kube.put("horizontalrunnerautoscalers", other))
    await w.reconcile()
    calls = w.github.calls
    await w.reconcile("other")
    assert w.github.calls == calls


@pytest.mark.parametrize(
    ("count_twice", "replicas"),
    [
        (False, 3),  # jobs 10 and 11 counted by the metric; job-10's reservation adds nothing, job-12 adds 1
        (True, 4),  # ARC: 2 from the metric + 2 reservations
    ],
)
async def test_a_job_known_by_its_id_counts_once(count_twice: bool, replicas: int) -> None:
    w = article_world(
        AutoscalingOptions(count_jobs_twice=count_twice),
        capacityReservations=[reservation(10), reservation(12)],
    )
    w.obj("horizontalrunnerautoscalers", "hra")["spec"]["capacityReservations"][0]["name"] = "job-10@octo/app"
    w.sync()
    await w.reconcile()
    assert w.obj("runnerdeployments", "rd")["spec"]["replicas"] == replicas


async def test_the_budget_ceiling_serves_the_last_observation() -> None:
    now = [1000.0]
    w = article_world(AutoscalingOptions(observe_max_calls_per_hour=4))
    w.controller.observer = observer_at(w, now)
    await w.reconcile()
    calls = w.github.calls
    now[0] += 120.0
    w.github.jobs[1] = [queued_job(10)]
    await w.reconcile()
    assert w.github.calls == calls  # 3 spent, 3 more would exceed 4 an hour: the last observation
    assert w.controller.observer.limited == 1
    assert w.obj("runnerdeployments", "rd")["spec"]["replicas"] == 2


@pytest.mark.parametrize(("jobs", "refetched"), [(1, False), (2, True)])
async def test_a_runs_jobs_are_listed_again_only_when_they_may_have_changed(
    jobs: int, refetched: bool
) -> None:
    now = [1000.0]
    w = article_world()
    w.github.jobs[1] = [queued_job(10 + i) for i in range(jobs)]
    w.controller.observer = observer_at(w, now)
    await w.reconcile()
    calls = w.github.calls
    now[0] += 61.0  # the run's signature is unchanged: a one-job run's job cannot have changed
    await w.reconcile()
    assert w.github.calls == calls + 2 + (1 if refetched else 0)


async def test_a_job_whose_completed_delivery_came_is_not_counted_by_a_stale_observation() -> None:
    w = article_world(scaleDownDelaySecondsAfterScaleOut=0)
    await w.reconcile()
    assert w.obj("runnerdeployments", "rd")["spec"]["replicas"] == 2
    w.controller.finished = {10}  # the webhook said job 10 completed; the observation is younger than a sync
    await w.reconcile()
    assert w.obj("runnerdeployments", "rd")["spec"]["replicas"] == 1
