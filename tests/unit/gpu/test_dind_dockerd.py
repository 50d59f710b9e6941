"""images/dind/runnerd-dockerd.sh: dockerd inside the runner container, GPU helper first."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "images/dind/runnerd-dockerd.sh"

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("setsid") is None, reason="needs bash"
)

FAKE_DOCKERD = """#!/usr/bin/env bash
echo "dockerd $*" >> "$STUB_LOG"
trap 'echo "dockerd TERM" >> "$STUB_LOG"; rm -f "$STUB_READY"; exit 0' TERM
[ -n "${STUB_DOCKERD_DIES:-}" ] && exit 1
touch "$STUB_READY"
while :; do sleep 0.1; done
"""


class Dind:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.log = tmp / "stub.log"
        self.pidfile = tmp / "dockerd.pid"
        self.fake("dockerd", FAKE_DOCKERD)
        self.fake("docker", '[ -e "$STUB_READY" ]\n')
        cgroup = tmp / "cgroup"
        cgroup.mkdir()
        self.env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "STUB_LOG": str(self.log),
            "STUB_READY": str(tmp / "ready"),
            "RUNNERD_DOCKERD_LOG": str(tmp / "dockerd.log"),
            "RUNNERD_DOCKERD_PIDFILE": str(self.pidfile),
            "RUNNERD_DOCKERD_TIMEOUT": "5",
            "RUNNERD_CGROUP_ROOT": str(cgroup),
            "RUNNERD_GPU_SETUP": str(self.bin / "runnerd-gpu-setup"),
            "RUNNER_HOME": str(tmp),
            "RUNNERD_VAR_LIB_DOCKER": str(tmp / "var-lib-docker"),  # same filesystem: no --data-root
        }

    def fake(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(body if body.startswith("#!") else "#!/usr/bin/env bash\n" + body)
        path.chmod(0o755)

    def run(self, action: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), action],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def dind(tmp_path: Path) -> Iterator[Dind]:
    d = Dind(tmp_path)
    yield d
    if d.pidfile.exists():
        pid = int(d.pidfile.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


def test_start_waits_for_docker_and_stop_terminates(dind: Dind) -> None:
    result = dind.run("start", MTU="1400", DOCKER_REGISTRY_MIRROR="https://mirror.example.com")
    assert result.returncode == 0, result.stderr
    assert "dockerd is up" in result.stderr
    assert dind.lines() == [
        "dockerd --host=unix:///var/run/docker.sock --group=docker --mtu=1400 "
        "--registry-mirror=https://mirror.example.com"
    ]
    assert dind.run("start").returncode == 0  # idempotent
    assert len(dind.lines()) == 1
    result = dind.run("stop")
    assert result.returncode == 0, result.stderr
    assert dind.lines()[-1] == "dockerd TERM"
    assert not dind.pidfile.exists()


def test_gpu_helper_runs_first_and_its_arguments_reach_dockerd(dind: Dind) -> None:
    dind.fake("runnerd-gpu-setup", 'echo "gpu-setup" >> "$STUB_LOG"; echo "--feature=cdi=true"\n')
    assert dind.run("start", RUNNERD_GPU="1").returncode == 0
    assert dind.lines() == [
        "gpu-setup",
        "dockerd --host=unix:///var/run/docker.sock --group=docker --feature=cdi=true",
    ]


@pytest.mark.parametrize(
    ("helper", "message"),
    [
        ('echo "--feature=cdi=true"; exit 1\n', "runnerd-gpu-setup failed; job containers will not get GPUs"),
        (None, "runnerd-gpu-setup is not in this image"),
    ],
)
def test_gpu_helper_failure_still_starts_dockerd(dind: Dind, helper: str | None, message: str) -> None:
    if helper is not None:
        dind.fake("runnerd-gpu-setup", helper)
    result = dind.run("start", RUNNERD_GPU="1")
    assert result.returncode == 0, result.stderr
    assert message in result.stderr
    assert dind.lines() == ["dockerd --host=unix:///var/run/docker.sock --group=docker"]


def test_no_gpu_helper_without_runnerd_gpu(dind: Dind) -> None:
    dind.fake("runnerd-gpu-setup", 'echo "gpu-setup" >> "$STUB_LOG"\n')
    assert dind.run("start").returncode == 0
    assert dind.lines() == ["dockerd --host=unix:///var/run/docker.sock --group=docker"]


def test_dockerd_that_dies_fails_start(dind: Dind) -> None:
    started = time.monotonic()
    result = dind.run("start", STUB_DOCKERD_DIES="1")
    assert result.returncode == 1
    assert "dockerd exited; see its log" in result.stderr
    assert time.monotonic() - started < 5


def test_cgroup_v2_nesting(dind: Dind) -> None:
    cgroup = Path(dind.env["RUNNERD_CGROUP_ROOT"])
    (cgroup / "cgroup.controllers").write_text("cpu io memory pids\n")
    (cgroup / "cgroup.procs").write_text("1\n27\n")
    assert dind.run("start").returncode == 0
    assert (cgroup / "cgroup.subtree_control").read_text() == "+cpu +io +memory +pids\n"
    assert (cgroup / "runnerd-init/cgroup.procs").read_text() == "27\n"  # plain files: each write replaces


def test_data_root(dind: Dind) -> None:
    assert dind.run("start", DOCKER_DATA_ROOT="/runner/.docker").returncode == 0
    assert dind.lines() == [
        "dockerd --host=unix:///var/run/docker.sock --group=docker --data-root=/runner/.docker"
    ]


def test_usage(dind: Dind) -> None:
    result = dind.run("restart")
    assert result.returncode == 2
    assert "usage: runnerd-dockerd start|stop" in result.stderr
