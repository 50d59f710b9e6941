"""``workflow_job`` deliveries: payloads valid against the webhook schemas, signatures, faults."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from ghsim import JobSpec, Simulator
from ghsim.entities import Scope
from ghsim.webhooks import verify_signature_256

from .client import GitHub
from .conftest import Setup
from .schemas import validate_workflow_job_payload

SECRET = "It's a Secret to Everybody"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    url: str
    got: list[Received] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    status: int = 200
    gate: asyncio.Event | None = None  # when set up, answers wait for it (a slow receiver)

    async def wait_for(self, predicate: Callable[[list[Received]], bool]) -> None:
        async with asyncio.timeout(10), self.changed:
            await self.changed.wait_for(lambda: predicate(self.got))

    async def wait_count(self, n: int) -> list[Received]:
        await self.wait_for(lambda got: len(got) >= n)
        return self.got

    def actions(self) -> list[tuple[int, str]]:
        return [(r.payload["workflow_job"]["id"], r.payload["action"]) for r in self.got]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv: Receiver | None = None

    async def handle(request: web.Request) -> web.Response:
        assert recv is not None
        body = await request.read()
        async with recv.changed:
            recv.got.append(Received(dict(request.headers), body))
            recv.changed.notify_all()
        if recv.gate is not None:
            await recv.gate.wait()
        return web.Response(status=recv.status)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recv = Receiver(f"http://127.0.0.1:{runner.addresses[0][1]}/hook")
    try:
        yield recv
    finally:
        await runner.cleanup()


def online_runner(
    sim: Simulator, scope: Scope, labels: list[str], name: str = "r1", group: str | None = None
) -> int:
    world = sim.world
    reg = world.register_runner(
        world.issue_token(scope, "registration").token, scope, name, labels, group=group
    )
    world.poll(reg.runner.id)
    return reg.runner.id


def hook(sim: Simulator, url: str, secret: str | None = SECRET, **kw: Any) -> int:
    return sim.world.create_hook(url, secret=secret, **kw).id


async def test_lifecycle_payloads_validate_and_are_signed(
    sim: Simulator, setup: Setup, receiver: Receiver
) -> None:
    world = sim.world
    hook(sim, receiver.url, scope=Scope("org", "octo-org"))
    repo = world.repo_by_name("octo-org/app")
    run = world.enqueue_run(
        repo,
        [JobSpec(("self-hosted", "gpu"), name="train"), JobSpec(("self-hosted",), name="deploy", wait=0)],
    )
    train, deploy = run.job_ids
    runner_id = online_runner(sim, Scope("org", "octo-org"), ["gpu"], name="gpu-1", group="gpu")
    world.start_job(runner_id, train)
    world.complete_job(runner_id, train, "failure")
    world.approve(deploy)
    got = await receiver.wait_count(5)
    assert receiver.actions() == [
        (train, "queued"),
        (deploy, "waiting"),
        (train, "in_progress"),
        (train, "completed"),
        (deploy, "queued"),
    ]
    assert world.runners[runner_id].job_id == deploy  # the idle runner took it at once
    for r in got:
        validate_workflow_job_payload(r.payload)
        assert r.headers["X-GitHub-Event"] == "workflow_job"
        assert r.headers["Content-Type"] == "application/json"
        assert verify_signature_256(SECRET, r.body, r.headers["X-Hub-Signature-256"])
        assert not verify_signature_256("another secret", r.body, r.headers["X-Hub-Signature-256"])
        assert r.payload["repository"]["full_name"] == "octo-org/app"
        assert r.payload["organization"]["login"] == "octo-org"
        assert "enterprise" not in r.payload  # an organization hook
    assert len({r.headers["X-GitHub-Delivery"] for r in got}) == 5
    queued, in_progress, completed = got[0].payload, got[2].payload, got[3].payload
    assert [queued["workflow_job"][k] for k in ("status", "runner_id", "runner_name", "runner_group_id")] == [
        "queued",
        None,
        None,
        None,
    ]
    job = in_progress["workflow_job"]
    assert (job["runner_id"], job["runner_name"], job["runner_group_id"], job["runner_group_name"]) == (
        runner_id,
        "gpu-1",
        setup.gpu_group,
        "gpu",
    )
    assert job["labels"] == ["self-hosted", "gpu"]
    assert (completed["workflow_job"]["status"], completed["workflow_job"]["conclusion"]) == (
        "completed",
        "failure",
    )


async def test_tampered_body_fails_verification(sim: Simulator, setup: Setup, receiver: Receiver) -> None:
    hook(sim, receiver.url, scope=Scope("repo", "octo-org/app"))
    sim.world.enqueue_run(sim.world.repo_by_name("octo-org/app"), [JobSpec(("x",))])
    (r,) = await receiver.wait_count(1)
    assert r.headers["X-Hub-Signature-256"].startswith("sha256=")
    assert not verify_signature_256(SECRET, r.body + b" ", r.headers["X-Hub-Signature-256"])
    assert not verify_signature_256(SECRET, r.body, r.headers["X-Hub-Signature"])  # sha1= is not accepted


async def test_hook_levels(sim: Simulator, setup: Setup, receiver: Receiver) -> None:
    world = sim.world
    repo_hook = hook(sim, receiver.url, scope=Scope("repo", "octo-org/app"))
    other_repo_hook = hook(sim, receiver.url, scope=Scope("repo", "octo-org/site"))
    ent_hook = hook(sim, receiver.url, scope=Scope("enterprise", "acme"))
    app_hook = hook(sim, receiver.url, app_id=setup.app_id)
    solo_hook = hook(sim, receiver.url, scope=Scope("org", "solo-org"))
    world.enqueue_run(world.repo_by_name("octo-org/app"), [JobSpec(("x",))])
    await receiver.wait_count(3)
    await wait_settled(sim)
    got = receiver.got
    by_hook = {int(r.headers["X-GitHub-Hook-ID"]): r for r in got}
    assert len(got) == 3
    assert set(by_hook) == {repo_hook, ent_hook, app_hook}
    assert {other_repo_hook, solo_hook}.isdisjoint(by_hook)
    ent = by_hook[ent_hook]
    assert ent.payload["enterprise"]["slug"] == "acme"
    assert ent.headers["X-GitHub-Hook-Installation-Target-Type"] == "business"
    assert by_hook[app_hook].payload["installation"]["id"] == setup.inst_octo
    assert "installation" not in by_hook[repo_hook].payload
    for r in got:
        validate_workflow_job_payload(r.payload)


async def test_enterprise_runner_fields(sim: Simulator, setup: Setup, receiver: Receiver) -> None:
    hook(sim, receiver.url, scope=Scope("enterprise", "acme"))
    runner_id = online_runner(sim, Scope("enterprise", "acme"), ["big"], name="ent-runner", group="shared")
    run = sim.world.enqueue_run(sim.world.repo_by_name("octo-org/app"), [JobSpec(("big",))])
    sim.world.start_job(runner_id, run.job_ids[0])
    sim.world.complete_job(runner_id, run.job_ids[0])
    got = await receiver.wait_count(3)
    done = got[2].payload["workflow_job"]
    assert (done["runner_name"], done["runner_group_id"], done["conclusion"]) == (
        "ent-runner",
        setup.shared_group,
        "success",
    )
    for r in got:
        validate_workflow_job_payload(r.payload)


async def test_cancelled_job_payload(sim: Simulator, setup: Setup, receiver: Receiver) -> None:
    hook(sim, receiver.url, scope=Scope("org", "octo-org"))
    run = sim.world.enqueue_run(sim.world.repo_by_name("octo-org/app"), [JobSpec(("nobody",))])
    sim.world.cancel_run(run.id)
    got = await receiver.wait_count(2)
    assert [r.payload["action"] for r in got] == ["queued", "completed"]
    assert got[1].payload["workflow_job"]["conclusion"] == "cancelled"
    for r in got:
        validate_workflow_job_payload(r.payload)


# ---- fault injection ---------------------------------------------------------------------------


def enqueue_many(sim: Simulator, n: int) -> list[int]:
    repo = sim.world.repo_by_name("octo-org/app")
    return [sim.world.enqueue_run(repo, [JobSpec(("nobody",))]).job_ids[0] for _ in range(n)]


async def wait_settled(sim: Simulator) -> None:
    async with asyncio.timeout(10):
        await sim.core.dispatcher.drained()


async def test_drop_fraction_is_seeded(sim: Simulator, setup: Setup, receiver: Receiver) -> None:
    hook_id = hook(sim, receiver.url, scope=Scope("org", "octo-org"), faults={"drop": 0.5, "seed": 7})
    enqueue_many(sim, 40)
    await wait_settled(sim)
    statuses = [d.status for d in sim.core.dispatcher.deliveries if d.hook_id == hook_id]
    assert statuses.count("dropped") + statuses.count("delivered") == 40
    assert 5 < statuses.count("dropped") < 35
    assert len(receiver.got) == statuses.count("delivered")
    # the same seed drops the same deliveries
    import random

    rng = random.Random(7)
    assert [s == "dropped" for s in statuses] == [rng.random() < 0.5 for _ in range(40)]


async def test_duplicate(sim: Simulator, setup: Setup, receiver: Receiver) -> None:
    sim.core.dispatcher.parallelism = 1  # one after another: the duplicate follows its original
    hook(sim, receiver.url, scope=Scope("org", "octo-org"), faults={"duplicate": 1.0})
    enqueue_many(sim, 2)
    got = await receiver.wait_count(4)
    guids = [r.headers["X-GitHub-Delivery"] for r in got]
    assert guids[0] == guids[1]
    assert guids[2] == guids[3]
    assert guids[0] != guids[2]


async def test_reorder(sim: Simulator, setup: Setup, receiver: Receiver) -> None:
    sim.core.dispatcher.parallelism = 1
    hook(sim, receiver.url, scope=Scope("org", "octo-org"), faults={"reorder": 1.0})
    jobs = enqueue_many(sim, 4)
    await receiver.wait_count(4)
    assert [job for job, _ in receiver.actions()] == [jobs[1], jobs[0], jobs[3], jobs[2]]


async def test_a_burst_is_delivered_concurrently_with_bounded_parallelism(
    sim: Simulator, setup: Setup, receiver: Receiver
) -> None:
    receiver.gate = asyncio.Event()  # nothing is answered until the gate opens
    hook(sim, receiver.url, scope=Scope("org", "octo-org"))
    enqueue_many(sim, 40)
    await receiver.wait_count(16)  # 16 deliveries in flight at once, none answered yet
    assert len(receiver.got) == 16 == sim.core.dispatcher.parallelism
    receiver.gate.set()
    await receiver.wait_count(40)
    await sim.core.dispatcher.drained()
    assert len(receiver.got) == 40


async def test_delay(sim: Simulator, setup: Setup, receiver: Receiver) -> None:
    hook(sim, receiver.url, scope=Scope("org", "octo-org"), faults={"delay_s": 0.3})
    loop = asyncio.get_running_loop()
    start = loop.time()
    enqueue_many(sim, 1)
    await receiver.wait_count(1)
    assert loop.time() - start >= 0.3


async def test_fail_every_delivery_then_redeliver(sim: Simulator, setup: Setup, receiver: Receiver) -> None:
    hook_id = hook(sim, receiver.url, scope=Scope("org", "octo-org"), faults={"fail": True})
    enqueue_many(sim, 2)
    await wait_settled(sim)
    failed = [d for d in sim.core.dispatcher.deliveries if d.hook_id == hook_id]
    assert [d.status for d in failed] == ["failed", "failed"]
    assert receiver.got == []
    sim.world.set_hook_faults(hook_id, {"fail": False})
    again = sim.core.dispatcher.redeliver(failed[0].guid)
    (r,) = await receiver.wait_count(1)
    assert r.headers["X-GitHub-Delivery"] == again.guid
    assert r.body == failed[0].body


async def test_api_redelivery_sends_the_same_guid_and_payload(
    sim: Simulator, setup: Setup, receiver: Receiver, gh: GitHub
) -> None:
    hook_id = hook(sim, receiver.url, scope=Scope("org", "octo-org"), faults={"fail": True})
    enqueue_many(sim, 1)
    await wait_settled(sim)
    token = sim.world.create_pat("hooks", ["admin:org_hook"]).token
    base = f"/orgs/octo-org/hooks/{hook_id}/deliveries"
    [failed] = (await gh.get(base, token=token)).body
    sim.world.set_hook_faults(hook_id, {"fail": False})
    assert (await gh.post(f"{base}/{failed['id']}/attempts", token=token)).status == 202
    (r,) = await receiver.wait_count(1)
    original = next(d for d in sim.core.dispatcher.deliveries if d.guid == failed["guid"])
    assert (r.headers["X-GitHub-Delivery"], r.body) == (failed["guid"], original.body)
    await wait_settled(sim)
    assert [(d["guid"], d["redelivery"]) for d in (await gh.get(base, token=token)).body] == [
        (failed["guid"], True),
        (failed["guid"], False),
    ]


@pytest.mark.parametrize(
    ("granted", "listed", "redelivered"),
    [(None, 403, 403), ("read", 200, 403), ("write", 200, 202)],
)
async def test_installation_tokens_need_the_organization_hooks_permission(
    sim: Simulator,
    setup: Setup,
    receiver: Receiver,
    gh: GitHub,
    granted: str | None,
    listed: int,
    redelivered: int,
) -> None:
    hook_id = hook(sim, receiver.url, scope=Scope("org", "octo-org"))
    enqueue_many(sim, 1)
    await wait_settled(sim)
    inst = sim.world.installations[setup.inst_octo]
    if granted is not None:
        inst.permissions["organization_hooks"] = granted
    token = sim.world.issue_installation_token(inst.id).token
    base = f"/orgs/octo-org/hooks/{hook_id}/deliveries"
    got = await gh.get(base, token=token)
    assert got.status == listed
    [attempt] = sim.core.dispatcher.attempts[hook_id]
    assert (await gh.post(f"{base}/{attempt.id}/attempts", token=token)).status == redelivered


async def test_receiver_errors_are_recorded(sim: Simulator, setup: Setup, receiver: Receiver) -> None:
    receiver.status = 500
    hook_id = hook(sim, receiver.url, scope=Scope("org", "octo-org"))
    enqueue_many(sim, 1)
    await receiver.wait_count(1)
    await wait_settled(sim)
    (d,) = [d for d in sim.core.dispatcher.deliveries if d.hook_id == hook_id]
    assert (d.status, d.status_code) == ("failed", 500)


async def test_admin_api_for_hooks(sim: Simulator, setup: Setup, receiver: Receiver) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        created = await http.post(
            sim.base_url + "/_sim/hooks",
            json={"org": "octo-org", "url": receiver.url, "secret": SECRET, "faults": {"duplicate": 1.0}},
        )
        hook_id = (await created.json())["id"]
        patched = await http.patch(sim.base_url + f"/_sim/hooks/{hook_id}", json={"duplicate": 0.0})
        assert (await patched.json())["faults"]["duplicate"] == 0.0
        enqueue_many(sim, 1)
        await receiver.wait_count(1)
        await wait_settled(sim)
        listed = await http.get(sim.base_url + f"/_sim/hooks/{hook_id}/deliveries?include=payload")
        (delivery,) = (await listed.json())["deliveries"]
        assert (delivery["status"], delivery["payload"]["action"]) == ("delivered", "queued")
    assert len(receiver.got) == 1
