"""The sizing -> pod spec mapping, checked on pods built by the unchanged pod builder."""

from __future__ import annotations

from typing import Any

import pytest

from runnerd.api import RunnerSpec
from runnerd.manifests import gpu as g
from runnerd.manifests.pod import build_runner_pod
from runnerd.manifests.sizedpod import mig_resource, size_resources, sized_runner_spec, unsupported_reason
from runnerd.reconcile.sizing import SizeRequest, parse_size
from tests.unit.manifests.podkit import (
    ARTICLE_DIND,
    ARTICLE_REPO,
    GPU_LIMIT,
    JIT,
    KUBERNETES_MODE,
    MODES,
    NO_DOCKER,
    OPTIONS,
    container,
    env,
    gpu_tolerations,
    spec,
)
from tests.unit.reconcile.sizingkit import A100, H100, POOL, PRODUCT_LABEL


def _size(labels: list[str]) -> SizeRequest:
    size = parse_size(labels, POOL)
    assert isinstance(size, SizeRequest), size
    return size


def _sized_pod(raw: dict[str, Any], labels: list[str], **extra: Any) -> dict[str, Any]:
    template = spec(raw, **extra)
    sized = sized_runner_spec(template, labels, _size(labels), POOL)
    return build_runner_pod("rd-abcde-fghij", "ns", sized, JIT, OPTIONS)


def _resources(p: dict[str, Any], name: str) -> dict[str, Any]:
    resources: dict[str, Any] = container(p, name).get("resources", {})
    return resources


# Where the GPU of a sized job ends up, per pod mode (the builder's rule, unchanged).
GPU_HOLDER = {"dind-sidecar": "docker", "dind-in-runner": "runner", "no-docker": "runner"}


@pytest.mark.parametrize(("mode", "holder"), GPU_HOLDER.items())
@pytest.mark.parametrize("template_gpu", [False, True], ids=["cpu-template", "gpu-template"])
def test_gpu_count_lands_where_dockerd_runs(mode: str, holder: str, template_gpu: bool) -> None:
    extra = GPU_LIMIT if template_gpu else {}
    p = _sized_pod(MODES[mode], ["self-hosted", "gpu=2"], **extra)
    res = _resources(p, holder)
    assert res["limits"]["nvidia.com/gpu"] == "2"
    assert res["requests"]["nvidia.com/gpu"] == "2"
    gpu_containers = [c["name"] for c in p["spec"]["containers"] if g.gpu_resources(c, g.GpuOptions())]
    assert gpu_containers == [holder], "exactly one container holds the job's GPUs"
    assert len(gpu_tolerations(p)) == 1
    if holder == "docker" or mode == "dind-in-runner":
        assert env(container(p, holder))["RUNNERD_GPU_COUNT"] == "2"


def test_cpu_and_memory_are_requests_and_limits_of_the_runner() -> None:
    p = _sized_pod(ARTICLE_DIND, ["self-hosted", "cpu=8", "mem=64gi"])
    res = _resources(p, "runner")
    assert res == {"limits": {"cpu": "8", "memory": "64Gi"}, "requests": {"cpu": "8", "memory": "64Gi"}}
    assert "tolerations" not in p["spec"], "no GPU: no GPU toleration"


