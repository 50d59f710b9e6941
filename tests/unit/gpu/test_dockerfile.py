"""images/Dockerfile read statically (no Docker engine here): pins, targets, files, and the contract
with runnerd's pod builder and GPU setup."""

from __future__ import annotations

import re
from pathlib import Path

from runnerd.gpu import cli
from runnerd.manifests import gpu as reconcile_gpu
from runnerd.manifests.pod import PodOptions, docker_group_gid

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = (REPO / "images/Dockerfile").read_text()
LINES = DOCKERFILE.replace("\\\n", " ").splitlines()


def instructions(name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in LINES if line.split(None, 1)[:1] == [name]]


def test_targets() -> None:
    stages = [re.split(r"\s+AS\s+", f, flags=re.IGNORECASE)[1] for f in instructions("FROM") if " AS " in f]
    assert stages == ["gpu-helper", "docker-static", "runner", "dind", "gpu"]


def test_every_checksum_argument_is_checked_before_use() -> None:
    sums = [a.split("=")[0] for a in instructions("ARG") if "SHA256" in a or "FINGERPRINT" in a]
    assert sums == [
        "DOCKER_SHA256_AMD64",
        "DOCKER_SHA256_ARM64",
        "RUNNER_SHA256_AMD64",
        "RUNNER_SHA256_ARM64",
        "RUNNER_CONTAINER_HOOKS_SHA256",
        "NVIDIA_REPO_KEY_FINGERPRINT",
    ]
    for arg in sums:
        assert f"ARG {arg}=unset" in DOCKERFILE
        assert f"name={arg}" in DOCKERFILE or f"${{#{arg}}}" in DOCKERFILE
    readme = (REPO / "images/README.md").read_text()
    for arg in [*sums, "UBUNTU_IMAGE", "HELPER_BUILD_IMAGE", "RUNNER_VERSION", "DOCKER_VERSION"]:
        assert arg in readme, f"{arg} is not documented in images/README.md"


def test_copied_files_exist() -> None:
    for copy in instructions("COPY"):
        parts = [p for p in copy.split() if not p.startswith("--")]
        if "--from=" in copy:
            continue
        for src in parts[:-1]:
            assert (REPO / src).exists(), src


def test_the_runner_contract() -> None:
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/runnerd-entrypoint"]' in DOCKERFILE
    assert "images/runner/runnerd-entrypoint.sh /usr/local/bin/runnerd-entrypoint" in DOCKERFILE
    # The pod builder's dind wrapper copies the helper from the runner image's PATH.
    assert f"/out/{reconcile_gpu.SETUP_COMMAND} /usr/local/bin/{reconcile_gpu.SETUP_COMMAND}" in DOCKERFILE
    assert cli.TOOLS_DIR == reconcile_gpu.TOOLS_DIR
    # /runner is the pod's emptyDir: the runner is installed in /runnertmp and copied at start.
    assert "RUNNER_ASSETS_DIR=/runnertmp" in DOCKERFILE
    assert "tar -xzf /tmp/runner.tgz -C /runnertmp" in DOCKERFILE
    # The sidecar's socket group for an image tagged ...-ubuntu-24.04 is this image's docker group.
    gid = re.search(r"ARG DOCKER_GID=(\d+)", DOCKERFILE)
    assert gid is not None
    assert docker_group_gid("runnerd-runner:2.329.0-ubuntu-24.04", PodOptions()) == gid.group(1)
    uid = re.search(r"ARG RUNNER_UID=(\d+)", DOCKERFILE)
    assert uid is not None
    assert str(PodOptions().docker_gid) == uid.group(1)  # group 1001 (the default socket group) too
