"""The EphemeralRunner controller: one scale-set runner, its JIT Secret and its pod.

Thin: it observes (the EphemeralRunner, its pod and Secret), asks
:func:`runnerd.reconcile.lifecycle.decide` what to do (kind ``EPHEMERAL``; the facts come from
:mod:`runnerd.reconcile.ephemeralrunner`), and carries the steps out with
:func:`runnerd.controller.lifecycle.perform_steps`: :class:`EphemeralRunnerHome` is where the
runner lives in Kubernetes, :class:`ScaleSetRegistry` where it lives in the Actions service.

Guarantees: a runner that holds a job is never removed (the service's ``JobStillRunning`` stops
the steps and the removal is tried again every 30 s); a finalizer never wedges on a runner the
service no longer has (404 and a vanished scale set count as removed); an EphemeralRunner whose
finalizers this process removed is not finalized again when a lagging cache shows it (no second
removal from the service: :class:`runnerd.controller.lifecycle.Finalized`); the JIT config reaches
the pod only through its Secret and is never logged; a 409 for the runner's name is ARC's §8.2
(the same scale set's stale registration is removed and the creation retried; another scale set's
name ends this EphemeralRunner).

Writes per runner (issue #10, fifth pass, as for a Runner: :mod:`runnerd.controller.runner`): a
new JIT config's Secret and the pod are written concurrently
(:func:`runnerd.controller.runner_objects.create_pod_beside_secret`), one round trip instead of
two; a pod whose Secret could not be written is deleted again and the registration removed; a
replacement pod (the Secret is there) is only created. An EphemeralRunner of an EphemeralRunnerSet
gets no ``PodCreated`` Event (its set records one ``RunnersCreated`` Event per round of
creations); one on its own still does.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from runnerd.api import ApiParseError
from runnerd.api.scaleset import EphemeralRunner
from runnerd.api.scaleset import constants as c
from runnerd.controller.common import PODS, StopSteps, controller_kind
from runnerd.controller.lifecycle import Finalized, RunnerRef, perform_steps
from runnerd.controller.runner_objects import create_pod_beside_secret
from runnerd.controller.scaleset_common import (
    API_RETRY,
    EPHEMERAL_RUNNER_SETS,
    EPHEMERAL_RUNNERS,
    ScaleSetAPIs,
    ScaleSetStats,
    owned_by,
    set_finalizers,
    write_status,
)
from runnerd.github.actions.api import ScaleSetAPI
from runnerd.github.actions.errors import (
    ActionsServiceError,
    JobStillRunning,
    RunnerExists,
    RunnerNotFound,
    ScaleSetNotFound,
)
from runnerd.github.actions.models import ScaleSetJitConfig
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import SECRETS
from runnerd.manifests.scaleset import (
    LABEL_RUNNER_POD,
    SECRET_KEY_RUNNER_ID,
    build_jit_secret,
    build_runner_pod,
    uses_container_hooks,
)
from runnerd.reconcile.ephemeralrunner import (
    JOB_STILL_RUNNING_RETRY,
    runner_facts,
    runner_status,
    status_differs,
)
from runnerd.reconcile.lifecycle import RunnerDecision, Step, decide
from runnerd.reconcile.podstate import RunnerPodState, runner_container_state
from runnerd.runtime import AlreadyExists, EventRecorder, Informer, Invalid, Key, NotFound, Result

logger = logging.getLogger(__name__)

FINALIZERS = (c.FINALIZER_EPHEMERAL_RUNNER, c.FINALIZER_RUNNER_REGISTRATION)
SEEN_GRACE = 30.0
"""How long a Secret or pod this process created may be missing from the informer's cache."""


