"""An AutoscalingRunnerSet's next step (pure): its scale set in GitHub, its EphemeralRunnerSets, its
listener.

One write per reconcile, in ARC's order (``../shared/reference/scale-set-protocol.md`` §12.1):

* deleting: delete the listener and wait until it is gone; delete every EphemeralRunnerSet and wait
  (each one's finalizer removes its runners, and every runner's finalizer waits for its job);
  delete the scale set in GitHub; remove the finalizer;
* otherwise: add the finalizer; get or create the scale set (no ``runner-scale-set-id``
  annotation); rename it or move it to ``spec.runnerGroup`` when the annotations say otherwise;
  create the EphemeralRunnerSet of the current runner-spec hash when none has it; delete a listener
  whose spec hash is stale (or that points at another set); retire the older sets: scaled to 0
  with ``patchID`` 0 (idle runners go, busy ones finish their job) and deleted once empty;
  create the listener; copy the current set's counts into the status.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SetStep(StrEnum):
    DELETE_LISTENER = "DeleteListener"
    DELETE_RUNNER_SETS = "DeleteRunnerSets"
    DELETE_SCALE_SET = "DeleteScaleSet"
    REMOVE_FINALIZER = "RemoveFinalizer"
    ADD_FINALIZER = "AddFinalizer"
    REGISTER_SCALE_SET = "RegisterScaleSet"
    UPDATE_SCALE_SET = "UpdateScaleSet"
    CREATE_RUNNER_SET = "CreateRunnerSet"
    RETIRE_RUNNER_SETS = "RetireRunnerSets"
    CREATE_LISTENER = "CreateListener"
    UPDATE_STATUS = "UpdateStatus"


@dataclass(frozen=True)
class RunnerSetView:
    name: str
    spec_hash: str
    replicas: int = 0
    patch_id: int = 0
    current: int = 0
    """``status.currentReplicas``: its runners, busy ones included."""
    deleting: bool = False
    created: float = 0.0


@dataclass(frozen=True)
class ListenerView:
    name: str
    spec_hash: str
    runner_set: str
    deleting: bool = False


@dataclass(frozen=True)
class ScaleSetFacts:
    spec_hash: str
    """The runner-spec hash of the current template."""
    listener_hash: str
    deleting: bool = False
    has_finalizer: bool = True
    scale_set_id: int | None = None
    name_annotation: str | None = None
    group_annotation: str | None = None
    want_name: str = ""
    want_group: str = ""
    runner_sets: tuple[RunnerSetView, ...] = ()
    listener: ListenerView | None = None


@dataclass(frozen=True)
class ScaleSetDecision:
    steps: tuple[SetStep, ...] = ()
    current: str | None = None
    """The EphemeralRunnerSet of the current template (the listener's)."""
    retire: tuple[str, ...] = ()
    """Older sets to scale to 0 (``patchID`` 0)."""
    delete: tuple[str, ...] = ()
    """Older sets that are empty: deleted."""
    reason: str = ""


def current_set(facts: ScaleSetFacts) -> RunnerSetView | None:
    """The newest live set with the current runner-spec hash."""
    matching = [s for s in facts.runner_sets if s.spec_hash == facts.spec_hash and not s.deleting]
    return max(matching, key=lambda s: (s.created, s.name), default=None)


def decide_scale_set(f: ScaleSetFacts) -> ScaleSetDecision:
    """The next steps for one AutoscalingRunnerSet (the module docstring states the order)."""
    if f.deleting:
        return _cleanup(f)
    if not f.has_finalizer:
        return ScaleSetDecision((SetStep.ADD_FINALIZER,))
    if f.scale_set_id is None:
        return ScaleSetDecision((SetStep.REGISTER_SCALE_SET,), reason="RegisteringScaleSet")
    if f.group_annotation is None or f.name_annotation is None or _differs(f):
        return ScaleSetDecision((SetStep.UPDATE_SCALE_SET,), reason="UpdatingScaleSet")
    current = current_set(f)
    if current is None:
        return ScaleSetDecision((SetStep.CREATE_RUNNER_SET,), reason="NewRunnerSpec")
    steps: list[SetStep] = []
    listener = f.listener
    stale = listener is not None and (
        listener.spec_hash != f.listener_hash or listener.runner_set != current.name
    )
    if listener is not None and not listener.deleting and stale:
        steps.append(SetStep.DELETE_LISTENER)
    old = [s for s in f.runner_sets if s.name != current.name and not s.deleting]
    retire = tuple(s.name for s in old if s.current > 0 and (s.replicas != 0 or s.patch_id != 0))
    delete = tuple(s.name for s in old if s.current == 0)
    if retire or delete:
        steps.append(SetStep.RETIRE_RUNNER_SETS)
    if listener is None:
        steps.append(SetStep.CREATE_LISTENER)
    steps.append(SetStep.UPDATE_STATUS)
    return ScaleSetDecision(tuple(steps), current=current.name, retire=retire, delete=delete)


def _differs(f: ScaleSetFacts) -> bool:
    group = (f.group_annotation or "").lower()
    want_group = f.want_group.lower()
    return bool(f.want_group and group != want_group) or bool(
        f.want_name and f.name_annotation != f.want_name
    )


def _cleanup(f: ScaleSetFacts) -> ScaleSetDecision:
    if not f.has_finalizer:
        return ScaleSetDecision()
    if f.listener is not None:
        return ScaleSetDecision(
            () if f.listener.deleting else (SetStep.DELETE_LISTENER,), reason="DeletingListener"
        )
    if f.runner_sets:
        live = [s.name for s in f.runner_sets if not s.deleting]
        steps = (SetStep.DELETE_RUNNER_SETS,) if live else ()
        return ScaleSetDecision(steps, delete=tuple(live), reason="DeletingRunnerSets")
    if f.scale_set_id is not None:
        return ScaleSetDecision(
            (SetStep.DELETE_SCALE_SET, SetStep.REMOVE_FINALIZER), reason="DeletingScaleSet"
        )
    return ScaleSetDecision((SetStep.REMOVE_FINALIZER,), reason="Removed")
