"""The objects a Runner owns besides its pod: its credentials Secret and, in kubernetes container
mode, its own ServiceAccount, Role and RoleBinding; and :func:`create_pod_beside_secret`, the one
way a runner's first pod is written with its credential Secret, for every kind that has one (a
Runner's credential Secret, an EphemeralRunner's JIT Secret: :mod:`runnerd.controller.ephemeralrunner`).

Contract (:mod:`runnerd.reconcile.credentials`, :mod:`runnerd.manifests.rbac`):

* the Secret is named as the Runner, owned by it, written before or with its first pod (a pod
  whose Secret could not be written is deleted: :mod:`runnerd.controller.runner`), and
  overwritten in place (a JSON patch that first tests the owner) when a failed pod is replaced; a
  Secret of that name that is not the Runner's is never changed (a Warning says so);
* once GitHub lists the runner online (its container has read the credential), the credential is
  removed from the Secret (:meth:`RunnerObjects.consume`): a registration token is valid for an
  hour and for any number of registrations, and nothing needs it any more;
* the kubernetes-mode identity objects are created before the pod, when the pod's
  ``serviceAccountName`` is the runner's own;
* :func:`create_pod_beside_secret` sends the Secret's write and the pod's create together (one
  round trip where the two in order cost two; the pod only references the Secret by name and the
  kubelet waits for it); when the Secret's write fails, a pod that was created is deleted again by
  its uid, so no pod runs on a Secret that is not its runner's, and the Secret's error is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping
from typing import Any

from runnerd.api import Runner
from runnerd.controller.common import PODS, StopSteps, controller_ref
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import ROLE_BINDINGS, ROLES, SECRETS, SERVICE_ACCOUNTS
from runnerd.manifests.rbac import build_runner_identity
from runnerd.reconcile.credentials import (
    ENV_JIT_CONFIG,
    ENV_RUNNER_TOKEN,
    Registration,
    build_credentials_secret,
    replace_patch,
)
from runnerd.reconcile.hashing import label_value
from runnerd.reconcile.runnerpod import LABEL_RUNNER_NAME
from runnerd.runtime import AlreadyExists, EventRecorder, Invalid, NotFound, Result

ANNOTATION_CONSUMED = "runnerd.dev/credentials-consumed"
"""On a Runner's Secret once its credential was removed (the runner came online)."""


async def create_pod_beside_secret(
    kube: KubeClient, manifest: dict[str, Any], namespace: str, write_secret: Awaitable[object]
) -> None:
    """``write_secret`` (the runner's credential Secret) and the pod's create, concurrently. If the
    Secret's write failed, the pod, if it was created, is deleted again by its uid and the Secret's
    error is raised; otherwise the pod's error, if any (the Secret stays written)."""
    secret, pod = await asyncio.gather(
        write_secret, kube.create(PODS, manifest, namespace=namespace), return_exceptions=True
    )
    if isinstance(secret, BaseException):
        if not isinstance(pod, BaseException):
            name = str(manifest["metadata"]["name"])
            uid = (pod.get("metadata") or {}).get("uid")
            await kube.delete(PODS, name, namespace=namespace, uid=uid, missing_ok=True)
        raise secret
    if isinstance(pod, BaseException):
        raise pod


class RunnerObjects:
    def __init__(self, kube: KubeClient, recorder: EventRecorder, *, conflict_retry: float) -> None:
        self.kube = kube
        self.recorder = recorder
        self.conflict_retry = conflict_retry
        self._consumed: set[str] = set()  # Runner uids; forgotten with their Runner

    async def store_credentials(
        self, obj: Mapping[str, Any], runner: Runner, registration: Registration
    ) -> None:
        """The runner's credential into its Secret, before its pod (which only references it)."""
        uid = runner.metadata.uid or ""
        self._consumed.discard(uid)
        labels = {LABEL_RUNNER_NAME: label_value(runner.name)}
        secret = build_credentials_secret(
            runner.name, runner.namespace, registration, owner_ref=controller_ref(obj), labels=labels
        )
        try:
            await self.kube.create(SECRETS, secret, namespace=runner.namespace)
            return
        except AlreadyExists:
            pass
        try:
            patch = replace_patch(registration, uid)
            await self.kube.patch(SECRETS, runner.name, patch, namespace=runner.namespace, patch_type="json")
        except Invalid:
            await self.recorder.warning(
                obj,
                "CredentialsSecretConflict",
                f"Secret {runner.name} exists and is not this Runner's: remove or rename it",
            )
            raise StopSteps(Result(requeue_after=self.conflict_retry)) from None

    async def consume(self, runner: Runner) -> None:
        """The runner is online: its credential leaves the Secret (once per Runner and process)."""
        uid = runner.metadata.uid or ""
        if uid in self._consumed:
            return
        patch = {
            "metadata": {"annotations": {ANNOTATION_CONSUMED: "true"}},
            "data": {ENV_RUNNER_TOKEN: None, ENV_JIT_CONFIG: None},
        }
        with contextlib.suppress(NotFound):
            await self.kube.patch(SECRETS, runner.name, patch, namespace=runner.namespace)
        self._consumed.add(uid)

    def forget(self, uid: str) -> None:
        self._consumed.discard(uid)

    async def create_identity(self, obj: Mapping[str, Any], runner: Runner) -> None:
        """containerMode kubernetes without serviceAccountName: the runner's own ServiceAccount,
        Role and RoleBinding, before its pod (an existing one of that name is used as it is)."""
        objects = build_runner_identity(
            runner.name,
            runner.namespace,
            labels={LABEL_RUNNER_NAME: label_value(runner.name)},
            owner_ref=controller_ref(obj),
        )
        for resource, manifest in zip((SERVICE_ACCOUNTS, ROLES, ROLE_BINDINGS), objects, strict=True):
            with contextlib.suppress(AlreadyExists):
                await self.kube.create(resource, manifest, namespace=runner.namespace)
