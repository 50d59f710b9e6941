#!/usr/bin/env python3
"""Generate JSON schemas for kubeconform, offline: every Kubernetes 1.36 kind, runnerd's CRDs, and
minimal prometheus-operator ServiceMonitor and PrometheusRule schemas.

    .venv/bin/python hack/gen_kube_schemas.py      # print the schema directory (built when missing)

kubeconform downloads its schemas from the internet by default; here they are built from what is
already on this machine and cached under ``~/.cache/runnerd/kube-schemas/<key>/`` (the key hashes the
inputs, so a warm cache is reused and a changed CRD gives a fresh directory):

* Kubernetes: ``api/openapi-spec/swagger.json`` of the pinned Go module ``k8s.io/kubernetes`` (the one
  hack/gen_crds.py locates; it is in the Go module cache once the control plane was built);
* runnerd's CRDs: ``openAPIV3Schema`` of each version in charts/actions-runner-controller/crds/ and
  charts/gha-runner-scale-set-controller/crds/;
* ServiceMonitor and PrometheusRule: written here from the shape of prometheus-operator's
  ``monitoring.coreos.com/v1`` CRDs, only the fields the chart uses are typed; the rest of a
  ServiceMonitor endpoint is accepted as is. They are not prometheus-operator's full schemas.

Files are named as kubeconform's ``{{ .ResourceKind }}{{ .KindSuffix }}.json`` template expects
(``deployment-apps-v1.json``, ``service-v1.json``, ``runnerdeployment-actions-v1alpha1.json``) and
are strict: an object with declared properties rejects any other (as ``kubeconform -strict``
against the "-strict" upstream schemas). ``$ref``s stay local: each file carries the definitions
it reaches.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from gen_crds import locate_openapi_dir

REPO = Path(__file__).resolve().parent.parent
CRD_DIR = REPO / "charts" / "actions-runner-controller" / "crds"
SCALE_SET_CRD_DIR = REPO / "charts" / "gha-runner-scale-set-controller" / "crds"
GENERATOR_VERSION = "1"
INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
QUANTITY = {"oneOf": [{"type": "string"}, {"type": "number"}]}
SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": INT_OR_STRING,
    "io.k8s.apimachinery.pkg.api.resource.Quantity": QUANTITY,
}
REF = re.compile(r"#/definitions/(.+)$")

JSON = dict[str, Any]


def file_name(group: str, version: str, kind: str) -> str:
    """kubeconform's ``{{ .ResourceKind }}{{ .KindSuffix }}.json`` for a group/version/kind."""
    suffix = f"-{group.split('.')[0].lower()}-{version.lower()}" if group else f"-{version.lower()}"
    return f"{kind.lower()}{suffix}.json"


SCHEMA_MAPS = ("properties", "patternProperties", "definitions")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
SCHEMA_VALUES = ("items", "additionalProperties", "not")


def strict(schema: Any, *, crd: bool = False) -> Any:
    """A copy with closed objects, int-or-string and nullable spelled out, descriptions dropped."""
    if not isinstance(schema, dict):
        return schema
    out: JSON = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key in SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: strict(sub, crd=crd) for name, sub in value.items()}
        elif key in SCHEMA_LISTS and isinstance(value, list):
            out[key] = [strict(sub, crd=crd) for sub in value]
        elif key in SCHEMA_VALUES:
            out[key] = strict(value, crd=crd)
        else:
            out[key] = value
    if crd and out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out.update(INT_OR_STRING)
    open_ = out.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in out
    if "properties" in out and not open_:
        out["additionalProperties"] = False
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def reachable(definitions: Mapping[str, Any], root: str) -> list[str]:
    seen: list[str] = []
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen or name in SPECIAL:
            continue
        seen.append(name)
        todo += [m.group(1) for m in map(REF.search, _refs(definitions[name])) if m]
    return seen


