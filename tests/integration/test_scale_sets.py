"""Scale-set mode end to end: ``runnerd controller --scale-sets`` as built in-process
(:func:`runnerd.controller.app.build_scale_set_process`), the real API server with the scale-set
chart's CRDs, ghsim's Actions service (broker and GHES modes) and virtual runners in kwok pods.

ARC's quickstart (an AutoscalingRunnerSet with ``minRunners: 0``, ``maxRunners: 5``, a PAT in
``githubConfigSecret``, jobs with ``runs-on: <name>``) scales 0 → N → 0; the in-process listener's
state is on its AutoscalingListener; deleting the AutoscalingRunnerSet cleans both sides; a vanished
scale set is registered again; a session another listener holds is taken over; a busy runner
survives a controller restart, a scale-down and a template roll; ARC's controller gauges
(``gha_controller_*``) follow the scale set; the listener keeps its session
through an expired queue token and keeps jobs running while one long poll in three fails; the
chart's command line runs as a process without GitHub credentials; ``--scale-sets --legacy`` runs
both modes in one process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from ghsim import JobSpec, Simulator
from ghsim.config import SimConfig
from runnerd.api.scaleset import constants as c
from runnerd.controller.app import build_scale_set_process, install_scale_sets
from runnerd.controller.common import ControllerOptions
from runnerd.controller.process import Controllers, ScaleSetProcess
from runnerd.controller.scaleset_common import (
    AUTOSCALING_LISTENERS,
    AUTOSCALING_RUNNER_SETS,
    EPHEMERAL_RUNNER_SETS,
    EPHEMERAL_RUNNERS,
)
from runnerd.github import PersonalAccessToken
from runnerd.github.actions.client import ActionsClient
from runnerd.github.actions.clients import ActionsClients
from runnerd.github.actions.session import MessageSession
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import SECRETS
from runnerd.runtime import NotFound
from tests.integration.support import (
    ORG,
    REPO,
    RUNNER_IMAGE,
    controller_process,
    pod_agent,
    seed,
    wait_established,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

CRD_DIR = Path(__file__).resolve().parents[2] / "charts" / "gha-runner-scale-set-controller" / "crds"
CRD_NAMES = [
    f"{plural}.actions.github.com"
    for plural in ("autoscalingrunnersets", "ephemeralrunnersets", "ephemeralrunners", "autoscalinglisteners")
]
NAME = "arc-runner-set"


@pytest.fixture(scope="module")
def scale_set_crds(cluster: Cluster) -> list[str]:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    wait_established(cluster, CRD_NAMES)
    return CRD_NAMES


@dataclass
class Env:
    sim: Simulator
    kube: KubeClient
    namespace: str
    pat: str

    @property
    def config_url(self) -> str:
        return f"{self.sim.base_url}/{ORG}"

    async def create_scale_set(self, name: str = NAME) -> dict[str, Any]:
        """ARC's quickstart, as the gha-runner-scale-set chart renders it (the parts that matter)."""
        ars = {
            "apiVersion": c.API_VERSION,
            "kind": "AutoscalingRunnerSet",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "githubConfigUrl": self.config_url,
                "githubConfigSecret": "github-secret",
                "minRunners": 0,
                "maxRunners": 5,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {"name": "runner", "image": RUNNER_IMAGE, "command": ["/home/runner/run.sh"]}
                        ],
                    }
                },
            },
        }
        return await self.kube.create(AUTOSCALING_RUNNER_SETS, ars, namespace=self.namespace)

    async def listener(self) -> dict[str, Any] | None:
        items = (await self.kube.list(AUTOSCALING_LISTENERS, namespace=self.namespace)).items
        return items[0] if items else None

    async def listening(self, scale_set_id: int | None = None) -> dict[str, Any] | None:
        found = await self.listener()
        if found is None or (found.get("status") or {}).get("phase") != "Listening":
            return None
        if scale_set_id is not None and found["spec"]["runnerScaleSetId"] != scale_set_id:
            return None
        return found

    async def count(self, resource: Any) -> int:
        return len((await self.kube.list(resource, namespace=self.namespace)).items)

    async def scaled_to_zero(self) -> bool:
        """One EphemeralRunnerSet, at 0 replicas, and no EphemeralRunner left."""
        sets = (await self.kube.list(EPHEMERAL_RUNNER_SETS, namespace=self.namespace)).items
        idle = len(sets) == 1 and not sets[0]["spec"].get("replicas")
        return idle and not await self.count(EPHEMERAL_RUNNERS)

    def scale_sets(self) -> list[Any]:
        return list(self.sim.actions.scale_sets.values())

    def run_jobs(self, n: int, duration: float) -> list[int]:
        world = self.sim.world
        specs = [JobSpec((NAME,), f"job-{i}", duration) for i in range(n)]
        return list(world.enqueue_run(world.repo_by_name(REPO), specs).job_ids)

    def running(self, job_ids: list[int]) -> bool:
        return all(self.sim.world.jobs[j].status == "in_progress" for j in job_ids)

    def completed(self, job_ids: list[int]) -> bool:
        return all(self.sim.world.jobs[j].status == "completed" for j in job_ids)


