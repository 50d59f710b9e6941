"""Typed models of ARC's legacy API (``actions.summerwind.dev/v1alpha1``).

Every field is declared once (JSON name, schema facts); parsing, serialisation and the CRD schema
all come from these declarations (see :mod:`runnerd.api._codec`). Fields are the raw values:
``None`` means "absent", so ``to_dict(from_dict(x)) == x``. ARC's defaults are exposed as
``effective_*`` properties and never written back.
"""

# RUF009: ``field()`` below is this package's dataclass field specifier (it wraps
# ``dataclasses.field``), not a call evaluated once as a shared default.
# ruff: noqa: RUF009

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from runnerd.api import constants as c
from runnerd.api._codec import (
    FLOAT_PATTERN,
    GO_DURATION_PATTERN,
    JSON,
    ApiObject,
    ApiParseError,
    Quantity,
    Rule,
    field,
    parse_go_duration,
)

_CORE = "io.k8s.api.core.v1."
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
LABEL_SELECTOR = _META + "LabelSelector"
OBJECT_META = _META + "ObjectMeta"


def _has(d: Mapping[str, Any], key: str) -> bool:
    return d.get(key) is not None


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


# --- Runner spec -----------------------------------------------------------------------------


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
        "resources", k8s=_CORE + "VolumeResourceRequirements", required=True, factory=dict
    )


RunnerScopeKind = Literal["enterprise", "organization", "repository"]


@dataclass(frozen=True)
class RunnerScope:
    """Where a runner registers: an enterprise, an organization or a repository (``owner/name``)."""

    kind: RunnerScopeKind
    name: str


@dataclass(kw_only=True)
class RunnerConfig(ApiObject):
    """The runner registration/configuration fields shared by Runner (and its templates) and RunnerSet."""

    enterprise: str | None = field(
        "enterprise", "Enterprise slug to register runners in.", pattern=r"^[^/]+$"
    )
    organization: str | None = field(
        "organization", "Organization to register runners in.", pattern=r"^[^/]+$"
    )
    repository: str | None = field(
        "repository", "Repository (owner/name) to register runners in.", pattern=r"^[^/]+/[^/]+$"
    )
    labels: list[str] = field("labels", "Runner labels (self-hosted is implied).", factory=list)
    group: str | None = field("group", "Runner group (enterprise and organization runners only).")
    ephemeral: bool | None = field("ephemeral", "Run one job per runner (default true).")
    image: str | None = field("image", "Runner container image (default: the controller's --runner-image).")
    work_dir: str | None = field("workDir", "Work directory (default /runner/_work).")
    dockerd_within_runner_container: bool | None = field(
        "dockerdWithinRunnerContainer",
        "Run dockerd inside the runner container (dind images) instead of a sidecar.",
    )
    docker_enabled: bool | None = field("dockerEnabled", "Provide a Docker daemon (default true).")
    docker_mtu: int | None = field("dockerMTU", int64=True)
    docker_registry_mirror: str | None = field("dockerRegistryMirror")
    docker_var_run_volume_size_limit: Quantity | None = field("dockerVarRunVolumeSizeLimit")
    volume_size_limit: Quantity | None = field("volumeSizeLimit")
    volume_storage_medium: str | None = field("volumeStorageMedium")
    container_mode: str | None = field(
        "containerMode", '"" (Docker) or "kubernetes" (runner container hooks).'
    )
    github_api_credentials_from: GitHubAPICredentialsFrom | None = field("githubAPICredentialsFrom")

    @property
    def scope(self) -> RunnerScope | None:
        """The single configured scope (``None`` when none, or more than one, is set)."""
        found: list[RunnerScope] = []
        if self.enterprise:
            found.append(RunnerScope("enterprise", self.enterprise))
        if self.organization:
            found.append(RunnerScope("organization", self.organization))
        if self.repository:
            found.append(RunnerScope("repository", self.repository))
        return found[0] if len(found) == 1 else None

    @property
    def effective_ephemeral(self) -> bool:
        return c.DEFAULT_EPHEMERAL if self.ephemeral is None else self.ephemeral

    @property
    def effective_docker_enabled(self) -> bool:
        return c.DEFAULT_DOCKER_ENABLED if self.docker_enabled is None else self.docker_enabled

    @property
    def effective_dockerd_within_runner_container(self) -> bool:
        if self.dockerd_within_runner_container is None:
            return c.DEFAULT_DOCKERD_WITHIN_RUNNER_CONTAINER
        return self.dockerd_within_runner_container

    @property
    def effective_work_dir(self) -> str:
        return self.work_dir or c.DEFAULT_WORK_DIR

    @property
    def effective_docker_var_run_volume_size_limit(self) -> Quantity:
        if self.docker_var_run_volume_size_limit is None:
            return c.DEFAULT_DOCKER_VAR_RUN_VOLUME_SIZE_LIMIT
        return self.docker_var_run_volume_size_limit

    @property
    def is_kubernetes_container_mode(self) -> bool:
        return self.container_mode == c.CONTAINER_MODE_KUBERNETES


