"""runnerd's GitHub client against ghsim, the in-process GitHub simulator.

The client is the production code, unchanged; ghsim plays GitHub (auth, scopes, rate limits, ETags,
pagination, JIT configs, runner state). The simulator's clock is a ManualClock that the client shares,
so token lifetimes and rate-limit windows are moved explicitly, never waited for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from ghsim import JobSpec, ManualClock, PrimaryLimits, SimConfig, Simulator
from ghsim import Scope as SimScope
from ghsim.state import generate_app_key
from runnerd.controller.common import RunnerGroups
from runnerd.github import (
    ConflictError,
    GitHubAppCredentials,
    GitHubClient,
    GitHubConfig,
    NotFoundError,
    PermissionDeniedError,
    PersonalAccessToken,
    RateLimitedError,
    RateLimitWaitExceeded,
    RunnerBusyError,
    Scope,
)
from runnerd.reconcile.deliveryaudit import HookRef
from tests.unit.github.conftest import ClientFactory, client_factory

pytestmark = pytest.mark.timeout(60)

ORG = Scope.organization("octo-org")
REPO = Scope.repository("octo-org/app")
ACCESS_TOKENS = "POST /app/installations/{installation_id}/access_tokens"
LIST_ORG_RUNNERS = "GET /orgs/{org}/actions/runners"


@dataclass
class World:
    sim: Simulator
    clock: ManualClock
    pat: str
    repo_only_pat: str
    app_id: int
    installation_id: int
    private_key: str
    gpu_group: int


@pytest.fixture(autouse=True)
def every_task_finished(no_leaked_tasks: None) -> None:
    """Every test here ends with no task of its own left running (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def app_key() -> tuple[str, str]:
    return generate_app_key()


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig()


@pytest.fixture
async def world(app_key: tuple[str, str], sim_config: SimConfig) -> AsyncIterator[World]:
    # Start at the real time: ghsim stamps Date from the wall clock, and the client reads it to put
    # x-ratelimit-reset on its own clock.
    clock = ManualClock(float(int(time.time())))
    async with Simulator(clock=clock, config=sim_config, tick_interval=0.05) as sim:
        w = sim.world
        w.create_enterprise("acme")
        w.create_org("octo-org", "acme")
        w.create_repo("octo-org", "app")
        gpu = w.create_group(
            SimScope("org", "octo-org"), "gpu", visibility="selected", selected_repositories=["octo-org/app"]
        )
        private, public = app_key
        app = w.create_app("runnerd-test", public)
        installation = w.create_installation(app.id, "octo-org")
        yield World(
            sim=sim,
            clock=clock,
            pat=w.create_pat("admin").token,
            repo_only_pat=w.create_pat("dev", ["repo"]).token,
            app_id=app.id,
            installation_id=installation.id,
            private_key=private,
            gpu_group=gpu.id,
        )


@pytest.fixture
async def make_client(world: World) -> AsyncIterator[ClientFactory]:
    async def sleep(seconds: float) -> None:  # waiting moves the shared clock
        world.clock.advance(max(seconds, 0.0))
        await asyncio.sleep(0)

    async with client_factory(
        PersonalAccessToken(world.pat),
        config=GitHubConfig(api_url=world.sim.base_url),
        clock=world.clock.now,
        sleep=sleep,
        trust_env=False,
    ) as make:
        yield make


def _app(world: World) -> GitHubAppCredentials:
    return GitHubAppCredentials(
        app_id=world.app_id, installation_id=world.installation_id, private_key=world.private_key
    )


async def test_jit_list_get_delete_with_pat(world: World, make_client: Callable[..., GitHubClient]) -> None:
    async with make_client() as gh:
        jit = await gh.generate_jit_config(ORG, "pod-1", labels=["gpu"], runner_group_id=world.gpu_group)
        assert jit.runner.name == "pod-1"
        assert jit.encoded_jit_config
        with pytest.raises(ConflictError):
            await gh.generate_jit_config(ORG, "pod-1", labels=["gpu"], runner_group_id=world.gpu_group)

        (listed,) = await gh.list_runners(ORG, name="pod-1")
        assert listed.id == jit.runner_id
        assert "gpu" in listed.labels
        fetched = await gh.get_runner(ORG, jit.runner_id)
        assert (fetched.name, fetched.busy, fetched.online) == ("pod-1", False, False)

        assert await gh.delete_runner(ORG, jit.runner_id) is True
        assert await gh.delete_runner(ORG, jit.runner_id) is False
        with pytest.raises(NotFoundError):
            await gh.get_runner(ORG, jit.runner_id)
        assert await gh.list_runners(ORG) == []


async def test_set_runner_labels_drains_a_runner(
    world: World, make_client: Callable[..., GitHubClient]
) -> None:
    async with make_client() as gh:
        jit = await gh.generate_jit_config(REPO, "pod-2", labels=["arc-runner"])
        labels = await gh.set_runner_labels(REPO, jit.runner_id, ["runnerd-draining"])
        assert "runnerd-draining" in labels
        assert "arc-runner" not in labels
        assert "self-hosted" in labels  # GitHub's read-only labels stay
        (listed,) = await gh.list_runners(REPO, name="pod-2")
        assert "arc-runner" not in listed.labels


async def test_registration_and_remove_tokens(world: World, make_client: Callable[..., GitHubClient]) -> None:
    async with make_client() as gh:
        token = await gh.create_registration_token(REPO)
        again = await gh.create_registration_token(REPO)
        remove = await gh.create_remove_token(REPO)
        stats = gh.stats.snapshot()
    assert again is token  # cached
    assert token.expires_at == pytest.approx(world.clock.now() + 3600, abs=1)
    assert remove.token != token.token
    assert stats.total("POST /repos/{owner}/{repo}/actions/runners/registration-token") == 1
    # the token is one GitHub accepts for registering a runner in that repository
    registered = world.sim.world.register_runner(
        token.token, SimScope("repo", "octo-org/app"), "static-1", ["x"]
    )
    assert registered.runner.name == "static-1"
    assert world.sim.world.runners_in(SimScope("repo", "octo-org/app"), "static-1")
    bucket = gh.rate_limits.get("actions_runner_registration")
    assert bucket is not None
    assert bucket.used == 2  # one registration token (then cached) and one remove token


async def test_app_installation_auth(world: World, make_client: Callable[..., GitHubClient]) -> None:
    async with make_client(_app(world)) as gh:
        jit = await gh.generate_jit_config(REPO, "app-pod", labels=["self-hosted"])
        results = await asyncio.gather(*(gh.list_runners(REPO) for _ in range(5)))
        assert all([r.id for r in runners] == [jit.runner_id] for runners in results)
        assert gh.stats.snapshot().total(ACCESS_TOKENS) == 1

        world.clock.advance(3600 - 299)  # less than 5 minutes left: a new installation token
        assert [r.name for r in await gh.list_runners(ORG)] == []
        assert gh.stats.snapshot().total(ACCESS_TOKENS) == 2
        assert await gh.delete_runner(REPO, jit.runner_id) is True


async def test_missing_permission_is_permission_denied(
    world: World, make_client: Callable[..., GitHubClient]
) -> None:
    async with make_client(PersonalAccessToken(world.repo_only_pat)) as gh:
        with pytest.raises(PermissionDeniedError) as excinfo:
            await gh.list_runners(ORG)
    assert excinfo.value.status == 403
    assert world.repo_only_pat not in str(excinfo.value)


async def test_busy_runner_cannot_be_deleted(world: World, make_client: Callable[..., GitHubClient]) -> None:
    sim = world.sim.world
    async with make_client() as gh:
        jit = await gh.generate_jit_config(REPO, "busy-pod", labels=["gpu"])
        registered = sim.redeem_jit(jit.encoded_jit_config)
        sim.enqueue_run(sim.repo("octo-org", "app"), [JobSpec(labels=("self-hosted", "gpu"), duration=600)])
        job = sim.poll(registered.runner.id)
        assert job is not None
        assert not isinstance(job, str)
        sim.start_job(registered.runner.id, job.id)

        assert (await gh.get_runner(REPO, jit.runner_id)).busy is True
        with pytest.raises(RunnerBusyError) as excinfo:
            await gh.delete_runner(REPO, jit.runner_id)
        assert excinfo.value.runner_id == jit.runner_id

        sim.complete_job(registered.runner.id, job.id)  # an ephemeral runner leaves after its job
        assert await gh.delete_runner(REPO, jit.runner_id) is False


async def test_pagination_and_etag(world: World, make_client: Callable[..., GitHubClient]) -> None:
    async with make_client() as gh:
        for i in range(105):
            await gh.generate_jit_config(ORG, f"pod-{i:03d}", labels=["gpu"])
        first = await gh.list_runners(ORG)
        second = await gh.list_runners(ORG)
        stats = gh.stats.snapshot()
    assert sorted(r.name for r in first) == [f"pod-{i:03d}" for i in range(105)]
    assert second == first
    assert stats.calls[(LIST_ORG_RUNNERS, "200")] == 2  # two pages
    assert stats.calls[(LIST_ORG_RUNNERS, "304")] == 2  # both unchanged the second time


async def test_runner_groups_runs_and_jobs(world: World, make_client: Callable[..., GitHubClient]) -> None:
    sim = world.sim.world
    run = sim.enqueue_run(sim.repo("octo-org", "app"), [JobSpec(labels=("self-hosted", "gpu"), name="train")])
    async with make_client() as gh:
        assert await gh.find_runner_group_id(ORG, "gpu") == world.gpu_group
        assert await gh.find_runner_group_id(ORG, "Default") == 1
        visible = await gh.list_runner_groups(ORG, visible_to_repository="app")
        assert {g.name for g in visible} >= {"Default", "gpu"}
        runs = await gh.list_workflow_runs(REPO, status="queued")
        assert [r.id for r in runs] == [run.id]
        (job,) = await gh.list_jobs_for_run(REPO, run.id)
    assert (job.name, job.status, job.labels, job.runner_id) == (
        "train",
        "queued",
        ("self-hosted", "gpu"),
        None,
    )


@pytest.mark.parametrize("sim_config", [SimConfig(primary=PrimaryLimits(pat=3))])
async def test_primary_rate_limit(world: World, make_client: Callable[..., GitHubClient]) -> None:
    async with (
        make_client(max_rate_limit_wait_s=0, etag_cache_size=0) as first,  # 304s would be free
        make_client(max_rate_limit_wait_s=7200) as second,
    ):
        for _ in range(3):
            await first.list_runners(ORG)
        # The third call spent the budget: the client pauses its core calls without asking GitHub.
        assert first.paused_until("core") is not None
        with pytest.raises(RateLimitWaitExceeded):
            await first.list_runners(ORG)
        # A client that did not know gets GitHub's 403 ...
        with pytest.raises(RateLimitedError) as excinfo:
            await second.list_runners(ORG)
        assert excinfo.value.status == 403
        assert excinfo.value.resource == "core"
        buckets = await second.get_rate_limit()
        assert buckets["core"].remaining == 0
        # ... and its next call waits for the window to reset (the sleep moves the clock), then works.
        assert await second.list_runners(ORG) == []
        assert second.stats.snapshot().gate_waits == 1


async def test_ghes_api_prefix(world: World, make_client: Callable[..., GitHubClient]) -> None:
    config = GitHubConfig.resolve(enterprise_url=world.sim.base_url)
    async with make_client(config=config) as gh:
        jit = await gh.generate_jit_config(ORG, "ghes-pod", labels=["gpu"])
        assert [r.id for r in await gh.list_runners(ORG)] == [jit.runner_id]
    assert config.api_url == world.sim.ghes_url
    assert ORG.runner_url(config.github_url) == world.sim.base_url + "/octo-org"


async def test_a_recreated_runner_group_is_found_again_after_a_404(
    world: World, make_client: Callable[..., GitHubClient]
) -> None:
    groups = RunnerGroups(ttl=3600.0)
    sim = world.sim.world
    async with make_client() as gh:
        old = await groups.id(gh, ORG, "gpu")
        sim.delete_group(SimScope("org", "octo-org"), old)
        new = sim.create_group(SimScope("org", "octo-org"), "gpu").id
        assert new != old
        with pytest.raises(NotFoundError):
            await gh.generate_jit_config(ORG, "r1", labels=["gpu"], runner_group_id=old)
        assert groups.forget(ORG, "gpu")
        assert await groups.id(gh, ORG, "gpu") == new
        jit = await gh.generate_jit_config(ORG, "r1", labels=["gpu"], runner_group_id=new)
        assert sim.runners[jit.runner_id].group is not None
        assert sim.runners[jit.runner_id].group.id == new


async def test_hook_deliveries_listed_page_by_page_and_redelivered(
    world: World, make_client: Callable[..., GitHubClient]
) -> None:
    sim = world.sim
    hook = sim.world.create_hook("http://127.0.0.1:9/unused", scope=SimScope("org", "octo-org"))
    sim.world.set_hook_faults(hook.id, {"fail": True})
    sim.world.enqueue_run(sim.world.repo_by_name("octo-org/app"), [JobSpec(("x",))] * 101)
    await sim.core.dispatcher.drained()
    ref = HookRef("org", "octo-org", hook_id=hook.id)
    async with make_client(
        PersonalAccessToken(sim.world.create_pat("hooks", ["admin:org_hook"]).token)
    ) as gh:
        first, following = await gh.list_hook_deliveries(ref)
        assert following is not None
        rest, last = await gh.list_hook_deliveries(ref, next_url=following)
        assert (len(first), len(rest), last) == (100, 1, None)
        assert first[0].id > first[-1].id > rest[0].id  # newest first
        assert {(a.event, a.status_code, a.ok) for a in first + rest} == {("workflow_job", 0, False)}
        sim.world.set_hook_faults(hook.id, {"fail": False})
        await gh.redeliver_hook_delivery(ref, rest[0].id)
        await sim.core.dispatcher.drained()
        newest, _ = await gh.list_hook_deliveries(ref)
        assert (newest[0].guid, newest[0].redelivery) == (rest[0].guid, True)
    async with make_client() as gh:  # admin:org is not admin:org_hook
        with pytest.raises(PermissionDeniedError):
            await gh.list_hook_deliveries(ref)


async def test_the_apps_own_hook_is_read_with_its_jwt(
    world: World, make_client: Callable[..., GitHubClient]
) -> None:
    sim = world.sim
    sim.world.create_hook("http://127.0.0.1:9/unused", app_id=world.app_id, faults={"fail": True})
    sim.world.enqueue_run(sim.world.repo_by_name("octo-org/app"), [JobSpec(("x",))])
    await sim.core.dispatcher.drained()
    async with make_client(_app(world)) as gh:
        (attempt,), _ = await gh.list_hook_deliveries(HookRef("app"))
        assert (attempt.action, attempt.status_code) == ("queued", 0)
        assert gh.stats.snapshot().total(ACCESS_TOKENS) == 0  # the App itself, not an installation
    async with make_client() as gh:
        with pytest.raises(ValueError, match="GitHub App credentials"):
            await gh.list_hook_deliveries(HookRef("app"))
