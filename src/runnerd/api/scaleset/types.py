"""Typed models of ARC's scale-set API (``actions.github.com/v1alpha1``).

The four kinds of ARC's ``gha-runner-scale-set-controller`` — AutoscalingRunnerSet,
EphemeralRunnerSet, EphemeralRunner, AutoscalingListener — with ARC@0.13.1's spec/status field
names plus the 0.14 additions (``runnerScaleSetLabels``, ``phase``, per-object ``ResourceMeta``).

Guarantees (same codec as the legacy types, :mod:`runnerd.api._codec`): every field is declared
once and drives parsing, serialisation and the CRD schema; ``None`` means absent, so
``to_dict(from_dict(x)) == x``; ARC's defaults are ``effective_*`` properties, never written back;
``EphemeralRunnerSet.spec.patchID`` is always serialised (ARC's field is not ``omitempty``).
Validation ARC does in its chart and listener (``minRunners <= maxRunners``, a ``runner``
container, a config URL and secret) is a CEL rule here, enforced by the API server. Pure: no I/O.
"""

# RUF009: ``field()`` is this package's dataclass field specifier, not a shared default.
# ruff: noqa: RUF009

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from runnerd.api import JSON, ApiObject, CustomResource, PrinterColumn, Rule
from runnerd.api._codec import field
from runnerd.api.scaleset import constants as c

_CORE = "io.k8s.api.core.v1."
POD_TEMPLATE_SPEC = _CORE + "PodTemplateSpec"


def _has(d: Mapping[str, Any], key: str) -> bool:
    return d.get(key) is not None


# --- shared types ----------------------------------------------------------------------------


@dataclass(kw_only=True)
class ResourceMeta(ApiObject):
    """Extra labels/annotations for an object the controller creates (ARC 0.14)."""

    labels: dict[str, str] = field("labels", factory=dict)
    annotations: dict[str, str] = field("annotations", factory=dict)


@dataclass(kw_only=True)
class ProxyServerConfig(ApiObject):
    url: str | None = field("url", "Proxy URL, e.g. http://proxy.example:3128.")
    credential_secret_ref: str | None = field(
        "credentialSecretRef", "Secret (same namespace) with keys username and password."
    )


@dataclass(kw_only=True)
class ProxyConfig(ApiObject):
    http: ProxyServerConfig | None = field("http")
    https: ProxyServerConfig | None = field("https")
    no_proxy: list[str] = field("noProxy", factory=list)


@dataclass(kw_only=True)
class TLSCertificateSource(ApiObject):
    config_map_key_ref: JSON = field(
        "configMapKeyRef",
        "ConfigMap key (in the AutoscalingRunnerSet's namespace) holding the CA bundle (PEM).",
        k8s=_CORE + "ConfigMapKeySelector",
        factory=dict,
    )


@dataclass(kw_only=True)
class TLSConfig(ApiObject):
    certificate_from: TLSCertificateSource | None = field("certificateFrom")


@dataclass(kw_only=True)
class AzureKeyVaultConfig(ApiObject):
    url: str | None = field("url")
    tenant_id: str | None = field("tenantId")
    client_id: str | None = field("clientId")
    certificate_path: str | None = field("certificatePath")


@dataclass(kw_only=True)
class VaultConfig(ApiObject):
    type: str | None = field("type", "Where githubConfigSecret is looked up.", enum=c.VAULT_TYPES)
    azure_key_vault: AzureKeyVaultConfig | None = field("azureKeyVault")
    proxy: ProxyConfig | None = field("proxy")


@dataclass(kw_only=True)
class CounterMetric(ApiObject):
    labels: list[str] = field("labels", factory=list)


@dataclass(kw_only=True)
class GaugeMetric(ApiObject):
    labels: list[str] = field("labels", factory=list)


@dataclass(kw_only=True)
class HistogramMetric(ApiObject):
    labels: list[str] = field("labels", factory=list)
    buckets: list[float] = field("buckets", factory=list)


