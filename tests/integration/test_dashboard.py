"""The dashboard in a real browser: the controller in-process (real API server, ghsim as GitHub with
its webhooks, virtual runners) runs a few CPU and GPU jobs; headless Chromium loads the page, and
every number on it (each element with ``data-metric``) must be what ``/metrics`` says. A screenshot
is saved under ``artifacts/``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from ghsim import JobSpec, Simulator
from ghsim.entities import Scope as SimScope
from runnerd.controller.common import HORIZONTAL_RUNNER_AUTOSCALERS, RUNNER_DEPLOYMENTS
from runnerd.controller.process import Controllers
from runnerd.kube.client import KubeClient
from runnerd.web import dashboard
from runnerd.web.server import Address, Servers
from tests.integration.support import controller_process, pod_agent, seed
from tests.unit.web import checks

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = os.environ.get("RUNNERD_CHROMIUM", "/usr/bin/chromium")
REPO = "octo-org/app"
SECRET = "dashboard-test-secret"

MANIFESTS = """
apiVersion: actions.summerwind.dev/v1alpha1
kind: RunnerDeployment
metadata: {name: cpu-runners}
spec:
  replicas: 1
  template:
    spec:
      repository: octo-org/app
      labels: [self-hosted, linux]
---
apiVersion: actions.summerwind.dev/v1alpha1
kind: HorizontalRunnerAutoscaler
metadata: {name: cpu-runners}
spec:
  scaleTargetRef: {name: cpu-runners}
  minReplicas: 1
  maxReplicas: 3
  scaleDownDelaySecondsAfterScaleOut: 1
  scaleUpTriggers:
    - githubEvent: {workflowJob: {}}
      duration: 10m
---
apiVersion: actions.summerwind.dev/v1alpha1
kind: RunnerDeployment
metadata: {name: gpu-runners}
spec:
  replicas: 0
  template:
    spec:
      repository: octo-org/app
      labels: [self-hosted, gpu]
      resources:
        limits:
          nvidia.com/gpu: 1
---
apiVersion: actions.summerwind.dev/v1alpha1
kind: HorizontalRunnerAutoscaler
metadata: {name: gpu-runners}
spec:
  scaleTargetRef: {name: gpu-runners}
  minReplicas: 0
  maxReplicas: 1
  scaleDownDelaySecondsAfterScaleOut: 1
  scaleUpTriggers:
    - githubEvent: {workflowJob: {}}
      duration: 10m
