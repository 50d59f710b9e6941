"""Statistics and routing of runner scale sets, on the pure model (no HTTP).

The property test drives random job streams (seeded, reproducible: hypothesis is not a dependency)
through the model and the Actions service and checks, after every single event, that each scale
set's statistics equal a recount from the model and keep their invariants."""

from __future__ import annotations

import contextlib
import json
import random
from dataclasses import dataclass

import pytest

from ghsim import JobSpec, ManualClock, World
from ghsim.actions import ActionsService
from ghsim.actions.errors import ActionsError
from ghsim.actions.scaleset import ScaleSet, Tenant
from ghsim.entities import Scope
from ghsim.errors import RegistrationError

from .conftest import Setup, populate


@dataclass
class Rig:
    world: World
    clock: ManualClock
    svc: ActionsService
    setup: Setup
    org: Tenant
    ent: Tenant
    repo: Tenant


def make_rig(mode: str) -> Rig:
    clock = ManualClock()
    world = World(clock)
    world.config.actions.mode = mode
    setup = populate(world)
    svc = ActionsService(world)

    def tenant(scope: Scope) -> Tenant:
        token = world.issue_token(scope, "registration").token
        return svc.register(token, scope, "http://ghsim")[0]

    return Rig(
        world,
        clock,
        svc,
        setup,
        tenant(Scope("org", "octo-org")),
        tenant(Scope("enterprise", "acme")),
        tenant(Scope("repo", "octo-org/app")),
    )


def scale_set(
    rig: Rig, tenant: Tenant, name: str, group: int = 1, labels: list[str] | None = None
) -> ScaleSet:
    body = {"name": name, "runnerGroupId": group, "labels": [{"name": n} for n in labels or [name]]}
    return rig.svc.create_scale_set(tenant, body)


def enqueue(rig: Rig, labels: tuple[str, ...], repo: str = "octo-org/app", group: str | None = None) -> int:
    run = rig.world.enqueue_run(rig.world.repo_by_name(repo), [JobSpec(labels, group=group)])
    return run.job_ids[0]


def owner(rig: Rig, job_id: int) -> str | None:
    ss_id = rig.svc.flow.job_owner.get(job_id)
    return None if ss_id is None else rig.svc.scale_sets[ss_id].name


# ---- routing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "repo", "group", "expected"),
    [
        (("arc",), "octo-org/app", None, "arc"),  # runs-on names the scale set
        (("ARC",), "octo-org/app", None, "arc"),  # case-insensitive
        (("multi",), "octo-org/app", None, "multi"),
        (("multi", "linux"), "octo-org/app", None, "multi"),  # a subset of a multi-label set
        (("linux",), "octo-org/app", None, "multi"),
        (("multi", "windows"), "octo-org/app", None, None),  # not every label matches
        (("self-hosted", "arc"), "octo-org/app", None, None),  # scale sets have no default labels
        (("gpu-set",), "octo-org/app", None, "gpu-set"),  # the gpu group admits octo-org/app ...
        (("gpu-set",), "octo-org/site", None, None),  # ... and nothing else
        (("arc",), "octo-org/app", "gpu", None),  # runs-on: {group: gpu}
        (("arc",), "other-org/lib", None, "ent-arc"),  # enterprise scale set, shared with all orgs
        (("repo-set",), "octo-org/app", None, "repo-set"),
        (("shared",), "octo-org/app", None, "shared"),  # repository scale set beats the org one
        (("nothing",), "octo-org/app", None, None),
    ],
)
def test_routing(labels: tuple[str, ...], repo: str, group: str | None, expected: str | None) -> None:
    rig = make_rig("broker")
    scale_set(rig, rig.org, "arc")
    scale_set(rig, rig.org, "multi", labels=["multi", "linux"])
    scale_set(rig, rig.org, "gpu-set", group=rig.setup.gpu_group)
    scale_set(rig, rig.ent, "ent-arc", labels=["ent-arc", "arc"])
    scale_set(rig, rig.org, "shared-org", labels=["shared-org", "shared"])
    scale_set(rig, rig.repo, "repo-set")
    scale_set(rig, rig.repo, "shared-repo", labels=["shared-repo", "shared"])
    got = owner(rig, enqueue(rig, labels, repo, group))
    assert got == (expected if expected != "shared" else "shared-repo")


def test_a_new_scale_set_claims_queued_jobs_and_a_deleted_one_releases_them() -> None:
    rig = make_rig("broker")
    job = enqueue(rig, ("arc",))
    assert owner(rig, job) is None
    first = scale_set(rig, rig.org, "arc")
    assert owner(rig, job) == "arc"
    scale_set(rig, rig.ent, "ent", labels=["ent", "arc"])
    rig.svc.vanish(first.id)
    assert owner(rig, job) == "ent"


# ---- statistics invariants ---------------------------------------------------------------------


def check_invariants(rig: Rig) -> None:
    for ss in rig.svc.scale_sets.values():
        stats = ss.statistics()
        assert stats == rig.svc.flow.recount(ss)
        assert all(ss.jobs[j].stage == "assigned" for j in ss.timing)
        assert_consistent(stats)
    for job_id, ss_id in rig.svc.flow.job_owner.items():
        assert rig.world.jobs[job_id].status in ("queued", "in_progress")
        assert job_id in rig.svc.scale_sets[ss_id].jobs


def assert_consistent(stats: dict[str, int]) -> None:
    assert all(v >= 0 for v in stats.values()), stats
    assert stats["totalRunningJobs"] <= stats["totalAssignedJobs"], stats
    assert stats["totalBusyRunners"] == stats["totalRunningJobs"], stats
    assert stats["totalBusyRunners"] <= stats["totalRegisteredRunners"], stats
    assert stats["totalIdleRunners"] == stats["totalRegisteredRunners"] - stats["totalBusyRunners"], stats


