"""HRA autoscaling end to end: real API server, ghsim as GitHub (with its webhooks), virtual runners.

Each test runs the controller in-process with the webhook server on 127.0.0.1, a ghsim hook that
posts ``workflow_job`` deliveries to it (with fault injection where the test needs it), and the pod
agent playing the runners. Sync periods and bounds are short so the file stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from ghsim import JobSpec, PrimaryLimits, SimConfig, Simulator
from ghsim.entities import Scope as SimScope
from ghsim.webhooks import signature_256
from runnerd.controller.common import HORIZONTAL_RUNNER_AUTOSCALERS, RUNNER_DEPLOYMENTS
from runnerd.controller.process import Autoscaling, Controllers
from runnerd.github import GitHubClient
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import CONFIGMAPS
from runnerd.reconcile.journal import HRA_LABEL, decode
from runnerd.reconcile.reservations import parse_job_reservation
from runnerd.runtime import InformerEvent, Key
from runnerd.web.server import Address, Servers
from tests.integration.support import (
    ARTICLE_HRA_AS_WRITTEN,
    ARTICLE_RD_AS_WRITTEN,
    article,
    controller_process,
    pod_agent,
    seed,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(60)]

REPO = "octo-org/app"
SECRET = "webhook-secret-for-tests"
LABELS = ("self-hosted", "arc-runner")

RD = """
apiVersion: actions.summerwind.dev/v1alpha1
kind: RunnerDeployment
metadata:
  name: example-runner-deployment
spec:
  replicas: 0
  template:
    spec:
      repository: octo-org/app
      labels:
        - self-hosted
        - arc-runner
"""

WEBHOOK_HRA = """
apiVersion: actions.summerwind.dev/v1alpha1
kind: HorizontalRunnerAutoscaler
metadata:
  name: example-hra
spec:
  scaleTargetRef:
    name: example-runner-deployment
  minReplicas: 0
  maxReplicas: 5
  scaleDownDelaySecondsAfterScaleOut: 1
  scaleUpTriggers:
    - githubEvent:
        workflowJob: {}
      duration: 10m
