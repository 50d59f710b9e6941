"""Where a RunnerSet's runners live: one StatefulSet each, its pod, and its credential Secret.

:class:`StatefulSetRunners` makes a runner (register with GitHub, create the StatefulSet, then its
Secret; a JIT registration no StatefulSet will use is abandoned) and observes one (its pod, its
Secret, trusting a Secret this process just created for :data:`SECRET_GRACE`).
:class:`StatefulSetHome` is the StatefulSet kind's :class:`runnerd.controller.lifecycle.RunnerHome`:
the Kubernetes side of the lifecycle steps, with the StatefulSet as the unit (deleting the runner
deletes it; its finalizer holds the pod while the removal waits).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from runnerd.api import ApiParseError, RunnerSet
from runnerd.controller.common import (
    ANNOTATION_REGISTRATION,
    ControllerOptions,
    StopSteps,
    controller_ref,
    random_suffix,
)
from runnerd.controller.expectations import Expectations
from runnerd.controller.lifecycle import Lifecycle
from runnerd.github import Scope
from runnerd.github.errors import GitHubError, RateLimitedError
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import SECRETS, STATEFUL_SETS
from runnerd.manifests.pod import RunnerPodError, runner_labels
from runnerd.manifests.runnerset import build_runner_secret, build_runner_statefulset, consume_patch
from runnerd.reconcile.credentials import JitConfig
from runnerd.reconcile.lifecycle import Credentials
from runnerd.reconcile.runnerset import (
    FINALIZER,
    CredentialKind,
    PodObservation,
    RunnerStatefulSet,
    SecretState,
    credential_kind,
    observe_pod,
    runner_name,
    secret_state,
    statefulset_name,
)
from runnerd.runtime import (
    AlreadyExists,
    Conflict,
    EventRecorder,
    Informer,
    Invalid,
    Key,
    NotFound,
    Obj,
    Result,
)

SECRET_GRACE = 30.0
"""How long a write of this process may be missing from the informer before it counts as not done."""


def owner_uid(obj: Mapping[str, Any]) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


class RunnerSetCounts(Protocol):
    statefulsets_created: int
    statefulsets_deleted: int
    credentials_consumed: int


@dataclass(frozen=True)
class Created:
    """What :meth:`StatefulSetRunners.create` did: the new StatefulSet's name, or None; ``failed``
    when the attempt counts toward the RunnerSet's back-off (a bad spec, GitHub refused)."""

    name: str | None
    failed: bool = False


