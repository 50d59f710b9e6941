"""Per-job sizing labels: ``runs-on`` labels such as ``gpu=2`` or ``mem=64Gi`` -> a size request.

Grammar (docs/gpu-sizing.md, "Label grammar"). A sizing label is ``<key>=<value>`` with a key from
:data:`SIZING_KEYS`; every other label (``gpu``, ``linux``, ``disk=100``, ...) is a plain label and
is matched against the pool's labels as before.

=============  ====================================  ===============================================
label          value                                 pod
=============  ====================================  ===============================================
``gpu=N``      whole number >= 1                     ``nvidia.com/gpu: N`` (requests and limits)
``gpu-type=P`` a product of the pool's policy        node selector ``<product label>: <node value>``
                                                     (implies ``gpu=1`` without ``gpu=``/``mig=``)
``mig=PROF``   a MIG profile the policy allows       ``nvidia.com/mig-PROF: 1`` (excludes ``gpu=``)
``cpu=C``      cores: ``8``, ``0.5``, ``500m``       cpu requests and limits
``mem=M``      ``64Gi``, ``512Mi``, ``16G`` (unit    memory requests and limits
               required: k, Ki, M, Mi, G, Gi, T, Ti)
=============  ====================================  ===============================================

GitHub compares labels case-insensitively, so this grammar does too: keys, products, MIG profiles
and units are case-insensitive, and ``mem=64gi`` means exactly what ``mem=64Gi`` means (``m`` after
``mem=`` is mega, never milli). The same label twice is fine; two values for one key are refused.

Guarantees: pure; :func:`parse_size` either returns a :class:`SizeRequest` within the pool's caps
or a :class:`Rejected` whose reason names the label and the rule it breaks (for the pool's event,
condition, metric and ``runnerd status``); a job with no sizing label gets ``SizeRequest()`` (empty:
today's behaviour), whatever the pool.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from runnerd.api import parse_quantity
from runnerd.api.sizing import DEFAULT_GPU_PRODUCT_LABEL, RunnerSizingPolicySpec, policy_errors

KEY_GPU, KEY_GPU_TYPE, KEY_MIG, KEY_CPU, KEY_MEM = "gpu", "gpu-type", "mig", "cpu", "mem"
SIZING_KEYS = (KEY_GPU, KEY_GPU_TYPE, KEY_MIG, KEY_CPU, KEY_MEM)
SELF_HOSTED = "self-hosted"
TIMES = "\u00d7"
"""The multiplication sign of reasons such as ``2 × nvidia.com/gpu`` (as the issue writes them)."""  # noqa: RUF001

_CPU = re.compile(r"^(?:(\d{1,4})(?:\.(\d{1,3}))?|(\d{1,7})m)$")
_MEM = re.compile(r"^(\d{1,6}(?:\.\d{1,3})?)(ki|mi|gi|ti|k|m|g|t)$")
_MEM_UNITS = {"k": "k", "ki": "Ki", "m": "M", "mi": "Mi", "g": "G", "gi": "Gi", "t": "T", "ti": "Ti"}
_GPU = re.compile(r"^[1-9]\d{0,2}$")


@dataclass(frozen=True)
class GpuProductCaps:
    name: str
    node_label_value: str
    max_gpus: int | None = None
    tolerations: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class PoolSizing:
    """A pool's compiled policy. ``None`` caps refuse the label altogether."""

    max_cpu: Decimal | None = None
    max_memory: Decimal | None = None
    max_gpus: int | None = None
    products: Mapping[str, GpuProductCaps] = field(default_factory=dict)
    mig_profiles: frozenset[str] = frozenset()
    product_label: str = DEFAULT_GPU_PRODUCT_LABEL

    @classmethod
    def from_spec(cls, spec: RunnerSizingPolicySpec) -> PoolSizing:
        """Compile a policy; raises ``ValueError`` with every problem of :func:`policy_errors`."""
        errors = policy_errors(spec)
        if errors:
            raise ValueError("; ".join(errors))
        caps = spec.max
        return cls(
            max_cpu=None if caps.cpu is None else parse_quantity(caps.cpu),
            max_memory=None if caps.memory is None else parse_quantity(caps.memory),
            max_gpus=caps.gpu,
            products={
                (p.name or "").casefold(): GpuProductCaps(
                    name=(p.name or "").casefold(),
                    node_label_value=p.node_label_value or "",
                    max_gpus=p.max_gpus,
                    tolerations=tuple(p.tolerations),
                )
                for p in spec.gpu_products
            },
            mig_profiles=frozenset(m.casefold() for m in spec.mig_profiles),
            product_label=spec.effective_gpu_product_label,
        )


