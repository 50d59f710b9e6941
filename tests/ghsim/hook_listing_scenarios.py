"""Conformance scenarios of the hook listings (an organization's and a repository's webhooks, the
App's webhook configuration), registered into :data:`tests.ghsim.test_openapi_conformance.SCENARIOS`.

Each answer is validated against the pinned description by the test client; the scenarios drive
the success answers (paging included) and GitHub's permission answers (401, 403, 404).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ghsim import Simulator
from ghsim.entities import Scope

from .client import GitHub
from .conftest import Setup, make_jwt

Scenario = Callable[[GitHub, Simulator, Setup], Awaitable[None]]
LISTING_SCENARIOS: dict[str, Scenario] = {}


async def list_org_hooks(gh: GitHub, sim: Simulator, s: Setup) -> None:
    org = Scope("org", "octo-org")
    first = sim.world.create_hook("https://ci.example/hook", scope=org, secret="s3cret")
    second = sim.world.create_hook("https://other.example/", scope=org, events=("push",))
    sim.world.create_hook("https://ci.example/hook", scope=Scope("org", "other-org"))
    token = sim.world.create_pat("hooks", ["admin:org_hook"]).token
    got = await gh.get("/orgs/octo-org/hooks", token=token)
    assert got.status == 200
    assert [(h["id"], h["events"], h["active"]) for h in got.body] == [
        (first.id, ["workflow_job"], True),
        (second.id, ["push"], True),
    ]
    assert got.body[0]["config"] == {
        "url": "https://ci.example/hook",
        "content_type": "json",
        "insecure_ssl": "0",
        "secret": "********",
    }
    page = await gh.get("/orgs/octo-org/hooks?per_page=1", token=token)
    assert [h["id"] for h in page.body] == [first.id]
    assert 'rel="next"' in (page.header("Link") or "")
    assert (await gh.get("/orgs/octo-org/hooks", token="")).status == 401
    assert (await gh.get("/orgs/octo-org/hooks", token=s.admin)).status == 403  # admin:org is not enough
    assert (await gh.get("/orgs/octo-org/hooks", token=s.restricted)).status == 404
    inst = sim.world.installations[s.inst_octo]
    inst.permissions.pop("organization_hooks", None)
    none = sim.world.issue_installation_token(inst.id).token
    assert (await gh.get("/orgs/octo-org/hooks", token=none)).status == 403
    inst.permissions["organization_hooks"] = "read"
    read = sim.world.issue_installation_token(inst.id).token
    assert len((await gh.get("/orgs/octo-org/hooks", token=read)).body) == 2


async def list_repo_hooks(gh: GitHub, sim: Simulator, s: Setup) -> None:
    app = Scope("repo", "octo-org/app")
    hook = sim.world.create_hook("https://ci.example/hook", scope=app, events=("*",))
    sim.world.create_hook("https://ci.example/hook", scope=Scope("repo", "octo-org/site"))
    got = await gh.get("/repos/octo-org/app/hooks", token=s.repo_only)
    assert got.status == 200
    assert [(h["id"], h["events"]) for h in got.body] == [(hook.id, ["*"])]
    assert got.body[0]["last_response"]["status"] == "unused"
    assert (await gh.get("/repos/octo-org/app/hooks", token="")).status == 401
    assert (await gh.get("/repos/octo-org/app/hooks", token=s.org_only)).status == 403
    assert (await gh.get("/repos/octo-org/app/hooks", token=s.restricted)).status == 404


async def app_hook_config(gh: GitHub, sim: Simulator, s: Setup) -> None:
    jwt = make_jwt(s, sim.world.now())
    assert (await gh.get("/app/hook/config", token=jwt)).status == 404  # the App has no webhook
    sim.world.create_hook("https://ci.example/app", app_id=s.app_id, secret="x")
    got = await gh.get("/app/hook/config", token=jwt)
    assert got.status == 200
    assert (got.body["url"], got.body["secret"]) == ("https://ci.example/app", "********")
    assert (await gh.get("/app/hook/config", token=s.admin)).status == 401  # a PAT is not the App


LISTING_SCENARIOS.update(
    {
        "orgs/list-webhooks": list_org_hooks,
        "repos/list-webhooks": list_repo_hooks,
        "apps/get-webhook-config-for-app": app_hook_config,
    }
)
