"""The autoscale bench's parts (bench/autoscale_bench.py): percentiles, the webhook relay, the hop
timeline its informers keep, the controller as its own process, the plain create loop (the ceiling),
the HRA manifests and the API server's and ghsim's counts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from devcluster.cluster import Cluster  # noqa: E402
from devcluster.process import cpu_seconds, spawn, terminate  # noqa: E402
from runnerd.controller.common import (  # noqa: E402
    HORIZONTAL_RUNNER_AUTOSCALERS,
    RUNNER_DEPLOYMENTS,
    RUNNER_REPLICA_SETS,
    RUNNERS,
)
from runnerd.kube.client import KubeClient  # noqa: E402
from runnerd.kube.resources import PODS  # noqa: E402
from runnerd.runtime import EventType, Informer, InformerEvent  # noqa: E402

REPO = "octo-org/app"
LABELS = ("self-hosted", "bench")
SECRET = "bench-webhook-secret"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    """p50/p99/max in milliseconds (``scale`` 1000) or seconds (1)."""
    return {
        "p50": round(pct(values, 0.5) * scale, 1),
        "p99": round(pct(values, 0.99) * scale, 1),
        "max": round(max(values, default=float("nan")) * scale, 1),
    }


class Relay:
    """Between ghsim's hook and the controller's webhook server: when each ``queued`` delivery was
    received, and when the controller answered it 2xx (once its reservation was durable)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.received: dict[int, float] = {}
        self.answered: dict[int, float] = {}
        self._session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.Response:
        received = time.time()
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        async with self._session.post(self.target, data=body, headers=headers) as resp:
            reply = await resp.read()
            status = resp.status
        if request.headers.get("X-GitHub-Event") == "workflow_job" and 200 <= status < 300:
            payload = json.loads(body)
            job_id = int((payload.get("workflow_job") or {}).get("id") or 0)
            if payload.get("action") == "queued" and job_id not in self.received:
                self.received[job_id] = received
                self.answered[job_id] = time.time()
        return web.Response(status=status, body=reply)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/webhook", self.handle)
        return app

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class Timeline:
    """Wall-clock times of what the benchmark's own informers saw: deployment and replica set
    replicas, Runner objects, runner pods (the controller may be another process)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.replicas: list[tuple[float, int]] = []
        self.rs_replicas: list[tuple[float, int]] = []
        self.runners: list[float] = []
        self.pods: list[float] = []

    def on_deployment(self, event: InformerEvent) -> None:
        value = (event.obj.get("spec") or {}).get("replicas")
        self.replicas.append((time.time(), 1 if value is None else int(value)))

    def on_replica_set(self, event: InformerEvent) -> None:
        value = (event.obj.get("spec") or {}).get("replicas")
        self.rs_replicas.append((time.time(), 1 if value is None else int(value)))

    def on_runner(self, event: InformerEvent) -> None:
        if event.type is EventType.ADDED:
            self.runners.append(time.time())

    def on_pod(self, event: InformerEvent) -> None:
        if event.type is EventType.ADDED:
            self.pods.append(time.time())

    def replicas_reached(self, n: int, after: float, replica_set: bool = False) -> float | None:
        for at, value in self.rs_replicas if replica_set else self.replicas:
            if at >= after and value >= n:
                return at
        return None


class Watching:
    """The benchmark's informers on the scenario's namespace, feeding a :class:`Timeline`."""

    def __init__(self, kube: KubeClient, namespace: str) -> None:
        self.timeline = Timeline(namespace)
        self.informers = {
            "runnerdeployments": Informer(
                "runnerdeployments", kube.list_watcher(RUNNER_DEPLOYMENTS, namespace=namespace)
            ),
            "runnerreplicasets": Informer(
                "runnerreplicasets", kube.list_watcher(RUNNER_REPLICA_SETS, namespace=namespace)
            ),
            "runners": Informer("runners", kube.list_watcher(RUNNERS, namespace=namespace)),
            "pods": Informer(
                "pods", kube.list_watcher(PODS, namespace=namespace, label_selector="actions-runner")
            ),
            "hras": Informer("hras", kube.list_watcher(HORIZONTAL_RUNNER_AUTOSCALERS, namespace=namespace)),
        }
        t = self.timeline
        for name, handler in (
            ("runnerdeployments", t.on_deployment),
            ("runnerreplicasets", t.on_replica_set),
            ("runners", t.on_runner),
            ("pods", t.on_pod),
        ):
            self.informers[name].add_handler(handler)
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Watching:
        self._tasks = [asyncio.create_task(i.run(), name=f"bench-{n}") for n, i in self.informers.items()]
        for informer in self.informers.values():
            await informer.wait_synced()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def store(self, name: str) -> Any:
        return self.informers[name].store


class ControllerProcess:
    """``runnerd controller`` as its own process, watching the scenario's namespace."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, metrics_port: int) -> None:
        self.argv, self.env, self.log, self.metrics_port = argv, env, log, metrics_port
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, within: float = 60.0) -> None:
        self.proc = spawn("controller", self.argv, self.log, self.env).popen
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the controller exited ({self.proc.returncode}); log {self.log}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the controller was not ready after {within:g}s; log {self.log}")
                await asyncio.sleep(0.2)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    async def stop(self, grace: float = 30.0) -> None:
        if self.proc is not None:
            await asyncio.to_thread(terminate, self.proc, grace)


