"""``runnerd-dev cluster up/down`` as a newcomer runs it: background and foreground, nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devcluster import binaries
from devcluster.process import alive

pytestmark = pytest.mark.cluster

CLI = [sys.executable, "-m", "devcluster.cli"]


def _wait_gone(pids: list[int], timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    binaries.ensure()  # warm already in a test run; keeps the timed part below about the cluster
    return {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "RUNNERD_BIN_DIR": str(binaries.ensure().bin_dir),
    }


def _kubectl_nodes(kubeconfig: str) -> list[str]:
    out = subprocess.run(
        [str(binaries.ensure().kubectl), "--kubeconfig", kubeconfig, "get", "nodes", "-o", "name"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return sorted(out.split())


def test_cluster_up_in_background_then_down(cli_env: dict[str, str], tmp_path: Path) -> None:
    up = subprocess.run(
        [
            *CLI,
            "cluster",
            "up",
            "--name",
            "bg",
            "--cpu-nodes",
            "1",
            "--gpu-shape",
            "NVIDIA-A100-SXM4-40GB:4:1",
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert up.returncode == 0, up.stderr
    assert up.stdout.startswith("export KUBECONFIG=")
    kubeconfig = up.stdout.strip().split("=", 1)[1]
    assert _kubectl_nodes(kubeconfig) == ["node/cpu-node-0", "node/gpu-node-0"]

    state = json.loads((tmp_path / "cache/runnerd/devcluster/bg/state.json").read_text())
    pids = [state["pid"], *state["components"].values()]
    assert all(alive(p) for p in pids)

    again = subprocess.run(
        [*CLI, "cluster", "up", "--name", "bg"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0
    assert "already running" in again.stderr

    down = subprocess.run(
        [*CLI, "cluster", "down", "--name", "bg"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert down.returncode == 0, down.stderr
    assert _wait_gone(pids) == []


def test_cluster_up_foreground_stops_everything_on_ctrl_c(cli_env: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*CLI, "cluster", "up", "--foreground", "--name", "fg", "--gpu-nodes", "1", "--gpus-per-node", "2"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("export KUBECONFIG="), proc.stderr.read() if proc.stderr else ""
        state = json.loads((tmp_path / "cache/runnerd/devcluster/fg/state.json").read_text())
        nodes = _kubectl_nodes(line.strip().split("=", 1)[1])
        assert nodes == ["node/cpu-node-0", "node/cpu-node-1", "node/gpu-node-0"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert _wait_gone(list(state["components"].values())) == []
        assert not (tmp_path / "cache/runnerd/devcluster/fg/state.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _nodes_ready(kubeconfig: str) -> list[str]:
    out = subprocess.run(
        [
            str(binaries.ensure().kubectl), "--kubeconfig", kubeconfig, "get", "nodes", "-o",
            "jsonpath={range .items[*]}{.metadata.name}="
            "{.status.conditions[?(@.type=='Ready')].status} {end}",
        ],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return sorted(out.split())


def test_cluster_up_after_down_reuses_its_state(cli_env: dict[str, str]) -> None:
    """Issue 13 finding 7: the second ``up`` failed with a raw HTTPError 409 traceback (the nodes
    of the first run were still in the kept etcd state)."""
    up = _cli(cli_env, "cluster", "up", "--name", "again", "--cpu-nodes", "2", "--gpu-nodes", "0")
    assert up.returncode == 0, up.stderr
    kubeconfig = up.stdout.strip().split("=", 1)[1]
    kubectl = [str(binaries.ensure().kubectl), "--kubeconfig", kubeconfig]
    subprocess.run([*kubectl, "create", "configmap", "kept"], check=True, capture_output=True, timeout=30)
    try:
        assert _cli(cli_env, "cluster", "down", "--name", "again").returncode == 0
        # same name, one node fewer: the kept state is reused and brought in line
        up = _cli(cli_env, "cluster", "up", "--name", "again", "--cpu-nodes", "1", "--gpu-nodes", "0")
        assert up.returncode == 0, up.stderr
        assert "Traceback" not in up.stderr
        assert up.stdout.strip().split("=", 1)[1] == kubeconfig  # exported kubeconfigs keep working
        assert _nodes_ready(kubeconfig) == ["cpu-node-0=True"]
        kept = subprocess.run([*kubectl, "get", "configmap", "kept"], capture_output=True, timeout=30)
        assert kept.returncode == 0, kept.stderr
    finally:
        down = _cli(cli_env, "cluster", "down", "--name", "again")
    assert down.returncode == 0, down.stderr


def test_a_failing_cluster_up_is_one_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "no-binaries"
    empty.mkdir()
    for foreground in ((), ("--foreground",)):
        up = _cli(
            {**cli_env, "RUNNERD_BIN_DIR": str(empty)}, "cluster", "up", "--name", "broken", *foreground
        )
        assert up.returncode == 1
        lines = up.stderr.strip().splitlines()
        assert len(lines) == 1, up.stderr
        assert lines[0].startswith("runnerd-dev: ")
        assert str(empty) in lines[0]