@dataclass(kw_only=True)
class RunnerPodSpec(ApiObject):
    """Pod-level settings of a runner pod (embedded Kubernetes types are kept as JSON)."""

    dockerd_container_resources: JSON = field(
        "dockerdContainerResources", k8s=_CORE + "ResourceRequirements", factory=dict
    )
    docker_volume_mounts: list[JSON] = field("dockerVolumeMounts", k8s=_CORE + "VolumeMount", factory=list)
    docker_env: list[JSON] = field("dockerEnv", k8s=_CORE + "EnvVar", factory=list)
    containers: list[JSON] = field(
        "containers",
        "Containers merged into the runner pod by name (runner, docker).",
        k8s=_CORE + "Container",
        factory=list,
    )
    image_pull_policy: str | None = field("imagePullPolicy")
    env: list[JSON] = field("env", k8s=_CORE + "EnvVar", factory=list)
    env_from: list[JSON] = field("envFrom", k8s=_CORE + "EnvFromSource", factory=list)
    resources: JSON = field("resources", k8s=_CORE + "ResourceRequirements", factory=dict)
    volume_mounts: list[JSON] = field("volumeMounts", k8s=_CORE + "VolumeMount", factory=list)
    volumes: list[JSON] = field("volumes", k8s=_CORE + "Volume", factory=list)
    enable_service_links: bool | None = field("enableServiceLinks")
    init_containers: list[JSON] = field("initContainers", k8s=_CORE + "Container", factory=list)
    node_selector: dict[str, str] = field("nodeSelector", factory=dict)
    service_account_name: str | None = field("serviceAccountName")
    automount_service_account_token: bool | None = field("automountServiceAccountToken")
    sidecar_containers: list[JSON] = field("sidecarContainers", k8s=_CORE + "Container", factory=list)
    security_context: JSON | None = field("securityContext", k8s=_CORE + "PodSecurityContext")
    image_pull_secrets: list[JSON] = field(
        "imagePullSecrets", k8s=_CORE + "LocalObjectReference", factory=list
    )
    affinity: JSON | None = field("affinity", k8s=_CORE + "Affinity")
    tolerations: list[JSON] = field("tolerations", k8s=_CORE + "Toleration", factory=list)
    priority_class_name: str | None = field("priorityClassName")
    termination_grace_period_seconds: int | None = field("terminationGracePeriodSeconds", int64=True)
    ephemeral_containers: list[JSON] = field(
        "ephemeralContainers", k8s=_CORE + "EphemeralContainer", factory=list
    )
    host_aliases: list[JSON] = field("hostAliases", k8s=_CORE + "HostAlias", factory=list)
    topology_spread_constraints: list[JSON] = field(
        "topologySpreadConstraints", k8s=_CORE + "TopologySpreadConstraint", factory=list
    )
    runtime_class_name: str | None = field("runtimeClassName")
    dns_policy: str | None = field("dnsPolicy")
    dns_config: JSON | None = field("dnsConfig", k8s=_CORE + "PodDNSConfig")
    work_volume_claim_template: WorkVolumeClaimTemplate | None = field("workVolumeClaimTemplate")

    @property
    def effective_image_pull_policy(self) -> str:
        return self.image_pull_policy or c.DEFAULT_IMAGE_PULL_POLICY


# --- validation rules (ARC's admission webhooks, as CEL) -------------------------------------


