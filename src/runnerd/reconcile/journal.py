"""The reservation journal's rules (pure): what is folded, what is counted, what is collected.

With the journal (the default; not with ``--no-reservation-journal``) a group commit of webhook
reservations is one small ConfigMap (a *journal entry*: the commit's job operations, in order)
instead of a write of the HRA's whole ``spec.capacityReservations``; the delivery is answered when
the entry is created (durable in etcd). The leader folds an HRA's entries into its
``capacityReservations`` (where ARC keeps them) at most once a second, and records, in the same
conditional write, the highest entry version it folded (the annotation :data:`FOLDED_ANNOTATION`).
The contract:

* An entry whose ``resourceVersion`` is at most the HRA's watermark is folded: it is counted through
  the HRA's list only, and may be deleted. Any other entry is *unfolded*: it counts on top of the
  list (:func:`merged`), through the same rules as a fold, so a job in both is one job.
* Entries are applied in ``resourceVersion`` order (the order etcd committed them); a job is named
  by its id, so a duplicate ``queued`` adds nothing and a ``completed`` removes the job's entry.
* A ``queued`` is its writer's decision at the op's effective time, on a list that write's
  housekeeping had cleared of expired entries and zero-replica markers: applied to a list that still
  holds such an entry of its job, it replaces it (:func:`supersedes`) instead of being taken for a
  duplicate, so a job queued again after its reservation expired keeps the new one through the fold.
* Folding is idempotent and a crash between the fold's write and the deletion of the entries
  counts nothing twice: the watermark and the list change in one write.

resourceVersions are compared as integers (etcd revisions, as everywhere in this project); a
watch delivers one resource's objects in that order, so an informer's store holds every entry up to
the newest version it saw (the fold uses the store only, never entries a writer has not seen
listed, so no entry below the watermark can be missed).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from runnerd.api import CapacityReservation, format_time, parse_time
from runnerd.reconcile.reservations import is_active, is_live, job_of, job_reservation_name

FOLDED_ANNOTATION = "runnerd.dev/reservation-journal-folded"
"""The HRA annotation holding the highest journal ``resourceVersion`` folded into its list."""
HRA_LABEL = "runnerd.dev/reservation-journal"
"""The label naming, on a journal entry (ConfigMap), the HRA it belongs to."""
OPS_KEY = "ops"
"""The ConfigMap data key holding the entry's operations (a JSON list)."""
MAX_UNFOLDED = 256
"""Unfolded entries per HRA at most: beyond, a delivery is refused (GitHub records it failed and
the safety-net poll finds its job) until the leader folds."""
MAX_OPS_PER_ENTRY = 512
"""Operations in one entry at most (about 100 bytes each: far below a ConfigMap's 1 MiB)."""


@dataclass(frozen=True)
class JournalOp:
    """One job's change, as a commit recorded it."""

    action: Literal["queued", "completed"]
    job_id: int
    repository: str | None = None
    effective_time: dt.datetime | None = None  # queued: the reservation's times
    expiration_time: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "job": self.job_id}
        if self.repository:
            out["repo"] = self.repository
        if self.effective_time is not None:
            out["from"] = format_time(self.effective_time)
        if self.expiration_time is not None:
            out["until"] = format_time(self.expiration_time)
        return out

    @staticmethod
    def from_dict(raw: Mapping[str, Any]) -> JournalOp | None:
        action, job = raw.get("action"), raw.get("job")
        if action not in ("queued", "completed") or not isinstance(job, int):
            return None
        try:
            since = parse_time(str(raw["from"])) if raw.get("from") else None
            until = parse_time(str(raw["until"])) if raw.get("until") else None
        except ValueError:
            return None
        repo = raw.get("repo")
        return JournalOp(action, job, str(repo) if repo else None, since, until)


@dataclass(frozen=True)
class Entry:
    """A journal entry as read back: its name, version and operations."""

    name: str
    version: int
    ops: tuple[JournalOp, ...]


def encode(ops: Sequence[JournalOp]) -> dict[str, str]:
    """The ConfigMap ``data`` of an entry."""
    return {OPS_KEY: json.dumps([op.to_dict() for op in ops], separators=(",", ":"))}


def version_of(obj: Mapping[str, Any]) -> int | None:
    """An object's ``resourceVersion`` as an etcd revision (``None``: absent or opaque)."""
    text = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else None


