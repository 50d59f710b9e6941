"""What the scale-set controllers share: their resources, their Actions-service clients by
configuration, finalizer patches, their counters, and what the two set controllers are built from
(:class:`SetController`).

:class:`ScaleSetAPIs` resolves an object's ``githubConfigUrl`` and ``githubConfigSecret`` (a Secret
in the object's namespace, read on every call; :class:`~runnerd.github.actions.api.ScaleSetClients`
keeps one client per configuration) into a :class:`~runnerd.github.actions.api.ScaleSetAPI`,
connecting as the object's ``proxy`` and ``githubServerTLS`` say (:meth:`ScaleSetAPIs.connection`:
the CA bundle from its ConfigMap key, each proxy's ``username``/``password`` from its
``credentialSecretRef``, all in the object's namespace). A missing Secret, ConfigMap or key is an
:class:`~runnerd.github.actions.errors.ActionsServiceError` (status 0); the Secrets' contents never
appear in an error, event or log line.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runnerd.api.scaleset import constants as c
from runnerd.controller.common import StopSteps, random_suffix
from runnerd.controller.expectations import Expectations
from runnerd.github.actions.api import ScaleSetAPI, ScaleSetClients
from runnerd.github.actions.connection import Connection, ProxyServer
from runnerd.github.actions.errors import ActionsServiceError
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import CONFIGMAPS, SECRETS, Resource
from runnerd.runtime import Conflict, EventRecorder, NotFound, Result

AUTOSCALING_RUNNER_SETS = Resource(c.GROUP, c.VERSION, "autoscalingrunnersets", "AutoscalingRunnerSet")
EPHEMERAL_RUNNER_SETS = Resource(c.GROUP, c.VERSION, "ephemeralrunnersets", "EphemeralRunnerSet")
EPHEMERAL_RUNNERS = Resource(c.GROUP, c.VERSION, "ephemeralrunners", "EphemeralRunner")
AUTOSCALING_LISTENERS = Resource(c.GROUP, c.VERSION, "autoscalinglisteners", "AutoscalingListener")

API_RETRY = 30.0
"""Seconds before an object whose Actions service cannot be reached is tried again."""


@dataclass
class ScaleSetStats:
    runners_created: int = 0
    runners_deleted: int = 0
    pods_created: int = 0
    pods_deleted: int = 0
    deregistrations: int = 0
    busy_refusals: int = 0
    scale_sets_created: int = 0
    scale_sets_deleted: int = 0


class ScaleSetAPIs:
    """The Actions-service client of an object's configuration, and the runner registrations this
    process removed (or found gone) there, until their EphemeralRunner is finalized: the
    EphemeralRunnerSet removes an idle runner before deleting its object, and that runner's
    finalizer then needs no second call."""

    def __init__(self, kube: KubeClient, clients: ScaleSetClients) -> None:
        self.kube = kube
        self.clients = clients
        self._removed: set[tuple[str, int]] = set()

    def removed(self, spec: Mapping[str, Any], runner_id: int) -> bool:
        return (str(spec.get("githubConfigUrl") or ""), runner_id) in self._removed

    def mark_removed(self, spec: Mapping[str, Any], runner_id: int) -> None:
        self._removed.add((str(spec.get("githubConfigUrl") or ""), runner_id))

    def forget_removed(self, spec: Mapping[str, Any], runner_id: int) -> None:
        self._removed.discard((str(spec.get("githubConfigUrl") or ""), runner_id))

    async def for_object(self, namespace: str, spec: Mapping[str, Any]) -> ScaleSetAPI:
        url = str(spec.get("githubConfigUrl") or "")
        data = await self.secret_data(namespace, str(spec.get("githubConfigSecret") or ""))
        return await self.clients.for_config(url, data, await self.connection(namespace, spec))

    async def connection(self, namespace: str, spec: Mapping[str, Any]) -> Connection | None:
        """The object's ``proxy`` and ``githubServerTLS``, resolved (``None``: neither is set)."""
        proxy, tls = spec.get("proxy") or {}, spec.get("githubServerTLS") or {}
        if not proxy and not tls:
            return None
        ref = (tls.get("certificateFrom") or {}).get("configMapKeyRef") or {}
        ca = await self.config_map_key(namespace, str(ref.get("name") or ""), str(ref.get("key") or ""))
        servers: dict[str, ProxyServer] = {}
        for scheme in ("http", "https"):
            server = proxy.get(scheme) or {}
            if not server.get("url"):
                continue
            creds: dict[str, str] = {}
            if server.get("credentialSecretRef"):
                creds = await self.secret_data(namespace, str(server["credentialSecretRef"]))
            servers[scheme] = ProxyServer(
                str(server["url"]), creds.get("username", ""), creds.get("password", "")
            )
        return Connection(
            ca_bundle=ca,
            http_proxy=servers.get("http"),
            https_proxy=servers.get("https"),
            no_proxy=tuple(str(host) for host in proxy.get("noProxy") or ()),
            proxied=bool(proxy),
        )

    async def config_map_key(self, namespace: str, name: str, key: str) -> str:
        """The value of ``key`` in the ConfigMap ``namespace/name`` (``""`` when no name is given)."""
        if not name:
            return ""
        try:
            config_map = await self.kube.get(CONFIGMAPS, name, namespace=namespace)
        except NotFound:
            raise ActionsServiceError(
                0, "ConfigMapNotFound", f"configmap {namespace}/{name} not found"
            ) from None
        value = (config_map.get("data") or {}).get(key)
        if not value:
            raise ActionsServiceError(0, "ConfigMapInvalid", f"configmap {namespace}/{name}: no key {key!r}")
        return str(value)

    async def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """The decoded keys of the credentials Secret ``namespace/name`` (never logged)."""
        try:
            secret = await self.kube.get(SECRETS, name, namespace=namespace)
        except NotFound:
            raise ActionsServiceError(0, "SecretNotFound", f"secret {namespace}/{name} not found") from None
        data: dict[str, str] = {}
        for key, value in (secret.get("data") or {}).items():
            try:
                data[key] = base64.b64decode(value).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise ActionsServiceError(
                    0, "SecretInvalid", f"secret {namespace}/{name}: key {key}"
                ) from None
        return data


