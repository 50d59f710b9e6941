"""``RunnerSizingPolicy`` (``runnerd.dev/v1alpha1``): which per-job sizing labels a pool accepts.

A pool is an ARC ``RunnerDeployment`` or ``RunnerSet``; the policy points at it with
``spec.scaleTargetRef`` (as an HRA does), so ARC manifests stay unchanged and the caps, which are
an administrator's decision, can be granted separately from the pool itself (RBAC on this kind).
docs/gpu-sizing.md is the design; this module holds the shapes and their validation only.

Guarantees: pure (no I/O); :meth:`ApiObject.from_dict` checks types with a path in every error, and
:func:`policy_errors` returns every semantic problem of a parsed spec (an empty list means the
policy can be compiled by :func:`runnerd.reconcile.sizing.PoolSizing.from_spec`).
"""

# RUF009: ``field()`` is this package's dataclass field specifier (see runnerd.api.meta).
# ruff: noqa: RUF009

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from runnerd.api._codec import JSON, ApiObject, ApiParseError, Quantity, Rule, field, parse_quantity
from runnerd.api.meta import AGE, CustomResource, PrinterColumn

GROUP: Final = "runnerd.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "RunnerSizingPolicy"

DEFAULT_GPU_PRODUCT_LABEL: Final = "nvidia.com/gpu.product"
"""Node label with the GPU product (set by NVIDIA GPU Feature Discovery, e.g. ``NVIDIA-H100-80GB-HBM3``)."""

ORDER_FIFO: Final = "Fifo"
ORDER_BACKFILL: Final = "Backfill"
ORDERS: Final = (ORDER_FIFO, ORDER_BACKFILL)
TARGET_KINDS: Final = ("RunnerDeployment", "RunnerSet")

PRODUCT_NAME_PATTERN: Final = r"^[a-z0-9]([a-z0-9._-]{0,30}[a-z0-9])?$"
"""A product as jobs write it in ``gpu-type=<name>`` (lower case; labels compare case-insensitively)."""
MIG_PROFILE_PATTERN: Final = r"^[1-9][0-9]?g\.[1-9][0-9]{0,3}gb(\+me)?$"
"""A MIG profile as the device plugin names its resource ``nvidia.com/mig-<profile>`` (``1g.10gb``)."""
LABEL_VALUE_PATTERN: Final = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
"""A non-empty Kubernetes label value: at most 63 characters, alphanumeric at both ends."""
_LABEL_VALUE = re.compile(LABEL_VALUE_PATTERN)
MAX_PRODUCTS: Final = 32
MAX_MIG_PROFILES: Final = 16
MAX_LISTED_JOBS: Final = 50
"""``status.waitingJobs`` and ``status.refusedJobs`` hold at most this many (oldest first)."""
K8S_CONDITION: Final = "io.k8s.apimachinery.pkg.apis.meta.v1.Condition"


def _present(data: Mapping[str, Any], key: str) -> bool:
    return data.get(key) is not None


def _positive(value: Any) -> bool:
    try:
        return value is None or parse_quantity(value) > 0
    except ValueError:
        return False


def _products_within_cap(spec: Mapping[str, Any]) -> bool:
    cap = (spec.get("max") or {}).get("gpu")
    if cap is None:
        return True
    return all(p.get("maxGpus") is None or p["maxGpus"] <= cap for p in spec.get("gpuProducts") or ())


def _positive_rule(key: str, what: str) -> Rule:
    # string() accepts both arms of int-or-string; the schema's pattern already made it a quantity.
    return Rule(
        cel=f"!has(self.{key}) || quantity(string(self.{key})).isGreaterThan(quantity('0'))",
        message=f"{what} must be greater than 0",
        check=lambda d: _positive(d.get(key)),
    )


@dataclass(kw_only=True)
class ScaleTargetRef(ApiObject):
    kind: str | None = field("kind", "RunnerDeployment (default) or RunnerSet.", enum=TARGET_KINDS)
    name: str | None = field("name", "The pool, in the policy's namespace.", required=True)