_SCOPES = ("enterprise", "organization", "repository")


def _scope_count(d: Mapping[str, Any]) -> int:
    return sum(_has(d, k) for k in _SCOPES)


def _kubernetes_mode(d: Mapping[str, Any]) -> bool:
    return d.get("containerMode") == c.CONTAINER_MODE_KUBERNETES


def _access_modes(d: Mapping[str, Any]) -> list[Any] | None:
    """accessModes of the work volume claim template when the kubernetes-mode checks apply."""
    wvct = d.get("workVolumeClaimTemplate")
    if (
        not _kubernetes_mode(d)
        or not isinstance(wvct, Mapping)
        or not isinstance(wvct.get("accessModes"), list)
    ):
        return None
    modes: list[Any] = wvct["accessModes"]
    return modes


_NOT_K8S_MODE = "!has(self.containerMode) || self.containerMode != 'kubernetes'"
_K8S_MODE_WVCT = (
    _NOT_K8S_MODE + " || !has(self.workVolumeClaimTemplate)"
    " || !has(self.workVolumeClaimTemplate.accessModes) || "
)

RUNNER_CONFIG_RULES: tuple[Rule, ...] = (
    Rule(
        cel="has(self.enterprise) || has(self.organization) || has(self.repository)",
        message="spec needs enterprise, organization or repository",
        check=lambda d: _scope_count(d) >= 1,
    ),
    Rule(
        cel=" + ".join(f"(has(self.{k}) ? 1 : 0)" for k in ("enterprise", "organization", "repository"))
        + " <= 1",
        message="spec cannot have many fields defined enterprise, organization and repository",
        check=lambda d: _scope_count(d) <= 1,
    ),
    Rule(
        cel=_NOT_K8S_MODE + " || has(self.workVolumeClaimTemplate)",
        message="Spec.ContainerMode: kubernetes must have workVolumeClaimTemplate field specified",
        check=lambda d: not _kubernetes_mode(d) or _has(d, "workVolumeClaimTemplate"),
    ),
    Rule(
        cel=_K8S_MODE_WVCT + "size(self.workVolumeClaimTemplate.accessModes) > 0",
        message="access mode should have at least one mode specified",
        check=lambda d: _access_modes(d) != [],
    ),
    Rule(
        cel=_K8S_MODE_WVCT
        + "self.workVolumeClaimTemplate.accessModes.all(m, m == 'ReadWriteOnce' || m == 'ReadWriteMany')",
        message="access mode is not supported (only ReadWriteOnce and ReadWriteMany are)",
        message_expression="'access mode ' + self.workVolumeClaimTemplate.accessModes.filter(m, "
        "m != 'ReadWriteOnce' && m != 'ReadWriteMany')[0] + ' is not supported'",
        check=lambda d: all(m in c.WORK_VOLUME_ACCESS_MODES for m in (_access_modes(d) or [])),
    ),
)


@dataclass(kw_only=True)
class RunnerSpec(RunnerConfig, RunnerPodSpec):
    """Spec of a Runner (and of the template of RunnerDeployment/RunnerReplicaSet)."""

    RULES: ClassVar[tuple[Rule, ...]] = RUNNER_CONFIG_RULES


# --- Runner status ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class RunnerStatusRegistration(ApiObject):
    enterprise: str | None = field("enterprise")
    organization: str | None = field("organization")
    repository: str | None = field("repository")
    labels: list[str] = field("labels", factory=list)
    token: str | None = field("token")
    expires_at: dt.datetime | None = field("expiresAt")


@dataclass(kw_only=True)
class WorkflowStatus(ApiObject):
    """The workflow job the runner is running (GITHUB_* values reported by the runner's job hooks)."""

    name: str | None = field("name")
    repository: str | None = field("repository")
    repository_owner: str | None = field("repositoryOwner")
    run_number: str | None = field("runNumber")
    run_id: str | None = field("runID")
    job: str | None = field("job")
    action: str | None = field("action")


