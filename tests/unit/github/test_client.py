"""The client against a scripted local GitHub (127.0.0.1, random port), on a fake clock."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from runnerd.github import (
    BadCredentialsError,
    ConflictError,
    GitHubAppCredentials,
    GitHubConfig,
    GitHubConnectionError,
    GitHubError,
    GitHubServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RateLimitWaitExceeded,
    RetryPolicy,
    RunnerBusyError,
    RunnerGroupNotFoundError,
    Scope,
    UnexpectedResponseError,
    ValidationFailedError,
)
from runnerd.github.sansio import parse_timestamp
from tests.unit.github.conftest import PAT, ClientFactory
from tests.unit.github.fakes import FakeGitHub, FakeTime, Recorded, Reply, rate_headers, runner_json

pytestmark = pytest.mark.timeout(10)

ORG = Scope.organization("octo")
REPO = Scope.repository("octo/hello")
RUNNERS = "/orgs/octo/actions/runners"
INSTALLATION_TOKEN = "ghs_installationSecret0123456789"


def _iso(epoch: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _runners(*runners: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    return Reply(200, {"total_count": len(runners), "runners": list(runners)}, headers or {})


def _app_credentials(pem: str) -> GitHubAppCredentials:
    return GitHubAppCredentials(app_id="12345", installation_id=42, private_key=pem)


# -- authentication --------------------------------------------------------------------------------


async def test_pat_headers(github: FakeGitHub, make_client: ClientFactory) -> None:
    github.on("GET", RUNNERS, _runners(runner_json(1, "a")))
    async with make_client() as gh:
        runners = await gh.list_runners(ORG)
    assert [r.name for r in runners] == ["a"]
    (request,) = github.requests
    assert request.headers["Authorization"] == f"token {PAT}"
    assert request.headers["Accept"] == "application/vnd.github.v3+json"
    assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert request.headers["User-Agent"].startswith("runnerd/")
    assert request.query == {"per_page": "100"}


async def test_app_jwt_and_installation_token(
    github: FakeGitHub,
    make_client: ClientFactory,
    fake_time: FakeTime,
    rsa_key: rsa.RSAPrivateKey,
    private_key_pem: str,
) -> None:
    claims_seen: list[dict[str, Any]] = []

    async def mint(request: web.Request, recorded: Recorded) -> Reply:
        scheme, _, token = request.headers["Authorization"].partition(" ")
        assert scheme.lower() == "bearer"
        claims_seen.append(jwt.decode(token, rsa_key.public_key(), algorithms=["RS256"]))
        return Reply(201, {"token": INSTALLATION_TOKEN, "expires_at": _iso(fake_time.now + 3600)})

    github.on("POST", "/app/installations/42/access_tokens", mint)
    github.on("GET", RUNNERS, _runners())
    async with make_client(_app_credentials(private_key_pem)) as gh:
        await gh.list_runners(ORG)
    (claims,) = claims_seen
    now = int(fake_time.now)
    assert claims["iss"] == "12345"
    assert claims["iat"] == now - 60
    assert now < claims["exp"] <= now + 600
    assert github.calls("GET", RUNNERS)[0].headers["Authorization"] == f"token {INSTALLATION_TOKEN}"


async def test_installation_token_single_flight_reuse_and_refresh(
    github: FakeGitHub, make_client: ClientFactory, fake_time: FakeTime, private_key_pem: str
) -> None:
    minted = 0
    release = asyncio.Event()

    async def mint(request: web.Request, recorded: Recorded) -> Reply:
        nonlocal minted
        minted += 1
        await release.wait()
        return Reply(201, {"token": f"ghs_token{minted}", "expires_at": _iso(fake_time.now + 3600)})

    github.on("POST", "/app/installations/42/access_tokens", mint)
    github.on("GET", RUNNERS, _runners())
    async with make_client(_app_credentials(private_key_pem)) as gh:
        calls = [asyncio.create_task(gh.list_runners(ORG)) for _ in range(8)]
        while not github.calls("POST"):  # noqa: ASYNC110 - wait until the mint request is in flight
            await asyncio.sleep(0.001)
        release.set()
        await asyncio.gather(*calls)
        assert minted == 1
        assert {r.headers["Authorization"] for r in github.calls("GET")} == {"token ghs_token1"}

        fake_time.advance(3600 - 301)  # still more than the 5-minute margin left
        await gh.list_runners(ORG)
        assert minted == 1
        fake_time.advance(2)  # less than 5 minutes left: refreshed before use
        await gh.list_runners(ORG)
        assert minted == 2
        assert github.calls("GET")[-1].headers["Authorization"] == "token ghs_token2"


async def test_revoked_installation_token_is_replaced_once(
    github: FakeGitHub, make_client: ClientFactory, fake_time: FakeTime, private_key_pem: str
) -> None:
    minted = 0

    async def mint(request: web.Request, recorded: Recorded) -> Reply:
        nonlocal minted
        minted += 1
        return Reply(201, {"token": f"ghs_token{minted}", "expires_at": _iso(fake_time.now + 3600)})

    github.on("POST", "/app/installations/42/access_tokens", mint)
    github.on("GET", RUNNERS, Reply(401, {"message": "Bad credentials"}), _runners())
    async with make_client(_app_credentials(private_key_pem)) as gh:
        assert await gh.list_runners(ORG) == []
        assert minted == 2
        github.on("GET", RUNNERS, Reply(401, {"message": "Bad credentials"}))
        with pytest.raises(BadCredentialsError):
            await gh.list_runners(ORG)
        assert minted == 3  # one more try with a fresh token, then give up


async def test_bad_app_key_is_bad_credentials(
    github: FakeGitHub, make_client: ClientFactory, private_key_pem: str
) -> None:
    github.on(
        "POST",
        "/app/installations/42/access_tokens",
        Reply(401, {"message": "A JSON web token could not be decoded"}),
    )
    async with make_client(_app_credentials(private_key_pem)) as gh:
        with pytest.raises(BadCredentialsError, match="JSON web token") as excinfo:
            await gh.list_runners(ORG)
    assert excinfo.value.endpoint == "POST /app/installations/{installation_id}/access_tokens"
    assert excinfo.value.reason == "GitHubBadCredentials"
    assert not github.calls("GET")


# -- registration ----------------------------------------------------------------------------------


async def test_generate_jit_config(github: FakeGitHub, make_client: ClientFactory) -> None:
    github.on(
        "POST",
        "/repos/octo/hello/actions/runners/generate-jitconfig",
        Reply(
            201, {"runner": runner_json(77, "pod-1", status="offline"), "encoded_jit_config": "SECRETJIT=="}
        ),
    )
    async with make_client() as gh:
        config = await gh.generate_jit_config(REPO, "pod-1", labels=["self-hosted", "gpu"], runner_group_id=3)
    assert config.runner_id == 77
    assert config.runner.labels == ("self-hosted", "gpu")
    assert config.encoded_jit_config == "SECRETJIT=="
    assert "SECRETJIT" not in repr(config)
    (request,) = github.requests
    assert request.body == {
        "name": "pod-1",
        "runner_group_id": 3,
        "labels": ["self-hosted", "gpu"],
        "work_folder": "_work",
    }
    assert request.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("status", "error"),
    [(409, ConflictError), (422, ValidationFailedError), (404, NotFoundError), (403, PermissionDeniedError)],
)
async def test_jit_errors(
    github: FakeGitHub, make_client: ClientFactory, status: int, error: type[Exception]
) -> None:
    github.on(
        "POST",
        "/orgs/octo/actions/runners/generate-jitconfig",
        Reply(
            status,
            {"message": "nope", "documentation_url": "https://docs.github.com"},
            {"x-github-request-id": "AB:CD"},
        ),
    )
    async with make_client() as gh:
        with pytest.raises(error, match="nope") as excinfo:
            await gh.generate_jit_config(ORG, "r", labels=["x"])
    assert excinfo.value.status == status  # type: ignore[attr-defined]
    assert excinfo.value.request_id == "AB:CD"  # type: ignore[attr-defined]


async def test_jit_post_is_not_retried_on_5xx(github: FakeGitHub, make_client: ClientFactory) -> None:
    github.on("POST", "/orgs/octo/actions/runners/generate-jitconfig", Reply(502, {"message": "Bad Gateway"}))
    async with make_client() as gh:
        with pytest.raises(GitHubServerError):
            await gh.generate_jit_config(ORG, "r", labels=["x"])
    assert len(github.requests) == 1


@pytest.mark.parametrize("labels", [[], [""], [f"l{i}" for i in range(101)]])
async def test_jit_label_validation(make_client: ClientFactory, labels: list[str]) -> None:
    async with make_client() as gh:
        with pytest.raises(ValueError, match="labels"):
            await gh.generate_jit_config(ORG, "r", labels=labels)


async def test_registration_token_cache(
    github: FakeGitHub, make_client: ClientFactory, fake_time: FakeTime
) -> None:
    issued = 0

    async def issue(request: web.Request, recorded: Recorded) -> Reply:
        nonlocal issued
        issued += 1
        return Reply(201, {"token": f"AREG{issued}", "expires_at": _iso(fake_time.now + 3600)})

    github.on("POST", "/orgs/octo/actions/runners/registration-token", issue)
    github.on("POST", "/repos/octo/hello/actions/runners/registration-token", issue)
    async with make_client() as gh:
        first = await asyncio.gather(*(gh.create_registration_token(ORG) for _ in range(5)))
        assert {t.token for t in first} == {"AREG1"}
        assert first[0].expires_at == fake_time.now + 3600
        assert "AREG" not in repr(first[0])
        other = await gh.create_registration_token(REPO)
        assert other.token == "AREG2"
        fake_time.advance(3600 - 601)
        assert (await gh.create_registration_token(ORG)).token == "AREG1"
        fake_time.advance(2)  # less than 10 minutes left
        assert (await gh.create_registration_token(ORG)).token == "AREG3"
        assert (await gh.create_registration_token(ORG, refresh=True)).token == "AREG4"
    assert issued == 4


async def test_remove_token_is_not_cached(
    github: FakeGitHub, make_client: ClientFactory, fake_time: FakeTime
) -> None:
    github.on(
        "POST",
        "/orgs/octo/actions/runners/remove-token",
        Reply(201, {"token": "AREMOVE", "expires_at": "2030-01-01T00:00:00.000-08:00"}),
    )
    async with make_client() as gh:
        token = await gh.create_remove_token(ORG)
        await gh.create_remove_token(ORG)
    assert token.token == "AREMOVE"
    assert token.expires_at == parse_timestamp("2030-01-01T08:00:00Z")
    assert len(github.requests) == 2


# -- runners ---------------------------------------------------------------------------------------


async def test_list_runners_follows_pages(github: FakeGitHub, make_client: ClientFactory) -> None:
    base = github.base_url

    async def page(request: web.Request, recorded: Recorded) -> Reply:
        n = int(recorded.query.get("page", "1"))
        assert recorded.query["per_page"] == "100"
        assert recorded.query["name"] == "pod a"
        links = []
        if n < 3:
            links.append(f'<{base}{RUNNERS}?per_page=100&name=pod+a&page={n + 1}>; rel="next"')
        links.append(f'<{base}{RUNNERS}?per_page=100&name=pod+a&page=3>; rel="last"')
        return _runners(
            runner_json(n, "pod a"), runner_json(100 + n, "other"), headers={"Link": ", ".join(links)}
        )

    github.on("GET", RUNNERS, page)
    async with make_client() as gh:
        runners = await gh.list_runners(ORG, name="pod a")
        stats = gh.stats.snapshot()
    # the name filter is applied here too (older GHES ignore ?name=)
    assert [r.id for r in runners] == [1, 2, 3]
    assert [r.query.get("page") for r in github.requests] == [None, "2", "3"]
    assert stats.calls == {("GET /orgs/{org}/actions/runners", "200"): 3}


async def test_next_link_to_another_host_is_refused(github: FakeGitHub, make_client: ClientFactory) -> None:
    github.on("GET", RUNNERS, _runners(headers={"Link": '<https://evil.example/steal?page=2>; rel="next"'}))
    async with make_client() as gh:
        with pytest.raises(UnexpectedResponseError, match="leaves the API host"):
            await gh.list_runners(ORG)
    assert len(github.requests) == 1


async def test_conditional_get_uses_etag(
    github: FakeGitHub, make_client: ClientFactory, fake_time: FakeTime
) -> None:
    async def reply(request: web.Request, recorded: Recorded) -> Reply:
        headers = {"ETag": 'W/"v1"', **rate_headers(remaining=4000, reset=fake_time.now + 100)}
        if request.headers.get("If-None-Match") == 'W/"v1"':
            return Reply(304, None, headers)
        return _runners(runner_json(5, "r5"), headers=headers)

    github.on("GET", "/repos/octo/hello/actions/runners/5", reply)
    github.on("GET", "/repos/octo/hello/actions/runners", reply)
    async with make_client() as gh:
        first = await gh.list_runners(REPO)
        second = await gh.list_runners(REPO)
        stats = gh.stats.snapshot()
    assert first == second == [first[0]]
    assert "If-None-Match" not in github.requests[0].headers
    assert github.requests[1].headers["If-None-Match"] == 'W/"v1"'
    assert stats.calls == {
        ("GET /repos/{owner}/{repo}/actions/runners", "200"): 1,
        ("GET /repos/{owner}/{repo}/actions/runners", "304"): 1,
    }


async def test_get_runner(github: FakeGitHub, make_client: ClientFactory) -> None:
    github.on("GET", "/orgs/octo/actions/runners/7", Reply(200, runner_json(7, "r7", busy=True)))
    async with make_client() as gh:
        runner = await gh.get_runner(ORG, 7)
        with pytest.raises(NotFoundError):
            await gh.get_runner(ORG, 8)
    assert (runner.id, runner.busy, runner.online, runner.ephemeral) == (7, True, True, True)


async def test_delete_runner_outcomes(github: FakeGitHub, make_client: ClientFactory) -> None:
    github.on("DELETE", "/orgs/octo/actions/runners/1", Reply(204))
    github.on("DELETE", "/orgs/octo/actions/runners/2", Reply(404, {"message": "Not Found"}))
    github.on(
        "DELETE",
        "/orgs/octo/actions/runners/3",
        Reply(422, {"message": 'Bad request - Runner "r3" is still running a job"'}),
    )
    async with make_client() as gh:
        assert await gh.delete_runner(ORG, 1) is True
        assert await gh.delete_runner(ORG, 2) is False  # already gone
        with pytest.raises(RunnerBusyError, match="still running a job") as excinfo:
            await gh.delete_runner(ORG, 3)
    assert excinfo.value.runner_id == 3
    assert excinfo.value.reason == "RunnerBusy"
    assert len(github.requests) == 3  # nothing retried


async def test_runner_groups(github: FakeGitHub, make_client: ClientFactory) -> None:
    groups = {
        "total_count": 2,
        "runner_groups": [
            {"id": 1, "name": "Default", "visibility": "all", "default": True, "inherited": False},
            {"id": 4, "name": "GPU", "visibility": "selected", "default": False, "inherited": True},
        ],
    }
    github.on("GET", "/orgs/octo/actions/runner-groups", Reply(200, groups))
    github.on("GET", "/enterprises/acme/actions/runner-groups", Reply(200, groups))
    async with make_client() as gh:
        listed = await gh.list_runner_groups(ORG, visible_to_repository="hello")
        assert [(g.id, g.name, g.default, g.inherited) for g in listed] == [
            (1, "Default", True, False),
            (4, "GPU", False, True),
        ]
        assert github.requests[0].query == {"per_page": "100", "visible_to_repository": "hello"}
        assert await gh.find_runner_group_id(ORG, "GPU") == 4
        assert await gh.find_runner_group_id(Scope.enterprise("acme"), "gpu") == 4
        with pytest.raises(RunnerGroupNotFoundError):
            await gh.find_runner_group_id(ORG, "CPU")
        calls = len(github.requests)
        assert await gh.find_runner_group_id(ORG, None) == 1
        assert await gh.find_runner_group_id(REPO, "Default") == 1
        with pytest.raises(RunnerGroupNotFoundError):
            await gh.find_runner_group_id(REPO, "GPU")
        assert len(github.requests) == calls  # no calls needed for those
        with pytest.raises(ValueError, match="repositories"):
            await gh.list_runner_groups(REPO)


async def test_workflow_runs_and_jobs(github: FakeGitHub, make_client: ClientFactory) -> None:
    base = github.base_url
    github.on(
        "GET",
        "/repos/octo/hello/actions/runs",
        Reply(
            200,
            {"total_count": 2, "workflow_runs": [{"id": 10, "status": "queued", "name": "ci"}]},
            {"Link": f'<{base}/repos/octo/hello/actions/runs?status=queued&per_page=100&page=2>; rel="next"'},
        ),
        Reply(200, {"total_count": 2, "workflow_runs": [{"id": 11, "status": "queued", "run_attempt": 2}]}),
    )
    github.on(
        "GET",
        "/repos/octo/hello/actions/runs/10/jobs",
        Reply(
            200,
            {
                "total_count": 1,
                "jobs": [
                    {
                        "id": 99,
                        "run_id": 10,
                        "status": "queued",
                        "labels": ["self-hosted", "gpu"],
                        "runner_id": None,
                        "runner_group_name": None,
                    }
                ],
            },
        ),
    )
    async with make_client() as gh:
        runs = await gh.list_workflow_runs(REPO, status="queued")
        jobs = await gh.list_jobs_for_run(REPO, 10)
        with pytest.raises(ValueError, match="not a repository"):
            await gh.list_workflow_runs(ORG)
    assert [(r.id, r.status, r.run_attempt) for r in runs] == [(10, "queued", None), (11, "queued", 2)]
    assert github.requests[0].query == {"per_page": "100", "status": "queued"}
    assert [(j.id, j.run_id, j.labels, j.runner_id) for j in jobs] == [(99, 10, ("self-hosted", "gpu"), None)]
    assert github.requests[-1].query == {"per_page": "100", "filter": "latest"}


async def test_malformed_body_is_an_unexpected_response(
    github: FakeGitHub, make_client: ClientFactory
) -> None:
    github.on("GET", "/orgs/octo/actions/runners/1", Reply(200, {"id": "one"}))
    github.on("GET", RUNNERS, Reply(200, {"runners": "nope"}))
    async with make_client() as gh:
        with pytest.raises(UnexpectedResponseError):
            await gh.get_runner(ORG, 1)
        with pytest.raises(UnexpectedResponseError):
            await gh.list_runners(ORG)


# -- rate limits -----------------------------------------------------------------------------------


async def test_rate_limit_headers_are_recorded(
    github: FakeGitHub, make_client: ClientFactory, fake_time: FakeTime
) -> None:
    github.on("GET", RUNNERS, _runners(headers=rate_headers(remaining=4321, reset=fake_time.now + 60)))
    async with make_client() as gh:
        await gh.list_runners(ORG)
        core = gh.rate_limits.get("core")
    assert core is not None
    assert (core.limit, core.remaining, core.used, core.reset_at) == (5000, 4321, 679, fake_time.now + 60)


async def test_rate_limited_call_raises_and_gate_is_shared(
    github: FakeGitHub, make_client: ClientFactory, fake_time: FakeTime
) -> None:
    reset = fake_time.now + 20
    in_flight = 0
    seen_in_flight: list[int] = []

    async def ok(request: web.Request, recorded: Recorded) -> Reply:
        nonlocal in_flight
        in_flight += 1
        seen_in_flight.append(in_flight)
        await asyncio.sleep(0.02)  # simulated latency: lets any concurrent request overlap the probe
        in_flight -= 1
        return _runners(headers=rate_headers(remaining=4999, reset=reset + 3600))

    github.on(
        "GET",
        RUNNERS,
        Reply(403, {"message": "API rate limit exceeded"}, rate_headers(remaining=0, reset=reset)),
        ok,
    )
    async with make_client(max_rate_limit_wait_s=60) as gh:
        with pytest.raises(RateLimitedError) as excinfo:
            await gh.list_runners(ORG)
        assert excinfo.value.resume_at == reset
        assert excinfo.value.resource == "core"
        assert excinfo.value.status == 403
        assert gh.paused_until("core") == reset
        assert gh.paused_until() is None  # a primary limit pauses its bucket only

        results = await asyncio.gather(*(gh.list_runners(ORG) for _ in range(6)))
        stats = gh.stats.snapshot()
    assert results == [[]] * 6
    assert len(github.requests) == 7  # the limited call, then each waiting call exactly once
    # The first call after the pause went alone (the probe); the next started only after it ended.
    assert seen_in_flight[:2] == [1, 1]
    assert max(seen_in_flight) > 1  # ... and the rest then went together
    assert fake_time.sleeps[0] == pytest.approx(20.5)  # until the reset, plus jitter
    assert stats.calls[("GET /orgs/{org}/actions/runners", "403")] == 1
    assert stats.calls[("GET /orgs/{org}/actions/runners", "200")] == 6
    assert stats.gate_waits >= 5  # all but (at most) the probe waited


async def test_wait_beyond_max_raises_without_calling(
    github: FakeGitHub, make_client: ClientFactory, fake_time: FakeTime
) -> None:
    github.on("GET", RUNNERS, Reply(429, {"message": "slow down"}, {"Retry-After": "3600"}))
    async with make_client(max_rate_limit_wait_s=30) as gh:
        with pytest.raises(RateLimitedError) as first:
            await gh.list_runners(ORG)
        assert first.value.resource == "*"
        with pytest.raises(RateLimitWaitExceeded) as second:
            await gh.generate_jit_config(ORG, "r", labels=["x"])  # a secondary limit pauses every call
        assert gh.stats.snapshot().gate_rejections == 1
    assert second.value.resume_at == fake_time.now + 3600
    assert len(github.requests) == 1
    assert fake_time.sleeps == []


async def test_spent_bucket_pauses_only_that_bucket(
    github: FakeGitHub, make_client: ClientFactory, fake_time: FakeTime
) -> None:
    github.on(
        "POST",
        "/orgs/octo/actions/runners/registration-token",
        Reply(
            201,
            {"token": "AREG", "expires_at": _iso(fake_time.now + 3600)},
            rate_headers(
                remaining=9000, limit=10000, reset=fake_time.now + 900, resource="actions_runner_registration"
            ),
        ),
    )
    github.on("GET", RUNNERS, _runners(headers=rate_headers(remaining=0, reset=fake_time.now + 900)))
    async with make_client(max_rate_limit_wait_s=10) as gh:
        await gh.create_registration_token(ORG)  # learns this endpoint's bucket
        assert await gh.list_runners(ORG) == []  # succeeds, but spends the last core call
        assert gh.paused_until("core") == fake_time.now + 900
        with pytest.raises(RateLimitWaitExceeded):
            await gh.list_runners(ORG)
        token = await gh.create_registration_token(ORG, refresh=True)  # another bucket: not paused
    assert token.token == "AREG"
    assert len(github.requests) == 3


async def test_secondary_limit_without_retry_after_backs_off(
    github: FakeGitHub, make_client: ClientFactory, fake_time: FakeTime
) -> None:
    github.on("GET", RUNNERS, Reply(403, {"message": "You have exceeded a secondary rate limit."}))
    async with make_client(max_rate_limit_wait_s=3600) as gh:
        with pytest.raises(RateLimitedError) as first:
            await gh.list_runners(ORG)
        assert first.value.resume_at == fake_time.now + 60
        with pytest.raises(RateLimitedError) as second:  # waits out the pause, probes, limited again
            await gh.list_runners(ORG)
    assert second.value.resume_at == fake_time.now + 120
    assert second.value.status == 403


async def test_get_rate_limit(github: FakeGitHub, make_client: ClientFactory, fake_time: FakeTime) -> None:
    reset = int(fake_time.now) + 100
    body = {
        "resources": {
            "core": {"limit": 5000, "used": 5000, "remaining": 0, "reset": reset},
            "actions_runner_registration": {"limit": 10000, "used": 1, "remaining": 9999, "reset": reset},
        },
        "rate": {"limit": 5000, "used": 5000, "remaining": 0, "reset": reset},
    }
    github.on(
        "GET",
        RUNNERS,
        Reply(403, {"message": "API rate limit exceeded"}, rate_headers(remaining=0, reset=reset)),
    )
    github.on("GET", "/rate_limit", Reply(200, body))
    async with make_client(max_rate_limit_wait_s=0) as gh:
        with pytest.raises(RateLimitedError):
            await gh.list_runners(ORG)
        buckets = await gh.get_rate_limit()  # not held back by the gate
        assert gh.rate_limits.get("actions_runner_registration") == buckets["actions_runner_registration"]
    assert buckets["core"].remaining == 0
    assert buckets["actions_runner_registration"].reset_at == reset


# -- retries ---------------------------------------------------------------------------------------


async def test_retry_on_502_then_success(
    github: FakeGitHub, make_client: ClientFactory, fake_time: FakeTime
) -> None:
    github.on(
        "GET",
        RUNNERS,
        Reply(502, {"message": "Bad Gateway"}),
        Reply(503, None),
        _runners(runner_json(1, "a")),
    )
    async with make_client() as gh:
        runners = await gh.list_runners(ORG)
        stats = gh.stats.snapshot()
    assert [r.id for r in runners] == [1]
    assert fake_time.sleeps == [0.375, 0.75]  # 0.5 s and 1 s nominal, equal jitter at draw 0.5
    assert stats.retries == {"GET /orgs/{org}/actions/runners": 2}
    assert stats.calls == {
        ("GET /orgs/{org}/actions/runners", "502"): 1,
        ("GET /orgs/{org}/actions/runners", "503"): 1,
        ("GET /orgs/{org}/actions/runners", "200"): 1,
    }


async def test_retries_are_bounded(
    github: FakeGitHub, make_client: ClientFactory, fake_time: FakeTime
) -> None:
    github.on("DELETE", "/orgs/octo/actions/runners/1", Reply(500, {"message": "Server Error"}))
    async with make_client(retry=RetryPolicy(max_attempts=3)) as gh:
        with pytest.raises(GitHubServerError, match="Server Error"):
            await gh.delete_runner(ORG, 1)
    assert len(github.requests) == 3
    assert len(fake_time.sleeps) == 2


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_retried_then_raised(
    make_client: ClientFactory, fake_time: FakeTime
) -> None:
    config = GitHubConfig(api_url=f"http://127.0.0.1:{_unused_port()}")
    async with make_client(config=config, retry=RetryPolicy(max_attempts=3)) as gh:
        with pytest.raises(GitHubConnectionError, match="ClientConnectorError"):
            await gh.generate_jit_config(ORG, "r", labels=["x"])  # never connected: safe even for a POST
        assert gh.stats.snapshot().calls == {
            ("POST /orgs/{org}/actions/runners/generate-jitconfig", "error"): 3
        }
    assert len(fake_time.sleeps) == 2


# -- endpoints, lifecycle, secrecy -----------------------------------------------------------------


async def test_ghes_api_prefix(github: FakeGitHub, make_client: ClientFactory) -> None:
    github.on("GET", "/api/v3/repos/octo/hello/actions/runners", _runners(runner_json(1, "a")))
    config = GitHubConfig.resolve(enterprise_url=github.base_url)
    async with make_client(config=config) as gh:
        runners = await gh.list_runners(REPO)
    assert [r.id for r in runners] == [1]
    assert github.requests[0].path == "/api/v3/repos/octo/hello/actions/runners"
    assert config.github_url == github.base_url + "/"


async def test_path_values_are_escaped(github: FakeGitHub, make_client: ClientFactory) -> None:
    github.on("GET", "/repos/octo/a%3Fb/actions/runners", _runners())
    async with make_client() as gh:
        await gh.list_runners(Scope.repository("octo/a?b"))
    assert github.requests[0].path == "/repos/octo/a%3Fb/actions/runners"


async def test_closed_client_refuses_calls(make_client: ClientFactory) -> None:
    gh = make_client()
    async with gh:
        pass
    assert gh.closed
    with pytest.raises(GitHubError, match="closed"):
        await gh.list_runners(ORG)
    await gh.close()  # idempotent


async def test_secrets_never_logged_or_shown(
    github: FakeGitHub,
    make_client: ClientFactory,
    fake_time: FakeTime,
    private_key_pem: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    github.on(
        "POST",
        "/app/installations/42/access_tokens",
        Reply(201, {"token": INSTALLATION_TOKEN, "expires_at": _iso(fake_time.now + 3600)}),
    )
    github.on("GET", RUNNERS, Reply(502, None), Reply(401, {"message": "Bad credentials"}), _runners())
    github.on(
        "POST",
        "/orgs/octo/actions/runners/registration-token",
        Reply(201, {"token": "AREGSECRET", "expires_at": _iso(fake_time.now + 3600)}),
    )
    github.on("DELETE", "/orgs/octo/actions/runners/1", Reply(429, {"message": "slow"}, {"Retry-After": "5"}))
    errors: list[BaseException] = []
    async with make_client(_app_credentials(private_key_pem)) as gh:
        await gh.list_runners(ORG)
        token = await gh.create_registration_token(ORG)
        try:
            await gh.delete_runner(ORG, 1)
        except RateLimitedError as exc:
            errors.append(exc)
        pat_client = make_client(max_rate_limit_wait_s=0)
        try:
            await pat_client.list_runners(ORG)
        except GitHubError as exc:
            errors.append(exc)
        shown = " ".join(
            [caplog.text, repr(gh), repr(pat_client), repr(token), *map(str, errors), *map(repr, errors)]
        )
    assert "installation token minted" in caplog.text  # logging did happen
    assert errors
    for secret in (INSTALLATION_TOKEN, PAT, "AREGSECRET", "PRIVATE KEY"):
        assert secret not in shown


# -- the environment's proxy -----------------------------------------------------------------------


@pytest.mark.parametrize("no_proxy", ["", "localhost"])
async def test_the_environment_proxy_is_read_once_per_origin(
    github: FakeGitHub, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, no_proxy: str
) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", github.base_url)  # the fake GitHub plays the proxy
    monkeypatch.setenv("NO_PROXY", no_proxy)
    github.on("GET", "/orgs/octo/actions/runners/7", Reply(200, runner_json(7, "r7")))
    config = GitHubConfig(api_url="http://localhost:1")  # nothing listens there
    async with make_client(config=config, trust_env=True, retry=RetryPolicy(max_attempts=1)) as gh:
        if no_proxy:
            with pytest.raises(GitHubConnectionError):  # straight to localhost:1
                await gh.get_runner(ORG, 7)
            assert github.requests == []
        else:
            assert (await gh.get_runner(ORG, 7)).id == 7
            monkeypatch.setenv("NO_PROXY", "localhost")  # read once: later changes are not seen
            assert (await gh.get_runner(ORG, 7)).id == 7
            assert [r.path for r in github.requests] == ["/orgs/octo/actions/runners/7"] * 2
    async with make_client(config=config, retry=RetryPolicy(max_attempts=1)) as gh:  # trust_env=False
        with pytest.raises(GitHubConnectionError):
            await gh.get_runner(ORG, 7)
