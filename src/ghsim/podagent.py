"""The runner process of runner pods on kwok nodes: one virtual runner per Running pod.

kwok runs no containers.  This agent watches pods, and for each Running pod with a ``runner``
container (and no exit annotation yet) runs :func:`ghsim.agent.run_virtual_runner` with that
container's environment.  When the virtual runner exits, the agent ends the container the way
devcluster's kwok stages expect: it annotates the pod ``devcluster.runnerd.dev/exit-code`` (and
``…/exit-container``), and kwok terminates the container with that code.  A pod that is deleted
cancels its virtual runner, as killing the container would.

Runner pods of both of ARC's modes work: legacy ``RunnerDeployment`` pods (``RUNNER_TOKEN`` …) and
scale-set ``EphemeralRunner`` pods (``ACTIONS_RUNNER_INPUT_JITCONFIG`` from the scale set's
``generatejitconfig``).  Environment values may be literal or come from ``secretKeyRef``,
``configMapKeyRef`` or ``fieldRef`` (``metadata.name``, ``metadata.namespace``, ``spec.nodeName``,
``status.podIP``).

A container whose required ``secretKeyRef``/``configMapKeyRef`` is missing does not start: the
agent reads it again every half second, as the kubelet retries a CreateContainerConfigError.
Entering the agent (``async with``) returns once it has listed the pods it watches.

The one pod agent of the project: ``runnerd-dev github-sim --pod-agent``, the demo, the integration
tests and the benches all use it, in-process through :func:`connect`::

    async with connect(kubeconfig, sim.base_url, namespace="default") as agent:
        ...
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from .agent import run_virtual_runner

log = logging.getLogger(__name__)

EXIT_CODE_ANNOTATION = "devcluster.runnerd.dev/exit-code"
EXIT_CONTAINER_ANNOTATION = "devcluster.runnerd.dev/exit-container"

JSON = dict[str, Any]
#: reads one key of a Secret or ConfigMap: (kind, namespace, name, key) -> value or None
RefReader = Callable[[str, str, str, str], Awaitable[str | None]]


@dataclass(frozen=True)
class PodKey:
    namespace: str
    name: str
    uid: str

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodKey:
        meta = pod.get("metadata") or {}
        return cls(str(meta.get("namespace", "")), str(meta.get("name", "")), str(meta.get("uid", "")))


def runner_container(pod: Mapping[str, Any], container: str = "runner") -> Mapping[str, Any] | None:
    for c in (pod.get("spec") or {}).get("containers") or ():
        if c.get("name") == container:
            return c  # type: ignore[no-any-return]
    return None


def wants_virtual_runner(pod: Mapping[str, Any], container: str = "runner") -> bool:
    """A Running pod with the runner container, not being deleted and not ended yet."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False
    if EXIT_CODE_ANNOTATION in (meta.get("annotations") or {}):
        return False
    if (pod.get("status") or {}).get("phase") != "Running":
        return False
    return runner_container(pod, container) is not None


def _field(pod: Mapping[str, Any], path: str) -> str | None:
    node: Any = pod
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return None if node is None else str(node)


def required_refs(pod: Mapping[str, Any], container: str = "runner") -> set[str]:
    """The names of the container's variables that must come from a Secret or ConfigMap key."""
    c = runner_container(pod, container) or {}
    names = set()
    for item in c.get("env") or ():
        source = item.get("valueFrom") or {}
        ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
        if ref is not None and not ref.get("optional") and item.get("name"):
            names.add(str(item["name"]))
    return names


async def container_env(
    pod: Mapping[str, Any], read_ref: RefReader | None = None, container: str = "runner"
) -> dict[str, str]:
    """The runner container's environment as the process would see it (``$(VAR)`` not expanded)."""
    c = runner_container(pod, container)
    if c is None:
        return {}
    namespace = str((pod.get("metadata") or {}).get("namespace", ""))
    env: dict[str, str] = {}
    for item in c.get("env") or ():
        name = item.get("name")
        if not name:
            continue
        if "value" in item:
            env[name] = str(item.get("value") or "")
            continue
        source = item.get("valueFrom") or {}
        value: str | None = None
        if "fieldRef" in source:
            value = _field(pod, str(source["fieldRef"].get("fieldPath", "")))
        elif read_ref is not None and "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            value = await read_ref("Secret", namespace, ref.get("name", ""), ref.get("key", ""))
        elif read_ref is not None and "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            value = await read_ref("ConfigMap", namespace, ref.get("name", ""), ref.get("key", ""))
        if value is not None:
            env[name] = value
    return env


