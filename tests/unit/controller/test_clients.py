"""GitHub clients per credentials Secret: one per Secret, re-read after `refresh`, rotated in place."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from runnerd.controller.clients import (
    CredentialsSecretError,
    GitHubAPI,
    GitHubClients,
    credentials_secret,
    using,
)
from runnerd.controller.directory import RunnerDirectory
from runnerd.github import GitHubClient, PersonalAccessToken
from runnerd.github.errors import MissingCredentialsError
from runnerd.runtime import NotFound


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Kube:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.gets = 0

    def put(self, namespace: str, name: str, version: str, **data: str) -> None:
        meta = {"name": name, "namespace": namespace, "resourceVersion": version}
        self.secrets[(namespace, name)] = {"metadata": meta, "data": {k: b64(v) for k, v in data.items()}}

    async def get(self, resource: Any, name: str, *, namespace: str) -> dict[str, Any]:
        assert resource.plural == "secrets"
        self.gets += 1
        try:
            return self.secrets[(namespace, name)]
        except KeyError:
            raise NotFound(404, "NotFound") from None


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def default() -> Any:
    github = GitHubClient(PersonalAccessToken("ghp_default"))
    yield GitHubAPI(github, RunnerDirectory(github))
    await github.close()


async def test_one_client_per_secret_reread_after_refresh_and_rotated_in_place(default: GitHubAPI) -> None:
    kube, clock = Kube(), Clock()
    kube.put("ns", "team-a", "1", github_token="ghp_a1")
    clients = GitHubClients(kube, default, refresh=60.0, clock=clock)  # type: ignore[arg-type]
    try:
        assert await clients.get("ns", None) is default
        a = await clients.get("ns", "team-a")
        assert a.github is not default.github
        assert a.directory is not default.directory
        assert a.secret == "ns/team-a"
        assert a.github.credentials == PersonalAccessToken("ghp_a1")
        assert "ghp_a1" not in repr(a.github)
        assert await clients.get("ns", "team-a") is a
        assert kube.gets == 1  # cached within refresh
        kube.put("ns", "team-a", "2", github_token="ghp_a2")
        clock.now = 60.0
        assert await clients.get("ns", "team-a") is a  # the same client, budget and directory ...
        assert a.github.credentials == PersonalAccessToken("ghp_a2")  # ... with the new token
        assert clients.rotations == 1
        clock.now = 120.0
        await clients.get("ns", "team-a")
        assert clients.rotations == 1  # unchanged resourceVersion: nothing reloaded
        assert {x.secret for x in clients.apis()} == {"", "ns/team-a"}
    finally:
        await clients.close()


async def test_missing_or_malformed_secret_is_a_github_error_without_the_value(default: GitHubAPI) -> None:
    kube = Kube()
    kube.put("ns", "broken", "1", github_app_id="123")
    clients = GitHubClients(kube, default)  # type: ignore[arg-type]
    with pytest.raises(CredentialsSecretError, match="ns/gone"):
        await clients.get("ns", "gone")
    with pytest.raises(MissingCredentialsError) as err:
        await clients.get("ns", "broken")
    assert "123" not in str(err.value)


async def test_using_sets_the_current_api_per_task(default: GitHubAPI) -> None:
    kube = Kube()
    kube.put("ns", "a", "1", github_token="ghp_a")
    clients = GitHubClients(kube, default)  # type: ignore[arg-type]
    try:
        a = await clients.get("ns", "a")
        seen: list[GitHubAPI] = []

        async def other_task() -> None:
            seen.append(clients.current())

        async with using(a):
            assert clients.current() is a
            await asyncio.create_task(other_task())  # copies the context: a
            seen.append(clients.current())
        assert clients.current() is default
        assert seen == [a, a]
        assert await asyncio.create_task(asyncio.sleep(0, clients.current())) is default
    finally:
        await clients.close()


@pytest.mark.parametrize(
    ("obj", "secret"),
    [
        ({"spec": {"githubAPICredentialsFrom": {"secretRef": {"name": "s"}}}}, "s"),
        ({"spec": {"template": {"spec": {"githubAPICredentialsFrom": {"secretRef": {"name": "t"}}}}}}, "t"),
        ({"spec": {"template": {"spec": {}}}}, None),
        ({}, None),
    ],
)
def test_credentials_secret_of_runner_deployment_runnerset_hra(
    obj: dict[str, Any], secret: str | None
) -> None:
    assert credentials_secret(obj) == secret
