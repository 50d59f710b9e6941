from __future__ import annotations

import copy
from typing import Any

import pytest

from runnerd.api import ApiParseError
from runnerd.api.sizing import API_VERSION, KIND, RunnerSizingPolicy, RunnerSizingPolicySpec, policy_errors
from tests.unit.reconcile.sizingkit import POLICY


def test_round_trip_and_defaults() -> None:
    raw = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "gpu"}, "spec": POLICY}
    obj = RunnerSizingPolicy.from_dict(raw)
    assert obj.to_dict() == raw
    assert policy_errors(obj.spec) == []
    assert obj.spec.effective_order == "Fifo"
    assert obj.spec.effective_max_pending == 0
    assert obj.spec.effective_gpu_product_label == "nvidia.com/gpu.product"
    bare = RunnerSizingPolicySpec.from_dict({"scaleTargetRef": {"name": "p"}})
    assert policy_errors(bare) == []
    assert (bare.effective_order, bare.effective_max_pending) == ("Fifo", 0)


def test_type_errors_have_a_path() -> None:
    with pytest.raises(ApiParseError, match=r"^\.spec\.max\.gpu: expected an integer"):
        RunnerSizingPolicy.from_dict({"spec": {"scaleTargetRef": {"name": "p"}, "max": {"gpu": "2"}}}, "")


def _with(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(POLICY)
    *parents, last = path.split(".")
    node: Any = spec
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return spec


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        pytest.param(_with("scaleTargetRef", {}), ".spec.scaleTargetRef.name: required", id="no-target"),
        pytest.param(
            _with("scaleTargetRef.kind", "Runner"), "scaleTargetRef.kind: must be one of", id="kind"
        ),
        pytest.param(_with("max.cpu", "lots"), ".spec.max.cpu: 'lots' is not a quantity", id="cpu-quantity"),
        pytest.param(_with("max.memory", "0"), ".spec.max.memory: must be greater than 0", id="memory-zero"),
        pytest.param(_with("max.gpu", 0), ".spec.max.gpu: must be at least 1", id="gpu-zero"),
        pytest.param(
            _with("max", {"cpu": "1"}), "gpuProducts are listed but no GPU cap", id="products-no-cap"
        ),
        pytest.param(
            _with("gpuProducts.0.name", "H100"), "gpuProducts[0].name: 'H100' must match", id="upper"
        ),
        pytest.param(
            _with("gpuProducts.1.name", "h100"), "gpuProducts[1].name: 'h100' is listed twice", id="dup"
        ),
        pytest.param(
            _with("gpuProducts.0.nodeLabelValue", "a b"), "is not a Kubernetes label value", id="value"
        ),
        pytest.param(
            _with("gpuProducts.1.maxGpus", 16), "maxGpus: 16 is above spec.max.gpu (8)", id="product-cap"
        ),
        pytest.param(
            _with("gpuProducts.1.maxGpus", 0), "gpuProducts[1].maxGpus: must be at least 1", id="cap-0"
        ),
        pytest.param(_with("migProfiles", ["1g.10gb", "1g.10gb"]), "'1g.10gb' is listed twice", id="mig-dup"),
        pytest.param(
            _with("migProfiles", ["mig-1g.10gb"]), "migProfiles[0]: 'mig-1g.10gb' must match", id="mig"
        ),
        pytest.param(
            _with("gpuProductLabel", "a b"), ".spec.gpuProductLabel: 'a b' is not a label key", id="key"
        ),
        pytest.param(_with("admission.order", "Lifo"), ".spec.admission.order: must be one of", id="order"),
        pytest.param(_with("admission.maxPending", -1), "maxPending: must be 0 or more", id="pending"),
        pytest.param(
            _with("admission.backfillLimitSeconds", 60), "only meaningful with order Backfill", id="limit"
        ),
    ],
)
def test_policy_errors(spec: dict[str, Any], error: str) -> None:
    errors = policy_errors(RunnerSizingPolicySpec.from_dict(spec))
    assert any(error in e for e in errors), errors


def test_mig_profile_with_media_extensions_is_valid() -> None:
    spec = RunnerSizingPolicySpec.from_dict(_with("migProfiles", ["1g.10gb+me", "7g.80gb"]))
    assert policy_errors(spec) == []


def test_backfill_limit_with_backfill_is_valid() -> None:
    spec = RunnerSizingPolicySpec.from_dict(
        _with("admission", {"order": "Backfill", "backfillLimitSeconds": 600})
    )
    assert policy_errors(spec) == []
    assert spec.effective_order == "Backfill"
