"""The ``/_sim/`` admin API over HTTP, and its documentation."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from ghsim import Simulator
from ghsim.admin import AdminAPI
from ghsim.runner_api import RunnerAPI

from .client import GitHub
from .npm import REPO_ROOT


async def test_build_a_world_and_run_a_trace(sim: Simulator, http: aiohttp.ClientSession) -> None:
    gh = GitHub(http, sim.base_url)
    assert await gh.sim("GET", "/health") == {"ok": True}
    await gh.sim("POST", "/enterprises", {"slug": "acme", "name": "Acme"}, expect=201)
    await gh.sim("POST", "/orgs", {"login": "octo-org", "enterprise": "acme"}, expect=201)
    repo = await gh.sim("POST", "/repos", {"full_name": "octo-org/app"}, expect=201)
    group = await gh.sim(
        "POST",
        "/runner-groups",
        {
            "org": "octo-org",
            "name": "gpu",
            "visibility": "selected",
            "selected_repositories": ["octo-org/app"],
        },
        expect=201,
    )
    await gh.sim("PATCH", f"/orgs/octo-org/runner-groups/{group['id']}", {"visibility": "all"}, expect=200)
    await gh.sim("POST", "/runner-groups", {"enterprise": "acme", "name": "shared"}, expect=201)
    await gh.sim(
        "PATCH", "/enterprises/acme/runner-groups/1", {"allows_public_repositories": True}, expect=200
    )
    app = await gh.sim("POST", "/apps", {"slug": "runnerd"}, expect=201)
    inst = await gh.sim("POST", "/installations", {"app_id": app["id"], "account": "octo-org"}, expect=201)
    patched = await gh.sim("PATCH", f"/installations/{inst['id']}", {"suspended": True}, expect=200)
    assert patched["suspended"] is True
    pat = await gh.sim("POST", "/pats", {"login": "admin", "scopes": ["repo", "admin:org"]}, expect=201)
    gh.token = pat["token"]
    assert (await gh.get("/orgs/octo-org/actions/runner-groups")).body["total_count"] == 3

    run = await gh.sim(
        "POST",
        "/runs",
        {
            "repo": "octo-org/app",
            "workflow": "CI",
            "jobs": [{"labels": ["gpu"], "wait": 0}, {"labels": ["x"]}],
        },
        expect=201,
    )
    waiting = run["job_ids"][0]
    assert (await gh.sim("POST", f"/jobs/{waiting}/approve"))["status"] == "queued"
    await gh.sim("POST", f"/runs/{run['id']}/cancel")
    assert (await gh.sim("POST", f"/runs/{run['id']}/rerun", expect=201))["run_attempt"] == 2

    await gh.sim(
        "POST",
        "/trace",
        {"lines": '{"t": 0, "repo": "octo-org/app", "labels": ["gpu"], "duration": 1}\n'},
        expect=201,
    )
    await gh.sim(
        "POST",
        "/trace",
        {"lines": [{"t": 5, "repo": "octo-org/app", "labels": ["gpu"], "duration": 1}]},
        expect=201,
    )
    async with http.post(
        sim.base_url + "/_sim/trace",
        data='{"t": 10, "repo": "octo-org/app", "labels": ["gpu"], "duration": 1}\n',
        headers={"Content-Type": "application/x-ndjson"},
    ) as r:
        assert (r.status, await r.json()) == (201, {"scheduled": 1})
    jobs = (await gh.sim("GET", "/jobs?repo=octo-org/app"))["jobs"]
    assert len(jobs) == 5  # 2 + 2 (rerun) + the first trace line; the others are due later
    await gh.sim("POST", "/clock/advance", {"seconds": 10})
    queued = (await gh.sim("GET", "/jobs?status=queued"))["jobs"]
    assert len(queued) == 5
    one = await gh.sim("GET", f"/jobs/{queued[0]['id']}")
    assert set(one) >= {"queued_at", "assigned_at", "started_at", "completed_at", "runner_name"}
    assert (await gh.sim("POST", "/tick"))["now"] == sim.world.now()
    assert (await gh.sim("GET", "/runners"))["runners"] == []
    stats = await gh.sim("GET", "/stats")
    assert stats["by_endpoint"]["actions/list-self-hosted-runner-groups-for-org"] == 1
    assert stats["by_token"][pat["principal"]] == 1
    assert stats["jobs"]["queued"] == 5
    await gh.sim("POST", "/stats/reset", expect=204)
    assert (await gh.sim("GET", "/stats"))["by_endpoint"] == {}
    limits = await gh.sim("POST", "/ratelimit", {"principal": pat["principal"], "remaining": 3})
    assert limits["resources"]["core"]["remaining"] == 3
    config = await gh.sim("PATCH", "/config", {"long_poll_s": 1})
    assert config["long_poll_s"] == 1.0
    assert (await gh.sim("GET", "/config"))["long_poll_s"] == 1.0
    state = await gh.sim("GET", "/state")
    assert [r["full_name"] for r in state["repos"]] == ["octo-org/app"]
    assert repo["id"] == sim.world.repo_by_name("octo-org/app").id


async def test_seed_through_the_api(sim: Simulator, http: aiohttp.ClientSession) -> None:
    gh = GitHub(http, sim.base_url)
    created = await gh.sim(
        "POST",
        "/state",
        {"orgs": [{"login": "o"}], "pats": [{"token": "ghp_" + "a" * 36, "scopes": ["admin:org"]}]},
        expect=201,
    )
    assert created["pats"][0]["token"] == "ghp_" + "a" * 36


async def test_admin_errors(sim: Simulator, http: aiohttp.ClientSession) -> None:
    gh = GitHub(http, sim.base_url)
    assert "message" in await gh.sim("POST", "/orgs", {"login": ""}, expect=422)
    await gh.sim("POST", "/runs", {"repo": "no/pe", "jobs": [{"labels": ["x"]}]}, expect=404)
    await gh.sim("POST", "/trace", {"lines": "{bad"}, expect=422)
    await gh.sim("POST", "/trace", {"path": "/nonexistent/trace.jsonl"}, expect=422)
    await gh.sim("PATCH", "/config", {"no_such_knob": 1}, expect=422)
    await gh.sim("GET", "/jobs/1", expect=404)
    await gh.sim("POST", "/ratelimit", {}, expect=422)
    await gh.sim("POST", "/ratelimit", {"token": "ghp_wrong"}, expect=401)
    async with http.post(sim.base_url + "/_sim/orgs", data=b"not json") as r:
        assert r.status == 400


async def test_clock_advance_needs_a_manual_clock(http: aiohttp.ClientSession) -> None:
    async with Simulator() as real:
        gh = GitHub(http, real.base_url)
        await gh.sim("POST", "/clock/advance", {"seconds": 1}, expect=422)


def _paths(routes: list[Any]) -> set[str]:
    return {re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", r.path) for r in routes}


def test_docs_list_every_admin_and_runner_endpoint() -> None:
    from ghsim.clock import ManualClock
    from ghsim.core import Core

    core = Core(ManualClock())
    docs = (REPO_ROOT / "docs" / "ghsim.md").read_text()
    documented = set(re.findall(r"`(?:GET|POST|PATCH|PUT|DELETE) (/_(?:sim|runner)/[^`\s?]*)", docs))
    implemented = _paths(AdminAPI(core).routes()) | _paths(RunnerAPI(core).routes())
    assert implemented - documented == set(), "endpoints missing from docs/ghsim.md"
