"""runnerd status against the real control plane: objects created through the API, the command run
as a subprocess (``runnerd status`` and, through the real kubectl, ``kubectl runnerd status``),
the metrics section read from a live /metrics endpoint."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.cluster import Cluster
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import EVENTS, Resource
from runnerd.status import HRAS, RUNNER_DEPLOYMENTS, RUNNER_SETS, RUNNERS
from runnerd.web.metrics import BudgetSnapshot, Metrics, RateLimitReading
from runnerd.web.server import Address, Servers, health_app
from tests.unit.web import objects as o

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "charts" / "actions-runner-controller" / "crds"
BIN = Path(sys.executable).parent  # the virtualenv's bin: runnerd, kubectl-runnerd, kubectl


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as a client creates it (no status, uid or timestamps)."""
    meta = {k: v for k, v in obj["metadata"].items() if k in ("name", "namespace", "labels")}
    return {**{k: v for k, v in obj.items() if k not in ("status", "metadata")}, "metadata": meta}


@pytest.fixture
async def kube(cluster: Cluster) -> AsyncIterator[KubeClient]:
    async with await KubeClient.connect(str(cluster.kubeconfig)) as client:
        yield client


async def create_fleet(kube: KubeClient, namespace: str) -> None:
    """cpu (2 runners: idle, busy; 3 jobs reserved), a RunnerSet with no runner yet, an HRA, a warning."""
    now = dt.datetime.now(dt.UTC)
    later = (now + dt.timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    hra = o.hra("cpu-hra", "cpu", namespace=namespace, min_replicas=1, max_replicas=4,
                reservations=[o.reservation(i, expires=later) for i in (1, 2, 3)])  # fmt: skip
    hra["spec"]["capacityReservations"] = [
        {k: v for k, v in r.items() if k != "effectiveTime"} for r in hra["spec"]["capacityReservations"]
    ]
    await kube.create(RUNNER_DEPLOYMENTS, _strip(o.rd("cpu", 2, namespace=namespace)), namespace=namespace)
    await kube.create(RUNNER_SETS, _strip(o.runnerset("big", 1, namespace=namespace)), namespace=namespace)
    created = await kube.create(HRAS, _strip(hra), namespace=namespace)
    await kube.patch_status(
        HRAS, "cpu-hra", {"status": {"desiredReplicas": 2, "scheduledOverridesSummary": "min 2 09:00-17:00"}},
        namespace=namespace,
    )  # fmt: skip
    assert created["spec"]["capacityReservations"]
    for name, phase in (("cpu-a", "Idle"), ("cpu-b", "Running")):
        runner = _strip(o.runner(name, "cpu", namespace=namespace))
        runner["metadata"]["ownerReferences"] = []
        await kube.create(RUNNERS, runner, namespace=namespace)
        await kube.patch_status(RUNNERS, name, {"status": {"phase": phase}}, namespace=namespace)
    event = o.warning("cpu-b.warn", "Runner", "cpu-b", "RegistrationTimeout", "runner never came online",
                      namespace=namespace, last=now.strftime("%Y-%m-%dT%H:%M:%SZ"), count=2)  # fmt: skip
    fields = (
        "type",
        "reason",
        "message",
        "count",
        "lastTimestamp",
        "firstTimestamp",
        "involvedObject",
        "source",
    )
    await kube.create(EVENTS, _strip(event) | {k: event[k] for k in fields}, namespace=namespace)


async def run(*argv: str, env: dict[str, str]) -> str:
    """A command as a subprocess (asyncio: a server this test runs answers it)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, (argv, err.decode())
    return out.decode()


def section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start, len(lines)) if not lines[i]), len(lines))
    return lines[start + 1 : end]


def environment(cluster: Cluster, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **extra,
    }


async def test_runnerd_status_tables_and_metrics(
    cluster: Cluster, crds: list[str], namespace: str, kube: KubeClient
) -> None:
    await create_fleet(kube, namespace)
    metrics = Metrics()
    reset = dt.datetime.now(dt.UTC).timestamp() + 1800
    metrics.watch_github(
        lambda: BudgetSnapshot(
            rate_limits=[RateLimitReading("core", 5000, 4321, reset)],
            calls={("GET /repos/{owner}/{repo}/actions/runners", "200"): 9},
        )
    )
    for wait in (2.0, 4.0):
        metrics.observe_job_event(
            action="in_progress", labels={"repository": "app"}, conclusion=None, created_at=0.0,
            started_at=wait, completed_at=None,
        )  # fmt: skip
    async with Servers() as servers:
        host, port = await servers.start(
            "metrics", health_app(ready=lambda: True, metrics=metrics), Address("127.0.0.1", 0)
        )
        url = f"http://{host}:{port}/metrics"
        out = await run(
            str(BIN / "runnerd"), "status", "-n", namespace, "--kubeconfig", str(cluster.kubeconfig),
            "--metrics-url", url, env=environment(cluster),
        )  # fmt: skip

    header, cpu, big = section(out, "RUNNER DEPLOYMENTS AND RUNNER SETS")
    assert header.split() == ["KIND", "NAME", "DESIRED", "CURRENT", "READY", "BUSY", "QUEUED", "RUNNERS"]
    assert cpu.split() == ["RunnerDeployment", "cpu", "2", "2", "2", "1", "2", "1", "idle,", "1", "busy"]
    assert big.split() == ["RunnerSet", "big", "1", "0", "0", "0", "0", "none"]
    (hra,) = section(out, "HORIZONTAL RUNNER AUTOSCALERS")[1:]
    assert hra.split()[:5] == ["cpu-hra", "RunnerDeployment/cpu", "1", "4", "2"]
    assert hra.endswith("min 2 09:00-17:00")
    (warning,) = section(out, "RECENT WARNING EVENTS")[1:]
    assert warning.split()[1:4] == ["Runner/cpu-b", "RegistrationTimeout", "2"]
    assert warning.endswith("runner never came online")
    assert f"METRICS ({url})" in out
    assert "since start: p50 2.0s" in out  # 2 jobs, 2 s and 4 s: (1,2] and (2,5]
    (core,) = section(out, "GITHUB API")[1:]
    assert core.split()[:3] == ["core", "4321", "5000"]
    assert "GET /repos/{owner}/{repo}/actions/runners   9" in out
    assert "note:" not in out


async def test_json_all_namespaces_and_the_kubectl_plugin(
    cluster: Cluster, crds: list[str], namespace: str, kube: KubeClient, tmp_path: Path
) -> None:
    await create_fleet(kube, namespace)
    env = environment(cluster)
    doc = json.loads(await run(str(BIN / "runnerd"), "status", "-n", namespace, "-o", "json", env=env))
    assert [(t["kind"], t["name"], t["current"], t["busy"], t["queuedJobs"]) for t in doc["targets"]] == [
        ("RunnerDeployment", "cpu", 2, 1, 2),
        ("RunnerSet", "big", 0, 0, 0),
    ]
    assert doc["autoscalers"][0]["reservedReplicas"] == 3
    assert doc["warningEvents"][0]["reason"] == "RegistrationTimeout"

    wide_all = await run(str(BIN / "runnerd"), "status", "-A", "-o", "wide", env=env)
    assert "(all namespaces)" in wide_all
    rows = section(wide_all, "RUNNER DEPLOYMENTS AND RUNNER SETS")
    assert rows[0].split()[0] == "NAMESPACE"
    assert any(r.split()[:3] == [namespace, "RunnerDeployment", "cpu"] for r in rows[1:])

    # kubectl finds kubectl-runnerd on PATH; the context's namespace is the default one
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["contexts"][0]["context"]["namespace"] = namespace
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    plugin_env = environment(cluster, KUBECONFIG=str(kubeconfig))
    listed = await run(str(BIN / "kubectl"), "plugin", "list", env=plugin_env)
    assert "kubectl-runnerd" in listed
    via_kubectl = json.loads(
        await run(str(BIN / "kubectl"), "runnerd", "status", "-o", "json", env=plugin_env)
    )
    assert via_kubectl["namespace"] == namespace
    assert {**via_kubectl, "time": None} == {**doc, "time": None}
    text = await run(str(BIN / "kubectl"), "runnerd", "status", env=plugin_env)
    assert text.startswith(f"RUNNER DEPLOYMENTS AND RUNNER SETS (namespace {namespace})")


async def test_a_cluster_without_the_crds_says_so(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    """Against a Resource the server does not serve the lists are empty and a note says why."""
    from runnerd import status

    async with await KubeClient.connect(str(cluster.kubeconfig)) as client:
        missing = Resource("nothing.runnerd.dev", "v1", "nothings", "Nothing")
        notes: list[str] = []
        assert await status._list(client, missing, namespace, notes) == []
        assert notes == ["nothings.nothing.runnerd.dev is not served (CRDs not installed?)"]
