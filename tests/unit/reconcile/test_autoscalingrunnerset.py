"""ARC's AutoscalingRunnerSet order (reconcile/autoscalingrunnerset.py): one step at a time."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runnerd.reconcile.autoscalingrunnerset import (
    ListenerView,
    RunnerSetView,
    ScaleSetDecision,
    ScaleSetFacts,
    SetStep,
    decide_scale_set,
)

T = SetStep
NEW = RunnerSetView("set-new", "h2", created=2)
OLD = RunnerSetView("set-old", "h1", replicas=2, patch_id=5, current=1, created=1)
LISTENER = ListenerView("l", "lh", "set-new")
F = ScaleSetFacts(
    spec_hash="h2",
    listener_hash="lh",
    scale_set_id=7,
    name_annotation="arc",
    group_annotation="default",
    want_name="arc",
    runner_sets=(NEW,),
    listener=LISTENER,
)
D = replace(F, deleting=True)


@pytest.mark.parametrize(
    ("facts", "want"),
    [
        pytest.param(replace(F, has_finalizer=False), ScaleSetDecision((T.ADD_FINALIZER,)), id="finalizer"),
        pytest.param(replace(F, scale_set_id=None), ScaleSetDecision((T.REGISTER_SCALE_SET,)), id="register"),
        pytest.param(replace(F, want_name="other"), ScaleSetDecision((T.UPDATE_SCALE_SET,)), id="rename"),
        pytest.param(replace(F, want_group="GPU"), ScaleSetDecision((T.UPDATE_SCALE_SET,)), id="regroup"),
        pytest.param(
            replace(F, want_group="Default"),
            ScaleSetDecision((T.UPDATE_STATUS,), "set-new"),
            id="group-case-insensitive",
        ),
        pytest.param(replace(F, runner_sets=()), ScaleSetDecision((T.CREATE_RUNNER_SET,)), id="first-set"),
        pytest.param(
            replace(F, listener=None),
            ScaleSetDecision((T.CREATE_LISTENER, T.UPDATE_STATUS), "set-new"),
            id="listener",
        ),
        pytest.param(F, ScaleSetDecision((T.UPDATE_STATUS,), "set-new"), id="steady"),
        pytest.param(
            replace(F, runner_sets=(OLD, NEW), listener=ListenerView("l", "old", "set-old")),
            ScaleSetDecision(
                (T.DELETE_LISTENER, T.RETIRE_RUNNER_SETS, T.UPDATE_STATUS), "set-new", retire=("set-old",)
            ),
            id="roll-retires-old-set-busy-runner-stays",
        ),
        pytest.param(
            replace(F, runner_sets=(replace(OLD, replicas=0, patch_id=0), NEW)),
            ScaleSetDecision((T.UPDATE_STATUS,), "set-new"),
            id="retired-set-waits-for-its-runners",
        ),
        pytest.param(
            replace(F, runner_sets=(replace(OLD, replicas=0, patch_id=0, current=0), NEW)),
            ScaleSetDecision((T.RETIRE_RUNNER_SETS, T.UPDATE_STATUS), "set-new", delete=("set-old",)),
            id="empty-old-set-deleted",
        ),
        pytest.param(D, ScaleSetDecision((T.DELETE_LISTENER,)), id="delete-listener-first"),
        pytest.param(
            replace(D, listener=replace(LISTENER, deleting=True)),
            ScaleSetDecision(()),
            id="wait-listener-gone",
        ),
        pytest.param(
            replace(D, listener=None, runner_sets=(OLD, NEW)),
            ScaleSetDecision((T.DELETE_RUNNER_SETS,), delete=("set-old", "set-new")),
            id="delete-sets",
        ),
        pytest.param(
            replace(D, listener=None, runner_sets=(replace(NEW, deleting=True),)),
            ScaleSetDecision(()),
            id="wait-sets-gone",
        ),
        pytest.param(
            replace(D, listener=None, runner_sets=()),
            ScaleSetDecision((T.DELETE_SCALE_SET, T.REMOVE_FINALIZER)),
            id="scale-set-then-finalizer",
        ),
        pytest.param(
            replace(D, listener=None, runner_sets=(), scale_set_id=None),
            ScaleSetDecision((T.REMOVE_FINALIZER,)),
            id="never-registered",
        ),
    ],
)
def test_decide_scale_set(facts: ScaleSetFacts, want: ScaleSetDecision) -> None:
    got = decide_scale_set(facts)
    assert (got.steps, got.current, got.retire, got.delete) == (
        want.steps,
        want.current,
        want.retire,
        want.delete,
    )
