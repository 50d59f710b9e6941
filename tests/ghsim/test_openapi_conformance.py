"""Every implemented REST operation answers as GitHub's pinned OpenAPI description says.

:data:`SCENARIOS` has one scenario per operation of :data:`ghsim.rest.ROUTES`; each drives the
operation through its success and error answers.  The :class:`GitHub` test client validates every
response (status + body) against the operation's schema, for the root (``api.github.com``, ``ghec``
for enterprise operations) and ``/api/v3`` (``ghes-3.19``).  ``test_every_operation_has_a_scenario``
fails when an operation of the route table has no scenario.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from ghsim import JobSpec, Simulator
from ghsim.entities import Scope
from ghsim.rest import ROUTES

from . import client as client_mod
from .client import GitHub
from .conftest import Setup, make_jwt
from .hook_delivery_scenarios import HOOK_SCENARIOS
from .hook_listing_scenarios import LISTING_SCENARIOS
from .schemas import doc_for

Scenario = Callable[[GitHub, Simulator, Setup], Awaitable[None]]
SCENARIOS: dict[str, Scenario] = {}

BASES = {
    "repo": ("/repos/octo-org/app", "actions", "for-repo", "from-repo"),
    "org": ("/orgs/octo-org", "actions", "for-org", "from-org"),
    "enterprise": ("/enterprises/acme", "enterprise-admin", "for-enterprise", "from-enterprise"),
}


async def jit_runner(gh: GitHub, base: str, name: str, labels: list[str] | None = None) -> tuple[int, str]:
    r = await gh.post(
        f"{base}/actions/runners/generate-jitconfig",
        json={"name": name, "runner_group_id": 1, "labels": labels or ["gpu"]},
    )
    assert r.status == 201, r.body
    return int(r.body["runner"]["id"]), str(r.body["encoded_jit_config"])


def online(sim: Simulator, encoded: str) -> int:
    reg = sim.world.redeem_jit(encoded)
    sim.world.poll(reg.runner.id)
    return reg.runner.id


def busy(sim: Simulator, runner_id: int) -> int:
    """Give the (online) runner a job and start it."""
    world = sim.world
    runner = world.runners[runner_id]
    run = world.enqueue_run(
        world.repo_by_name("octo-org/app"), [JobSpec(tuple(lab.name for lab in runner.labels))]
    )
    job_id = run.job_ids[0]
    assert runner.job_id == job_id
    world.start_job(runner_id, job_id)
    return job_id


def runner_scenarios(kind: str) -> None:
    base, tag, for_, from_ = BASES[kind]
    r = f"{base}/actions/runners"
    wrong_scope_token = "org_only" if kind == "repo" else "repo_only"

    async def list_runners(gh: GitHub, sim: Simulator, s: Setup) -> None:
        for i in range(3):
            await jit_runner(gh, base, f"runner-{i}")
        first = await gh.get(f"{r}?per_page=2")
        assert (first.status, first.body["total_count"], len(first.body["runners"])) == (200, 3, 2)
        assert 'rel="next"' in (first.header("Link") or "")
        second = await gh.get(f"{r}?per_page=2&page=2")
        assert [x["name"] for x in second.body["runners"]] == ["runner-2"]
        named = await gh.get(f"{r}?name=runner-1")
        assert [x["name"] for x in named.body["runners"]] == ["runner-1"]
        etag = first.header("ETag")
        assert etag
        again = await gh.get(f"{r}?per_page=2", headers={"If-None-Match": etag})
        assert again.status == 304
        assert (await gh.get(r, token="")).status == 401
        assert (await gh.get(r, token=getattr(s, wrong_scope_token))).status == 403
        missing = r.replace("octo-org", "no-such-org").replace("acme", "no-such-ent")
        assert (await gh.get(missing)).status == 404

    async def get_runner(gh: GitHub, sim: Simulator, s: Setup) -> None:
        rid, _ = await jit_runner(gh, base, "one")
        got = await gh.get(f"{r}/{rid}")
        assert (got.status, got.body["name"], got.body["status"]) == (200, "one", "offline")
        assert (await gh.get(f"{r}/999999")).status == 404

    async def delete_runner(gh: GitHub, sim: Simulator, s: Setup) -> None:
        rid, encoded = await jit_runner(gh, base, "doomed", ["self-hosted"])
        busy(sim, online(sim, encoded))
        refused = await gh.delete(f"{r}/{rid}")
        assert refused.status == 422
        assert "is still running a job" in refused.body["message"]
        world = sim.world
        world.complete_job(rid, world.runners[rid].job_id or 0)
        idle_id, _ = await jit_runner(gh, base, "idle")
        assert (await gh.delete(f"{r}/{idle_id}")).status == 204
        assert (await gh.delete(f"{r}/{idle_id}")).status == 404

    async def list_labels(gh: GitHub, sim: Simulator, s: Setup) -> None:
        rid, _ = await jit_runner(gh, base, "labelled", ["gpu", "a100"])
        got = await gh.get(f"{r}/{rid}/labels")
        assert got.status == 200
        assert [(x["name"], x["type"]) for x in got.body["labels"]] == [
            ("self-hosted", "read-only"),
            ("Linux", "read-only"),
            ("X64", "read-only"),
            ("gpu", "custom"),
            ("a100", "custom"),
        ]
        assert (await gh.get(f"{r}/424242/labels")).status == 404

    async def add_labels(gh: GitHub, sim: Simulator, s: Setup) -> None:
        rid, _ = await jit_runner(gh, base, "grow")
        got = await gh.post(f"{r}/{rid}/labels", json={"labels": ["big", "gpu"]})
        assert (got.status, [x["name"] for x in got.body["labels"]][-2:]) == (200, ["gpu", "big"])
        assert (await gh.post(f"{r}/{rid}/labels", json={"labels": []})).status == 422
        assert (await gh.post(f"{r}/424242/labels", json={"labels": ["x"]})).status == 404

    async def set_labels(gh: GitHub, sim: Simulator, s: Setup) -> None:
        rid, _ = await jit_runner(gh, base, "reset")
        got = await gh.put(f"{r}/{rid}/labels", json={"labels": ["only"]})
        assert [x["name"] for x in got.body["labels"] if x["type"] == "custom"] == ["only"]
        cleared = await gh.put(f"{r}/{rid}/labels", json={"labels": []})
        assert (cleared.status, cleared.body["total_count"]) == (200, 3)
        assert (await gh.put(f"{r}/{rid}/labels", json={"nope": 1})).status == 422
        assert (await gh.put(f"{r}/424242/labels", json={"labels": []})).status == 404

    async def remove_all_labels(gh: GitHub, sim: Simulator, s: Setup) -> None:
        rid, _ = await jit_runner(gh, base, "strip", ["a", "b"])
        got = await gh.delete(f"{r}/{rid}/labels")
        assert (got.status, [x["type"] for x in got.body["labels"]]) == (200, ["read-only"] * 3)
        assert (await gh.delete(f"{r}/424242/labels")).status == 404

    async def remove_label(gh: GitHub, sim: Simulator, s: Setup) -> None:
        rid, _ = await jit_runner(gh, base, "minus", ["a", "b"])
        got = await gh.delete(f"{r}/{rid}/labels/a")
        assert (got.status, [x["name"] for x in got.body["labels"]][-1]) == (200, "b")
        assert (await gh.delete(f"{r}/{rid}/labels/zzz")).status == 404
        assert (await gh.delete(f"{r}/{rid}/labels/self-hosted")).status == 422

    async def registration_token(gh: GitHub, sim: Simulator, s: Setup) -> None:
        got = await gh.post(f"{r}/registration-token")
        assert got.status == 201
        assert got.header("X-RateLimit-Resource") == "actions_runner_registration"
        assert (await gh.post(f"{r}/registration-token", token=getattr(s, wrong_scope_token))).status == 403

    async def remove_token(gh: GitHub, sim: Simulator, s: Setup) -> None:
        got = await gh.post(f"{r}/remove-token")
        assert got.status == 201
        assert (await gh.post(f"{r}/remove-token", token="")).status == 401

    async def generate_jitconfig(gh: GitHub, sim: Simulator, s: Setup) -> None:
        body = {"name": "jit", "runner_group_id": 1, "labels": ["gpu"]}
        got = await gh.post(f"{r}/generate-jitconfig", json=body)
        assert (got.status, got.body["runner"]["ephemeral"]) == (201, True)
        assert (await gh.post(f"{r}/generate-jitconfig", json=body)).status == 409
        assert (
            await gh.post(f"{r}/generate-jitconfig", json={**body, "name": "j2", "runner_group_id": 98765})
        ).status == 404
        assert (
            await gh.post(f"{r}/generate-jitconfig", json={**body, "name": "j3", "labels": []})
        ).status == 422

    ops = {
        f"{tag}/list-self-hosted-runners-{for_}": list_runners,
        f"{tag}/get-self-hosted-runner-{for_}": get_runner,
        f"{tag}/delete-self-hosted-runner-{from_}": delete_runner,
        f"{tag}/list-labels-for-self-hosted-runner-{for_}": list_labels,
        f"{tag}/add-custom-labels-to-self-hosted-runner-{for_}": add_labels,
        f"{tag}/set-custom-labels-for-self-hosted-runner-{for_}": set_labels,
        f"{tag}/remove-all-custom-labels-from-self-hosted-runner-{for_}": remove_all_labels,
        f"{tag}/remove-custom-label-from-self-hosted-runner-{for_}": remove_label,
        f"{tag}/create-registration-token-{for_}": registration_token,
        f"{tag}/create-remove-token-{for_}": remove_token,
        f"actions/generate-runner-jitconfig-{for_}": generate_jitconfig,
    }
    SCENARIOS.update(ops)


for _kind in BASES:
    runner_scenarios(_kind)


def scenario(operation_id: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[operation_id] = fn
        return fn

    return register


# ---- runner groups ------------------------------------------------------------------------------


@scenario("actions/list-self-hosted-runner-groups-for-org")
async def _list_org_groups(gh: GitHub, sim: Simulator, s: Setup) -> None:
    got = await gh.get("/orgs/octo-org/actions/runner-groups")
    names = [(g["name"], g["inherited"]) for g in got.body["runner_groups"]]
    assert names == [("Default", False), ("gpu", False), ("shared", True)]
    sim.world.create_repo("octo-org", "elsewhere")
    visible = await gh.get("/orgs/octo-org/actions/runner-groups?visible_to_repository=elsewhere")
    assert [g["name"] for g in visible.body["runner_groups"]] == ["Default", "shared"]
    assert (await gh.get("/orgs/octo-org/actions/runner-groups", token=s.repo_only)).status == 403


@scenario("actions/get-self-hosted-runner-group-for-org")
async def _get_org_group(gh: GitHub, sim: Simulator, s: Setup) -> None:
    got = await gh.get(f"/orgs/octo-org/actions/runner-groups/{s.gpu_group}")
    assert (got.status, got.body["name"], got.body["visibility"]) == (200, "gpu", "selected")
    inherited = await gh.get(f"/orgs/octo-org/actions/runner-groups/{s.shared_group}")
    assert inherited.body["inherited"] is True
    assert (await gh.get("/orgs/octo-org/actions/runner-groups/424242")).status == 404


@scenario("actions/list-repo-access-to-self-hosted-runner-group-in-org")
async def _org_group_repos(gh: GitHub, sim: Simulator, s: Setup) -> None:
    got = await gh.get(f"/orgs/octo-org/actions/runner-groups/{s.gpu_group}/repositories")
    assert [x["full_name"] for x in got.body["repositories"]] == ["octo-org/app"]
    assert (await gh.get("/orgs/octo-org/actions/runner-groups/424242/repositories")).status == 404


@scenario("actions/list-self-hosted-runners-in-group-for-org")
async def _org_group_runners(gh: GitHub, sim: Simulator, s: Setup) -> None:
    await gh.post(
        "/orgs/octo-org/actions/runners/generate-jitconfig",
        json={"name": "in-gpu", "runner_group_id": s.gpu_group, "labels": ["gpu"]},
    )
    got = await gh.get(f"/orgs/octo-org/actions/runner-groups/{s.gpu_group}/runners")
    assert [x["name"] for x in got.body["runners"]] == ["in-gpu"]
    assert (await gh.get("/orgs/octo-org/actions/runner-groups/1/runners")).body["total_count"] == 0
    assert (await gh.get("/orgs/octo-org/actions/runner-groups/424242/runners")).status == 404


@scenario("enterprise-admin/list-self-hosted-runner-groups-for-enterprise")
async def _list_ent_groups(gh: GitHub, sim: Simulator, s: Setup) -> None:
    got = await gh.get("/enterprises/acme/actions/runner-groups")
    assert [g["name"] for g in got.body["runner_groups"]] == ["Default", "shared"]
    other = await gh.get("/enterprises/acme/actions/runner-groups?visible_to_organization=other-org")
    assert [g["name"] for g in other.body["runner_groups"]] == ["Default"]
    assert (await gh.get("/enterprises/acme/actions/runner-groups", token=s.org_only)).status == 403


@scenario("enterprise-admin/get-self-hosted-runner-group-for-enterprise")
async def _get_ent_group(gh: GitHub, sim: Simulator, s: Setup) -> None:
    got = await gh.get(f"/enterprises/acme/actions/runner-groups/{s.shared_group}")
    assert (got.status, got.body["visibility"]) == (200, "selected")
    assert (await gh.get("/enterprises/acme/actions/runner-groups/424242")).status == 404


@scenario("enterprise-admin/list-org-access-to-self-hosted-runner-group-in-enterprise")
async def _ent_group_orgs(gh: GitHub, sim: Simulator, s: Setup) -> None:
    got = await gh.get(f"/enterprises/acme/actions/runner-groups/{s.shared_group}/organizations")
    assert [o["login"] for o in got.body["organizations"]] == ["octo-org"]
    assert (await gh.get("/enterprises/acme/actions/runner-groups/424242/organizations")).status == 404


@scenario("enterprise-admin/list-self-hosted-runners-in-group-for-enterprise")
async def _ent_group_runners(gh: GitHub, sim: Simulator, s: Setup) -> None:
    await gh.post(
        "/enterprises/acme/actions/runners/generate-jitconfig",
        json={"name": "ent-1", "runner_group_id": 1, "labels": ["x"]},
    )
    got = await gh.get("/enterprises/acme/actions/runner-groups/1/runners")
    assert [x["name"] for x in got.body["runners"]] == ["ent-1"]
    assert (await gh.get("/enterprises/acme/actions/runner-groups/424242/runners")).status == 404


# ---- runs and jobs -----------------------------------------------------------------------------


def _runs(sim: Simulator, n_jobs: int = 3) -> tuple[int, list[int]]:
    world = sim.world
    repo = world.repo_by_name("octo-org/app")
    world.enqueue_run(repo, [JobSpec(("self-hosted", "x"))], workflow_name="Lint")
    run = world.enqueue_run(
        repo, [JobSpec(("self-hosted", "gpu"), name=f"test-{i}", duration=60) for i in range(n_jobs)]
    )
    return run.id, list(run.job_ids)


@scenario("actions/list-workflow-runs-for-repo")
async def _list_runs(gh: GitHub, sim: Simulator, s: Setup) -> None:
    run_id, jobs = _runs(sim)
    scope = Scope("repo", "octo-org/app")
    reg = sim.world.register_runner(sim.world.issue_token(scope, "registration").token, scope, "r", ["gpu"])
    sim.world.poll(reg.runner.id)
    sim.world.start_job(reg.runner.id, jobs[0])
    queued = await gh.get("/repos/octo-org/app/actions/runs?status=queued")
    in_progress = await gh.get("/repos/octo-org/app/actions/runs?status=in_progress")
    assert [r["name"] for r in queued.body["workflow_runs"]] == ["Lint"]
    assert [r["id"] for r in in_progress.body["workflow_runs"]] == [run_id]
    everything = await gh.get("/repos/octo-org/app/actions/runs?per_page=1")
    assert (everything.body["total_count"], 'rel="last"' in (everything.header("Link") or "")) == (2, True)
    again = await gh.get(
        "/repos/octo-org/app/actions/runs?per_page=1",
        headers={"If-None-Match": everything.header("ETag") or ""},
    )
    assert again.status == 304
    assert (await gh.get("/repos/octo-org/nope/actions/runs")).status == 404
    assert (await gh.get("/repos/octo-org/app/actions/runs", token=s.org_only)).status == 403


@scenario("actions/get-workflow-run")
async def _get_run(gh: GitHub, sim: Simulator, s: Setup) -> None:
    run_id, _ = _runs(sim)
    got = await gh.get(f"/repos/octo-org/app/actions/runs/{run_id}")
    assert (got.status, got.body["status"], got.body["run_attempt"]) == (200, "queued", 1)
    assert (await gh.get(f"/repos/other-org/lib/actions/runs/{run_id}")).status == 404


@scenario("actions/cancel-workflow-run")
async def _cancel_run(gh: GitHub, sim: Simulator, s: Setup) -> None:
    run_id, jobs = _runs(sim)
    got = await gh.post(f"/repos/octo-org/app/actions/runs/{run_id}/cancel")
    assert got.status == 202
    assert {sim.world.jobs[j].conclusion for j in jobs} == {"cancelled"}
    assert (await gh.post(f"/repos/octo-org/app/actions/runs/{run_id}/cancel")).status == 409
    assert (await gh.post("/repos/octo-org/app/actions/runs/1/cancel")).status == 404


@scenario("actions/list-jobs-for-workflow-run")
async def _list_jobs(gh: GitHub, sim: Simulator, s: Setup) -> None:
    run_id, jobs = _runs(sim, n_jobs=3)
    page1 = await gh.get(f"/repos/octo-org/app/actions/runs/{run_id}/jobs?per_page=2")
    assert ([j["id"] for j in page1.body["jobs"]], page1.body["total_count"]) == (jobs[:2], 3)
    assert 'rel="next"' in (page1.header("Link") or "")
    sim.world.cancel_run(run_id)
    sim.world.rerun(run_id)
    latest = await gh.get(f"/repos/octo-org/app/actions/runs/{run_id}/jobs?filter=latest")
    everything = await gh.get(f"/repos/octo-org/app/actions/runs/{run_id}/jobs?filter=all")
    assert ({j["run_attempt"] for j in latest.body["jobs"]}, everything.body["total_count"]) == ({2}, 6)
    assert (await gh.get(f"/repos/octo-org/app/actions/runs/{run_id}/jobs?filter=bogus")).status == 422
    assert (await gh.get("/repos/octo-org/app/actions/runs/1/jobs")).status == 404


@scenario("actions/get-job-for-workflow-run")
async def _get_job(gh: GitHub, sim: Simulator, s: Setup) -> None:
    _, jobs = _runs(sim, n_jobs=1)
    world = sim.world
    scope = Scope("org", "octo-org")
    reg = world.register_runner(world.issue_token(scope, "registration").token, scope, "worker", ["gpu"])
    world.poll(reg.runner.id)
    queued = await gh.get(f"/repos/octo-org/app/actions/jobs/{jobs[0]}")
    assert (queued.body["status"], queued.body["runner_name"]) == ("queued", None)
    world.start_job(reg.runner.id, jobs[0])
    running = await gh.get(f"/repos/octo-org/app/actions/jobs/{jobs[0]}")
    assert (running.body["status"], running.body["runner_name"], running.body["runner_group_name"]) == (
        "in_progress",
        "worker",
        "Default",
    )
    world.complete_job(reg.runner.id, jobs[0], "failure")
    done = await gh.get(f"/repos/octo-org/app/actions/jobs/{jobs[0]}")
    assert (done.body["status"], done.body["conclusion"]) == ("completed", "failure")
    assert (await gh.get("/repos/octo-org/app/actions/jobs/12345")).status == 404


# ---- apps ----------------------------------------------------------------------------------------


def _jwt(sim: Simulator, s: Setup) -> str:
    return make_jwt(s, sim.world.now())


@scenario("apps/get-authenticated")
async def _get_app(gh: GitHub, sim: Simulator, s: Setup) -> None:
    got = await gh.get("/app", token=_jwt(sim, s))
    assert (got.status, got.body["id"], got.body["installations_count"]) == (200, s.app_id, 2)
    assert (await gh.get("/app", token=s.admin)).status == 401


@scenario("apps/list-installations")
async def _list_installations(gh: GitHub, sim: Simulator, s: Setup) -> None:
    got = await gh.get("/app/installations", token=_jwt(sim, s))
    assert [i["account"]["login"] for i in got.body] == ["octo-org", "other-org"]
    assert (await gh.get("/app/installations")).status == 401


@scenario("apps/get-installation")
async def _get_installation(gh: GitHub, sim: Simulator, s: Setup) -> None:
    got = await gh.get(f"/app/installations/{s.inst_octo}", token=_jwt(sim, s))
    assert (got.status, got.body["target_type"]) == (200, "Organization")
    assert (await gh.get("/app/installations/1", token=_jwt(sim, s))).status == 404


@scenario("apps/create-installation-access-token")
async def _installation_token(gh: GitHub, sim: Simulator, s: Setup) -> None:
    token = _jwt(sim, s)
    got = await gh.post(f"/app/installations/{s.inst_octo}/access_tokens", token=token)
    assert (got.status, got.body["token"][:4]) == (201, "ghs_")
    narrowed = await gh.post(
        f"/app/installations/{s.inst_octo}/access_tokens",
        token=token,
        json={"repositories": ["app"], "permissions": {"administration": "read"}},
    )
    assert (narrowed.status, [r["full_name"] for r in narrowed.body["repositories"]]) == (
        201,
        ["octo-org/app"],
    )
    too_much = await gh.post(
        f"/app/installations/{s.inst_octo}/access_tokens",
        token=token,
        json={"permissions": {"secrets": "write"}},
    )
    assert too_much.status == 422
    assert (await gh.post("/app/installations/1/access_tokens", token=token)).status == 404
    assert (await gh.post(f"/app/installations/{s.inst_octo}/access_tokens", token=s.admin)).status == 401
    expired = make_jwt(s, sim.world.now() - 3600)
    assert (await gh.post(f"/app/installations/{s.inst_octo}/access_tokens", token=expired)).status == 401
    sim.world.installations[s.inst_other].suspended = True
    assert (await gh.post(f"/app/installations/{s.inst_other}/access_tokens", token=token)).status == 403


@scenario("apps/get-repo-installation")
async def _repo_installation(gh: GitHub, sim: Simulator, s: Setup) -> None:
    got = await gh.get("/repos/octo-org/app/installation", token=_jwt(sim, s))
    assert (got.status, got.body["id"]) == (200, s.inst_octo)
    assert (await gh.get("/repos/solo-org/tool/installation", token=_jwt(sim, s))).status == 404


@scenario("apps/get-org-installation")
async def _org_installation(gh: GitHub, sim: Simulator, s: Setup) -> None:
    got = await gh.get("/orgs/other-org/installation", token=_jwt(sim, s))
    assert (got.status, got.body["id"]) == (200, s.inst_other)
    assert (await gh.get("/orgs/solo-org/installation", token=_jwt(sim, s))).status == 404


@scenario("apps/get-enterprise-installation")
async def _enterprise_installation(gh: GitHub, sim: Simulator, s: Setup) -> None:
    assert (await gh.get("/enterprises/acme/installation", token=_jwt(sim, s))).status == 404
    inst = sim.world.create_installation(s.app_id, "acme")
    got = await gh.get("/enterprises/acme/installation", token=_jwt(sim, s))
    assert (got.status, got.body["id"], got.body["target_type"]) == (200, inst.id, "Enterprise")


@scenario("rate-limit/get")
async def _rate_limit(gh: GitHub, sim: Simulator, s: Setup) -> None:
    await gh.get("/orgs/octo-org/actions/runners")
    got = await gh.get("/rate_limit")
    assert (got.status, got.body["resources"]["core"]["used"], got.body["rate"]["limit"]) == (200, 1, 5000)
    anonymous = await gh.get("/rate_limit", token="")
    assert (anonymous.status, anonymous.body["rate"]["limit"]) == (200, 60)


SCENARIOS.update(HOOK_SCENARIOS)
SCENARIOS.update(LISTING_SCENARIOS)


# ---- the tests -------------------------------------------------------------------------------------


def test_every_operation_has_a_scenario() -> None:
    implemented = {r.operation_id for r in ROUTES}
    assert implemented - set(SCENARIOS) == set(), "operations without a schema check"
    assert set(SCENARIOS) - implemented == set(), "scenarios for operations that are not routed"


@pytest.mark.parametrize("flavour", ["root", "ghes"])
def test_every_operation_exists_in_the_description(flavour: str) -> None:
    for route in ROUTES:
        if flavour == "ghes" and not route.ghes:
            continue
        doc = doc_for(route.operation_id, ghes_flavor=flavour == "ghes")
        method, path, _ = doc.ops[route.operation_id]
        assert (method, path) == (route.method, route.path), route.operation_id


@pytest.mark.parametrize(
    ("operation_id", "flavour"),
    sorted(
        (r.operation_id, flavour)
        for r in ROUTES
        for flavour in ("root", "ghes")
        if flavour == "root" or r.ghes
    ),
)
async def test_operation_conforms(
    operation_id: str, flavour: str, gh: GitHub, sim: Simulator, setup: Setup
) -> None:
    start = len(client_mod.CHECKED)
    await SCENARIOS[operation_id](gh.flavour(ghes=flavour == "ghes"), sim, setup)
    checked = {
        status for op, status, fl in client_mod.CHECKED[start:] if op == operation_id and fl == flavour
    }
    assert checked, f"the scenario never validated a response of {operation_id}"
    assert any(200 <= s < 300 for s in checked), f"no success answer of {operation_id} was checked: {checked}"
