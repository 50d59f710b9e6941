"""The delivery audit by default (``--webhook-audit auto``) end to end: real API server, ghsim as
GitHub, virtual runners, the controller configured from ``runnerd controller``'s flags without
``--webhook-audit``.

* A PAT that may read organization hooks: the audit finds the organization hook that delivers
  ``workflow_job`` (one listing), a ``queued`` delivery GitHub failed is redelivered, and its job gets
  a runner without a round of the safety-net poll.
* A PAT without ``admin:org_hook``: the audit is unavailable (one 403, said once) and the poll finds
  the job whose every delivery was lost, within its bound, as without the audit.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import pytest

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from ghsim import Simulator
from ghsim.entities import Scope as SimScope
from runnerd.cli import build_parser
from runnerd.cli_audit import configure_audit
from runnerd.controller.hookdiscovery import AutoAudit
from runnerd.controller.process import Controllers
from runnerd.web.server import Servers
from tests.integration.support import ORG, controller_process, pod_agent, seed
from tests.integration.test_autoscaling import RD, SECRET, WEBHOOK_HRA, Env, serving
from tests.integration.test_delivery_audit import a_failed_queued_delivery_served

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]

RUNS = "actions/list-workflow-runs-for-repo"


@contextlib.asynccontextmanager
async def default_audit(
    cluster: Cluster,
    namespace: str,
    sim: Simulator,
    token: str,
    flags: Sequence[str],
    *,
    poll_bound: float = 60.0,
    poll_calls: int = 1000,
) -> AsyncIterator[tuple[Env, AutoAudit]]:
    """A controller whose audit is configured from ``runnerd controller`` plus ``flags`` (no
    ``--webhook-audit``), with its webhook server, and the RunnerDeployment + webhook HRA created."""
    audits: list[AutoAudit] = []

    def configure(controllers: Controllers) -> None:
        autoscaling = controllers.autoscaling
        assert autoscaling is not None
        autoscaling.options.poll = True
        autoscaling.options.poll_bound = poll_bound
        autoscaling.options.poll_max_calls_per_hour = poll_calls
        audit = configure_audit(controllers, build_parser().parse_args(["controller", *flags]))
        assert isinstance(audit, AutoAudit)
        audits.append(audit)

    async with (
        controller_process(
            cluster, sim, token, namespace, configure=configure, registering_max_age=0.5, drain_grace=0.5
        ) as controllers,
        Servers() as servers,
        pod_agent(cluster, sim, namespace),
    ):
        env = await serving(sim, controllers, servers, namespace, cluster)
        await env.create(RD)
        await env.create(WEBHOOK_HRA)
        await wait_until("the HRA reconciled", lambda: (env.hra() or {}).get("status"))
        yield env, audits[0]


async def test_with_no_audit_flag_the_org_hook_is_found_and_a_failed_queued_delivery_redelivered(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    async with Simulator(tick_interval=0.05) as sim:
        seed(sim)
        pat = sim.world.create_pat("auditor", ["repo", "admin:org", "admin:org_hook"])
        hook = sim.world.create_hook("http://127.0.0.1:9/", scope=SimScope("org", ORG), secret=SECRET)
        sim.world.create_hook("http://127.0.0.1:9/", scope=SimScope("org", ORG), events=("push",))
        async with default_audit(cluster, namespace, sim, pat.token, ["--webhook-audit-interval=1s"]) as (
            env,
            audit,
        ):
            hook.url = env.webhook_url
            await wait_until("the hook found and read", lambda: audit.healthy() and audit.audits)
            assert [str(h) for h in audit.audits] == [f"org/{ORG}/{hook.id}"]
            poller = env.autoscaling.poller
            await wait_until("the poll's first round", lambda: poller.polls >= 1)
            polls = poller.polls
            sim.world.set_hook_faults(hook.id, {"fail": True})
            before = Counter(sim.core.stats.by_endpoint)
            await a_failed_queued_delivery_served(sim, env, hook)
            assert audit.redeliveries >= 1
            assert (poller.polls, poller.recovered) == (polls, 0)  # no poll round found (or needed) it
            calls = Counter(sim.core.stats.by_endpoint)
            assert calls["orgs/list-webhooks"] == 1  # found once
            assert calls["repos/list-webhooks"] == 0  # the org hook covers the repository
            calls.subtract(before)
            assert calls[RUNS] == 0
            assert calls["orgs/list-webhooks"] == 0  # a job costs no discovery


async def test_a_token_that_cannot_list_hooks_leaves_the_poll_to_serve_the_job_as_today(
    cluster: Cluster, crds: list[str], namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    bound = 3.0
    async with Simulator(tick_interval=0.05) as sim:
        token = seed(sim)  # repo, admin:org, manage_runners:enterprise: not admin:org_hook
        async with default_audit(cluster, namespace, sim, token, [], poll_bound=bound, poll_calls=36_000) as (
            env,
            audit,
        ):
            hook = sim.world.create_hook(
                env.webhook_url, scope=SimScope("org", ORG), secret=SECRET, faults={"drop": 1.0}
            )
            await wait_until(
                "discovery done", lambda: audit.state.scopes is not None and not audit.state.scopes.empty
            )
            assert not audit.healthy()
            assert audit.audits == {}
            assert f"/orgs/{ORG}/hooks (403)" in audit.reason
            poller = env.autoscaling.poller
            await wait_until("the poll covers the repository", lambda: poller.polls >= 1)
            queued_at = time.monotonic()
            run = env.enqueue(1)
            await wait_until("one runner wanted", lambda: env.rd_replicas() == 1, within=bound + 5)
            assert time.monotonic() - queued_at <= bound + 1.0
            job = await wait_until(
                "the job done", lambda: (j := env.jobs(run)[0]).status == "completed" and j
            )
            assert job.conclusion == "success"
            assert poller.recovered == 1
            assert all(d.status == "dropped" for d in sim.core.dispatcher.deliveries if d.hook_id == hook.id)
            assert sim.core.stats.by_endpoint["orgs/list-webhooks"] == 1  # tried once, not per job or poll
    assert token not in caplog.text
