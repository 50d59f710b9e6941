"""Fixtures for the GitHub adapter's tests: a fake clock, a scripted local GitHub, clients wired to both;
ghsim's Actions service on a manual clock for the scale-set client (``actions_world``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ghsim import JobSpec, ManualClock, Simulator
from runnerd.github import GitHubClient, GitHubConfig, PersonalAccessToken
from runnerd.github.actions.client import ActionsClient
from runnerd.github.credentials import Credentials
from tests.unit.github.fakes import FakeGitHub, FakeTime

PAT = "ghp_unitTestSecretToken0123456789abcdef"


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def private_key_pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def fake_time() -> FakeTime:
    # Real "now" (whole seconds), so JWTs verify against the real clock and Date headers are exact.
    return FakeTime(float(int(time.time())))


@pytest.fixture
async def github(fake_time: FakeTime) -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub(fake_time)
    server = TestServer(fake.app, host="127.0.0.1", port=0)
    await server.start_server()
    fake.base_url = str(server.make_url("")).rstrip("/")
    try:
        yield fake
    finally:
        await server.close()


ClientFactory = Callable[..., GitHubClient]


@contextlib.asynccontextmanager
async def client_factory(default: Credentials, **defaults: Any) -> AsyncIterator[ClientFactory]:
    """Builds clients with the ``default`` credentials and ``defaults`` (a call's own arguments
    win), and closes every client it built on exit."""
    clients: list[GitHubClient] = []

    def make(credentials: Credentials | None = None, **kwargs: Any) -> GitHubClient:
        client = GitHubClient(credentials or default, **{**defaults, **kwargs})
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
async def make_client(github: FakeGitHub, fake_time: FakeTime) -> AsyncIterator[ClientFactory]:
    """Builds clients against the fake GitHub with the fake clock (closed after the test)."""
    async with client_factory(
        PersonalAccessToken(PAT),
        config=GitHubConfig(api_url=github.base_url),
        clock=fake_time.clock,
        sleep=fake_time.sleep,
        draw=lambda: 0.5,
        trust_env=False,
    ) as make:
        yield make


@pytest.fixture(autouse=True)
def every_task_finished(no_leaked_tasks: None) -> None:
    """Every test here ends with no task of its own left running (see tests/conftest.py)."""


# -- the Actions service (ghsim's, in-process on 127.0.0.1, on a manual clock) ---------------------


@dataclass
class ActionsWorld:
    """ghsim with ``octo-org`` (repository ``octo-org/app``), a PAT and virtual time: :meth:`sleep`
    (what the clients under test get) moves the simulator's clock instead of waiting."""

    sim: Simulator
    pat: str
    sleeps: list[float] = field(default_factory=list)

    @property
    def config_url(self) -> str:
        return f"{self.sim.base_url}/octo-org"

    @property
    def clock(self) -> ManualClock:
        clock = self.sim.core.clock
        assert isinstance(clock, ManualClock)
        return clock

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.sim.world.tick()
        self.sim.core.notify()

    def poll_held(self, scale_set_id: int) -> bool:
        """A long poll of the scale set's session is being held."""
        sess = self.sim.actions.scale_sets[scale_set_id].session
        return sess is not None and sess.polls_held > 0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)

    def client(self, credentials: Credentials | None = None, **kwargs: Any) -> ActionsClient:
        kwargs.setdefault("clock", self.clock.now)
        kwargs.setdefault("sleep", self.sleep)
        kwargs.setdefault("draw", lambda: 0.5)
        return ActionsClient(self.config_url, credentials or PersonalAccessToken(self.pat), **kwargs)

    def enqueue(self, n: int = 1, label: str = "arc", duration: float = 0.0) -> list[int]:
        repo = self.sim.world.repo_by_name("octo-org/app")
        specs = [JobSpec((label,), duration=duration) for _ in range(n)]
        return list(self.sim.world.enqueue_run(repo, specs).job_ids)

    async def fault(self, **spec: Any) -> None:
        assert await self.admin("/_sim/actions/faults", spec) == 201

    async def admin(self, path: str, body: Any = None) -> int:
        async with aiohttp.ClientSession() as http, http.post(self.sim.base_url + path, json=body) as resp:
            return resp.status


@pytest.fixture
async def actions_world() -> AsyncIterator[ActionsWorld]:
    async with Simulator(clock=ManualClock(), tick_interval=0.05) as sim:
        sim.world.create_org("octo-org")
        sim.world.create_repo("octo-org", "app", private=True)
        yield ActionsWorld(sim, sim.world.create_pat("admin").token)


@pytest.fixture
async def actions_client(actions_world: ActionsWorld) -> AsyncIterator[ActionsClient]:
    client = actions_world.client()
    try:
        yield client
    finally:
        await client.close()