@dataclass(kw_only=True)
class GpuProduct(ApiObject):
    name: str | None = field(
        "name", "The value jobs write in gpu-type=<name>.", pattern=PRODUCT_NAME_PATTERN, required=True
    )
    node_label_value: str | None = field(
        "nodeLabelValue",
        "The GPU product node label's value on nodes of this product.",
        pattern=LABEL_VALUE_PATTERN,
        required=True,
    )
    max_gpus: int | None = field(
        "maxGpus", "Cap on gpu=N for this product (default: spec.max.gpu).", minimum=1
    )
    tolerations: list[JSON] = field(
        "tolerations", "Added to pods of this product.", k8s="io.k8s.api.core.v1.Toleration", factory=list
    )


@dataclass(kw_only=True)
class SizeCaps(ApiObject):
    RULES: ClassVar[tuple[Rule, ...]] = (
        _positive_rule("cpu", "max.cpu"),
        _positive_rule("memory", "max.memory"),
    )

    cpu: Quantity | None = field("cpu", "Largest cpu=<cores> a job may ask for; unset: cpu= is refused.")
    memory: Quantity | None = field(
        "memory", "Largest mem=<bytes> a job may ask for; unset: mem= is refused."
    )
    gpu: int | None = field(
        "gpu", "Largest gpu=<count> a job may ask for; unset: gpu= is refused.", minimum=1
    )


@dataclass(kw_only=True)
class AdmissionSettings(ApiObject):
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.backfillLimitSeconds) || (has(self.order) && self.order == 'Backfill')",
            message="backfillLimitSeconds is only meaningful with order Backfill",
            check=lambda d: not _present(d, "backfillLimitSeconds") or d.get("order") == ORDER_BACKFILL,
        ),
    )

    order: str | None = field(
        "order",
        "Fifo (default): a waiting job keeps the nodes it could use from later jobs; Backfill: later "
        "jobs that fit now may start first.",
        enum=ORDERS,
    )
    backfill_limit_seconds: int | None = field(
        "backfillLimitSeconds",
        "With Backfill: once a job has waited this long, later jobs no longer pass it (unset: never).",
        minimum=1,
    )
    max_pending: int | None = field(
        "maxPending",
        "Runner pods of this pool that may wait Pending for a node autoscaler (default 0: none).",
        minimum=0,
    )


@dataclass(kw_only=True)
class RunnerSizingPolicySpec(ApiObject):
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.gpuProducts) || size(self.gpuProducts) == 0"
            " || (has(self.max) && has(self.max.gpu))",
            message="gpuProducts are listed but no GPU cap (max.gpu) is set",
            check=lambda d: not d.get("gpuProducts") or _present(d.get("max") or {}, "gpu"),
        ),
        Rule(
            cel="!has(self.gpuProducts) || !has(self.max) || !has(self.max.gpu)"
            " || self.gpuProducts.all(p, !has(p.maxGpus) || p.maxGpus <= self.max.gpu)",
            message="a product's maxGpus is above max.gpu",
            check=_products_within_cap,
        ),
    )

    scale_target_ref: ScaleTargetRef = field("scaleTargetRef", required=True, factory=ScaleTargetRef)
    max: SizeCaps = field("max", "Per-job caps; a label whose cap is unset is refused.", factory=SizeCaps)
    gpu_products: list[GpuProduct] = field(
        "gpuProducts",
        "Products jobs may name with gpu-type= (names unique).",
        max_items=MAX_PRODUCTS,
        list_map_keys=("name",),
        factory=list,
    )
    mig_profiles: list[str] = field(
        "migProfiles",
        "MIG profiles jobs may name with mig= (e.g. 1g.10gb).",
        pattern=MIG_PROFILE_PATTERN,
        max_items=MAX_MIG_PROFILES,
        list_set=True,
        factory=list,
    )
    gpu_product_label: str | None = field(
        "gpuProductLabel", f"Node label holding the GPU product (default {DEFAULT_GPU_PRODUCT_LABEL})."
    )
    admission: AdmissionSettings = field("admission", factory=AdmissionSettings)

    @property
    def effective_gpu_product_label(self) -> str:
        return self.gpu_product_label or DEFAULT_GPU_PRODUCT_LABEL

    @property
    def effective_order(self) -> str:
        return self.admission.order or ORDER_FIFO

    @property
    def effective_max_pending(self) -> int:
        return self.admission.max_pending or 0


