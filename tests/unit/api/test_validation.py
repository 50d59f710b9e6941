"""The CEL rules' Python twins (runnerd.api.validate), rule by rule."""

from __future__ import annotations

from typing import Any

import pytest

from runnerd.api import HorizontalRunnerAutoscalerSpec, MetricSpec, RunnerSetSpec, RunnerSpec, validate
from runnerd.api.validation import rule_violations

K8S_MODE = {"repository": "a/b", "containerMode": "kubernetes"}


def _wvct(*modes: str) -> dict[str, Any]:
    return {
        "storageClassName": "s",
        "accessModes": list(modes),
        "resources": {"requests": {"storage": "1Gi"}},
    }


SCOPE_NEEDED = "spec needs enterprise, organization or repository"
SCOPE_MANY = "spec cannot have many fields defined enterprise, organization and repository"
NEEDS_WVCT = "Spec.ContainerMode: kubernetes must have workVolumeClaimTemplate field specified"
NO_MODES = "access mode should have at least one mode specified"
BAD_MODE = "access mode is not supported (only ReadWriteOnce and ReadWriteMany are)"


@pytest.mark.parametrize("cls", [RunnerSpec, RunnerSetSpec])
@pytest.mark.parametrize(
    ("spec", "messages"),
    [
        ({"repository": "a/b"}, []),
        ({"organization": "a"}, []),
        ({"enterprise": "e"}, []),
        ({}, [SCOPE_NEEDED]),
        ({"organization": None}, [SCOPE_NEEDED]),
        ({"organization": "a", "repository": "a/b"}, [SCOPE_MANY]),
        ({"enterprise": "e", "organization": "a", "repository": "a/b"}, [SCOPE_MANY]),
        (K8S_MODE, [NEEDS_WVCT]),
        ({**K8S_MODE, "workVolumeClaimTemplate": _wvct("ReadWriteOnce")}, []),
        ({**K8S_MODE, "containerMode": "", "workVolumeClaimTemplate": _wvct()}, []),
        ({**K8S_MODE, "workVolumeClaimTemplate": _wvct()}, [NO_MODES]),
        ({**K8S_MODE, "workVolumeClaimTemplate": _wvct("ReadWriteMany", "ReadOnlyMany")}, [BAD_MODE]),
        ({**K8S_MODE, "workVolumeClaimTemplate": _wvct("ReadWriteOnce", "ReadWriteMany")}, []),
    ],
)
def test_runner_config_rules(
    cls: type[RunnerSpec | RunnerSetSpec], spec: dict[str, Any], messages: list[str]
) -> None:
    assert rule_violations(cls, spec, ".spec") == [f".spec: {m}" for m in messages]


MIN_MAX = "minReplicas must be less than or equal to maxReplicas"
COMBINATION = (
    "two metrics can only be combined as metrics[0]=PercentageRunnersBusy and "
    "metrics[1]=TotalNumberOfQueuedAndInProgressWorkflowRuns"
)
BUSY, QUEUED = "PercentageRunnersBusy", "TotalNumberOfQueuedAndInProgressWorkflowRuns"


@pytest.mark.parametrize(
    ("spec", "messages"),
    [
        ({"minReplicas": 0, "maxReplicas": 5}, []),
        ({"minReplicas": 5, "maxReplicas": 5}, []),
        ({"minReplicas": 6, "maxReplicas": 5}, [MIN_MAX]),
        ({"minReplicas": 6}, []),
        ({"maxReplicas": 0}, []),
        ({"metrics": [{"type": QUEUED}]}, []),
        ({"metrics": [{"type": BUSY}, {"type": QUEUED}]}, []),
        ({"metrics": [{"type": QUEUED}, {"type": BUSY}]}, [COMBINATION]),
        ({"metrics": [{"type": BUSY}, {"type": BUSY}]}, [COMBINATION]),
        ({"metrics": [{"type": BUSY}, {}]}, [COMBINATION]),
    ],
)
def test_hra_spec_rules(spec: dict[str, Any], messages: list[str]) -> None:
    assert rule_violations(HorizontalRunnerAutoscalerSpec, spec) == [f".: {m}" for m in messages]


UP = "scaleUpAdjustment and scaleUpFactor cannot be specified together"
DOWN = "scaleDownAdjustment and scaleDownFactor cannot be specified together"


@pytest.mark.parametrize(
    ("metric", "messages"),
    [
        ({"scaleUpFactor": "2", "scaleDownFactor": "0.5"}, []),
        ({"scaleUpAdjustment": 2, "scaleDownAdjustment": 1}, []),
        ({"scaleUpAdjustment": 0, "scaleUpFactor": "2"}, []),  # 0 means unset, as in ARC
        ({"scaleUpAdjustment": 2, "scaleUpFactor": ""}, []),
        ({"scaleUpAdjustment": 2, "scaleUpFactor": "2"}, [UP]),
        ({"scaleDownAdjustment": 1, "scaleDownFactor": "0.5"}, [DOWN]),
        (
            {
                "scaleUpAdjustment": 2,
                "scaleUpFactor": "2",
                "scaleDownAdjustment": 1,
                "scaleDownFactor": "0.5",
            },
            [UP, DOWN],
        ),
    ],
)
def test_metric_rules(metric: dict[str, Any], messages: list[str]) -> None:
    assert rule_violations(MetricSpec, {"type": BUSY, **metric}) == [f".: {m}" for m in messages]


def test_validate_reports_nested_paths() -> None:
    hra = {
        "kind": "HorizontalRunnerAutoscaler",
        "spec": {
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [{"type": BUSY, "scaleUpAdjustment": 1, "scaleUpFactor": "2"}],
        },
    }
    assert validate(hra) == [f".spec.metrics[0]: {UP}"]
    rd = {
        "kind": "RunnerDeployment",
        "spec": {"template": {"spec": {"organization": "a", "enterprise": "e"}}},
    }
    assert validate(rd) == [f".spec.template.spec: {SCOPE_MANY}"]


def test_validate_unknown_kind() -> None:
    assert validate({"kind": "Deployment"}) == [".kind: unknown kind 'Deployment'"]


def test_malformed_values_do_not_crash_validation() -> None:
    # A malformed entry is reported by the rule instead of raising.
    assert rule_violations(HorizontalRunnerAutoscalerSpec, {"metrics": [{"type": BUSY}, "x"]}) == [
        f".: {COMBINATION}"
    ]
