"""Pure API layer: ARC legacy-mode types (``actions.summerwind.dev/v1alpha1``) and their CRDs.

No I/O, no asyncio, no Kubernetes client here (an import-linter contract enforces it).
"""

from collections.abc import Mapping
from typing import Any

from runnerd.api._codec import (
    JSON,
    ApiObject,
    ApiParseError,
    Quantity,
    Rule,
    fields_of,
    format_time,
    parse_go_duration,
    parse_quantity,
    parse_time,
)
from runnerd.api.constants import API_VERSION, GROUP, VERSION
from runnerd.api.crds import build_crd, build_crds, crd_file_name, crd_sizes, crd_to_yaml
from runnerd.api.deployment import (
    RunnerDeployment,
    RunnerDeploymentSpec,
    RunnerDeploymentStatus,
    RunnerReplicaSet,
    RunnerReplicaSetSpec,
    RunnerReplicaSetStatus,
    RunnerTemplate,
)
from runnerd.api.hra import (
    CacheEntry,
    CapacityReservation,
    CheckRunSpec,
    GitHubEventScaleUpTriggerSpec,
    HorizontalRunnerAutoscaler,
    HorizontalRunnerAutoscalerSpec,
    HorizontalRunnerAutoscalerStatus,
    MetricSpec,
    PullRequestSpec,
    PushSpec,
    RecurrenceRule,
    ScaleTargetRef,
    ScaleUpTrigger,
    ScheduledOverride,
    WorkflowJobSpec,
)
from runnerd.api.kinds import RESOURCE_BY_KIND, RESOURCES
from runnerd.api.meta import (
    CustomResource,
    EmbeddedObjectMeta,
    GitHubAPICredentialsFrom,
    ObjectMeta,
    PrinterColumn,
    SecretReference,
    WorkVolumeClaimTemplate,
    parse_kind,
)
from runnerd.api.runner import (
    Runner,
    RunnerConfig,
    RunnerPodSpec,
    RunnerScope,
    RunnerScopeKind,
    RunnerSpec,
    RunnerStatus,
    RunnerStatusRegistration,
    WorkflowStatus,
)
from runnerd.api.runnerset import RunnerSet, RunnerSetSpec, RunnerSetStatus
from runnerd.api.validation import validate


def parse(obj: Mapping[str, Any]) -> CustomResource:
    """Parse a raw ``actions.summerwind.dev/v1alpha1`` object into the class of its ``kind``."""
    return parse_kind(obj, RESOURCE_BY_KIND, API_VERSION)


__all__ = [
    "API_VERSION",
    "GROUP",
    "JSON",
    "RESOURCES",
    "RESOURCE_BY_KIND",
    "VERSION",
    "ApiObject",
    "ApiParseError",
    "CacheEntry",
    "CapacityReservation",
    "CheckRunSpec",
    "CustomResource",
    "EmbeddedObjectMeta",
    "GitHubAPICredentialsFrom",
    "GitHubEventScaleUpTriggerSpec",
    "HorizontalRunnerAutoscaler",
    "HorizontalRunnerAutoscalerSpec",
    "HorizontalRunnerAutoscalerStatus",
    "MetricSpec",
    "ObjectMeta",
    "PrinterColumn",
    "PullRequestSpec",
    "PushSpec",
    "Quantity",
    "RecurrenceRule",
    "Rule",
    "Runner",
    "RunnerConfig",
    "RunnerDeployment",
    "RunnerDeploymentSpec",
    "RunnerDeploymentStatus",
    "RunnerPodSpec",
    "RunnerReplicaSet",
    "RunnerReplicaSetSpec",
    "RunnerReplicaSetStatus",
    "RunnerScope",
    "RunnerScopeKind",
    "RunnerSet",
    "RunnerSetSpec",
    "RunnerSetStatus",
    "RunnerSpec",
    "RunnerStatus",
    "RunnerStatusRegistration",
    "RunnerTemplate",
    "ScaleTargetRef",
    "ScaleUpTrigger",
    "ScheduledOverride",
    "SecretReference",
    "WorkVolumeClaimTemplate",
    "WorkflowJobSpec",
    "WorkflowStatus",
    "build_crd",
    "build_crds",
    "crd_file_name",
    "crd_sizes",
    "crd_to_yaml",
    "fields_of",
    "format_time",
    "parse",
    "parse_go_duration",
    "parse_quantity",
    "parse_time",
    "validate",
]