"""


@dataclass
class Env:
    sim: Simulator
    kube: KubeClient
    github: GitHubClient
    controllers: Controllers
    autoscaling: Autoscaling
    namespace: str
    cluster: Cluster
    webhook_url: str
    replicas_seen: list[int] = field(default_factory=list)

    @property
    def world(self) -> Any:
        return self.sim.world

    async def create(self, manifest: str, **changes: Any) -> dict[str, Any]:
        obj = yaml.safe_load(manifest)
        obj["metadata"]["namespace"] = self.namespace
        for path, value in changes.items():
            node = obj
            *parents, leaf = path.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
        resource = (
            HORIZONTAL_RUNNER_AUTOSCALERS
            if obj["kind"] == "HorizontalRunnerAutoscaler"
            else RUNNER_DEPLOYMENTS
        )
        return await self.kube.create(resource, obj, namespace=self.namespace)

    def hook(self, secret: str = SECRET, **faults: Any) -> Any:
        return self.world.create_hook(
            self.webhook_url, scope=SimScope("repo", REPO), secret=secret, faults=faults or None
        )

    def enqueue(self, n: int = 1, duration: float = 0.3) -> Any:
        specs = [JobSpec(LABELS, f"job-{i}", duration) for i in range(n)]
        return self.world.enqueue_run(self.world.repo_by_name(REPO), specs)

    def jobs(self, run: Any) -> list[Any]:
        return [self.world.jobs[j] for j in run.job_ids]

    def hra(self, name: str = "example-hra") -> dict[str, Any] | None:
        return self.autoscaling.hras.store.get(Key(self.namespace, name))

    def rd_replicas(self, name: str = "example-runner-deployment") -> int | None:
        obj = self.controllers.informers["runnerdeployments"].store.get(Key(self.namespace, name))
        if obj is None:
            return None
        value = (obj.get("spec") or {}).get("replicas")
        return 1 if value is None else int(value)


async def serving(
    sim: Simulator, controllers: Controllers, servers: Servers, namespace: str, cluster: Cluster
) -> Env:
    """Start the webhook server of ``controllers``' autoscaling on ``servers`` (an ephemeral port);
    the :class:`Env` around them."""
    autoscaling = controllers.autoscaling
    assert autoscaling is not None
    host, port = await servers.start(
        "webhook", autoscaling.webhook_server(SECRET).app(), Address("127.0.0.1", 0)
    )
    url = f"http://{host}:{port}/webhook"
    return Env(sim, controllers.kube, controllers.github, controllers, autoscaling, namespace, cluster, url)


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or ():
        if c.get("type") == type_:
            return dict(c)
    return None


@contextlib.asynccontextmanager
async def running(
    cluster: Cluster,
    namespace: str,
    *,
    poll: bool = False,
    poll_bound: float = 60.0,
    poll_calls: int = 1000,
    sync: float = 5.0,
    scale_down_delay: float = 600.0,
    sim_config: SimConfig | None = None,
    max_rate_limit_wait: float = 30.0,
) -> AsyncIterator[Env]:
    env_box: list[Env] = []

    def seen(event: InformerEvent) -> None:
        if env_box and event.obj["metadata"]["namespace"] == namespace:
            value = (event.obj.get("spec") or {}).get("replicas")
            env_box[0].replicas_seen.append(1 if value is None else int(value))

    def configure(controllers: Controllers) -> None:
        autoscaling = controllers.autoscaling
        assert autoscaling is not None
        autoscaling.options.poll = poll
        autoscaling.options.poll_bound = poll_bound
        autoscaling.options.poll_max_calls_per_hour = poll_calls
        autoscaling.options.default_scale_down_delay = scale_down_delay
        controllers.informers["runnerdeployments"].add_handler(seen)

    async with (
        Simulator(tick_interval=0.05, config=sim_config) as sim,
        controller_process(
            cluster,
            sim,
            seed(sim),
            namespace,
            configure=configure,
            github={"max_rate_limit_wait_s": max_rate_limit_wait, "rate_limit_jitter_s": 0.1},
            sync_period=sync,
            registering_max_age=0.5,
            drain_grace=0.5,
        ) as controllers,
        Servers() as servers,
        pod_agent(cluster, sim, namespace),
    ):
        env = await serving(sim, controllers, servers, namespace, cluster)
        env_box.append(env)
        yield env


ARTICLE_HRA_1 = ARTICLE_HRA_AS_WRITTEN[: ARTICLE_HRA_AS_WRITTEN.index("  metrics:")]
"""The article's first HorizontalRunnerAutoscaler: the second without its metric."""


@pytest.mark.timeout(90)
async def test_article_hra_manifests_apply_as_written_and_scale(
    cluster: Cluster, crds: list[str], namespace: str, tmp_path: Path
) -> None:
    async with running(cluster, namespace, sync=1.0, scale_down_delay=1.0) as env:
        for i, text in enumerate((ARTICLE_RD_AS_WRITTEN, ARTICLE_HRA_1)):
            path = tmp_path / f"m{i}.yaml"
            path.write_text(article(text, namespace))
            cluster.kubectl("apply", "-f", str(path))
        # minReplicas 0 and no metrics: the article's RunnerDeployment (replicas: 1) goes to zero
        await wait_until("the RunnerDeployment scaled to 0", lambda: env.rd_replicas() == 0)
        hra = await wait_until(
            "HRA status",
            lambda: (h := env.hra()) and (h.get("status") or {}).get("desiredReplicas") == 0 and h,
        )
        assert condition(hra, "ScalingActive")["status"] == "True"  # type: ignore[index]

        path = tmp_path / "hra2.yaml"
        path.write_text(article(ARTICLE_HRA_AS_WRITTEN, namespace))
        cluster.kubectl("apply", "-f", str(path))
        run = env.enqueue(2, duration=0.5)
        await wait_until("2 runners wanted", lambda: env.rd_replicas() == 2)
        await wait_until(
            "both jobs done", lambda: all(j.status == "completed" for j in env.jobs(run)), within=30
        )
        assert [j.conclusion for j in env.jobs(run)] == ["success", "success"]
        await wait_until("back to zero", lambda: env.rd_replicas() == 0, within=30)
        metrics = env.autoscaling.metrics
        labels = {"horizontalrunnerautoscaler": "example-hra", "namespace": namespace}
        assert metrics.sample("horizontalrunnerautoscaler_spec_max_replicas", labels) == 5
        assert metrics.sample(
            "runnerd_github_api_calls_total",
            {"endpoint": "GET /repos/{owner}/{repo}/actions/runs", "status": "200"},
        )


