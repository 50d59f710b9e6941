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
    format_time,
    parse_go_duration,
    parse_quantity,
    parse_time,
)
from runnerd.api.constants import API_VERSION, GROUP, VERSION
from runnerd.api.crds import build_crd, build_crds, crd_file_name, crd_sizes, crd_to_yaml
from runnerd.api.types import (
    RESOURCE_BY_KIND,
    RESOURCES,
    CacheEntry,
    CapacityReservation,
    CheckRunSpec,
    CustomResource,
    EmbeddedObjectMeta,
    GitHubAPICredentialsFrom,
    GitHubEventScaleUpTriggerSpec,
    HorizontalRunnerAutoscaler,
    HorizontalRunnerAutoscalerSpec,
    HorizontalRunnerAutoscalerStatus,
    MetricSpec,
    ObjectMeta,
    PrinterColumn,
    PullRequestSpec,
    PushSpec,
    RecurrenceRule,
    Runner,
    RunnerConfig,
    RunnerDeployment,
    RunnerDeploymentSpec,
    RunnerDeploymentStatus,
    RunnerPodSpec,
    RunnerReplicaSet,
    RunnerReplicaSetSpec,
    RunnerReplicaSetStatus,
    RunnerScope,
    RunnerSet,
    RunnerSetSpec,
    RunnerSetStatus,
    RunnerSpec,
    RunnerStatus,
    RunnerStatusRegistration,
    RunnerTemplate,
    ScaleTargetRef,
    ScaleUpTrigger,
    ScheduledOverride,
    SecretReference,
    WorkflowJobSpec,
    WorkflowStatus,
    WorkVolumeClaimTemplate,
)
from runnerd.api.validation import validate


def parse(obj: Mapping[str, Any]) -> CustomResource:
    """Parse a raw ``actions.summerwind.dev/v1alpha1`` object into the class of its ``kind``."""
    kind = obj.get("kind")
    cls = RESOURCE_BY_KIND.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ApiParseError(".kind", f"not a kind of {API_VERSION}: {kind!r}")
    return cls.from_dict(obj)


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
    "format_time",
    "parse",
    "parse_go_duration",
    "parse_quantity",
    "parse_time",
    "validate",
]
