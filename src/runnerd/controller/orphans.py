"""Registrations of this installation with no Runner: found in GitHub's listings and removed.

They appear when a Runner object vanished without its finalizer running (someone removed the
finalizer by hand, or deleted the namespace's objects with ``--force``).

**Ownership.** Every runner this controller registers carries its *installation label*,
``runnerd-<id>`` (:func:`installation_label`): ``<id>`` is ten base-32 characters of a hash of the
cluster's identity (the ``kube-system`` Namespace's UID) and the watched namespace, or of
``--installation-id``. A label, not a name prefix, because two clusters (staging and production)
often run the same RunnerDeployment names in one organization; a label, because GitHub accepts
any number of custom labels (this one is short, lower-case, without commas) and a runner's extra
label changes no job's routing: a job goes to a runner that has *all* of the job's labels, and
nobody asks for this one. Job matching in runnerd (and ARC) reads the RunnerDeployment's labels,
not GitHub's, so it is unaffected too.

A GitHub runner is removed only when all of these hold:

* it carries this installation's label (compared case-insensitively, as GitHub compares labels);
* no Runner object (and no RunnerSet pod) of that name exists in the informers' caches;
* it has been neither online nor busy for at least ``orphan_grace`` (default 15 minutes: a runner
  whose pod pulls a large image is offline meanwhile), measured from the first sweep that saw it
  offline.

Memory is bounded: the "offline since" record holds only runners of the last listing that are
offline candidates, and the record of removals is a fixed-size ring (plus a counter).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from runnerd.controller.clients import GitHubAPI, GitHubClients, credentials_secret
from runnerd.controller.directory import RunnerDirectory
from runnerd.github import GitHubClient, Scope
from runnerd.github.errors import GitHubError, RunnerBusyError
from runnerd.github.models import Runner as GitHubRunner
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import NAMESPACES
from runnerd.runtime import ApiError, Informer, Key, Obj, Result

logger = logging.getLogger(__name__)

SWEEP_KEY = Key("", "github-orphan-registrations")
OWNER_INFORMERS = ("runnerreplicasets", "runnerdeployments", "runnersets")
INSTALLATION_LABEL_PREFIX = "runnerd-"
CLUSTER_ID_NAMESPACE = "kube-system"
REMOVED_KEPT = 100


def sweep_key(_: Obj) -> list[Key]:
    return [SWEEP_KEY]


def installation_label(seed: str) -> str:
    """``runnerd-`` and ten lower-case base-32 characters of a hash of ``seed``."""
    digest = hashlib.sha256(seed.encode()).digest()
    return INSTALLATION_LABEL_PREFIX + base64.b32encode(digest).decode("ascii")[:10].lower()


async def resolve_installation_label(kube: KubeClient, installation_id: str, namespace: str | None) -> str:
    """This installation's label: from ``installation_id`` when given, else from the cluster's
    identity (the UID of Namespace ``kube-system``) and the watched namespace. Empty when neither
    is available: then nothing is marked and the sweep removes nothing."""
    if installation_id:
        return installation_label(installation_id)
    try:
        ns = await kube.get(NAMESPACES, CLUSTER_ID_NAMESPACE)
    except (ApiError, OSError) as exc:
        logger.warning(
            "cannot read Namespace %s for this installation's id (%s): set --installation-id;"
            " until then registrations are unmarked and no orphan is ever removed",
            CLUSTER_ID_NAMESPACE,
            exc,
        )
        return ""
    return installation_label(f"{ns['metadata']['uid']}/{namespace or '*'}")


def carries(runner: GitHubRunner, label: str) -> bool:
    """Whether ``runner`` has ``label`` (GitHub compares labels case-insensitively)."""
    folded = label.casefold()
    return bool(label) and any(x.casefold() == folded for x in runner.labels)


def _targets(objects: Iterable[Obj]) -> set[tuple[Scope, str, str]]:
    """(scope, namespace, credentials Secret) of each owner; ("", "") for the controller's own."""
    out: set[tuple[Scope, str, str]] = set()
    for obj in objects:
        spec = obj.get("spec") or {}
        secret = credentials_secret(obj) or ""
        namespace = str(obj["metadata"].get("namespace") or "") if secret else ""
        # RunnerSet: the runner fields are in spec (its template is a pod template);
        # replica sets and deployments: in spec.template.spec
        for fields in (spec, (spec.get("template") or {}).get("spec") or {}):
            for kind in ("enterprise", "organization", "repository"):
                if fields.get(kind):
                    out.add((Scope(kind, fields[kind]), namespace, secret))
    return out


