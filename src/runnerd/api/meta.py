"""Metadata, the embedded types every kind shares, and the base of the top-level resources.

Every field is declared once (JSON name, schema facts); parsing, serialisation and the CRD schema
all come from these declarations (see :mod:`runnerd.api._codec`). Fields are the raw values:
``None`` means "absent", so ``to_dict(from_dict(x)) == x``. ARC's defaults are exposed as
``effective_*`` properties and never written back. The kinds live in :mod:`runnerd.api.runner`,
:mod:`runnerd.api.deployment`, :mod:`runnerd.api.runnerset` and :mod:`runnerd.api.hra`.
"""

# RUF009: ``field()`` below is this package's dataclass field specifier (it wraps
# ``dataclasses.field``), not a call evaluated once as a shared default.
# ruff: noqa: RUF009

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from runnerd.api import constants as c
from runnerd.api._codec import (
    JSON,
    ApiObject,
    ApiParseError,
    field,
)

K8S_CORE = "io.k8s.api.core.v1."
K8S_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
LABEL_SELECTOR = K8S_META + "LabelSelector"
OBJECT_META = K8S_META + "ObjectMeta"


# --- metadata --------------------------------------------------------------------------------


@dataclass(kw_only=True)
class ObjectMeta(ApiObject):
    """Metadata of a top-level object; keys not modelled here (managedFields, ...) are kept in ``extra``."""

    name: str | None = field("name")
    generate_name: str | None = field("generateName")
    namespace: str | None = field("namespace")
    uid: str | None = field("uid")
    resource_version: str | None = field("resourceVersion")
    generation: int | None = field("generation")
    creation_timestamp: dt.datetime | None = field("creationTimestamp")
    deletion_timestamp: dt.datetime | None = field("deletionTimestamp")
    deletion_grace_period_seconds: int | None = field("deletionGracePeriodSeconds")
    labels: dict[str, str] = field("labels", factory=dict)
    annotations: dict[str, str] = field("annotations", factory=dict)
    finalizers: list[str] = field("finalizers", factory=list)
    owner_references: list[JSON] = field("ownerReferences", factory=list)
    extra: JSON = field("", inline=True, factory=dict)


@dataclass(kw_only=True)
class EmbeddedObjectMeta(ApiObject):
    """Metadata of an embedded template (what ARC's CRDs accept there)."""

    name: str | None = field("name")
    namespace: str | None = field("namespace")
    labels: dict[str, str] = field("labels", factory=dict)
    annotations: dict[str, str] = field("annotations", factory=dict)
    finalizers: list[str] = field("finalizers", factory=list)


# --- shared embedded types -------------------------------------------------------------------


@dataclass(kw_only=True)
class SecretReference(ApiObject):
    name: str | None = field("name", "Name of a Secret in the same namespace.", required=True)


@dataclass(kw_only=True)
class GitHubAPICredentialsFrom(ApiObject):
    secret_ref: SecretReference = field(
        "secretRef",
        "Secret with per-resource GitHub credentials (github_token, or github_app_id, "
        "github_app_installation_id and github_app_private_key).",
        factory=SecretReference,
    )


@dataclass(kw_only=True)
class WorkVolumeClaimTemplate(ApiObject):
    """The ephemeral PVC used as the runner's work directory (needed by containerMode: kubernetes)."""

    storage_class_name: str | None = field("storageClassName", required=True)
    access_modes: list[str] = field(
        "accessModes", "ReadWriteOnce or ReadWriteMany.", required=True, max_items=4, factory=list
    )
    resources: JSON = field(
        "resources", k8s=K8S_CORE + "VolumeResourceRequirements", required=True, factory=dict
    )


# --- top-level resources ---------------------------------------------------------------------


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    description: str = ""
    priority: int = 0

    def to_schema(self) -> JSON:
        out: JSON = {"name": self.name, "jsonPath": self.json_path, "type": self.type}
        if self.description:
            out["description"] = self.description
        if self.priority:
            out["priority"] = self.priority
        return out


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


@dataclass(kw_only=True)
class CustomResource(ApiObject):
    """A top-level object: ``apiVersion``/``kind`` are implied by the class."""

    API_VERSION: ClassVar[str] = c.API_VERSION
    KIND: ClassVar[str]
    PLURAL: ClassVar[str]
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ()
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = ()
    SCALE: ClassVar[bool] = False

    metadata: ObjectMeta = field("metadata", factory=ObjectMeta)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, path: str = "") -> typing.Self:
        if isinstance(data, Mapping):
            api_version, kind = data.get("apiVersion"), data.get("kind")
            if api_version is not None and api_version != cls.API_VERSION:
                raise ApiParseError(f"{path}.apiVersion", f"expected {cls.API_VERSION}, got {api_version!r}")
            if kind is not None and kind != cls.KIND:
                raise ApiParseError(f"{path}.kind", f"expected {cls.KIND}, got {kind!r}")
            data = {k: v for k, v in data.items() if k not in ("apiVersion", "kind")}
        return super().from_dict(data, path)

    def to_dict(self) -> JSON:
        return {"apiVersion": self.API_VERSION, "kind": self.KIND, **super().to_dict()}

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or ""


R = TypeVar("R", bound=CustomResource)


def parse_kind(obj: Mapping[str, Any], kinds: Mapping[str, type[R]], api_version: str) -> R:
    """Parse a raw object into the class its ``kind`` names in ``kinds`` (the kinds of ``api_version``)."""
    kind = obj.get("kind")
    cls = kinds.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ApiParseError(".kind", f"not a kind of {api_version}: {kind!r}")
    return cls.from_dict(obj)


def scope_columns(prefix: str, priority: int) -> tuple[PrinterColumn, ...]:
    # A union path prints whichever of the three is set (exactly one is, by the CEL rules).
    return (
        PrinterColumn(
            "Scope",
            f"{prefix}['enterprise','organization','repository']",
            "string",
            "The enterprise, organization or repository (owner/name) runners register in.",
            priority=priority,
        ),
        PrinterColumn("Group", f"{prefix}.group", "string", priority=1),
        PrinterColumn("Labels", f"{prefix}.labels", "string", priority=priority),
    )


REPLICA_COLUMNS = (
    PrinterColumn("Desired", ".spec.replicas", "integer"),
    PrinterColumn("Current", ".status.replicas", "integer"),
    PrinterColumn("Ready", ".status.readyReplicas", "integer"),
    PrinterColumn("Busy", ".status.busyReplicas", "integer", "Runners running a job."),
)