@contextlib.asynccontextmanager
async def scale_set_controller(cluster: Cluster, namespace: str) -> AsyncIterator[ScaleSetProcess]:
    """``runnerd controller --scale-sets --watch-namespace <ns>`` in-process; stopped on exit."""
    kube = await KubeClient.connect(str(cluster.kubeconfig))
    clients = ActionsClients(trust_env=False)
    process = build_scale_set_process(
        kube=kube,
        options=ControllerOptions(namespace=namespace),
        clients=clients,
        listener_namespace=namespace,
    )
    task = asyncio.create_task(process.manager.run(), name=f"scale-set-manager-{namespace}")
    try:
        yield process
    finally:
        process.manager.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        await clients.close()
        await kube.close()


async def env_for(cluster: Cluster, sim: Simulator, namespace: str, kube: KubeClient) -> Env:
    pat = seed(sim)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "github-secret", "namespace": namespace},
        "data": {"github_token": base64.b64encode(pat.encode()).decode()},
    }
    await kube.create(SECRETS, secret, namespace=namespace)
    return Env(sim, kube, namespace, pat)


def sim_config(mode: str) -> SimConfig:
    config = SimConfig()
    config.actions.mode = mode
    config.actions.long_poll_s = 1.0
    config.actions.session_idle_s = 3.0
    return config


@contextlib.asynccontextmanager
async def world(cluster: Cluster, namespace: str, mode: str = "broker") -> AsyncIterator[Env]:
    async with (
        Simulator(tick_interval=0.05, config=sim_config(mode)) as sim,
        await KubeClient.connect(str(cluster.kubeconfig)) as kube,
    ):
        env = await env_for(cluster, sim, namespace, kube)
        async with pod_agent(cluster, sim, namespace, label_selector=c.LABEL_SCALE_SET_NAME):
            yield env


@pytest.mark.parametrize("mode", ["broker", "ghes"])
async def test_quickstart_scales_from_zero_and_back(
    cluster: Cluster, scale_set_crds: list[str], namespace: str, mode: str
) -> None:
    async with world(cluster, namespace, mode) as env, scale_set_controller(cluster, namespace) as process:
        await env.create_scale_set()
        listener = await wait_until("the listener listening", env.listening, within=30)
        scale_set = f'enterprise="",name="{NAME}",namespace="{namespace}",organization="{ORG}",repository=""'
        assert f"gha_controller_running_listeners{{{scale_set}}} 1.0" in process.metrics.render().decode()
        assert listener["spec"]["minRunners"] == 0
        assert listener["spec"]["maxRunners"] == 5
        assert [ss.name for ss in env.scale_sets()] == [NAME]

        jobs = env.run_jobs(3, duration=2.0)
        await wait_until("runners created for the jobs", lambda: env.count(EPHEMERAL_RUNNERS))

        def runners_counted() -> bool:  # ARC's controller gauges, from the EphemeralRunnerSet's status
            text = process.metrics.render().decode()
            return any(
                f"gha_controller_{state}_ephemeral_runners{{{scale_set}}} {n}.0" in text
                for state in ("pending", "running")
                for n in range(1, 4)
            )

        await wait_until("the controller's runner gauges counting", runners_counted)
        await wait_until("all 3 jobs to complete", lambda: env.completed(jobs), within=45)
        assert all(env.sim.world.jobs[j].conclusion == "success" for j in jobs)

        await wait_until("the scale set back at 0 runners", env.scaled_to_zero, within=30)

        async def desires_none() -> bool:
            found = await env.listening()
            return found is not None and found["status"].get("desiredRunners") == 0

        await wait_until("the listener's status to say 0 desired", desires_none)
        # ARC's listener metrics on the process's /metrics registry
        text = process.metrics.render().decode()
        assert 'gha_max_runners{enterprise="",name="arc-runner-set"' in text
        assert "gha_completed_jobs_total{" in text


