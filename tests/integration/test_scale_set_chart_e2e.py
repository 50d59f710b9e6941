"""Both scale-set charts installed with docs/scale-sets.md's commands (ARC's quickstart, our chart
directories; the config URL and the PAT point at ghsim), then ``runnerd controller --scale-sets``
run as the controller chart's Deployment would run it (its command, args and env) but as a local
process authenticated with a token of the chart's ServiceAccount, through a proxy that notes every
API request and its answer: a job runs 0 → 1 → 0 with a PAT and with a GitHub App in
``githubConfigSecret`` (the App's release also names a ``githubServerTLS`` CA ConfigMap, which the
controller reads for its Actions-service connections), the API server refused the controller
nothing, and the only Secret it read by name is the scale set's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from ghsim import JobSpec, Simulator
from runnerd.api.scaleset import constants as c
from runnerd.controller.scaleset_common import (
    AUTOSCALING_LISTENERS,
    AUTOSCALING_RUNNER_SETS,
    EPHEMERAL_RUNNER_SETS,
    EPHEMERAL_RUNNERS,
)
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import CONFIGMAPS, DEPLOYMENTS, SECRETS
from runnerd.runtime import NotFound
from tests.integration.support import ORG, REPO, pod_agent, seed
from tests.integration.test_chart import (
    RecordingProxy,
    ca_file,
    helm_bin,
    namespace_gone,
    run_helm,
    service_account_token,
    start_like_the_deployment,
    stop,
    write_kubeconfig,
)
from tests.integration.test_scale_set_charts import (
    CONTROLLER_NS,
    RUNNERS_NS,
    documented_commands,
    strip_cleanup_finalizers,
)
from tests.integration.test_scale_sets import sim_config

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]
__all__ = ["helm_bin"]  # the fixture

RELEASE, CONTROLLER = "arc-runner-set", "arc-gha-rs-controller"
APP_ID, INSTALLATION_ID = 123456, 654321
KEYS = ("id", "installation_id", "private_key")
CA_CONFIG_MAP = "ghes-ca"


def app_key(sim: Simulator, tmp_path: Path) -> Path:
    """A GitHub App installed on :data:`ORG` in ghsim; its private key in a 0600 file."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    app = sim.world.create_app("arc-test", public.decode(), ident=APP_ID)
    sim.world.create_installation(app.id, ORG, ident=INSTALLATION_ID)
    path = tmp_path / "app.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    return path


def install_commands(sim: Simulator, auth: str, tmp_path: Path) -> list[list[str]]:
    """The documented commands with ghsim's URL and PAT; for the App, ARC's ``--set`` of the ids
    and ``--set-file`` of the key in place of the PAT's ``--set``, and a ``githubServerTLS``."""
    pat = seed(sim)
    commands = documented_commands({"GITHUB_CONFIG_URL": f"{sim.base_url}/{ORG}", "GITHUB_PAT": pat})
    if auth == "app":
        runner_set = commands[1]
        at = runner_set.index(f"githubConfigSecret.github_token={pat}")
        runner_set[at - 1 : at + 1] = [
            "--set", f"githubConfigSecret.github_app_id={APP_ID}",
            "--set", f"githubConfigSecret.github_app_installation_id={INSTALLATION_ID}",
            "--set-file", f"githubConfigSecret.github_app_private_key={app_key(sim, tmp_path)}",
            "--set", f"githubServerTLS.certificateFrom.configMapKeyRef.name={CA_CONFIG_MAP}",
            "--set", "githubServerTLS.certificateFrom.configMapKeyRef.key=ca.crt",
        ]  # fmt: skip
    return commands


async def free_namespaces(cluster: Cluster) -> None:
    """The fixed namespaces are shared with test_scale_set_charts.py: wait while they terminate."""
    for ns in (CONTROLLER_NS, RUNNERS_NS):
        assert await asyncio.to_thread(namespace_gone, cluster, ns), f"namespace {ns} still terminating"


def uninstall_all(cluster: Cluster, helm_bin: Path, home: Path) -> None:
    for release, ns in ((RELEASE, RUNNERS_NS), ("arc", CONTROLLER_NS)):
        strip_cleanup_finalizers(cluster, ns)
        run_helm(helm_bin, home, "uninstall", release, "--namespace", ns, kubeconfig=cluster.kubeconfig)
    for ns in (RUNNERS_NS, CONTROLLER_NS):
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


