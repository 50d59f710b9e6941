"""GPU scale-set runner pods: the legacy mode's GPU treatment (:mod:`runnerd.manifests.gpu`) applied to
the EphemeralRunner's pod, for each shape of ``containerMode`` the scale-set chart renders."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runnerd.manifests import gpu as g
from runnerd.manifests.scaleset import build_runner_pod

RUNNER_IMAGE = "ghcr.io/actions/actions-runner:2.329.0"
TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
DOCKERD_GPU_ENV = {
    "RUNNERD_GPU": "1",
    "RUNNERD_GPU_COUNT": "1",
    "RUNNERD_CDI_SPEC_DIR": "/etc/cdi",
    "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
}
DIND_ARGS = ["dockerd", "--host=unix:///var/run/docker.sock", "--group=$(DOCKER_GROUP_GID)"]
EXTERNALS = {"name": "init-dind-externals", "image": RUNNER_IMAGE, "command": ["cp"]}


def dind(**extra: Any) -> dict[str, Any]:
    """The chart's dind container (trimmed to what the GPU setup reads)."""
    return {
        "name": "dind",
        "image": "docker:dind",
        "args": list(DIND_ARGS),
        "securityContext": {"privileged": True},
        "volumeMounts": [{"name": "dind-sock", "mountPath": "/var/run"}],
        **extra,
    }


def runner(resources: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "runner", "image": RUNNER_IMAGE, "command": ["/home/runner/run.sh"]}
    if resources is not None:
        out["resources"] = resources
    return out


def template(mode: str, resources: dict[str, Any] | None, **spec: Any) -> dict[str, Any]:
    """A pod spec as the chart renders it: ``native`` (Kubernetes >= 1.29: dind is a restartable
    init container), ``container`` (dind beside the runner), ``plain`` (no dind: kubernetes modes
    or no containerMode)."""
    out: dict[str, Any] = {"containers": [runner(resources)], **spec}
    if mode == "native":
        sidecar = dind(restartPolicy="Always")
        out["initContainers"] = [dict(EXTERNALS), sidecar, *out.get("initContainers", [])]
    elif mode == "container":
        out["initContainers"] = [dict(EXTERNALS), *out.get("initContainers", [])]
        out["containers"].append(dind())
    out["volumes"] = [{"name": "dind-sock", "emptyDir": {}}]
    return out


def build(pod_spec: dict[str, Any], gpu: g.GpuOptions | None = None) -> dict[str, Any]:
    er = {
        "kind": "EphemeralRunner",
        "apiVersion": "actions.github.com/v1alpha1",
        "metadata": {"name": "set-abcde-runner-xyz12", "namespace": "arc-runners", "uid": "er-uid"},
        "spec": {"githubConfigUrl": "https://github.com/octo", "spec": copy.deepcopy(pod_spec)},
    }
    spec: dict[str, Any] = build_runner_pod(er, gpu)["spec"]
    return spec


def named(spec: dict[str, Any], name: str) -> dict[str, Any]:
    found = [ct for key in ("initContainers", "containers") for ct in spec.get(key, []) if ct["name"] == name]
    assert len(found) == 1, name
    return found[0]


def env(ct: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in ct.get("env", [])}


ONE_GPU = {"limits": {"nvidia.com/gpu": 1}}


@pytest.mark.parametrize("mode", ["native", "container"])
@pytest.mark.parametrize(
    "resources",
    [ONE_GPU, {"requests": {"nvidia.com/gpu": "1"}}, {"limits": {"nvidia.com/gpu": 1, "cpu": "2"}}],
    ids=["limits", "requests", "with-cpu"],
)
def test_dind_gets_the_runners_gpu_and_runs_the_helper(mode: str, resources: dict[str, Any]) -> None:
    spec = build(template(mode, resources))
    d, r = named(spec, "dind"), named(spec, "runner")
    assert g.gpu_resources(d, g.GpuOptions()) == {"nvidia.com/gpu": 1 if "limits" in resources else "1"}
    assert "nvidia.com/gpu" in d["resources"]["limits"]  # the API server wants a limit for it
    assert not g.gpu_resources(r, g.GpuOptions())
    assert r.get("resources", {}).get("limits", {}).get("cpu") == resources.get("limits", {}).get("cpu")
    assert d["command"] == ["/bin/sh", "-c", g.DOCKERD_GPU_WRAPPER, "runnerd-dockerd"]
    assert d["args"] == DIND_ARGS  # "$@" of the wrapper: the chart's dockerd arguments, unchanged
    assert env(d) == DOCKERD_GPU_ENV
    assert {"name": g.CDI_VOLUME, "mountPath": "/etc/cdi"} in d["volumeMounts"]
    assert {"name": g.TOOLS_VOLUME, "mountPath": "/runnerd/bin"} in d["volumeMounts"]
    assert [v["name"] for v in spec["volumes"]] == ["dind-sock", g.CDI_VOLUME, g.TOOLS_VOLUME]
    inits = [ic["name"] for ic in spec["initContainers"]]
    # The helper is copied before the native dind sidecar starts.
    assert inits[0] == g.INSTALL_CONTAINER
    assert spec["initContainers"][0]["image"] == RUNNER_IMAGE
    assert inits[1:] == (["init-dind-externals", "dind"] if mode == "native" else ["init-dind-externals"])
    assert spec["tolerations"] == [TOLERATION]
    assert "NVIDIA_DRIVER_CAPABILITIES" not in env(r)