async def wait(what: str, probe: Callable[[], Any], within: float) -> None:
    deadline = time.monotonic() + within
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.02)


def rate(times: list[float]) -> float | None:
    """Creations per second from the first to the last."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return round((len(times) - 1) / (times[-1] - times[0]), 1)


def pod_template(pods: list[dict[str, Any]], namespace: str) -> dict[str, Any] | None:
    """A runner pod the controller made, reduced to what a create sends (for the ceiling)."""
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("namespace") != namespace:
            continue
        spec = json.loads(json.dumps({k: v for k, v in (pod.get("spec") or {}).items() if k != "nodeName"}))
        # the service-account volume is added by the API server; the JIT config is not printed
        spec["volumes"] = [
            v for v in spec.get("volumes") or () if not v["name"].startswith("kube-api-access")
        ]
        for container in spec.get("containers") or ():
            container["volumeMounts"] = [
                m for m in container.get("volumeMounts") or () if not m["name"].startswith("kube-api-access")
            ]
            for env in container.get("env") or ():
                if "JITCONFIG" in env.get("name", ""):
                    env["value"] = "x" * len(env.get("value") or "")
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"labels": {"bench": "ceiling"}},
            "spec": spec,
        }
    return None


async def ceiling(cluster: Cluster, template: dict[str, Any], count: int) -> dict[str, Any]:
    """A plain concurrent create loop (64 in flight) of ``count`` copies of ``template``."""
    namespace = "bench-ceiling"
    cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    kube = await KubeClient.connect(str(cluster.kubeconfig))
    gate = asyncio.Semaphore(64)
    done: list[float] = []

    async def create(i: int) -> None:
        body = json.loads(json.dumps(template))
        body["metadata"]["name"] = f"ceiling-{i}"
        async with gate:
            await kube.create(PODS, body, namespace=namespace)
        done.append(time.time())

    try:
        started = time.time()
        await asyncio.gather(*(create(i) for i in range(count)))
        elapsed = time.time() - started
    finally:
        await kube.close()
    return {"pods": count, "seconds": round(elapsed, 2), "pods_per_s": round(count / elapsed, 1)}


def hra_manifest(mode: str, namespace: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"name": "bench"},
        "minReplicas": 0,
        "maxReplicas": 1000,
        "scaleDownDelaySecondsAfterScaleOut": 5,
    }
    if mode != "pull":
        spec["scaleUpTriggers"] = [{"githubEvent": {"workflowJob": {}}, "duration": "10m"}]
    if mode != "webhook":
        spec["metrics"] = [
            {"type": "TotalNumberOfQueuedAndInProgressWorkflowRuns", "repositoryNames": [REPO]}
        ]
    return {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "HorizontalRunnerAutoscaler",
        "metadata": {"name": "bench", "namespace": namespace},
        "spec": spec,
    }


WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
METRIC_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$")


def api_writes(cluster: Cluster) -> Counter[str]:
    """The API server's write requests so far, by ``VERB [group/]resource[/subresource]`` (every
    client's: the controller's, the scheduler's bindings, the pod agent's), from its ``/metrics``.
    The group tells the writers of Events apart: the controller records ``core/v1`` Events
    (``POST events``), the scheduler ``events.k8s.io/v1`` ones (``POST events.k8s.io/events``)."""
    request = urllib.request.Request(f"{cluster.server}/metrics")
    with urllib.request.urlopen(request, context=cluster.admin_ssl(), timeout=30) as resp:
        text = resp.read().decode()
    out: Counter[str] = Counter()
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if match is None:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("verb") in WRITE_VERBS:
            group = labels.get("group", "")
            what = (
                (f"{group}/" if group else "")
                + labels.get("resource", "")
                + (f"/{labels['subresource']}" if labels.get("subresource") else "")
            )
            out[f"{labels['verb']} {what}"] += int(float(match["value"]))
    return out


def controller_calls(stats: Any, principal: str) -> Counter[tuple[str, int]]:
    """The controller's calls so far, by (operation, status), as ghsim counted them."""
    out: Counter[tuple[str, int]] = Counter()
    for (endpoint, who, status), n in stats.by_endpoint_principal_status.items():
        if who == principal:
            out[(endpoint, status)] += n
    return out
