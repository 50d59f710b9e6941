"""The HRA's status writer: status fields, conditions and Events, written in the background.

Guarantees:

* A reconcile hands its status to :meth:`StatusWriter.schedule` and does not wait for the write: the
  next reconcile of the same HRA (the next webhook of a burst) goes on at once, and reads the values
  decided but not written yet through :meth:`StatusWriter.in_flight`.
* One write per HRA at a time; a newer status replaces one not written yet, and an Event not sent
  yet goes out with the newer status.
* Conditions this controller owns (:data:`OWN_CONDITIONS`) keep their ``lastTransitionTime`` while
  their status stays; others are kept as they are, except ``AmbiguousWebhookTarget`` (written by the
  webhook path) which turns False ``ambiguity_ttl`` after the last ambiguous delivery. Nothing is
  written when nothing but times would change.
* :meth:`StatusWriter.offer` / :meth:`StatusWriter.current`: the version of an HRA this process
  wrote last is used until the informer's cache catches up with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runnerd.api import HorizontalRunnerAutoscaler, parse_time
from runnerd.controller.common import HORIZONTAL_RUNNER_AUTOSCALERS
from runnerd.controller.hra.options import AutoscalingOptions
from runnerd.controller.reservation_writer import newer
from runnerd.controller.reservations import CONDITION_AMBIGUOUS, format_condition_time
from runnerd.kube.client import KubeClient
from runnerd.runtime import ApiError, EventRecorder, Informer, Key, NotFound, Obj

log = logging.getLogger(__name__)

SCALING_ACTIVE = "ScalingActive"
ABLE_TO_SCALE = "AbleToScale"
SCALING_LIMITED = "ScalingLimited"
GITHUB_API_BUDGET = "GitHubAPIBudget"
OWN_CONDITIONS = (SCALING_ACTIVE, ABLE_TO_SCALE, SCALING_LIMITED, GITHUB_API_BUDGET)

Condition = tuple[str, bool, str, str]
"""``(type, status, reason, message)`` of one condition."""


@dataclass
class PendingStatus:
    """A status decided by a reconcile, not written yet."""

    obj: Obj
    fields: dict[str, Any]
    conditions: list[Condition]
    uses_github: bool
    event: tuple[str, str] | None
    desired: int
    last_scale_out: dt.datetime | None


def condition(
    existing: Mapping[str, Mapping[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    now: dt.datetime,
    generation: int,
) -> dict[str, Any]:
    """One condition; its ``lastTransitionTime`` stays while its status does."""
    text = "True" if status else "False"
    old = existing.get(type_)
    since = (
        old.get("lastTransitionTime")
        if old is not None and old.get("status") == text and old.get("lastTransitionTime")
        else format_condition_time(now)
    )
    return {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message[:4096],
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def _strip_times(conditions: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"), c.get("observedGeneration"))
        for c in conditions
    ]


class StatusWriter:
    """Writes HRA statuses (see the module docstring)."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        hras: Informer,
        recorder: EventRecorder,
        options: AutoscalingOptions,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.kube = kube
        self.hras = hras
        self.recorder = recorder
        self.options = options
        self.clock = clock
        self._fresh: dict[Key, Obj] = {}
        self._pending: dict[Key, PendingStatus] = {}
        self._writing: dict[Key, PendingStatus] = {}
        self._tasks: dict[Key, asyncio.Task[None]] = {}

    def offer(self, key: Key, obj: Obj) -> None:
        """A version of the HRA this process just wrote (fresher than the cache, for a moment)."""
        self._fresh[key] = obj

    def current(self, key: Key) -> Obj | None:
        """The newer of the cached HRA and the one this process wrote last."""
        cached = self.hras.store.get(key)
        fresh = self._fresh.get(key)
        if cached is None or fresh is None:
            self._fresh.pop(key, None)
            return cached
        best = newer(fresh, cached)
        if best is cached:
            self._fresh.pop(key, None)
        return best

    def in_flight(self, key: Key, hra: HorizontalRunnerAutoscaler) -> HorizontalRunnerAutoscaler:
        """The HRA with the status this controller decided but has not written yet."""
        pending = self._pending.get(key) or self._writing.get(key)
        if pending is None:
            return hra
        status = dataclasses.replace(
            hra.status,
            desired_replicas=pending.desired,
            last_successful_scale_out_time=pending.last_scale_out,
        )
        return dataclasses.replace(hra, status=status)

    def schedule(self, key: Key, pending: PendingStatus) -> None:
        """Write ``pending`` in the background (replacing a status of this HRA not written yet)."""
        previous = self._pending.get(key)
        if previous is not None and pending.event is None:
            pending.event = previous.event  # an Event not sent yet goes out with the newer status
        self._pending[key] = pending
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._flush(key), name=f"hra-status-{key}")

    async def _flush(self, key: Key) -> None:
        try:
            while (pending := self._pending.pop(key, None)) is not None:
                self._writing[key] = pending
                try:
                    base = self.current(key) or pending.obj
                    await self.write(
                        base, pending.fields, pending.conditions, uses_github=pending.uses_github
                    )
                    if pending.event is not None:
                        await self.recorder.normal(base, *pending.event)
                except ApiError as exc:
                    log.warning("writing the status of HRA %s: %s (the next reconcile writes it)", key, exc)
                finally:
                    self._writing.pop(key, None)
        finally:
            self._tasks.pop(key, None)

    async def close(self) -> None:
        """Finish (or drop, when cancelled) the status writes in flight."""
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def write(
        self,
        obj: Obj,
        fields: Mapping[str, Any],
        conditions: Iterable[Condition],
        *,
        uses_github: bool,
    ) -> None:
        """Patch the HRA's status now with ``fields`` and ``conditions`` (nothing when nothing changes)."""
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        current = [c for c in status.get("conditions") or () if isinstance(c, dict)]
        new = self._merged_conditions(current, conditions, int(meta.get("generation") or 0), uses_github)
        patch: dict[str, Any] = {k: v for k, v in fields.items() if status.get(k) != v}
        if _strip_times(new) != _strip_times(current):
            patch["conditions"] = new
        if not patch:
            return
        try:
            written = await self.kube.patch_status(
                HORIZONTAL_RUNNER_AUTOSCALERS,
                str(meta["name"]),
                {"status": patch},
                namespace=str(meta.get("namespace") or ""),
            )
        except NotFound:
            return
        self.offer(Key.of(written), written)

    def _merged_conditions(
        self,
        current: list[dict[str, Any]],
        conditions: Iterable[Condition],
        generation: int,
        uses_github: bool,
    ) -> list[dict[str, Any]]:
        existing = {str(c.get("type")): c for c in current}
        now = self.clock()
        mine = {c[0]: c for c in conditions}
        new: list[dict[str, Any]] = []
        for type_ in OWN_CONDITIONS:
            if type_ in mine:
                _, ok, reason, message = mine[type_]
                new.append(condition(existing, type_, ok, reason, message, now, generation))
            elif type_ in existing and not (type_ == GITHUB_API_BUDGET and not uses_github):
                new.append(dict(existing[type_]))
        for c in current:
            if c.get("type") in OWN_CONDITIONS:
                continue
            if c.get("type") == CONDITION_AMBIGUOUS and c.get("status") == "True":
                try:
                    since = parse_time(str(c.get("lastTransitionTime")))
                except ValueError:
                    since = now
                if (now - since).total_seconds() > self.options.ambiguity_ttl:
                    c = condition(
                        existing,
                        CONDITION_AMBIGUOUS,
                        False,
                        "NoRecentAmbiguity",
                        f"no ambiguous workflow_job delivery for {self.options.ambiguity_ttl:g}s",
                        now,
                        generation,
                    )
            new.append(dict(c))
        return new