@dataclass(kw_only=True)
class ListedJob(ApiObject):
    """A waiting or refused sized job, as the policy's status lists it."""

    job_id: int | None = field("jobId", "The workflow job's id.", int64=True)
    repository: str | None = field("repository", "owner/name.")
    size: str | None = field("size", "The size the job asks for, e.g. 2 x GPU (h100) cpu 8.")
    since: str | None = field("since", "When the job was queued (RFC 3339).")
    reason: str | None = field("reason", "Why it waits or was refused.")


@dataclass(kw_only=True)
class RunnerSizingPolicyStatus(ApiObject):
    observed_generation: int | None = field("observedGeneration", int64=True)
    waiting: int | None = field("waiting", "Sized jobs waiting for capacity (no pod, no registration).")
    pending: int | None = field("pending", "Runner pods admitted to wait Pending for a node autoscaler.")
    placed: int | None = field("placed", "Sized jobs whose runner pod was placed.")
    refused: int | None = field("refused", "Sized jobs refused (over a cap, unknown product, ...).")
    waiting_jobs: list[ListedJob] = field(
        "waitingJobs", "The oldest waiting jobs and their reasons.", max_items=MAX_LISTED_JOBS, factory=list
    )
    refused_jobs: list[ListedJob] = field(
        "refusedJobs", "The latest refused jobs and their reasons.", max_items=MAX_LISTED_JOBS, factory=list
    )
    conditions: list[JSON] = field(
        "conditions", "Accepted (the spec is usable and the only policy of its pool), JobsRefused.",
        k8s=K8S_CONDITION, factory=list,
    )  # fmt: skip


@dataclass(kw_only=True)
class RunnerSizingPolicy(CustomResource):
    KIND: ClassVar[str] = KIND
    PLURAL: ClassVar[str] = "runnersizingpolicies"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("rsp",)
    DESCRIPTION: ClassVar[str] = (
        "Per-job sizing labels a RunnerDeployment or RunnerSet accepts, and their caps."
    )
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("Target", ".spec.scaleTargetRef.name", "string", "The pool."),
        PrinterColumn("Max GPUs", ".spec.max.gpu", "integer"),
        PrinterColumn("Order", ".spec.admission.order", "string"),
        PrinterColumn("Accepted", '.status.conditions[?(@.type=="Accepted")].status', "string"),
        PrinterColumn("Waiting", ".status.waiting", "integer"),
        PrinterColumn("Pending", ".status.pending", "integer", priority=1),
        PrinterColumn("Placed", ".status.placed", "integer", priority=1),
        PrinterColumn("Refused", ".status.refused", "integer"),
        PrinterColumn("Reason", '.status.conditions[?(@.type=="Accepted")].message', "string", priority=1),
        AGE,
    )

    spec: RunnerSizingPolicySpec = field("spec", required=True, factory=RunnerSizingPolicySpec)
    status: RunnerSizingPolicyStatus = field("status", factory=RunnerSizingPolicyStatus)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, path: str = "") -> typing.Self:
        if isinstance(data, Mapping):
            api_version, kind = data.get("apiVersion"), data.get("kind")
            if api_version is not None and api_version != API_VERSION:
                raise ApiParseError(f"{path}.apiVersion", f"expected {API_VERSION}, got {api_version!r}")
            if kind is not None and kind != KIND:
                raise ApiParseError(f"{path}.kind", f"expected {KIND}, got {kind!r}")
            data = {k: v for k, v in data.items() if k not in ("apiVersion", "kind")}
        # Skip CustomResource's actions.summerwind.dev check: the field codec does the rest.
        return super(CustomResource, cls).from_dict(data, path)

    def to_dict(self) -> JSON:
        return {"apiVersion": API_VERSION, "kind": KIND, **super(CustomResource, self).to_dict()}