class PodAgent:
    """Watches pods through a kubernetes_asyncio ``CoreV1Api`` and plays their runner process."""

    def __init__(
        self,
        api: Any,
        base_url: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        container: str = "runner",
        boot_delay: float = 0.0,
        poll_wait: float = 20.0,
        time_scale: float = 1.0,
        watch: bool = True,
        readiness: bool = True,
    ) -> None:
        """``watch=False``: do not list/watch pods; the caller feeds events to :meth:`handle`.
        ``readiness``: mark the pod not Ready while its runner runs a job (the job signal of
        runnerd's runner image, see docs/runner-pods.md)."""
        self.readiness = readiness
        self.api = api
        self.watch = watch
        self.base_url = base_url
        self.namespace = namespace
        self.label_selector = label_selector
        self.container = container
        self.boot_delay = boot_delay
        self.poll_wait = poll_wait
        self.time_scale = time_scale
        self._cancelled: set[asyncio.Task[None]] = set()
        self.tasks: dict[PodKey, asyncio.Task[None]] = {}
        self.exits: dict[PodKey, int] = {}
        self.exit_delay = 0.0
        """Seconds a runner's process takes to end after its last job (a real runner reports,
        uploads and cleans up): its pod stays Running meanwhile."""
        self.synced = asyncio.Event()
        """Set once the first list of pods has been handled."""
        self._session: aiohttp.ClientSession | None = None
        self._watch_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PodAgent:
        await self.start()
        if self.watch:
            await self.synced.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        # one long poll per runner: no pool limit (aiohttp's default 100 stalls a larger fleet)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        if self.watch:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch(), name="ghsim-podagent")

    async def stop(self) -> None:
        tasks = [t for t in (self._watch_task, *self.tasks.values(), *self._cancelled) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
        self._watch_task = None
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)  # let the closed connections' sockets close
            self._session = None

    # ---- events ------------------------------------------------------------------------------

    def handle(self, event_type: str, pod: Mapping[str, Any]) -> None:
        """React to one pod event (ADDED, MODIFIED, DELETED)."""
        key = PodKey.of(pod)
        if event_type == "DELETED" or (pod.get("metadata") or {}).get("deletionTimestamp"):
            task = self.tasks.pop(key, None)
            if task is not None:
                task.cancel()
                self._cancelled.add(task)  # awaited on stop, before the session closes
                task.add_done_callback(self._cancelled.discard)
            return
        if key in self.tasks or key in self.exits or not wants_virtual_runner(pod, self.container):
            return
        self.tasks[key] = asyncio.get_running_loop().create_task(
            self._play(key, pod), name=f"ghsim-runner-{key.namespace}/{key.name}"
        )

    def listed(self, pods: list[JSON]) -> None:
        """Every pod a (re)list found: a pod missing from it was deleted while no watch was open (a
        watch that ended with 410 Gone misses those DELETED events). A hook for subclasses."""

    async def _play(self, key: PodKey, pod: Mapping[str, Any]) -> None:
        required = required_refs(pod, self.container)
        env = await container_env(pod, self._read_ref, self.container)
        while not required <= env.keys():  # the kubelet's CreateContainerConfigError, retried
            await asyncio.sleep(0.5)
            env = await container_env(pod, self._read_ref, self.container)

        async def job_hook(busy: bool) -> None:
            # runnerd's runner image: the job hooks make the readiness probe fail while a job runs;
            # kwok runs no probes, so the agent writes the Ready condition the kubelet would.
            condition = {"type": "Ready", "status": "False" if busy else "True"}
            if busy:
                condition["reason"] = "JobRunning"
            body = {"status": {"conditions": [condition]}}
            with contextlib.suppress(Exception):
                await self.api.patch_namespaced_pod_status(key.name, key.namespace, body)

        code = await run_virtual_runner(
            self.base_url,
            env,
            boot_delay=self.boot_delay,
            session=self._session,
            poll_wait=self.poll_wait,
            time_scale=self.time_scale,
            job_hook=job_hook if self.readiness else None,
        )
        self.exits[key] = code
        if self.exit_delay:
            await asyncio.sleep(self.exit_delay * self.time_scale)  # the process is still ending
        self.tasks.pop(key, None)
        annotations = {EXIT_CODE_ANNOTATION: str(code), EXIT_CONTAINER_ANNOTATION: self.container}
        patch = {"metadata": {"annotations": annotations}}
        try:
            await self.api.patch_namespaced_pod(key.name, key.namespace, patch)
        except Exception as exc:  # the pod may be gone already
            log.info(
                "podagent: cannot annotate %s/%s with exit code %s: %s", key.namespace, key.name, code, exc
            )

    async def _read_ref(self, kind: str, namespace: str, name: str, key: str) -> str | None:
        try:
            if kind == "Secret":
                secret = await self.api.read_namespaced_secret(name, namespace)
                raw = (secret.data or {}).get(key)
                return None if raw is None else base64.b64decode(raw).decode()
            cm = await self.api.read_namespaced_config_map(name, namespace)
            value = (cm.data or {}).get(key)
            return None if value is None else str(value)
        except Exception as exc:
            log.info("podagent: cannot read %s %s/%s: %s", kind, namespace, name, type(exc).__name__)
            return None

    # ---- list + watch ------------------------------------------------------------------------

    async def _list(self) -> tuple[list[JSON], str]:
        kwargs: dict[str, Any] = {"_preload_content": False}
        if self.label_selector:
            kwargs["label_selector"] = self.label_selector
        if self.namespace:
            resp = await self.api.list_namespaced_pod(self.namespace, **kwargs)
        else:
            resp = await self.api.list_pod_for_all_namespaces(**kwargs)
        body: JSON = await resp.json()
        return list(body.get("items") or []), str((body.get("metadata") or {}).get("resourceVersion", ""))

    async def _watch(self) -> None:
        from kubernetes_asyncio import watch
        from kubernetes_asyncio.client.exceptions import ApiException

        while True:
            try:
                pods, version = await self._list()
                seen = set()
                for pod in pods:
                    seen.add(PodKey.of(pod))
                    self.handle("ADDED", pod)
                self.listed(pods)
                self.synced.set()
                for key in [k for k in self.tasks if k not in seen]:
                    gone = self.tasks.pop(key)
                    gone.cancel()
                    self._cancelled.add(gone)
                    gone.add_done_callback(self._cancelled.discard)
                w = watch.Watch()
                kwargs: dict[str, Any] = {"resource_version": version, "timeout_seconds": 300}
                if self.label_selector:
                    kwargs["label_selector"] = self.label_selector
                func = self.api.list_pod_for_all_namespaces
                args: tuple[Any, ...] = ()
                if self.namespace:
                    func, args = self.api.list_namespaced_pod, (self.namespace,)
                async with w.stream(func, *args, **kwargs) as stream:
                    async for event in stream:  # an ERROR event (410 Gone) raises: list again
                        raw = event.get("raw_object")
                        if isinstance(raw, dict):
                            self.handle(str(event.get("type")), raw)
            except asyncio.CancelledError:
                raise
            except (ApiException, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("podagent: watching pods failed (%s); listing again in 1 s", exc)
                await asyncio.sleep(1)


@contextlib.asynccontextmanager
async def connect(kubeconfig: str | None, base_url: str, **options: Any) -> AsyncIterator[PodAgent]:
    """A watching :class:`PodAgent` over a kubernetes_asyncio client of ``kubeconfig`` (None: the
    default kubeconfig); ``options`` are the agent's. Raises ``ValueError`` for an unusable
    kubeconfig."""
    from kubernetes_asyncio import client, config

    configuration = client.Configuration()
    try:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    except config.ConfigException as exc:
        raise ValueError(f"--pod-agent: no usable kubeconfig ({exc})") from None
    async with (
        client.ApiClient(configuration) as api_client,
        PodAgent(client.CoreV1Api(api_client), base_url, **options) as agent,
    ):
        yield agent