class ScaleSetRegistry:
    """The GitHub side of the steps for scale-set runners (a :class:`RunnerRegistry`)."""

    def __init__(
        self, ctl: EphemeralRunnerController, namespace: str, spec: Mapping[str, Any], runner_id: int | None
    ) -> None:
        self.ctl = ctl
        self.namespace = namespace
        self.spec = spec
        self.runner_id = runner_id

    async def drain(self, ref: RunnerRef) -> None:
        """Nothing to drain: a scale set routes jobs by the set, not by a runner's labels."""

    def forget(self, uid: str) -> None:
        if self.runner_id is not None:
            self.ctl.apis.forget_removed(self.spec, self.runner_id)
        self.ctl.pods_made.pop(uid, None)
        self.ctl.secrets_made.pop(uid, None)

    async def deregister(self, ref: RunnerRef) -> None:
        """Remove the registration: done, or already gone; ``JobStillRunning`` stops the steps."""
        if ref.runner_id is None or self.ctl.apis.removed(self.spec, ref.runner_id):
            return
        try:
            api = await self.ctl.apis.for_object(self.namespace, self.spec)
            await api.remove_runner(ref.runner_id)
        except JobStillRunning:
            self.ctl.stats.busy_refusals += 1
            await self.ctl.recorder.normal(
                ref.target, "RunnerBusy", f"runner {ref.name} is running a job; removed once it is done"
            )
            raise StopSteps(Result(requeue_after=JOB_STILL_RUNNING_RETRY)) from None
        except (RunnerNotFound, ScaleSetNotFound):
            pass  # already gone: nothing can wedge on it
        except ActionsServiceError as exc:
            await self.ctl.recorder.warning(ref.target, "RemoveRunnerFailed", f"removing {ref.name}: {exc}")
            raise StopSteps(Result(requeue_after=API_RETRY)) from None
        self.ctl.stats.deregistrations += 1
        self.ctl.apis.mark_removed(self.spec, ref.runner_id)