class StatefulSetRunners:
    """Creating and observing the runners of one controller's RunnerSets."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        recorder: EventRecorder,
        lifecycle: Lifecycle,
        pods: Informer,
        secrets: Informer,
        options: ControllerOptions,
        stats: RunnerSetCounts,
        expect: Expectations,
        suffix: Callable[[], str] = random_suffix,
    ) -> None:
        self.kube = kube
        self.recorder = recorder
        self.lifecycle = lifecycle
        self.pods = pods
        self.secrets = secrets
        self.options = options
        self.stats = stats
        self.expect = expect
        self.suffix = suffix
        self._secrets_made: dict[Key, float] = {}

    def observe_pod(self, sts: Mapping[str, Any], info: RunnerStatefulSet) -> PodObservation:
        pod = self.pods.store.get(Key(sts["metadata"]["namespace"], info.runner))
        if pod is not None and owner_uid(pod) != info.uid:
            pod = None
        return observe_pod(pod)

    def observe_secret(self, sts: Mapping[str, Any], info: RunnerStatefulSet) -> SecretState:
        key = Key(sts["metadata"]["namespace"], info.name)
        secret = self.secrets.store.get(key)
        if secret is not None and owner_uid(secret) != info.uid:
            secret = None
        state = secret_state(secret, info.credentials)
        made = self._secrets_made.get(key)
        if secret is not None or (made is not None and time.monotonic() - made > SECRET_GRACE):
            self._secrets_made.pop(key, None)
        elif made is not None:
            return SecretState(Credentials.FRESH, None, info.runner_id)  # created; informer lags
        return state

    def credential_kind(self, rs: RunnerSet) -> CredentialKind:
        """JIT config (default) or registration token, as for Runners (see ControllerOptions)."""
        template_meta = rs.spec.template.get("metadata") or {}
        forced = rs.metadata.annotations.get(ANNOTATION_REGISTRATION) or (
            template_meta.get("annotations") or {}
        ).get(ANNOTATION_REGISTRATION)
        return credential_kind(
            rs.spec,
            forced=forced,
            mode=self.options.registration_mode,
            default_image=self.options.pod.runner_image,
        )

    async def create(
        self, key: Key, obj: Mapping[str, Any], rs: RunnerSet, scope: Scope, hash_: str
    ) -> Created:
        """Register a runner, then create its StatefulSet and Secret."""
        name = statefulset_name(rs.name, self.suffix())
        runner = runner_name(name)
        kind = self.credential_kind(rs)

        def manifest_for(runner_id: int | None) -> Obj:
            return build_runner_statefulset(
                runnerset=rs.name,
                namespace=key.namespace,
                spec=rs.spec,
                name=name,
                template_hash_=hash_,
                credentials=kind,
                runner_id=runner_id,
                # per-runner ServiceAccounts are made for Runners only: a RunnerSet names its own
                options=dataclasses.replace(self.options.pod, service_account_per_runner=False),
                owner_references=[controller_ref(obj)],
                finalizers=[FINALIZER],
            )

        try:
            manifest_for(0 if kind == "jit" else None)  # a spec that makes no pod registers nothing
        except (RunnerPodError, ApiParseError) as exc:
            await self.recorder.warning(obj, "InvalidRunnerPod", str(exc))
            return Created(None, failed=True)
        try:
            registration = await self.lifecycle.register(
                obj,
                scope,
                runner,
                jit=kind == "jit",
                labels=runner_labels(rs.spec, self.options.pod),
                group=rs.spec.group,
                work_folder=rs.spec.effective_work_dir,
            )
        except RateLimitedError as exc:
            await self.recorder.warning(obj, exc.reason, f"waiting for GitHub's rate limit to reset: {exc}")
            return Created(None)
        except GitHubError as exc:
            await self.recorder.warning(obj, exc.reason, f"registering runner {runner}: {exc}")
            return Created(None, failed=True)
        manifest = manifest_for(registration.runner_id if isinstance(registration, JitConfig) else None)
        try:
            sts = await self.kube.create(STATEFUL_SETS, manifest, namespace=key.namespace)
        except AlreadyExists:
            await self.lifecycle.abandon(scope, registration)
            return Created(None)
        except Invalid as exc:
            await self.lifecycle.abandon(scope, registration)
            await self.recorder.warning(obj, "InvalidRunnerStatefulSet", str(exc))
            return Created(None, failed=True)
        except Exception:
            await self.lifecycle.abandon(scope, registration)
            raise
        self.expect.created(key, name)
        self.stats.statefulsets_created += 1
        secret_key = Key(key.namespace, name)
        self._secrets_made[secret_key] = time.monotonic()
        with contextlib.suppress(AlreadyExists):
            await self.kube.create(SECRETS, build_runner_secret(sts, registration, runnerset=rs.name))
        mode = "JIT config" if kind == "jit" else "registration token"
        await self.recorder.normal(obj, "RunnerCreated", f"created runner StatefulSet {name} ({mode})")
        return Created(name)


class StatefulSetHome:
    """Where a RunnerSet's runner lives: one StatefulSet (the unit: deleting the runner deletes it,
    its finalizer holds the pod), its pod, and its credential Secret (named as the StatefulSet)."""

    def __init__(
        self,
        runners: StatefulSetRunners,
        sts: Obj,
        info: RunnerStatefulSet,
        pod: PodObservation,
        runner_id: int | None,
    ) -> None:
        self.runners = runners
        self.kube = runners.kube
        self.sts = sts  # the latest version this reconcile has seen or written
        self.info = info
        self.pod = pod
        self.runner_id = runner_id

    async def add_finalizer(self) -> None:
        self.sts = await self._patch_finalizers(self.sts, [*self.info.finalizers, FINALIZER])

    async def create_pod(self) -> None:
        """Nothing to do: the StatefulSet controller makes the pod."""

    async def consume_credentials(self) -> None:
        meta = self.sts["metadata"]
        try:
            await self.kube.patch(
                SECRETS,
                meta["name"],
                consume_patch(self.info.credentials, self.pod.uid or "", self.runner_id),
                namespace=meta["namespace"],
            )
        except NotFound:
            return
        self.runners.stats.credentials_consumed += 1

    async def delete_pod(self) -> None:
        await self.delete_runner()  # the StatefulSet is the unit

    async def delete_runner(self) -> None:
        meta = self.sts["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        self.runners.expect.deleted(Key(namespace, self.info.runnerset), name)
        deleted = await self.kube.delete(
            STATEFUL_SETS, name, namespace=namespace, uid=self.info.uid, missing_ok=True
        )
        self.runners.stats.statefulsets_deleted += 1
        if deleted is not None and deleted.get("kind") == "StatefulSet":
            self.sts = deleted

    async def remove_finalizer(self) -> None:
        """Take our finalizer off (re-reading the StatefulSet when its controller changed it meanwhile)."""
        sts = self.sts
        meta = sts["metadata"]
        for _ in range(3):
            finalizers = [f for f in (sts["metadata"].get("finalizers") or ()) if f != FINALIZER]
            try:
                self.sts = await self._patch_finalizers(sts, finalizers)
                return
            except StopSteps:
                try:
                    sts = await self.kube.get(STATEFUL_SETS, meta["name"], namespace=meta["namespace"])
                except NotFound:
                    self.sts = sts
                    return
                if sts["metadata"].get("uid") != meta.get("uid"):
                    self.sts = sts
                    return
        raise StopSteps(Result(requeue=True))

    async def _patch_finalizers(self, sts: Obj, finalizers: list[str]) -> Obj:
        meta = sts["metadata"]
        try:
            return await self.kube.patch(
                STATEFUL_SETS,
                meta["name"],
                {"metadata": {"finalizers": finalizers}},
                namespace=meta["namespace"],
                resource_version=meta.get("resourceVersion"),
            )
        except NotFound:
            return sts
        except Conflict:
            raise StopSteps(Result(requeue=True)) from None
