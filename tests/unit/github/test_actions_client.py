"""The Actions-service client against ghsim's Actions service: config URLs, the bootstrap chain
(PAT and App), admin-token refresh, retries, the error envelope, scale sets, runner groups, runners."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ghsim.entities import Scope as SimScope
from runnerd.github.actions.client import ActionsClient
from runnerd.github.actions.clients import ActionsClients
from runnerd.github.actions.config import ConfigURL
from runnerd.github.actions.errors import (
    ActionsServiceError,
    JobStillRunning,
    RunnerExists,
    ScaleSetNotFound,
    SessionConflict,
)
from runnerd.github.actions.transport import RetryPolicy, decode_body, error_from_answer
from runnerd.github.credentials import GitHubAppCredentials
from runnerd.github.errors import GitHubConfigError
from tests.unit.github.conftest import ActionsWorld

HANDSHAKE = "POST /actions/runner-registration"
SCALE_SET = "GET _apis/runtime/runnerscalesets/{id}"


@pytest.mark.parametrize(
    ("url", "kind", "name", "api_url", "hosted"),
    [
        ("https://github.com/octo", "organization", "octo", "https://api.github.com", True),
        ("https://github.com/octo/app/", "repository", "octo/app", "https://api.github.com", True),
        ("https://www.github.com/octo", "organization", "octo", "https://api.github.com", True),
        ("https://github.com/enterprises/acme", "enterprise", "acme", "https://api.github.com", True),
        ("https://github.com/Enterprises/acme", "enterprise", "acme", "https://api.github.com", True),
        ("https://octo.ghe.com/octo", "organization", "octo", "https://api.octo.ghe.com", True),
        ("https://GitHub.com/octo", "organization", "octo", "https://api.github.com", True),
        (
            "https://ghes.example.com/octo/app",
            "repository",
            "octo/app",
            "https://ghes.example.com/api/v3",
            False,
        ),
        ("http://127.0.0.1:8080/octo", "organization", "octo", "http://127.0.0.1:8080/api/v3", False),
    ],
)
def test_config_url(url: str, kind: str, name: str, api_url: str, hosted: bool) -> None:
    config = ConfigURL.parse(url, force_ghes=False)
    assert (config.scope.kind, config.scope.name, config.api_url, config.hosted) == (
        kind,
        name,
        api_url,
        hosted,
    )
    assert config.url == url.strip("/")


@pytest.mark.parametrize(
    "url", ["https://github.com", "https://github.com/a/b/c", "ftp://github.com/octo", "github.com/octo"]
)
def test_config_url_invalid(url: str) -> None:
    with pytest.raises(GitHubConfigError):
        ConfigURL.parse(url)


def test_config_url_forced_ghes_and_paths() -> None:
    config = ConfigURL.parse("https://github.com/octo/app", force_ghes=True)
    assert (config.api_url, config.hosted) == ("https://github.com/api/v3", False)
    assert config.registration_token_path == "/repos/octo/app/actions/runners/registration-token"
    assert config.labels == {"enterprise": "", "organization": "octo", "repository": "app"}
    enterprise = ConfigURL.parse("https://github.com/enterprises/acme")
    assert enterprise.registration_token_path == "/enterprises/acme/actions/runners/registration-token"
    assert enterprise.labels == {"enterprise": "acme", "organization": "", "repository": ""}


@pytest.mark.parametrize(
    ("status", "data", "cls", "exception", "message"),
    [
        (404, None, ActionsServiceError, "", "unknown exception"),
        (500, "boom", ActionsServiceError, "", "boom"),
        (
            409,
            {
                "typeName": "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException, X",
                "message": "m",
            },
            SessionConflict,
            "RunnerScaleSetSessionConflictException",
            "m",
        ),
        (
            404,
            {"typeName": "A.RunnerScaleSetNotFoundException, A"},
            ScaleSetNotFound,
            "RunnerScaleSetNotFoundException",
            "",
        ),
        (400, {"typeName": "JobStillRunningException"}, JobStillRunning, "JobStillRunningException", ""),
        (
            409,
            {"typeName": "X.AgentExistsException, X", "message": "taken"},
            RunnerExists,
            "AgentExistsException",
            "taken",
        ),
        (
            401,
            {"typeName": "X.InvalidTokenException, X"},
            ActionsServiceError,
            "InvalidTokenException",
            "unknown exception",
        ),
    ],
)
def test_error_envelope(
    status: int, data: Any, cls: type[ActionsServiceError], exception: str, message: str
) -> None:
    error = error_from_answer(status, data)
    assert (type(error), error.status, error.exception, error.message) == (cls, status, exception, message)


@pytest.mark.parametrize(
    ("raw", "content_type", "decoded"),
    [
        (b"", "application/json", None),
        (b'\xef\xbb\xbf{"a": 1}', "application/json", {"a": 1}),
        (b"404 page not found", "text/plain; charset=utf-8", "404 page not found"),
        (b"not json", "application/json", "not json"),
    ],
)
def test_decode_body(raw: bytes, content_type: str, decoded: Any) -> None:
    assert decode_body(raw, content_type) == decoded


def test_retry_policy_is_capped() -> None:
    policy = RetryPolicy()
    assert [policy.delay(n, 1.0) for n in (1, 2, 3, 4, 5, 6, 7)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.delay(1, 0.0) == 0.5


async def test_scale_set_crud_and_groups(actions_world: ActionsWorld, actions_client: ActionsClient) -> None:
    client = actions_client
    gpu = actions_world.sim.world.create_group(SimScope("org", "octo-org"), "gpu", visibility="all")
    assert await client.runner_group_id("") == 1
    assert await client.runner_group_id("Default") == 1
    assert await client.runner_group_id("gpu") == gpu.id
    with pytest.raises(ActionsServiceError, match="no runner group"):
        await client.runner_group_id("nope")
    assert await client.get_scale_set(1, "arc") is None
    created = await client.create_scale_set("arc", 1, [])
    assert (created.name, created.runner_group_id, created.labels) == ("arc", 1, ("arc",))
    assert await client.get_scale_set(1, "arc") == created
    assert await client.get_scale_set_by_id(created.id) == created
    moved = await client.update_scale_set(created.id, runner_group_id=gpu.id)
    assert (moved.runner_group_id, moved.runner_group_name, moved.name) == (gpu.id, "gpu", "arc")
    renamed = await client.update_scale_set(created.id, name="arc2")
    assert (renamed.name, renamed.runner_group_id) == ("arc2", gpu.id)
    await client.delete_scale_set(created.id)
    await client.delete_scale_set(created.id)  # already gone: fine
    assert await client.get_scale_set_by_id(created.id) is None
    calls = client.stats.snapshot()
    assert calls.total(HANDSHAKE) == 1  # one admin token for all of it
    assert calls.calls[("DELETE _apis/runtime/runnerscalesets/{id}", "404")] == 1


async def test_runners_jit_lookup_and_removal(actions_client: ActionsClient) -> None:
    client = actions_client
    scale_set = await client.create_scale_set("arc", 1, ["linux", "arc", "linux"])
    assert scale_set.labels == ("arc", "linux")  # the name is always the first label
    jit = await client.generate_jit_config(scale_set.id, "runner-a")
    assert (jit.runner.name, jit.runner.scale_set_id) == ("runner-a", scale_set.id)
    assert jit.encoded
    assert jit.encoded not in repr(jit)
    with pytest.raises(RunnerExists):
        await client.generate_jit_config(scale_set.id, "runner-a")
    assert await client.get_runner(jit.runner.id) == jit.runner
    assert await client.get_runner_by_name("runner-a") == jit.runner
    assert await client.get_runner_by_name("runner-b") is None
    await client.remove_runner(jit.runner.id)
    await client.remove_runner(jit.runner.id)  # already gone: 204 or 404, both fine
    assert await client.get_runner(jit.runner.id) is None


async def test_github_app_credentials(
    actions_world: ActionsWorld, rsa_key: rsa.RSAPrivateKey, private_key_pem: str
) -> None:
    public = (
        rsa_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    world = actions_world.sim.world
    app = world.create_app("runnerd", public)
    installation = world.create_installation(app.id, "octo-org")
    creds = GitHubAppCredentials(app_id=app.id, installation_id=installation.id, private_key=private_key_pem)
    client = actions_world.client(creds)
    try:
        assert (await client.create_scale_set("arc", 1, [])).name == "arc"
        actions_world.advance(3600)  # the admin token expires: a new installation token is minted
        assert await client.get_scale_set(1, "arc") is not None
        calls = client.stats.snapshot()
        assert calls.total("POST /app/installations/{installation_id}/access_tokens") == 2
        assert calls.total(HANDSHAKE) == 2
    finally:
        await client.close()


async def test_admin_token_refreshed_before_expiry(actions_world: ActionsWorld) -> None:
    actions_world.sim.core.config.actions.admin_token_ttl_s = 120
    client = actions_world.client()
    try:
        scale_set = await client.create_scale_set("arc", 1, [])
        actions_world.advance(50)  # 70 s left: still used
        await client.get_scale_set_by_id(scale_set.id)
        assert client.stats.snapshot().total(HANDSHAKE) == 1
        actions_world.advance(20)  # 50 s left, under ARC's 60 s margin: refreshed before the call
        await client.get_scale_set_by_id(scale_set.id)
        calls = client.stats.snapshot()
        assert calls.total(HANDSHAKE) == 2
        assert calls.calls.get((SCALE_SET, "401"), 0) == 0
    finally:
        await client.close()


async def test_admin_token_revoked_early_is_renewed_once(
    actions_world: ActionsWorld, actions_client: ActionsClient
) -> None:
    scale_set = await actions_client.create_scale_set("arc", 1, [])
    assert await actions_world.admin("/_sim/actions/expire-tokens", {"kind": "admin"}) == 200
    assert await actions_client.get_scale_set_by_id(scale_set.id) == scale_set
    calls = actions_client.stats.snapshot()
    assert (calls.calls[(SCALE_SET, "401")], calls.total(HANDSHAKE)) == (1, 2)


async def test_retries_5xx_and_429_not_501(
    actions_world: ActionsWorld, actions_client: ActionsClient
) -> None:
    scale_set = await actions_client.create_scale_set("arc", 1, [])
    await actions_world.fault(op="scaleset.get", kind="error", status=503, times=2)
    assert await actions_client.get_scale_set_by_id(scale_set.id) == scale_set
    await actions_world.fault(op="scaleset.get", kind="error", status=429, times=1)
    assert await actions_client.get_scale_set_by_id(scale_set.id) == scale_set
    assert actions_world.sleeps == [0.75, 1.5, 0.75]  # 1 s doubling, draw 0.5 → 3/4 of nominal
    assert actions_client.stats.snapshot().retries == {SCALE_SET: 3}
    await actions_world.fault(
        op="scaleset.get", kind="error", status=501, times=1, text_plain=True, message="nope"
    )
    with pytest.raises(ActionsServiceError) as caught:
        await actions_client.get_scale_set_by_id(scale_set.id)
    assert (caught.value.status, caught.value.message) == (501, "nope")
    await actions_world.fault(op="scaleset.get", kind="error", status=500, times=5)
    with pytest.raises(ActionsServiceError) as caught:
        await actions_client.get_scale_set_by_id(scale_set.id)
    assert caught.value.status == 500
    assert actions_client.stats.snapshot().retries == {SCALE_SET: 7}


async def test_registration_401_retried(actions_world: ActionsWorld, actions_client: ActionsClient) -> None:
    await actions_world.fault(op="handshake", kind="error", status=401, times=2)
    assert (await actions_client.create_scale_set("arc", 1, [])).name == "arc"
    assert actions_world.sleeps == [0.5, 1.0]
    assert actions_client.stats.snapshot().calls[(HANDSHAKE, "401")] == 2


async def test_bom_bodies(actions_world: ActionsWorld, actions_client: ActionsClient) -> None:
    scale_set = await actions_client.create_scale_set("arc", 1, [])
    await actions_world.fault(op="scaleset.get", kind="bom", times=1)
    assert await actions_client.get_scale_set_by_id(scale_set.id) == scale_set


async def test_no_secret_is_logged(
    actions_world: ActionsWorld, actions_client: ActionsClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await actions_world.fault(op="jit.generate", kind="error", status=503, times=1)
    scale_set = await actions_client.create_scale_set("arc", 1, [])
    jit = await actions_client.generate_jit_config(scale_set.id, "r")
    _, admin_token = await actions_client.admin()
    text = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "retrying" in text
    for secret in (actions_world.pat, admin_token, jit.encoded):
        assert secret not in text


async def test_clients_cache_by_url_and_secret(actions_world: ActionsWorld) -> None:
    clients = ActionsClients(clock=actions_world.clock.now, sleep=actions_world.sleep)
    try:
        secret = {"github_token": actions_world.pat}
        first = await clients.for_config(actions_world.config_url + "/", secret)
        assert await clients.for_config(actions_world.config_url, dict(secret)) is first
        other = await clients.for_config(actions_world.config_url, {"github_token": actions_world.pat + "x"})
        assert other is not first
        assert len(clients) == 2
        assert (await first.create_scale_set("arc", 1, [])).name == "arc"
        assert clients.stats.snapshot().total(HANDSHAKE) == 1
    finally:
        await clients.close()
    assert len(clients) == 0