def decode(obj: Mapping[str, Any]) -> Entry | None:
    """An entry from its ConfigMap (``None``: not an entry this version understands)."""
    version = version_of(obj)
    raw = ((obj.get("data") or {}).get(OPS_KEY)) or "[]"
    try:
        items = json.loads(raw)
    except ValueError:
        return None
    if version is None or not isinstance(items, list):
        return None
    ops = tuple(op for op in (JournalOp.from_dict(i) for i in items if isinstance(i, dict)) if op)
    return Entry(str((obj.get("metadata") or {}).get("name") or ""), version, ops)


def watermark(hra: Mapping[str, Any]) -> int:
    """The highest entry version folded into ``hra`` (0: none)."""
    text = str(((hra.get("metadata") or {}).get("annotations") or {}).get(FOLDED_ANNOTATION) or "")
    return int(text) if text.isdigit() else 0


def split(entries: Iterable[Entry], mark: int) -> tuple[list[Entry], list[Entry]]:
    """``(unfolded in version order, folded)`` against the watermark ``mark``."""
    unfolded = sorted((e for e in entries if e.version > mark), key=lambda e: (e.version, e.name))
    folded = [e for e in entries if e.version <= mark]
    return unfolded, folded


def merged(
    reservations: Sequence[CapacityReservation], unfolded: Iterable[Entry]
) -> tuple[CapacityReservation, ...]:
    """The HRA's list with the unfolded entries applied in order: what counts now.

    A ``queued`` adds ``job-<id>[@repo]`` (at the end, as the writer appended it) unless the job
    completed in an earlier operation (a job never runs twice) or still has an entry the op does
    not supersede (:func:`supersedes`); a ``completed`` removes the job's entries."""
    ops = [op for entry in unfolded for op in entry.ops]
    named = {op.job_id for op in ops}
    out: list[CapacityReservation | None] = list(reservations)
    held: dict[int, list[int]] = {}  # job id -> indexes in out, for the jobs the ops name
    for i, r in enumerate(reservations):
        job = job_of(r)
        if job is not None and job in named:
            held.setdefault(job, []).append(i)
    removed: set[int] = set()
    for op in ops:
        if op.action == "completed":
            removed.add(op.job_id)
            continue
        if op.job_id in removed:
            continue
        mine = held.get(op.job_id)
        if mine:
            if any((kept := out[i]) is not None and not supersedes(op, kept) for i in mine):
                continue
            for i in mine:
                out[i] = None
        held[op.job_id] = [len(out)]
        out.append(
            CapacityReservation(
                name=job_reservation_name(op.job_id, op.repository),
                effective_time=op.effective_time,
                expiration_time=op.expiration_time,
                replicas=1,
            )
        )
    if removed:
        return tuple(r for r in out if r is not None and job_of(r) not in removed)
    return tuple(r for r in out if r is not None)


def supersedes(op: JournalOp, r: CapacityReservation) -> bool:
    """A ``queued`` op replaces its job's entry ``r`` that its writer no longer saw: the writer
    decided at the op's effective time on a housekept list (expired entries and zero-replica markers
    dropped, as every reservation write does), so an entry expired by then (or a marker) did not hold
    the job for it and the op's reservation is the one that counts. Folding the op into a list that
    still held the expired entry used to keep that entry, then drop it as expired: the job's
    reservation was lost (a poll-made reservation of a job still queued when its first one expired)."""
    if op.action != "queued" or op.effective_time is None:
        return False
    return not is_live(r) or not is_active(r, op.effective_time)


def restart_starved(
    reservations: Sequence[CapacityReservation], now: dt.datetime, max_replicas: int | None
) -> tuple[CapacityReservation, ...]:
    """ARC's rule, as every reservation write applies it: live reservations beyond ``maxReplicas`` (in
    list order; they have no runner yet) get their timers restarted with their own length."""
    if max_replicas is None:
        return tuple(reservations)
    out, live = [], 0
    for r in reservations:
        if is_live(r):
            live += 1
            if live > max(max_replicas, 0) and r.expiration_time and r.effective_time:
                length = r.expiration_time - r.effective_time
                r = dataclasses.replace(r, effective_time=now, expiration_time=now + length)
        out.append(r)
    return tuple(out)


def fold(
    reservations: Sequence[CapacityReservation],
    unfolded: Sequence[Entry],
    now: dt.datetime,
    max_replicas: int | None = None,
) -> tuple[tuple[CapacityReservation, ...], int | None]:
    """The list to write and the new watermark (``None``: nothing to fold). As every reservation
    write: starved reservations restarted (:func:`restart_starved`), then expired ones and
    zero-replica markers dropped."""
    if not unfolded:
        return tuple(reservations), None
    kept = restart_starved(merged(reservations, unfolded), now, max_replicas)
    out = tuple(r for r in kept if is_active(r, now) and is_live(r))
    return out, max(e.version for e in unfolded)
