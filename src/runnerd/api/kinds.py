"""Every kind of the API group, in CRD generation order, and the lookup by ``kind``."""

from __future__ import annotations

from runnerd.api.deployment import RunnerDeployment, RunnerReplicaSet
from runnerd.api.hra import HorizontalRunnerAutoscaler
from runnerd.api.meta import CustomResource
from runnerd.api.runner import Runner
from runnerd.api.runnerset import RunnerSet

RESOURCES: tuple[type[CustomResource], ...] = (
    Runner,
    RunnerReplicaSet,
    RunnerDeployment,
    RunnerSet,
    HorizontalRunnerAutoscaler,
)
"""Every kind of the API group, in CRD generation order."""

RESOURCE_BY_KIND: dict[str, type[CustomResource]] = {r.KIND: r for r in RESOURCES}
