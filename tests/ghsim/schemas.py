"""Validators built from the pinned descriptions: OpenAPI responses and webhook payloads.

OpenAPI 3.0 quirk: GitHub marks many enums ``nullable`` without listing ``null`` among the values
(``job.conclusion`` is null while a job runs).  OAS 3.0.3 reads that strictly; GitHub's intent (and its
API) is "null or one of these", so the loader adds ``None`` to such enums.

Rule for response codes: a response is checked against the schema the operation declares for that
code.  GitHub's descriptions do not list every error code of every operation (401, 403 and 404 are
often missing); an error the operation does not declare must be GitHub's ``basic-error``.  A success
code the operation does not declare is a failure.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
from openapi_schema_validator import OAS30Validator, oas30_format_checker

from .npm import npm_dir

NO_BODY = object()


class OpenAPIDoc:
    def __init__(self, path: Path) -> None:
        self.name = path.name
        self.doc: dict[str, Any] = json.loads(path.read_text())
        _nullable_enums(self.doc)
        self.ops: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for p, item in self.doc["paths"].items():
            for method, op in item.items():
                if isinstance(op, dict) and "operationId" in op:
                    self.ops[op["operationId"]] = (method.upper(), p, op)
        self._validators: dict[tuple[str, int], Any] = {}

    def has(self, operation_id: str) -> bool:
        return operation_id in self.ops

    def _response(self, operation_id: str, status: int) -> dict[str, Any] | None:
        _, _, op = self.ops[operation_id]
        resp = op["responses"].get(str(status))
        if resp is None:
            return None
        while "$ref" in resp:
            resp = self.doc["components"]["responses"][resp["$ref"].rsplit("/", 1)[-1]]
        return resp

    def declares(self, operation_id: str, status: int) -> bool:
        return self._response(operation_id, status) is not None

    def schema_for(self, operation_id: str, status: int) -> Any:
        resp = self._response(operation_id, status)
        if resp is None:
            if status >= 400:
                return {"$ref": "#/components/schemas/basic-error"}
            raise AssertionError(f"{self.name}: {operation_id} does not declare status {status}")
        content = resp.get("content", {}).get("application/json")
        if content is None:
            return NO_BODY
        return content["schema"]

    def validate(self, operation_id: str, status: int, body: Any) -> None:
        if status == 304:
            # conditional GETs: GitHub answers any of them with an empty 304
            method = self.ops[operation_id][0]
            assert method == "GET", f"{operation_id}: 304 for a {method}"
            assert body in (None, b"", ""), f"{operation_id}: a 304 has no body"
            return
        key = (operation_id, status)
        validator = self._validators.get(key)
        if validator is None:
            schema = self.schema_for(operation_id, status)
            if schema is NO_BODY:
                validator = NO_BODY
            else:
                wrapper = {**schema, "components": self.doc["components"]}
                validator = OAS30Validator(wrapper, format_checker=oas30_format_checker)
            self._validators[key] = validator
        if validator is NO_BODY:
            assert body in (None, b"", ""), f"{operation_id} {status} must have no body, got {body!r:.200}"
            return
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            detail = "; ".join(f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors[:5])
            raise AssertionError(f"{self.name}: {operation_id} {status} response does not validate: {detail}")


def _nullable_enums(node: Any) -> None:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if (
                item.get("nullable") is True
                and isinstance(item.get("enum"), list)
                and None not in item["enum"]
            ):
                item["enum"] = [*item["enum"], None]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _openapi_dir() -> Path:
    return npm_dir() / "@octokit" / "openapi" / "generated"


@functools.cache
def dotcom() -> OpenAPIDoc:
    return OpenAPIDoc(_openapi_dir() / "api.github.com.json")


@functools.cache
def ghec() -> OpenAPIDoc:
    """GitHub Enterprise Cloud: api.github.com plus the enterprise operations."""
    return OpenAPIDoc(_openapi_dir() / "ghec.json")


@functools.cache
def ghes() -> OpenAPIDoc:
    return OpenAPIDoc(_openapi_dir() / "ghes-3.19.json")


def doc_for(operation_id: str, *, ghes_flavor: bool) -> OpenAPIDoc:
    if ghes_flavor:
        return ghes()
    return dotcom() if dotcom().has(operation_id) else ghec()


# ---- webhooks -------------------------------------------------------------------------------


@functools.cache
def webhook_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (npm_dir() / "@octokit" / "webhooks-schemas" / "schema.json").read_text()
    )
    return schema


@functools.cache
def _webhook_validator(definition: str) -> Any:
    schema = webhook_schema()
    root = {"$ref": f"#/definitions/{definition}", "definitions": schema["definitions"]}
    return jsonschema.Draft7Validator(root, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def validate_workflow_job_payload(payload: dict[str, Any]) -> None:
    """Validate against ``workflow_job$<action>``.

    GitHub adds ``enterprise`` to deliveries of enterprise hooks, a property the pinned schema
    lacks; it is checked separately, against the OpenAPI ``enterprise`` schema.
    """
    payload = copy.deepcopy(payload)
    enterprise = payload.pop("enterprise", None)
    validator = _webhook_validator(f"workflow_job${payload.get('action')}")
    errors = sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path))
    if errors:
        detail = "; ".join(f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors[:5])
        raise AssertionError(f"workflow_job payload does not validate: {detail}")
    if enterprise is not None:
        doc = dotcom()
        wrapper = {"$ref": "#/components/schemas/enterprise", "components": doc.doc["components"]}
        OAS30Validator(wrapper, format_checker=oas30_format_checker).validate(enterprise)


def webhook_examples() -> list[dict[str, Any]]:
    """Every ``workflow_job`` example of ``@octokit/webhooks-examples`` (all GitHub flavours)."""
    root = npm_dir() / "@octokit" / "webhooks-examples"
    out: list[dict[str, Any]] = []
    for index in sorted(root.glob("*/index.json")):
        for event in json.loads(index.read_text()):
            if event["name"] == "workflow_job":
                out.extend(event["examples"])
    return out
