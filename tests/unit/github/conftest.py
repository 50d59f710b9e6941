"""Fixtures for the GitHub adapter's tests: a fake clock, a scripted local GitHub, clients wired to both."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from runnerd.github import GitHubClient, GitHubConfig, PersonalAccessToken
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


@pytest.fixture
async def make_client(github: FakeGitHub, fake_time: FakeTime) -> AsyncIterator[ClientFactory]:
    """Builds clients against the fake GitHub with the fake clock (closed after the test)."""
    clients: list[GitHubClient] = []

    def make(credentials: Credentials | None = None, **kwargs: Any) -> GitHubClient:
        kwargs.setdefault("config", GitHubConfig(api_url=github.base_url))
        kwargs.setdefault("clock", fake_time.clock)
        kwargs.setdefault("sleep", fake_time.sleep)
        kwargs.setdefault("draw", lambda: 0.5)
        kwargs.setdefault("trust_env", False)
        client = GitHubClient(credentials or PersonalAccessToken(PAT), **kwargs)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


@pytest.fixture(autouse=True)
def every_task_finished(no_leaked_tasks: None) -> None:
    """Every test here ends with no task of its own left running (see tests/conftest.py)."""