@dataclass(kw_only=True)
class RunnerStatus(ApiObject):
    ready: bool | None = field("ready", "True only while the runner pod is ready.")
    registration: RunnerStatusRegistration | None = field("registration")
    phase: str | None = field("phase", "Pending, Registering, Idle, Running, Completed, Failed, ...")
    reason: str | None = field("reason")
    message: str | None = field("message")
    workflow: WorkflowStatus | None = field("workflow")
    last_registration_check_time: dt.datetime | None = field("lastRegistrationCheckTime", nullable=True)


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


# --- HorizontalRunnerAutoscaler --------------------------------------------------------------


@dataclass(kw_only=True)
class ScaleTargetRef(ApiObject):
    kind: str | None = field("kind", "RunnerDeployment (default) or RunnerSet.", enum=c.SCALE_TARGET_KINDS)
    name: str | None = field(
        "name", "Name of the scaled resource in the same namespace.", required=True, min_length=1
    )

    @property
    def effective_kind(self) -> str:
        return self.kind or c.DEFAULT_SCALE_TARGET_KIND


def _both_set(d: Mapping[str, Any], adjustment: str, factor: str) -> bool:
    return d.get(adjustment) not in (None, 0) and d.get(factor) not in (None, "")


def _parse_float(value: str | None, default: float, name: str) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ApiParseError(f".{name}", f"cannot be parsed into a float: {value!r}") from None


@dataclass(kw_only=True)
class MetricSpec(ApiObject):
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.scaleUpAdjustment) || self.scaleUpAdjustment == 0"
            " || !has(self.scaleUpFactor) || self.scaleUpFactor == ''",
            message="scaleUpAdjustment and scaleUpFactor cannot be specified together",
            check=lambda d: not _both_set(d, "scaleUpAdjustment", "scaleUpFactor"),
        ),
        Rule(
            cel="!has(self.scaleDownAdjustment) || self.scaleDownAdjustment == 0"
            " || !has(self.scaleDownFactor) || self.scaleDownFactor == ''",
            message="scaleDownAdjustment and scaleDownFactor cannot be specified together",
            check=lambda d: not _both_set(d, "scaleDownAdjustment", "scaleDownFactor"),
        ),
    )

    type: str | None = field("type", "The metric.", required=True, enum=c.METRIC_TYPES)
    repository_names: list[str] = field(
        "repositoryNames",
        "Repositories whose workflow runs are counted (needed for organization runners).",
        factory=list,
    )
    scale_up_threshold: str | None = field(
        "scaleUpThreshold",
        "Busy fraction at or above which to scale up (default 0.8).",
        pattern=FLOAT_PATTERN,
    )
    scale_down_threshold: str | None = field(
        "scaleDownThreshold", "Busy fraction below which to scale down (default 0.3).", pattern=FLOAT_PATTERN
    )
    scale_up_factor: str | None = field(
        "scaleUpFactor", "Multiplier applied on scale up (default 1.3).", pattern=FLOAT_PATTERN
    )
    scale_down_factor: str | None = field(
        "scaleDownFactor", "Multiplier applied on scale down (default 0.7).", pattern=FLOAT_PATTERN
    )
    scale_up_adjustment: int | None = field(
        "scaleUpAdjustment", "Runners added on scale up (instead of scaleUpFactor).", minimum=0
    )
    scale_down_adjustment: int | None = field(
        "scaleDownAdjustment", "Runners removed on scale down (instead of scaleDownFactor).", minimum=0
    )

    @property
    def effective_scale_up_threshold(self) -> float:
        return _parse_float(self.scale_up_threshold, c.DEFAULT_SCALE_UP_THRESHOLD, "scaleUpThreshold")

    @property
    def effective_scale_down_threshold(self) -> float:
        return _parse_float(self.scale_down_threshold, c.DEFAULT_SCALE_DOWN_THRESHOLD, "scaleDownThreshold")

    @property
    def effective_scale_up_factor(self) -> float:
        return _parse_float(self.scale_up_factor, c.DEFAULT_SCALE_UP_FACTOR, "scaleUpFactor")

    @property
    def effective_scale_down_factor(self) -> float:
        return _parse_float(self.scale_down_factor, c.DEFAULT_SCALE_DOWN_FACTOR, "scaleDownFactor")


@dataclass(kw_only=True)
class CheckRunSpec(ApiObject):
    types: list[str] = field("types", factory=list)
    status: str | None = field("status")
    names: list[str] = field("names", factory=list)
    repositories: list[str] = field("repositories", factory=list)