@dataclass(kw_only=True)
class MetricsConfig(ApiObject):
    """Which listener metrics are registered, each with exactly its labels (ARC 0.11+)."""

    counters: dict[str, CounterMetric] = field("counters", factory=dict)
    gauges: dict[str, GaugeMetric] = field("gauges", factory=dict)
    histograms: dict[str, HistogramMetric] = field("histograms", factory=dict)


def _container_names(template: Any) -> list[Any]:
    spec = template.get("spec") if isinstance(template, Mapping) else None
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    return [x.get("name") for x in containers or () if isinstance(x, Mapping)]


def _min_le_max(d: Mapping[str, Any]) -> bool:
    return not (_has(d, "minRunners") and _has(d, "maxRunners")) or d["minRunners"] <= d["maxRunners"]


MIN_LE_MAX = Rule(
    cel="!has(self.minRunners) || !has(self.maxRunners) || self.minRunners <= self.maxRunners",
    message="maxRunners has to be greater or equal to minRunners",
    check=_min_le_max,
)


# --- AutoscalingRunnerSet --------------------------------------------------------------------


@dataclass(kw_only=True)
class AutoscalingRunnerSetSpec(ApiObject):
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.githubConfigUrl) && self.githubConfigUrl != ''",
            message="githubConfigUrl is required",
            check=lambda d: bool(d.get("githubConfigUrl")),
        ),
        Rule(
            cel="has(self.githubConfigSecret) && self.githubConfigSecret != ''",
            message="githubConfigSecret is required",
            check=lambda d: bool(d.get("githubConfigSecret")),
        ),
        MIN_LE_MAX,
        Rule(
            cel="has(self.template) && has(self.template.spec)"
            " && self.template.spec.containers.exists(x, x.name == 'runner')",
            message="template.spec.containers must have a container named runner",
            check=lambda d: c.RUNNER_CONTAINER_NAME in _container_names(d.get("template")),
        ),
        Rule(
            cel="!has(self.runnerScaleSetLabels)"
            " || self.runnerScaleSetLabels.all(l, size(l) > 0 && size(l) < 256)",
            message="each of runnerScaleSetLabels must be non-empty and shorter than 256 characters",
            check=lambda d: all(0 < len(x) < 256 for x in d.get("runnerScaleSetLabels") or ()),
        ),
    )

    github_config_url: str | None = field(
        "githubConfigUrl", "GitHub URL of the enterprise, organization or repository runners register in."
    )
    github_config_secret: str | None = field(
        "githubConfigSecret",
        "Secret with github_token, or github_app_id, github_app_installation_id and "
        "github_app_private_key (or the vault lookup key when vaultConfig is set).",
    )
    runner_group: str | None = field("runnerGroup", "Runner group of the scale set (default: Default).")
    runner_scale_set_name: str | None = field(
        "runnerScaleSetName", "Scale-set name in GitHub, the runs-on label (default: the object's name)."
    )
    runner_scale_set_labels: list[str] = field(
        "runnerScaleSetLabels", "Extra labels (ARC 0.14).", factory=list
    )
    proxy: ProxyConfig | None = field("proxy")
    github_server_tls: TLSConfig | None = field("githubServerTLS")
    vault_config: VaultConfig | None = field("vaultConfig")
    template: JSON = field(
        "template", "Runner pod template (a container named runner).", k8s=POD_TEMPLATE_SPEC, factory=dict
    )
    listener_metrics: MetricsConfig | None = field("listenerMetrics")
    listener_template: JSON | None = field("listenerTemplate", k8s=POD_TEMPLATE_SPEC)
    max_runners: int | None = field("maxRunners", minimum=0)
    min_runners: int | None = field("minRunners", "Idle runners on top of assigned jobs.", minimum=0)
    autoscaling_listener_metadata: ResourceMeta | None = field("autoscalingListener")
    listener_service_account_metadata: ResourceMeta | None = field("listenerServiceAccountMetadata")
    listener_role_metadata: ResourceMeta | None = field("listenerRoleMetadata")
    listener_role_binding_metadata: ResourceMeta | None = field("listenerRoleBindingMetadata")
    listener_config_secret_metadata: ResourceMeta | None = field("listenerConfigSecretMetadata")
    ephemeral_runner_set_metadata: ResourceMeta | None = field("ephemeralRunnerSetMetadata")
    ephemeral_runner_metadata: ResourceMeta | None = field("ephemeralRunnerMetadata")
    ephemeral_runner_config_secret_metadata: ResourceMeta | None = field(
        "ephemeralRunnerConfigSecretMetadata"
    )

    @property
    def effective_min_runners(self) -> int:
        return c.DEFAULT_MIN_RUNNERS if self.min_runners is None else self.min_runners

    @property
    def effective_max_runners(self) -> int:
        return c.DEFAULT_MAX_RUNNERS if self.max_runners is None else self.max_runners


