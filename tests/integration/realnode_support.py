"""Fixtures of the real-container tests (tests/integration/test_realnode*.py): the images built here
and a devcluster with one real node. They skip, saying why, only where the container tools are not
installed (``make containers`` / hack/install-containers.sh installs them with apt-get)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster import binaries, realnode
from devcluster.cluster import Cluster, ClusterConfig

BUILD_TOOLS = ("mmdebstrap", "buildah", "skopeo", "podman", "go")
PODMAN = (
    "podman",
    "run",
    "--rm",
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
)
"""podman as it works here: crun refuses the hybrid cgroup layout; unlimited rlimits are refused."""


def missing_tools() -> list[str]:
    missing = [t for t in BUILD_TOOLS if shutil.which(t) is None]
    return sorted(set(missing + realnode.missing_host_tools()))


def skip_without_tools() -> None:
    missing = missing_tools()
    if missing:
        pytest.skip(
            f"container tools not installed: {', '.join(missing)} (run hack/install-containers.sh as root)"
        )


@pytest.fixture(scope="session")
def images() -> dict[str, realnode.Image]:
    """The images of hack/build-images.sh (built once per machine; cached by their inputs)."""
    skip_without_tools()
    return realnode.read_manifest(realnode.ensure_images())


@pytest.fixture(scope="module")
def real_cluster(
    images: dict[str, realnode.Image], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A control plane with one kwok node and one real node (kubelet + containerd + runc)."""
    state_dir = Path(
        os.environ.get("RUNNERD_TEST_REAL_CLUSTER_DIR") or tmp_path_factory.mktemp("realcluster")
    )
    c = Cluster(
        ClusterConfig(state_dir=state_dir, cpu_nodes=1, gpu_shapes=(), real_nodes=1), binaries.ensure()
    )
    c.start(timeout=120)
    nodes = list(c.real_nodes)
    try:
        yield c
    finally:
        c.stop()
        left = [item for node in nodes for item in node.leftovers()]
        assert not left, f"the real node left {left}"


def on_real_node(pod_spec: dict[str, object]) -> dict[str, object]:
    """``pod_spec`` with the real node's selector and toleration (its taint keeps other pods away)."""
    return {
        **pod_spec,
        "nodeSelector": {realnode.REAL_NODE_LABEL: "true"},
        "tolerations": [dict(realnode.REAL_NODE_TOLERATION)],
    }