async def test_deleting_the_scale_set_cleans_github_and_kubernetes(
    cluster: Cluster, scale_set_crds: list[str], namespace: str
) -> None:
    async with world(cluster, namespace) as env, scale_set_controller(cluster, namespace):
        await env.create_scale_set()
        await wait_until("the listener listening", env.listening, within=30)
        jobs = env.run_jobs(1, duration=0.5)
        await wait_until("the job to complete", lambda: env.completed(jobs), within=30)

        await env.kube.delete(AUTOSCALING_RUNNER_SETS, NAME, namespace=namespace)

        async def gone() -> bool:
            try:
                await env.kube.get(AUTOSCALING_RUNNER_SETS, NAME, namespace=namespace)
            except NotFound:
                pass
            else:
                return False
            counts = [
                await env.count(r) for r in (EPHEMERAL_RUNNER_SETS, EPHEMERAL_RUNNERS, AUTOSCALING_LISTENERS)
            ]
            return counts == [0, 0, 0]

        await wait_until("the AutoscalingRunnerSet and its objects deleted", gone, within=30)
        assert env.scale_sets() == []
        assert not [s for s in env.sim.actions.sessions.values()]


async def test_a_vanished_scale_set_is_registered_again(
    cluster: Cluster, scale_set_crds: list[str], namespace: str
) -> None:
    async with world(cluster, namespace) as env, scale_set_controller(cluster, namespace) as process:
        await env.create_scale_set()
        first = await wait_until("the listener listening", env.listening, within=30)
        old_id = first["spec"]["runnerScaleSetId"]

        env.sim.actions.vanish(old_id)  # GitHub removed it (e.g. offline too long)

        new_ids = await wait_until(
            "a new scale set registered",
            lambda: [ss.id for ss in env.scale_sets() if ss.id != old_id],
            within=30,
        )
        await wait_until("the new listener listening", lambda: env.listening(new_ids[0]), within=30)
        listeners = process.scale_sets.controllers.listeners if process.scale_sets else None
        assert listeners is not None
        assert listeners.gone_total == 1
        jobs = env.run_jobs(1, duration=0.5)
        await wait_until("a job on the new scale set to complete", lambda: env.completed(jobs), within=30)
        await wait_until("the scale set back at 0 runners", env.scaled_to_zero, within=30)


async def test_a_session_held_by_another_listener_is_taken_over(
    cluster: Cluster, scale_set_crds: list[str], namespace: str
) -> None:
    async with world(cluster, namespace) as env:
        # another listener (a crashed ARC listener pod, say) holds the scale set's session
        other = ActionsClient(env.config_url, PersonalAccessToken(env.pat), trust_env=False)
        try:
            group = await other.runner_group_id("")
            scale_set = await other.create_scale_set(NAME, group, [NAME])
            held = MessageSession(other, scale_set.id, "crashed-listener", clock=time.time)
            await held.open()
        finally:
            await other.close()
        async with scale_set_controller(cluster, namespace) as process:
            await env.create_scale_set()
            listener = await wait_until("the listener to take the session over", env.listening, within=30)
            assert listener["spec"]["runnerScaleSetId"] == scale_set.id
            assert listener["status"]["sessionId"] != (held.session.id if held.session else "")
            listeners = process.scale_sets.controllers.listeners if process.scale_sets else None
            assert listeners is not None
            assert sum(m.listener["session_conflicts"] for m in listeners.metrics()) >= 1
            jobs = env.run_jobs(1, duration=0.5)
            await wait_until("the job to complete", lambda: env.completed(jobs), within=30)
            await wait_until("the scale set back at 0 runners", env.scaled_to_zero, within=30)


