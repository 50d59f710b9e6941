"""The webhook delivery audit (fake GitHub and clock) and the safety-net poll's pace beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from runnerd.controller.deliveryaudit import AUDIT_KEY, AuditSettings, DeliveryAudit
from runnerd.github import NotFoundError, WorkflowRun
from runnerd.github.budget import CallWindow
from runnerd.reconcile.deliveryaudit import DeliveryAttempt, HookRef
from runnerd.web.metrics import Metrics
from tests.unit.controller.test_poller import Clock, FakeGitHub, FakeSink, job, learn, make, poll, run

pytestmark = pytest.mark.timeout(10)

HOOK = HookRef("org", "octo-org", hook_id=7)
WALL = 1_700_000_000.0


@dataclass
class FakeHooks:
    """A hook's attempts (oldest first), listed newest first ``per_page`` at a time."""

    clock: Clock
    attempts: list[DeliveryAttempt] = field(default_factory=list)
    per_page: int = 2
    calls: list[str] = field(default_factory=list)
    redelivered: list[int] = field(default_factory=list)
    fail: Exception | None = None

    def add(self, guid: str, code: int, *, redelivery: bool = False) -> DeliveryAttempt:
        a = DeliveryAttempt(
            len(self.attempts) + 1, guid, "workflow_job", "queued", code, redelivery, WALL + self.clock.now
        )
        self.attempts.append(a)
        return a

    async def list_hook_deliveries(
        self, hook: HookRef, *, next_url: str | None = None
    ) -> tuple[list[DeliveryAttempt], str | None]:
        self.calls.append(f"list {next_url or ''}".strip())
        if self.fail is not None:
            raise self.fail
        before = int(next_url) if next_url else None
        newest = [a for a in reversed(self.attempts) if before is None or a.id < before]
        page = newest[: self.per_page]
        return page, (str(page[-1].id) if len(newest) > self.per_page else None)

    async def redeliver_hook_delivery(self, hook: HookRef, delivery_id: int) -> None:
        self.calls.append(f"redeliver {delivery_id}")
        self.redelivered.append(delivery_id)
        original = next(a for a in self.attempts if a.id == delivery_id)
        self.add(original.guid, 200, redelivery=True)


def audit_of(
    hooks: FakeHooks, clock: Clock, *, ceiling: int = 1000, **kw: float
) -> tuple[DeliveryAudit, list[int]]:
    unhealthy: list[int] = []
    audit = DeliveryAudit(
        github=hooks,  # type: ignore[arg-type]
        settings=AuditSettings(HOOK, **kw),
        window=CallWindow(clock),
        ceiling=lambda: ceiling,
        metrics=Metrics(),
        on_unhealthy=lambda: unhealthy.append(1),
        monotonic=clock,
        wall=lambda: WALL + clock.now,
    )
    return audit, unhealthy


async def test_a_failed_delivery_is_redelivered_once_and_an_idle_pass_costs_one_call() -> None:
    clock = Clock()
    hooks = FakeHooks(clock)
    hooks.add("a", 200)
    failed = hooks.add("b", 0)  # timed out
    hooks.add("c", 202)
    audit, _ = audit_of(hooks, clock)
    result = await audit.reconcile(AUDIT_KEY)
    assert result is not None
    assert result.requeue_after == 60.0
    assert hooks.calls == ["list", "list 2", f"redeliver {failed.id}"]
    assert audit.healthy()
    assert audit.window.spent() == 3
    clock.now += 5
    woken = await audit.reconcile(AUDIT_KEY)  # an HRA event before the interval: nothing is sent
    assert woken is not None
    assert woken.requeue_after == pytest.approx(55.0)
    assert len(hooks.calls) == 3
    clock.now += 55
    hooks.calls.clear()
    await audit.reconcile(AUDIT_KEY)
    assert hooks.calls == ["list"]  # the redelivery succeeded; nothing new
    assert hooks.redelivered == [failed.id]


async def test_the_first_pass_looks_back_only_the_lookback() -> None:
    clock = Clock()
    hooks = FakeHooks(clock, per_page=1)
    hooks.add("old", 0)
    clock.now += 7200
    hooks.add("new", 0)
    audit, _ = audit_of(hooks, clock, lookback=3600.0)
    await audit.reconcile(AUDIT_KEY)
    assert hooks.calls == ["list", "list 2", "redeliver 2"]  # stopped at the attempt older than 1 h


