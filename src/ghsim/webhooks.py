"""Webhook deliveries: ``workflow_job`` events posted to configured hooks, with fault injection.

Every hook has its own queue, sent by ``parallelism`` workers at once (default 16): like GitHub, a
burst of events reaches the receiver concurrently, so the receiver's throughput, not a serial sender,
decides how fast a burst is accepted, and deliveries may overtake each other (GitHub does not
guarantee order either). ``parallelism=1`` sends one after another, in order.
Faults (per hook, seeded so runs repeat; every fault is drawn when the event is enqueued, so the same
seed picks the same deliveries whatever the scheduling):

* ``drop``: this fraction of deliveries is never sent (recorded as ``dropped``);
* ``duplicate``: this fraction is sent twice (same ``X-GitHub-Delivery``, as GitHub's at-least-once
  delivery can do);
* ``reorder``: this fraction is held back and sent after the next delivery;
* ``delay_s``: every delivery is sent this long after its event;
* ``fail``: nothing is sent; every delivery is recorded as ``failed`` (can be redelivered later).

GitHub does not retry failed deliveries by itself, and neither does the simulator.

Every attempt to send (a duplicate's second send and a redelivery included; not a dropped delivery,
which GitHub never attempted) is also recorded per hook as an :class:`Attempt`, in the shape of
GitHub's hook deliveries API (:mod:`ghsim.hookdeliveries` serves it): ids grow in the order the
attempts finish, a fault or connection failure is ``status_code`` 0 with a ``status`` such as
``failed to connect``, and a redelivery (:meth:`WebhookDispatcher.redeliver_attempt`) sends the
original payload again with the same ``X-GitHub-Delivery`` GUID and ``redelivery: true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .entities import Hook, Repo, Scope
from .model import JobEvent, World
from .payloads import build_workflow_job_event
from .render import Renderer

log = logging.getLogger(__name__)

USER_AGENT = "GitHub-Hookshot/ghsim"


def signature_256(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_1(secret: str, body: bytes) -> str:
    """The legacy ``X-Hub-Signature`` (HMAC-SHA1) GitHub still sends alongside."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def verify_signature_256(secret: str, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(signature_256(secret, body), header)


@dataclass
class Delivery:
    guid: str
    hook_id: int
    event: str
    action: str
    job_id: int
    body: bytes
    headers: dict[str, str]
    created_at: float
    due: float
    status: str = "pending"  # pending | delivered | failed | dropped
    status_code: int | None = None
    attempts: int = 0
    duplicate: bool = False
    reordered: bool = False
    want_duplicate: bool = False
    want_reorder: bool = False
    delivered_at: list[float] = field(default_factory=list)
    error: str | None = None
    installation_id: int | None = None
    repository_id: int | None = None
    redelivery: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "guid": self.guid,
            "hook_id": self.hook_id,
            "event": self.event,
            "action": self.action,
            "job_id": self.job_id,
            "status": self.status,
            "status_code": self.status_code,
            "attempts": self.attempts,
            "duplicate": self.duplicate,
            "reordered": self.reordered,
            "created_at": self.created_at,
            "delivered_at": list(self.delivered_at),
            "error": self.error,
        }


@dataclass
class Attempt:
    """One attempt to send a delivery, as GitHub's hook deliveries API lists it."""

    id: int
    delivery: Delivery
    delivered_at: float
    duration: float
    status: str
    status_code: int
    redelivery: bool
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str | None = None