async def test_scale_from_zero_on_a_webhook(cluster: Cluster, crds: list[str], namespace: str) -> None:
    async with running(cluster, namespace) as env:
        await env.create(RD)
        await env.create(WEBHOOK_HRA)
        await wait_until("the HRA reconciled", lambda: (env.hra() or {}).get("status"))
        env.hook()
        started = time.monotonic()
        run = env.enqueue(1)
        job_id = run.job_ids[0]
        await wait_until("a reservation for the job", lambda: _reserved(env.hra(), job_id))
        await wait_until("one runner wanted", lambda: env.rd_replicas() == 1, within=5)
        job = await wait_until(
            "the job done", lambda: (j := env.jobs(run)[0]).status == "completed" and j, within=20
        )
        assert job.conclusion == "success"
        assert time.monotonic() - started < 20
        assert env.autoscaling.pod_latency.samples, "webhook -> pod create was measured"
        assert env.autoscaling.pod_latency.samples[0] < 5
        # the completed delivery releases the reservation; after the 1 s delay the pool goes back to 0
        await wait_until("back to zero", lambda: env.rd_replicas() == 0, within=15)
        assert max(env.replicas_seen) == 1


def _reserved(hra: dict[str, Any] | None, job_id: int) -> bool:
    for r in ((hra or {}).get("spec") or {}).get("capacityReservations") or ():
        parsed = parse_job_reservation(r.get("name"))
        if parsed is not None and parsed[0] == job_id and r.get("replicas") == 1:
            return True
    return False