@dataclass(kw_only=True)
class AutoscalingRunnerSetStatus(ApiObject):
    current_runners: int | None = field("currentRunners")
    state: str | None = field("state", "Written by no ARC release up to 0.13 (kept for compatibility).")
    phase: str | None = field("phase", "Pending, Running or Outdated (ARC 0.14).")
    pending_ephemeral_runners: int | None = field("pendingEphemeralRunners")
    running_ephemeral_runners: int | None = field("runningEphemeralRunners")
    failed_ephemeral_runners: int | None = field("failedEphemeralRunners")


# --- EphemeralRunner -------------------------------------------------------------------------


@dataclass(kw_only=True)
class EphemeralRunnerSpec(ApiObject):
    """How to run one runner; the pod template (``metadata``, ``spec``) is inlined, as in ARC."""

    github_config_url: str | None = field("githubConfigUrl")
    github_config_secret: str | None = field("githubConfigSecret")
    github_server_tls: TLSConfig | None = field("githubServerTLS")
    runner_scale_set_id: int | None = field("runnerScaleSetId")
    proxy: ProxyConfig | None = field("proxy")
    proxy_secret_ref: str | None = field("proxySecretRef")
    vault_config: VaultConfig | None = field("vaultConfig")
    ephemeral_runner_config_secret_metadata: ResourceMeta | None = field(
        "ephemeralRunnerConfigSecretMetadata"
    )
    pod_template: JSON = field("", inline=True, k8s=POD_TEMPLATE_SPEC, factory=dict)


@dataclass(kw_only=True)
class EphemeralRunnerStatus(ApiObject):
    ready: bool | None = field("ready")
    phase: str | None = field("phase", "The runner pod's phase (Outdated: runner version too old, ARC 0.14).")
    reason: str | None = field("reason")
    message: str | None = field("message")
    runner_id: int | None = field("runnerId")
    runner_name: str | None = field("runnerName")
    failures: dict[str, dt.datetime] = field("failures", "Pod UID -> time of its failure.", factory=dict)
    job_request_id: int | None = field("jobRequestId", int64=True)
    job_id: str | None = field("jobId")
    job_repository_name: str | None = field("jobRepositoryName")
    job_workflow_ref: str | None = field("jobWorkflowRef")
    workflow_run_id: int | None = field("workflowRunId", int64=True)
    job_display_name: str | None = field("jobDisplayName")

    @property
    def busy(self) -> bool:
        """Holding a job (ARC >= 0.13 decides on ``jobId``; older ones on ``jobRequestId``)."""
        return bool(self.job_id) or (self.job_request_id or 0) > 0


# --- EphemeralRunnerSet ----------------------------------------------------------------------


@dataclass(kw_only=True)
class EphemeralRunnerSetSpec(ApiObject):
    replicas: int | None = field("replicas", "Desired runners (absent = 0).")
    patch_id: int | None = field(
        "patchID", "Listener patch sequence; 0 forces a trim of idle runners to replicas.", required=True
    )
    ephemeral_runner_spec: EphemeralRunnerSpec = field("ephemeralRunnerSpec", factory=EphemeralRunnerSpec)
    ephemeral_runner_metadata: ResourceMeta | None = field("ephemeralRunnerMetadata")

    @property
    def effective_replicas(self) -> int:
        return c.DEFAULT_REPLICAS if self.replicas is None else self.replicas

    @property
    def effective_patch_id(self) -> int:
        return c.DEFAULT_PATCH_ID if self.patch_id is None else self.patch_id

    def to_dict(self) -> JSON:
        # ARC's patchID has no omitempty: 0 is always written (and the CRD requires it).
        return {**super().to_dict(), "patchID": self.effective_patch_id}


