"""The images built here (hack/build-images.sh): reproducible, and the controller image runs.

The controller image is rebuilt from scratch (its Python layer and the image; the Debian rootfs,
whose reproducibility is mmdebstrap's, stays cached) and must get the same image ID; it answers
``runnerd --version`` as uid 65532 under podman, carries the chart's default tag, and, run with
podman against the devcluster and ghsim, reconciles the article's RunnerDeployment.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.cluster import Cluster
from devcluster.realnode import BUILD_IMAGES, Image
from devcluster.wait import wait_until
from ghsim import JobSpec, Simulator
from runnerd.controller.common import RUNNER_DEPLOYMENTS
from runnerd.kube.client import KubeClient
from tests.integration.realnode_support import PODMAN, images
from tests.integration.support import ARTICLE_RD, REPO, pod_agent, seed

# 600 s: the first test to ask for the images builds them when `make images` has not (~4 min cold)
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]
__all__ = ["images"]
ROOT = Path(__file__).resolve().parents[2]


def test_two_builds_give_the_same_controller_image(images: dict[str, Image]) -> None:
    proc = subprocess.run(
        ["bash", str(BUILD_IMAGES), "--no-cache"],
        env={**os.environ, "ONLY": "controller"},
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = Path(proc.stdout.strip().splitlines()[-1])
    try:
        rebuilt = json.loads(manifest.read_text())["controller"]
        assert rebuilt["id"] == images["controller"].id
        assert rebuilt["tag"] == images["controller"].tag
    finally:
        shutil.rmtree(manifest.parent)


def test_controller_image_has_the_chart_default_tag(images: dict[str, Image]) -> None:
    chart = yaml.safe_load((ROOT / "charts/actions-runner-controller/Chart.yaml").read_text())
    values = yaml.safe_load((ROOT / "charts/actions-runner-controller/values.yaml").read_text())
    assert values["image"]["tag"] == ""  # empty: the chart uses its appVersion
    assert images["controller"].tag == f"{values['image']['repository']}:{chart['appVersion']}"


@pytest.fixture(scope="module")
def controller_image(images: dict[str, Image]) -> Iterator[Image]:
    """The controller image loaded into podman's storage (removed again afterwards)."""
    image = images["controller"]
    subprocess.run(["podman", "load", "-q", "-i", str(image.archive)], check=True, capture_output=True)
    yield image
    subprocess.run(["podman", "rmi", "-f", image.id], check=False, capture_output=True)


def test_controller_image_runs_runnerd_as_non_root(controller_image: Image) -> None:
    image = controller_image
    version = subprocess.run(
        [*PODMAN, "--network", "none", image.id, "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(r"runnerd \d+\.\d+\.\d+\S*", version.stdout.strip())
    who = subprocess.run(
        [*PODMAN, "--network", "none", "--entrypoint", "id", image.id, "-u"], capture_output=True, text=True
    )
    assert who.stdout.strip() == "65532"


def portable_kubeconfig(cluster: Cluster, tmp_path: Path) -> Path:
    """The admin kubeconfig with its certificates inline, readable by the image's uid 65532."""
    config = json.loads(cluster.kubeconfig.read_text())
    c = config["clusters"][0]["cluster"]
    c["certificate-authority-data"] = base64.b64encode(
        Path(c.pop("certificate-authority")).read_bytes()
    ).decode()
    u = config["users"][0]["user"]
    u["client-certificate-data"] = base64.b64encode(Path(u.pop("client-certificate")).read_bytes()).decode()
    u["client-key-data"] = base64.b64encode(Path(u.pop("client-key")).read_bytes()).decode()
    out = tmp_path / "kubeconfig"
    out.write_text(json.dumps(config))
    out.chmod(0o644)
    return out


@dataclass
class Podman:
    sim: Simulator
    kube: KubeClient
    proc: asyncio.subprocess.Process
    log: Path

    def guard(self) -> None:
        if self.proc.returncode is not None:
            pytest.fail(
                f"the controller container exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}"
            )


@pytest.fixture
async def controller_in_podman(
    cluster: Cluster, crds: list[str], namespace: str, controller_image: Image, tmp_path: Path
) -> AsyncIterator[Podman]:
    image = controller_image
    async with Simulator(tick_interval=0.05) as sim:
        token = seed(sim)
        kube = await KubeClient.connect(str(cluster.kubeconfig))
        name = f"runnerd-{namespace}"
        argv = [
            *PODMAN, "--name", name, "--network", "host", "--read-only",
            "-v", f"{portable_kubeconfig(cluster, tmp_path)}:/etc/runnerd/kubeconfig:ro",
            "-e", f"GITHUB_TOKEN={token}", "-e", f"POD_NAMESPACE={namespace}", "-e", "POD_NAME=runnerd",
            image.id, "controller",
            "--kubeconfig=/etc/runnerd/kubeconfig", f"--watch-namespace={namespace}",
            f"--github-url={sim.base_url}", f"--runner-github-url={sim.base_url}/",
            "--sync-period=5s", "--drain-grace=2s",
        ]  # fmt: skip
        log = (tmp_path / "controller.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            async with pod_agent(cluster, sim, namespace):
                yield Podman(sim, kube, proc, tmp_path / "controller.log")
        finally:
            stop = await asyncio.create_subprocess_exec(
                "podman", "stop", "-t", "10", name, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            await stop.wait()
            await asyncio.wait_for(proc.wait(), 30)
            log.close()
            await kube.close()


async def test_controller_from_the_image_reconciles_the_article_rd(
    controller_in_podman: Podman, namespace: str
) -> None:
    p = controller_in_podman
    sim, kube = p.sim, p.kube
    rd: dict[str, Any] = yaml.safe_load(ARTICLE_RD)
    rd["metadata"]["namespace"] = namespace
    await kube.create(RUNNER_DEPLOYMENTS, rd, namespace=namespace)
    world = sim.world
    await wait_until(
        "a runner online", lambda: any(world.runner_online(r) for r in world.runners.values()), 90, p.guard
    )
    run = world.enqueue_run(world.repo_by_name(REPO), [JobSpec(("self-hosted", "arc-runner"), "job", 0.5)])
    job = await wait_until(
        "the job to complete",
        lambda: (j := world.jobs[run.job_ids[0]]).status == "completed" and j,
        60,
        p.guard,
    )
    assert job.conclusion == "success"