@dataclass(kw_only=True)
class PullRequestSpec(ApiObject):
    types: list[str] = field("types", factory=list)
    branches: list[str] = field("branches", factory=list)


@dataclass(kw_only=True)
class PushSpec(ApiObject):
    pass


@dataclass(kw_only=True)
class WorkflowJobSpec(ApiObject):
    pass


@dataclass(kw_only=True)
class GitHubEventScaleUpTriggerSpec(ApiObject):
    check_run: CheckRunSpec | None = field("checkRun", "Accepted for compatibility; ignored (as in ARC).")
    pull_request: PullRequestSpec | None = field(
        "pullRequest", "Accepted for compatibility; ignored (as in ARC)."
    )
    push: PushSpec | None = field("push", "Accepted for compatibility; ignored (as in ARC).")
    workflow_job: WorkflowJobSpec | None = field("workflowJob", "Scale on workflow_job webhook events.")


@dataclass(kw_only=True)
class ScaleUpTrigger(ApiObject):
    github_event: GitHubEventScaleUpTriggerSpec | None = field("githubEvent")
    amount: int | None = field("amount")
    duration: str | None = field(
        "duration",
        "How long a capacity reservation lasts, as a Go duration (default 10m).",
        pattern=GO_DURATION_PATTERN,
    )

    @property
    def effective_duration(self) -> dt.timedelta:
        """The reservation lifetime; absent or not positive means 10 minutes (as in ARC)."""
        value = parse_go_duration(self.duration) if self.duration else dt.timedelta(0)
        if value <= dt.timedelta(0):
            return dt.timedelta(seconds=c.DEFAULT_SCALE_UP_TRIGGER_DURATION_SECONDS)
        return value


@dataclass(kw_only=True)
class CapacityReservation(ApiObject):
    name: str | None = field("name")
    expiration_time: dt.datetime | None = field("expirationTime")
    replicas: int | None = field("replicas")
    effective_time: dt.datetime | None = field("effectiveTime")


@dataclass(kw_only=True)
class RecurrenceRule(ApiObject):
    frequency: str | None = field(
        "frequency",
        "Daily, Weekly, Monthly or Yearly; empty means the override happens once.",
        enum=c.RECURRENCE_FREQUENCIES,
    )
    until_time: dt.datetime | None = field("untilTime", "When the recurrence ends (default: never).")


@dataclass(kw_only=True)
class ScheduledOverride(ApiObject):
    start_time: dt.datetime | None = field("startTime", "Start of the first override.", required=True)
    end_time: dt.datetime | None = field("endTime", "End of the first override.", required=True)
    min_replicas: int | None = field(
        "minReplicas", "minReplicas while the override is active.", nullable=True, minimum=0
    )
    recurrence_rule: RecurrenceRule | None = field("recurrenceRule")


def _min_le_max(d: Mapping[str, Any]) -> bool:
    lo, hi = d.get("minReplicas"), d.get("maxReplicas")
    return not (isinstance(lo, int) and isinstance(hi, int)) or lo <= hi


def _metric_combination_ok(d: Mapping[str, Any]) -> bool:
    metrics = d.get("metrics")
    if not isinstance(metrics, list) or len(metrics) != 2:
        return True
    types = [m.get("type") if isinstance(m, Mapping) else None for m in metrics]
    return types == [
        c.METRIC_PERCENTAGE_RUNNERS_BUSY,
        c.METRIC_TOTAL_NUMBER_OF_QUEUED_AND_IN_PROGRESS_WORKFLOW_RUNS,
    ]


