"""The listener of one runner scale set: session → long poll → acquire → decide → patch → ack.

Contract:

* :meth:`AutoscalingListener.run` listens until cancelled or until the scale set is gone. It opens a
  message session (409 conflicts: retried with backoff and the session taken over when the old one
  lets go, see :mod:`runnerd.github.actions.session`), applies the session's statistics as message 0,
  then long-polls with ``lastMessageId`` and ``X-ScaleSetMaxCapacity = maxRunners``.
* each message: publish statistics → acquire the ``JobAvailable`` jobs → count started/completed jobs
  → :func:`runnerd.reconcile.listener.decide` → ``set_desired(replicas, patch_id)`` (the caller's
  EphemeralRunnerSet patch) → ack (DELETE) → ``on_job_started`` for each ``JobStarted``. A message
  is acknowledged only after ``set_desired`` succeeded, so a failed patch is retried (the service
  redelivers an unacknowledged message to the next session); a 202 decides with 0 assigned jobs and
  no completions, as ARC ≤ 0.13 does.
* a failed poll (a transport error after the client's own retries, an empty 200 body, a bad message)
  is retried on the same session with backoff; after ``max_poll_failures`` in a row, a queue token
  that expires twice, or any other failure (including ``set_desired``'s), the session is deleted and
  a new one opened after a capped, jittered backoff. Never exits on its own for these.
* a vanished scale set (404 ``RunnerScaleSetNotFoundException``) raises :class:`ScaleSetGone` so the
  owner registers the scale set again and starts a new listener.
* cancellation deletes the session (best effort) and propagates.
* :attr:`phase` and :attr:`last_error` are the listener's true state for the AutoscalingListener's
  status; :attr:`metrics` holds ARC's listener metrics.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn

from runnerd.controller.listener_metrics import ListenerMetrics
from runnerd.github.actions.client import ActionsClient
from runnerd.github.actions.errors import ActionsServiceError, ScaleSetNotFound
from runnerd.github.actions.models import (
    JOB_AVAILABLE,
    JOB_COMPLETED,
    JOB_STARTED,
    ScaleSetJob,
    ScaleSetMessage,
    ScaleSetStatistics,
)
from runnerd.github.actions.session import ConflictPolicy, MessageSession
from runnerd.github.budget import Clock, Draw, Sleep
from runnerd.reconcile.listener import MAX_INT32, ScaleState, decide

log = logging.getLogger("runnerd.controller.autoscalinglistener")

SetDesired = Callable[[int, int], Awaitable[None]]
JobHook = Callable[[ScaleSetJob], Awaitable[None]]


class ScaleSetGone(Exception):
    """The scale set no longer exists in GitHub: register it again, then listen anew."""

    def __init__(self, scale_set_id: int) -> None:
        super().__init__(f"runner scale set {scale_set_id} no longer exists")
        self.scale_set_id = scale_set_id


@dataclass(frozen=True)
class ListenerSettings:
    scale_set_id: int
    min_runners: int = 0
    max_runners: int | None = None
    owner: str = "runnerd"
    max_poll_failures: int = 5
    retry_base_s: float = 1.0
    retry_max_s: float = 60.0

    def backoff(self, failures: int, draw: float) -> float:
        nominal = min(self.retry_max_s, self.retry_base_s * 2.0 ** max(failures - 1, 0))
        return nominal * (0.5 + 0.5 * min(max(draw, 0.0), 1.0))


class AutoscalingListener:
    """See the module docstring."""

    def __init__(
        self,
        client: ActionsClient,
        settings: ListenerSettings,
        set_desired: SetDesired,
        *,
        on_job_started: JobHook | None = None,
        metrics: ListenerMetrics | None = None,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        draw: Draw = random.random,
        conflicts: ConflictPolicy | None = None,
        stale_session_id: str = "",
    ) -> None:
        """``stale_session_id``: a session a previous listener of this scale set may have left behind
        (from the AutoscalingListener's status): deleted before the first session is opened."""
        self.client = client
        self.settings = settings
        self._set_desired = set_desired
        self._on_job_started = on_job_started
        self.metrics = metrics or ListenerMetrics({})
        self._clock = clock
        self._sleep = sleep
        self._draw = draw
        self._conflicts = conflicts
        self.scale = ScaleState()
        self.phase = "Pending"
        self.last_error = ""
        self.session_id = stale_session_id
        self.metrics.publish_bounds(settings.min_runners, _capacity(settings.max_runners))

    async def run(self) -> NoReturn:
        failures = 0
        while True:
            session = MessageSession(
                self.client,
                self.settings.scale_set_id,
                self.settings.owner,
                clock=self._clock,
                sleep=self._sleep,
                draw=self._draw,
                conflicts=self._conflicts,
            )
            try:
                await self._listen(session)
            except ScaleSetNotFound as exc:
                self.phase, self.last_error = "Gone", str(exc)
                raise ScaleSetGone(self.settings.scale_set_id) from exc
            except Exception as exc:
                failures = 1 if self.phase == "Listening" else failures + 1
                self.phase, self.last_error = "Reconnecting", f"{type(exc).__name__}: {exc}"
                self.metrics.listener["reconnects"] += 1
                log.warning("scale set %d: %s; reconnecting", self.settings.scale_set_id, self.last_error)
            finally:
                self.metrics.listener["session_conflicts"] += session.conflicts
                await self._close(session)
            await self._sleep(self.settings.backoff(failures, self._draw()))

    async def _close(self, session: MessageSession) -> None:
        if session.session is None:  # never opened: keep any stale id for the next try
            return
        try:
            await session.close()
        except (ActionsServiceError, RuntimeError) as exc:
            log.info("scale set %d: session not deleted (%s)", self.settings.scale_set_id, exc)
        else:
            self.session_id = ""

    async def _listen(self, session: MessageSession) -> NoReturn:
        opened = await session.open(stale_session_id=self.session_id)
        self.session_id = opened.id
        self.metrics.listener["sessions"] += 1
        self.metrics.listener["session_conflicts"] += session.conflicts
        session.conflicts = 0
        self.scale = ScaleState()  # a new session starts ARC's sequence anew
        await self._apply(opened.statistics, assigned=opened.statistics.total_assigned_jobs, completed=0)
        self.phase, self.last_error = "Listening", ""
        last_id, failures = 0, 0
        capacity = _capacity(self.settings.max_runners)
        while True:
            try:
                message = await session.get_message(last_id, capacity)
            except ActionsServiceError as exc:
                if not _poll_failure(exc):
                    raise
                failures += 1
                self.metrics.listener["failed_polls"] += 1
                if failures >= self.settings.max_poll_failures:
                    raise
                log.info("scale set %d: poll failed (%s), retrying", self.settings.scale_set_id, exc)
                await self._sleep(self.settings.backoff(failures, self._draw()))
                continue
            failures = 0
            self.metrics.listener["polls"] += 1
            if message is None:
                await self._apply(None, assigned=0, completed=0)
                continue
            await self._handle(session, message)
            last_id = message.id

    async def _handle(self, session: MessageSession, message: ScaleSetMessage) -> None:
        available = message.of_type(JOB_AVAILABLE)
        if available:
            acquired = await session.acquire_jobs([job.runner_request_id for job in available])
            log.info(
                "scale set %d: acquired %d of %d jobs",
                self.settings.scale_set_id,
                len(acquired),
                len(available),
            )
        started, completed = message.of_type(JOB_STARTED), message.of_type(JOB_COMPLETED)
        for job in started:
            self.metrics.job_started(job)
        for job in completed:
            self.metrics.job_completed(job)
        await self._apply(
            message.statistics, assigned=message.statistics.total_assigned_jobs, completed=len(completed)
        )
        await session.delete_message(message.id)
        if self._on_job_started is not None:
            for job in started:
                await self._on_job_started(job)

    async def _apply(self, stats: ScaleSetStatistics | None, *, assigned: int, completed: int) -> None:
        if stats is not None:
            self.metrics.publish_statistics(stats)
        s = self.settings
        decision = decide(
            self.scale,
            min_runners=s.min_runners,
            max_runners=s.max_runners,
            assigned=assigned,
            jobs_completed=completed,
        )
        await self._set_desired(decision.replicas, decision.patch_id)
        self.scale = decision.state
        self.metrics.publish_desired(decision.replicas)


def _capacity(max_runners: int | None) -> int:
    return MAX_INT32 if max_runners is None else max_runners


def _poll_failure(exc: ActionsServiceError) -> bool:
    """A failure worth another poll on the same session (not: session or scale set gone, token dead)."""
    return exc.status in (0, 200) or exc.status == 429 or exc.status >= 500
