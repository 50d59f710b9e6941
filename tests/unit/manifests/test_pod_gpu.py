"""GPU runners: toleration, where the GPU request goes in each mode, and the dockerd GPU setup."""

from __future__ import annotations

from typing import Any

import pytest

from runnerd.manifests import gpu as g
from runnerd.manifests.pod import PodOptions
from tests.unit.manifests.podkit import (
    ARTICLE_DIND,
    ARTICLE_REPO,
    GPU_LIMIT,
    KUBERNETES_MODE,
    MODES,
    NO_DOCKER,
    container,
    env,
    gpu_tolerations,
    mounts,
    pod,
    volumes,
)

TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
DOCKERD_GPU_ENV = {
    "RUNNERD_GPU": "1",
    "RUNNERD_GPU_COUNT": "1",
    "RUNNERD_CDI_SPEC_DIR": "/etc/cdi",
    "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
}


def limits(c: dict[str, Any]) -> dict[str, Any]:
    return dict(c.get("resources", {}).get("limits", {}))


# mode -> (container holding the GPU, it runs dockerd, env expected on it)
PLACEMENT: dict[str, tuple[str, bool, dict[str, str]]] = {
    "dind-sidecar": ("docker", True, DOCKERD_GPU_ENV),
    "dind-in-runner": ("runner", True, DOCKERD_GPU_ENV),
    "no-docker": ("runner", False, {"NVIDIA_DRIVER_CAPABILITIES": "compute,utility"}),
    "kubernetes": ("runner", False, {"NVIDIA_DRIVER_CAPABILITIES": "compute,utility"}),
}


@pytest.mark.parametrize("mode", sorted(PLACEMENT))
@pytest.mark.parametrize("where", ["limits", "requests", "both"])
def test_gpu_in_each_mode(mode: str, where: str) -> None:
    resources: dict[str, Any] = {"limits": {"cpu": "4"}}
    if where in ("limits", "both"):
        resources["limits"]["nvidia.com/gpu"] = 1
    if where in ("requests", "both"):
        resources["requests"] = {"nvidia.com/gpu": 1}
    p = pod({**MODES[mode], "resources": resources})
    holder_name, runs_dockerd, expected_env = PLACEMENT[mode]
    holder = container(p, holder_name)

    assert gpu_tolerations(p) == [TOLERATION]
    assert limits(holder)["nvidia.com/gpu"] == 1  # a request alone becomes a limit (required)
    for ct in p["spec"]["containers"]:
        if ct is not holder:
            assert "nvidia.com/gpu" not in limits(ct)
            assert "nvidia.com/gpu" not in ct.get("resources", {}).get("requests", {})
    assert expected_env.items() <= env(holder).items()
    for ct in p["spec"]["containers"]:
        assert "NVIDIA_VISIBLE_DEVICES" not in env(ct)  # the device plugin owns it
    assert limits(container(p, "runner")).get("cpu") == "4"  # only the GPU moves
    assert ("/etc/cdi" in mounts(holder)) is runs_dockerd
    assert ("runnerd-cdi" in volumes(p)) is runs_dockerd
    init_names = [c["name"] for c in p["spec"].get("initContainers", [])]
    assert (g.INSTALL_CONTAINER in init_names) is (mode == "dind-sidecar")


def test_sidecar_gpu_setup_in_detail() -> None:
    p = pod({**ARTICLE_REPO, **GPU_LIMIT, "imagePullPolicy": "IfNotPresent"})
    docker = container(p, "docker")
    assert docker["command"] == ["/bin/sh", "-c", g.DOCKERD_GPU_WRAPPER, "runnerd-dockerd"]
    assert docker["args"][:2] == ["dockerd", "--host=unix:///run/docker.sock"]  # still ARC's dockerd args
    assert mounts(docker)["/runnerd/bin"] == "runnerd-bin"
    assert volumes(p)["runnerd-bin"] == {"name": "runnerd-bin", "emptyDir": {}}
    assert volumes(p)["runnerd-cdi"] == {"name": "runnerd-cdi", "emptyDir": {}}
    (install,) = p["spec"]["initContainers"]
    assert install["image"] == container(p, "runner")["image"]
    assert install["imagePullPolicy"] == "IfNotPresent"
    assert install["volumeMounts"] == [{"name": "runnerd-bin", "mountPath": "/runnerd/bin"}]
    assert "resources" not in container(p, "runner")
    # the wrapper runs the helper first, then the image's entrypoint with the dockerd args
    assert 'exec "$@" $extra' in g.DOCKERD_GPU_WRAPPER
    assert "runnerd-gpu-setup" in g.DOCKERD_GPU_WRAPPER
    assert "dockerd-entrypoint.sh" in g.DOCKERD_GPU_WRAPPER