async def test_a_pass_the_budget_stops_is_finished_by_the_next_one() -> None:
    clock = Clock()
    hooks = FakeHooks(clock, per_page=1)
    for guid in "abc":
        hooks.add(guid, 500)
    audit, _ = audit_of(hooks, clock, ceiling=2)
    await audit.reconcile(AUDIT_KEY)
    assert hooks.calls == ["list", "list 3"]
    assert not audit.healthy()  # not a success (and no pass succeeded before)
    clock.now += 3600  # the window frees
    hooks.calls.clear()
    audit.ceiling = lambda: 100
    await audit.reconcile(AUDIT_KEY)
    assert sorted(hooks.redelivered) == [1, 2, 3]
    assert audit.healthy()


async def test_a_refused_listing_makes_the_audit_unhealthy_after_two_intervals_and_tells_the_poll_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    hooks = FakeHooks(clock)
    audit, unhealthy = audit_of(hooks, clock)
    await audit.reconcile(AUDIT_KEY)
    assert audit.healthy()
    hooks.fail = NotFoundError(
        status=404, endpoint="GET /orgs/{org}/hooks/{hook_id}/deliveries", message="Not Found"
    )
    clock.now += 60
    await audit.reconcile(AUDIT_KEY)
    assert audit.healthy()  # within two intervals of the last success
    assert unhealthy == []
    clock.now += 61
    await audit.reconcile(AUDIT_KEY)
    assert not audit.healthy()
    assert unhealthy == [1]
    clock.now += 60
    await audit.reconcile(AUDIT_KEY)
    assert unhealthy == [1]
    assert "webhook delivery audit of hook org/octo-org/7 failed" in caplog.text
    assert audit.failures == 3


# --- the poll beside a healthy audit -------------------------------------------------------------


@dataclass
class Health:
    ok: bool = True
    bound: float = 3600.0

    def healthy(self) -> bool:
        return self.ok


async def test_a_healthy_audit_lets_the_poll_stretch_to_its_bound_and_an_unhealthy_one_brings_it_back() -> (
    None
):
    github, sink, clock = FakeGitHub(), FakeSink(), Clock()
    poller = make(github, sink, clock, poll_max_interval=60.0)
    health = Health()
    poller.audit = health
    assert await poll(poller) == pytest.approx(7.5)
    for step in range(6):
        for n in range(20 if step == 0 else 1):
            sink.deliveries.record("octo-org/app", 900 + step, 9000 + 100 * step + n, "queued")
        clock.now += await poll(poller) if step else 7.5
        await poll(poller)
    assert poller.pace == pytest.approx(3600.0)
    learn(sink, "octo-org/new", clock.now)
    github.runs["queued"] = [run(5)]
    github.jobs[5] = [job(51, 5)]
    calls = len(github.calls)
    await poll(poller)
    assert len(github.calls) == calls  # the learned repository waits for the audit's bound
    health.ok = False
    clock.now += 1.0
    wake = await poll(poller)
    assert wake <= 60.0  # today's bound at most, at once
    clock.now += wake
    await poll(poller)
    assert (51, "octo-org/new") in sink.reserved


@dataclass
class RepoCalls(FakeGitHub):
    repos: list[str] = field(default_factory=list)

    async def list_workflow_runs(self, repo: Any, *, status: str | None = None) -> list[WorkflowRun]:
        if status == "queued":
            self.repos.append(str(repo))
        return await super().list_workflow_runs(repo, status=status)


@pytest.mark.parametrize(
    ("audit", "first_poll_after"), [(Health(), 3600.0), (Health(ok=False), 0.0), (None, 0.0)]
)
async def test_a_repository_named_only_by_reservations_waits_for_the_audits_bound_while_it_is_healthy(
    audit: Health | None, first_poll_after: float
) -> None:
    github, clock = RepoCalls(), Clock()
    sink = FakeSink(held={31: ("octo-org/other", clock.now + WALL)})  # a delivery reserved job 31
    poller = make(github, sink, clock)
    poller.audit = audit
    start = clock.now
    polled_at: float | None = None
    while polled_at is None and clock.now - start <= 4000:
        await poll(poller)
        if any("octo-org/other" in r for r in github.repos):
            polled_at = clock.now - start
        clock.now += 100.0
    assert polled_at == pytest.approx(first_poll_after)
