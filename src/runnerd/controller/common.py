"""Names and small helpers the controllers share."""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from runnerd.api import constants as c
from runnerd.github import DEFAULT_RUNNER_GROUP_ID, GitHubClient, NotFoundError, Scope
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import PODS, Resource
from runnerd.manifests.pod import PodOptions
from runnerd.reconcile.credentials import owner_reference
from runnerd.reconcile.hashing import SUFFIX_ALPHABET, SUFFIX_LENGTH
from runnerd.runtime import Conflict, Key, NotFound, Result

T = TypeVar("T")

RUNNERS = Resource(c.GROUP, c.VERSION, "runners", "Runner")
RUNNER_REPLICA_SETS = Resource(c.GROUP, c.VERSION, "runnerreplicasets", "RunnerReplicaSet")
RUNNER_DEPLOYMENTS = Resource(c.GROUP, c.VERSION, "runnerdeployments", "RunnerDeployment")
RUNNER_SETS = Resource(c.GROUP, c.VERSION, "runnersets", "RunnerSet")
HORIZONTAL_RUNNER_AUTOSCALERS = Resource(
    c.GROUP, c.VERSION, "horizontalrunnerautoscalers", "HorizontalRunnerAutoscaler"
)
__all__ = [
    "HORIZONTAL_RUNNER_AUTOSCALERS",
    "PODS",
    "RUNNERS",
    "RUNNER_DEPLOYMENTS",
    "RUNNER_REPLICA_SETS",
    "RUNNER_SETS",
    "ControllerOptions",
    "ObjectMemo",
    "controller_kind",
    "controller_ref",
    "epoch",
    "random_suffix",
]

INDEX_CONTROLLER = "controller"
"""The informer index of owned objects by their controller's UID (Runners, RunnerReplicaSets)."""
RUNNER_FINALIZER = "runner.actions.summerwind.dev"
LABEL_DEPLOYMENT_NAME = "runner-deployment-name"
LABEL_TEMPLATE_HASH = "runner-template-hash"
ANNOTATION_REGISTRATION = "runnerd.dev/registration"
"""On a Runner (or its template): ``jit`` or ``token``; overrides the controller's choice."""

RegistrationMode = Literal["auto", "jit", "token"]


@dataclass
class Backoff:
    """Failures of one runner's pod (or StatefulSet), and when the next attempt may start."""

    failures: int = 0
    next_attempt_at: float = 0.0


class StopSteps(Exception):
    """A step of a reconcile could not complete; the reconcile ends with ``result``."""

    def __init__(self, result: Result) -> None:
        super().__init__()
        self.result = result


@dataclass(frozen=True, kw_only=True)
class ControllerOptions:
    """Controller-wide settings (ARC's flag names in the CLI)."""

    namespace: str | None = None
    """Watch only this namespace (None: all namespaces)."""
    sync_period: float = 60.0
    """How often an idle runner's GitHub state is re-read at most (the listing is shared per scope)."""
    registering_max_age: float = 3.0
    """How old a listing may be for a runner that is still coming online."""
    registration_timeout: float = 600.0
    """A runner pod that runs this long without its runner coming online is replaced."""
    registration_mode: RegistrationMode = "auto"
    """``auto``: registration tokens for images that need RUNNER_TOKEN (summerwind/actions-runner*),
    JIT configs for every other image."""
    drain_grace: float = 30.0
    """After a runner's labels are replaced for removal, wait this long for any sign of a job that was
    routed to it just before; only then remove it (see runnerd.reconcile.lifecycle)."""
    drain_label: str = "runnerd-draining"
    orphan_grace: float = 900.0
    """A registration of this installation with no Runner is removed only once it has been seen
    offline for this long (it covers a pod that pulls a large image before its runner starts)."""
    github_default_labels: tuple[str, ...] = ()
    """Labels GitHub gives every runner besides its own (``linux``, ``x64``, ...) that job matching
    counts as the runner's (``--github-default-labels``). Empty, ARC's behaviour: a job that asks
    for ``linux`` does not match a RunnerDeployment that does not list it."""
    credentials_refresh: float = 60.0
    """How often a githubAPICredentialsFrom Secret is re-read (a rotation is picked up within it)."""
    runner_group_ttl: float = 600.0
    """How long a runner group's id is trusted before it is looked up again (also on a 404)."""
    orphan_sweep_period: float = 300.0
    """How often GitHub registrations that no Runner owns are looked for (one listing per scope)."""
    max_backoff: float = 300.0
    enable_sizing: bool = False
    """Watch ``RunnerSizingPolicy`` objects, size jobs that ask for it and admit them by capacity
    (``--enable-sizing``, docs/gpu-sizing.md; the CRD must be installed). Off: sizing labels are
    plain labels, as before."""
    reservation_journal: bool = True
    """Webhook reservations are journalled (a small ConfigMap per group commit) and folded into the
    HRA by the leader (``--reservation-journal``, the default; :mod:`runnerd.controller.journal`).
    False (``--no-reservation-journal``): each group commit writes the HRA's list, as ARC does."""
    runner_workers: int = 32
    workers: int = 4
    pod: PodOptions = field(default_factory=PodOptions)