async def set_finalizers(
    kube: KubeClient, resource: Resource, obj: Mapping[str, Any], finalizers: Sequence[str]
) -> None:
    """Write ``finalizers`` (guarded by the object's resourceVersion: a conflict requeues)."""
    meta = obj["metadata"]
    try:
        await kube.patch(
            resource,
            meta["name"],
            {"metadata": {"finalizers": list(finalizers)}},
            namespace=meta["namespace"],
            resource_version=meta.get("resourceVersion"),
        )
    except NotFound:
        return
    except Conflict:
        raise StopSteps(Result(requeue=True)) from None


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(
        ref.get("controller") and ref.get("uid") == uid
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or ()
    )


@dataclass(eq=False, repr=False, kw_only=True)
class SetController:
    """What the AutoscalingRunnerSet and EphemeralRunnerSet controllers hold alike: the clients,
    the expectations of the children they create (on ``clock``), the names' ``suffix`` and counters."""

    kube: KubeClient
    apis: ScaleSetAPIs
    recorder: EventRecorder
    clock: Callable[[], float] = time.monotonic
    suffix: Callable[[], str] = random_suffix
    expect: Expectations = field(init=False)
    stats: ScaleSetStats = field(init=False, default_factory=ScaleSetStats)

    def __post_init__(self) -> None:
        self.expect = Expectations(self.clock)


async def write_status(
    kube: KubeClient, resource: Resource, obj: Mapping[str, Any], want: Mapping[str, Any]
) -> bool:
    """Merge ``want`` into the object's status when it differs (other writers' fields are kept);
    False when nothing was written."""
    current = dict(obj.get("status") or {})
    if all(current.get(k) == v for k, v in want.items()):
        return False
    meta = obj["metadata"]
    try:
        await kube.patch_status(
            resource, meta["name"], {"status": {**current, **want}}, namespace=meta["namespace"]
        )
    except NotFound:
        return False
    return True