def test_mig_slices_are_gpus() -> None:
    spec = build(template("native", {"limits": {"nvidia.com/mig-1g.10gb": 2}}))
    assert named(spec, "dind")["resources"]["limits"] == {"nvidia.com/mig-1g.10gb": 2}
    assert env(named(spec, "dind"))["RUNNERD_GPU_COUNT"] == "2"


@pytest.mark.parametrize("resources", [ONE_GPU, {"requests": {"nvidia.com/gpu": 1}}])
def test_without_dind_the_gpu_stays_on_the_runner(resources: dict[str, Any]) -> None:
    spec = build(template("plain", resources))
    r = named(spec, "runner")
    assert r["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert env(r)["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert "RUNNERD_GPU" not in env(r)
    assert "initContainers" not in spec
    assert [v["name"] for v in spec["volumes"]] == ["dind-sock"]
    assert spec["tolerations"] == [TOLERATION]


@pytest.mark.parametrize("mode", ["native", "container", "plain"])
@pytest.mark.parametrize("resources", [None, {"limits": {"cpu": "2"}}, {"limits": {"nvidia.com/gpu": 0}}])
def test_a_pod_without_gpus_is_left_as_templated(mode: str, resources: dict[str, Any] | None) -> None:
    tpl = template(mode, resources)
    spec = build(tpl)
    assert [e["name"] for e in named(spec, "runner").pop("env")] == [
        "ACTIONS_RUNNER_INPUT_JITCONFIG",
        "GITHUB_ACTIONS_RUNNER_EXTRA_USER_AGENT",
    ]
    assert spec == {**tpl, "restartPolicy": "Never"}


def test_user_install_container_wins_and_runs_first() -> None:
    """The documented way to keep ARC's runner image: copy the helper from runnerd's image."""
    mine = {"name": g.INSTALL_CONTAINER, "image": "ghcr.io/runnerd/runnerd-runner:2.329.0-ubuntu-24.04"}
    spec = build(template("native", ONE_GPU, initContainers=[mine]))
    names = [ic["name"] for ic in spec["initContainers"]]
    assert names == [g.INSTALL_CONTAINER, "init-dind-externals", "dind"]
    install = spec["initContainers"][0]
    assert install["image"] == mine["image"]
    assert install["command"] == ["/bin/sh", "-c", g.INSTALL_SCRIPT]
    assert install["volumeMounts"] == [{"name": g.TOOLS_VOLUME, "mountPath": "/runnerd/bin"}]


def test_dind_with_its_own_command_and_gpu_keeps_both() -> None:
    tpl = template("container", ONE_GPU)
    tpl["containers"][1] |= {"command": ["my-dockerd"], "resources": {"limits": {"nvidia.com/gpu": 2}}}
    spec = build(tpl)
    d, r = named(spec, "dind"), named(spec, "runner")
    assert d["command"] == ["my-dockerd"]
    assert d["resources"]["limits"] == {"nvidia.com/gpu": 2}
    assert env(d)["RUNNERD_GPU_COUNT"] == "2"
    assert r["resources"]["limits"] == {"nvidia.com/gpu": 1}  # the user gave the runner its own
    assert env(r)["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert [ic["name"] for ic in spec["initContainers"]] == ["init-dind-externals"]  # no helper to copy
    assert [v["name"] for v in spec["volumes"]] == ["dind-sock", g.CDI_VOLUME]


@pytest.mark.parametrize(
    ("spec_fields", "options", "tolerations", "runtime_class"),
    [
        ({}, g.GpuOptions(runtime_class_name="nvidia"), [TOLERATION], "nvidia"),
        ({"runtimeClassName": "mine"}, g.GpuOptions(runtime_class_name="nvidia"), [TOLERATION], "mine"),
        ({"tolerations": [{"operator": "Exists"}]}, g.GpuOptions(), [{"operator": "Exists"}], None),
        (
            {"tolerations": [{"key": "a", "operator": "Exists"}]},
            g.GpuOptions(),
            [{"key": "a", "operator": "Exists"}, TOLERATION],
            None,
        ),
    ],
)
def test_pod_level_gpu_fields(
    spec_fields: dict[str, Any], options: g.GpuOptions, tolerations: list[Any], runtime_class: str | None
) -> None:
    spec = build(template("native", ONE_GPU, **spec_fields), options)
    assert spec["tolerations"] == tolerations
    assert spec.get("runtimeClassName") == runtime_class
