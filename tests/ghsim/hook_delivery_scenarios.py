"""Conformance scenarios of the hook deliveries API (organization, repository and App hooks).

Registered into :data:`tests.ghsim.test_openapi_conformance.SCENARIOS`; each drives one operation
through its success and error answers, every answer validated against the pinned description.
A hook pointed at the simulator's own ``/_sim/tick`` (a POST answered 200) records successful
attempts; one at ``/_sim/nope`` records 404s (``status=failure``); a ``fail`` fault records
attempts that got no answer (``status_code`` 0).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ghsim import JobSpec, Simulator
from ghsim.entities import Hook, Scope

from .client import GitHub
from .conftest import Setup, make_jwt

Scenario = Callable[[GitHub, Simulator, Setup], Awaitable[None]]
HOOK_SCENARIOS: dict[str, Scenario] = {}

BASES = {
    "org": ("/orgs/octo-org/hooks/{hook}", "orgs"),
    "repo": ("/repos/octo-org/app/hooks/{hook}", "repos"),
    "app": ("/app/hook", "apps"),
}


def make_hook(sim: Simulator, s: Setup, kind: str, path: str = "/_sim/tick") -> Hook:
    url = sim.base_url + path
    if kind == "app":
        return sim.world.create_hook(url, app_id=s.app_id)
    scope = Scope("org", "octo-org") if kind == "org" else Scope("repo", "octo-org/app")
    return sim.world.create_hook(url, scope=scope)


async def jobs(sim: Simulator, n: int) -> None:
    """``n`` queued jobs in octo-org/app, their deliveries sent."""
    sim.world.enqueue_run(sim.world.repo_by_name("octo-org/app"), [JobSpec(("gpu",))] * n)
    await sim.core.dispatcher.drained()


def token_for(sim: Simulator, s: Setup, kind: str) -> str:
    if kind == "app":
        return make_jwt(s, sim.world.now())
    scopes = ["admin:org_hook"] if kind == "org" else ["repo"]
    return sim.world.create_pat(f"hooks-{kind}", scopes).token


def hook_scenarios(kind: str) -> None:
    template, tag = BASES[kind]

    async def list_deliveries(gh: GitHub, sim: Simulator, s: Setup) -> None:
        hook = make_hook(sim, s, kind)
        base = template.format(hook=hook.id)
        token = token_for(sim, s, kind)
        await jobs(sim, 3)
        first = await gh.get(f"{base}/deliveries?per_page=2", token=token)
        assert first.status == 200
        assert [d["action"] for d in first.body] == ["queued", "queued"]
        assert first.body[0]["id"] > first.body[1]["id"]  # newest first
        assert first.body[0]["status_code"] == 200
        link = first.header("Link") or ""
        assert 'rel="next"' in link
        assert "cursor=" in link
        cursor = link.split("cursor=", 1)[1].split(">", 1)[0].split("&", 1)[0]
        second = await gh.get(f"{base}/deliveries?per_page=2&cursor={cursor}", token=token)
        assert len(second.body) == 1
        assert second.body[0]["id"] < first.body[1]["id"]
        assert "next" not in (second.header("Link") or "")
        assert (await gh.get(f"{base}/deliveries?status=failure", token=token)).body == []
        assert len((await gh.get(f"{base}/deliveries?status=success", token=token)).body) == 3
        assert (await gh.get(f"{base}/deliveries", token="")).status == 401
        if kind == "org":  # admin:org does not reach an organization's hooks
            assert (await gh.get(f"{base}/deliveries", token=s.admin)).status == 403
            other = base.replace("octo-org", "other-org")
            assert (await gh.get(f"{other}/deliveries", token=token)).status == 404  # another org's hook
        elif kind == "repo":
            assert (await gh.get(f"{base}/deliveries", token=s.org_only)).status == 403
        else:
            assert (await gh.get(f"{base}/deliveries", token=s.admin)).status == 401

    async def get_delivery(gh: GitHub, sim: Simulator, s: Setup) -> None:
        hook = make_hook(sim, s, kind, "/_sim/nope")
        base = template.format(hook=hook.id)
        token = token_for(sim, s, kind)
        await jobs(sim, 1)
        failed = await gh.get(f"{base}/deliveries?status=failure", token=token)
        assert [d["status_code"] for d in failed.body] == [404]
        got = await gh.get(f"{base}/deliveries/{failed.body[0]['id']}", token=token)
        assert got.status == 200
        assert got.body["request"]["payload"]["action"] == "queued"
        assert got.body["request"]["headers"]["X-GitHub-Delivery"] == got.body["guid"]
        assert (await gh.get(f"{base}/deliveries/999999", token=token)).status == 404

    async def redeliver(gh: GitHub, sim: Simulator, s: Setup) -> None:
        hook = make_hook(sim, s, kind)
        base = template.format(hook=hook.id)
        token = token_for(sim, s, kind)
        sim.world.set_hook_faults(hook.id, {"fail": True})
        await jobs(sim, 1)
        [failed] = (await gh.get(f"{base}/deliveries", token=token)).body
        assert (failed["status_code"], failed["redelivery"]) == (0, False)
        sim.world.set_hook_faults(hook.id, {"fail": False})
        again = await gh.post(f"{base}/deliveries/{failed['id']}/attempts", token=token)
        assert again.status == 202
        await sim.core.dispatcher.drained()
        newest = (await gh.get(f"{base}/deliveries", token=token)).body
        assert [(d["guid"], d["redelivery"], d["status_code"]) for d in newest] == [
            (failed["guid"], True, 200),
            (failed["guid"], False, 0),
        ]
        assert (await gh.post(f"{base}/deliveries/424242/attempts", token=token)).status == 404

    HOOK_SCENARIOS.update(
        {
            f"{tag}/list-webhook-deliveries": list_deliveries,
            f"{tag}/get-webhook-delivery": get_delivery,
            f"{tag}/redeliver-webhook-delivery": redeliver,
        }
    )


for _kind in BASES:
    hook_scenarios(_kind)
