"""Scale targets of HorizontalRunnerAutoscalers, resolved from the informer caches.

A RunnerDeployment target is always available; a RunnerSet target only when the process has a
``runnersets`` informer (until then an HRA naming a RunnerSet reports that it cannot be resolved).
Parsed targets and HRAs are cached per object (``uid``), its latest ``resourceVersion`` only (an HRA
holding 1,000 reservations parses to about a megabyte, and each reservation write is a new version):
the webhook path resolves every webhook-scaled HRA's target for each delivery. A new version of an
HRA parses only the capacity reservations no earlier version had (:class:`ReservationMemo`): every
reservation write, journal fold and status write is a new version of a list of up to 1,000 mostly
unchanged entries.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runnerd.api import (
    ApiParseError,
    CapacityReservation,
    HorizontalRunnerAutoscaler,
    RunnerConfig,
    RunnerDeployment,
    RunnerSet,
    ScaleTargetRef,
    ScaleUpTrigger,
)
from runnerd.controller.common import RUNNER_DEPLOYMENTS, RUNNER_SETS
from runnerd.kube.resources import Resource
from runnerd.reconcile.matching import Target, workflow_job_trigger
from runnerd.runtime import Informer, Key, Obj

HRA_INFORMER = "horizontalrunnerautoscalers"
RD_INFORMER = "runnerdeployments"
RUNNERSET_INFORMER = "runnersets"


@dataclass(frozen=True)
class ScaleTarget:
    kind: str  # RunnerDeployment or RunnerSet
    namespace: str
    name: str
    obj: Obj
    config: RunnerConfig
    replicas: int | None  # spec.replicas as written (None: absent, which means 1)
    effective_time: dt.datetime | None

    @property
    def resource(self) -> Resource:
        return RUNNER_DEPLOYMENTS if self.kind == "RunnerDeployment" else RUNNER_SETS

    @property
    def key(self) -> Key:
        return Key(self.namespace, self.name)

    @property
    def uid(self) -> str:
        return str((self.obj.get("metadata") or {}).get("uid") or "")

    def scope_labels(self) -> tuple[str, str, str, str, str]:
        """ARC's target label values: enterprise, organization, repository, kind, name."""
        c = self.config
        return (c.enterprise or "", c.organization or "", c.repository or "", self.kind, self.name)


@dataclass(frozen=True)
class WebhookTarget:
    """A webhook-scaled HRA with its target, for routing ``workflow_job`` events."""

    hra: Key
    hra_obj: Obj
    trigger: ScaleUpTrigger
    target: ScaleTarget

    @property
    def route(self) -> Target:
        return Target(hra=f"{self.hra.namespace}/{self.hra.name}", config=self.target.config)


MAX_CACHED = 4096
"""Objects (not versions) whose latest parse is kept."""
MemoKey = tuple[tuple[str, Any], ...]


def _version(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or ""), str(meta.get("resourceVersion") or "")


def _memo_key(raw: Any) -> MemoKey | None:
    """A reservation's JSON fields as a key: only plain strings, integers and nulls (a ``True`` is
    not a ``1`` here), else ``None`` (parsed as usual, not kept)."""
    if type(raw) is not dict:
        return None
    items = tuple(raw.items())
    for _, value in items:
        kind = type(value)
        if kind is not str and kind is not int and value is not None:
            return None
    return items


class ReservationMemo:
    """Parsed capacity reservations of the latest version of each HRA, by their JSON fields: the
    next version reuses the unchanged ones (shared objects: nothing changes a parsed reservation, a
    change is a new object), and the memo holds no more than the versions it serves (one per HRA,
    :data:`MAX_CACHED` HRAs)."""

    def __init__(self) -> None:
        self._by_hra: dict[str, dict[MemoKey, CapacityReservation]] = {}

    def __len__(self) -> int:
        return sum(len(memo) for memo in self._by_hra.values())

    def parse(self, uid: str, raw: Sequence[Any]) -> list[CapacityReservation] | None:
        """``raw`` parsed; ``None`` when an entry is not an object (the whole HRA parses as usual)."""
        out: list[CapacityReservation] = []
        old = self._by_hra.get(uid) or {}
        new: dict[MemoKey, CapacityReservation] = {}
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                return None
            key = _memo_key(item)
            hit = (old.get(key) or new.get(key)) if key is not None else None
            if hit is None:
                hit = CapacityReservation.from_dict(item, f".spec.capacityReservations[{i}]")
            if key is not None:
                new[key] = hit
            out.append(hit)
        if len(self._by_hra) >= MAX_CACHED and uid not in self._by_hra:
            self._by_hra.clear()
        self._by_hra[uid] = new
        return out

    def parse_hra(self, obj: Obj) -> HorizontalRunnerAutoscaler:
        """The HRA, its reservations through the memo; raises ``ApiParseError``."""
        spec = obj.get("spec")
        raw = spec.get("capacityReservations") if isinstance(spec, dict) else None
        uid = _version(obj)[0]
        parsed = self.parse(uid, raw) if isinstance(raw, list) and raw and uid else None
        if parsed is None or not isinstance(spec, dict):
            return HorizontalRunnerAutoscaler.from_dict(obj)
        rest = {k: v for k, v in spec.items() if k != "capacityReservations"}
        hra = HorizontalRunnerAutoscaler.from_dict({**obj, "spec": rest})
        return dataclasses.replace(hra, spec=dataclasses.replace(hra.spec, capacity_reservations=parsed))