class Watch:
    """What the test reads (as the cluster admin) to follow the scale set."""

    def __init__(self, kube: KubeClient, sim: Simulator) -> None:
        self.kube, self.sim = kube, sim

    async def listening(self) -> dict[str, Any] | None:
        items = (await self.kube.list(AUTOSCALING_LISTENERS, namespace=CONTROLLER_NS)).items
        ok = [i for i in items if (i.get("status") or {}).get("phase") == "Listening"]
        return ok[0] if ok else None

    async def runners(self) -> int:
        return len((await self.kube.list(EPHEMERAL_RUNNERS, namespace=RUNNERS_NS)).items)

    async def at_zero(self) -> bool:
        sets = (await self.kube.list(EPHEMERAL_RUNNER_SETS, namespace=RUNNERS_NS)).items
        return len(sets) == 1 and not sets[0]["spec"].get("replicas") and not await self.runners()

    async def scale_set_gone(self) -> bool:
        try:
            await self.kube.get(AUTOSCALING_RUNNER_SETS, RELEASE, namespace=RUNNERS_NS)
        except NotFound:
            return not self.sim.actions.scale_sets
        return False

    def run_job(self) -> int:
        world = self.sim.world
        return world.enqueue_run(world.repo_by_name(REPO), [JobSpec((RELEASE,), "build", 0.5)]).job_ids[0]


@pytest.fixture
def ca_pem(cluster: Cluster) -> str:
    """A CA certificate (PEM) for the ``githubServerTLS`` ConfigMap: the cluster's."""
    return Path(ca_file(cluster)).read_text()


@pytest.mark.parametrize("auth", ["pat", "app"])
async def test_the_charts_run_a_job_as_the_controllers_service_account(
    cluster: Cluster, helm_bin: Path, tmp_path: Path, auth: str, ca_pem: str
) -> None:
    await free_namespaces(cluster)
    home, log, ca = tmp_path / "helm", tmp_path / "controller.log", ca_file(cluster)
    async with (
        Simulator(tick_interval=0.05, config=sim_config("broker")) as sim,
        await KubeClient.connect(str(cluster.kubeconfig)) as kube,
    ):
        watch = Watch(kube, sim)
        try:
            for argv in install_commands(sim, auth, tmp_path):
                proc = run_helm(helm_bin, home, *argv, kubeconfig=cluster.kubeconfig)
                assert proc.returncode == 0, proc.stderr
            secret = await kube.get(SECRETS, f"{RELEASE}-gha-rs-github-secret", namespace=RUNNERS_NS)
            keys = {"pat": {"github_token"}, "app": {f"github_app_{k}" for k in KEYS}}[auth]
            assert set(secret["data"]) == keys
            if auth == "app":  # any CA will do: ghsim speaks plain HTTP, the bundle is only loaded
                config_map = {"metadata": {"name": CA_CONFIG_MAP}, "data": {"ca.crt": ca_pem}}
                await kube.create(CONFIGMAPS, config_map, namespace=RUNNERS_NS)
            deployment = await kube.get(DEPLOYMENTS, CONTROLLER, namespace=CONTROLLER_NS)
            token = service_account_token(cluster, CONTROLLER_NS, CONTROLLER)
            async with (
                RecordingProxy(cluster.server, ca) as proxy,
                pod_agent(cluster, sim, RUNNERS_NS, label_selector=c.LABEL_SCALE_SET_NAME),
            ):
                via_proxy = write_kubeconfig(tmp_path / "controller.kubeconfig", proxy.url, token, None)
                controller, _ = await start_like_the_deployment(kube, deployment, "manager", via_proxy, log)

                def guard() -> None:
                    proxy.fail_on_refusal()
                    assert controller.returncode is None, log.read_text(errors="replace")[-3000:]

                try:
                    await wait_until("the listener listening", watch.listening, 40, guard)
                    await wait_until("the scale set at 0 runners", watch.at_zero, 30, guard)
                    job = watch.run_job()
                    await wait_until("a runner for the job", watch.runners, 30, guard)
                    await wait_until(
                        "the job done", lambda: sim.world.jobs[job].status == "completed", 30, guard
                    )
                    assert sim.world.jobs[job].conclusion == "success"
                    await wait_until("the scale set back at 0 runners", watch.at_zero, 30, guard)
                    await kube.delete(AUTOSCALING_RUNNER_SETS, RELEASE, namespace=RUNNERS_NS)
                    await wait_until("the scale set deleted on both sides", watch.scale_set_gone, 30, guard)
                finally:
                    code = await stop(controller)
            output = log.read_text(errors="replace")
            assert code == 0, output[-3000:]
            assert proxy.accesses, "no request went through the proxy"
            assert not proxy.refused(), proxy.refused()
            assert "Forbidden" not in output
            secrets = {(a.verb, a.namespace) for a in proxy.accesses if a.resource == "secrets"}
            assert {ns for verb, ns in secrets if verb == "get"} <= {RUNNERS_NS}, secrets
            config_maps = {(a.verb, a.namespace) for a in proxy.accesses if a.resource == "configmaps"}
            assert config_maps == ({("get", RUNNERS_NS)} if auth == "app" else set())
        finally:
            uninstall_all(cluster, helm_bin, home)
    await free_namespaces(cluster)
