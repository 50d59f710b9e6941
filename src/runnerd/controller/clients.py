"""GitHub clients per credentials Secret: ``spec.githubAPICredentialsFrom`` honoured.

A RunnerDeployment (its Runners), a RunnerSet or a HorizontalRunnerAutoscaler may name a Secret in
its own namespace, shaped like the controller's (``github_token``, or ``github_app_id``,
``github_app_installation_id`` and ``github_app_private_key``). Contract:

* each such Secret gets its own :class:`GitHubAPI`: a GitHub client (its own HTTP session,
  rate-limit budget, ETag cache, installation and registration tokens) and its own runner
  directory (listings made with those credentials); objects without the field use the
  controller's own;
* the Secret is read with ``get`` when first needed and again at most every ``refresh`` seconds;
  a new ``resourceVersion`` (rotated credentials) is loaded into the same client
  (:meth:`~runnerd.github.client.GitHubClient.rotate`) without a restart. A missing or malformed
  Secret is a :class:`~runnerd.github.errors.GitHubError` with a reason the caller shows as an Event;
  the credentials themselves never appear in a log line, an Event or an error message;
* a controller reconciles with the right client through :func:`using`: inside it, the
  controller's ``github`` and ``directory`` (see :meth:`GitHubClients.current`) are the Secret's.
  The choice is a context variable, so concurrent reconciles (each its own task) never mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runnerd.controller.directory import RunnerDirectory
from runnerd.github import GitHubClient, load_credentials
from runnerd.github.errors import GitHubError
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import SECRETS
from runnerd.runtime import ApiError, NotFound

logger = logging.getLogger(__name__)


CREDENTIALS_RETRY = 30.0
"""Seconds before an object whose credentials Secret cannot be read is tried again."""


def credentials_secret(obj: Mapping[str, Any]) -> str | None:
    """The Secret an object's ``spec.githubAPICredentialsFrom.secretRef.name`` names, if any
    (RunnerDeployments and RunnerReplicaSets: in ``spec.template.spec``)."""
    spec = obj.get("spec") or {}
    for fields in (spec, (spec.get("template") or {}).get("spec") or {}):
        name = ((fields.get("githubAPICredentialsFrom") or {}).get("secretRef") or {}).get("name")
        if name:
            return str(name)
    return None


@dataclass(frozen=True)
class GitHubAPI:
    """One set of GitHub credentials at work: its client and its runner directory."""

    github: GitHubClient
    directory: RunnerDirectory
    secret: str = ""
    """``namespace/name`` of its Secret; empty for the controller's own credentials."""


class CredentialsSecretError(GitHubError):
    """The Secret named by ``githubAPICredentialsFrom`` cannot be read."""

    reason = "GitHubCredentialsSecretUnavailable"


_CURRENT: contextvars.ContextVar[GitHubAPI | None] = contextvars.ContextVar(
    "runnerd_github_api", default=None
)


@dataclass
class _Entry:
    api: GitHubAPI
    resource_version: str
    checked_at: float


class GitHubClients:
    def __init__(
        self,
        kube: KubeClient | None,
        default: GitHubAPI,
        *,
        refresh: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.default = default
        self.refresh = refresh
        self.clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = asyncio.Lock()
        self.rotations = 0

    def current(self) -> GitHubAPI:
        """The credentials of the reconcile in progress (the controller's own outside one)."""
        return _CURRENT.get() or self.default

    def apis(self) -> list[GitHubAPI]:
        return [self.default, *(e.api for e in self._entries.values())]

    def cached(self, namespace: str, secret: str | None) -> GitHubAPI | None:
        """The API already made for ``secret`` (the controller's own for None/empty), without I/O:
        None if no reconcile has needed that Secret yet."""
        if not secret:
            return self.default
        entry = self._entries.get((namespace, secret))
        return entry.api if entry is not None else None

    async def get(self, namespace: str, secret: str | None) -> GitHubAPI:
        """The API for Secret ``secret`` in ``namespace`` (the controller's own for None/empty)."""
        if not secret:
            return self.default
        key = (namespace, secret)
        entry = self._entries.get(key)
        if entry is not None and self.clock() - entry.checked_at < self.refresh:
            return entry.api
        async with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self.clock() - entry.checked_at < self.refresh:
                return entry.api
            return await self._load(key, entry)

    async def _load(self, key: tuple[str, str], entry: _Entry | None) -> GitHubAPI:
        namespace, name = key
        if self.kube is None:
            raise CredentialsSecretError(f"Secret {namespace}/{name}: no Kubernetes client to read it")
        try:
            obj = await self.kube.get(SECRETS, name, namespace=namespace)
        except NotFound:
            raise CredentialsSecretError(
                f"Secret {namespace}/{name} named by githubAPICredentialsFrom does not exist"
            ) from None
        except (ApiError, OSError) as exc:
            if entry is not None:  # keep using what worked; try again next time
                logger.warning("re-reading Secret %s/%s failed: %s", namespace, name, exc)
                return entry.api
            raise CredentialsSecretError(f"reading Secret {namespace}/{name}: {exc}") from None
        version = str(obj["metadata"].get("resourceVersion") or "")
        if entry is not None and entry.resource_version == version:
            entry.checked_at = self.clock()
            return entry.api
        credentials = load_credentials(obj.get("data") or {}, base64_encoded=True)
        if entry is None:
            github = self.default.github.sibling(credentials)
            api = GitHubAPI(github, self.default.directory.sibling(github), f"{namespace}/{name}")
            logger.info(
                "GitHub credentials from Secret %s/%s: %s", namespace, name, type(credentials).__name__
            )
        else:
            api = entry.api
            api.github.rotate(credentials)
            self.rotations += 1
            logger.info("GitHub credentials of Secret %s/%s rotated", namespace, name)
        self._entries[key] = _Entry(api, version, self.clock())
        return api

    async def close(self) -> None:
        """Close the clients made for Secrets (the controller's own belongs to its owner)."""
        entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            await entry.api.github.close()


@contextlib.asynccontextmanager
async def using(api: GitHubAPI) -> AsyncIterator[GitHubAPI]:
    """Within the block, :meth:`GitHubClients.current` is ``api``."""
    token = _CURRENT.set(api)
    try:
        yield api
    finally:
        _CURRENT.reset(token)