class TargetResolver:
    def __init__(self, informers: Mapping[str, Informer]) -> None:
        self._informers = informers
        # one entry per object (uid): its latest parsed version; an HRA holding 1,000 reservations
        # parses to about a megabyte, and every reservation write makes a new version
        self._parsed: dict[tuple[str, str], tuple[str, ScaleTarget | str]] = {}
        self._hras: dict[str, tuple[str, HorizontalRunnerAutoscaler | None]] = {}
        self.reservations = ReservationMemo()

    @property
    def supports_runner_sets(self) -> bool:
        return RUNNERSET_INFORMER in self._informers

    def resolve(self, namespace: str, ref: ScaleTargetRef) -> ScaleTarget | str:
        """The target, or why it cannot be resolved."""
        kind = ref.effective_kind
        if not ref.name:
            return "spec.scaleTargetRef.name is empty"
        informer_name = RD_INFORMER if kind == "RunnerDeployment" else RUNNERSET_INFORMER
        informer = self._informers.get(informer_name)
        if informer is None:
            return f"{kind} targets are not supported by this process (no {informer_name} informer)"
        obj = informer.store.get(Key(namespace, ref.name))
        if obj is None:
            return f"{kind} {namespace}/{ref.name} not found"
        uid, version = _version(obj)
        cached = self._parsed.get((kind, uid))
        if cached is not None and cached[0] == version:
            return cached[1]
        hit = self._parse(kind, namespace, obj)
        if len(self._parsed) > MAX_CACHED:
            self._parsed.clear()
        self._parsed[(kind, uid)] = (version, hit)
        return hit

    @staticmethod
    def _parse(kind: str, namespace: str, obj: Obj) -> ScaleTarget | str:
        name = str(obj["metadata"]["name"])
        try:
            if kind == "RunnerDeployment":
                rd = RunnerDeployment.from_dict(obj)
                return ScaleTarget(
                    kind,
                    namespace,
                    name,
                    obj,
                    rd.spec.template.spec,
                    rd.spec.replicas,
                    rd.spec.effective_time,
                )
            rs = RunnerSet.from_dict(obj)
            return ScaleTarget(kind, namespace, name, obj, rs.spec, rs.spec.replicas, rs.spec.effective_time)
        except ApiParseError as exc:
            return f"{kind} {namespace}/{name} is invalid: {exc}"

    def cached(self) -> int:
        """Parsed objects held (one per object, whatever the number of versions seen)."""
        return len(self._parsed) + len(self._hras)

    def parse_hra(self, obj: Obj) -> HorizontalRunnerAutoscaler | None:
        """The HRA (cached by uid/resourceVersion); ``None`` when it does not parse."""
        uid, version = _version(obj)
        cached = self._hras.get(uid)
        if cached is not None and cached[0] == version:
            return cached[1]
        try:
            hra: HorizontalRunnerAutoscaler | None = self.reservations.parse_hra(obj)
        except ApiParseError:
            hra = None
        if len(self._hras) > MAX_CACHED:
            self._hras.clear()
        self._hras[uid] = (version, hra)
        return hra

    def webhook_targets(self, hras: Iterable[Obj]) -> list[WebhookTarget]:
        """Every HRA with a ``workflowJob`` trigger whose target resolves."""
        found = []
        for obj in hras:
            hra = self.parse_hra(obj)
            if hra is None or hra.metadata.deletion_timestamp is not None:
                continue
            trigger = workflow_job_trigger(hra.spec)
            if trigger is None:
                continue
            target = self.resolve(hra.namespace, hra.spec.scale_target_ref)
            if isinstance(target, str):
                continue
            found.append(WebhookTarget(Key(hra.namespace, hra.name), obj, trigger, target))
        return found