@dataclass(kw_only=True)
class EphemeralRunnerSetStatus(ApiObject):
    current_replicas: int | None = field("currentReplicas")
    pending_ephemeral_runners: int | None = field("pendingEphemeralRunners")
    running_ephemeral_runners: int | None = field("runningEphemeralRunners")
    failed_ephemeral_runners: int | None = field("failedEphemeralRunners")
    phase: str | None = field("phase", "Running or Outdated (ARC 0.14).")


# --- AutoscalingListener ---------------------------------------------------------------------


@dataclass(kw_only=True)
class AutoscalingListenerSpec(ApiObject):
    RULES: ClassVar[tuple[Rule, ...]] = (MIN_LE_MAX,)

    github_config_url: str | None = field("githubConfigUrl")
    github_config_secret: str | None = field("githubConfigSecret")
    runner_scale_set_id: int | None = field("runnerScaleSetId")
    autoscaling_runner_set_namespace: str | None = field("autoscalingRunnerSetNamespace")
    autoscaling_runner_set_name: str | None = field("autoscalingRunnerSetName")
    ephemeral_runner_set_name: str | None = field("ephemeralRunnerSetName")
    max_runners: int | None = field("maxRunners", minimum=0)
    min_runners: int | None = field("minRunners", minimum=0)
    image: str | None = field("image")
    image_pull_secrets: list[JSON] = field(
        "imagePullSecrets", k8s=_CORE + "LocalObjectReference", factory=list
    )
    proxy: ProxyConfig | None = field("proxy")
    github_server_tls: TLSConfig | None = field("githubServerTLS")
    vault_config: VaultConfig | None = field("vaultConfig")
    metrics: MetricsConfig | None = field("metrics")
    template: JSON | None = field("template", k8s=POD_TEMPLATE_SPEC)
    config_secret_metadata: ResourceMeta | None = field("configSecretMetadata")
    service_account_metadata: ResourceMeta | None = field("serviceAccountMetadata")
    role_metadata: ResourceMeta | None = field("roleMetadata")
    role_binding_metadata: ResourceMeta | None = field("roleBindingMetadata")


@dataclass(kw_only=True)
class AutoscalingListenerStatus(ApiObject):
    """Empty in ARC; runnerd's in-process listener writes its state here (runnerd.controller.listeners)."""

    phase: str | None = field("phase", "Pending, Listening, Reconnecting, Gone or Failed.")
    session_id: str | None = field("sessionId", "The message session this listener holds (or left behind).")
    last_error: str | None = field("lastError", "The listener's last failure; empty while it listens.")
    desired_runners: int | None = field("desiredRunners", "The last replicas sent to the EphemeralRunnerSet.")


# --- top-level resources ---------------------------------------------------------------------

AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")
# ARC prints "Finished Runners" (.status.finishedEphemeralRunners) and "Deleting Runners"
# (.status.deletingEphemeralRunners): neither field exists, so both columns are always blank. The
# first becomes "Failed Runners" (a field ARC writes); the second is dropped (no count is stored).
_RUNNER_COUNT_COLUMNS = (
    PrinterColumn("Pending Runners", ".status.pendingEphemeralRunners", "integer"),
    PrinterColumn("Running Runners", ".status.runningEphemeralRunners", "integer"),
    PrinterColumn("Failed Runners", ".status.failedEphemeralRunners", "integer"),
)


class ScaleSetResource(CustomResource):
    """A top-level ``actions.github.com/v1alpha1`` object (apiVersion/kind implied by the class)."""

    API_VERSION = c.API_VERSION


