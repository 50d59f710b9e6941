"""The generated CRDs: up to date, structural, small enough, and carrying ARC's names, columns,
subresources and the webhook validations as CEL."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runnerd.api import (
    RESOURCES,
    HorizontalRunnerAutoscalerSpec,
    MetricSpec,
    RunnerSetSpec,
    RunnerSpec,
    crd_sizes,
    crd_to_yaml,
)
from runnerd.api.crds import GENERATED_HEADER, K8sSchemas, SchemaBuildError, build_crds, structural_problems
from tests.unit.api.manifests import (
    CRD_DIR,
    committed_crds,
    gen_crds_module,
    openapi_schema,
    stale_committed_crds,
)

KINDS = [r.KIND for r in RESOURCES]


def test_committed_crds_are_up_to_date() -> None:
    stale = stale_committed_crds(lambda gen: gen.rendered_crds(), CRD_DIR)
    assert not stale, f"CRDs are stale ({', '.join(stale)}): run .venv/bin/python hack/gen_crds.py"


def test_committed_files_are_marked_generated() -> None:
    for path in CRD_DIR.glob("*.yaml"):
        assert path.read_text().startswith(GENERATED_HEADER), path


def test_one_crd_per_kind_named_as_arc_names_them() -> None:
    # ARC's kinds, plus runnerd's own group (runnerd.dev) in the same chart.
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == sorted(
        [
            *(f"actions.summerwind.dev_{r.PLURAL}.yaml" for r in RESOURCES),
            "runnerd.dev_runnersizingpolicies.yaml",
        ]
    )


@pytest.mark.parametrize(
    ("kind", "plural", "short_names", "scale"),
    [
        ("Runner", "runners", None, False),
        ("RunnerReplicaSet", "runnerreplicasets", ["rrs"], True),
        ("RunnerDeployment", "runnerdeployments", ["rdeploy"], True),
        ("RunnerSet", "runnersets", None, True),
        ("HorizontalRunnerAutoscaler", "horizontalrunnerautoscalers", ["hra"], False),
    ],
)
def test_names_and_subresources(kind: str, plural: str, short_names: list[str] | None, scale: bool) -> None:
    crd = committed_crds()[kind]
    assert crd["metadata"]["name"] == f"{plural}.actions.summerwind.dev"
    spec = crd["spec"]
    assert spec["group"] == "actions.summerwind.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        **({"shortNames": short_names} if short_names else {}),
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"]["status"] == {}
    if scale:
        assert version["subresources"]["scale"] == {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    else:
        assert "scale" not in version["subresources"]


SCOPE = "Scope"


@pytest.mark.parametrize(
    ("kind", "default_columns"),
    [
        ("Runner", ["Scope", "Labels", "Status", "Job", "Age"]),
        ("RunnerReplicaSet", ["Desired", "Current", "Ready", "Busy", "Age"]),
        ("RunnerDeployment", ["Desired", "Current", "Ready", "Busy", "Age"]),
        ("RunnerSet", ["Desired", "Current", "Ready", "Busy", "Age"]),
        ("HorizontalRunnerAutoscaler", ["Min", "Max", "Desired", "Schedule", "Age"]),
    ],
)
def test_printer_columns(kind: str, default_columns: list[str]) -> None:
    columns = committed_crds()[kind]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns if not c.get("priority")] == default_columns
    by_name = {c["name"]: c for c in columns}
    assert by_name["Age"] == {"name": "Age", "jsonPath": ".metadata.creationTimestamp", "type": "date"}
    for column in columns:
        assert column["jsonPath"].startswith("."), column
        path = column["jsonPath"].split("[")[0].split(".")[1:]
        if path[0] in ("spec", "status"):
            node = openapi_schema(kind)
            for part in path:
                node = node["properties"][part]  # every column points at a real field


def test_scope_column_shows_whichever_scope_is_set() -> None:
    columns = committed_crds()["RunnerDeployment"]["spec"]["versions"][0]["additionalPrinterColumns"]
    scope = next(c for c in columns if c["name"] == SCOPE)
    assert scope["jsonPath"] == ".spec.template.spec['enterprise','organization','repository']"


@pytest.mark.parametrize("kind", KINDS)
def test_crd_is_structural(kind: str) -> None:
    assert structural_problems(openapi_schema(kind)) == []


@pytest.mark.parametrize("kind", KINDS)
def test_crd_fits_client_side_apply(kind: str) -> None:
    yaml_bytes, json_bytes = crd_sizes(committed_crds()[kind])
    # kubectl apply (client side) stores the compact JSON in an annotation limited to 256 KiB.
    assert json_bytes < 128 * 1024
    assert yaml_bytes < 256 * 1024


def _walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def test_embedded_kubernetes_types_carry_no_descriptions() -> None:
    schema = openapi_schema("RunnerSet")
    described = [
        p for p, s in _walk(schema["properties"]["spec"]["properties"]["template"]) if "description" in s
    ]
    assert described == []
    container = schema["properties"]["spec"]["properties"]["template"]["properties"]["spec"]["properties"][
        "containers"
    ]
    assert container["x-kubernetes-list-type"] == "map"
    assert container["items"]["properties"]["ports"]["items"]["properties"]["protocol"]["default"] == "TCP"


def test_quantities_and_int_or_string() -> None:
    spec = openapi_schema("Runner")["properties"]["spec"]["properties"]
    limit = spec["dockerVarRunVolumeSizeLimit"]
    assert limit["x-kubernetes-int-or-string"] is True
    assert limit["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert "pattern" in limit
    assert spec["resources"]["properties"]["limits"]["additionalProperties"] == {
        k: v for k, v in limit.items() if k != "description"
    }
    probe_port = spec["containers"]["items"]["properties"]["livenessProbe"]["properties"]["httpGet"][
        "properties"
    ]["port"]
    assert probe_port == {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
    }


def test_templates_take_embedded_object_metadata() -> None:
    expected = {"annotations", "finalizers", "labels", "name", "namespace"}
    rd_meta = openapi_schema("RunnerDeployment")["properties"]["spec"]["properties"]["template"][
        "properties"
    ]["metadata"]
    assert set(rd_meta["properties"]) == expected
    rs_spec = openapi_schema("RunnerSet")["properties"]["spec"]["properties"]
    assert set(rs_spec["template"]["properties"]["metadata"]["properties"]) == expected
    assert set(rs_spec["volumeClaimTemplates"]["items"]["properties"]["metadata"]["properties"]) == expected


def test_runnerset_has_runner_config_and_statefulset_fields() -> None:
    spec = openapi_schema("RunnerSet")["properties"]["spec"]
    props = set(spec["properties"])
    assert {"enterprise", "organization", "repository", "labels", "ephemeral", "effectiveTime"} <= props
    assert {
        "replicas",
        "selector",
        "template",
        "serviceName",
        "volumeClaimTemplates",
        "updateStrategy",
    } <= props
    assert {"ordinals", "persistentVolumeClaimRetentionPolicy", "minReadySeconds"} <= props
    assert spec["required"] == ["selector", "template"]


def _rules(schema: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in schema.get("x-kubernetes-validations", [])]


@pytest.mark.parametrize(
    ("kind", "path", "cls"),
    [
        ("Runner", ["spec"], RunnerSpec),
        ("RunnerDeployment", ["spec", "template", "spec"], RunnerSpec),
        ("RunnerReplicaSet", ["spec", "template", "spec"], RunnerSpec),
        ("RunnerSet", ["spec"], RunnerSetSpec),
        ("HorizontalRunnerAutoscaler", ["spec"], HorizontalRunnerAutoscalerSpec),
        ("HorizontalRunnerAutoscaler", ["spec", "metrics", "[]"], MetricSpec),
    ],
)
def test_webhook_validations_are_cel_rules(kind: str, path: list[str], cls: type[Any]) -> None:
    node = openapi_schema(kind)
    for part in path:
        node = node["items"] if part == "[]" else node["properties"][part]
    assert _rules(node) == [r.cel for r in cls.RULES]
    assert [v["message"] for v in node["x-kubernetes-validations"]] == [r.message for r in cls.RULES]


def test_no_other_cel_rules() -> None:
    counted = {kind: sum(len(_rules(s)) for _, s in _walk(openapi_schema(kind))) for kind in KINDS}
    assert counted == {
        "Runner": 5,
        "RunnerReplicaSet": 5,
        "RunnerDeployment": 5,
        "RunnerSet": 5,
        "HorizontalRunnerAutoscaler": 4,
    }


def test_no_preserve_unknown_fields_in_the_generated_crds() -> None:
    # ARC's legacy CRDs have no free-form fields, and nothing in the embedded types needs one.
    for kind in KINDS:
        assert [
            p for p, s in _walk(openapi_schema(kind)) if s.get("x-kubernetes-preserve-unknown-fields")
        ] == []


# --- the builder on synthetic OpenAPI documents ----------------------------------------------


def _doc(**schemas: Any) -> dict[str, Any]:
    return {"components": {"schemas": schemas}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def test_refs_are_inlined_and_descriptions_dropped() -> None:
    k8s = K8sSchemas(
        [
            _doc(
                A={
                    "type": "object",
                    "description": "an A",
                    "properties": {"b": {"allOf": [_ref("B")], "default": {}}},
                },
                B={
                    "type": "object",
                    "properties": {"n": {"type": "integer", "format": "int32"}},
                    "x-kubernetes-map-type": "atomic",
                },
            )
        ]
    )
    assert k8s.resolve("A") == {
        "type": "object",
        "properties": {
            "b": {
                "type": "object",
                "properties": {"n": {"type": "integer", "format": "int32"}},
                "x-kubernetes-map-type": "atomic",
            }
        },
    }


def test_defaults_kept_only_where_they_matter() -> None:
    k8s = K8sSchemas(
        [
            _doc(
                Port={
                    "type": "object",
                    "required": ["port"],
                    "properties": {
                        "port": {"type": "integer", "default": 0},
                        "protocol": {"type": "string", "default": "TCP"},
                        "name": {"type": "string", "default": ""},
                    },
                },
                Ref={"type": "object", "properties": {"name": {"type": "string", "default": ""}}},
                Pod={
                    "type": "object",
                    "properties": {
                        "ports": {
                            "type": "array",
                            "items": _ref("Port"),
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["port", "protocol"],
                        },
                        "secrets": {
                            "type": "array",
                            "items": {"allOf": [_ref("Ref")], "default": {}},
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                        },
                        "ref": _ref("Ref"),
                    },
                },
            )
        ]
    )
    pod = k8s.resolve("Pod")["properties"]
    port = pod["ports"]["items"]["properties"]
    assert "default" not in port["port"]  # required: a default would disable the check
    assert port["protocol"]["default"] == "TCP"
    assert "default" not in port["name"]  # zero value: same as absent
    assert pod["secrets"]["items"]["properties"]["name"]["default"] == ""  # list-map key needs one
    assert "default" not in pod["ref"]["properties"]["name"]
    assert structural_problems(k8s.resolve("Pod")) == []


def test_cycles_become_free_form() -> None:
    k8s = K8sSchemas(
        [_doc(Props={"type": "object", "properties": {"not": _ref("Props"), "t": {"type": "string"}}})]
    )
    schema = k8s.resolve("Props")
    assert schema["properties"]["not"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert k8s.cycles == ["Props -> Props"]


@pytest.mark.parametrize(
    ("schemas", "message"),
    [
        ({"A": {"type": "object", "properties": {"b": _ref("Missing")}}}, "Missing not found"),
        ({"A": {"type": "object", "not": {}}}, "unexpected OpenAPI keyword 'not'"),
        ({"A": {"allOf": [_ref("B"), _ref("B")]}, "B": {"type": "string"}}, "allOf other than a single"),
        ({"A": {"oneOf": [{"type": "string"}, {"type": "object"}]}}, "oneOf outside"),
        (
            {
                "A": {
                    "type": "array",
                    "items": _ref("B"),
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["k"],
                },
                "B": {"type": "object", "properties": {"k": {"type": "string"}}},
            },
            "neither required nor defaulted",
        ),
    ],
)
def test_builder_refuses_what_it_does_not_understand(schemas: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaBuildError, match=message):
        K8sSchemas([_doc(**schemas)]).resolve("A")


def test_conflicting_documents_are_refused() -> None:
    with pytest.raises(SchemaBuildError, match="differs between documents"):
        K8sSchemas([_doc(A={"type": "string"}), _doc(A={"type": "integer"})])
    # Documents may differ only in the group-versions they list.
    gvk = "x-kubernetes-group-version-kind"
    K8sSchemas([_doc(A={"type": "string", gvk: [1]}), _doc(A={"type": "string", gvk: [2]})])


def test_build_crds_needs_the_kubernetes_definitions() -> None:
    with pytest.raises(SchemaBuildError, match="not found"):
        build_crds([_doc()])


def test_generated_yaml_is_stable() -> None:
    # Sorted keys and a fixed header: regenerating gives byte-identical files.
    for path in CRD_DIR.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        assert crd_to_yaml(crd) == path.read_text()
        assert json.loads(json.dumps(crd)) == crd


def test_load_openapi_names_a_missing_document(tmp_path: Path) -> None:
    gen = gen_crds_module()
    with pytest.raises(gen.OpenAPINotFound, match=r"api__v1_openapi\.json does not exist"):
        gen.load_openapi(tmp_path)


def test_locate_openapi_dir_honours_the_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gen = gen_crds_module()
    monkeypatch.setenv(gen.ENV_DIR, str(tmp_path))
    assert gen.locate_openapi_dir() == tmp_path


def test_gen_crds_check_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = gen_crds_module()
    if shutil.which("go") is None and not gen.os.environ.get(gen.ENV_DIR):
        pytest.skip(f"needs Go (or {gen.ENV_DIR}) to locate the Kubernetes OpenAPI documents")
    (tmp_path / "actions.summerwind.dev_leftover.yaml").write_text("{}")
    scale_sets = ["--scale-set-out", str(gen.SCALE_SET_CRD_DIR)]  # the committed ones: up to date
    assert gen.main(["--check", "--out", str(tmp_path), *scale_sets]) == 1
    assert "run .venv/bin/python hack/gen_crds.py" in capsys.readouterr().err
    assert gen.main(["--out", str(tmp_path), *scale_sets]) == 0
    assert not (tmp_path / "actions.summerwind.dev_leftover.yaml").exists()
    assert gen.main(["--check", "--out", str(tmp_path), *scale_sets]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in CRD_DIR.glob("*.yaml"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "io.k8s.apimachinery.pkg.runtime.RawExtension",
            {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        ),
        ("io.k8s.apimachinery.pkg.apis.meta.v1.Time", {"type": "string", "format": "date-time"}),
        ("io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime", {"type": "string", "format": "date-time"}),
        (
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
            {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True},
        ),
    ],
)
def test_special_kubernetes_types(name: str, expected: dict[str, Any]) -> None:
    # Their OpenAPI (oneOf, format int-or-string, ...) is not structural; each has a CRD form.
    k8s = K8sSchemas([_doc(A={"type": "object", "properties": {"x": _ref(name)}})])
    assert k8s.resolve("A")["properties"]["x"] == expected