async def test_a_busy_runner_survives_a_controller_restart_and_a_scale_down(
    cluster: Cluster, scale_set_crds: list[str], namespace: str
) -> None:
    async with world(cluster, namespace) as env:
        async with scale_set_controller(cluster, namespace):
            await env.create_scale_set()
            await wait_until("the listener listening", env.listening, within=30)
            jobs = env.run_jobs(1, duration=8.0)
            await wait_until("the job running", lambda: env.running(jobs), within=30)

            async def job_written() -> dict[str, Any] | None:
                items = (await env.kube.list(EPHEMERAL_RUNNERS, namespace=namespace)).items
                busy = [r for r in items if (r.get("status") or {}).get("jobDisplayName") == "job-0"]
                return busy[0] if busy else None  # the listener writes the job at JobStarted

            runner = await wait_until("the job on its EphemeralRunner", job_written, within=30)
        # the controller is gone (its listener deleted its session); a new one takes over
        async with scale_set_controller(cluster, namespace):
            await wait_until("the new listener listening", env.listening, within=30)
            name = runner["metadata"]["name"]
            kept = await env.kube.get(EPHEMERAL_RUNNERS, name, namespace=namespace)
            assert kept["metadata"]["uid"] == runner["metadata"]["uid"]
            sets = (await env.kube.list(EPHEMERAL_RUNNER_SETS, namespace=namespace)).items
            exactly_none = {"spec": {"replicas": 0, "patchID": 0}}  # "exactly 0": idle runners go
            await env.kube.patch(
                EPHEMERAL_RUNNER_SETS, sets[0]["metadata"]["name"], exactly_none, namespace=namespace
            )
            assert env.running(jobs)
            await wait_until("the job to complete", lambda: env.completed(jobs), within=30)
            assert env.sim.world.jobs[jobs[0]].conclusion == "success"  # its runner was never killed
            await wait_until("the scale set back at 0 runners", env.scaled_to_zero, within=30)


async def test_a_template_roll_lets_the_running_job_finish(
    cluster: Cluster, scale_set_crds: list[str], namespace: str
) -> None:
    async with world(cluster, namespace) as env, scale_set_controller(cluster, namespace):
        await env.create_scale_set()
        first = await wait_until("the listener listening", env.listening, within=30)
        old_set = first["spec"]["ephemeralRunnerSetName"]
        jobs = env.run_jobs(1, duration=6.0)
        await wait_until("the job running", lambda: env.running(jobs), within=30)

        roll = {"spec": {"template": {"metadata": {"labels": {"rolled": "yes"}}}}}
        await env.kube.patch(AUTOSCALING_RUNNER_SETS, NAME, roll, namespace=namespace)

        async def rolled() -> bool:
            found = await env.listening()
            return found is not None and found["spec"]["ephemeralRunnerSetName"] != old_set

        await wait_until("the listener on the new set", rolled, within=30)
        await wait_until("the job to complete", lambda: env.completed(jobs), within=30)
        assert env.sim.world.jobs[jobs[0]].conclusion == "success"

        async def old_set_gone() -> bool:
            sets = (await env.kube.list(EPHEMERAL_RUNNER_SETS, namespace=namespace)).items
            return [s["metadata"]["name"] for s in sets if s["metadata"]["name"] == old_set] == []

        await wait_until("the old set deleted once its runner finished", old_set_gone, within=30)


@dataclass
class FailingPolls:
    """Fails one of every ``one_in`` long polls ghsim answers (alternately an empty 200, ARC#4285's
    "EOF", and a 503 the client's retry absorbs) while :meth:`inject` runs."""

    sim: Simulator
    one_in: int = 3
    added: list[int] = field(default_factory=list)
    start: int = 0

    def polls(self) -> int:
        return int(self.sim.core.stats.by_endpoint["actions/message.get"])

    def failed(self) -> int:
        pending = {f.id for f in self.sim.actions_http.faults.faults}
        return len([i for i in self.added if i not in pending])

    def share(self) -> float:
        return self.failed() / max(self.polls() - self.start, 1)

    async def inject(self) -> None:
        faults = self.sim.actions_http.faults
        self.start = self.polls()
        kinds = itertools.cycle(({"kind": "empty"}, {"kind": "error", "status": 503}))
        try:
            while True:
                at = self.polls()
                self.added.append(faults.add({"op": "message.get", "times": 1, **next(kinds)}).id)
                await self.sim.wait_for(lambda at=at: self.polls() >= at + self.one_in)  # type: ignore[misc]
        finally:
            for fault_id in self.added:
                faults.remove(fault_id)


