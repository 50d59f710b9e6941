"""The webhook delivery audit's rules: which hook, how far to page, what to redeliver, when it is healthy.

GitHub keeps every attempt to deliver a hook's events, failed ones included, and redelivers one on
request with the same ``X-GitHub-Delivery`` GUID (the hook deliveries API). The audit
(:mod:`runnerd.controller.deliveryaudit`) reads the hook that delivers to us every ``interval``
seconds and redelivers the ``workflow_job`` deliveries GitHub failed; these are its pure rules, facts
in, steps out.

* **Which hook**: ``org/<org>/<hook id>``, ``repo/<owner>/<repo>/<hook id>`` or ``app`` (the GitHub
  App's own webhook) (:func:`parse_hook`).
* **Paging**: listings are newest first. A pass pages until it reaches an attempt it examined
  before (an id at most the highest it saw), or, on its first pass, one older than ``lookback``
  seconds (what failed while runnerd was down is redelivered at start); an attempt's id grows with
  the order GitHub recorded it (:func:`fresh`, :func:`reached_seen`).
* **What is redelivered** (:meth:`AuditMemory.due`): a failed attempt (a status code outside 200-399:
  an HTTP error or no answer at all, code 0) of a ``workflow_job`` delivery whose GUID has no
  successful attempt (among the attempts the audit saw), at most ``max_redeliveries`` times per GUID,
  and never while the audit's last redelivery of it has not shown up as an attempt yet. The
  listing is not filtered by ``status=failure``: GitHub documents that filter as codes 400-599, so
  an attempt that timed out or could not connect (code 0), the commonest loss, would be hidden.
* **Memory** is bounded (``max_guids``, the least recently seen dropped): a GUID dropped is only
  one the audit no longer needs (it succeeded, or it was tried ``max_redeliveries`` times); a failed
  one dropped before that is left to the safety-net poll.
* **Health** (:func:`healthy`): the last pass succeeded within ``2 * interval`` seconds. While it is
  healthy the safety-net poll may stretch far longer (:func:`runnerd.reconcile.pollpace.audited_bound`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

HookKind = Literal["org", "repo", "app"]
INTERVAL = 60.0
"""The default seconds between two passes."""
MAX_REDELIVERIES = 3
MAX_GUIDS = 20_000


@dataclass(frozen=True)
class HookRef:
    """The hook that delivers ``workflow_job`` events to us."""

    kind: HookKind
    owner: str = ""
    repo: str = ""
    hook_id: int = 0

    def __str__(self) -> str:
        if self.kind == "app":
            return "app"
        if self.kind == "org":
            return f"org/{self.owner}/{self.hook_id}"
        return f"repo/{self.owner}/{self.repo}/{self.hook_id}"


def parse_hook(text: str) -> HookRef:
    """``org/<org>/<hook id>`` | ``repo/<owner>/<repo>/<hook id>`` | ``app``; ``ValueError`` otherwise."""
    parts = text.strip().strip("/").split("/")
    if parts == ["app"]:
        return HookRef("app")
    if len(parts) == 3 and parts[0] == "org" and parts[1] and parts[2].isdigit():
        return HookRef("org", parts[1], hook_id=int(parts[2]))
    if len(parts) == 4 and parts[0] == "repo" and parts[1] and parts[2] and parts[3].isdigit():
        return HookRef("repo", parts[1], parts[2], int(parts[3]))
    raise ValueError(f"not a hook: {text!r} (org/<org>/<hook id>, repo/<owner>/<repo>/<hook id> or app)")


@dataclass(frozen=True)
class DeliveryAttempt:
    """One attempt of the hook deliveries API's listing (``hook-delivery-item``)."""

    id: int
    guid: str
    event: str
    action: str | None
    status_code: int
    redelivery: bool
    delivered_at: float
    """Seconds since the epoch."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code <= 399


def fresh(page: Iterable[DeliveryAttempt], seen_id: int | None, since: float) -> list[DeliveryAttempt]:
    """The attempts of a page the audit has not examined: newer than ``seen_id`` or, before any pass
    succeeded (``seen_id`` ``None``), delivered at ``since`` or later."""
    if seen_id is None:
        return [a for a in page if a.delivered_at >= since]
    return [a for a in page if a.id > seen_id]


def reached_seen(page: Sequence[DeliveryAttempt], seen_id: int | None, since: float) -> bool:
    """Whether paging further would only show attempts already examined (or older than the lookback)."""
    return any(a.id <= seen_id if seen_id is not None else a.delivered_at < since for a in page)


def healthy(last_success: float | None, now: float, interval: float) -> bool:
    """The audit keeps its promise: its last pass succeeded within two intervals."""
    return last_success is not None and now - last_success <= 2 * interval


@dataclass
class GuidFacts:
    ok: bool = False
    failed_id: int | None = None
    """The newest failed attempt's id (the one a redelivery names)."""
    redelivered: int = 0
    awaiting: bool = False
    """The audit redelivered it and has not seen that redelivery's attempt yet."""


Verdict = Literal["redeliver", "delivered", "awaiting", "gave_up", "nothing_failed"]


def decide(facts: GuidFacts, max_redeliveries: int = MAX_REDELIVERIES) -> Verdict:
    """What to do about one GUID now."""
    if facts.ok:
        return "delivered"
    if facts.failed_id is None:
        return "nothing_failed"
    if facts.awaiting:
        return "awaiting"
    if facts.redelivered >= max_redeliveries:
        return "gave_up"
    return "redeliver"


class AuditMemory:
    """What the audit knows per GUID of ``workflow_job`` deliveries (see the module docstring)."""

    def __init__(self, max_guids: int = MAX_GUIDS, max_redeliveries: int = MAX_REDELIVERIES) -> None:
        self._max = max_guids
        self.max_redeliveries = max_redeliveries
        self.guids: OrderedDict[str, GuidFacts] = OrderedDict()

    def observe(self, attempts: Iterable[DeliveryAttempt]) -> None:
        """Take in fresh attempts (any order); other events than ``workflow_job`` are ignored."""
        for a in sorted(attempts, key=lambda x: x.id):
            if a.event != "workflow_job":
                continue
            facts = self.guids.get(a.guid)
            if facts is None:
                facts = self.guids[a.guid] = GuidFacts()
            self.guids.move_to_end(a.guid)
            if a.redelivery:
                facts.awaiting = False
            if a.ok:
                facts.ok = True
            elif facts.failed_id is None or a.id > facts.failed_id:
                facts.failed_id = a.id
        while len(self.guids) > self._max:
            self.guids.popitem(last=False)

    def due(self) -> list[tuple[str, int]]:
        """``(guid, attempt id)`` to redeliver now, oldest first."""
        out = []
        for guid, facts in self.guids.items():
            if decide(facts, self.max_redeliveries) == "redeliver" and facts.failed_id is not None:
                out.append((guid, facts.failed_id))
        return sorted(out, key=lambda x: x[1])

    def redelivered(self, guid: str) -> None:
        facts = self.guids.get(guid)
        if facts is not None:
            facts.redelivered += 1
            facts.awaiting = True