class OrphanSweeper:
    def __init__(
        self,
        *,
        github: GitHubClient,
        directory: RunnerDirectory,
        runners: Informer,
        informers: Mapping[str, Informer],
        period: float,
        label: str,
        grace: float,
        clock: Callable[[], float] = time.monotonic,
        clients: GitHubClients | None = None,
    ) -> None:
        self.clients = clients or GitHubClients(None, GitHubAPI(github, directory))
        self.runners = runners
        self.informers = informers  # read at each sweep: extensions add runnersets later
        self.period = period
        self.label = label
        self.grace = grace
        self.clock = clock
        self._offline_since: dict[tuple[Scope, int], float] = {}
        self.removed: deque[str] = deque(maxlen=REMOVED_KEPT)
        self.removed_total = 0
        self.sweeps = 0

    @property
    def suspected(self) -> int:
        """This installation's registrations without a Runner, offline and waiting out their grace."""
        return len(self._offline_since)

    def _owner_objects(self) -> list[Obj]:
        return [
            obj for name in OWNER_INFORMERS if (i := self.informers.get(name)) is not None for obj in i.store
        ]

    async def reconcile(self, key: Key) -> Result | None:
        targets = _targets(self._owner_objects())
        if not self.label or not targets:
            self._offline_since.clear()
            return Result(requeue_after=self.period)
        known = {obj["metadata"]["name"] for obj in self.runners.store}
        pods = self.informers.get("pods")
        known |= {obj["metadata"]["name"] for obj in (pods.store if pods is not None else ())}
        offline: dict[tuple[Scope, int], float] = {}
        for scope, namespace, secret in sorted(targets):
            try:
                api = await self.clients.get(namespace, secret)
                listing = await api.directory.refresh(scope, max_age=self.period)
            except GitHubError as exc:
                logger.info("orphan sweep: listing %s %s failed: %s", scope.kind, scope.name, exc)
                # keep what is known of this scope: an outage does not restart the grace
                offline.update({k: t for k, t in self._offline_since.items() if k[0] == scope})
                continue
            offline.update(await self._sweep(api, scope, listing.runners, known))
        self._offline_since = offline
        self.sweeps += 1
        return Result(requeue_after=self.period)

    async def _sweep(
        self, api: GitHubAPI, scope: Scope, runners: Mapping[str, GitHubRunner], known: set[str]
    ) -> dict[tuple[Scope, int], float]:
        """Remove this installation's runners of one listing past their grace; the rest still in it."""
        now = self.clock()
        offline: dict[tuple[Scope, int], float] = {}
        for name, runner in list(runners.items()):  # forget() edits it meanwhile
            if name in known or not carries(runner, self.label):
                continue
            if runner.busy or runner.status == "online":
                continue
            since = self._offline_since.get((scope, runner.id), now)
            if now - since < self.grace or not await self._remove(api, scope, name, runner):
                offline[(scope, runner.id)] = since
        return offline

    async def _remove(self, api: GitHubAPI, scope: Scope, name: str, runner: GitHubRunner) -> bool:
        try:
            await api.github.delete_runner(scope, runner.id)
        except RunnerBusyError:
            return False
        except GitHubError as exc:
            logger.warning("orphan sweep: removing runner %s failed: %s", name, exc)
            return False
        api.directory.forget(scope, name)
        self.removed.append(name)
        self.removed_total += 1
        logger.info(
            "removed registration %s from %s %s: this installation's, no Runner owns it, offline for %.0fs",
            name,
            scope.kind,
            scope.name,
            self.grace,
        )
        return True