async def test_the_listener_survives_an_expired_queue_token_and_failing_polls(
    cluster: Cluster, scale_set_crds: list[str], namespace: str
) -> None:
    async with world(cluster, namespace) as env, scale_set_controller(cluster, namespace) as process:
        await env.create_scale_set()
        await wait_until("the listener listening", env.listening, within=30)
        calls = env.sim.core.stats.by_endpoint
        env.sim.actions.mint.revoke("queue")  # the session's queue token expires: 401 on the queue
        jobs = env.run_jobs(1, duration=0.5)
        await wait_until("the job to complete", lambda: env.completed(jobs), within=30)
        assert calls["actions/session.refresh"] >= 1

        failing = FailingPolls(env.sim)
        injector = asyncio.create_task(failing.inject(), name="failing-polls")
        try:
            jobs = env.run_jobs(3, duration=1.0)
            await wait_until("3 jobs to complete", lambda: env.completed(jobs), within=40)
            await wait_until("5 polls failed", lambda: failing.failed() >= 5, within=30)
        finally:
            injector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await injector
        assert failing.share() >= 0.3, (failing.failed(), failing.polls() - failing.start)
        assert all(env.sim.world.jobs[j].conclusion == "success" for j in jobs)
        listeners = process.scale_sets.controllers.listeners if process.scale_sets else None
        assert listeners is not None
        (metrics,) = listeners.metrics()
        assert metrics.listener["failed_polls"] >= 2  # the empty answers; the 503s were retried
        assert metrics.listener["sessions"] == 1  # the token refreshed, the session kept throughout
        await wait_until("the scale set back at 0 runners", env.scaled_to_zero, within=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_chart_command_line_runs_scale_set_mode_without_credentials(
    cluster: Cluster, scale_set_crds: list[str], namespace: str, tmp_path: Path
) -> None:
    """``runnerd controller`` with the flags the controller chart renders (leader election, metrics),
    as a process, with no GitHub credentials in its environment."""
    port = free_port()
    argv = [
        sys.executable, "-m", "runnerd.cli", "controller", "--scale-sets",
        "--enable-leader-election", "--leader-election-id=arc-gha-rs-controller",
        "--log-level=debug", "--log-format=json", f"--watch-namespace={namespace}",
        f"--metrics-addr=127.0.0.1:{port}", f"--kubeconfig={cluster.kubeconfig}",
    ]  # fmt: skip
    log_path = tmp_path / "controller.log"

    def tail() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    async with world(cluster, namespace) as env:
        proc = start_process(argv, log_path, namespace)

        def alive() -> None:
            assert proc.poll() is None, tail()

        try:
            await env.create_scale_set()
            await wait_until("the listener listening", env.listening, within=30, guard=alive)
            jobs = env.run_jobs(1, duration=0.5)
            await wait_until("the job to complete", lambda: env.completed(jobs), within=30, guard=alive)

            async def scraped() -> str | None:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{port}/metrics") as response,
                ):
                    text = await response.text()
                return text if "gha_completed_jobs_total{" in text else None

            text = await wait_until("the listener's metrics on /metrics", scraped, guard=alive)
            assert 'gha_max_runners{enterprise="",name="arc-runner-set"' in text
        finally:
            proc.send_signal(signal.SIGTERM)  # while GitHub is up: the listener deletes its session
            code = await asyncio.to_thread(stop_process, proc)
        assert code == 0, tail()
        assert not env.sim.actions.sessions


def start_process(argv: list[str], log_path: Path, namespace: str) -> subprocess.Popen[bytes]:
    """The process with no GitHub credentials in its environment, its output in ``log_path``."""
    secrets = {"GITHUB_TOKEN", "GITHUB_APP_ID", "GITHUB_APP_INSTALLATION_ID", "GITHUB_APP_PRIVATE_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in secrets}
    env.update(POD_NAME="controller-0", POD_NAMESPACE=namespace, PYTHONUNBUFFERED="1")
    with log_path.open("wb") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop_process(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


async def test_both_modes_in_one_process(
    cluster: Cluster, crds: list[str], scale_set_crds: list[str], namespace: str
) -> None:
    """``--scale-sets --legacy``: the legacy process with scale-set mode installed next to it (one
    manager, one ``/metrics``) runs a scale set's job."""
    async with world(cluster, namespace) as env:
        clients = ActionsClients(trust_env=False)

        def add_scale_sets(controllers: Controllers) -> None:
            assert controllers.autoscaling is not None
            controllers.scale_sets = install_scale_sets(
                controllers, clients=clients, metrics=controllers.autoscaling.metrics
            )

        try:
            async with controller_process(
                cluster, env.sim, env.pat, namespace, configure=add_scale_sets
            ) as both:
                await env.create_scale_set()
                await wait_until("the listener listening", env.listening, within=30)
                jobs = env.run_jobs(1, duration=0.5)
                await wait_until("the job to complete", lambda: env.completed(jobs), within=30)
                assert both.autoscaling is not None
                assert "gha_completed_jobs_total{" in both.autoscaling.metrics.render().decode()
                await wait_until("the scale set back at 0 runners", env.scaled_to_zero, within=30)
        finally:
            await clients.close()