@dataclass(frozen=True)
class SizeRequest:
    """What a job asks for; ``None``/0 dimensions keep the pool template's value."""

    cpu: str | None = None
    """Kubernetes quantity (``"8"``, ``"500m"``)."""
    memory: str | None = None
    """Kubernetes quantity with a canonical unit (``"64Gi"``, ``"16G"``)."""
    gpus: int = 0
    product: GpuProductCaps | None = None
    mig_profile: str | None = None
    labels: tuple[str, ...] = ()
    """The sizing labels as the job wrote them."""

    @property
    def is_empty(self) -> bool:
        return not self.labels

    @property
    def gpu_resource_count(self) -> int:
        """GPU devices (or MIG slices) the pod will hold."""
        return 1 if self.mig_profile else self.gpus

    def describe(self) -> str:
        parts = []
        if self.mig_profile:
            parts.append(f"1 {TIMES} MIG {self.mig_profile}")
        elif self.gpus:
            parts.append(f"{self.gpus} {TIMES} GPU")
        if self.product:
            parts.append(f"({self.product.name})")
        if self.cpu:
            parts.append(f"cpu {self.cpu}")
        if self.memory:
            parts.append(f"memory {self.memory}")
        return " ".join(parts) or "template size"


@dataclass(frozen=True)
class Rejected:
    """The job asks for something this pool does not offer; ``reason`` says what and why."""

    reason: str


SizeResult = SizeRequest | Rejected


def sizing_key(label: str) -> str | None:
    """The sizing key of ``label`` (case-folded), or ``None`` for a plain label."""
    key, sep, _ = label.partition("=")
    key = key.strip().casefold()
    return key if sep and key in SIZING_KEYS else None