def test_article_dind_gpu_runner() -> None:
    """The article's GPU setup (dockerd in the runner) with a GPU limit: one privileged container
    that holds the GPU and runs the setup before dockerd; no manual --device/-v in the job."""
    p = pod({**ARTICLE_DIND, **GPU_LIMIT})
    runner = container(p, "runner")
    assert runner["securityContext"] == {"privileged": True}
    assert limits(runner) == {"nvidia.com/gpu": 1}
    assert DOCKERD_GPU_ENV.items() <= env(runner).items()
    assert mounts(runner)["/etc/cdi"] == "runnerd-cdi"
    assert "command" not in runner  # the runner image's entrypoint runs the helper (RUNNERD_GPU=1)
    assert "initContainers" not in p["spec"]


def test_gpu_count_is_the_allocated_number() -> None:
    p = pod({**ARTICLE_REPO, "resources": {"limits": {"nvidia.com/gpu": "4"}}})
    assert env(container(p, "docker"))["RUNNERD_GPU_COUNT"] == "4"


def test_mig_slices_are_gpus() -> None:
    p = pod({**ARTICLE_REPO, "resources": {"limits": {"nvidia.com/mig-1g.10gb": 2}}})
    docker = container(p, "docker")
    assert limits(docker) == {"nvidia.com/mig-1g.10gb": 2}
    assert env(docker)["RUNNERD_GPU_COUNT"] == "2"
    assert gpu_tolerations(p) == [TOLERATION]


@pytest.mark.parametrize("qty", [0, "0"])
def test_zero_gpus_is_not_a_gpu_runner(qty: Any) -> None:
    p = pod({**ARTICLE_REPO, "resources": {"limits": {"nvidia.com/gpu": qty}}})
    assert gpu_tolerations(p) == []
    assert "RUNNERD_GPU" not in env(container(p, "docker"))


def test_non_gpu_pod_has_no_gpu_bits() -> None:
    options = PodOptions(gpu=g.GpuOptions(runtime_class_name="nvidia"))
    p = pod(ARTICLE_REPO, options=options)
    assert "tolerations" not in p["spec"]
    assert "runtimeClassName" not in p["spec"]
    assert "initContainers" not in p["spec"]
    assert "command" not in container(p, "docker")


@pytest.mark.parametrize(
    ("existing", "added"),
    [
        pytest.param([], True, id="none"),
        pytest.param([TOLERATION], False, id="same"),
        pytest.param(
            [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}],
            False,
            id="equal-same-key",
        ),
        pytest.param([{"key": "nvidia.com/gpu", "operator": "Exists"}], False, id="all-effects"),
        pytest.param([{"operator": "Exists"}], False, id="tolerate-everything"),
        pytest.param(
            [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}], True, id="other-effect"
        ),
        pytest.param([{"key": "dedicated", "operator": "Exists"}], True, id="other-key"),
    ],
)
def test_toleration_added_once(existing: list[dict[str, Any]], added: bool) -> None:
    p = pod({**ARTICLE_REPO, **GPU_LIMIT, "tolerations": existing})
    assert p["spec"]["tolerations"] == existing + ([TOLERATION] if added else [])


