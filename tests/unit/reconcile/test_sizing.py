from __future__ import annotations

from decimal import Decimal

import pytest

from runnerd.api.sizing import RunnerSizingPolicySpec
from runnerd.reconcile.sizing import (
    PoolSizing,
    Rejected,
    SizeRequest,
    format_bytes,
    parse_size,
    runner_labels_for_job,
    sizing_key,
    split_labels,
)
from tests.unit.reconcile.sizingkit import A100, H100, POLICY, POOL


def _ok(labels: list[str], pool: PoolSizing | None = POOL) -> SizeRequest:
    result = parse_size(labels, pool)
    assert isinstance(result, SizeRequest), result
    return result


@pytest.mark.parametrize(
    ("labels", "cpu", "memory", "gpus", "product", "mig"),
    [
        pytest.param(["gpu=2"], None, None, 2, None, None, id="gpu-count"),
        pytest.param(["GPU=2"], None, None, 2, None, None, id="key-case"),
        pytest.param(["gpu=8"], None, None, 8, None, None, id="gpu-at-cap"),
        pytest.param(["gpu=2", "gpu-type=h100"], None, None, 2, H100, None, id="count-and-product"),
        pytest.param(["gpu-type=H100"], None, None, 1, H100, None, id="product-implies-one-gpu"),
        pytest.param(["gpu=4", "gpu-type=a100"], None, None, 4, A100, None, id="product-at-its-cap"),
        pytest.param(["mig=1g.10gb"], None, None, 0, None, "1g.10gb", id="mig"),
        pytest.param(["MIG=3G.40GB", "gpu-type=a100"], None, None, 0, A100, "3g.40gb", id="mig-product-case"),
        pytest.param(["cpu=8"], "8", None, 0, None, None, id="cpu-cores"),
        pytest.param(["cpu=0.5"], "0.5", None, 0, None, None, id="cpu-fraction"),
        pytest.param(["cpu=500m"], "500m", None, 0, None, None, id="cpu-millicores"),
        pytest.param(["cpu=500M"], "500m", None, 0, None, None, id="cpu-millicores-case"),
        pytest.param(["cpu=32"], "32", None, 0, None, None, id="cpu-at-cap"),
        pytest.param(["mem=64Gi"], None, "64Gi", 0, None, None, id="mem-gi"),
        pytest.param(["mem=64gi"], None, "64Gi", 0, None, None, id="mem-unit-case"),
        pytest.param(["mem=512M"], None, "512M", 0, None, None, id="mem-m-is-mega"),
        pytest.param(["mem=512mi"], None, "512Mi", 0, None, None, id="mem-mi"),
        pytest.param(["mem=1.5Gi"], None, "1.5Gi", 0, None, None, id="mem-fraction"),
        pytest.param(["mem=256Gi"], None, "256Gi", 0, None, None, id="mem-at-cap"),
        pytest.param(["gpu=1", "gpu=1"], None, None, 1, None, None, id="same-label-twice"),
        pytest.param(["gpu=1", "GPU=1"], None, None, 1, None, None, id="same-label-other-case"),
        pytest.param(
            ["self-hosted", "gpu", "gpu=2", "cpu=16", "mem=128Gi", "gpu-type=h100"],
            "16",
            "128Gi",
            2,
            H100,
            None,
            id="everything",
        ),
    ],
)
def test_valid_sizes(
    labels: list[str], cpu: str | None, memory: str | None, gpus: int, product: str | None, mig: str | None
) -> None:
    size = _ok(labels)
    assert (size.cpu, size.memory, size.gpus, size.mig_profile) == (cpu, memory, gpus, mig)
    assert (size.product.node_label_value if size.product else None) == product
    assert not size.is_empty


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        pytest.param(["gpu=two"], "gpu=two: write a whole number of GPUs, 1 or more", id="gpu-not-a-number"),
        pytest.param(["gpu=0"], "gpu=0: write a whole number of GPUs, 1 or more", id="gpu-zero"),
        pytest.param(["gpu=1.5"], "gpu=1.5: write a whole number", id="gpu-fraction"),
        pytest.param(["gpu=-1"], "gpu=-1: write a whole number", id="gpu-negative"),
        pytest.param(["gpu=9"], "gpu=9: above the cap of 8 GPUs for this pool", id="gpu-over-cap"),
        pytest.param(
            ["gpu=5", "gpu-type=a100"], "gpu=5: above the cap of 4 GPUs for gpu-type a100", id="product-cap"
        ),
        pytest.param(
            ["gpu=9", "gpu-type=h100"], "gpu=9: above the cap of 8 GPUs for this pool", id="pool-cap-product"
        ),
        pytest.param(
            ["gpu-type=v100"], "gpu-type=v100: not offered by this pool (offered: a100, h100)", id="unknown"
        ),
        pytest.param(
            ["mig=7g.80gb"], "mig=7g.80gb: not allowed in this pool (allowed: 1g.10gb, 3g.40gb)", id="mig"
        ),
        pytest.param(["gpu=1", "mig=1g.10gb"], "gpu=1 and mig=1g.10gb exclude each other", id="gpu-and-mig"),
        pytest.param(
            ["gpu=1", "gpu=2"], "labels 'gpu=1' and 'gpu=2' ask for two different gpu values", id="dup"
        ),
        pytest.param(["gpu-type=h100", "gpu-type=a100"], "two different gpu-type values", id="dup-product"),
        pytest.param(["gpu="], "label 'gpu=': gpu= needs a value", id="empty-value"),
        pytest.param(["cpu=33"], "cpu=33: above this pool's cap of 32 cores", id="cpu-over-cap"),
        pytest.param(["cpu=0"], "cpu=0: must be more than 0", id="cpu-zero"),
        pytest.param(["cpu=eight"], "cpu=eight: write cores as a number", id="cpu-not-a-number"),
        pytest.param(["cpu=8c"], "cpu=8c: write cores", id="cpu-suffix"),
        pytest.param(["mem=64"], "mem=64: write a number and a unit", id="mem-no-unit"),
        pytest.param(["mem=64GB"], "mem=64gb: write a number and a unit", id="mem-bad-unit"),
        pytest.param(["mem=257Gi"], "mem=257gi: above this pool's cap of 256Gi", id="mem-over-cap"),
        pytest.param(["mem=0Gi"], "mem=0gi: must be more than 0", id="mem-zero"),
    ],
)
def test_rejected_sizes(labels: list[str], reason: str) -> None:
    result = parse_size(labels, POOL)
    assert isinstance(result, Rejected)
    assert reason in result.reason