@dataclass(kw_only=True)
class AutoscalingRunnerSet(ScaleSetResource):
    KIND: ClassVar[str] = "AutoscalingRunnerSet"
    PLURAL: ClassVar[str] = "autoscalingrunnersets"
    DESCRIPTION: ClassVar[str] = "A runner scale set: its GitHub registration, runner template and bounds."
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("Minimum Runners", ".spec.minRunners", "integer"),
        PrinterColumn("Maximum Runners", ".spec.maxRunners", "integer"),
        PrinterColumn("Current Runners", ".status.currentRunners", "integer"),
        PrinterColumn("Phase", ".status.phase", "string"),
        *_RUNNER_COUNT_COLUMNS,
        AGE,
    )

    spec: AutoscalingRunnerSetSpec = field("spec", factory=AutoscalingRunnerSetSpec)
    status: AutoscalingRunnerSetStatus = field("status", factory=AutoscalingRunnerSetStatus)


@dataclass(kw_only=True)
class EphemeralRunnerSet(ScaleSetResource):
    KIND: ClassVar[str] = "EphemeralRunnerSet"
    PLURAL: ClassVar[str] = "ephemeralrunnersets"
    DESCRIPTION: ClassVar[str] = "The runners of one template version of an AutoscalingRunnerSet."
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("DesiredReplicas", ".spec.replicas", "integer"),
        PrinterColumn("CurrentReplicas", ".status.currentReplicas", "integer"),
        *_RUNNER_COUNT_COLUMNS,
        AGE,
    )

    spec: EphemeralRunnerSetSpec = field("spec", factory=EphemeralRunnerSetSpec)
    status: EphemeralRunnerSetStatus = field("status", factory=EphemeralRunnerSetStatus)


@dataclass(kw_only=True)
class EphemeralRunner(ScaleSetResource):
    KIND: ClassVar[str] = "EphemeralRunner"
    PLURAL: ClassVar[str] = "ephemeralrunners"
    DESCRIPTION: ClassVar[str] = "One just-in-time runner of a scale set, run as a pod."
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("GitHub Config URL", ".spec.githubConfigUrl", "string"),
        PrinterColumn("RunnerId", ".status.runnerId", "number"),
        PrinterColumn("Status", ".status.phase", "string"),
        PrinterColumn("JobRepository", ".status.jobRepositoryName", "string"),
        PrinterColumn("JobWorkflowRef", ".status.jobWorkflowRef", "string"),
        PrinterColumn("WorkflowRunId", ".status.workflowRunId", "number"),
        PrinterColumn("JobDisplayName", ".status.jobDisplayName", "string"),
        PrinterColumn("JobId", ".status.jobId", "string"),
        PrinterColumn("Message", ".status.message", "string"),
        AGE,
    )

    spec: EphemeralRunnerSpec = field("spec", factory=EphemeralRunnerSpec)
    status: EphemeralRunnerStatus = field("status", factory=EphemeralRunnerStatus)


@dataclass(kw_only=True)
class AutoscalingListener(ScaleSetResource):
    KIND: ClassVar[str] = "AutoscalingListener"
    PLURAL: ClassVar[str] = "autoscalinglisteners"
    DESCRIPTION: ClassVar[str] = "The message-queue listener of one scale set."
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("GitHub Configure URL", ".spec.githubConfigUrl", "string"),
        PrinterColumn("AutoscalingRunnerSet Namespace", ".spec.autoscalingRunnerSetNamespace", "string"),
        PrinterColumn("AutoscalingRunnerSet Name", ".spec.autoscalingRunnerSetName", "string"),
        # runnerd's: the in-process listener's state (ARC's listener pod has none to show)
        PrinterColumn("Phase", ".status.phase", "string"),
        PrinterColumn("Desired Runners", ".status.desiredRunners", "integer"),
        AGE,
    )

    spec: AutoscalingListenerSpec = field("spec", factory=AutoscalingListenerSpec)
    status: AutoscalingListenerStatus = field("status", factory=AutoscalingListenerStatus)


RESOURCES: tuple[type[ScaleSetResource], ...] = (
    AutoscalingRunnerSet,
    EphemeralRunnerSet,
    EphemeralRunner,
    AutoscalingListener,
)
RESOURCE_BY_KIND: dict[str, type[ScaleSetResource]] = {r.KIND: r for r in RESOURCES}
