"""The listener manager: one in-process listener task per AutoscalingListener object, on the leader.

Scale-set mode runs each scale set's listener
(:class:`~runnerd.controller.autoscalinglistener.AutoscalingListener`) as a task of the controller
process instead of a pod (docs/scale-sets-listener.md has the trade-off).
The AutoscalingListener objects the AutoscalingRunnerSet controller creates stay the source of truth:

* :class:`ListenerController` is a controller on the AutoscalingListener informer, so it runs only
  while this process holds the leader Lease; when it stops (lost leadership, shutdown) every listener
  task is cancelled (each deletes its session on the way out).
* a listener is started when its object appears and restarted when the object's spec (scale set id,
  min/max, EphemeralRunnerSet, configuration) or uid changes; stopped when it is deleted. A listener
  that left a session behind (``status.sessionId``) deletes it before opening its own.
* ``set_desired(replicas, patch_id)`` merge-patches the EphemeralRunnerSet's ``spec.replicas`` and
  ``spec.patchID`` (ARC's listener patch, reference §10.3); each ``JobStarted`` patches the named
  EphemeralRunner's status with the job (``jobRequestId``, ``jobRepositoryName``, ``jobId``,
  ``workflowRunId``, ``jobWorkflowRef``, ``jobDisplayName``; a missing runner is ignored).
* a vanished scale set (:class:`~runnerd.controller.autoscalinglistener.ScaleSetGone`): the
  AutoscalingRunnerSet's ``runner-scale-set-id`` annotation is cleared, and the listener object and
  the EphemeralRunnerSet it fed are deleted (their runners were registered in the vanished scale set),
  so the AutoscalingRunnerSet controller registers a new scale set, a new set and a new listener.
* a listener that stopped on an unexpected error (phase ``Failed``) is started again after
  ``API_RETRY`` seconds; so is one that could not be started (its Secret missing, say).
* the object's status is the listener's true state, refreshed every :data:`STATUS_PERIOD` seconds
  while it changes: ``phase`` (Pending, Listening, Reconnecting, Gone, Failed), ``sessionId``,
  ``lastError``, ``desiredRunners``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from runnerd.api.scaleset import constants as c
from runnerd.controller.autoscalinglistener import AutoscalingListener, ListenerSettings, ScaleSetGone
from runnerd.controller.listener_metrics import ListenerMetrics
from runnerd.controller.scaleset_common import (
    API_RETRY,
    AUTOSCALING_LISTENERS,
    AUTOSCALING_RUNNER_SETS,
    EPHEMERAL_RUNNER_SETS,
    EPHEMERAL_RUNNERS,
    ScaleSetAPIs,
    write_status,
)
from runnerd.github.actions.clients import ActionsClients
from runnerd.github.actions.config import ConfigURL
from runnerd.github.actions.errors import ActionsServiceError
from runnerd.github.actions.models import ScaleSetJob
from runnerd.github.budget import Clock
from runnerd.github.errors import CredentialsError, GitHubConfigError
from runnerd.kube.client import KubeClient
from runnerd.runtime import Controller, Informer, Key, NotFound, Obj, Result

log = logging.getLogger("runnerd.controller.listeners")

STATUS_PERIOD = 2.0
"""Seconds between two looks at a running listener's state (its status is written when it changed)."""

Fingerprint = tuple[Any, ...]


@dataclass
class RunningListener:
    fingerprint: Fingerprint
    listener: AutoscalingListener
    task: asyncio.Task[None]


def fingerprint(obj: Obj) -> Fingerprint:
    """What restarts a listener when it changes."""
    spec = obj.get("spec") or {}
    keys = (
        "runnerScaleSetId",
        "minRunners",
        "maxRunners",
        "ephemeralRunnerSetName",
        "autoscalingRunnerSetNamespace",
        "githubConfigUrl",
        "githubConfigSecret",
    )
    return (obj["metadata"].get("uid"), *(spec.get(k) for k in keys))