@pytest.mark.parametrize(
    ("policy_max", "label", "reason"),
    [
        pytest.param({"gpu": 1}, "cpu=1", "cpu=1: this pool does not accept cpu= labels", id="no-cpu-cap"),
        pytest.param(
            {"cpu": "1"}, "mem=1Gi", "mem=1gi: this pool does not accept mem= labels", id="no-mem-cap"
        ),
        pytest.param({"cpu": "1"}, "gpu=1", "gpu=1: this pool does not accept gpu= labels", id="no-gpu-cap"),
        pytest.param(
            {"cpu": "1"}, "gpu-type=h100", "not offered by this pool (offered: none)", id="no-products"
        ),
        pytest.param({"cpu": "1"}, "mig=1g.10gb", "not allowed in this pool (allowed: none)", id="no-mig"),
    ],
)
def test_unset_cap_refuses_the_label(policy_max: dict[str, object], label: str, reason: str) -> None:
    pool = PoolSizing.from_spec(
        RunnerSizingPolicySpec.from_dict({"scaleTargetRef": {"name": "p"}, "max": policy_max})
    )
    result = parse_size([label], pool)
    assert isinstance(result, Rejected)
    assert reason in result.reason


@pytest.mark.parametrize("pool", [POOL, None], ids=["sized-pool", "pool-without-policy"])
@pytest.mark.parametrize(
    "labels",
    [
        pytest.param([], id="no-labels"),
        pytest.param(["self-hosted", "gpu", "linux"], id="plain"),
        pytest.param(["disk=100", "family=m7a"], id="foreign-key-value-labels-are-plain"),
        pytest.param(["gpus=2"], id="typo-is-plain"),
    ],
)
def test_jobs_without_sizing_labels_keep_todays_behaviour(labels: list[str], pool: PoolSizing | None) -> None:
    assert parse_size(labels, pool) == SizeRequest()
    assert SizeRequest().is_empty


