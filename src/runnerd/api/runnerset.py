"""The RunnerSet kind: RunnerConfig plus a full StatefulSetSpec, one StatefulSet per runner.

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
    ApiParseError,
    Rule,
    field,
)
from runnerd.api.meta import (
    AGE,
    REPLICA_COLUMNS,
    CustomResource,
    PrinterColumn,
    WorkVolumeClaimTemplate,
    scope_columns,
)
from runnerd.api.runner import RUNNER_CONFIG_RULES, RunnerConfig

# --- RunnerSet -------------------------------------------------------------------------------


@dataclass(kw_only=True)
class RunnerSetSpec(RunnerConfig):
    """RunnerConfig plus a full StatefulSetSpec (kept as JSON in ``stateful_set``)."""

    RULES: ClassVar[tuple[Rule, ...]] = RUNNER_CONFIG_RULES

    effective_time: dt.datetime | None = field("effectiveTime", nullable=True)
    service_account_name: str | None = field("serviceAccountName")
    work_volume_claim_template: WorkVolumeClaimTemplate | None = field("workVolumeClaimTemplate")
    stateful_set: JSON = field("", k8s="io.k8s.api.apps.v1.StatefulSetSpec", inline=True, factory=dict)

    @property
    def replicas(self) -> int | None:
        value = self.stateful_set.get("replicas")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ApiParseError(".replicas", f"expected an integer, got {type(value).__name__}")
        return value

    @replicas.setter
    def replicas(self, value: int | None) -> None:
        if value is None:
            self.stateful_set.pop("replicas", None)
        else:
            self.stateful_set["replicas"] = value

    @property
    def effective_replicas(self) -> int:
        replicas = self.replicas
        return c.DEFAULT_REPLICAS if replicas is None else replicas

    @property
    def selector(self) -> JSON | None:
        value = self.stateful_set.get("selector")
        return value if isinstance(value, dict) else None

    @property
    def template(self) -> JSON:
        """The pod template (``spec.template``); an empty dict when absent."""
        value = self.stateful_set.get("template")
        return value if isinstance(value, dict) else {}

    @property
    def volume_claim_templates(self) -> list[JSON]:
        value = self.stateful_set.get("volumeClaimTemplates")
        return value if isinstance(value, list) else []


@dataclass(kw_only=True)
class RunnerSetStatus(ApiObject):
    available_replicas: int | None = field("availableReplicas", "Runners registered to GitHub and running.")
    ready_replicas: int | None = field("readyReplicas", "Runners whose pods are running and ready.")
    updated_replicas: int | None = field("updatedReplicas", "Runners with the current template.")
    desired_replicas: int | None = field("desiredReplicas", "Replicas wanted with the current template.")
    replicas: int | None = field("replicas", "All runners of this RunnerSet.")
    busy_replicas: int | None = field("busyReplicas", "Runners running a job (runnerd extension).")
    selector: str | None = field(
        "selector", "Label selector of the runner pods, as a string (scale subresource)."
    )


@dataclass(kw_only=True)
class RunnerSet(CustomResource):
    KIND: ClassVar[str] = "RunnerSet"
    PLURAL: ClassVar[str] = "runnersets"
    SCALE: ClassVar[bool] = True
    DESCRIPTION: ClassVar[str] = "Runners as StatefulSets (one per runner) from a full pod template."
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        *REPLICA_COLUMNS,
        PrinterColumn("Up-To-Date", ".status.updatedReplicas", "integer", priority=1),
        PrinterColumn("Available", ".status.availableReplicas", "integer", priority=1),
        *scope_columns(".spec", 1),
        AGE,
    )

    spec: RunnerSetSpec = field("spec", required=True, factory=RunnerSetSpec)
    status: RunnerSetStatus = field("status", factory=RunnerSetStatus)
