"""Parsing raw objects into the API types, ARC's defaults, and serialising back."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from runnerd.api import (
    API_VERSION,
    ApiParseError,
    HorizontalRunnerAutoscaler,
    HorizontalRunnerAutoscalerSpec,
    MetricSpec,
    ObjectMeta,
    Runner,
    RunnerDeployment,
    RunnerDeploymentSpec,
    RunnerReplicaSet,
    RunnerScope,
    RunnerSet,
    RunnerSetSpec,
    RunnerSpec,
    ScaleTargetRef,
    ScaleUpTrigger,
    parse,
)
from tests.unit.api.manifests import Manifest, manifests

GOOD = manifests("good")


# --- defaults (ARC's, applied by effective_* and never written back) ------------------------


@pytest.mark.parametrize(
    ("raw", "attribute", "expected"),
    [
        ({}, "effective_ephemeral", True),
        ({"ephemeral": False}, "effective_ephemeral", False),
        ({"ephemeral": True}, "effective_ephemeral", True),
        ({}, "effective_docker_enabled", True),
        ({"dockerEnabled": False}, "effective_docker_enabled", False),
        ({}, "effective_dockerd_within_runner_container", False),
        ({"dockerdWithinRunnerContainer": True}, "effective_dockerd_within_runner_container", True),
        ({}, "effective_work_dir", "/runner/_work"),
        ({"workDir": ""}, "effective_work_dir", "/runner/_work"),
        ({"workDir": "/home/runner/work"}, "effective_work_dir", "/home/runner/work"),
        ({}, "effective_docker_var_run_volume_size_limit", "1M"),
        ({"dockerVarRunVolumeSizeLimit": "2M"}, "effective_docker_var_run_volume_size_limit", "2M"),
        ({}, "effective_image_pull_policy", "Always"),
        ({"imagePullPolicy": "IfNotPresent"}, "effective_image_pull_policy", "IfNotPresent"),
        ({}, "is_kubernetes_container_mode", False),
        ({"containerMode": "kubernetes"}, "is_kubernetes_container_mode", True),
    ],
)
def test_runner_spec_defaults(raw: dict[str, Any], attribute: str, expected: object) -> None:
    spec = RunnerSpec.from_dict(raw)
    assert getattr(spec, attribute) == expected
    assert spec.to_dict() == raw  # defaults are not written back


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"repository": "acme/widgets"}, RunnerScope("repository", "acme/widgets")),
        ({"organization": "acme"}, RunnerScope("organization", "acme")),
        ({"enterprise": "acme-ent"}, RunnerScope("enterprise", "acme-ent")),
        ({}, None),
        ({"organization": "acme", "repository": "acme/widgets"}, None),
        ({"organization": ""}, None),
    ],
)
def test_runner_scope(raw: dict[str, Any], expected: RunnerScope | None) -> None:
    assert RunnerSpec.from_dict(raw).scope == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [({}, 1), ({"replicas": None}, 1), ({"replicas": 0}, 0), ({"replicas": 3}, 3)]
)
def test_deployment_replicas_default_to_one(raw: dict[str, Any], expected: int) -> None:
    assert RunnerDeploymentSpec.from_dict(raw).effective_replicas == expected


@pytest.mark.parametrize(("raw", "expected"), [({}, 1), ({"replicas": 0}, 0), ({"replicas": 4}, 4)])
def test_runnerset_replicas_default_to_one(raw: dict[str, Any], expected: int) -> None:
    assert RunnerSetSpec.from_dict(raw).effective_replicas == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [({}, "RunnerDeployment"), ({"kind": ""}, "RunnerDeployment"), ({"kind": "RunnerSet"}, "RunnerSet")],
)
def test_scale_target_kind_defaults_to_runner_deployment(raw: dict[str, Any], expected: str) -> None:
    assert ScaleTargetRef.from_dict(raw).effective_kind == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [({}, 1), ({"minReplicas": -1}, 1), ({"minReplicas": 0}, 0), ({"minReplicas": 2}, 2)]
)
def test_hra_min_replicas_default(raw: dict[str, Any], expected: int) -> None:
    assert HorizontalRunnerAutoscalerSpec.from_dict(raw).effective_min_replicas == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, (0.8, 0.3, 1.3, 0.7)),
        (
            {
                "scaleUpThreshold": "0.75",
                "scaleDownThreshold": "0.25",
                "scaleUpFactor": "2",
                "scaleDownFactor": ".5",
            },
            (0.75, 0.25, 2.0, 0.5),
        ),
        ({"scaleUpFactor": ""}, (0.8, 0.3, 1.3, 0.7)),
    ],
)
def test_metric_thresholds_and_factors(raw: dict[str, Any], expected: tuple[float, ...]) -> None:
    m = MetricSpec.from_dict(raw)
    got = (m.effective_scale_up_threshold, m.effective_scale_down_threshold)
    assert (*got, m.effective_scale_up_factor, m.effective_scale_down_factor) == expected


def test_metric_unparsable_factor_names_the_field() -> None:
    with pytest.raises(ApiParseError, match=r"\.scaleUpFactor: cannot be parsed into a float"):
        _ = MetricSpec.from_dict({"scaleUpFactor": "double"}).effective_scale_up_factor


@pytest.mark.parametrize(
    ("duration", "minutes"),
    [(None, 10), ("0s", 10), ("-5m", 10), ("30m", 30), ("1h30m", 90), ("90s", 1.5)],
)
def test_scale_up_trigger_duration(duration: str | None, minutes: float) -> None:
    raw = {} if duration is None else {"duration": duration}
    assert ScaleUpTrigger.from_dict(raw).effective_duration == dt.timedelta(minutes=minutes)


# --- parsing ---------------------------------------------------------------------------------


def test_parse_article_runner_deployment() -> None:
    rd = parse(next(m for m in GOOD if m.path.name == "article-runnerdeployment-repository.yaml").obj)
    assert isinstance(rd, RunnerDeployment)
    assert (rd.name, rd.namespace) == ("example-runner-deployment", "actions-runner-system")
    assert rd.spec.replicas == 1
    spec = rd.spec.template.spec
    assert spec.repository == "<YOUR_NAME>/<YOUR_REPO_NAME>"
    assert spec.labels == ["self-hosted", "arc-runner"]
    assert spec.scope == RunnerScope("repository", "<YOUR_NAME>/<YOUR_REPO_NAME>")
    assert (spec.effective_ephemeral, spec.effective_docker_enabled, spec.effective_work_dir) == (
        True,
        True,
        "/runner/_work",
    )


def test_parse_article_hra() -> None:
    hra = parse(next(m for m in GOOD if m.path.name == "article-hra-metrics.yaml").obj)
    assert isinstance(hra, HorizontalRunnerAutoscaler)
    assert hra.spec.scale_target_ref.name == "example-runner-deployment"
    assert hra.spec.scale_target_ref.effective_kind == "RunnerDeployment"
    assert (hra.spec.min_replicas, hra.spec.max_replicas) == (0, 5)
    assert [m.type for m in hra.spec.metrics] == ["TotalNumberOfQueuedAndInProgressWorkflowRuns"]
    assert hra.spec.metrics[0].repository_names == ["<YOUR_NAME>/<YOUR_REPO_NAME>"]


def test_parse_hra_times_and_triggers() -> None:
    hra = parse(next(m for m in GOOD if m.path.name == "hra-webhook.yaml").obj)
    assert isinstance(hra, HorizontalRunnerAutoscaler)
    (reservation,) = hra.spec.capacity_reservations
    assert reservation.expiration_time == dt.datetime(2024, 3, 1, 10, 30, tzinfo=dt.UTC)
    (trigger,) = hra.spec.scale_up_triggers
    assert trigger.github_event is not None
    assert trigger.github_event.workflow_job is not None
    assert trigger.effective_duration == dt.timedelta(minutes=30)


def test_runnerset_keeps_the_statefulset_spec() -> None:
    raw = next(m for m in GOOD if m.path.name == "runnerset-volume-claim-templates.yaml").obj
    rs = parse(raw)
    assert isinstance(rs, RunnerSet)
    assert rs.spec.organization == "acme"
    assert rs.spec.selector == {"matchLabels": {"app": "cached-runnerset"}}
    assert rs.spec.template["spec"]["containers"][0]["name"] == "runner"
    assert [v["metadata"]["name"] for v in rs.spec.volume_claim_templates] == ["var-lib-docker", "tool-cache"]
    assert rs.spec.stateful_set["podManagementPolicy"] == "Parallel"
    assert "organization" not in rs.spec.stateful_set
    assert rs.spec.replicas is None
    rs.spec.replicas = 3
    assert rs.to_dict()["spec"]["replicas"] == 3
    rs.spec.replicas = None
    assert "replicas" not in rs.to_dict()["spec"]


def test_runnerset_replicas_must_be_an_integer() -> None:
    with pytest.raises(ApiParseError, match="expected an integer"):
        _ = RunnerSetSpec.from_dict({"replicas": "3"}).replicas


def test_object_meta_keeps_unmodelled_fields() -> None:
    raw = {
        "name": "r",
        "namespace": "ns",
        "uid": "u-1",
        "resourceVersion": "42",
        "generation": 3,
        "creationTimestamp": "2024-03-01T10:00:00Z",
        "labels": {"a": "b"},
        "ownerReferences": [
            {"apiVersion": API_VERSION, "kind": "RunnerReplicaSet", "name": "x", "uid": "u-0"}
        ],
        "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
    }
    meta = ObjectMeta.from_dict(raw)
    assert meta.creation_timestamp == dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC)
    assert meta.extra == {"managedFields": [{"manager": "kubectl", "operation": "Apply"}]}
    assert meta.to_dict() == raw


def _rd_spec(spec: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "RunnerDeployment", "spec": {"template": {"spec": spec}}}


@pytest.mark.parametrize(
    ("raw", "path", "message"),
    [
        ({"kind": "RunnerDeployment", "spec": {"replicas": "3"}}, ".spec.replicas", "expected an integer"),
        (_rd_spec({"labels": "linux"}), ".spec.template.spec.labels", "expected a list"),
        (_rd_spec({"env": ["A=1"]}), ".spec.template.spec.env[0]", "expected an object"),
        (
            {"kind": "HorizontalRunnerAutoscaler", "spec": {"scheduledOverrides": [{"startTime": "soon"}]}},
            ".spec.scheduledOverrides[0].startTime",
            "not an RFC 3339 time",
        ),
        ({"kind": "Runner", "spec": []}, ".spec", "expected an object"),
        ({"kind": "Runner", "apiVersion": "actions.github.com/v1alpha1"}, ".apiVersion", "expected actions"),
        ({"kind": "Pod"}, ".kind", "not a kind of"),
    ],
)
def test_parse_errors_name_the_field(raw: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ApiParseError, match=message) as excinfo:
        parse(raw)
    assert excinfo.value.path == path


def test_from_dict_rejects_the_wrong_kind() -> None:
    with pytest.raises(ApiParseError, match="expected Runner, got 'RunnerSet'"):
        Runner.from_dict({"kind": "RunnerSet"})


def test_parsed_json_fields_are_copies() -> None:
    raw: dict[str, Any] = {
        "kind": "Runner",
        "spec": {"repository": "a/b", "env": [{"name": "A", "value": "1"}]},
    }
    runner = parse(raw)
    assert isinstance(runner, Runner)
    runner.spec.env[0]["value"] = "2"
    assert raw["spec"]["env"][0]["value"] == "1"


# --- serialising -----------------------------------------------------------------------------


def _without_empty_collections(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_empty_collections(v) for k, v in value.items() if v not in ([], {}, None)}
    if isinstance(value, list):
        return [_without_empty_collections(v) for v in value]
    return value


@pytest.mark.parametrize("manifest", GOOD, ids=lambda m: m.id)
def test_good_manifests_round_trip(manifest: Manifest) -> None:
    obj = parse(copy.deepcopy(manifest.obj))
    out = obj.to_dict()
    assert out["apiVersion"] == API_VERSION
    assert out["kind"] == manifest.obj["kind"]
    # Empty lists/maps (``env: []``) are the only thing not kept; values and times come back as written.
    assert _without_empty_collections(out) == _without_empty_collections(manifest.obj)
    assert type(obj).from_dict(out) == obj


def test_set_optional_objects_are_kept_even_when_empty() -> None:
    raw = {"githubEvent": {"workflowJob": {}}, "duration": "10m"}
    assert ScaleUpTrigger.from_dict(raw).to_dict() == raw


def test_new_objects_serialise_minimally() -> None:
    rd = RunnerDeployment(metadata=ObjectMeta(name="rd", namespace="ns"))
    rd.spec.template.spec.organization = "acme"
    rd.spec.replicas = 2
    assert rd.to_dict() == {
        "apiVersion": API_VERSION,
        "kind": "RunnerDeployment",
        "metadata": {"name": "rd", "namespace": "ns"},
        "spec": {"replicas": 2, "template": {"spec": {"organization": "acme"}}},
    }
    rrs = RunnerReplicaSet.from_dict({"status": {"replicas": 0, "readyReplicas": 0}})
    assert rrs.to_dict()["status"] == {"replicas": 0, "readyReplicas": 0}


def test_status_round_trip() -> None:
    raw = {
        "kind": "Runner",
        "spec": {"organization": "acme"},
        "status": {
            "ready": False,
            "phase": "Running",
            "registration": {
                "organization": "acme",
                "labels": ["gpu"],
                "token": "t",
                "expiresAt": "2024-03-01T11:00:00Z",
            },
            "workflow": {"repository": "acme/widgets", "runID": "123", "job": "build"},
        },
    }
    runner = parse(raw)
    assert isinstance(runner, Runner)
    assert runner.status.registration is not None
    assert runner.status.registration.expires_at == dt.datetime(2024, 3, 1, 11, tzinfo=dt.UTC)
    assert runner.status.workflow is not None
    assert runner.status.workflow.run_id == "123"
    assert runner.to_dict() == {"apiVersion": API_VERSION, **raw}
