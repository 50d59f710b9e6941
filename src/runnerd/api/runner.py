"""The Runner kind: registration config, pod settings, ARC's admission rules, status.

:class:`RunnerConfig` and :data:`RUNNER_CONFIG_RULES` are shared with RunnerSet; :class:`RunnerSpec`
is also the template of RunnerDeployment and RunnerReplicaSet. Conventions: :mod:`runnerd.api.meta`.
"""

# RUF009: ``field()`` below is this package's dataclass field specifier (it wraps
# ``dataclasses.field``), not a call evaluated once as a shared default.
# ruff: noqa: RUF009

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from runnerd.api import constants as c
from runnerd.api._codec import (
    JSON,
    ApiObject,
    Quantity,
    Rule,
    field,
)
from runnerd.api.meta import (
    AGE,
    K8S_CORE,
    CustomResource,
    GitHubAPICredentialsFrom,
    PrinterColumn,
    WorkVolumeClaimTemplate,
    scope_columns,
)


def _has(d: Mapping[str, Any], key: str) -> bool:
    return d.get(key) is not None


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
        "dockerdContainerResources", k8s=K8S_CORE + "ResourceRequirements", factory=dict
    )
    docker_volume_mounts: list[JSON] = field("dockerVolumeMounts", k8s=K8S_CORE + "VolumeMount", factory=list)
    docker_env: list[JSON] = field("dockerEnv", k8s=K8S_CORE + "EnvVar", factory=list)
    containers: list[JSON] = field(
        "containers",
        "Containers merged into the runner pod by name (runner, docker).",
        k8s=K8S_CORE + "Container",
        factory=list,
    )
    image_pull_policy: str | None = field("imagePullPolicy")
    env: list[JSON] = field("env", k8s=K8S_CORE + "EnvVar", factory=list)
    env_from: list[JSON] = field("envFrom", k8s=K8S_CORE + "EnvFromSource", factory=list)
    resources: JSON = field("resources", k8s=K8S_CORE + "ResourceRequirements", factory=dict)
    volume_mounts: list[JSON] = field("volumeMounts", k8s=K8S_CORE + "VolumeMount", factory=list)
    volumes: list[JSON] = field("volumes", k8s=K8S_CORE + "Volume", factory=list)
    enable_service_links: bool | None = field("enableServiceLinks")
    init_containers: list[JSON] = field("initContainers", k8s=K8S_CORE + "Container", factory=list)
    node_selector: dict[str, str] = field("nodeSelector", factory=dict)
    service_account_name: str | None = field("serviceAccountName")
    automount_service_account_token: bool | None = field("automountServiceAccountToken")
    sidecar_containers: list[JSON] = field("sidecarContainers", k8s=K8S_CORE + "Container", factory=list)
    security_context: JSON | None = field("securityContext", k8s=K8S_CORE + "PodSecurityContext")
    image_pull_secrets: list[JSON] = field(
        "imagePullSecrets", k8s=K8S_CORE + "LocalObjectReference", factory=list
    )
    affinity: JSON | None = field("affinity", k8s=K8S_CORE + "Affinity")
    tolerations: list[JSON] = field("tolerations", k8s=K8S_CORE + "Toleration", factory=list)
    priority_class_name: str | None = field("priorityClassName")
    termination_grace_period_seconds: int | None = field("terminationGracePeriodSeconds", int64=True)
    ephemeral_containers: list[JSON] = field(
        "ephemeralContainers", k8s=K8S_CORE + "EphemeralContainer", factory=list
    )
    host_aliases: list[JSON] = field("hostAliases", k8s=K8S_CORE + "HostAlias", factory=list)
    topology_spread_constraints: list[JSON] = field(
        "topologySpreadConstraints", k8s=K8S_CORE + "TopologySpreadConstraint", factory=list
    )
    runtime_class_name: str | None = field("runtimeClassName")
    dns_policy: str | None = field("dnsPolicy")
    dns_config: JSON | None = field("dnsConfig", k8s=K8S_CORE + "PodDNSConfig")
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


@dataclass(kw_only=True)
class Runner(CustomResource):
    KIND: ClassVar[str] = "Runner"
    PLURAL: ClassVar[str] = "runners"
    DESCRIPTION: ClassVar[str] = "One GitHub Actions self-hosted runner, run as a pod."
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        *scope_columns(".spec", 0),
        PrinterColumn("Status", ".status.phase", "string"),
        PrinterColumn("Job", ".status.workflow.job", "string", "The workflow job being run."),
        PrinterColumn("WF Repo", ".status.workflow.repository", "string", priority=1),
        PrinterColumn("WF Run", ".status.workflow.runID", "string", priority=1),
        PrinterColumn("Message", ".status.message", "string", priority=1),
        AGE,
    )

    spec: RunnerSpec = field("spec", required=True, factory=RunnerSpec)
    status: RunnerStatus = field("status", factory=RunnerStatus)