class EphemeralRunnerController:
    def __init__(
        self,
        *,
        kube: KubeClient,
        apis: ScaleSetAPIs,
        recorder: EventRecorder,
        runners: Informer,
        pods: Informer,
        secrets: Informer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.apis = apis
        self.recorder = recorder
        self.runners = runners
        self.pods = pods
        self.secrets = secrets
        self.clock = clock
        self.stats = ScaleSetStats()
        self.pods_made: dict[str, float] = {}
        """uid -> when this process created its pod, until the informer shows it."""
        self.secrets_made: dict[str, tuple[float, int]] = {}
        """uid -> (when, runner id) this process created its JIT Secret, until the informer shows it."""
        self.finalized = Finalized(clock)
        """The EphemeralRunners whose finalizers this process removed (bounded)."""

    def recently(self, made: float | None) -> bool:
        return made is not None and self.clock() - made < SEEN_GRACE

    async def reconcile(self, key: Key) -> Result | None:
        obj = self.runners.store.get(key)
        if obj is None or self.finalized.holds(obj):  # finalized by us: gone, whatever the cache says
            return None
        try:
            er = EphemeralRunner.from_dict(obj)
        except ApiParseError as exc:
            await self.recorder.warning(obj, "InvalidSpec", str(exc))
            return None
        uid = er.metadata.uid or ""
        pod = self.pods.store.get(key)
        pod = pod if pod is not None and owned_by(pod, uid) else None
        secret = self.secrets.store.get(key)
        secret = secret if secret is not None and owned_by(secret, uid) else None
        if pod is not None:
            self.pods_made.pop(uid, None)
        made = self.secrets_made.get(uid)
        if secret is not None or (made is not None and not self.recently(made[0])):
            self.secrets_made.pop(uid, None)
            made = None
        if er.metadata.deletion_timestamp is None and er.status.phase == c.PHASE_FAILED:
            return None  # InvalidPod: failed for good, as in ARC (deleting it releases it)
        pod_state = runner_container_state(pod) if pod is not None else None
        runner_id = er.status.runner_id or secret_runner_id(secret) or (made[1] if made else None)
        spec = obj.get("spec") or {}
        gone = runner_id is not None and self.apis.removed(spec, runner_id)
        facts = runner_facts(er, pod_state, runner_id=runner_id, gone=gone, now=self.clock())
        decision = decide(facts)
        result = Result(requeue_after=decision.requeue_after)
        home = EphemeralRunnerHome(self, obj, pod, secret)
        ref = RunnerRef(obj, key.name, uid, None, runner_id)
        registry = ScaleSetRegistry(self, key.namespace, spec, runner_id)
        try:
            await perform_steps(decision.steps, ref, home, registry, self.finalized)
        except StopSteps as stop:
            result = stop.result
        if not facts.deleting and Step.DELETE_RUNNER not in decision.steps and not home.terminal:
            await self._write_status(home, er, decision, pod_state, home.runner_id or runner_id)
        return result

    async def _write_status(
        self,
        home: EphemeralRunnerHome,
        er: EphemeralRunner,
        decision: RunnerDecision,
        pod_state: RunnerPodState | None,
        runner_id: int | None,
    ) -> None:
        """ARC's status fields (the listener's job fields are kept); a failed pod is recorded in
        ``failures`` for the back-off."""
        obj = home.obj
        current = dict(obj.get("status") or {})
        want = runner_status(er, decision, pod_state, runner_id=runner_id)
        if decision.failed and home.pod is not None:
            failures = dict(current.get("failures") or {})
            failures[str(home.pod["metadata"].get("uid"))] = dt.datetime.fromtimestamp(
                self.clock(), dt.UTC
            ).strftime("%Y-%m-%dT%H:%M:%SZ")
            want["failures"] = failures
        if status_differs(current, want):
            await write_status(self.kube, EPHEMERAL_RUNNERS, obj, want)


def secret_runner_id(secret: Mapping[str, Any] | None) -> int | None:
    if secret is None:
        return None
    raw = (secret.get("data") or {}).get(SECRET_KEY_RUNNER_ID)
    try:
        return int(base64.b64decode(raw).decode()) if raw else None
    except (ValueError, binascii.Error):
        return None


class EphemeralRunnerHome:
    """Where an EphemeralRunner lives: its object (finalizers, deletion), its JIT Secret, its pod."""

    def __init__(
        self,
        ctl: EphemeralRunnerController,
        obj: Mapping[str, Any],
        pod: Mapping[str, Any] | None,
        secret: Mapping[str, Any] | None,
    ) -> None:
        self.ctl = ctl
        self.kube = ctl.kube
        self.obj = obj
        self.pod = pod
        self.secret = secret
        self.runner_id: int | None = None
        """Registered by this reconcile."""
        self.terminal = False
        """Failed for good (``InvalidPod``) by this reconcile: no other status is written."""
        meta = obj["metadata"]
        self.name: str = meta["name"]
        self.namespace: str = meta["namespace"]
        self.uid: str = meta.get("uid") or ""

    async def add_finalizer(self) -> None:
        present = list(self.obj["metadata"].get("finalizers") or ())
        await set_finalizers(
            self.kube, EPHEMERAL_RUNNERS, self.obj, [*present, *(f for f in FINALIZERS if f not in present)]
        )

    async def consume_credentials(self) -> None:
        """Nothing: the JIT config stays in its Secret for a replacement pod (ARC)."""

    async def create_pod(self) -> None:
        """A new JIT config (when its Secret is missing) into its Secret, written with the pod
        (:func:`~runnerd.controller.runner_objects.create_pod_beside_secret`: a pod whose Secret
        could not be written is deleted again, and the registration removed); a replacement pod
        uses the Secret that is there (ARC keeps the JIT config for it)."""
        try:
            manifest = build_runner_pod(self.obj)
        except ValueError as exc:
            await self._invalid(str(exc))
        ctl = self.ctl
        if ctl.recently(ctl.pods_made.get(self.uid)):
            raise StopSteps(Result(requeue_after=1.0))  # created a moment ago; the informer lags
        made = ctl.secrets_made.get(self.uid)
        try:
            if self.secret is None and not (made is not None and ctl.recently(made[0])):
                secret, runner_id = await self._register()
                await create_pod_beside_secret(
                    self.kube, manifest, self.namespace, self._store_jit(secret, runner_id)
                )
            else:
                await self.kube.create(PODS, manifest, namespace=self.namespace)
        except AlreadyExists:
            raise StopSteps(Result(requeue_after=5.0)) from None
        except Invalid as exc:
            await self._invalid(str(exc))
        ctl.pods_made[self.uid] = ctl.clock()
        ctl.stats.pods_created += 1
        if controller_kind(self.obj) != EPHEMERAL_RUNNER_SETS.kind:  # a set's: one Event per round
            await self.ctl.recorder.normal(self.obj, "PodCreated", f"created pod {self.name}")

    async def _invalid(self, message: str) -> NoReturn:
        """ARC's ``InvalidPod``: the EphemeralRunner is ``Failed`` for good (it counts as failed in its
        set until it is deleted; its finalizer removes the registration then)."""
        self.terminal = True
        await self.ctl.recorder.warning(self.obj, "InvalidPod", message)
        status = {**(self.obj.get("status") or {}), "phase": c.PHASE_FAILED, "reason": "InvalidPod"}
        status["message"] = message
        with contextlib.suppress(NotFound):
            await self.kube.patch_status(
                EPHEMERAL_RUNNERS, self.name, {"status": status}, namespace=self.namespace
            )
        raise StopSteps(Result())

    async def _register(self) -> tuple[dict[str, Any], int]:
        """A JIT config and the Secret that carries it (its runner id is written to the status after
        the steps)."""
        spec = self.obj.get("spec") or {}
        scale_set_id = int(spec.get("runnerScaleSetId") or 0)
        try:
            api = await self.ctl.apis.for_object(self.namespace, spec)
            config = await self._jit_config(api, scale_set_id, spec)
        except ActionsServiceError as exc:
            await self.ctl.recorder.warning(self.obj, "JitConfigFailed", f"registering {self.name}: {exc}")
            raise StopSteps(Result(requeue_after=API_RETRY)) from None
        self.runner_id = config.runner.id
        secret = build_jit_secret(
            self.obj, encoded=config.encoded, runner_id=config.runner.id, scale_set_id=scale_set_id
        )
        return secret, config.runner.id

    async def _store_jit(self, secret: dict[str, Any], runner_id: int) -> None:
        """The JIT Secret (one already there is left as it is); when it cannot be written, the
        registration it carried is removed (its pod is deleted: ``create_pod_beside_secret``)."""
        try:
            with contextlib.suppress(AlreadyExists):
                await self.kube.create(SECRETS, secret, namespace=self.namespace)
        except Exception:
            await self._abandon(runner_id)
            raise
        self.ctl.secrets_made[self.uid] = (self.ctl.clock(), runner_id)

    async def _abandon(self, runner_id: int) -> None:
        """Remove a registration no pod will use (a failure is logged: the next registration of
        this name removes it as stale, ARC's §8.2)."""
        self.runner_id = None
        try:
            api = await self.ctl.apis.for_object(self.namespace, self.obj.get("spec") or {})
            await api.remove_runner(runner_id)
        except (RunnerNotFound, ScaleSetNotFound):
            pass
        except ActionsServiceError as exc:
            logger.warning("removing the unused registration of %s: %s", self.name, exc)

    async def _jit_config(
        self, api: ScaleSetAPI, scale_set_id: int, spec: Mapping[str, Any]
    ) -> ScaleSetJitConfig:
        """ARC's §8.2: on a 409, a registration of the same name in this scale set is stale (no pod
        of ours uses it): remove it and retry next time; in another scale set: this runner is over."""
        work_folder = next(
            (
                x.get("workingDir") or ""
                for x in (spec.get("spec") or {}).get("containers") or ()
                if x.get("name") == "runner"
            ),
            "",
        )
        try:
            return await api.generate_jit_config(scale_set_id, self.name, work_folder)
        except RunnerExists:
            stale = await api.get_runner_by_name(self.name)
            if stale is None:
                raise StopSteps(Result(requeue_after=5.0)) from None
            if stale.scale_set_id != scale_set_id:
                await self.ctl.recorder.warning(
                    self.obj, "RunnerNameTaken", f"a runner named {self.name} is in another scale set"
                )
                await self.delete_runner()
                raise StopSteps(Result()) from None
            await api.remove_runner(stale.id)
            await self.ctl.recorder.normal(
                self.obj, "StaleRegistrationRemoved", f"removed a stale {self.name}"
            )
            raise StopSteps(Result(requeue_after=0.0)) from None

    async def delete_pod(self) -> None:
        if self.pod is None:
            return
        await self.kube.delete(
            PODS, self.name, namespace=self.namespace, uid=self.pod["metadata"].get("uid"), missing_ok=True
        )
        self.ctl.stats.pods_deleted += 1

    async def delete_runner(self) -> None:
        await self.kube.delete(
            EPHEMERAL_RUNNERS, self.name, namespace=self.namespace, uid=self.uid, missing_ok=True
        )
        self.ctl.stats.runners_deleted += 1

    async def remove_finalizer(self) -> None:
        """The JIT Secret (single-use, useless now) and, in Kubernetes container mode, what the hooks
        left of a job (pods and Secrets labelled ``runner-pod``), then both finalizers."""
        await self.kube.delete(SECRETS, self.name, namespace=self.namespace, missing_ok=True)
        if uses_container_hooks(self.obj):
            selector = f"{LABEL_RUNNER_POD}={self.name}"
            for resource in (PODS, SECRETS):
                found = await self.kube.list(resource, namespace=self.namespace, label_selector=selector)
                for item in found.items:
                    name = item["metadata"]["name"]
                    await self.kube.delete(resource, name, namespace=self.namespace, missing_ok=True)
        present = self.obj["metadata"].get("finalizers") or ()
        await set_finalizers(
            self.kube, EPHEMERAL_RUNNERS, self.obj, [f for f in present if f not in FINALIZERS]
        )