def drain_labels(options: ControllerOptions) -> list[str]:
    """A draining runner's only custom labels: the drain label, and the installation label so the
    registration stays recognisably this installation's (:mod:`runnerd.controller.orphans`)."""
    return [
        options.drain_label,
        *([options.pod.installation_label] if options.pod.installation_label else []),
    ]


def matching_labels(options: ControllerOptions) -> tuple[str, ...]:
    """Labels every runner has besides its spec's, for job matching: ``--common-runner-labels``, and
    GitHub's default labels when ``--github-default-labels`` names them."""
    return (*options.pod.common_runner_labels, *options.github_default_labels)


class RunnerGroups:
    """Runner-group ids by (scope, name), looked up again after ``ttl`` seconds or when GitHub
    answers 404 for one (:meth:`forget`): a group deleted and re-created gets a new id."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._ids: dict[tuple[Scope, str], tuple[int, float]] = {}
        self.lookups = 0

    async def id(self, github: GitHubClient, scope: Scope, group: str | None) -> int:
        if not group or scope.kind == "repository":
            return DEFAULT_RUNNER_GROUP_ID
        cached = self._ids.get((scope, group))
        if cached is not None and self.clock() - cached[1] < self.ttl:
            return cached[0]
        group_id = await github.find_runner_group_id(scope, group)
        self.lookups += 1
        self._ids[(scope, group)] = (group_id, self.clock())
        return group_id

    def forget(self, scope: Scope, group: str | None) -> bool:
        """Drop a cached id GitHub no longer knows; whether there was one to drop."""
        return self._ids.pop((scope, group or ""), None) is not None

    async def call(
        self,
        github: GitHubClient,
        scope: Scope,
        group: str | None,
        request: Callable[[int], Awaitable[T]],
    ) -> T:
        """``request(group_id)``; a 404 answered with a cached id (the group was deleted, and maybe
        re-created under a new id) looks the group up once more and repeats the request."""
        group_id = await self.id(github, scope, group)
        try:
            return await request(group_id)
        except NotFoundError:
            if not self.forget(scope, group):
                raise
        return await request(await self.id(github, scope, group))


def controller_ref(obj: Mapping[str, Any]) -> dict[str, Any]:
    return owner_reference(obj, c.API_VERSION, obj["kind"])


def controller_kind(obj: Mapping[str, Any]) -> str | None:
    """The kind of the object's controller (its ownerReference marked ``controller``), if any."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((str(ref.get("kind")) for ref in refs if ref.get("controller")), None)


def random_suffix() -> str:
    """What ``generateName`` would add: :data:`SUFFIX_LENGTH` characters of its alphabet."""
    return "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(SUFFIX_LENGTH))


def epoch(value: dt.datetime | None, default: float | None = None) -> float | None:
    return value.timestamp() if value is not None else default


def created_at(obj: Mapping[str, Any]) -> float:
    text = (obj.get("metadata") or {}).get("creationTimestamp")
    if not text:
        return time.time()
    return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()


async def patch_status(
    kube: KubeClient, resource: Resource, obj: Mapping[str, Any], status: Mapping[str, Any]
) -> None:
    """Write ``status`` unless ``obj`` already shows it; a gone or changed object is left alone (its
    next reconcile writes again)."""
    current = obj.get("status") or {}
    if all(current.get(k) == v for k, v in status.items()):
        return
    meta = obj["metadata"]
    try:
        await kube.patch_status(resource, meta["name"], {"status": dict(status)}, namespace=meta["namespace"])
    except (NotFound, Conflict):
        return


class ObjectMemo(Generic[T]):
    """What a reconcile worked out from a cached object (its parsed form, a hash of its template), by
    the object's key: reused while the cache holds that very object (the informers replace cached
    objects at every change, never change them in place; a pass woken by another object's event
    finds the same one), worked out again otherwise. One entry per key: :meth:`forget` it when the
    object is gone. ``work`` that raises remembers nothing."""

    def __init__(self) -> None:
        self._memo: dict[Key, tuple[Mapping[str, Any], T]] = {}

    def __len__(self) -> int:
        return len(self._memo)

    def get(self, key: Key, obj: Mapping[str, Any], work: Callable[[Mapping[str, Any]], T]) -> T:
        hit = self._memo.get(key)
        if hit is not None and hit[0] is obj:
            return hit[1]
        value = work(obj)
        self._memo[key] = (obj, value)
        return value

    def keys(self) -> set[Key]:
        return set(self._memo)

    def forget(self, key: Key) -> None:
        self._memo.pop(key, None)