@dataclass(kw_only=True)
class HorizontalRunnerAutoscalerSpec(ApiObject):
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            message="minReplicas must be less than or equal to maxReplicas",
            check=_min_le_max,
        ),
        Rule(
            cel="!has(self.metrics) || size(self.metrics) != 2 || (has(self.metrics[0].type) && "
            "has(self.metrics[1].type) && self.metrics[0].type == 'PercentageRunnersBusy' && "
            "self.metrics[1].type == 'TotalNumberOfQueuedAndInProgressWorkflowRuns')",
            message="two metrics can only be combined as metrics[0]=PercentageRunnersBusy and "
            "metrics[1]=TotalNumberOfQueuedAndInProgressWorkflowRuns",
            check=_metric_combination_ok,
        ),
    )

    scale_target_ref: ScaleTargetRef = field(
        "scaleTargetRef", "The RunnerDeployment or RunnerSet to scale.", required=True, factory=ScaleTargetRef
    )
    min_replicas: int | None = field("minReplicas", "Lower bound of the desired replicas.", minimum=0)
    max_replicas: int | None = field("maxReplicas", "Upper bound of the desired replicas.", minimum=0)
    scale_down_delay_seconds_after_scale_out: int | None = field(
        "scaleDownDelaySecondsAfterScaleOut",
        "Seconds to wait after a scale out before scaling down "
        "(default: the controller's --default-scale-down-delay).",
        minimum=0,
    )
    metrics: list[MetricSpec] = field(
        "metrics",
        "Pull-based metrics: one, or PercentageRunnersBusy then "
        "TotalNumberOfQueuedAndInProgressWorkflowRuns.",
        max_items=2,
        factory=list,
    )
    scale_up_triggers: list[ScaleUpTrigger] = field(
        "scaleUpTriggers", "Webhook-based scaling: one entry with githubEvent.workflowJob.", factory=list
    )
    capacity_reservations: list[CapacityReservation] = field(
        "capacityReservations",
        "Replicas added until they expire (written by the webhook server).",
        factory=list,
    )
    scheduled_overrides: list[ScheduledOverride] = field(
        "scheduledOverrides", "minReplicas overrides on a schedule; earlier entries win.", factory=list
    )
    github_api_credentials_from: GitHubAPICredentialsFrom | None = field("githubAPICredentialsFrom")

    @property
    def effective_min_replicas(self) -> int:
        """spec.minReplicas, where absent (or negative) means 1, as in ARC's HRA controller."""
        if self.min_replicas is None or self.min_replicas < 0:
            return c.DEFAULT_MIN_REPLICAS
        return self.min_replicas


@dataclass(kw_only=True)
class CacheEntry(ApiObject):
    key: str | None = field("key")
    value: int | None = field("value")
    expiration_time: dt.datetime | None = field("expirationTime")


@dataclass(kw_only=True)
class HorizontalRunnerAutoscalerStatus(ApiObject):
    observed_generation: int | None = field("observedGeneration", int64=True)
    desired_replicas: int | None = field("desiredReplicas", "Replicas last computed for the target.")
    last_successful_scale_out_time: dt.datetime | None = field("lastSuccessfulScaleOutTime", nullable=True)
    cache_entries: list[CacheEntry] = field("cacheEntries", "Unused (kept for ARC).", factory=list)
    scheduled_overrides_summary: str | None = field(
        "scheduledOverridesSummary", "Active and upcoming scheduled overrides, for kubectl get."
    )
    conditions: list[JSON] = field(
        "conditions",
        "ScalingActive, AbleToScale, ScalingLimited, GitHubAPIBudget, AmbiguousWebhookTarget "
        "(runnerd extension).",
        k8s=_META + "Condition",
        factory=list,
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
            if api_version is not None and api_version != c.API_VERSION:
                raise ApiParseError(f"{path}.apiVersion", f"expected {c.API_VERSION}, got {api_version!r}")
            if kind is not None and kind != cls.KIND:
                raise ApiParseError(f"{path}.kind", f"expected {cls.KIND}, got {kind!r}")
            data = {k: v for k, v in data.items() if k not in ("apiVersion", "kind")}
        return super().from_dict(data, path)

    def to_dict(self) -> JSON:
        return {"apiVersion": c.API_VERSION, "kind": self.KIND, **super().to_dict()}

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or ""


def _scope_columns(prefix: str, priority: int) -> tuple[PrinterColumn, ...]:
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


@dataclass(kw_only=True)
class Runner(CustomResource):
    KIND: ClassVar[str] = "Runner"
    PLURAL: ClassVar[str] = "runners"
    DESCRIPTION: ClassVar[str] = "One GitHub Actions self-hosted runner, run as a pod."
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        *_scope_columns(".spec", 0),
        PrinterColumn("Status", ".status.phase", "string"),
        PrinterColumn("Job", ".status.workflow.job", "string", "The workflow job being run."),
        PrinterColumn("WF Repo", ".status.workflow.repository", "string", priority=1),
        PrinterColumn("WF Run", ".status.workflow.runID", "string", priority=1),
        PrinterColumn("Message", ".status.message", "string", priority=1),
        AGE,
    )

    spec: RunnerSpec = field("spec", required=True, factory=RunnerSpec)
    status: RunnerStatus = field("status", factory=RunnerStatus)


