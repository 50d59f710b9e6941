"""docs/gpu.md's GPU scale set, end to end without a cluster: its ``values.yaml`` rendered by the
scale-set chart (``helm template``, both dind shapes), accepted by the CRD, and turned by the
controller's builders (EphemeralRunnerSet -> EphemeralRunner -> pod) into a pod whose ``dind``
container holds the GPU and runs runnerd-gpu-setup, with the helper copied in first."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from runnerd.manifests import gpu as g
from runnerd.manifests.scaleset import build_ephemeral_runner, build_ephemeral_runner_set, build_runner_pod
from tests.unit.api.manifests import local_errors
from tests.unit.chart import tools
from tests.unit.chart.test_scale_set_charts import SCALE_SET, one, render

pytestmark = [pytest.mark.timeout(60)]

GPU_DOC = tools.REPO / "docs" / "gpu.md"


def documented() -> tuple[dict[str, Any], list[str]]:
    """The section's values file and its ``helm install`` command, as words."""
    section = GPU_DOC.read_text().split("## GPU scale set", 1)[1].split("\n## ", 1)[0]
    values = re.search(r"```yaml\n(.*?)```", section, re.S)
    command = re.search(r"```bash\n(.*?)```", section, re.S)
    assert values, "the GPU scale set section lost its values.yaml"
    assert command, "the GPU scale set section lost its helm command"
    return yaml.safe_load(values.group(1)), shlex.split(command.group(1).replace("\\\n", " "))


def runner_pod(ars: dict[str, Any]) -> dict[str, Any]:
    ars["metadata"]["uid"] = "ars-uid"
    ers = build_ephemeral_runner_set(ars, f"{ars['metadata']['name']}-abcde", 1)
    ers["metadata"]["uid"] = "ers-uid"
    er = build_ephemeral_runner(ers, f"{ers['metadata']['name']}-runner-xyz12", 1)
    er["metadata"]["uid"] = "er-uid"
    pod: dict[str, Any] = build_runner_pod(er)
    return pod


def test_the_documented_command_installs_the_documented_values() -> None:
    values, argv = documented()
    assert argv[:2] == ["helm", "install"]
    assert argv[argv.index("-f") + 1] == "values.yaml"
    assert argv[-1] == "./charts/gha-runner-scale-set"
    assert values["containerMode"] == {"type": "dind"}


@pytest.mark.parametrize(("kube_version", "native"), [("1.31.0", True), ("1.28.0", False)])
def test_documented_gpu_scale_set_makes_a_gpu_dind_pod(
    tmp_path: Path, kube_version: str, native: bool
) -> None:
    values, argv = documented()
    release = argv[2]
    namespace = argv[argv.index("--namespace") + 1]
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    argv = [tools.helm(), "template", release, SCALE_SET, "--namespace", namespace, "-f", "values.yaml"]
    text = tools.run([*argv, "--kube-version", kube_version], cwd=tmp_path)
    ars = one([d for d in yaml.safe_load_all(text) if d], "AutoscalingRunnerSet")
    assert local_errors(ars) == []
    spec = runner_pod(ars)["spec"]

    inits = spec["initContainers"]
    containers = {ct["name"]: ct for ct in spec["containers"]}
    expected_inits = [g.INSTALL_CONTAINER, "init-dind-externals", *(["dind"] if native else [])]
    assert [ic["name"] for ic in inits] == expected_inits
    assert list(containers) == (["runner"] if native else ["runner", "dind"])
    dind = inits[2] if native else containers["dind"]
    runner = containers["runner"]

    assert dind["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert "resources" not in runner
    assert dind["command"] == ["/bin/sh", "-c", g.DOCKERD_GPU_WRAPPER, "runnerd-dockerd"]
    assert dind["args"][0] == "dockerd"  # the chart's arguments follow the wrapper
    assert {e["name"] for e in dind["env"]} >= {"RUNNERD_GPU", "RUNNERD_GPU_COUNT", "RUNNERD_CDI_SPEC_DIR"}
    mounts = {m["mountPath"] for m in dind["volumeMounts"]}
    assert {g.CDI_SPEC_DIR, g.TOOLS_DIR, "/var/run"} <= mounts
    assert {g.CDI_VOLUME, g.TOOLS_VOLUME} <= {v["name"] for v in spec["volumes"]}
    install = inits[0]
    assert install["image"] == values["template"]["spec"]["initContainers"][0]["image"]
    assert install["command"] == ["/bin/sh", "-c", g.INSTALL_SCRIPT]
    assert install["volumeMounts"] == [{"name": g.TOOLS_VOLUME, "mountPath": g.TOOLS_DIR}]
    assert runner["image"] == "ghcr.io/actions/actions-runner:latest"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]


def test_without_a_gpu_the_chart_pod_is_unchanged(tmp_path: Path) -> None:
    values, _ = documented()
    runner = values["template"]["spec"]["containers"][0]
    runner.pop("resources")
    values["template"]["spec"].pop("initContainers")
    ars = one(render(tmp_path, SCALE_SET, values), "AutoscalingRunnerSet")
    template = ars["spec"]["template"]["spec"]
    spec = runner_pod(ars)["spec"]
    assert spec["initContainers"] == template["initContainers"]
    assert spec["volumes"] == template["volumes"]
    assert "tolerations" not in spec
