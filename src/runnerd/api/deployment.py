"""The RunnerDeployment and RunnerReplicaSet kinds (a Runner template and a replica count).

Conventions: :mod:`runnerd.api.meta`.
"""

# RUF009: ``field()`` below is this package's dataclass field specifier (it wraps
# ``dataclasses.field``), not a call evaluated once as a shared default.
# ruff: noqa: RUF009

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import ClassVar

from runnerd.api import constants as c
from runnerd.api._codec import (
    JSON,
    ApiObject,
    field,
)
from runnerd.api.meta import (
    AGE,
    LABEL_SELECTOR,
    REPLICA_COLUMNS,
    CustomResource,
    EmbeddedObjectMeta,
    PrinterColumn,
    scope_columns,
)
from runnerd.api.runner import RunnerSpec

# --- replica sets and deployments ------------------------------------------------------------


@dataclass(kw_only=True)
class RunnerTemplate(ApiObject):
    metadata: EmbeddedObjectMeta = field("metadata", factory=EmbeddedObjectMeta)
    spec: RunnerSpec = field("spec", required=True, factory=RunnerSpec)


@dataclass(kw_only=True)
class RunnerReplicaSetSpec(ApiObject):
    replicas: int | None = field("replicas", "Number of runners (default 1).", nullable=True, minimum=0)
    effective_time: dt.datetime | None = field(
        "effectiveTime",
        "When the autoscaler last asked for the current replicas; keeps just-finished ephemeral runners "
        "from being recreated before the scale-down arrives.",
        nullable=True,
    )
    selector: JSON | None = field("selector", k8s=LABEL_SELECTOR, nullable=True)
    template: RunnerTemplate = field("template", required=True, factory=RunnerTemplate)

    @property
    def effective_replicas(self) -> int:
        return c.DEFAULT_REPLICAS if self.replicas is None else self.replicas


@dataclass(kw_only=True)
class RunnerDeploymentSpec(RunnerReplicaSetSpec):
    pass


@dataclass(kw_only=True)
class RunnerReplicaSetStatus(ApiObject):
    replicas: int | None = field("replicas", "Runners created and managed by this replica set.")
    ready_replicas: int | None = field("readyReplicas", "Runners whose pods are running and ready.")
    available_replicas: int | None = field("availableReplicas", "Same as readyReplicas (kept for ARC).")
    busy_replicas: int | None = field("busyReplicas", "Runners running a job (runnerd extension).")
    selector: str | None = field(
        "selector", "Label selector of the runner pods, as a string (scale subresource)."
    )


@dataclass(kw_only=True)
class RunnerDeploymentStatus(ApiObject):
    available_replicas: int | None = field("availableReplicas", "Runners registered to GitHub and running.")
    ready_replicas: int | None = field("readyReplicas", "Runners whose pods are running and ready.")
    updated_replicas: int | None = field(
        "updatedReplicas", "Runners of the replica set with the current template."
    )
    desired_replicas: int | None = field("desiredReplicas", "Replicas wanted for the current replica set.")
    replicas: int | None = field("replicas", "All runners of all replica sets.")
    busy_replicas: int | None = field("busyReplicas", "Runners running a job (runnerd extension).")
    selector: str | None = field(
        "selector", "Label selector of the runner pods, as a string (scale subresource)."
    )


@dataclass(kw_only=True)
class RunnerReplicaSet(CustomResource):
    KIND: ClassVar[str] = "RunnerReplicaSet"
    PLURAL: ClassVar[str] = "runnerreplicasets"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("rrs",)
    SCALE: ClassVar[bool] = True
    DESCRIPTION: ClassVar[str] = "A set of identical Runners (owned by a RunnerDeployment)."
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (*REPLICA_COLUMNS, AGE)

    spec: RunnerReplicaSetSpec = field("spec", required=True, factory=RunnerReplicaSetSpec)
    status: RunnerReplicaSetStatus = field("status", factory=RunnerReplicaSetStatus)


@dataclass(kw_only=True)
class RunnerDeployment(CustomResource):
    KIND: ClassVar[str] = "RunnerDeployment"
    PLURAL: ClassVar[str] = "runnerdeployments"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("rdeploy",)
    SCALE: ClassVar[bool] = True
    DESCRIPTION: ClassVar[str] = "Runners from a template, rolled out through RunnerReplicaSets."
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        *REPLICA_COLUMNS,
        PrinterColumn("Up-To-Date", ".status.updatedReplicas", "integer", priority=1),
        PrinterColumn("Available", ".status.availableReplicas", "integer", priority=1),
        *scope_columns(".spec.template.spec", 1),
        AGE,
    )

    spec: RunnerDeploymentSpec = field("spec", required=True, factory=RunnerDeploymentSpec)
    status: RunnerDeploymentStatus = field("status", factory=RunnerDeploymentStatus)