def scale_set_labels(spec: Mapping[str, Any]) -> dict[str, str]:
    """ARC's scale-set metric labels: ``name``, ``namespace`` (the AutoscalingRunnerSet's) and the
    configuration's ``enterprise``/``organization``/``repository``."""
    labels = {
        "name": str(spec.get("autoscalingRunnerSetName") or ""),
        "namespace": str(spec.get("autoscalingRunnerSetNamespace") or ""),
        "enterprise": "",
        "organization": "",
        "repository": "",
    }
    try:
        scope = ConfigURL.parse(str(spec.get("githubConfigUrl") or "")).scope
    except GitHubConfigError:
        return labels
    if scope.kind == "enterprise":
        labels["enterprise"] = scope.name
    elif scope.kind == "organization":
        labels["organization"] = scope.name
    else:
        labels["organization"], _, labels["repository"] = scope.name.partition("/")
    return labels


def job_status(job: ScaleSetJob) -> dict[str, Any]:
    """The EphemeralRunner status fields ARC's listener writes when a job starts (§10.3)."""
    return {
        "jobRequestId": job.runner_request_id,
        "jobRepositoryName": f"{job.owner_name}/{job.repository_name}",
        "jobId": job.job_id,
        "workflowRunId": job.workflow_run_id,
        "jobWorkflowRef": job.job_workflow_ref,
        "jobDisplayName": job.job_display_name,
    }