def test_pool_without_policy_rejects_sizing_labels() -> None:
    result = parse_size(["self-hosted", "gpu=1"], None)
    assert result == Rejected("labels ['gpu=1'] ask for a size, but this pool has no RunnerSizingPolicy")


@pytest.mark.parametrize(
    ("label", "key"),
    [
        ("gpu=1", "gpu"),
        ("GPU-Type=h100", "gpu-type"),
        ("mem=1Gi", "mem"),
        ("gpu", None),
        ("gpu-type", None),
        ("disk=1", None),
        ("=1", None),
    ],
)
def test_sizing_key(label: str, key: str | None) -> None:
    assert sizing_key(label) == key


def test_split_labels_keeps_order() -> None:
    assert split_labels(["self-hosted", "gpu=2", "linux", "cpu=4"]) == (
        ("self-hosted", "linux"),
        ("gpu=2", "cpu=4"),
    )


@pytest.mark.parametrize(
    ("job", "runner"),
    [
        (["gpu=2"], ["self-hosted", "gpu=2"]),
        (["self-hosted", "linux", "gpu=2"], ["self-hosted", "linux", "gpu=2"]),
        (["Self-Hosted", "GPU=2", "gpu=2", "x"], ["self-hosted", "GPU=2", "x"]),
    ],
)
def test_runner_labels_are_exactly_the_jobs(job: list[str], runner: list[str]) -> None:
    assert runner_labels_for_job(job) == runner


def test_size_keeps_the_labels_as_written_and_describes_itself() -> None:
    size = _ok(["self-hosted", "GPU=2", "gpu-type=h100", "cpu=8", "mem=64Gi"])
    assert size.labels == ("GPU=2", "gpu-type=h100", "cpu=8", "mem=64Gi")
    assert size.describe() == "2 × GPU (h100) cpu 8 memory 64Gi"  # noqa: RUF001
    assert size.gpu_resource_count == 2
    mig = _ok(["mig=1g.10gb"])
    assert (mig.describe(), mig.gpu_resource_count) == ("1 × MIG 1g.10gb", 1)  # noqa: RUF001
    assert _ok(["cpu=1"]).describe() == "cpu 1"


def test_compiled_pool() -> None:
    assert POOL.max_cpu == Decimal(32)
    assert POOL.max_memory == Decimal(256 * 2**30)
    assert sorted(POOL.products) == ["a100", "h100"]
    assert POOL.products["a100"].tolerations[0]["key"] == "a100-only"
    assert POOL.mig_profiles == frozenset({"1g.10gb", "3g.40gb"})
    assert POOL.product_label == "nvidia.com/gpu.product"


def test_invalid_policy_does_not_compile() -> None:
    spec = RunnerSizingPolicySpec.from_dict({**POLICY, "max": {"gpu": 0}})
    with pytest.raises(ValueError, match=r"max\.gpu: must be at least 1"):
        PoolSizing.from_spec(spec)


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (64 * 2**30, "64Gi"),
        (2**40, "1Ti"),
        (1536 * 2**20, "1536Mi"),
        (16 * 10**9, "16G"),
        (1000, "1k"),
        (1001, "1001"),
    ],
)
def test_format_bytes(amount: int, text: str) -> None:
    assert format_bytes(Decimal(amount)) == text