class Driver:
    """Random listener, controller, runner and user actions."""

    LABELS = (("arc",), ("multi",), ("linux",), ("gpu-set",), ("ent-arc",), ("nothing",))
    REPOS = ("octo-org/app", "octo-org/site", "other-org/lib")

    def __init__(self, rig: Rig, rng: random.Random) -> None:
        self.rig = rig
        self.rng = rng
        self.cursor: dict[int, int] = {}
        self.names = iter(f"runner-{i}" for i in range(1_000_000))
        self.jits: list[str] = []

    def step(self) -> None:
        op = self.rng.choices(
            [
                self.enqueue,
                self.poll,
                self.acquire,
                self.jit,
                self.runner,
                self.cancel,
                self.time,
                self.remove,
                self.session,
            ],
            weights=[6, 6, 3, 3, 8, 1, 2, 1, 1],
        )[0]
        op()

    def pick(self) -> ScaleSet:
        return self.rng.choice(list(self.rig.svc.scale_sets.values()))

    def enqueue(self) -> None:
        enqueue(self.rig, self.rng.choice(self.LABELS), self.rng.choice(self.REPOS))

    def session(self) -> None:
        ss = self.pick()
        tenant = self.rig.svc.tenants[ss.tenant]
        if ss.session is not None and self.rng.random() < 0.5:
            self.rig.svc.close_session(tenant, ss.id, ss.session.id)
        elif ss.session is None:
            self.rig.svc.open_session(tenant, ss.id, "listener")

    def poll(self) -> None:
        ss = self.pick()
        if ss.session is None:
            self.session()
            return
        before = ss.counts["assigned"] + ss.counts["running"]
        capacity = self.rng.choice([0, 1, 2, 5, 2_147_483_647])
        raw = self.rig.svc.poll(ss.session, self.cursor.get(ss.id, 0), capacity)
        assert ss.counts["assigned"] + ss.counts["running"] <= max(capacity, before)
        if raw is not None:
            message = json.loads(raw)
            assert_consistent(message["statistics"])
            assert len(json.loads(message["body"])) <= 50
            self.cursor[ss.id] = message["messageId"]
            if self.rng.random() < 0.8:
                self.rig.svc.ack(ss.session, message["messageId"])

    def acquire(self) -> None:
        ss = self.pick()
        if ss.session is not None:
            offered = [ss.jobs[j].request_id for j in self.rig.svc.acquirable(ss)]
            self.rig.svc.acquire(
                ss.session, ss.id, self.rng.sample(offered, k=len(offered) // 2 + 1)[:3] if offered else []
            )

    def jit(self) -> None:
        ss = self.pick()
        _, encoded = self.rig.svc.generate_jit(self.rig.svc.tenants[ss.tenant], ss.id, next(self.names), "")
        self.jits.append(encoded)

    def runner(self) -> None:
        world = self.rig.world
        if self.jits and self.rng.random() < 0.3:
            encoded = self.jits.pop(self.rng.randrange(len(self.jits)))
            with contextlib.suppress(RegistrationError):  # removed before it connected
                world.redeem_jit(encoded)
            return
        configured = [r for r in world.runners.values() if r.configured]
        if not configured:
            return
        runner = self.rng.choice(configured)
        if runner.job_id is None:
            world.poll(runner.id)
        elif world.jobs[runner.job_id].status == "queued":
            world.start_job(runner.id, runner.job_id)
        elif self.rng.random() < 0.9:
            world.complete_job(runner.id, runner.job_id, self.rng.choice(["success", "failure"]))
        else:
            world.disconnect(runner.id)

    def cancel(self) -> None:
        open_runs = [r for r in self.rig.world.runs.values() if r.status != "completed"]
        if open_runs:
            self.rig.world.cancel_run(self.rng.choice(open_runs).id)

    def time(self) -> None:
        self.rig.clock.advance(self.rng.choice([1, 30, 120, 301, 700]))
        self.rig.world.tick()

    def remove(self) -> None:
        ss = self.pick()
        if not ss.runner_ids:
            return
        runner_id = self.rng.choice(sorted(ss.runner_ids))
        job_id = self.rig.world.runners[runner_id].job_id
        if job_id is not None and self.rig.world.jobs[job_id].status == "in_progress":
            with pytest.raises(ActionsError, match="still running"):
                self.rig.svc.remove_runner(self.rig.svc.tenants[ss.tenant], runner_id)
        else:
            self.rig.svc.remove_runner(self.rig.svc.tenants[ss.tenant], runner_id)
            assert runner_id not in self.rig.world.runners


@pytest.mark.parametrize("mode", ["broker", "ghes"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_statistics_stay_consistent_after_every_event(mode: str, seed: int) -> None:
    rig = make_rig(mode)
    rig.world.config.actions.assign_timeout_s = 250
    scale_set(rig, rig.org, "arc")
    scale_set(rig, rig.org, "multi", labels=["multi", "linux"])
    scale_set(rig, rig.org, "gpu-set", group=rig.setup.gpu_group)
    scale_set(rig, rig.ent, "ent-arc")
    rig.world.observers.append(lambda _event: check_invariants(rig))  # after every model event
    driver = Driver(rig, random.Random(seed))
    for _ in range(1500):
        driver.step()
        check_invariants(rig)
    done = [j for j in rig.world.jobs.values() if j.status == "completed"]
    assert len(done) > 20  # the stream did exercise the whole lifecycle
