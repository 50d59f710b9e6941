"""The safety-net poll: budget math, and what it calls and reserves (fake GitHub, sink and clock)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from runnerd.api import HorizontalRunnerAutoscaler, RunnerConfig
from runnerd.controller.deliveries import DeliveryLedger
from runnerd.controller.hra.options import AutoscalingOptions
from runnerd.controller.poller import POLL_KEY, SafetyNetPoller, plan
from runnerd.controller.reservations import RepoContext
from runnerd.controller.runwatch import RunObserver
from runnerd.controller.targets import ScaleTarget, WebhookTarget
from runnerd.github import RateLimitedError, WorkflowJob, WorkflowRun
from runnerd.github.budget import CallWindow, pages
from runnerd.github.sansio import RateLimit
from runnerd.reconcile.matching import JobEvent
from runnerd.runtime import Key
from runnerd.web.metrics import Metrics
from tests.unit.controller.fakes import RateLimitsOf

pytestmark = pytest.mark.timeout(10)


# --- the math ---------------------------------------------------------------------------------------


def test_default_bound_and_budget_cover_seven_repositories_every_55_seconds() -> None:
    p = plan(60.0, 1000, 1)
    assert (p.interval, p.stretched) == (55.0, False)
    assert p.idle_calls_per_hour == pytest.approx(2 * 3600 / 55)
    seven = plan(60.0, 1000, 7)
    assert seven.interval == 55.0
    assert seven.idle_calls_per_hour <= 1000


def test_more_repositories_than_the_budget_allows_stretch_the_interval() -> None:
    p = plan(60.0, 1000, 20)
    assert p.stretched
    assert p.interval == pytest.approx(2 * 20 * 3600 / 1000)  # 144 s
    assert p.idle_calls_per_hour == pytest.approx(1000)


@pytest.mark.parametrize(("bound", "interval"), [(2.0, 1.5), (10.0, 7.5), (20.0, 15.0), (600.0, 595.0)])
def test_the_interval_leaves_a_margin_within_the_bound(bound: float, interval: float) -> None:
    assert plan(bound, 1_000_000, 1).interval == pytest.approx(interval)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="bound"):
        plan(0, 1000, 1)
    with pytest.raises(ValueError, match="budget"):
        plan(60, 0, 1)


def test_pages() -> None:
    assert [pages(n) for n in (0, 1, 100, 101, 250)] == [1, 1, 1, 2, 3]


def test_call_window_is_a_sliding_hour() -> None:
    now = [0.0]
    window = CallWindow(lambda: now[0])
    window.spend(600)
    now[0] = 1800.0
    window.spend(400)
    assert window.spent() == 1000
    assert window.free_at(2, 1000) == 3600.0  # when the first 600 leave the window
    assert window.free_at(2, 1002) == 1800.0  # fits now
    now[0] = 3600.0
    assert window.spent() == 400


# --- the poll ---------------------------------------------------------------------------------------


def run(run_id: int, status: str = "queued", updated: str = "t0") -> WorkflowRun:
    return WorkflowRun.from_json(
        {
            "id": run_id,
            "status": status,
            "run_attempt": 1,
            "updated_at": updated,
            "repository": {"owner": {"type": "Organization"}},
        }
    )


def job(job_id: int, run_id: int, status: str = "queued") -> WorkflowJob:
    return WorkflowJob.from_json(
        {"id": job_id, "run_id": run_id, "status": status, "labels": ["self-hosted", "x"]}
    )


@dataclass
class FakeGitHub(RateLimitsOf):
    runs: dict[str, list[WorkflowRun]] = field(default_factory=lambda: {"queued": [], "in_progress": []})
    jobs: dict[int, list[WorkflowJob]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    limited_until: float | None = None
    paused: float | None = None
    core: RateLimit | None = None

    def paused_until(self, resource: str | None = None) -> float | None:
        return self.paused

    async def list_workflow_runs(self, repo: Any, *, status: str | None = None) -> list[WorkflowRun]:
        self.calls.append(f"runs?status={status}")
        if self.limited_until is not None:
            raise RateLimitedError("limited", resume_at=self.limited_until, resource="core", status=403)
        return list(self.runs[status or ""])

    async def list_jobs_for_run(self, repo: Any, run_id: int) -> list[WorkflowJob]:
        self.calls.append(f"jobs/{run_id}")
        return list(self.jobs.get(run_id, []))


HRA = Key("ns", "hra")


class FakeResolver:
    def parse_hra(self, obj: dict[str, Any]) -> HorizontalRunnerAutoscaler:
        return HorizontalRunnerAutoscaler.from_dict(obj)


@dataclass
class FakeSink:
    reserved: list[tuple[int, str]] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)
    known: set[int] = field(default_factory=set)
    repositories: dict[str, Any] = field(default_factory=dict)
    resolver: FakeResolver = field(default_factory=FakeResolver)
    deliveries: DeliveryLedger = field(default_factory=DeliveryLedger)

    def targets(self) -> list[WebhookTarget]:
        obj = {"metadata": {"name": "hra", "namespace": "ns"}, "spec": {"maxReplicas": 3}}
        config = RunnerConfig(repository="octo-org/app", labels=["x"])
        target = ScaleTarget("RunnerDeployment", "ns", "rd", {}, config, 0, None)
        trigger: Any = None
        return [WebhookTarget(HRA, obj, trigger, target)]

    held: dict[int, tuple[str, float]] = field(default_factory=dict)
    """Live reservations made by anyone: job id -> (repository, effective time as epoch)."""

    def reserved_repositories(self) -> set[str]:
        return {repo for repo, _ in self.held.values()}

    def reservations_of(self, repository: str) -> dict[int, tuple[Key, float]]:
        return {j: (HRA, t) for j, (repo, t) in self.held.items() if repo.casefold() == repository.casefold()}

    async def reserve_polled(
        self, event: JobEvent, job_id: int, repository: str | None = None, job: Any = None
    ) -> tuple[str, Key | None]:
        self.reserved.append((job_id, event.repository))
        effect = "unchanged" if job_id in self.known else "reserved"
        self.known.add(job_id)
        self.held.setdefault(job_id, (repository or event.repository, 0.0))  # live, as in the sink
        return effect, HRA

    async def complete_polled(self, key: Key, job_id: int) -> str:
        self.completed.append(job_id)
        return "released" if self.held.pop(job_id, None) is not None or job_id in self.known else "unchanged"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(github: FakeGitHub, sink: FakeSink, clock: Clock, **opts: Any) -> SafetyNetPoller:
    options = AutoscalingOptions(poll=True, poll_bound=10.0, poll_max_calls_per_hour=100_000, **opts)
    return SafetyNetPoller(
        github=github,  # type: ignore[arg-type]
        sink=sink,  # type: ignore[arg-type]
        options=options,
        metrics=Metrics(),
        monotonic=clock,
        wall=lambda: clock.now + 1_700_000_000,
    )


async def test_an_idle_repository_costs_two_calls_per_interval() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    poller = make(github, sink, clock)
    result = await poller.reconcile(POLL_KEY)
    assert github.calls == ["runs?status=queued", "runs?status=in_progress"]
    assert result is not None
    assert result.requeue_after == pytest.approx(7.5)
    # called again before it is due (an HRA changed): nothing is sent
    clock.now += 3
    await poller.reconcile(POLL_KEY)
    assert len(github.calls) == 2
    clock.now += 5
    await poller.reconcile(POLL_KEY)
    assert len(github.calls) == 4
    assert poller.budget_limited() is None


async def test_queued_jobs_of_a_new_run_are_reserved_once_and_released_when_the_run_ends() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    github.runs["queued"] = [run(1)]
    github.jobs[1] = [job(11, 1), job(12, 1, "in_progress")]
    poller = make(github, sink, clock)
    await poller.reconcile(POLL_KEY)
    assert sink.reserved == [(11, "octo-org/app")]
    assert poller.recovered == 1
    # unchanged run: no jobs call, no second reservation
    clock.now += 10
    await poller.reconcile(POLL_KEY)
    assert github.calls.count("jobs/1") == 1
    assert len(sink.reserved) == 1
    # the run finished: it left both lists, the poll releases what it reserved
    github.runs["queued"] = []
    clock.now += 10
    await poller.reconcile(POLL_KEY)
    assert sink.completed == [11]


async def test_a_queued_job_whose_reservation_expired_is_reserved_again_in_an_unchanged_run() -> None:
    """A reservation that expired before its job got a runner (the runner took another job, or a
    restart lost the moment) reserves nothing: the still-queued job must not be forgotten."""
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    github.runs["queued"] = [run(1)]
    github.jobs[1] = [job(11, 1)]
    poller = make(github, sink, clock)
    await poller.reconcile(POLL_KEY)
    assert sink.reserved == [(11, "octo-org/app")]
    clock.now += 10
    await poller.reconcile(POLL_KEY)
    assert len(sink.reserved) == 1  # still live: nothing to do
    del sink.held[11]  # expired
    clock.now += 10
    await poller.reconcile(POLL_KEY)
    assert sink.reserved == [(11, "octo-org/app")] * 2
    assert github.calls.count("jobs/1") == 1  # the run's jobs were not listed again


async def test_a_job_the_webhook_already_reserved_is_not_counted_as_recovered() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(known={21}), Clock()
    github.runs["in_progress"] = [run(2, "in_progress")]
    github.jobs[2] = [job(21, 2), job(22, 2, "completed")]
    poller = make(github, sink, clock)
    await poller.reconcile(POLL_KEY)
    assert sink.reserved == [(21, "octo-org/app")]
    assert poller.recovered == 0


async def test_a_rate_limit_defers_every_poll_to_the_reset() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    resume_wall = clock.now + 1_700_000_000 + 40
    github.limited_until = resume_wall
    poller = make(github, sink, clock)
    result = await poller.reconcile(POLL_KEY)
    assert poller.rate_limited == 1
    assert result is not None
    assert result.requeue_after == pytest.approx(40)
    limited = poller.budget_limited()
    assert limited is not None
    assert limited[0] == "RateLimited"
    # before the reset nothing more is sent
    clock.now += 20
    await poller.reconcile(POLL_KEY)
    assert len(github.calls) == 1


async def test_a_nearly_spent_core_bucket_defers_without_calling() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    github.core = RateLimit("core", 5000, 50, 0, clock.now + 1_700_000_000 + 30, clock.now)
    poller = make(github, sink, clock)
    result = await poller.reconcile(POLL_KEY)
    assert github.calls == []
    assert poller.deferred == 1
    assert result is not None
    assert result.requeue_after == pytest.approx(30)


async def test_the_budget_stretches_the_interval_and_says_so() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    poller = make(github, sink, clock)
    poller.options.poll_max_calls_per_hour = 360  # 2 calls per 20 s > bound 10 s
    result = await poller.reconcile(POLL_KEY)
    assert result is not None
    assert result.requeue_after == pytest.approx(20)
    limited = poller.budget_limited()
    assert limited is not None
    assert limited[0] == "PollIntervalStretched"


async def test_the_hourly_ceiling_holds_when_busy() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    poller = make(github, sink, clock)
    poller.options.poll_max_calls_per_hour = 10_000
    poller.window.spend(9_999)  # as if a busy hour had spent it
    await poller.reconcile(POLL_KEY)
    assert github.calls == []
    limited = poller.budget_limited()
    assert limited is not None
    assert limited[0] == "PollBudgetSpent"


async def test_disabled_poll_does_nothing() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    poller = make(github, sink, clock)
    poller.options.poll = False
    assert await poller.reconcile(POLL_KEY) is None
    assert github.calls == []


# --- finished jobs' reservations, whoever made them -------------------------------------------------


@pytest.mark.parametrize(
    ("listed", "reserved_ago", "released"),
    [
        ("completed", 5.0, True),  # GitHub lists the job as completed: released at once
        (None, 120.0, True),  # in no active run, reserved long before the listing: finished
        (None, 5.0, False),  # in no active run, but reserved just before the listing: may lag
        ("queued", 120.0, False),  # still queued: kept
        ("in_progress", 120.0, False),  # running: kept
    ],
)
async def test_a_finished_jobs_reservation_is_released_after_a_restart(
    listed: str | None, reserved_ago: float, released: bool
) -> None:
    github, clock = FakeGitHub(), Clock()
    wall = clock.now + 1_700_000_000
    # a webhook (before the restart) reserved job 31 of a repository this poll never learned
    sink = FakeSink(held={31: ("octo-org/other", wall - reserved_ago)})
    if listed is not None:
        github.runs["in_progress"] = [run(3, "in_progress")]
        github.jobs[3] = [job(31, 3, listed), job(32, 3, "in_progress")]
    poller = make(github, sink, clock)  # a fresh poller: nothing remembered
    await poller.reconcile(POLL_KEY)
    assert "runs?status=queued" in github.calls  # the repository named by the reservation is polled
    assert (31 in sink.completed) is released
    assert poller.released_finished == (1 if released else 0)


# --- the adaptive interval (virtual time) -----------------------------------------------------------


async def poll(poller: SafetyNetPoller) -> float:
    result = await poller.reconcile(POLL_KEY)
    assert result is not None
    assert result.requeue_after is not None
    return result.requeue_after


async def stretched(github: FakeGitHub, sink: FakeSink, clock: Clock) -> SafetyNetPoller:
    """A poller whose deliveries flowed until its interval reached the bound (60 s; short: 7.5 s)."""
    poller = make(github, sink, clock, poll_max_interval=60.0)
    assert await poll(poller) == pytest.approx(7.5)  # no evidence yet: the short interval
    for step, expected in enumerate((30.0, 60.0, 60.0)):
        for n in range(20 if step == 0 else 1):  # the evidence a stretch needs first (20 deliveries)
            sink.deliveries.record("octo-org/app", 900 + step, 9000 + 100 * step + n, "queued")
        clock.now += await poll(poller) if step else 7.5
        assert await poll(poller) == pytest.approx(expected)
    return poller


async def test_the_interval_stretches_while_deliveries_flow_and_is_kept_while_idle() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    poller = await stretched(github, sink, clock)
    calls = len(github.calls)
    clock.now += 60
    assert await poll(poller) == pytest.approx(60.0)  # idle: kept
    assert len(github.calls) == calls + 2
    assert poller.pace_steps["stretch"] >= 2
    assert poller.observer.backstop_age == pytest.approx(60.0)


async def test_a_lost_queued_delivery_gets_its_reservation_within_the_bound_and_resets_the_interval() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    poller = await stretched(github, sink, clock)
    wake = clock.now + 60.0  # the stretched poll just ran and asked to run again in 60 s
    queued_at = clock.now + 1  # just after a poll: the worst case
    github.runs["queued"] = [run(5)]
    github.jobs[5] = [job(51, 5)]  # its queued delivery never comes
    while (51, "octo-org/app") not in sink.reserved:
        clock.now = wake
        assert clock.now - queued_at <= 60.0, "not reserved within the stretched bound"
        wake = clock.now + await poll(poller)
    assert poller.recovered == 1
    assert poller.pace == pytest.approx(7.5)  # back to the short interval
    assert poller.observer.backstop_age == pytest.approx(7.5)


async def test_a_few_deliveries_do_not_stretch_the_interval() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    poller = make(github, sink, clock, poll_max_interval=60.0)
    for n in range(19):
        sink.deliveries.record("octo-org/app", 1, 10 + n, "queued")
        assert await poll(poller) == pytest.approx(7.5)
        clock.now += 7.5
    assert poller.pace_steps["stretch"] == 0


async def test_a_refused_delivery_resets_the_interval() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    poller = await stretched(github, sink, clock)
    poller.metrics.webhook_deliveries.labels("workflow_job", "bad_signature").inc()
    sink.deliveries.record("octo-org/app", 950, 9500, "queued")  # others still arrive
    clock.now += 60
    assert await poll(poller) == pytest.approx(7.5)
    assert poller.pace_steps["reset"] == 1


async def test_a_queued_run_while_no_delivery_comes_resets_the_interval() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    poller = await stretched(github, sink, clock)
    github.runs["queued"] = [run(6)]
    github.jobs[6] = [job(61, 6)]
    sink.known.add(61)  # its reservation exists (it expired), but no delivery announced the job here
    clock.now += 60
    assert await poll(poller) == pytest.approx(7.5)
    assert poller.recovered == 0


async def test_an_announced_run_is_not_listed_until_the_bound_and_its_reservation_is_kept() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    poller = await stretched(github, sink, clock)
    github.runs["queued"] = [run(7)]
    github.jobs[7] = [job(71, 7)]
    sink.deliveries.record("octo-org/app", 7, 71, "queued")
    sink.held[71] = ("octo-org/app", clock.now + 1_700_000_000 - 120)  # the delivery's reservation
    clock.now += 60
    await poll(poller)
    assert "jobs/7" not in github.calls
    assert poller.observer.deferred == 1
    assert 71 not in sink.completed  # in an active run whose jobs were not listed: kept
    clock.now += 60  # unlisted for the bound: listed once, for siblings whose delivery was lost
    await poll(poller)
    assert github.calls.count("jobs/7") == 1
    assert 71 not in sink.completed


async def test_an_announced_job_still_queued_without_a_live_reservation_gets_its_run_listed() -> None:
    """A run of 4 jobs, one delivery applied: its runner took another job, its reservation expired,
    and the 3 other deliveries were lost. The run is listed at once and all 4 are reserved again."""
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    poller = make(github, sink, clock)
    github.runs["queued"] = [run(4)]
    github.jobs[4] = [job(40 + i, 4) for i in range(4)]
    sink.deliveries.record("octo-org/app", 4, 40, "queued")
    sink.held[40] = ("octo-org/app", clock.now + 1_700_000_000)
    await poll(poller)
    assert "jobs/4" not in github.calls  # covered: deferred
    del sink.held[40]  # expired while the job is still queued
    clock.now += 7.5
    await poll(poller)
    assert github.calls.count("jobs/4") == 1
    assert sorted(j for j, _ in sink.reserved) == [40, 41, 42, 43]
    # a job the deliveries say started needs no reservation: its run stays deferred
    sink.deliveries.record("octo-org/app", 5, 50, "queued")
    sink.deliveries.started("octo-org/app", 5, 50)
    github.runs["queued"] = [run(4), run(5)]
    github.jobs[5] = [job(50, 5)]
    clock.now += 7.5
    await poll(poller)
    assert "jobs/5" not in github.calls


async def test_a_run_whose_announced_jobs_completed_while_it_is_still_active_is_listed() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    poller = await stretched(github, sink, clock)
    github.runs["in_progress"] = [run(8, "in_progress")]
    github.jobs[8] = [job(81, 8, "completed"), job(82, 8)]  # 82's queued delivery was lost
    sink.deliveries.record("octo-org/app", 8, 81, "queued")
    sink.deliveries.record("octo-org/app", 8, 81, "completed")
    clock.now += 60
    await poll(poller)
    assert github.calls.count("jobs/8") == 1
    assert (82, "octo-org/app") in sink.reserved
    assert poller.pace == pytest.approx(7.5)


async def test_a_reader_that_counts_jobs_twice_gets_the_announced_runs_jobs_too() -> None:
    github, clock = FakeGitHub(), Clock()
    observer = RunObserver(github, CallWindow(clock), clock=clock)  # type: ignore[arg-type]
    observer.ledger = DeliveryLedger()
    observer.ledger.record("octo-org/app", 7, 71, "queued")
    observer.live = lambda repository: {71}  # its reservation holds it
    github.runs["queued"] = [run(7)]
    github.jobs[7] = [job(71, 7)]
    deferred = await observer.observe("octo-org/app", max_age=60.0)
    assert (deferred.unlisted(), deferred.job_ids(), github.calls.count("jobs/7")) == ({7}, set(), 0)
    everything = await observer.observe("octo-org/app", max_age=60.0, defer=False)  # not fresh for it
    assert (everything.unlisted(), everything.job_ids(), github.calls.count("jobs/7")) == (set(), {71}, 1)


# --- repositories learned from deliveries; many repositories sharing the budget ----------------------


def learn(sink: FakeSink, repository: str, at: float) -> None:
    """A ``workflow_job`` delivery from ``repository`` arrived (the sink learns it)."""
    sink.repositories[repository.casefold()] = RepoContext(
        repository, "Organization", "octo-org", None, HRA, at
    )


async def test_a_repository_learned_from_a_delivery_is_first_polled_one_interval_later() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    poller = make(github, sink, clock)
    learn(sink, "octo-org/new", clock.now)  # a delivery just came from it; a sibling's was lost
    github.runs["queued"] = [run(5)]
    github.jobs[5] = [job(51, 5)]
    assert await poll(poller) == pytest.approx(7.5)
    assert github.calls == ["runs?status=queued", "runs?status=in_progress", "jobs/5"]  # octo-org/app only
    assert (51, "octo-org/new") not in sink.reserved
    clock.now += 7.5
    await poll(poller)
    assert github.calls.count("runs?status=queued") == 3  # both repositories, one interval after learning
    assert (51, "octo-org/new") in sink.reserved  # the lost sibling: within the bound of the repository


async def test_a_repository_known_without_a_delivery_is_polled_at_once_even_when_a_delivery_came() -> None:
    github, clock = FakeGitHub(), Clock()
    sink = FakeSink(held={31: ("octo-org/other", clock.now + 1_700_000_000)})  # a reservation names it
    poller = make(github, sink, clock)
    learn(sink, "octo-org/other", clock.now)
    learn(sink, "octo-org/app", clock.now)  # the target's own repository
    await poll(poller)
    assert github.calls.count("runs?status=queued") == 2  # both at once: neither is known only by delivery


async def test_when_the_budget_spaces_the_polls_wider_the_stretch_widens_alike() -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    # bound 10 s: 7.5 s wanted; 480 calls an hour: 2 calls every 15 s, twice as wide as wanted
    poller = make(github, sink, clock, poll_max_interval=60.0)
    poller.options.poll_max_calls_per_hour = 480
    assert await poll(poller) == pytest.approx(15.0)
    intervals = []
    for step in range(4):
        for n in range(20 if step == 0 else 1):
            sink.deliveries.record("octo-org/app", 900 + step, 9000 + 100 * step + n, "queued")
        clock.now += intervals[-1] if intervals else 15.0
        intervals.append(await poll(poller))
    assert intervals == pytest.approx([60.0, 120.0, 120.0, 120.0])  # bound 60 s x 2, not 60 s
    # a lost delivery still resets it to the short interval
    github.runs["queued"] = [run(5)]
    github.jobs[5] = [job(51, 5)]
    clock.now += 120.0
    assert await poll(poller) == pytest.approx(15.0)


async def test_a_recheck_lists_the_repositorys_jobs_at_once_whatever_the_pace() -> None:
    """A sized job's runner ran another job with the same labels: its Runner went while the job is
    still queued. A recheck polls at once (the pace is 60 s), lists every run's jobs and gives the
    job its runner again; it is not taken as a lost webhook (the pace stays)."""
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    poller = await stretched(github, sink, clock)
    github.runs["queued"] = [run(4)]
    github.jobs[4] = [job(40, 4)]
    sink.deliveries.record("octo-org/app", 4, 40, "queued")
    sink.held[40] = ("octo-org/app", clock.now + 1_700_000_000)  # its waiting Runner
    clock.now += 60
    await poll(poller)
    calls = len(github.calls)
    del sink.held[40]  # its Runner went: its runner ran another job
    clock.now += 1
    await poll(poller)
    assert len(github.calls) == calls  # not due: nothing listed
    poller.recheck("octo-org/app")
    poller.recheck("octo-org/elsewhere")  # a repository the poll does not cover: nothing
    assert await poll(poller) == pytest.approx(60.0)
    assert github.calls[calls:] == ["runs?status=queued", "runs?status=in_progress", "jobs/4"]
    assert (40, "octo-org/app") in sink.reserved
    clock.now += 1
    await poll(poller)
    assert len(github.calls) == calls + 3  # once


async def test_a_job_a_recheck_finds_is_counted_and_logged_as_rechecked_not_as_a_lost_webhook(
    caplog: pytest.LogCaptureFixture,
) -> None:
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    poller = await stretched(github, sink, clock)
    github.runs["queued"] = [run(4)]
    github.jobs[4] = [job(40, 4)]
    sink.deliveries.record("octo-org/app", 4, 40, "queued")
    sink.held[40] = ("octo-org/app", clock.now + 1_700_000_000)  # its waiting Runner
    clock.now += 60
    await poll(poller)
    del sink.held[40]  # its Runner went: its runner ran another job
    poller.recheck("octo-org/app")
    with caplog.at_level(logging.INFO, logger="runnerd.controller.poller"):
        await poll(poller)
    assert (40, "octo-org/app") in sink.reserved
    assert (poller.rechecked, poller.recovered) == (1, 0)
    assert poller.metrics.sample("runnerd_safety_net_jobs_rechecked_total") == 1.0
    assert poller.metrics.sample("runnerd_safety_net_jobs_recovered_total") == 0.0
    assert "recheck of octo-org/app: job 40 was still queued after its runner went" in caplog.text
    assert "without a webhook" not in caplog.text