class WebhookDispatcher:
    def __init__(
        self, world: World, renderer: Renderer, *, history: int = 20_000, parallelism: int = 16
    ) -> None:
        if parallelism < 1:
            raise ValueError("parallelism must be at least 1")
        self.world = world
        self.renderer = renderer
        self.parallelism = parallelism
        self.deliveries: deque[Delivery] = deque(maxlen=history)
        self._by_guid: dict[str, Delivery] = {}
        self._queues: dict[int, asyncio.Queue[Delivery]] = {}
        self._workers: dict[int, list[asyncio.Task[None]]] = {}
        self._rngs: dict[int, random.Random] = {}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._history = history
        self.attempts: dict[int, deque[Attempt]] = {}
        """Per hook id, the attempts in the order they finished (oldest first)."""
        self._attempt_ids = itertools.count(1)
        self._attempt_by_id: dict[int, Attempt] = {}

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def stop(self) -> None:
        self._closed = True
        workers = [task for tasks in self._workers.values() for task in tasks]
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)  # let the closed connections' sockets close
            self._session = None

    # ---- producing -------------------------------------------------------------------------

    def hooks_for(self, repo: Repo) -> list[tuple[Hook, int | None]]:
        """Hooks that receive events of ``repo``, with the installation id for app hooks."""
        out: list[tuple[Hook, int | None]] = []
        org = self.world.orgs.get(repo.owner.lower())
        for hook in self.world.hooks.values():
            if not hook.active or "workflow_job" not in hook.events:
                continue
            if hook.app_id is not None:
                inst = self.world.installation_for(hook.app_id, Scope("repo", repo.full_name))
                if inst is not None and not inst.suspended:
                    out.append((hook, inst.id))
                continue
            assert hook.scope is not None
            kind, name = hook.scope.kind, hook.scope.name.lower()
            if (
                (kind == "repo" and name == repo.full_name.lower())
                or (kind == "org" and name == repo.owner.lower())
                or (kind == "enterprise" and org is not None and (org.enterprise or "").lower() == name)
            ):
                out.append((hook, None))
        return out

    def on_job_event(self, event: JobEvent) -> None:
        if self._closed or not self.world.hooks:
            return
        repo = self.world.repos_by_id[event.job.repo_id]
        for hook, installation_id in self.hooks_for(repo):
            payload = build_workflow_job_event(self.renderer, event.action, event.job, hook, installation_id)
            body = json.dumps(payload.to_dict(), separators=(",", ":")).encode()
            self._enqueue(hook, event.action, event.job.id, body, (installation_id, repo.id))

    def _target(self, hook: Hook) -> tuple[str, str]:
        if hook.app_id is not None:
            return "integration", str(hook.app_id)
        assert hook.scope is not None
        if hook.scope.kind == "repo":
            return "repository", str(self.world.repo_by_name(hook.scope.name).id)
        if hook.scope.kind == "org":
            return "organization", str(self.world.org(hook.scope.name).id)
        return "business", str(self.world.enterprise(hook.scope.name).id)

    def _enqueue(
        self, hook: Hook, action: str, job_id: int, body: bytes, ids: tuple[int | None, int | None]
    ) -> None:
        now = time.monotonic()
        guid = str(uuid.uuid4())
        target_type, target_id = self._target(hook)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-GitHub-Event": "workflow_job",
            "X-GitHub-Delivery": guid,
            "X-GitHub-Hook-ID": str(hook.id),
            "X-GitHub-Hook-Installation-Target-Type": target_type,
            "X-GitHub-Hook-Installation-Target-ID": target_id,
        }
        if hook.secret:
            headers["X-Hub-Signature"] = signature_1(hook.secret, body)
            headers["X-Hub-Signature-256"] = signature_256(hook.secret, body)
        delivery = Delivery(
            guid, hook.id, "workflow_job", action, job_id, body, headers, self.world.now(), now
        )
        delivery.installation_id, delivery.repository_id = ids
        self.deliveries.append(delivery)
        self._by_guid[guid] = delivery
        if len(self._by_guid) > (self.deliveries.maxlen or 0) * 2:
            live = {d.guid for d in self.deliveries}
            self._by_guid = {g: d for g, d in self._by_guid.items() if g in live}
        rng = self._rng(hook)
        if hook.drop and rng.random() < hook.drop:
            delivery.status = "dropped"
            return
        delivery.due = now + hook.delay_s
        delivery.want_reorder = bool(hook.reorder and rng.random() < hook.reorder)
        delivery.want_duplicate = bool(hook.duplicate and rng.random() < hook.duplicate)
        self._queue(hook.id).put_nowait(delivery)

    def _rng(self, hook: Hook) -> random.Random:
        rng = self._rngs.get(hook.id)
        if rng is None:
            rng = self._rngs[hook.id] = random.Random(hook.seed)
        return rng

    def _queue(self, hook_id: int) -> asyncio.Queue[Delivery]:
        queue = self._queues.get(hook_id)
        if queue is None:
            queue = self._queues[hook_id] = asyncio.Queue()
            loop = asyncio.get_running_loop()
            self._workers[hook_id] = [
                loop.create_task(self._worker(hook_id, queue), name=f"ghsim-hook-{hook_id}-{i}")
                for i in range(self.parallelism)
            ]
        return queue

    def redeliver(self, guid: str) -> Delivery:
        """The admin API's redelivery: the delivery's payload again, under a new GUID."""
        old = self._by_guid.get(guid)
        if old is None or old.hook_id not in self.world.hooks:  # a hook deleted since: as unknown
            raise KeyError(guid)
        new = self._send_again(old, str(uuid.uuid4()), redelivery=False)
        self._by_guid[new.guid] = new
        return new

    def attempt(self, attempt_id: int) -> Attempt | None:
        return self._attempt_by_id.get(attempt_id)

    def redeliver_attempt(self, attempt: Attempt) -> Delivery:
        """GitHub's redelivery: the attempt's payload and headers again, the same GUID, as a new
        attempt with ``redelivery: true``."""
        return self._send_again(attempt.delivery, attempt.delivery.guid, redelivery=True)

    def _send_again(self, old: Delivery, guid: str, *, redelivery: bool) -> Delivery:
        """``old``'s event queued again to its hook, as the delivery ``guid``."""
        new = Delivery(
            guid,
            old.hook_id,
            old.event,
            old.action,
            old.job_id,
            old.body,
            {**old.headers, "X-GitHub-Delivery": guid},
            self.world.now(),
            time.monotonic(),
            installation_id=old.installation_id,
            repository_id=old.repository_id,
            redelivery=redelivery,
        )
        self.deliveries.append(new)
        self._queue(old.hook_id).put_nowait(new)
        return new

    def _record(self, delivery: Delivery, started: float, status: str, code: int, resp: Any = None) -> None:
        attempt = Attempt(
            next(self._attempt_ids),
            delivery,
            self.world.now(),
            round(time.monotonic() - started, 3),
            status,
            code,
            delivery.redelivery,
        )
        if resp is not None:
            attempt.response_headers = dict(resp.headers)
            attempt.response_body = resp.body
        log_ = self.attempts.get(delivery.hook_id)
        if log_ is None:
            log_ = self.attempts[delivery.hook_id] = deque(maxlen=self._history)
        if len(log_) == log_.maxlen:
            self._attempt_by_id.pop(log_[0].id, None)
        log_.append(attempt)
        self._attempt_by_id[attempt.id] = attempt

    async def drained(self) -> None:
        """Return once every delivery enqueued so far has been sent, dropped or failed."""
        for queue in list(self._queues.values()):
            await queue.join()

    # ---- sending -----------------------------------------------------------------------------

    async def _worker(self, hook_id: int, queue: asyncio.Queue[Delivery]) -> None:
        held: Delivery | None = None  # a delivery being reordered: sent after the next one

        async def release() -> None:
            nonlocal held
            if held is not None:
                await self._send(held)
                held = None
                queue.task_done()

        while True:
            if held is None:
                delivery = await queue.get()
            else:
                try:
                    delivery = await asyncio.wait_for(queue.get(), timeout=0.2)
                except TimeoutError:
                    await release()
                    continue
            hook = self.world.hooks.get(hook_id)
            if hook is None:
                delivery.status, delivery.error = "failed", "hook deleted"
                queue.task_done()
                continue
            wait = delivery.due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if held is None and delivery.want_reorder:
                delivery.reordered = True
                held = delivery
                continue
            await self._send(delivery)
            if delivery.want_duplicate:
                delivery.duplicate = True
                await self._send(delivery)
            queue.task_done()
            await release()

    async def _send(self, delivery: Delivery) -> None:
        hook = self.world.hooks.get(delivery.hook_id)
        delivery.attempts += 1
        started = time.monotonic()
        if hook is None:
            delivery.status, delivery.error = "failed", "hook deleted"
            return
        if hook.fail:
            delivery.status, delivery.error = "failed", "delivery failure injected"
            self._record(delivery, started, "failed to connect to host", 0)
            return
        assert self._session is not None
        try:
            async with self._session.post(hook.url, data=delivery.body, headers=delivery.headers) as resp:
                text = await resp.text(errors="replace")
                delivery.status_code = resp.status
                delivery.status = "delivered" if 200 <= resp.status < 300 else "failed"
                if delivery.status == "failed":
                    delivery.error = f"HTTP {resp.status}"
                status = "OK" if delivery.status == "delivered" else f"Invalid HTTP Response: {resp.status}"
                self._record(delivery, started, status, resp.status, _Response(dict(resp.headers), text))
        except (aiohttp.ClientError, TimeoutError) as exc:
            delivery.status, delivery.error = "failed", f"{type(exc).__name__}: {exc}"
            log.info("webhook delivery %s to hook %s failed: %s", delivery.guid, hook.id, delivery.error)
            timed_out = isinstance(exc, TimeoutError)
            self._record(delivery, started, "timed out" if timed_out else "failed to connect to host", 0)
        delivery.delivered_at.append(self.world.now())


@dataclass(frozen=True)
class _Response:
    headers: dict[str, str]
    body: str