RESOURCES: Final[tuple[type[CustomResource], ...]] = (RunnerSizingPolicy,)
"""Every kind of the runnerd.dev group, in CRD generation order."""


def _positive_quantity(path: str, value: Quantity | None) -> list[str]:
    if value is None:
        return []
    try:
        number = parse_quantity(value)
    except ValueError:
        return [f"{path}: {value!r} is not a quantity"]
    return [] if number > 0 else [f"{path}: must be greater than 0, got {value!r}"]


def _product_errors(spec: RunnerSizingPolicySpec) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for i, product in enumerate(spec.gpu_products):
        path = f".spec.gpuProducts[{i}]"
        name = product.name or ""
        if not re.fullmatch(PRODUCT_NAME_PATTERN, name):
            out.append(f"{path}.name: {name!r} must match {PRODUCT_NAME_PATTERN}")
        elif name in seen:
            out.append(f"{path}.name: {name!r} is listed twice")
        seen.add(name)
        value = product.node_label_value or ""
        if not value or not _LABEL_VALUE.fullmatch(value):
            out.append(f"{path}.nodeLabelValue: {value!r} is not a Kubernetes label value")
        if product.max_gpus is not None:
            if product.max_gpus < 1:
                out.append(f"{path}.maxGpus: must be at least 1")
            elif spec.max.gpu is not None and product.max_gpus > spec.max.gpu:
                out.append(f"{path}.maxGpus: {product.max_gpus} is above spec.max.gpu ({spec.max.gpu})")
    if spec.gpu_products and spec.max.gpu is None:
        out.append(".spec.max.gpu: gpuProducts are listed but no GPU cap is set")
    return out


def policy_errors(spec: RunnerSizingPolicySpec) -> list[str]:
    """Every semantic problem of ``spec`` as ``"<path>: <message>"`` (empty: the policy is usable)."""
    out: list[str] = []
    ref = spec.scale_target_ref
    if not ref.name:
        out.append(".spec.scaleTargetRef.name: required")
    if ref.kind is not None and ref.kind not in TARGET_KINDS:
        out.append(f".spec.scaleTargetRef.kind: must be one of {list(TARGET_KINDS)}, got {ref.kind!r}")
    out += _positive_quantity(".spec.max.cpu", spec.max.cpu)
    out += _positive_quantity(".spec.max.memory", spec.max.memory)
    if spec.max.gpu is not None and spec.max.gpu < 1:
        out.append(".spec.max.gpu: must be at least 1")
    out += _product_errors(spec)
    seen: set[str] = set()
    for i, profile in enumerate(spec.mig_profiles):
        if not re.fullmatch(MIG_PROFILE_PATTERN, profile):
            out.append(f".spec.migProfiles[{i}]: {profile!r} must match {MIG_PROFILE_PATTERN}")
        elif profile in seen:
            out.append(f".spec.migProfiles[{i}]: {profile!r} is listed twice")
        seen.add(profile)
    label = spec.effective_gpu_product_label
    if not re.fullmatch(
        r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", label
    ):
        out.append(f".spec.gpuProductLabel: {label!r} is not a label key")
    adm = spec.admission
    if adm.order is not None and adm.order not in ORDERS:
        out.append(f".spec.admission.order: must be one of {list(ORDERS)}, got {adm.order!r}")
    if adm.max_pending is not None and adm.max_pending < 0:
        out.append(".spec.admission.maxPending: must be 0 or more")
    if adm.backfill_limit_seconds is not None:
        if adm.backfill_limit_seconds < 1:
            out.append(".spec.admission.backfillLimitSeconds: must be at least 1")
        if spec.effective_order != ORDER_BACKFILL:
            out.append(".spec.admission.backfillLimitSeconds: only meaningful with order Backfill")
    return out
