"""A small typed Kubernetes client for any resource, returning plain dicts.

Requests go through our own transport (:mod:`runnerd.kube.transport`: one aiohttp session, a
bounded number of requests in flight, the credentials of :mod:`runnerd.kube.config`, including
rotation of service-account tokens and exec plugins), by URL path: core, apps, coordination and
custom resources are all addressed the same way, by :class:`~runnerd.kube.resources.Resource`.
Responses are decoded JSON. Failures raise the :mod:`runnerd.kube.errors` taxonomy; connection
failures (and credentials that cannot be obtained) raise :class:`~runnerd.runtime.errors.ServerError`
with status 0.

It also implements the runtime's Protocols: :meth:`KubeClient.list_watcher`,
:meth:`KubeClient.lease_client` and :meth:`KubeClient.event_sink`.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeAlias

import aiohttp

from runnerd import __version__
from runnerd.kube.auth import AuthError
from runnerd.kube.config import KubeConfig, load_config
from runnerd.kube.errors import error_from_response
from runnerd.kube.resources import EVENTS, LEASES, Resource
from runnerd.kube.transport import DEFAULT_MAX_REQUESTS, Reply, Transport
from runnerd.runtime.errors import NotFound, ServerError
from runnerd.runtime.redact import describe_exception
from runnerd.runtime.types import LeaseRecord, Obj, WatchEvent, WatchEventType

logger = logging.getLogger(__name__)

PatchType = Literal["merge", "json", "strategic", "apply"]
PropagationPolicy = Literal["Foreground", "Background", "Orphan"]
Patch: TypeAlias = Obj | list[Obj]
"""A merge, strategic or apply patch (an object), or a JSON patch (a list of operations)."""

_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


@dataclass(frozen=True, slots=True)
class ObjectList:
    """The result of a LIST: every item (all pages), and the collection's resource version."""

    items: list[Obj]
    resource_version: str


