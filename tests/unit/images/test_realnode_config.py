"""devcluster.realnode's generated configuration (no processes): kubelet, containerd, CNI, the
per-node network and the image manifest."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from devcluster.cli import build_parser
from devcluster.cluster import Cluster
from devcluster.realnode import REAL_NODE_TAINT, Image, RealNode, read_manifest

IMAGES = {"pause": Image("localhost/runnerd/pause:abc", Path("/x/pause.tar"), "sha256:1")}


def node(state: Path, index: int = 0) -> RealNode:
    cluster = cast(Cluster, SimpleNamespace(state_dir=state, kubeconfig=state / "admin.kubeconfig"))
    return RealNode(cluster, Path("/bin/kubelet"), IMAGES, name=f"real-node-{index}", index=index)


@pytest.mark.parametrize(
    ("key", "want"),
    [
        ("failCgroupV1", False),  # the hybrid layout is cgroup v1 to kubelet
        ("cgroupDriver", "cgroupfs"),
        ("cgroupRoot", "/runnerd-real-node-0"),
        ("readOnlyPort", 0),
        ("failSwapOn", False),
        ("registerWithTaints", [REAL_NODE_TAINT]),
    ],
)
def test_kubelet_config(tmp_path: Path, key: str, want: Any) -> None:
    assert node(tmp_path).kubelet_config()[key] == want


def test_kubelet_serves_and_logs_inside_the_node(tmp_path: Path) -> None:
    n = node(tmp_path)
    cfg = n.kubelet_config()
    assert cfg["address"] == n.gateway
    assert cfg["containerRuntimeEndpoint"] == f"unix://{n.socket}"
    assert Path(cfg["podLogsDir"]).is_relative_to(n.state_dir)


def test_containerd_config(tmp_path: Path) -> None:
    n = node(tmp_path)
    cfg = tomllib.loads(n.containerd_config())
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "localhost/runnerd/pause:abc"
    assert cri["restrict_oom_score_adj"] is True  # root lacks CAP_SYS_RESOURCE here
    runc = cri["containerd"]["runtimes"]["runc"]
    assert (runc["runtime_type"], runc["options"]["SystemdCgroup"]) == ("io.containerd.runc.v2", False)
    assert cfg["grpc"]["address"] == str(n.socket)
    for key in ("root", "state"):
        assert Path(cfg[key]).is_relative_to(n.state_dir)


def test_cni_bridge_uses_the_nodes_subnet(tmp_path: Path) -> None:
    n = node(tmp_path)
    plugin = n.cni_config()["plugins"][0]
    assert plugin["bridge"] == n.bridge
    assert plugin["ipMasq"] is False
    assert plugin["ipam"]["ranges"] == [[{"subnet": n.subnet, "gateway": n.gateway}]]


def test_each_node_gets_its_own_network(tmp_path: Path) -> None:
    nodes = [node(tmp_path / "a"), node(tmp_path / "b"), node(tmp_path / "a", 1)]
    assert nodes[0].subnet != nodes[2].subnet  # nodes of one cluster
    assert len({n.bridge for n in nodes}) == 3  # a 24-bit hash of the node's state directory
    assert node(tmp_path / "a").subnet == nodes[0].subnet  # stable
    for n in nodes:
        assert len(n.bridge) <= 15  # Linux interface names
        assert n.gateway == n.subnet.replace(".0/24", ".1")


def test_read_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "images.json"
    manifest.write_text(json.dumps({"pause": {"tag": "t", "archive": "/a.tar", "id": "sha256:2"}}))
    assert read_manifest(manifest) == {"pause": Image("t", Path("/a.tar"), "sha256:2")}


@pytest.mark.parametrize(("argv", "want"), [([], 0), (["--real-nodes", "1"], 1)])
def test_cluster_up_real_nodes_flag(argv: list[str], want: int) -> None:
    args = build_parser().parse_args(["cluster", "up", *argv])
    assert args.real_nodes == want