def split_labels(labels: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(plain, sizing)`` labels, each in the job's order."""
    plain: list[str] = []
    sizing: list[str] = []
    for label in labels:
        (sizing if sizing_key(label) else plain).append(label)
    return tuple(plain), tuple(sizing)


def runner_labels_for_job(job_labels: Sequence[str]) -> list[str]:
    """The JIT runner's labels: exactly the job's, ``self-hosted`` first, case-insensitive duplicates out.

    No label beyond the job's: every extra label would let more jobs (any whose labels are a subset)
    take this sized runner.
    """
    out = [SELF_HOSTED]
    seen = {SELF_HOSTED}
    for label in job_labels:
        if label.casefold() not in seen:
            seen.add(label.casefold())
            out.append(label)
    return out


def _values(labels: Iterable[str]) -> dict[str, str] | Rejected:
    """One value per key (case-folded); two different values of a key are refused."""
    values: dict[str, str] = {}
    written: dict[str, str] = {}
    for label in labels:
        key = sizing_key(label)
        assert key is not None
        value = label.partition("=")[2].strip().casefold()
        if not value:
            return Rejected(f"label {label!r}: {key}= needs a value")
        if key in values and values[key] != value:
            return Rejected(f"labels {written[key]!r} and {label!r} ask for two different {key} values")
        values[key], written[key] = value, label
    return values


def _cpu(value: str, pool: PoolSizing) -> str | Rejected:
    m = _CPU.fullmatch(value)
    if m is None:
        return Rejected(f"cpu={value}: write cores as a number (8, 0.5) or millicores (500m)")
    text = f"{m.group(3)}m" if m.group(3) else value
    amount = parse_quantity(text)
    if amount <= 0:
        return Rejected(f"cpu={value}: must be more than 0")
    if pool.max_cpu is None:
        return Rejected(f"cpu={value}: this pool does not accept cpu= labels")
    if amount > pool.max_cpu:
        return Rejected(f"cpu={value}: above this pool's cap of {pool.max_cpu.normalize()} cores")
    return text


def _mem(value: str, pool: PoolSizing) -> str | Rejected:
    m = _MEM.fullmatch(value)
    if m is None:
        return Rejected(f"mem={value}: write a number and a unit (512Mi, 64Gi, 16G)")
    text = m.group(1) + _MEM_UNITS[m.group(2)]
    try:
        amount = parse_quantity(text)
    except (ValueError, InvalidOperation):  # pragma: no cover - excluded by the pattern
        return Rejected(f"mem={value}: not a quantity")
    if amount <= 0:
        return Rejected(f"mem={value}: must be more than 0")
    if pool.max_memory is None:
        return Rejected(f"mem={value}: this pool does not accept mem= labels")
    if amount > pool.max_memory:
        return Rejected(f"mem={value}: above this pool's cap of {format_bytes(pool.max_memory)}")
    return text


def _gpu(
    values: Mapping[str, str], pool: PoolSizing
) -> tuple[int, GpuProductCaps | None, str | None] | Rejected:
    count_text, product_name, mig = values.get(KEY_GPU), values.get(KEY_GPU_TYPE), values.get(KEY_MIG)
    if count_text is not None and mig is not None:
        return Rejected(
            f"gpu={count_text} and mig={mig} exclude each other: ask for whole GPUs or one MIG slice"
        )
    product: GpuProductCaps | None = None
    if product_name is not None:
        product = pool.products.get(product_name)
        if product is None:
            offered = ", ".join(sorted(pool.products)) or "none"
            return Rejected(f"gpu-type={product_name}: not offered by this pool (offered: {offered})")
    if mig is not None:
        if mig not in pool.mig_profiles:
            allowed = ", ".join(sorted(pool.mig_profiles)) or "none"
            return Rejected(f"mig={mig}: not allowed in this pool (allowed: {allowed})")
        return 0, product, mig
    if count_text is None:
        return (1, product, None) if product is not None else (0, None, None)
    if not _GPU.fullmatch(count_text):
        return Rejected(f"gpu={count_text}: write a whole number of GPUs, 1 or more")
    count = int(count_text)
    if pool.max_gpus is None:
        return Rejected(f"gpu={count_text}: this pool does not accept gpu= labels")
    cap = product.max_gpus if product is not None and product.max_gpus is not None else pool.max_gpus
    if count > cap:
        where = (
            f"gpu-type {product.name}"
            if product is not None and product.max_gpus is not None
            else "this pool"
        )
        return Rejected(f"gpu={count}: above the cap of {cap} GPUs for {where}")
    return count, product, None


def parse_size(job_labels: Iterable[str], pool: PoolSizing | None) -> SizeResult:
    """The size a job asks for in ``pool`` (``None``: the pool has no sizing policy)."""
    _, sizing = split_labels(job_labels)
    if not sizing:
        return SizeRequest()
    if pool is None:
        return Rejected(f"labels {list(sizing)} ask for a size, but this pool has no RunnerSizingPolicy")
    values = _values(sizing)
    if isinstance(values, Rejected):
        return values
    cpu = _cpu(values[KEY_CPU], pool) if KEY_CPU in values else None
    if isinstance(cpu, Rejected):
        return cpu
    mem = _mem(values[KEY_MEM], pool) if KEY_MEM in values else None
    if isinstance(mem, Rejected):
        return mem
    gpu = _gpu(values, pool)
    if isinstance(gpu, Rejected):
        return gpu
    gpus, product, mig = gpu
    return SizeRequest(cpu=cpu, memory=mem, gpus=gpus, product=product, mig_profile=mig, labels=sizing)


def format_bytes(amount: Decimal) -> str:
    """``68719476736`` -> ``64Gi``: the largest unit (binary or decimal) that divides it exactly."""
    units = (
        ("Ti", 2**40),
        ("T", 10**12),
        ("Gi", 2**30),
        ("G", 10**9),
        ("Mi", 2**20),
        ("M", 10**6),
        ("Ki", 2**10),
    )
    for unit, factor in (*units, ("k", 10**3)):
        if amount >= factor and amount % factor == 0:
            return f"{amount // factor}{unit}"
    return str(amount.normalize())