class KubeClient:
    """See the module docstring. Use as ``async with KubeClient(config) as kube`` or call :meth:`close`."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        request_timeout: float = 30.0,
        page_size: int = 500,
        max_requests: int = DEFAULT_MAX_REQUESTS,
    ) -> None:
        self.config = config
        self.request_timeout = request_timeout
        self.page_size = page_size
        self.transport = Transport(config, user_agent=f"runnerd/{__version__}", max_requests=max_requests)

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, *, context: str | None = None) -> KubeClient:
        """A client for the configuration :func:`~runnerd.kube.config.load_config` finds."""
        return cls(await load_config(kubeconfig, context=context))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Returns once every connection to the API server is closed, its socket included (a loop
        that ends right after leaves none open: :meth:`runnerd.kube.transport.Transport.close`)."""
        await self.transport.close()

    # Transport.

    async def _fetch(
        self, method: str, path: str, query: Sequence[tuple[str, str]], body: Any, content_type: str
    ) -> Reply:
        try:
            return await self.transport.fetch(
                method,
                path,
                query=query,
                body=body,
                content_type=content_type,
                client_timeout=aiohttp.ClientTimeout(total=self.request_timeout),
            )
        except (aiohttp.ClientError, TimeoutError, OSError, AuthError) as exc:
            raise ServerError(0, "ConnectionError", f"{method} {path}: {describe_exception(exc)}") from None

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        """One API call; the decoded JSON response (a ``Status`` for some deletes)."""
        reply = await self._fetch(method, path, query, body, content_type)
        if not 200 <= reply.status < 300:
            raise error_from_response(reply.status, reply.reason, reply.headers, reply.data)
        decoded = json.loads(reply.data) if reply.data else {}
        if not isinstance(decoded, dict):
            raise ServerError(reply.status, "BadResponse", f"{method} {path}: not a JSON object")
        return decoded

    # Reads.

    async def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> Obj:
        return await self.request("GET", resource.path(namespace, name))

    async def list(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ObjectList:
        """Every object (following ``continue`` tokens), with ``kind``/``apiVersion`` filled in."""
        query = _selectors(label_selector, field_selector)
        items: list[Obj] = []
        token = ""
        while True:
            page_query = [*query, ("limit", str(self.page_size))]
            if token:
                page_query.append(("continue", token))
            page = await self.request("GET", resource.path(namespace), query=page_query)
            for item in page.get("items") or ():
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", resource.kind)
                items.append(item)
            meta = page.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                return ObjectList(items, str(meta.get("resourceVersion") or ""))

    async def watch(
        self,
        resource: Resource,
        resource_version: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncIterator[WatchEvent]:
        """One WATCH request with bookmarks, from ``resource_version``; ends when the server ends it.

        A 410 response raises :class:`ResourceExpired`; a 410 inside the stream arrives as an ``ERROR``
        event. The response is closed when the iterator is closed.
        """
        query = [
            *_selectors(label_selector, field_selector),
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        timeout = aiohttp.ClientTimeout(
            total=timeout_seconds + self.request_timeout, sock_connect=self.request_timeout
        )
        path = resource.path(namespace)
        try:
            response = await self.transport.stream(path, query=query, client_timeout=timeout)
        except (aiohttp.ClientError, TimeoutError, OSError, AuthError) as exc:
            raise ServerError(0, "ConnectionError", f"GET {path}: {describe_exception(exc)}") from None
        try:
            if response.status != 200:
                raise error_from_response(
                    response.status, response.reason or "", response.headers, await response.read()
                )
            while True:
                try:
                    line = await response.content.readline()
                except (aiohttp.ClientError, OSError) as exc:
                    raise ServerError(
                        0, "ConnectionError", f"watch {resource.plural}: {describe_exception(exc)}"
                    ) from None
                if not line:
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                yield WatchEvent(WatchEventType(event["type"]), event["object"])
        finally:
            self.transport.stream_closed()
            if response.content.at_eof():
                response.release()
            else:
                response.close()  # abandon the stream: the connection cannot be reused

    # Writes.

    async def create(self, resource: Resource, body: Obj, *, namespace: str | None = None) -> Obj:
        namespace = namespace or (body.get("metadata") or {}).get("namespace")
        return await self.request("POST", resource.path(namespace), body=body)

    async def replace(self, resource: Resource, body: Obj, *, subresource: str | None = None) -> Obj:
        """PUT the whole object; conditional on ``metadata.resourceVersion`` when the body has one."""
        meta = body.get("metadata") or {}
        return await self.request(
            "PUT", resource.path(meta.get("namespace"), meta["name"], subresource), body=body
        )

    async def replace_status(self, resource: Resource, body: Obj) -> Obj:
        """PUT the ``status`` subresource (the server ignores changes outside ``status``)."""
        return await self.replace(resource, body, subresource="status")

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: Patch,
        *,
        namespace: str | None = None,
        patch_type: PatchType = "merge",
        resource_version: str | None = None,
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
    ) -> Obj:
        """PATCH an object (or a subresource such as ``status``).

        ``resource_version`` makes the patch conditional: it fails with :class:`Conflict` if the object
        changed since. ``patch_type="apply"`` is server-side apply and needs ``field_manager``.
        """
        if resource_version:
            patch = _with_resource_version(patch, patch_type, resource_version)
        query: list[tuple[str, str]] = []
        if field_manager:
            query.append(("fieldManager", field_manager))
        if patch_type == "apply":
            if not field_manager:
                raise ValueError("server-side apply needs a field_manager")
            if force:
                query.append(("force", "true"))
        return await self.request(
            "PATCH",
            resource.path(namespace, name, subresource),
            query=query,
            body=patch,
            content_type=_PATCH_CONTENT_TYPES[patch_type],
        )

    async def patch_status(
        self,
        resource: Resource,
        name: str,
        patch: Patch,
        *,
        namespace: str | None = None,
        patch_type: PatchType = "merge",
        resource_version: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
    ) -> Obj:
        return await self.patch(
            resource,
            name,
            patch,
            namespace=namespace,
            patch_type=patch_type,
            resource_version=resource_version,
            subresource="status",
            field_manager=field_manager,
            force=force,
        )

    async def delete(
        self,
        resource: Resource,
        name: str,
        *,
        namespace: str | None = None,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation_policy: PropagationPolicy | None = None,
        grace_period_seconds: int | None = None,
        missing_ok: bool = False,
    ) -> Obj | None:
        """DELETE an object, optionally only if it still has ``uid`` / ``resource_version``.

        Returns the object (still present, with ``deletionTimestamp``, if it has finalizers) or the
        server's ``Status``; ``None`` if it was already gone and ``missing_ok``.
        """
        options: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        if preconditions:
            options["preconditions"] = preconditions
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        try:
            return await self.request("DELETE", resource.path(namespace, name), body=options)
        except NotFound:
            if missing_ok:
                return None
            raise

    # The runtime's protocols.

    def list_watcher(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> KubeListWatcher:
        return KubeListWatcher(self, resource, namespace, label_selector, field_selector)

    def lease_client(self) -> KubeLeaseClient:
        return KubeLeaseClient(self)

    def event_sink(self) -> KubeEventSink:
        return KubeEventSink(self)


def _selectors(label_selector: str | None, field_selector: str | None) -> list[tuple[str, str]]:
    query = []
    if label_selector:
        query.append(("labelSelector", label_selector))
    if field_selector:
        query.append(("fieldSelector", field_selector))
    return query


def _with_resource_version(patch: Patch, patch_type: PatchType, version: str) -> Obj | list[Obj]:
    if patch_type == "json":
        if not isinstance(patch, list):
            raise TypeError("a JSON patch is a list of operations")
        # Setting the version makes the server's optimistic concurrency apply: 409 if it is stale.
        return [*patch, {"op": "replace", "path": "/metadata/resourceVersion", "value": version}]
    if not isinstance(patch, dict):
        raise TypeError(f"a {patch_type} patch is an object")
    patched = copy.copy(patch)
    patched["metadata"] = {**(patch.get("metadata") or {}), "resourceVersion": version}
    return patched


class KubeListWatcher:
    """The runtime's ListWatcher for a resource in a namespace (or all), with selectors."""

    def __init__(
        self,
        client: KubeClient,
        resource: Resource,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector

    async def list(self) -> tuple[list[Obj], str]:
        found = await self.client.list(
            self.resource,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        return found.items, found.resource_version

    def watch(self, resource_version: str, *, timeout_seconds: int) -> AsyncIterator[WatchEvent]:
        return self.client.watch(
            self.resource,
            resource_version,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=timeout_seconds,
        )


def format_micro_time(moment: datetime | None) -> str | None:
    """A ``metav1.MicroTime``: RFC 3339 in UTC with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment else None


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class KubeLeaseClient:
    """:class:`~runnerd.runtime.protocols.LeaseClient` on ``coordination.k8s.io/v1`` Leases."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client

    async def get(self, namespace: str, name: str) -> LeaseRecord | None:
        try:
            return _lease_record(await self.client.get(LEASES, name, namespace=namespace))
        except NotFound:
            return None

    async def create(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        return _lease_record(await self.client.create(LEASES, _lease_body(namespace, name, record)))

    async def update(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        return _lease_record(await self.client.replace(LEASES, _lease_body(namespace, name, record)))


def _lease_body(namespace: str, name: str, record: LeaseRecord) -> Obj:
    meta: Obj = {"name": name, "namespace": namespace}
    if record.resource_version:
        meta["resourceVersion"] = record.resource_version
    return {
        "apiVersion": LEASES.api_version,
        "kind": LEASES.kind,
        "metadata": meta,
        "spec": {
            "holderIdentity": record.holder_identity,
            "leaseDurationSeconds": record.lease_duration_seconds,
            "acquireTime": format_micro_time(record.acquire_time),
            "renewTime": format_micro_time(record.renew_time),
            "leaseTransitions": record.lease_transitions,
        },
    }


def _lease_record(lease: Obj) -> LeaseRecord:
    spec = lease.get("spec") or {}
    return LeaseRecord(
        holder_identity=spec.get("holderIdentity") or "",
        lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=parse_time(spec.get("acquireTime")),
        renew_time=parse_time(spec.get("renewTime")),
        lease_transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str((lease.get("metadata") or {}).get("resourceVersion") or ""),
    )


class KubeEventSink:
    """:class:`~runnerd.runtime.protocols.EventSink` on ``core/v1`` Events."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client

    async def create(self, namespace: str, event: Obj) -> Obj:
        return await self.client.create(EVENTS, event, namespace=namespace)

    async def patch(self, namespace: str, name: str, patch: Obj) -> Obj:
        return await self.client.patch(EVENTS, name, patch, namespace=namespace)
