"""Plays the runner process inside runner pods on kwok nodes: ghsim's virtual runner per Running pod.

When the virtual runner exits, the pod's ``runner`` container is ended with that exit code through
devcluster's exit-code annotation, exactly as a real container would end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from devcluster.cluster import EXIT_CODE_ANNOTATION, EXIT_CONTAINER_ANNOTATION
from ghsim import run_virtual_runner
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import PODS, SECRETS
from runnerd.runtime import Informer, InformerEvent, Key, NotFound

log = logging.getLogger(__name__)


def container_env(pod: Mapping[str, Any], container: str = "runner") -> dict[str, str]:
    for c in (pod.get("spec") or {}).get("containers") or ():
        if c.get("name") == container:
            return {e["name"]: str(e.get("value", "")) for e in c.get("env") or () if "value" in e}
    return {}


async def resolve_env(
    kube: KubeClient, pod: Mapping[str, Any], container: str = "runner"
) -> dict[str, str] | None:
    """The container's env as the kubelet resolves it when it creates the container: literal values,
    ``secretKeyRef`` (read from the Secret now) and ``fieldRef`` to the pod's name or namespace.
    ``None`` when a required Secret or key is missing (the kubelet's CreateContainerConfigError)."""
    meta = pod.get("metadata") or {}
    fields = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace")}
    for c in (pod.get("spec") or {}).get("containers") or ():
        if c.get("name") != container:
            continue
        env: dict[str, str] = {}
        for e in c.get("env") or ():
            source = e.get("valueFrom") or {}
            if "value" in e or not source:
                env[e["name"]] = str(e.get("value", ""))
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                try:
                    secret = await kube.get(SECRETS, ref["name"], namespace=meta.get("namespace"))
                except NotFound:
                    secret = {}
                value = (secret.get("data") or {}).get(ref["key"])
                if value is None:
                    if ref.get("optional"):
                        continue
                    return None
                env[e["name"]] = base64.b64decode(value).decode()
            elif "fieldRef" in source and fields.get(source["fieldRef"].get("fieldPath")):
                env[e["name"]] = str(fields[source["fieldRef"]["fieldPath"]])
        return env
    return {}


def _needs_lookup(pod: Mapping[str, Any], container: str = "runner") -> bool:
    return any(
        "secretKeyRef" in (e.get("valueFrom") or {})
        for c in (pod.get("spec") or {}).get("containers") or ()
        if c.get("name") == container
        for e in c.get("env") or ()
    )


class PodAgent:
    def __init__(
        self,
        kube: KubeClient,
        sim_base_url: str,
        namespace: str,
        *,
        boot_delay: float = 0.0,
        job_of: Callable[[str], int | None] | None = None,
    ) -> None:
        """``job_of(runner_name)``: the job a runner holds; when given, the agent also plays the runner
        image's job hooks + readiness probe (the pod is not Ready while its runner runs a job)."""
        self.kube = kube
        self.job_of = job_of
        self._not_ready: set[Key] = set()
        self.base_url = sim_base_url
        self.namespace = namespace
        self.boot_delay = boot_delay
        self.exit_delay = 0.0
        """Seconds a virtual runner's process takes to end after its last job (as a real runner
        reports, uploads and cleans up): its pod stays Running meanwhile."""
        self.informer = Informer(
            "agent-pods", kube.list_watcher(PODS, namespace=namespace, label_selector="actions-runner")
        )
        self._cancelled: set[asyncio.Task[None]] = set()
        self.tasks: dict[Key, asyncio.Task[None]] = {}
        self.exits: dict[str, int] = {}
        self._session: aiohttp.ClientSession | None = None
        self._informer_task: asyncio.Task[None] | None = None
        self._probe_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PodAgent:
        self._session = aiohttp.ClientSession()
        self.informer.add_handler(self._on_event)
        self._informer_task = asyncio.create_task(self.informer.run(), name="podagent-informer")
        await self.informer.wait_synced()
        if self.job_of is not None:
            self._probe_task = asyncio.create_task(self._probe_loop(), name="podagent-probes")
        return self

    async def _probe_loop(self) -> None:
        assert self.job_of is not None
        while True:
            for key in list(self.tasks):
                busy = self.job_of(key.name) is not None
                if busy != (key in self._not_ready):
                    (self._not_ready.add if busy else self._not_ready.discard)(key)
                    condition = {
                        "type": "Ready",
                        "status": "False" if busy else "True",
                        "reason": "JobRunning" if busy else "",
                    }
                    with contextlib.suppress(Exception):
                        await self.kube.patch_status(
                            PODS,
                            key.name,
                            {"status": {"conditions": [condition]}},
                            namespace=key.namespace,
                            patch_type="strategic",
                        )
            await asyncio.sleep(0.1)

    async def __aexit__(self, *exc: object) -> None:
        tasks = [
            t
            for t in (self._informer_task, self._probe_task, *self.tasks.values(), *self._cancelled)
            if t is not None
        ]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)  # let the closed connections' sockets close

    def _on_event(self, event: InformerEvent) -> None:
        pod = event.obj
        key = Key.of(pod)
        meta = pod["metadata"]
        running = (pod.get("status") or {}).get("phase") == "Running"
        if meta.get("deletionTimestamp") or event.type.value == "DELETED":
            task = self.tasks.pop(key, None)
            if task is not None:
                task.cancel()
                self._cancelled.add(task)  # awaited on stop, before the session closes
                task.add_done_callback(self._cancelled.discard)
            return
        if running and key not in self.tasks and EXIT_CODE_ANNOTATION not in (meta.get("annotations") or {}):
            self.tasks[key] = asyncio.create_task(self._start(key, pod), name=f"runner-{key.name}")

    async def _start(self, key: Key, pod: Mapping[str, Any]) -> None:
        if not _needs_lookup(pod):
            await self._run(key, container_env(pod))
            return
        while True:
            env = await resolve_env(self.kube, pod)
            if env is not None:
                break
            await asyncio.sleep(0.5)  # as the kubelet retries a container whose Secret is missing
        await self._run(key, env)

    async def _run(self, key: Key, env: dict[str, str]) -> None:
        code = await run_virtual_runner(
            self.base_url, env, boot_delay=self.boot_delay, session=self._session, poll_wait=1.0
        )
        self.exits[key.name] = code
        if self.exit_delay:
            await asyncio.sleep(self.exit_delay)  # the simulated process is still ending
        with contextlib.suppress(Exception):
            await self.kube.patch(
                PODS,
                key.name,
                {
                    "metadata": {
                        "annotations": {EXIT_CODE_ANNOTATION: str(code), EXIT_CONTAINER_ANNOTATION: "runner"}
                    }
                },
                namespace=key.namespace,
            )
