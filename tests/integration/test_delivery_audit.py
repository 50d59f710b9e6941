"""The webhook delivery audit end to end: real API server, ghsim as GitHub, virtual runners.

An organization hook whose ``queued`` delivery for a job fails (ghsim's ``fail`` fault: no answer,
as when the endpoint is down): the audit reads the hook's deliveries, redelivers that one with its
GUID, and a runner runs the job; the safety-net poll is on but no round of it is needed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from ghsim import Simulator
from ghsim.entities import Scope as SimScope
from runnerd.controller.deliveryaudit import AuditSettings, DeliveryAudit, install_delivery_audit
from runnerd.controller.process import Controllers
from runnerd.reconcile.deliveryaudit import HookRef
from runnerd.web.server import Servers
from tests.integration.support import ORG, controller_process, pod_agent, seed
from tests.integration.test_autoscaling import RD, SECRET, WEBHOOK_HRA, Env, serving

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]

RUNS = "actions/list-workflow-runs-for-repo"


async def test_a_failed_queued_delivery_is_redelivered_and_its_job_runs(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    async with Simulator(tick_interval=0.05) as sim:
        seed(sim)
        pat = sim.world.create_pat("auditor", ["repo", "admin:org", "admin:org_hook"])
        hook = sim.world.create_hook("http://127.0.0.1:9/", scope=SimScope("org", ORG), secret=SECRET)
        audits: list[DeliveryAudit] = []

        def configure(controllers: Controllers) -> None:
            assert controllers.autoscaling is not None
            controllers.autoscaling.options.poll = True  # today's bound (60 s): no round within this test
            settings = AuditSettings(HookRef("org", ORG, hook_id=hook.id), interval=1.0)
            audits.append(install_delivery_audit(controllers, settings))

        async with (
            controller_process(
                cluster,
                sim,
                pat.token,
                namespace,
                configure=configure,
                registering_max_age=0.5,
                drain_grace=0.5,
            ) as controllers,
            Servers() as servers,
            pod_agent(cluster, sim, namespace),
        ):
            env = await serving(sim, controllers, servers, namespace, cluster)
            autoscaling = env.autoscaling
            hook.url = env.webhook_url
            await env.create(RD)
            await env.create(WEBHOOK_HRA)
            await wait_until("the HRA reconciled", lambda: (env.hra() or {}).get("status"))
            audit, poller = audits[0], autoscaling.poller
            await wait_until("the audit's first pass", lambda: audit.passes >= 1)
            await wait_until("the poll's first round", lambda: poller.polls >= 1)
            polls = poller.polls
            sim.world.set_hook_faults(hook.id, {"fail": True})
            before = Counter(sim.core.stats.by_endpoint)
            passes = audit.passes
            await a_failed_queued_delivery_served(sim, env, hook)
            assert audit.redeliveries >= 1
            attempts = sim.core.dispatcher.attempts
            redelivered = [a for a in attempts[hook.id] if a.redelivery]
            assert redelivered
            assert (
                redelivered[0].delivery.guid
                == next(a for a in attempts[hook.id] if a.status_code == 0).delivery.guid
            )
            assert (poller.polls, poller.recovered) == (polls, 0)  # no poll round found (or needed) it
            calls = Counter(sim.core.stats.by_endpoint)
            calls.subtract(before)
            listings = calls["orgs/list-webhook-deliveries"]
            assert listings <= audit.passes - passes + 2  # one page a pass (a pass may be in flight)
            assert calls[RUNS] == 0
            assert calls["orgs/redeliver-webhook-delivery"] == audit.redeliveries <= 2
            others = sum(calls.values()) - listings - calls["orgs/redeliver-webhook-delivery"]
            assert others <= 6, calls  # a JIT config and a few runner listings


async def a_failed_queued_delivery_served(sim: Simulator, env: Env, hook: Any) -> None:
    """Queue one job while ``hook``'s deliveries fail (no answer, as an endpoint that is down), wait
    until its ``queued`` delivery failed, let the hook deliver again, and wait until the job ran
    (only a redelivery or a poll can serve it)."""
    run = env.enqueue(1)
    attempts = sim.core.dispatcher.attempts
    await wait_until(
        "the queued delivery failed",
        lambda: any(a.status_code == 0 and a.delivery.action == "queued" for a in attempts.get(hook.id, ())),
    )
    sim.world.set_hook_faults(hook.id, {"fail": False})
    job = await wait_until(
        "the job done", lambda: (j := env.jobs(run)[0]).status == "completed" and j, within=40
    )
    assert job.conclusion == "success"