_REPLICA_COLUMNS = (
    PrinterColumn("Desired", ".spec.replicas", "integer"),
    PrinterColumn("Current", ".status.replicas", "integer"),
    PrinterColumn("Ready", ".status.readyReplicas", "integer"),
    PrinterColumn("Busy", ".status.busyReplicas", "integer", "Runners running a job."),
)


@dataclass(kw_only=True)
class RunnerReplicaSet(CustomResource):
    KIND: ClassVar[str] = "RunnerReplicaSet"
    PLURAL: ClassVar[str] = "runnerreplicasets"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("rrs",)
    SCALE: ClassVar[bool] = True
    DESCRIPTION: ClassVar[str] = "A set of identical Runners (owned by a RunnerDeployment)."
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (*_REPLICA_COLUMNS, AGE)

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
        *_REPLICA_COLUMNS,
        PrinterColumn("Up-To-Date", ".status.updatedReplicas", "integer", priority=1),
        PrinterColumn("Available", ".status.availableReplicas", "integer", priority=1),
        *_scope_columns(".spec.template.spec", 1),
        AGE,
    )

    spec: RunnerDeploymentSpec = field("spec", required=True, factory=RunnerDeploymentSpec)
    status: RunnerDeploymentStatus = field("status", factory=RunnerDeploymentStatus)


@dataclass(kw_only=True)
class RunnerSet(CustomResource):
    KIND: ClassVar[str] = "RunnerSet"
    PLURAL: ClassVar[str] = "runnersets"
    SCALE: ClassVar[bool] = True
    DESCRIPTION: ClassVar[str] = "Runners as StatefulSets (one per runner) from a full pod template."
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        *_REPLICA_COLUMNS,
        PrinterColumn("Up-To-Date", ".status.updatedReplicas", "integer", priority=1),
        PrinterColumn("Available", ".status.availableReplicas", "integer", priority=1),
        *_scope_columns(".spec", 1),
        AGE,
    )

    spec: RunnerSetSpec = field("spec", required=True, factory=RunnerSetSpec)
    status: RunnerSetStatus = field("status", factory=RunnerSetStatus)


@dataclass(kw_only=True)
class HorizontalRunnerAutoscaler(CustomResource):
    KIND: ClassVar[str] = "HorizontalRunnerAutoscaler"
    PLURAL: ClassVar[str] = "horizontalrunnerautoscalers"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("hra",)
    DESCRIPTION: ClassVar[str] = "Scales a RunnerDeployment or RunnerSet from GitHub metrics and webhooks."
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("Min", ".spec.minReplicas", "integer"),
        PrinterColumn("Max", ".spec.maxReplicas", "integer"),
        PrinterColumn("Desired", ".status.desiredReplicas", "integer"),
        PrinterColumn("Schedule", ".status.scheduledOverridesSummary", "string"),
        PrinterColumn("Target Kind", ".spec.scaleTargetRef.kind", "string", priority=1),
        PrinterColumn("Target", ".spec.scaleTargetRef.name", "string", priority=1),
        AGE,
    )

    spec: HorizontalRunnerAutoscalerSpec = field(
        "spec", required=True, factory=HorizontalRunnerAutoscalerSpec
    )
    status: HorizontalRunnerAutoscalerStatus = field("status", factory=HorizontalRunnerAutoscalerStatus)


RESOURCES: tuple[type[CustomResource], ...] = (
    Runner,
    RunnerReplicaSet,
    RunnerDeployment,
    RunnerSet,
    HorizontalRunnerAutoscaler,
)
"""Every kind of the API group, in CRD generation order."""

RESOURCE_BY_KIND: dict[str, type[CustomResource]] = {r.KIND: r for r in RESOURCES}
