"""The manifest fixtures (``manifests/good``, ``manifests/bad``) and a local stand-in for the API
server's validation of them: the committed CRDs' ``openAPIV3Schema`` checked with ``jsonschema``
(made strict the way the server is: unknown fields rejected, nulls pruned, list-map keys unique),
plus the CEL rules evaluated in Python (:func:`runnerd.api.validate`). The real server runs the
same fixtures in ``tests/integration/test_crds.py``.

A bad fixture starts with ``# expect-error: <substring of the API server's error>`` and, where the
local wording differs, ``# expect-local: <substring of the local error>``.
"""

from __future__ import annotations

import copy
import importlib.util
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from runnerd.api import sizing, validate
from runnerd.api.scaleset import API_VERSION as SCALE_SET_API_VERSION
from runnerd.api.scaleset import validate as validate_scale_set
from runnerd.api.validation import rule_violations

REPO = Path(__file__).resolve().parents[3]
CRD_DIR = REPO / "charts" / "actions-runner-controller" / "crds"
SCALE_SET_CRD_DIR = REPO / "charts" / "gha-runner-scale-set-controller" / "crds"
MANIFESTS = Path(__file__).resolve().parent / "manifests"


def gen_crds_module() -> ModuleType:
    """``hack/gen_crds.py`` (a script, not a package) loaded as a module."""
    spec = importlib.util.spec_from_file_location("gen_crds", REPO / "hack" / "gen_crds.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stale_committed_crds(render: Callable[[Any], dict[str, str]], directory: Path) -> list[str]:
    """The CRD files of ``directory`` that differ from (or are missing in) what ``render(gen_crds)``
    writes; skips the test where the Kubernetes OpenAPI documents cannot be located (no Go)."""
    gen = gen_crds_module()
    if shutil.which("go") is None and not gen.os.environ.get(gen.ENV_DIR):
        pytest.skip(f"needs Go (or {gen.ENV_DIR}) to locate the Kubernetes OpenAPI documents")
    try:
        expected = render(gen)
    except gen.OpenAPINotFound as e:
        pytest.fail(f"cannot load the Kubernetes OpenAPI documents: {e}")
    committed = {p.name: p.read_text() for p in directory.glob("*.yaml")}
    return sorted(n for n in expected.keys() | committed.keys() if expected.get(n) != committed.get(n))


@dataclass(frozen=True)
class Manifest:
    path: Path
    obj: dict[str, Any]
    expect_error: str | None
    expect_local: str | None

    @property
    def id(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"

    def text_in_namespace(self, namespace: str) -> str:
        """The manifest as YAML with its namespace replaced (the article uses actions-runner-system)."""
        obj = copy.deepcopy(self.obj)
        obj.setdefault("metadata", {})["namespace"] = namespace
        return yaml.safe_dump(obj, sort_keys=False)


def _load(path: Path) -> Manifest:
    text = path.read_text()
    headers = dict(
        line[2:].split(": ", 1) for line in text.splitlines() if line.startswith("# expect-") and ": " in line
    )
    obj = yaml.safe_load(text)
    assert isinstance(obj, dict), f"{path}: not a single YAML object"
    return Manifest(
        path, obj, headers.get("expect-error"), headers.get("expect-local") or headers.get("expect-error")
    )


def manifests(kind: str) -> list[Manifest]:
    """``kind`` is ``good`` or ``bad`` (legacy kinds), ``scaleset-good``/``scaleset-bad`` or
    ``sizing-good``/``sizing-bad`` (runnerd.dev)."""
    return [_load(p) for p in sorted((MANIFESTS / kind).glob("*.yaml"))]


@cache
def committed_crds() -> dict[str, dict[str, Any]]:
    """Kind -> CRD, from the committed YAML of both charts (the two groups share no kind name)."""
    out = {}
    for path in sorted([*CRD_DIR.glob("*.yaml"), *SCALE_SET_CRD_DIR.glob("*.yaml")]):
        crd = yaml.safe_load(path.read_text())
        out[crd["spec"]["names"]["kind"]] = crd
    return out


def openapi_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = committed_crds()[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def strict_jsonschema(schema: Mapping[str, Any], *, root: bool = True) -> dict[str, Any]:
    """A JSON Schema validating like the API server: objects reject unknown fields (strict field
    validation), ``nullable`` admits null; ``metadata`` at the root is the server's business."""
    out = dict(schema)
    if schema.get("nullable") and "type" in schema:
        out["type"] = [schema["type"], "null"]
    if "properties" in schema:
        out["properties"] = {
            name: ({"type": "object"} if root and name == "metadata" else strict_jsonschema(sub, root=False))
            for name, sub in schema["properties"].items()
        }
    if isinstance(schema.get("items"), Mapping):
        out["items"] = strict_jsonschema(schema["items"], root=False)
    if isinstance(schema.get("additionalProperties"), Mapping):
        out["additionalProperties"] = strict_jsonschema(schema["additionalProperties"], root=False)
    if (
        schema.get("type") == "object"
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def prune_nulls(value: Any, schema: Mapping[str, Any]) -> Any:
    """Drop null fields the schema does not mark nullable (the server does this before validating)."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out = {}
        for k, v in value.items():
            sub = props.get(k) or (extra if isinstance(extra, Mapping) else {})
            if v is None and not sub.get("nullable"):
                continue
            out[k] = prune_nulls(v, sub)
        return out
    if isinstance(value, list):
        items = schema.get("items", {})
        return [prune_nulls(v, items) for v in value]
    return value


def duplicate_map_keys(value: Any, schema: Mapping[str, Any], path: str = "") -> Iterator[str]:
    """``x-kubernetes-list-type: map`` entries whose keys repeat (missing keys take their default),
    and ``set`` items that repeat."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for k, v in value.items():
            if k in props:
                yield from duplicate_map_keys(v, props[k], f"{path}.{k}")
    elif isinstance(value, list):
        items = schema.get("items", {})
        if schema.get("x-kubernetes-list-type") == "set":
            for i, item in enumerate(value):
                if item in value[:i]:
                    yield f"{path}[{i}]: Duplicate value: {item!r}"
        if schema.get("x-kubernetes-list-type") == "map":
            keys = schema.get("x-kubernetes-list-map-keys", [])
            seen = set()
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    continue
                key = tuple(item.get(k, items["properties"][k].get("default")) for k in keys)
                if key in seen:
                    yield f"{path}[{i}]: Duplicate value: {dict(zip(keys, key, strict=True))}"
                seen.add(key)
        for i, item in enumerate(value):
            yield from duplicate_map_keys(item, items, f"{path}[{i}]")


@cache
def _validator(kind: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(strict_jsonschema(openapi_schema(kind)))


def local_errors(obj: Mapping[str, Any]) -> list[str]:
    """What the API server would complain about, approximated locally (empty: accepted)."""
    kind = obj.get("kind")
    if kind not in committed_crds():
        return [f"no CRD for kind {kind!r}"]
    schema = openapi_schema(kind)
    pruned = prune_nulls(obj, schema)
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '.'}: {e.message}"
        for e in _validator(kind).iter_errors(pruned)
    ]
    errors.extend(duplicate_map_keys(pruned, schema))
    if obj.get("apiVersion") == SCALE_SET_API_VERSION:
        errors.extend(validate_scale_set(pruned))
    elif obj.get("apiVersion") == sizing.API_VERSION:
        errors.extend(rule_violations(sizing.RunnerSizingPolicy, pruned))
    else:
        errors.extend(validate(pruned))
    return errors