def test_unnamed_dimensions_keep_the_template() -> None:
    template = {"resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}}
    p = _sized_pod(ARTICLE_DIND, ["cpu=16"], **template)
    assert _resources(p, "runner") == {
        "requests": {"cpu": "16", "memory": "4Gi"},
        "limits": {"cpu": "16", "memory": "8Gi"},
    }


def test_template_gpu_is_kept_when_the_job_names_no_gpu() -> None:
    p = _sized_pod(ARTICLE_DIND, ["cpu=4"], **GPU_LIMIT)
    assert _resources(p, "runner")["limits"] == {"nvidia.com/gpu": 1, "cpu": "4"}


def test_mig_replaces_whole_gpus() -> None:
    p = _sized_pod(ARTICLE_DIND, ["mig=1g.10gb"], resources={"limits": {"nvidia.com/gpu": 4}})
    res = _resources(p, "runner")
    assert res["limits"] == {"nvidia.com/mig-1g.10gb": "1"}
    assert res["requests"] == {"nvidia.com/mig-1g.10gb": "1"}
    assert len(gpu_tolerations(p)) == 1


@pytest.mark.parametrize(
    ("labels", "product", "extra_tolerations"),
    [
        (["gpu=2", "gpu-type=h100"], H100, []),
        (["gpu-type=a100"], A100, ["a100-only"]),
    ],
)
def test_product_selects_nodes_and_adds_its_tolerations(
    labels: list[str], product: str, extra_tolerations: list[str]
) -> None:
    p = _sized_pod(ARTICLE_DIND, labels, nodeSelector={"pool": "ml"})
    assert p["spec"]["nodeSelector"] == {"pool": "ml", PRODUCT_LABEL: product}
    keys = [t["key"] for t in p["spec"]["tolerations"]]
    assert keys == [*extra_tolerations, "nvidia.com/gpu"]


def test_product_overrides_the_templates_product_and_tolerations_are_not_doubled() -> None:
    own = {"key": "a100-only", "operator": "Exists"}
    p = _sized_pod(ARTICLE_DIND, ["gpu-type=a100"], nodeSelector={PRODUCT_LABEL: H100}, tolerations=[own])
    assert p["spec"]["nodeSelector"] == {PRODUCT_LABEL: A100}
    assert [t["key"] for t in p["spec"]["tolerations"]] == ["a100-only", "nvidia.com/gpu"]


def test_gpus_in_docker_entries_are_replaced_by_the_jobs() -> None:
    template = {
        "dockerdContainerResources": {"limits": {"nvidia.com/gpu": 1, "memory": "1Gi"}},
        "containers": [
            {"name": "runner", "resources": {"limits": {"cpu": "1", "nvidia.com/gpu": 1}}},
            {"name": "docker", "resources": {"limits": {"nvidia.com/gpu": 1}}},
        ],
    }
    p = _sized_pod(ARTICLE_REPO, ["gpu=4", "cpu=2"], **template)
    docker, runner = _resources(p, "docker"), _resources(p, "runner")
    # The docker entry's limits held only a GPU: without it, ARC's fallback to
    # dockerdContainerResources applies (less its GPU).
    assert docker["limits"] == {"memory": "1Gi", "nvidia.com/gpu": "4"}
    assert runner["limits"] == {"cpu": "2"}, "the GPU moved to dockerd's container, cpu stays"
    assert runner["requests"] == {"cpu": "2"}


def test_runner_labels_are_the_jobs_and_the_template_is_not_mutated() -> None:
    template = spec(ARTICLE_DIND, labels=["self-hosted", "arc-runner"])
    before = template.to_dict()
    sized = sized_runner_spec(template, ["self-hosted", "arc-runner", "GPU=2"], _size(["GPU=2"]), POOL)
    assert sized.labels == ["self-hosted", "arc-runner", "GPU=2"]
    assert template.to_dict() == before


def test_empty_size_is_todays_pod() -> None:
    template = spec(ARTICLE_DIND, **GPU_LIMIT)
    sized = sized_runner_spec(template, ["self-hosted", "gpu"], SizeRequest(), POOL)
    assert sized is not template
    assert sized.to_dict() == template.to_dict()
    assert build_runner_pod("r", "ns", sized, JIT, OPTIONS) == build_runner_pod(
        "r", "ns", template, JIT, OPTIONS
    )


@pytest.mark.parametrize(
    ("labels", "resources"),
    [
        (["gpu=2"], {"nvidia.com/gpu": "2"}),
        (["mig=3g.40gb"], {"nvidia.com/mig-3g.40gb": "1"}),
        (["cpu=500m", "mem=512Mi"], {"cpu": "500m", "memory": "512Mi"}),
        (["gpu-type=h100"], {"nvidia.com/gpu": "1"}),
    ],
)
def test_size_resources(labels: list[str], resources: dict[str, str]) -> None:
    assert size_resources(_size(labels), g.GpuOptions()) == resources


@pytest.mark.parametrize(
    ("profile", "resource"),
    [("1g.10gb", "nvidia.com/mig-1g.10gb"), ("1g.10gb+me", "nvidia.com/mig-1g.10gb.me")],
)
def test_mig_resource_is_a_valid_resource_name(profile: str, resource: str) -> None:
    assert mig_resource(profile) == resource
    assert size_resources(SizeRequest(mig_profile=profile, labels=(f"mig={profile}",)), g.GpuOptions()) == {
        resource: "1"
    }


@pytest.mark.parametrize(
    ("raw", "labels", "refused"),
    [
        (KUBERNETES_MODE, ["gpu=1"], True),
        (KUBERNETES_MODE, ["mig=1g.10gb"], True),
        (KUBERNETES_MODE, ["cpu=2"], False),
        (NO_DOCKER, ["gpu=1"], False),
    ],
)
def test_unsupported_reason(raw: dict[str, Any], labels: list[str], refused: bool) -> None:
    reason = unsupported_reason(RunnerSpec.from_dict(raw), _size(labels))
    assert (reason is not None) is refused
    if reason:
        assert "containerMode kubernetes" in reason