class ListenerManager:
    """See the module docstring."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        listeners: Informer,
        apis: ScaleSetAPIs,
        clients: ActionsClients,
        clock: Clock = time.time,
        retry_base_s: float = 1.0,
    ) -> None:
        self.kube = kube
        self.listeners = listeners
        self.apis = apis
        self.clients = clients
        self.clock = clock
        self.retry_base_s = retry_base_s
        self.running: dict[Key, RunningListener] = {}
        self.gone_total = 0

    def metrics(self) -> Iterator[ListenerMetrics]:
        for running in list(self.running.values()):
            yield running.listener.metrics

    def running_scale_sets(self) -> Iterator[dict[str, str]]:
        """ARC's scale-set labels of each listener whose task runs (``gha_controller_running_listeners``)."""
        for key, running in list(self.running.items()):
            obj = self.listeners.store.get(key)
            if obj is not None and not running.task.done():
                yield scale_set_labels(obj.get("spec") or {})

    async def reconcile(self, key: Key) -> Result | None:
        obj = self.listeners.store.get(key)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            await self.stop(key)
            return None
        spec = obj.get("spec") or {}
        if not spec.get("runnerScaleSetId") or not spec.get("ephemeralRunnerSetName"):
            return None
        running = self.running.get(key)
        if running is not None and running.fingerprint != fingerprint(obj):
            await self.stop(key)
            running = None
        if running is None:
            try:
                running = await self._start(key, obj)
            except (ActionsServiceError, CredentialsError, ValueError) as exc:  # ValueError: config URL
                error = f"{type(exc).__name__}: {exc}"
                await write_status(
                    self.kube, AUTOSCALING_LISTENERS, obj, {"phase": "Failed", "lastError": error}
                )
                return Result(requeue_after=API_RETRY)
        await write_status(self.kube, AUTOSCALING_LISTENERS, obj, listener_status(running.listener))
        if not running.task.done():
            return Result(requeue_after=STATUS_PERIOD)
        if running.listener.phase == "Failed":  # a bug stopped it: start it again after a while
            self.running.pop(key, None)
            return Result(requeue_after=API_RETRY)
        return None  # gone: the listener object is being replaced

    async def _start(self, key: Key, obj: Obj) -> RunningListener:
        spec = obj.get("spec") or {}
        namespace = str(spec.get("autoscalingRunnerSetNamespace") or key.namespace)
        data = await self.apis.secret_data(namespace, str(spec.get("githubConfigSecret") or ""))
        connection = await self.apis.connection(namespace, spec)
        client = await self.clients.for_config(str(spec.get("githubConfigUrl") or ""), data, connection)
        runner_set = str(spec["ephemeralRunnerSetName"])

        async def set_desired(replicas: int, patch_id: int) -> None:
            patch = {"spec": {"replicas": replicas, "patchID": patch_id}}
            await self.kube.patch(EPHEMERAL_RUNNER_SETS, runner_set, patch, namespace=namespace)

        async def job_started(job: ScaleSetJob) -> None:
            if not job.runner_name:
                return
            with contextlib.suppress(NotFound):
                await self.kube.patch_status(
                    EPHEMERAL_RUNNERS, job.runner_name, {"status": job_status(job)}, namespace=namespace
                )

        max_runners = spec.get("maxRunners")
        settings = ListenerSettings(
            scale_set_id=int(spec["runnerScaleSetId"]),
            min_runners=int(spec.get("minRunners") or 0),
            max_runners=None if max_runners is None else int(max_runners),
            owner=key.name,
            retry_base_s=self.retry_base_s,
        )
        listener = AutoscalingListener(
            client,
            settings,
            set_desired,
            on_job_started=job_started,
            metrics=ListenerMetrics(scale_set_labels(spec)),
            clock=self.clock,
            stale_session_id=str((obj.get("status") or {}).get("sessionId") or ""),
        )
        task = asyncio.create_task(self._run(key, obj, listener), name=f"listener-{key.name}")
        running = RunningListener(fingerprint(obj), listener, task)
        self.running[key] = running
        log.info("listener %s started (scale set %d)", key, settings.scale_set_id)
        return running

    async def _run(self, key: Key, obj: Obj, listener: AutoscalingListener) -> None:
        try:
            await listener.run()
        except ScaleSetGone as gone:
            log.warning("listener %s: %s; registering it again", key, gone)
            self.gone_total += 1
            await self._write_gone(key, obj, listener)
            await self._re_register(key, obj)
        except Exception as exc:  # a bug: say so on the object, never take the process down
            listener.phase, listener.last_error = "Failed", f"{type(exc).__name__}: {exc}"
            log.exception("listener %s stopped", key)
            await self._write_gone(key, obj, listener)

    async def _write_gone(self, key: Key, obj: Obj, listener: AutoscalingListener) -> None:
        current = self.listeners.store.get(key) or obj
        try:
            await write_status(self.kube, AUTOSCALING_LISTENERS, current, listener_status(listener))
        except Exception as exc:  # best effort: the next reconcile writes it
            log.info("listener %s: status not written (%s)", key, exc)

    async def _re_register(self, key: Key, obj: Obj) -> None:
        """Clear the scale set id, delete the listener and its set: the AutoscalingRunnerSet
        controller then registers the scale set again and creates both anew."""
        spec = obj.get("spec") or {}
        namespace = str(spec.get("autoscalingRunnerSetNamespace") or "")
        name = str(spec.get("autoscalingRunnerSetName") or "")
        patch = {"metadata": {"annotations": {c.ANNOTATION_SCALE_SET_ID: None}}}
        try:
            await self.kube.patch(AUTOSCALING_RUNNER_SETS, name, patch, namespace=namespace)
            await self.kube.delete(
                EPHEMERAL_RUNNER_SETS,
                str(spec.get("ephemeralRunnerSetName")),
                namespace=namespace,
                missing_ok=True,
            )
            await self.kube.delete(AUTOSCALING_LISTENERS, key.name, namespace=key.namespace, missing_ok=True)
        except NotFound:
            return
        except Exception as exc:
            log.warning("listener %s: re-registration not requested (%s)", key, exc)

    async def stop(self, key: Key) -> None:
        running = self.running.pop(key, None)
        if running is None:
            return
        running.task.cancel()
        await asyncio.wait({running.task})
        log.info("listener %s stopped", key)

    async def stop_all(self) -> None:
        for key in list(self.running):
            await self.stop(key)


def listener_status(listener: AutoscalingListener) -> dict[str, Any]:
    desired = listener.metrics.gauges.get("gha_desired_runners")
    status: dict[str, Any] = {
        "phase": listener.phase,
        "sessionId": listener.session_id,
        "lastError": listener.last_error,
    }
    if desired is not None:
        status["desiredRunners"] = int(desired)
    return status


class ListenerController(Controller):
    """The AutoscalingListener controller: a :class:`Controller` whose stop also stops every listener."""

    def __init__(self, manager: ListenerManager, *, workers: int = 4) -> None:
        super().__init__("autoscalinglistener", manager.reconcile, workers=workers)
        self.listener_manager = manager
        self.watch(manager.listeners)

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            await self.listener_manager.stop_all()
