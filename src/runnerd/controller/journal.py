"""The reservation journal (the default intake): webhook intake that does not wait for the HRA.

Without it, a group commit of reservations rewrites the HRA's whole ``capacityReservations`` (57 ms
p50 at 1,000 live jobs, so at most ~280 deliveries/s per HRA). With it, a commit creates one small
ConfigMap in the HRA's namespace (a *journal entry*, owned by the HRA, labelled
:data:`~runnerd.reconcile.journal.HRA_LABEL`) and the deliveries are answered when the create
returns: durable in etcd, a crash after the answer loses nothing. The rules are in
:mod:`runnerd.reconcile.journal`; this module keeps the entries and folds them.

* **Counting.** :meth:`ReservationJournal.counted` gives the HRA controller the HRA's list with the
  unfolded entries applied (a job in both is one job); the writer decides a delivery's effect on the
  same view, so a duplicate is not journalled twice. A ``completed`` is always journalled (it may
  name a job this process has not seen yet).
* **Folding** (leader only, at most once a second per HRA, :meth:`ReservationJournal.fold`): one
  conditional merge patch (the HRA's ``resourceVersion``) writes the new ``capacityReservations``
  (ARC's format; ``kubectl get hra`` stays true) and the watermark annotation together, then the
  folded entries are deleted. A crash in between leaves entries below the watermark: they count for
  nothing and the next fold deletes them. A leader change needs nothing: the next leader reads the
  watermark from the HRA.
* **Garbage collection.** Folded entries are deleted by the fold; an HRA's entries are owned by it,
  so Kubernetes' garbage collector removes them with the HRA.
* **Bounds.** At most :data:`~runnerd.reconcile.journal.MAX_UNFOLDED` unfolded entries per HRA: a
  commit beyond is refused (:class:`JournalFull`, the delivery gets an error and the safety-net poll
  finds its job); without a leader folding, deliveries stop being accepted instead of piling up.
* **Write-only** (no informer: ``runnerd webhook-server``, which may only create ConfigMaps): it
  counts and bounds the entries it created until the HRA's watermark passes them, and folds nothing;
  entries other processes wrote reach its view through the fold (within about a second). A
  duplicate it cannot see is journalled again and folded once (a job is named by its id).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any

from runnerd.api import CapacityReservation, HorizontalRunnerAutoscaler
from runnerd.controller.common import HORIZONTAL_RUNNER_AUTOSCALERS
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import CONFIGMAPS
from runnerd.reconcile.journal import (
    FOLDED_ANNOTATION,
    HRA_LABEL,
    MAX_OPS_PER_ENTRY,
    MAX_UNFOLDED,
    Entry,
    JournalOp,
    decode,
    encode,
    fold,
    merged,
    split,
    watermark,
)
from runnerd.runtime import ApiError, Conflict, Informer, Key, NotFound, Obj, Result

HRA_ANNOTATION = "runnerd.dev/reservation-journal-hra"
"""The annotation naming, on a journal entry, its HRA (a label value could not hold every name)."""
INDEX_HRA = "journal-hra"
FOLD_INTERVAL = 1.0
"""Seconds between two folds of one HRA at least."""
JOURNAL_INFORMER = "reservation-journal"


def hra_key_of(obj: Obj) -> Key | None:
    """The HRA a journal entry belongs to."""
    meta = obj.get("metadata") or {}
    name = (meta.get("annotations") or {}).get(HRA_ANNOTATION)
    return Key(str(meta.get("namespace") or ""), str(name)) if name else None


def _index(obj: Obj) -> list[str]:
    key = hra_key_of(obj)
    return [f"{key.namespace}/{key.name}"] if key is not None else []


def journal_informer(kube: KubeClient, namespace: str | None) -> Informer:
    """The informer of every journal entry (ConfigMaps with the journal label)."""
    watcher = kube.list_watcher(CONFIGMAPS, namespace=namespace, label_selector=f"{HRA_LABEL}=true")
    return Informer(JOURNAL_INFORMER, watcher, indexers={INDEX_HRA: _index})


class JournalFull(ApiError):
    """Too many unfolded entries for one HRA: the delivery is refused until the leader folds."""

    def __init__(self, key: Key) -> None:
        super().__init__(
            503, "ServiceUnavailable", f"{key}: {MAX_UNFOLDED} reservation journal entries unfolded"
        )


class ReservationJournal:
    """The journal entries of every HRA this process sees (see the module docstring)."""

    def __init__(
        self,
        kube: KubeClient,
        informer: Informer | None,
        *,
        clock: Callable[[], dt.datetime],
        monotonic: Callable[[], float] = time.monotonic,
        on_folded: Callable[[Key, Obj], None] | None = None,
    ) -> None:
        self.kube = kube
        self.informer = informer
        self.clock = clock
        self.monotonic = monotonic
        self.on_folded = on_folded
        self._own: dict[Key, dict[str, Entry]] = {}
        """Entries this process created that its informer may not have listed yet."""
        self._last_fold: dict[Key, float] = {}
        self._decoded: dict[tuple[str, str], Entry | None] = {}
        """Entries decoded, by name and resourceVersion (an entry is read at every commit)."""
        self.appended = 0
        self.folds = 0

    # --- reading ---------------------------------------------------------------------------------

    def _stored(self, key: Key) -> list[Entry]:
        if self.informer is None:
            return []
        found = (
            self._decode(o) for o in self.informer.store.by_index(INDEX_HRA, f"{key.namespace}/{key.name}")
        )
        return [e for e in found if e is not None]

    def _decode(self, obj: Obj) -> Entry | None:
        meta = obj.get("metadata") or {}
        memo = (str(meta.get("name") or ""), str(meta.get("resourceVersion") or ""))
        if memo in self._decoded:
            return self._decoded[memo]
        if len(self._decoded) >= 4 * MAX_UNFOLDED:
            self._decoded.clear()
        entry = self._decoded[memo] = decode(obj)
        return entry

    def entries(self, key: Key, hra: Obj) -> list[Entry]:
        """The unfolded entries of ``hra`` in order: listed ones and this process's own recent ones."""
        mark = watermark(hra)
        stored = self._stored(key)
        names = {e.name for e in stored}
        own = self._own.get(key, {})
        for name in [n for n, e in own.items() if n in names or e.version <= mark]:
            del own[name]  # listed (or folded): the store holds it now
        if not own:
            self._own.pop(key, None)
        return split([*stored, *own.values()], mark)[0]

    def reservations(self, key: Key, hra: Obj, listed: Sequence[CapacityReservation]) -> tuple[Any, ...]:
        """``listed`` (the HRA's list) with the unfolded entries applied: what counts now."""
        return merged(listed, self.entries(key, hra))

    def counted(self, key: Key, obj: Obj, hra: HorizontalRunnerAutoscaler) -> HorizontalRunnerAutoscaler:
        """``hra`` as the HRA controller decides on it: its reservations with the unfolded entries."""
        listed = hra.spec.capacity_reservations
        view = list(self.reservations(key, obj, listed))
        if view == list(listed):
            return hra
        return dataclasses.replace(hra, spec=dataclasses.replace(hra.spec, capacity_reservations=view))

    # --- writing ---------------------------------------------------------------------------------

    async def append(self, key: Key, hra: Obj, ops: Sequence[JournalOp]) -> None:
        """Record ``ops`` durably (one entry per :data:`MAX_OPS_PER_ENTRY`); raises
        :class:`JournalFull` when the HRA has too many unfolded entries."""
        if len(self.entries(key, hra)) >= MAX_UNFOLDED:
            raise JournalFull(key)
        for start in range(0, len(ops), MAX_OPS_PER_ENTRY):
            created = await self.kube.create(
                CONFIGMAPS, self._body(key, hra, ops[start : start + MAX_OPS_PER_ENTRY])
            )
            entry = decode(created)
            if entry is not None:
                self._own.setdefault(key, {})[entry.name] = entry
            self.appended += 1

    @staticmethod
    def _body(key: Key, hra: Obj, ops: Sequence[JournalOp]) -> Obj:
        meta: dict[str, Any] = {
            "generateName": f"{key.name[:200]}-journal-",
            "namespace": key.namespace,
            "labels": {HRA_LABEL: "true"},
            "annotations": {HRA_ANNOTATION: key.name},
        }
        uid = (hra.get("metadata") or {}).get("uid")
        if uid:
            meta["ownerReferences"] = [
                {
                    "apiVersion": str(hra.get("apiVersion") or "actions.summerwind.dev/v1alpha1"),
                    "kind": "HorizontalRunnerAutoscaler",
                    "name": key.name,
                    "uid": uid,
                }
            ]
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": encode(ops)}

    # --- folding (leader) ------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> Result | None:
        """The fold controller's reconcile: fold ``key``'s entries, at most once a
        :data:`FOLD_INTERVAL`."""
        last = self._last_fold.get(key)
        now = self.monotonic()
        if last is not None and now - last < FOLD_INTERVAL:
            return Result(requeue_after=FOLD_INTERVAL - (now - last))
        self._last_fold[key] = now
        if len(self._last_fold) > 4096:
            self._last_fold.clear()
        await self.fold(key)
        return None

    async def fold(self, key: Key, attempts: int = 10) -> Obj | None:
        """Fold the listed entries into the HRA (one conditional write), then delete the folded ones.
        Only listed entries fold (see :mod:`runnerd.reconcile.journal`). Returns the written HRA."""
        written: Obj | None = None
        obj: Obj | None = None
        for _ in range(attempts):
            try:
                obj = await self.kube.get(HORIZONTAL_RUNNER_AUTOSCALERS, key.name, namespace=key.namespace)
            except NotFound:
                return None  # its entries go with it (owner references)
            mark = watermark(obj)
            unfolded, _ = split(self._stored(key), mark)
            listed = [
                CapacityReservation.from_dict(r)
                for r in (obj.get("spec") or {}).get("capacityReservations") or ()
                if isinstance(r, dict)
            ]
            limit = (obj.get("spec") or {}).get("maxReplicas")
            new, new_mark = fold(listed, unfolded, self.clock(), limit if isinstance(limit, int) else None)
            if new_mark is None:
                break
            patch = {
                "metadata": {"annotations": {FOLDED_ANNOTATION: str(new_mark)}},
                "spec": {"capacityReservations": [r.to_dict() for r in new]},
            }
            version = str((obj.get("metadata") or {}).get("resourceVersion") or "") or None
            try:
                written = await self.kube.patch(
                    HORIZONTAL_RUNNER_AUTOSCALERS,
                    key.name,
                    patch,
                    namespace=key.namespace,
                    resource_version=version,
                )
            except Conflict:
                continue
            self.folds += 1
            if self.on_folded is not None:
                self.on_folded(key, written)
            break
        latest = written or obj
        if latest is not None:
            await self._collect(key, latest)
        return written

    async def _collect(self, key: Key, hra: Obj) -> None:
        """Delete the entries at or below the HRA's watermark."""
        _, folded = split(self._stored(key), watermark(hra))
        for entry in folded:
            await self.kube.delete(CONFIGMAPS, entry.name, namespace=key.namespace, missing_ok=True)