def test_custom_gpu_toleration_option() -> None:
    aks = {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    p = pod({**ARTICLE_REPO, **GPU_LIMIT}, options=PodOptions(gpu=g.GpuOptions(toleration=aks)))
    assert p["spec"]["tolerations"] == [aks]


def test_runtime_class_user_choice_is_respected() -> None:
    options = PodOptions(gpu=g.GpuOptions(runtime_class_name="nvidia-cdi"))
    assert pod({**ARTICLE_REPO, **GPU_LIMIT}, options=options)["spec"]["runtimeClassName"] == "nvidia-cdi"
    p = pod({**ARTICLE_REPO, **GPU_LIMIT, "runtimeClassName": "nvidia"}, options=options)
    assert p["spec"]["runtimeClassName"] == "nvidia"
    assert (
        pod({**ARTICLE_REPO, **GPU_LIMIT, "runtimeClassName": "nvidia"})["spec"]["runtimeClassName"]
        == "nvidia"
    )
    assert "runtimeClassName" not in pod({**ARTICLE_REPO, **GPU_LIMIT})["spec"]


def test_explicit_docker_gpu_is_kept_and_runner_keeps_its_own() -> None:
    p = pod({**ARTICLE_REPO, "dockerdContainerResources": {"limits": {"nvidia.com/gpu": 1}}})
    assert limits(container(p, "docker")) == {"nvidia.com/gpu": 1}
    assert gpu_tolerations(p) == [TOLERATION]
    assert env(container(p, "docker"))["RUNNERD_GPU"] == "1"

    both = pod(
        {
            **ARTICLE_REPO,
            "resources": {"limits": {"nvidia.com/gpu": 2}},
            "dockerdContainerResources": {"limits": {"nvidia.com/gpu": 1}},
        }
    )
    assert limits(container(both, "runner")) == {"nvidia.com/gpu": 2}
    assert limits(container(both, "docker")) == {"nvidia.com/gpu": 1}
    assert env(container(both, "runner"))["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert gpu_tolerations(both) == [TOLERATION]


def test_gpu_in_containers_override_runner_entry() -> None:
    p = pod(
        {**ARTICLE_REPO, "containers": [{"name": "runner", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}
    )
    assert limits(container(p, "docker")) == {"nvidia.com/gpu": 1}
    assert "resources" not in container(p, "runner")


def test_user_env_wins_over_gpu_defaults() -> None:
    p = pod(
        {
            **ARTICLE_REPO,
            **GPU_LIMIT,
            "dockerEnv": [{"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "all"}],
        }
    )
    assert env(container(p, "docker"))["NVIDIA_DRIVER_CAPABILITIES"] == "all"
    p = pod({**NO_DOCKER, **GPU_LIMIT, "env": [{"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute"}]})
    assert env(container(p, "runner"))["NVIDIA_DRIVER_CAPABILITIES"] == "compute"


def test_user_docker_command_disables_the_wrapper() -> None:
    p = pod({**ARTICLE_REPO, **GPU_LIMIT, "containers": [{"name": "docker", "command": ["/my-dockerd.sh"]}]})
    docker = container(p, "docker")
    assert docker["command"] == ["/my-dockerd.sh"]
    assert "initContainers" not in p["spec"]
    assert "runnerd-bin" not in volumes(p)
    assert env(docker)["RUNNERD_GPU"] == "1"  # a custom entrypoint can still run the helper


def test_gpu_in_a_user_sidecar_gets_the_toleration() -> None:
    sidecar = {"name": "dcgm", "image": "dcgm-exporter", "resources": {"limits": {"nvidia.com/gpu": 1}}}
    p = pod({**ARTICLE_REPO, "sidecarContainers": [sidecar]})
    assert gpu_tolerations(p) == [TOLERATION]
    assert container(p, "dcgm") == sidecar
    assert "RUNNERD_GPU" not in env(container(p, "docker"))


def test_user_volume_named_like_the_cdi_volume_is_used() -> None:
    p = pod(
        {**ARTICLE_REPO, **GPU_LIMIT, "volumes": [{"name": "runnerd-cdi", "hostPath": {"path": "/etc/cdi"}}]}
    )
    assert volumes(p)["runnerd-cdi"] == {"name": "runnerd-cdi", "hostPath": {"path": "/etc/cdi"}}


def test_kubernetes_mode_gpu_stays_on_runner() -> None:
    p = pod({**KUBERNETES_MODE, **GPU_LIMIT})
    assert limits(container(p, "runner")) == {"nvidia.com/gpu": 1}
    assert "RUNNERD_GPU" not in env(container(p, "runner"))


@pytest.mark.parametrize(
    ("tolerations", "wanted", "expected"),
    [
        ([], TOLERATION, False),
        ([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}], TOLERATION, True),
        ([{"key": "nvidia.com/gpu", "effect": "PreferNoSchedule"}], TOLERATION, False),
        ([{"key": "other", "operator": "Exists"}], TOLERATION, False),
        ([{"key": "", "operator": "Exists"}], TOLERATION, True),
        ([{"key": "nvidia.com/gpu", "operator": "Exists"}], {"key": "nvidia.com/gpu"}, True),
    ],
)
def test_tolerates(tolerations: list[dict[str, Any]], wanted: dict[str, Any], expected: bool) -> None:
    assert g.tolerates(tolerations, wanted) is expected
