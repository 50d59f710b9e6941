from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import jwt
import pytest

from ghsim import ManualClock, Simulator, World
from ghsim.entities import Scope
from ghsim.state import generate_app_key

from .client import GitHub
from .scaleset_client import ScaleSetClient


@functools.cache
def app_key() -> tuple[str, str]:
    """(private PEM, public PEM), generated once per test session."""
    return generate_app_key()


@functools.cache
def other_key() -> tuple[str, str]:
    return generate_app_key()


@dataclass
class Setup:
    """A small GitHub: enterprise ``acme`` with ``octo-org`` and ``other-org``; ``solo-org`` alone."""

    admin: str  # PAT with repo, admin:org, manage_runners:enterprise
    repo_only: str  # PAT with repo
    org_only: str  # PAT with admin:org
    restricted: str  # PAT that only sees other-org
    app_id: int
    private_key: str
    inst_octo: int  # installation on octo-org, all repositories
    inst_other: int  # installation on other-org
    gpu_group: int  # octo-org group "gpu", selected: octo-org/app
    shared_group: int  # acme group "shared", selected: octo-org


def populate(world: World) -> Setup:
    world.create_enterprise("acme", "Acme Corp")
    world.create_org("octo-org", "acme")
    world.create_org("other-org", "acme")
    world.create_org("solo-org")
    world.create_repo("octo-org", "app", private=True)
    world.create_repo("octo-org", "site", private=False)
    world.create_repo("other-org", "lib", private=True)
    world.create_repo("solo-org", "tool", private=True)
    world.create_repo("alice", "dotfiles", private=True)
    gpu = world.create_group(
        Scope("org", "octo-org"), "gpu", visibility="selected", selected_repositories=["octo-org/app"]
    )
    shared = world.create_group(
        Scope("enterprise", "acme"), "shared", visibility="selected", selected_organizations=["octo-org"]
    )
    private, public = app_key()
    app = world.create_app("runnerd-test", public)
    octo = world.create_installation(app.id, "octo-org")
    other = world.create_installation(app.id, "other-org")
    return Setup(
        admin=world.create_pat("admin").token,
        repo_only=world.create_pat("dev", ["repo"]).token,
        org_only=world.create_pat("orgadmin", ["admin:org"]).token,
        restricted=world.create_pat("outsider", orgs=["other-org"]).token,
        app_id=app.id,
        private_key=private,
        inst_octo=octo.id,
        inst_other=other.id,
        gpu_group=gpu.id,
        shared_group=shared.id,
    )


def make_jwt(
    setup: Setup,
    now: float,
    *,
    iat: float | None = None,
    exp: float | None = None,
    key: str | None = None,
    iss: object = None,
) -> str:
    iat_value = int(now - 60 if iat is None else iat)
    claims = {
        "iat": iat_value,
        "exp": int(iat_value + 540 if exp is None else exp),
        "iss": str(setup.app_id) if iss is None else iss,
    }
    return jwt.encode(claims, key or setup.private_key, algorithm="RS256")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def world(clock: ManualClock) -> World:
    return World(clock)


@pytest.fixture
async def sim(clock: ManualClock, no_leaked_tasks: None) -> AsyncIterator[Simulator]:
    async with Simulator(clock=clock, tick_interval=0.05) as s:
        yield s


@pytest.fixture
def setup(sim: Simulator) -> Setup:
    return populate(sim.world)


@pytest.fixture
async def http(no_leaked_tasks: None) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def gh(sim: Simulator, http: aiohttp.ClientSession, setup: Setup) -> GitHub:
    client = GitHub(http, sim.base_url)
    client.token = setup.admin
    return client


def advance(sim: Simulator, seconds: float) -> None:
    """Move the simulator's manual clock and run what is due (timeouts, expiries, held long polls)."""
    clock = sim.core.clock
    assert isinstance(clock, ManualClock)
    clock.advance(seconds)
    sim.world.tick()
    sim.core.notify()


async def registration_token(gh: GitHub, scope_path: str = "/orgs/octo-org") -> str:
    r = await gh.post(f"{scope_path}/actions/runners/registration-token")
    assert r.status == 201
    return str(r.body["token"])


@pytest.fixture
async def ssc(gh: GitHub, sim: Simulator, http: aiohttp.ClientSession) -> ScaleSetClient:
    """A scale-set client for ``octo-org`` (config URL on the simulator, so REST is under /api/v3),
    after the handshake with a PAT's registration token."""
    client = ScaleSetClient(http, sim.ghes_url, f"{sim.base_url}/octo-org")
    answer = await client.handshake(await registration_token(gh))
    assert answer.status == 200
    return client
