"""A scale set's message session: create / refresh / delete, the long poll, acks and job acquisition.

Contract (§4 to §7 of the scale-set reference, with ARC's session-conflict bug fixed):

* :meth:`MessageSession.open` creates the session. A 409 ``RunnerScaleSetSessionConflictException``
  (another listener's session, or a crashed one's that lingers until the service expires it) is
  retried with capped, jittered backoff until ``ConflictPolicy.timeout_s`` has passed, then raised;
  the session is taken over as soon as the service lets the old one go. Given the id of a session
  this owner left behind (``stale_session_id``), it is deleted first, so a restart takes over at once.
  A session without a queue URL or token (seen during GitHub incidents) is deleted and raised.
* queue calls (GET/DELETE message, ``acquirejobs``) carry the queue token; a 401 refreshes the
  session (PATCH) and retries once; a second 401 raises :class:`MessageQueueTokenExpired`.
* :meth:`MessageSession.get_message` returns ``None`` on 202 (nothing within the hold window) and a
  parsed :class:`ScaleSetMessage` on 200; a 200 with no body, another ``messageType`` or no
  statistics is an :class:`ActionsServiceError` (ARC exits on these; the listener reconnects).
* :meth:`MessageSession.close` deletes the session; a session or scale set already gone is fine.
* ``acquirejobs`` answering 404 (the broker backend has no such route: jobs are auto-assigned) gives
  an empty list.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from runnerd.github.actions.client import API_VERSION, SCALE_SETS, ActionsClient
from runnerd.github.actions.errors import (
    ActionsServiceError,
    MessageQueueTokenExpired,
    ScaleSetNotFound,
    SessionConflict,
    SessionExpired,
)
from runnerd.github.actions.models import (
    JOB_MESSAGE_TYPES,
    ScaleSetJob,
    ScaleSetMessage,
    ScaleSetSession,
    ScaleSetStatistics,
)
from runnerd.github.actions.transport import Answer
from runnerd.github.budget import Clock, Draw, Sleep

log = logging.getLogger("runnerd.github.actions.session")

MESSAGE_TYPE: Final = "RunnerScaleSetJobMessages"
#: ``X-ScaleSetMaxCapacity`` when ``maxRunners`` is unset (what ARC sends)
UNLIMITED: Final = 2_147_483_647
_SESSIONS: Final = SCALE_SETS + "/{id}/sessions"


@dataclass(frozen=True)
class ConflictPolicy:
    """How long to keep asking for a session another listener holds: retry ``n`` after
    ``min(max_delay_s, base_delay_s * 2**(n-1))`` (jittered), for at most ``timeout_s``."""

    base_delay_s: float = 2.0
    max_delay_s: float = 30.0
    timeout_s: float = 900.0

    def delay(self, retry: int, draw: float) -> float:
        nominal = min(self.max_delay_s, self.base_delay_s * 2.0 ** max(retry - 1, 0))
        return nominal * (0.5 + 0.5 * min(max(draw, 0.0), 1.0))


class MessageSession:
    """One scale set's session, owned by one listener (see the module docstring)."""

    def __init__(
        self,
        client: ActionsClient,
        scale_set_id: int,
        owner: str,
        *,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        draw: Draw = random.random,
        conflicts: ConflictPolicy | None = None,
    ) -> None:
        self.client = client
        self.scale_set_id = scale_set_id
        self.owner = owner
        self._clock = clock
        self._sleep = sleep
        self._draw = draw
        self._conflicts = conflicts or ConflictPolicy()
        self.session: ScaleSetSession | None = None
        #: 409s met by :meth:`open` so far (a metric)
        self.conflicts = 0

    def _path(self, suffix: str = "") -> str:
        return f"{SCALE_SETS}/{self.scale_set_id}/sessions{suffix}"

    async def open(self, *, stale_session_id: str = "") -> ScaleSetSession:
        if stale_session_id:
            await self._delete(stale_session_id)
        deadline = self._clock() + self._conflicts.timeout_s
        retry = 0
        while True:
            try:
                answer = await self.client.call(
                    "POST", self._path(), template=_SESSIONS, body={"ownerName": self.owner}
                )
                break
            except SessionConflict:
                self.conflicts += 1
                retry += 1
                delay = self._conflicts.delay(retry, self._draw())
                if self._clock() + delay > deadline:
                    raise
                log.info(
                    "scale set %d: another session is active, retrying in %.0fs", self.scale_set_id, delay
                )
                await self._sleep(delay)
        session = self._session(answer)
        if not session.queue_url or not session.queue_token or not session.id:
            await self._delete(session.id)
            raise ActionsServiceError(answer.status, "", "the session has no message queue URL or token")
        self.session = session
        return session

    def _session(self, answer: Answer) -> ScaleSetSession:
        if not isinstance(answer.data, dict):
            raise ActionsServiceError(answer.status, "", "the session answer is not an object")
        if not isinstance(answer.data.get("statistics"), dict):
            raise ActionsServiceError(answer.status, "", "session statistics is nil")
        return ScaleSetSession.from_json(answer.data, self.scale_set_id)

    async def refresh(self) -> ScaleSetSession:
        current = self._current()
        answer = await self.client.call(
            "PATCH", self._path(f"/{current.id}"), template=_SESSIONS + "/{sessionId}"
        )
        self.session = self._session(answer)
        return self.session

    async def close(self) -> None:
        """Deletes the session (idempotent)."""
        if self.session is not None:
            session, self.session = self.session, None
            await self._delete(session.id)

    async def _delete(self, session_id: str) -> None:
        if not session_id:
            return
        try:
            await self.client.call(
                "DELETE",
                self._path(f"/{session_id}"),
                template=_SESSIONS + "/{sessionId}",
                expect=(200, 204),
            )
        except (SessionExpired, ScaleSetNotFound) as exc:
            log.debug("scale set %d: session already gone (%s)", self.scale_set_id, exc.exception)

    def _current(self) -> ScaleSetSession:
        if self.session is None:
            raise RuntimeError("the message session is not open")
        return self.session

    async def get_message(
        self, last_message_id: int, max_capacity: int = UNLIMITED
    ) -> ScaleSetMessage | None:
        """The next message after ``last_message_id`` (long poll), or ``None`` when there was none."""

        async def poll(session: ScaleSetSession) -> Answer:
            query = f"?lastMessageId={last_message_id}" if last_message_id > 0 else ""
            return await self.client.transport.request(
                "GET",
                session.queue_url + query,
                "GET {messageQueueUrl}",
                authorization=f"Bearer {session.queue_token}",
                headers={
                    "Accept": f"application/json; api-version={API_VERSION}",
                    "X-ScaleSetMaxCapacity": str(max(max_capacity, 0)),
                },
                expect=(200, 202),
            )

        answer = await self._with_queue_token(poll)
        return None if answer.status == 202 else parse_message(answer.data)

    async def delete_message(self, message_id: int) -> None:
        async def ack(session: ScaleSetSession) -> Answer:
            url, _, query = session.queue_url.partition("?")
            return await self.client.transport.request(
                "DELETE",
                f"{url.rstrip('/')}/{message_id}" + (f"?{query}" if query else ""),
                "DELETE {messageQueueUrl}/{messageId}",
                authorization=f"Bearer {session.queue_token}",
                expect=(200, 204),
            )

        await self._with_queue_token(ack)

    async def acquire_jobs(self, request_ids: Sequence[int]) -> list[int]:
        """Acquires the jobs of ``JobAvailable`` messages; the ids actually acquired."""
        if not request_ids:
            return []
        base_url, _ = await self.client.admin()
        url = f"{base_url.rstrip('/')}/{SCALE_SETS}/{self.scale_set_id}/acquirejobs?api-version={API_VERSION}"

        async def acquire(session: ScaleSetSession) -> Answer:
            return await self.client.transport.request(
                "POST",
                url,
                f"POST {SCALE_SETS}/{{id}}/acquirejobs",
                authorization=f"Bearer {session.queue_token}",
                body=list(request_ids),
            )

        try:
            answer = await self._with_queue_token(acquire)
        except ActionsServiceError as exc:
            if exc.status == 404 and not exc.exception:
                log.debug("scale set %d: no acquirejobs route (jobs are auto-assigned)", self.scale_set_id)
                return []
            raise
        values = answer.data.get("value") if isinstance(answer.data, dict) else None
        return [int(v) for v in values or ()]

    async def _with_queue_token(self, send: Callable[[ScaleSetSession], Awaitable[Answer]]) -> Answer:
        try:
            return await send(self._current())
        except ActionsServiceError as exc:
            if exc.status != 401:
                raise
        log.info("scale set %d: the queue token expired, refreshing the session", self.scale_set_id)
        session = await self.refresh()
        try:
            return await send(session)
        except ActionsServiceError as exc:
            if exc.status == 401:
                raise MessageQueueTokenExpired(
                    401, "", "the queue token expired again after a refresh"
                ) from None
            raise


def parse_message(data: Any) -> ScaleSetMessage:
    """A queue message's JSON (``body`` is a string holding a JSON array of job messages)."""
    if not isinstance(data, dict):
        raise ActionsServiceError(200, "", "the message is empty or not an object")
    if data.get("messageType") != MESSAGE_TYPE:
        raise ActionsServiceError(200, "", f"invalid message type {data.get('messageType')!r}")
    stats = data.get("statistics")
    if not isinstance(stats, dict):
        raise ActionsServiceError(200, "", "message statistics is nil")
    raw = data.get("body") or "[]"
    try:
        items = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise ActionsServiceError(200, "", "the message body is not JSON") from None
    if not isinstance(items, list):
        raise ActionsServiceError(200, "", "the message body is not a list")
    jobs = [ScaleSetJob.from_json(item) for item in items if isinstance(item, dict)]
    known = tuple(job for job in jobs if job.message_type in JOB_MESSAGE_TYPES)
    return ScaleSetMessage(
        id=int(data.get("messageId") or 0),
        statistics=ScaleSetStatistics.from_json(stats),
        jobs=known,
        skipped=len(items) - len(known),
    )