def _refs(schema: Any) -> Iterable[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _refs(item)


def _inline_special(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_inline_special(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and (m := REF.search(ref)) and m.group(1) in SPECIAL:
        return dict(SPECIAL[m.group(1)])
    return {k: _inline_special(v) for k, v in schema.items()}


def kubernetes_schemas(swagger: Mapping[str, Any]) -> dict[str, JSON]:
    """File name -> schema for every kind in a Kubernetes swagger (OpenAPI v2) document."""
    definitions = swagger["definitions"]
    out: dict[str, JSON] = {}
    for name, schema in definitions.items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or ():
            defs = {d: strict(_inline_special(definitions[d])) for d in reachable(definitions, name)}
            root = defs.pop(name)
            out[file_name(gvk["group"], gvk["version"], gvk["kind"])] = {**root, "definitions": defs}
    return out


def crd_schemas(crds: Iterable[Mapping[str, Any]]) -> dict[str, JSON]:
    """File name -> schema for every served version of each CRD."""
    out: dict[str, JSON] = {}
    for crd in crds:
        spec = crd["spec"]
        for version in spec["versions"]:
            schema = strict((version.get("schema") or {}).get("openAPIV3Schema") or {}, crd=True)
            out[file_name(spec["group"], version["name"], spec["names"]["kind"])] = schema
    return out


def _obj(properties: Mapping[str, Any], required: Iterable[str] = (), *, closed: bool = True) -> JSON:
    schema: JSON = {"type": "object", "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


def _meta_object(kind: str, spec: JSON) -> JSON:
    return _obj(
        {
            "apiVersion": {"enum": ["monitoring.coreos.com/v1"]},
            "kind": {"enum": [kind]},
            "metadata": {"type": "object"},
            "spec": spec,
        },
        ["apiVersion", "kind", "metadata", "spec"],
    )


STRING = {"type": "string"}
STRING_MAP = {"type": "object", "additionalProperties": STRING}


def monitoring_schemas() -> dict[str, JSON]:
    """Minimal ServiceMonitor and PrometheusRule schemas (prometheus-operator's v1 shape)."""
    rule = _obj(
        {
            "record": STRING,
            "alert": STRING,
            "expr": INT_OR_STRING,
            "for": STRING,
            "keep_firing_for": STRING,
            "labels": STRING_MAP,
            "annotations": STRING_MAP,
        },
        ["expr"],
    )
    rule["oneOf"] = [{"required": ["record"]}, {"required": ["alert"]}]
    group = _obj(
        {
            "name": {"type": "string", "minLength": 1},
            "interval": STRING,
            "query_offset": STRING,
            "limit": {"type": "integer"},
            "partial_response_strategy": STRING,
            "labels": STRING_MAP,
            "rules": {"type": "array", "items": rule},
        },
        ["name"],
    )
    endpoint = _obj(
        {
            "port": STRING,
            "targetPort": INT_OR_STRING,
            "path": STRING,
            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
            "interval": STRING,
            "scrapeTimeout": STRING,
            "honorLabels": {"type": "boolean"},
        },
        closed=False,
    )
    monitor = _obj(
        {
            "endpoints": {"type": "array", "items": endpoint},
            "selector": {"type": "object"},
            "namespaceSelector": _obj(
                {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": STRING}}
            ),
            "jobLabel": STRING,
        },
        ["selector"],
        closed=False,
    )
    return {
        file_name("monitoring.coreos.com", "v1", "PrometheusRule"): _meta_object(
            "PrometheusRule", _obj({"groups": {"type": "array", "items": group}})
        ),
        file_name("monitoring.coreos.com", "v1", "ServiceMonitor"): _meta_object("ServiceMonitor", monitor),
    }


def _write(directory: Path, schemas: Mapping[str, JSON]) -> Path:
    partial = directory.with_name(directory.name + f".partial-{os.getpid()}")
    partial.mkdir(parents=True, exist_ok=True)
    try:
        for name, schema in schemas.items():
            (partial / name).write_text(json.dumps(schema, separators=(",", ":")))
        partial.rename(directory)  # all or nothing: no half-filled cache directory
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return directory


def ensure(cache: Path | None = None) -> Path:
    """The schema directory for this repository's CRDs (built when missing)."""
    cache = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "runnerd"
    swagger_path = locate_openapi_dir().parent / "swagger.json"
    crd_texts = [p.read_text() for p in sorted([*CRD_DIR.glob("*.yaml"), *SCALE_SET_CRD_DIR.glob("*.yaml")])]
    digest = hashlib.sha256()
    for part in (GENERATOR_VERSION, Path(__file__).read_text(), str(swagger_path), *crd_texts):
        digest.update(part.encode())
    directory = cache / "kube-schemas" / digest.hexdigest()[:16]
    if directory.is_dir():
        return directory
    schemas = kubernetes_schemas(json.loads(swagger_path.read_text()))
    schemas |= crd_schemas(doc for text in crd_texts for doc in yaml.safe_load_all(text) if doc)
    schemas |= monitoring_schemas()
    try:
        return _write(directory, schemas)
    except OSError:
        if directory.is_dir():  # another process won the race
            return directory
        raise


def main() -> int:
    print(ensure())
    return 0


if __name__ == "__main__":
    sys.exit(main())