"""


@dataclass
class Env:
    sim: Simulator
    kube: KubeClient
    controllers: Controllers
    namespace: str
    url: str
    fleet: dashboard.Fleet


@contextlib.asynccontextmanager
async def running(cluster: Cluster, namespace: str) -> AsyncIterator[Env]:
    def no_poll(controllers: Controllers) -> None:
        assert controllers.autoscaling is not None
        controllers.autoscaling.options.poll = False

    async with Simulator(tick_interval=0.05) as sim:
        pat = seed(sim)
        async with (
            controller_process(
                cluster,
                sim,
                pat,
                namespace,
                configure=no_poll,
                sync_period=30.0,
                registering_max_age=0.5,
                drain_grace=1.0,
            ) as controllers,
            Servers() as servers,
            pod_agent(cluster, sim, namespace),
        ):
            autoscaling = controllers.autoscaling
            assert autoscaling is not None
            url = await dashboard.serve_dashboard(servers, controllers, "127.0.0.1:0", interval=0.5)
            host, port = await servers.start(
                "webhook", autoscaling.webhook_server(SECRET).app(), Address("127.0.0.1", 0)
            )
            sim.world.create_hook(
                f"http://{host}:{port}/webhook", scope=SimScope("repo", REPO), secret=SECRET
            )
            fleet = dashboard.fleet_for(autoscaling.metrics, controllers.informers)
            yield Env(sim, controllers.kube, controllers, namespace, url, fleet)


@pytest.fixture(scope="module")
def browser() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run hack/install-chromium.sh (make test does)")
    return CHROMIUM


async def chromium(*args: str, user_data: Path) -> str:
    """Run headless Chromium (as an asyncio subprocess: the server it loads runs in this loop)."""
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={user_data}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


async def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with aiohttp.ClientSession() as session, session.get(url + "metrics") as resp:
        assert resp.status == 200
        return checks.parse(await resp.text())


def expected_for(scrape_: Any, element: dict[str, Any]) -> float | None:
    return checks.expected(scrape_, element["metric"], element["labels"], element["quantile"])


async def test_the_page_shows_what_metrics_says(
    cluster: Cluster,
    crds: list[str],
    browser: str,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running(cluster, namespace) as env:
        for doc in yaml.safe_load_all(MANIFESTS):
            doc["metadata"]["namespace"] = namespace
            resource = (
                RUNNER_DEPLOYMENTS if doc["kind"] == "RunnerDeployment" else HORIZONTAL_RUNNER_AUTOSCALERS
            )
            await env.kube.create(resource, doc, namespace=namespace)

        def target(name: str) -> Any:
            return env.fleet.snapshot().target(namespace, "RunnerDeployment", name)

        def state() -> str:
            snap = env.fleet.snapshot()
            jobs_ = [(j.name, j.status, j.runner_name) for j in env.sim.world.jobs.values()]
            return f"targets {snap.targets}; runners {snap.runners}; jobs {jobs_}"

        await wait_until(
            "an idle CPU runner", lambda: (t := target("cpu-runners")) and t.runners["idle"] == 1
        )
        world = env.sim.world
        repo = world.repo_by_name(REPO)
        # the GPU job runs longer than the runner controller's registering recheck (5 s): a JIT runner
        # that takes a job at once shows busy (status.phase Running) only from its next reconcile
        runs = [
            world.enqueue_run(repo, [JobSpec(("self-hosted", "linux"), f"test-{i}", 1.0) for i in range(2)]),
            world.enqueue_run(repo, [JobSpec(("self-hosted", "gpu"), "train", 8.0)], workflow_name="GPU"),
        ]
        jobs = [j for run in runs for j in run.job_ids]
        await wait_until(
            "every job done",
            lambda: all(world.jobs[j].status == "completed" for j in jobs),
            within=40,
            state=state,
        )
        assert {world.jobs[j].conclusion for j in jobs} == {"success"}

        # settled: the GPU pool back at zero, one idle CPU runner (min 1), a sample taken since
        def settled() -> bool:
            cpu, gpu = target("cpu-runners"), target("gpu-runners")
            return bool(
                cpu and gpu and env.fleet.ledger.holding == 0 and sum(gpu.runners.values()) == 0
                and cpu.runners["idle"] == 1 and sum(cpu.runners.values()) == 1
            )  # fmt: skip

        await wait_until("the pools settled", settled, within=30, state=state)
        taken = env.fleet.samples_taken
        await wait_until("a sample after settling", lambda: env.fleet.samples_taken > taken + 1)
        gpu_key = (namespace, "RunnerDeployment", "gpu-runners")
        used = env.fleet.gpu_seconds()[gpu_key]
        assert used.used > 0, f"the GPU job's busy time is counted: {used}"
        assert used.reserved >= used.used

        # the page, rendered by Chromium after its fetch of data.json; /metrics before and after it
        for _attempt in range(3):
            before = await scrape(env.url)
            dom = await chromium(
                "--virtual-time-budget=5000", "--dump-dom", env.url, user_data=tmp_path / "dump"
            )
            after = await scrape(env.url)
            page = checks.dom_numbers(dom)
            if all(checks.close(expected_for(before, e), expected_for(after, e)) for e in page.found):
                break  # nothing on the page changed while it loaded
        else:
            pytest.fail("the metrics kept changing while the page loaded")

        assert page.body.get("data-loaded"), "the page's script fetched and rendered data.json"
        assert "live" in (page.attrs_by_id.get("status") or {}).get("class", "")
        mismatches = [
            (e["metric"], e["labels"], e.get("quantile"), e["value"], expected_for(before, e))
            for e in page.found
            if not checks.close(e["value"], expected_for(before, e))
            and not (e["value"] == 0.0 and expected_for(before, e) is None)
        ]
        assert not mismatches, mismatches
        for e in page.found:  # what is written is the value (counts as integers)
            if e["value"] is not None and e["metric"] in ("runnerd_runners", "runnerd_jobs_running"):
                assert e["text"].strip() == str(round(e["value"])), e

        def shown(metric: str, **labels: str) -> list[dict[str, Any]]:
            return [e for e in page.found if e["metric"] == metric and e["labels"] == labels]

        cpu = {"namespace": namespace, "kind": "RunnerDeployment", "name": "cpu-runners"}
        gpu = {"namespace": namespace, "kind": "RunnerDeployment", "name": "gpu-runners"}
        assert [e["value"] for e in shown("runnerd_runners", **cpu, state="idle")] == [1.0]
        assert [e["value"] for e in shown("runnerd_jobs_queued", **cpu)] == [0.0]
        assert [e["value"] for e in shown("runnerd_gpu_busy_seconds_total", **gpu)] == [used.used]
        assert (
            shown("runnerdeployment_spec_replicas", runnerdeployment="gpu-runners", namespace=namespace)[0][
                "value"
            ]
            == 0.0
        )
        wait = [e for e in page.found if e["metric"] == "github_workflow_job_queue_duration_seconds"]
        assert {e["quantile"] for e in wait} == {0.5, 0.95}
        assert all(e["value"] is not None and e["value"] >= 0 for e in wait)
        assert shown("github_workflow_job_queue_duration_seconds_count")[0]["value"] == 3.0
        assert shown("runnerd_job_queue_wait_recent_jobs")[0]["value"] == 3.0
        assert [e for e in page.found if e["metric"] == "github_rate_limit_remaining"], (
            "the API budget is shown"
        )
        calls = [
            e
            for e in page.found
            if e["metric"] == "runnerd_github_api_calls_total" and "endpoint" in e["labels"]
        ]
        assert any("generate-jitconfig" in e["labels"]["endpoint"] for e in calls)
        assert len(page.found) > 60

        # the picture
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        with contextlib.suppress(FileNotFoundError):
            shot.unlink()
        await chromium(
            "--virtual-time-budget=5000",
            "--window-size=1280,900",
            f"--screenshot={shot}",
            env.url,
            user_data=tmp_path / "shot",
        )
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 20_000
        with capsys.disabled():
            print(f"\ndashboard screenshot: {shot}")
    shutil.rmtree(tmp_path / "dump", ignore_errors=True)
    shutil.rmtree(tmp_path / "shot", ignore_errors=True)


async def test_runnerd_controller_serves_the_dashboard_on_its_metrics_address(
    cluster: Cluster, crds: list[str], namespace: str, tmp_path: Path
) -> None:
    """The command line's wiring: --metrics-addr serves /metrics, the page and its data."""
    with socket.socket() as s:  # a free port for the child process
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with Simulator(tick_interval=0.05) as sim:
        sim.world.create_org("octo-org")
        env = {**os.environ, "GITHUB_TOKEN": sim.world.create_pat("admin").token, "PYTHONUNBUFFERED": "1"}
        log = tmp_path / "controller.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "runnerd.cli", "controller", f"--kubeconfig={cluster.kubeconfig}",
                f"--watch-namespace={namespace}", f"--github-url={sim.base_url}",
                f"--metrics-addr=127.0.0.1:{port}",
                env=env, stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        base = f"http://127.0.0.1:{port}/"
        try:
            async with aiohttp.ClientSession() as session:

                async def get(path: str) -> tuple[int, str]:
                    try:
                        async with session.get(base + path) as resp:
                            return resp.status, await resp.text()
                    except aiohttp.ClientConnectionError:
                        return 0, ""

                deadline = time.monotonic() + 30
                while (await get("readyz"))[0] != 200:
                    assert proc.returncode is None, log.read_text()
                    assert time.monotonic() < deadline, log.read_text()
                    await asyncio.sleep(0.2)
                status, page = await get("dashboard")
                assert status == 200
                assert 'id="targets"' in page
                status, data = await get("dashboard/data.json")
                assert status == 200
                assert "queue_wait" in json.loads(data)
                status, metrics = await get("metrics")
                assert "runnerd_job_queue_wait_window_seconds 300.0" in metrics
        finally:
            if proc.returncode is None:
                proc.terminate()
            assert await asyncio.wait_for(proc.wait(), 30) == 0, log.read_text()