async def test_scale_from_zero_with_every_webhook_dropped(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    bound = 3.0
    # 36,000 calls/hour: the bound, not the budget, sets the interval (2.25 s)
    async with running(cluster, namespace, poll=True, poll_bound=bound, poll_calls=36_000) as env:
        await env.create(RD)
        await env.create(WEBHOOK_HRA)
        hook = env.hook(drop=1.0)
        await wait_until("the poll covers the repository", lambda: env.autoscaling.poller.polls >= 1)
        queued_at = time.monotonic()
        run = env.enqueue(1)
        await wait_until("one runner wanted", lambda: env.rd_replicas() == 1, within=bound + 5)
        assert time.monotonic() - queued_at <= bound + 1.0
        job = await wait_until("the job done", lambda: (j := env.jobs(run)[0]).status == "completed" and j)
        assert job.conclusion == "success"
        assert env.autoscaling.poller.recovered == 1
        deliveries = [d for d in env.sim.core.dispatcher.deliveries if d.hook_id == hook.id]
        assert deliveries
        assert all(d.status == "dropped" for d in deliveries)
        # the run finished: the poll releases the reservation it made
        await wait_until("back to zero", lambda: env.rd_replicas() == 0, within=15)


async def test_duplicated_and_reordered_deliveries_never_overscale(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    async with running(cluster, namespace) as env:
        await env.create(RD)
        await env.create(WEBHOOK_HRA, **{"spec.maxReplicas": 10})
        await wait_until("the HRA reconciled", lambda: (env.hra() or {}).get("status"))
        hook = env.hook(duplicate=1.0, reorder=0.5, seed=7)
        run = env.enqueue(3, duration=1.5)
        await wait_until(
            "all jobs done", lambda: all(j.status == "completed" for j in env.jobs(run)), within=30
        )
        await env.sim.core.dispatcher.drained()
        deliveries = [d for d in env.sim.core.dispatcher.deliveries if d.hook_id == hook.id]
        assert any(d.duplicate for d in deliveries)
        assert any(d.reordered for d in deliveries)
        duplicates = env.autoscaling.metrics.sample(
            "runnerd_webhook_deliveries_total", {"event": "workflow_job", "outcome": "duplicate"}
        )
        assert duplicates
        assert duplicates >= 3
        await wait_until("back to zero", lambda: env.rd_replicas() == 0, within=15)
        assert max(env.replicas_seen) <= 3


async def test_scheduled_override_window_raises_the_minimum_and_ends(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    async with running(cluster, namespace) as env:
        await env.create(RD)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        start, end = now + dt.timedelta(seconds=5), now + dt.timedelta(seconds=9)
        override = {
            "startTime": start.isoformat().replace("+00:00", "Z"),
            "endTime": end.isoformat().replace("+00:00", "Z"),
            "minReplicas": 2,
        }
        await env.create(WEBHOOK_HRA, **{"spec.scheduledOverrides": [override]})
        hra = await wait_until(
            "a schedule summary",
            lambda: (h := env.hra()) and (h.get("status") or {}).get("scheduledOverridesSummary") and h,
        )
        assert "min=2" in hra["status"]["scheduledOverridesSummary"]
        assert env.rd_replicas() == 0
        await wait_until("the window raises the minimum to 2", lambda: env.rd_replicas() == 2, within=10)
        assert dt.datetime.now(dt.UTC) >= start - dt.timedelta(seconds=0.5)
        await wait_until("the window ends", lambda: env.rd_replicas() == 0, within=10)
        assert dt.datetime.now(dt.UTC) >= end


async def test_scale_down_delay_holds(cluster: Cluster, crds: list[str], namespace: str) -> None:
    async with running(cluster, namespace) as env:
        await env.create(RD)
        await env.create(WEBHOOK_HRA, **{"spec.scaleDownDelaySecondsAfterScaleOut": 4})
        await wait_until("the HRA reconciled", lambda: (env.hra() or {}).get("status"))
        env.hook()
        run = env.enqueue(1, duration=0.2)
        await wait_until("one runner wanted", lambda: env.rd_replicas() == 1)
        await wait_until("the job done", lambda: env.jobs(run)[0].status == "completed")
        hra = await wait_until(
            "the scale-down held",
            lambda: (
                (c := condition(env.hra(), "AbleToScale"))
                and c["reason"] == "ScaleDownStabilized"
                and env.hra()
            ),
        )
        scaled_out = dt.datetime.fromisoformat(hra["status"]["lastSuccessfulScaleOutTime"])
        assert env.rd_replicas() == 1
        await wait_until("the delay over", lambda: env.rd_replicas() == 0, within=10)
        assert dt.datetime.now(dt.UTC) >= scaled_out + dt.timedelta(seconds=4)


async def test_bad_signature_gets_401_and_nothing_scales(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    async with running(cluster, namespace) as env:
        await env.create(RD)
        await env.create(WEBHOOK_HRA)
        await wait_until("the HRA reconciled", lambda: (env.hra() or {}).get("status"))
        hook = env.hook(secret="not-the-secret")
        run = env.enqueue(1)
        await env.sim.core.dispatcher.drained()
        deliveries = [d for d in env.sim.core.dispatcher.deliveries if d.hook_id == hook.id]
        assert deliveries
        assert all(d.status_code == 401 for d in deliveries)
        # a hand-made delivery with a wrong signature and one without any
        body = json.dumps({"action": "queued"}).encode()
        async with aiohttp.ClientSession() as session:
            for headers in (
                {"X-Hub-Signature-256": signature_256("wrong", body)},
                {},
            ):
                async with session.post(
                    env.webhook_url, data=body, headers={"X-GitHub-Event": "workflow_job", **headers}
                ) as resp:
                    assert resp.status == 401
        # nothing was reserved; a reconcile after all that keeps zero runners
        ctl = env.autoscaling.hra_controller
        before = ctl.reconciles
        ctl.enqueue(Key(namespace, "example-hra"))
        await wait_until("another reconcile", lambda: ctl.reconciles > before)
        hra = env.hra()
        assert hra is not None
        assert not (hra.get("spec") or {}).get("capacityReservations")
        assert env.rd_replicas() == 0
        assert env.jobs(run)[0].status == "queued"


async def test_rate_limited_github_slows_polling_without_losing_jobs(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    window = 4.0
    config = SimConfig(primary=PrimaryLimits(pat=10, window_s=window))
    async with running(
        cluster,
        namespace,
        poll=True,
        poll_bound=1.0,
        poll_calls=36_000,
        sim_config=config,
        max_rate_limit_wait=0.2,
    ) as env:
        await env.create(RD)
        await env.create(WEBHOOK_HRA)
        env.hook(drop=1.0)  # only the poll can find the jobs
        budget_false: list[str] = []

        def watch(event: InformerEvent) -> None:
            c = condition(event.obj, "GitHubAPIBudget")
            if c is not None and c["status"] == "False":
                budget_false.append(c["reason"])

        env.autoscaling.hras.add_handler(watch)
        poller = env.autoscaling.poller
        started = time.monotonic()
        first = env.enqueue(1, duration=0.2)
        await wait_until("the first job done", lambda: env.jobs(first)[0].status == "completed", within=20)
        # the poll sees the run finish (once the limit lets it) and releases the reservation
        await wait_until("back to zero", lambda: env.rd_replicas() == 0, within=3 * window)
        await wait_until("no runner left in GitHub", lambda: not env.world.runners, within=10)
        # ten calls per window cannot keep up with a 0.75 s poll (and the poll leaves the last ten to runner
        # registration and removal): it is held back
        await wait_until(
            "the poll held back by the rate limit",
            lambda: poller.rate_limited + poller.deferred >= 1,
            within=2 * window,
        )
        second = env.enqueue(1, duration=0.2)
        await wait_until("the second job done", lambda: env.jobs(second)[0].status == "completed", within=20)
        assert [env.jobs(r)[0].conclusion for r in (first, second)] == ["success", "success"]
        assert poller.recovered == 2
        await wait_until("the HRA shows the budget limiting it", lambda: budget_false, within=10)
        assert set(budget_false) <= {"RateLimited", "PollIntervalStretched", "PollBudgetSpent"}
        # ... and the poll never hammered GitHub: about one refused runs-list call per window at most
        stats = env.github.stats.snapshot()
        refused = sum(
            n
            for (endpoint, status), n in stats.calls.items()
            if endpoint == "GET /repos/{owner}/{repo}/actions/runs" and status in ("403", "429")
        )
        assert refused <= (time.monotonic() - started) / window + 1
        assert poller.polls <= (time.monotonic() - started) / 0.75 + 1


def _queued_payload(job_id: int) -> bytes:
    return json.dumps(
        {
            "action": "queued",
            "workflow_job": {"id": job_id, "run_id": 1, "status": "queued", "labels": list(LABELS)},
            "repository": {
                "name": "app",
                "full_name": REPO,
                "owner": {"login": "octo-org", "type": "Organization"},
            },
            "organization": {"login": "octo-org"},
        }
    ).encode()


@pytest.mark.timeout(100)
@pytest.mark.parametrize("journal", [True, False], ids=["journal", "no-journal"])
async def test_standalone_webhook_server_process(
    cluster: Cluster, crds: list[str], namespace: str, tmp_path: Path, journal: bool
) -> None:
    """``runnerd webhook-server`` (ARC's separate Deployment) writes the reservation the controller
    reads: by default a journal entry, answered once created, that the leading controller folds into
    the HRA; with ``--no-reservation-journal`` the HRA's list itself, before the answer."""
    from devcluster.cluster import free_port

    kube = await KubeClient.connect(str(cluster.kubeconfig))
    webhook_port, metrics_port = free_port(), free_port()
    with (tmp_path / "webhook-server.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runnerd.cli",
            "webhook-server",
            f"--kubeconfig={cluster.kubeconfig}",
            f"--watch-namespace={namespace}",
            f"--webhook-addr=127.0.0.1:{webhook_port}",
            f"--metrics-addr=127.0.0.1:{metrics_port}",
            *([] if journal else ["--no-reservation-journal"]),
            env={**os.environ, "GITHUB_WEBHOOK_SECRET_TOKEN": SECRET, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
    try:
        for manifest in (RD, WEBHOOK_HRA):
            obj = yaml.safe_load(manifest)
            obj["metadata"]["namespace"] = namespace
            resource = (
                HORIZONTAL_RUNNER_AUTOSCALERS
                if obj["kind"] == "HorizontalRunnerAutoscaler"
                else RUNNER_DEPLOYMENTS
            )
            await kube.create(resource, obj, namespace=namespace)
        base, metrics = f"http://127.0.0.1:{webhook_port}", f"http://127.0.0.1:{metrics_port}"
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(metrics + "/readyz") as resp:
                        return resp.status == 200
                return False

            await wait_until("the webhook server ready", ready, within=60)
            body = _queued_payload(4242)
            headers = {"X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": "d-1"}
            async with session.post(base + "/", data=body, headers=headers) as resp:
                assert resp.status == 401

            async def post() -> tuple[int, str]:
                signed = {**headers, "X-Hub-Signature-256": signature_256(SECRET, body)}
                async with session.post(base + "/", data=body, headers=signed) as resp:
                    return resp.status, await resp.text()

            # the HRA may not be in the server's cache yet right after it was created
            status, text = await wait_until("a reservation", lambda: _scaled(post()), within=10)
            assert status == 200
            assert "scaled" in text
            if journal:
                await _folded_by_a_controller(cluster, kube, namespace, 4242)
            else:
                hra = await kube.get(HORIZONTAL_RUNNER_AUTOSCALERS, "example-hra", namespace=namespace)
                assert _reserved(hra, 4242)
            async with session.get(metrics + "/metrics") as resp:
                text = await resp.text()
            assert 'runnerd_webhook_deliveries_total{event="workflow_job",outcome="scaled"} 1.0' in text
            assert (
                'runnerd_webhook_deliveries_total{event="workflow_job",outcome="bad_signature"} 1.0' in text
            )
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await kube.close()
    assert SECRET not in (tmp_path / "webhook-server.log").read_text()


async def _folded_by_a_controller(cluster: Cluster, kube: KubeClient, namespace: str, job_id: int) -> None:
    """The webhook server's journal entry was durable when it answered; a controller (the leader)
    folds it into the HRA's list and deletes it."""
    hra = await kube.get(HORIZONTAL_RUNNER_AUTOSCALERS, "example-hra", namespace=namespace)
    assert not _reserved(hra, job_id)  # nothing folds it yet: no controller runs
    entries = (await kube.list(CONFIGMAPS, namespace=namespace, label_selector=f"{HRA_LABEL}=true")).items
    assert [op.job_id for e in entries if (entry := decode(e)) is not None for op in entry.ops] == [job_id]
    async with Simulator() as sim, controller_process(cluster, sim, seed(sim), namespace):

        async def folded() -> bool:
            hra = await kube.get(HORIZONTAL_RUNNER_AUTOSCALERS, "example-hra", namespace=namespace)
            listed = await kube.list(CONFIGMAPS, namespace=namespace, label_selector=f"{HRA_LABEL}=true")
            return _reserved(hra, job_id) and not listed.items

        await wait_until("the journal folded into the HRA and collected", folded, within=20)


async def _scaled(post: Any) -> tuple[int, str] | None:
    status, text = await post
    return (status, text) if "scaled" in text else None


@pytest.mark.timeout(100)
async def test_controller_process_serves_webhook_health_and_metrics(
    cluster: Cluster, crds: list[str], namespace: str, tmp_path: Path
) -> None:
    """``runnerd controller --webhook-addr … --metrics-addr … --health-probe-bind-address …``."""
    from devcluster.cluster import free_port

    async with Simulator() as sim:
        sim.world.create_org("octo-org")
        token = sim.world.create_pat("admin").token
        webhook, metrics, health = free_port(), free_port(), free_port()
        log_path = tmp_path / "controller.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "runnerd.cli",
                "controller",
                f"--kubeconfig={cluster.kubeconfig}",
                f"--watch-namespace={namespace}",
                f"--github-url={sim.base_url}",
                f"--webhook-addr=127.0.0.1:{webhook}",
                f"--metrics-addr=127.0.0.1:{metrics}",
                f"--health-probe-bind-address=127.0.0.1:{health}",
                env={**os.environ, "GITHUB_TOKEN": token, "GITHUB_WEBHOOK_SECRET_TOKEN": SECRET},
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
            )
        try:
            async with aiohttp.ClientSession() as session:

                async def ready() -> bool:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"http://127.0.0.1:{health}/readyz") as resp:
                            return resp.status == 200
                    return False

                await wait_until("the controller ready", ready, within=60)
                async with session.get(f"http://127.0.0.1:{health}/healthz") as resp:
                    assert resp.status == 200
                async with session.get(f"http://127.0.0.1:{metrics}/metrics") as resp:
                    assert "# TYPE runnerd_webhook_to_pod_create_seconds histogram" in await resp.text()
                body = b'{"zen": "Keep it logically awesome."}'
                headers = {"X-GitHub-Event": "ping", "X-Hub-Signature-256": signature_256(SECRET, body)}
                async with session.post(
                    f"http://127.0.0.1:{webhook}/webhook", data=body, headers=headers
                ) as resp:
                    assert (resp.status, await resp.text()) == (200, "pong")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = log_path.read_text(errors="replace")
    assert SECRET not in text
    assert token not in text
