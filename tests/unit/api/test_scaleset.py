"""The scale-set API (``actions.github.com/v1alpha1``): parsing and ARC's defaults, and the
generated CRDs (names, printer columns, CEL rules), checked against the committed YAML and the
fixtures in ``manifests/scaleset-good`` / ``manifests/scaleset-bad``."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest

from runnerd.api import ApiParseError, crd_sizes
from runnerd.api.crds import GENERATED_HEADER, structural_problems
from runnerd.api.scaleset import (
    API_VERSION,
    RESOURCES,
    AutoscalingListenerSpec,
    AutoscalingRunnerSet,
    AutoscalingRunnerSetSpec,
    EphemeralRunner,
    EphemeralRunnerSet,
    EphemeralRunnerSetSpec,
    EphemeralRunnerStatus,
    parse,
)
from tests.unit.api.manifests import (
    SCALE_SET_CRD_DIR,
    Manifest,
    committed_crds,
    gen_crds_module,
    local_errors,
    manifests,
    stale_committed_crds,
)

GOOD = manifests("scaleset-good")
BAD = manifests("scaleset-bad")
KINDS = [r.KIND for r in RESOURCES]


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = committed_crds()[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


# --- types -----------------------------------------------------------------------------------


@pytest.mark.parametrize("manifest", GOOD, ids=lambda m: m.id)
def test_good_fixture_round_trips(manifest: Manifest) -> None:
    obj = parse(manifest.obj)
    assert obj.name == manifest.path.stem
    assert obj.to_dict() == manifest.obj


@pytest.mark.parametrize(
    ("raw", "attribute", "expected"),
    [
        ({}, "effective_min_runners", 0),
        ({}, "effective_max_runners", 2147483647),
        ({"minRunners": 2, "maxRunners": 0}, "effective_min_runners", 2),
        ({"maxRunners": 0}, "effective_max_runners", 0),
    ],
)
def test_autoscaling_runner_set_defaults(raw: dict[str, Any], attribute: str, expected: int) -> None:
    spec = AutoscalingRunnerSetSpec.from_dict(raw)
    assert getattr(spec, attribute) == expected
    assert spec.to_dict() == raw  # defaults are never written back


@pytest.mark.parametrize(
    ("raw", "replicas", "patch_id", "serialised"),
    [
        # the listener's merge patch sends replicas: null for 0, which removes the field
        ({"patchID": 0}, 0, 0, {"patchID": 0}),
        ({"replicas": 4, "patchID": 9}, 4, 9, {"replicas": 4, "patchID": 9}),
        # ARC's patchID is not omitempty: an object without one is written with 0
        ({"replicas": 1}, 1, 0, {"replicas": 1, "patchID": 0}),
    ],
)
def test_ephemeral_runner_set_replicas_and_patch_id(
    raw: dict[str, Any], replicas: int, patch_id: int, serialised: dict[str, Any]
) -> None:
    spec = EphemeralRunnerSetSpec.from_dict(raw)
    assert (spec.effective_replicas, spec.effective_patch_id) == (replicas, patch_id)
    assert spec.to_dict() == serialised


@pytest.mark.parametrize(
    ("status", "busy"),
    [
        ({}, False),
        ({"jobId": ""}, False),
        ({"jobId": "7f1c"}, True),
        ({"jobRequestId": 0}, False),  # the backend may send runnerRequestId 0 (ARC#4239)
        ({"jobRequestId": 12}, True),  # ARC <= 0.12 objects carry only jobRequestId
    ],
)
def test_ephemeral_runner_busy(status: dict[str, Any], busy: bool) -> None:
    assert EphemeralRunnerStatus.from_dict(status).busy is busy


def test_ephemeral_runner_inlines_its_pod_template() -> None:
    raw = next(m for m in GOOD if m.path.name == "er.yaml").obj
    er = EphemeralRunner.from_dict(raw)
    assert er.spec.runner_scale_set_id == 12
    assert er.spec.pod_template == {"metadata": raw["spec"]["metadata"], "spec": raw["spec"]["spec"]}


def test_failures_are_times_by_pod_uid() -> None:
    status = EphemeralRunnerStatus.from_dict({"failures": {"uid-1": "2026-01-02T03:04:05Z"}})
    assert status.failures["uid-1"].isoformat() == "2026-01-02T03:04:05+00:00"
    assert status.to_dict() == {"failures": {"uid-1": "2026-01-02T03:04:05Z"}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"apiVersion": "actions.summerwind.dev/v1alpha1", "kind": "EphemeralRunner"},
            "expected actions.github",
        ),
        ({"apiVersion": API_VERSION, "kind": "Runner"}, "not a kind of actions.github.com/v1alpha1"),
        ({"apiVersion": API_VERSION, "kind": "EphemeralRunnerSet", "spec": {"patchID": "1"}}, "spec.patchID"),
        (
            {
                "apiVersion": API_VERSION,
                "kind": "AutoscalingRunnerSet",
                "spec": {"listenerMetrics": {"histograms": {"h": {"buckets": [True]}}}},
            },
            "expected a number",
        ),
    ],
)
def test_parse_errors_name_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ApiParseError, match=message):
        parse(raw)


def test_from_dict_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(ApiParseError, match="expected EphemeralRunnerSet"):
        EphemeralRunnerSet.from_dict({"apiVersion": API_VERSION, "kind": "AutoscalingRunnerSet"})
    assert AutoscalingRunnerSet().to_dict() == {"apiVersion": API_VERSION, "kind": "AutoscalingRunnerSet"}


# --- fixtures against the committed CRDs (the API server runs them in tests/integration) ---


@pytest.mark.parametrize("manifest", GOOD, ids=lambda m: m.id)
def test_good_fixture_is_accepted(manifest: Manifest) -> None:
    assert local_errors(manifest.obj) == []


@pytest.mark.parametrize("manifest", BAD, ids=lambda m: m.id)
def test_bad_fixture_is_rejected_with_the_expected_message(manifest: Manifest) -> None:
    assert manifest.expect_error, f"{manifest.id}: a bad manifest needs an '# expect-error: ...' header"
    assert manifest.expect_local is not None
    errors = local_errors(manifest.obj)
    assert any(manifest.expect_local in e for e in errors), f"expected {manifest.expect_local!r} in {errors}"


def test_every_kind_has_good_fixtures_and_bad_ones_where_rules_exist() -> None:
    assert {m.obj["kind"] for m in GOOD} == set(KINDS)
    assert {m.obj["kind"] for m in BAD} == set(KINDS)


# --- CRDs ------------------------------------------------------------------------------------


def test_committed_crds_are_up_to_date() -> None:
    stale = stale_committed_crds(lambda gen: gen.rendered_scale_set_crds(), SCALE_SET_CRD_DIR)
    assert not stale, f"CRDs are stale ({', '.join(stale)}): run .venv/bin/python hack/gen_crds.py"


def test_one_crd_per_kind_named_as_arc_names_them() -> None:
    assert sorted(p.name for p in SCALE_SET_CRD_DIR.glob("*.yaml")) == [
        "actions.github.com_autoscalinglisteners.yaml",
        "actions.github.com_autoscalingrunnersets.yaml",
        "actions.github.com_ephemeralrunners.yaml",
        "actions.github.com_ephemeralrunnersets.yaml",
    ]
    for path in SCALE_SET_CRD_DIR.glob("*.yaml"):
        assert path.read_text().startswith(GENERATED_HEADER), path


@pytest.mark.parametrize("kind", KINDS)
def test_names_scope_and_subresources(kind: str) -> None:
    # As ARC's: namespaced, a status subresource, no short names, no scale subresource.
    spec = committed_crds()[kind]["spec"]
    assert spec["group"] == "actions.github.com"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": f"{kind.lower()}s",
        "singular": kind.lower(),
    }
    assert spec["versions"][0]["subresources"] == {"status": {}}


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        (
            "AutoscalingRunnerSet",
            [
                "Minimum Runners",
                "Maximum Runners",
                "Current Runners",
                "Phase",
                "Pending Runners",
                "Running Runners",
                "Failed Runners",
                "Age",
            ],
        ),
        (
            "EphemeralRunnerSet",
            [
                "DesiredReplicas",
                "CurrentReplicas",
                "Pending Runners",
                "Running Runners",
                "Failed Runners",
                "Age",
            ],
        ),
        (
            "EphemeralRunner",
            [
                "GitHub Config URL",
                "RunnerId",
                "Status",
                "JobRepository",
                "JobWorkflowRef",
                "WorkflowRunId",
                "JobDisplayName",
                "JobId",
                "Message",
                "Age",
            ],
        ),
        (
            "AutoscalingListener",
            [
                "GitHub Configure URL",
                "AutoscalingRunnerSet Namespace",
                "AutoscalingRunnerSet Name",
                "Phase",  # runnerd's: the in-process listener's state
                "Desired Runners",
                "Age",
            ],
        ),
    ],
)
def test_printer_columns_point_at_real_fields(kind: str, columns: list[str]) -> None:
    printed = committed_crds()[kind]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in printed] == columns
    for column in printed:
        parts = column["jsonPath"].split(".")[1:]
        if parts[0] == "metadata":
            continue
        node = _schema(kind)
        for part in parts:
            node = node["properties"][part]  # KeyError: the column would always be blank
        assert node["type"] in ("integer", "string") or column["type"] == "date", column
    # ARC's two columns on fields that do not exist are gone
    assert not {"Finished Runners", "Deleting Runners"} & {c["name"] for c in printed}


@pytest.mark.parametrize("kind", KINDS)
def test_crd_is_structural_and_fits_client_side_apply(kind: str) -> None:
    assert structural_problems(_schema(kind)) == []
    _, json_bytes = crd_sizes(committed_crds()[kind])
    assert json_bytes < 262144


def _rules(node: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in node.get("x-kubernetes-validations", [])]


def test_cel_rules_sit_where_arc_checks_and_nowhere_else() -> None:
    for kind, cls in (
        ("AutoscalingRunnerSet", AutoscalingRunnerSetSpec),
        ("AutoscalingListener", AutoscalingListenerSpec),
    ):
        spec = _schema(kind)["properties"]["spec"]
        assert _rules(spec) == [r.cel for r in cls.RULES]
        assert [v["message"] for v in spec["x-kubernetes-validations"]] == [r.message for r in cls.RULES]
    assert [len(_rules(_schema(k)["properties"]["spec"])) for k in KINDS] == [5, 0, 0, 1]
    assert "x-kubernetes-validations" not in str({k: _schema(k)["properties"].get("status") for k in KINDS})


def test_pod_templates_are_kubernetes_pod_template_specs() -> None:
    ars = _schema("AutoscalingRunnerSet")["properties"]["spec"]["properties"]
    er = _schema("EphemeralRunner")["properties"]["spec"]["properties"]
    for template in (ars["template"], ars["listenerTemplate"]):
        assert set(template["properties"]) == {"metadata", "spec"}
        assert "containers" in template["properties"]["spec"]["required"]
    # EphemeralRunnerSpec inlines the PodTemplateSpec next to its own fields, as ARC's does
    assert {"metadata", "spec", "runnerScaleSetId", "githubConfigUrl"} <= set(er)
    assert _schema("EphemeralRunnerSet")["properties"]["spec"]["required"] == ["patchID"]


def test_buckets_are_numbers_and_min_max_not_negative() -> None:
    spec = _schema("AutoscalingRunnerSet")["properties"]["spec"]["properties"]
    histogram = spec["listenerMetrics"]["properties"]["histograms"]["additionalProperties"]
    assert histogram["properties"]["buckets"] == {"type": "array", "items": {"type": "number"}}
    assert spec["minRunners"]["minimum"] == spec["maxRunners"]["minimum"] == 0


def test_gen_crds_check_mode_covers_the_scale_set_group(tmp_path: Path) -> None:
    gen = gen_crds_module()
    if shutil.which("go") is None and not gen.os.environ.get(gen.ENV_DIR):
        pytest.skip(f"needs Go (or {gen.ENV_DIR}) to locate the Kubernetes OpenAPI documents")
    out = tmp_path / "ss"
    args = ["--out", str(gen.CRD_DIR), "--scale-set-out", str(out)]
    assert gen.main(["--check", *args]) == 1
    assert gen.main(args) == 0
    assert gen.main(["--check", *args]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in SCALE_SET_CRD_DIR.glob("*.yaml"))


def test_fixture_copies_are_independent() -> None:
    # parse() must not alias the caller's dicts (controllers mutate what they parsed)
    raw = copy.deepcopy(next(m for m in GOOD if m.path.name == "ars-full.yaml").obj)
    ars = AutoscalingRunnerSet.from_dict(raw)
    ars.spec.template["spec"]["containers"][0]["image"] = "changed"
    assert raw["spec"]["template"]["spec"]["containers"][0]["image"] != "changed"
