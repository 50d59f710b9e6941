"""The one executor of a runner's lifecycle steps, for every runner kind.

:func:`runnerd.reconcile.lifecycle.decide` says what to do with one runner; :class:`Lifecycle`
does it, in order, stopping at the first step that cannot complete (:class:`StopSteps` carries the
reconcile's result: GitHub's 422 to the removal of a busy runner stops everything after it).

The GitHub steps are the same for every kind and live here: registration (a JIT config, recovering
from a 409 for a registration of the same name that was left without a pod; or a registration
token), abandoning an unused JIT registration, drain (labels replaced; a 404 marks the runner gone)
and deregistration (a 422 hints the runner directory that the runner is busy, for
:data:`~runnerd.reconcile.lifecycle.BUSY_RETRY` seconds: :meth:`Lifecycle.expire_refusal`; a 404 or
204 marks it gone). The Kubernetes steps differ by where the runner's object, pod and credential Secret live:
each kind implements :class:`RunnerHome` (the Runner controller: a Runner object and its pod; the
RunnerSet controller: a StatefulSet of one pod; the EphemeralRunner controller: an EphemeralRunner,
its pod and JIT Secret). A kind whose registrations live elsewhere (scale-set mode's runners, in the
Actions service) brings its own :class:`RunnerRegistry` for the GitHub steps and calls
:func:`perform_steps`; the order and the stop rule are the same. The Runner and RunnerSet
controllers are built alike (:class:`LifecycleDeps`): :class:`LifecycleController` holds their
clients and their :class:`Lifecycle`.

Guarantees: no step runs after one that stopped; a drained runner's drain time is remembered (keyed
by its object's uid) until its finalizer is removed or :meth:`Lifecycle.forget`; no GitHub call is
made for a runner the directory knows GitHub removed; a token is never logged; an object whose
finalizer this process removed is finalized once: :func:`perform_steps` records its uid in a
:class:`Finalized` memo, and every kind skips an object the memo holds (a cache that lags shows it
again, still with its finalizer, after its pod is gone: a second finalization would deregister a
runner GitHub has already removed, a 404). The memo is bounded in age and in size (:class:`Finalized`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, Protocol, TypedDict, TypeVar, Unpack

from runnerd.api import ApiParseError, CustomResource, RunnerScope
from runnerd.controller.clients import GitHubAPI, GitHubClients
from runnerd.controller.common import ControllerOptions, RunnerGroups, StopSteps, drain_labels
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.orphans import carries
from runnerd.github import GitHubClient, Scope
from runnerd.github import JitConfig as JitRunnerConfig
from runnerd.github.errors import (
    ConflictError,
    GitHubError,
    NotFoundError,
    RateLimitedError,
    RunnerBusyError,
)
from runnerd.kube.client import KubeClient
from runnerd.reconcile.credentials import JitConfig, Registration, RegistrationToken
from runnerd.reconcile.lifecycle import BUSY_RETRY, Step
from runnerd.runtime import EventRecorder, Result

logger = logging.getLogger(__name__)


class RunnerHome(Protocol):
    """Where one runner's object, pod and credential Secret live: the Kubernetes side of the steps.

    Each method may raise :class:`StopSteps` to end the reconcile with its result."""

    async def add_finalizer(self) -> None: ...
    async def create_pod(self) -> None: ...
    async def consume_credentials(self) -> None: ...
    async def delete_pod(self) -> None: ...
    async def delete_runner(self) -> None: ...
    async def remove_finalizer(self) -> None: ...


class LifecycleStats(Protocol):
    deregistrations: int
    busy_refusals: int


@dataclass(frozen=True)
class RunnerRef:
    """One runner as the GitHub steps see it."""

    target: Mapping[str, Any]
    """The object its events are recorded on."""
    name: str
    """Its name at GitHub (and its pod's)."""
    uid: str
    """The uid of the object that holds it (its drain time is remembered under it)."""
    scope: Scope | None
    runner_id: int | None


class RunnerRegistry(Protocol):
    """Where one runner's registration lives: the GitHub side of the steps (:class:`Lifecycle` for
    repository/organization/enterprise runners). Each may raise :class:`StopSteps`."""

    async def drain(self, ref: RunnerRef) -> None: ...
    async def deregister(self, ref: RunnerRef) -> None: ...
    def forget(self, uid: str) -> None: ...


FINALIZED_TTL = 600.0
"""How long a finalized object's uid is remembered: a cache lags seconds behind, not minutes (a
watch that fell further behind relists, and the object is gone from the relisted cache)."""
FINALIZED_LIMIT = 10_000
"""The most uids remembered at once (the oldest go first): 10x the 1,000 runners of the largest
benchmark, so at that size an entry leaves by age, not by number."""


class Finalized:
    """The uids of objects whose finalizer this process removed: each is gone at the API server (or
    going: every kind removes its finalizer only from an object being deleted), whatever a cache that
    lags still shows. A new object of the same name has a new uid, so it is not held.

    Bounded: an entry is dropped :data:`FINALIZED_TTL` seconds after it was added, and beyond
    :data:`FINALIZED_LIMIT` entries the oldest is dropped; both cost O(1) amortized per :meth:`add`."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        ttl: float = FINALIZED_TTL,
        limit: int = FINALIZED_LIMIT,
    ) -> None:
        self.clock = clock
        self.ttl = ttl
        self.limit = limit
        self._at: OrderedDict[str, float] = OrderedDict()  # uid -> when, oldest first

    def __len__(self) -> int:
        return len(self._at)

    def add(self, uid: str) -> None:
        if not uid:
            return
        now = self.clock()
        self._at[uid] = now
        self._at.move_to_end(uid)
        while self._at:  # the oldest first: each entry is dropped once
            old, at = next(iter(self._at.items()))
            if len(self._at) <= self.limit and now - at < self.ttl:
                break
            del self._at[old]

    def holds(self, obj: Mapping[str, Any]) -> bool:
        """This object (by its uid) was finalized by this process less than ``ttl`` ago."""
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        at = self._at.get(uid) if uid else None
        return at is not None and self.clock() - at < self.ttl


async def perform_steps(
    steps: Sequence[Step],
    ref: RunnerRef,
    home: RunnerHome,
    registry: RunnerRegistry,
    finalized: Finalized | None = None,
) -> None:
    """Every step in order; raises :class:`StopSteps` from the first that cannot complete. A removed
    finalizer is recorded in ``finalized``."""
    for step in steps:
        if step is Step.ADD_FINALIZER:
            await home.add_finalizer()
        elif step is Step.CREATE_POD:
            await home.create_pod()
        elif step is Step.CONSUME_CREDENTIALS:
            await home.consume_credentials()
        elif step is Step.DRAIN:
            await registry.drain(ref)
        elif step is Step.DEREGISTER:
            await registry.deregister(ref)
        elif step is Step.DELETE_POD:
            await home.delete_pod()
        elif step is Step.DELETE_RUNNER:
            await home.delete_runner()
        elif step is Step.REMOVE_FINALIZER:
            await home.remove_finalizer()
            registry.forget(ref.uid)
            if finalized is not None:
                finalized.add(ref.uid)


def rate_limit_wait(exc: RateLimitedError) -> Result:
    return Result(requeue_after=max(1.0, exc.resume_at - time.time()))


class Lifecycle:
    """The steps of :mod:`runnerd.reconcile.lifecycle`, carried out for one controller."""

    def __init__(
        self,
        *,
        clients: GitHubClients,
        recorder: EventRecorder,
        options: ControllerOptions,
        stats: LifecycleStats,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clients = clients
        self.recorder = recorder
        self.options = options
        self.stats = stats
        self.clock = clock
        self.groups = RunnerGroups(options.runner_group_ttl)
        self._drained: dict[str, float] = {}
        self._refused: dict[tuple[Scope, str], float] = {}  # (scope, runner) -> when GitHub said 422
        self.finalized = Finalized(clock)

    @property
    def github(self) -> GitHubClient:
        return self.clients.current().github

    def drained_at(self, uid: str) -> float | None:
        return self._drained.get(uid)

    def forget(self, uid: str) -> None:
        self._drained.pop(uid, None)

    def refused(self, scope: Scope, name: str) -> bool:
        """GitHub answered 422 (busy) to this runner's removal and the removal has not succeeded since."""
        return (scope, name) in self._refused

    def expire_refusal(self, scope: Scope | None, name: str) -> None:
        """Call before reading the runner's GitHub state: a busy hint that a 422 left is dropped
        after :data:`BUSY_RETRY`, so the removal is tried again (another 422 hints it again) even
        where no ``completed`` webhook arrives to clear it."""
        if scope is None:
            return
        at = self._refused.get((scope, name))
        if at is not None and self.clock() - at >= BUSY_RETRY:
            del self._refused[(scope, name)]
            self.clients.current().directory.hint_busy(scope, name, False)

    async def perform(self, steps: Sequence[Step], ref: RunnerRef, home: RunnerHome) -> None:
        """Every step in order; raises :class:`StopSteps` from the first that cannot complete."""
        await perform_steps(steps, ref, home, self, self.finalized)

    async def drain(self, ref: RunnerRef) -> None:
        """Replace the runner's custom labels so no new job is routed to it."""
        directory = self.clients.current().directory
        if ref.runner_id is None or ref.scope is None:
            return
        try:
            if not directory.gone(ref.scope, ref.runner_id):
                await self.github.set_runner_labels(ref.scope, ref.runner_id, drain_labels(self.options))
        except RateLimitedError as exc:
            raise StopSteps(rate_limit_wait(exc)) from None
        except NotFoundError:
            # already gone from GitHub: nothing can be routed to it, and nothing to deregister
            directory.mark_gone(ref.scope, ref.name, ref.runner_id)
        except GitHubError as exc:
            await self.recorder.warning(ref.target, exc.reason, f"draining runner {ref.name}: {exc}")
            raise StopSteps(Result(requeue=True)) from None
        self._drained[ref.uid] = self.clock()
        await self.recorder.normal(
            ref.target,
            "Draining",
            f"runner {ref.name} takes no new jobs; removed in {self.options.drain_grace:.0f}s"
            " unless a job shows up",
        )

    async def deregister(self, ref: RunnerRef) -> None:
        """DELETE the registration: 204/404 done; 422 busy (the directory is told; stop here)."""
        directory = self.clients.current().directory
        if ref.runner_id is None or ref.scope is None:
            return
        try:
            if not directory.gone(ref.scope, ref.runner_id):
                await self.github.delete_runner(ref.scope, ref.runner_id)  # 404: already gone, fine
        except RunnerBusyError:
            self.stats.busy_refusals += 1
            directory.hint_busy(ref.scope, ref.name, True)
            self._refused[(ref.scope, ref.name)] = self.clock()
            await self.recorder.normal(
                ref.target,
                "RunnerBusy",
                f"runner {ref.name} is running a job; it is removed once the job is done",
            )
            raise StopSteps(Result(requeue_after=BUSY_RETRY)) from None
        except RateLimitedError as exc:
            raise StopSteps(rate_limit_wait(exc)) from None
        except GitHubError as exc:
            await self.recorder.warning(
                ref.target, exc.reason, f"removing runner {ref.name} from GitHub: {exc}"
            )
            raise StopSteps(Result(requeue=True)) from None
        self.stats.deregistrations += 1
        self._refused.pop((ref.scope, ref.name), None)
        directory.mark_gone(ref.scope, ref.name, ref.runner_id)

    async def register(
        self,
        target: Mapping[str, Any],
        scope: Scope,
        name: str,
        *,
        jit: bool,
        labels: Sequence[str],
        group: str | None,
        work_folder: str,
    ) -> Registration:
        """A registration token, or a JIT config for ``name`` (GitHub errors propagate)."""
        if not jit:
            token = await self.github.create_registration_token(scope)
            return RegistrationToken(token.token)
        custom = [label for label in labels if label.lower() != "self-hosted"] or ["self-hosted"]

        async def generate(group_id: int) -> JitRunnerConfig:
            return await self.github.generate_jit_config(
                scope, name, labels=custom, runner_group_id=group_id, work_folder=work_folder
            )

        try:
            jit_config = await self.groups.call(self.github, scope, group, generate)
        except ConflictError:
            if not await self._remove_stale(target, scope, name):
                raise
            jit_config = await self.groups.call(self.github, scope, group, generate)
        return JitConfig(jit_config.encoded_jit_config, jit_config.runner_id)

    async def _remove_stale(self, target: Mapping[str, Any], scope: Scope, name: str) -> bool:
        """A registration of this name is left from an attempt whose pod was never created (e.g. the
        controller stopped in between). It has no pod, so it holds no job: remove it (unless another
        installation owns the name: False, the 409 stands)."""
        for stale in await self.github.list_runners(scope, name=name):
            if stale.name != name:
                continue
            label = self.options.pod.installation_label
            if label and not carries(stale, label):
                # another installation's runner of the same name (two clusters, one org)
                await self.recorder.warning(
                    target, "RunnerNameTaken", f"a runner named {name} is registered by another installation"
                )
                return False
            await self.github.delete_runner(scope, stale.id)
            await self.recorder.normal(
                target, "StaleRegistrationRemoved", f"removed a registration of {name} left without a pod"
            )
        return True

    async def abandon(self, scope: Scope, registration: Registration) -> None:
        """Remove a JIT registration no pod will use (a token needs nothing)."""
        if isinstance(registration, JitConfig):
            try:
                await asyncio.shield(self.github.delete_runner(scope, registration.runner_id))
            except GitHubError as exc:
                logger.warning("could not remove unused registration %s: %s", registration.runner_id, exc)


R = TypeVar("R", bound=CustomResource)


class LifecycleDeps(TypedDict):
    """What a controller of registered runners (Runner, RunnerSet) is built from. With ``clients``
    each object's client follows its credentials Secret; without, every object uses ``github``."""

    kube: KubeClient
    github: GitHubClient
    directory: RunnerDirectory
    recorder: EventRecorder
    options: ControllerOptions
    clock: NotRequired[Callable[[], float]]
    clients: NotRequired[GitHubClients | None]


class LifecycleController:
    """What the Runner and RunnerSet controllers share: their clients and one :class:`Lifecycle`."""

    def __init__(self, stats: LifecycleStats, **deps: Unpack[LifecycleDeps]) -> None:
        self.kube = deps["kube"]
        self.recorder = deps["recorder"]
        self.options = deps["options"]
        self.clock = deps.get("clock", time.time)
        self.clients = deps.get("clients") or GitHubClients(
            None, GitHubAPI(deps["github"], deps["directory"])
        )
        self.lifecycle = Lifecycle(
            clients=self.clients, recorder=self.recorder, options=self.options, stats=stats, clock=self.clock
        )

    def finalized_before(self, obj: Mapping[str, Any]) -> bool:
        """This process removed the object's finalizer: it is gone, whatever a lagging cache shows
        (see :class:`Finalized`); reconcile nothing of it, not even a credentials read."""
        return self.lifecycle.finalized.holds(obj)

    @property
    def github(self) -> GitHubClient:
        """The client of the object being reconciled (its githubAPICredentialsFrom, or the default)."""
        return self.clients.current().github

    @property
    def directory(self) -> RunnerDirectory:
        return self.clients.current().directory

    async def parse_scoped(
        self, obj: Mapping[str, Any], kind: type[R], scope_of: Callable[[R], RunnerScope | None]
    ) -> R | None:
        """The object as ``kind`` if it parses and names a GitHub scope; else ``None`` and an
        ``InvalidSpec`` warning on it saying why."""
        try:
            parsed = kind.from_dict(obj)
        except ApiParseError as exc:
            await self.recorder.warning(obj, "InvalidSpec", str(exc))
            return None
        if scope_of(parsed) is None:
            await self.recorder.warning(
                obj, "InvalidSpec", "spec needs enterprise, organization or repository"
            )
            return None
        return parsed
