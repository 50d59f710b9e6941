"""Dev-cluster ports under pressure (issue 19): a component whose port is taken is started again on
a new one, and two clusters start side by side while outgoing connections churn the ephemeral range.
The long version (20 clusters) is ``bench/devcluster_stress_bench.py``."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from devcluster import binaries, cluster
from devcluster.cluster import Cluster, ClusterConfig, ClusterError
from tests.integration.portload import stress

pytestmark = pytest.mark.cluster

PICK_ORDER = ["etcd-client", "etcd-peer", "apiserver", "scheduler", "controller-manager", "kwok"]
"""The order in which :meth:`Cluster.start` picks its ports."""


def _hand_out_first(monkeypatch: pytest.MonkeyPatch, victim: str, taken: int) -> None:
    """The pick for ``victim`` returns ``taken`` (a port another program listens on)."""
    real: Callable[..., int] = cluster.free_port
    counter = itertools.count()
    index = PICK_ORDER.index(victim)

    def pick(**kwargs: object) -> int:
        return taken if next(counter) == index else real(**kwargs)

    monkeypatch.setattr(cluster, "free_port", pick)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("victim", ["etcd-client", "apiserver", "scheduler", "kwok"])
def test_a_component_whose_port_is_taken_starts_on_another(
    victim: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        _hand_out_first(monkeypatch, victim, taken)
        c = Cluster(ClusterConfig(state_dir=tmp_path / "c", cpu_nodes=1, gpu_shapes=()), binaries.ensure())
        try:
            c.start(timeout=180)
            assert c.ports[victim] != taken
            assert c.request("GET", "/api/v1/nodes")["items"]
        finally:
            c.stop()


@pytest.mark.timeout(120)
def test_a_failure_is_one_line_naming_the_component_and_its_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = Cluster(ClusterConfig(state_dir=tmp_path / "c", cpu_nodes=1, gpu_shapes=()), binaries.ensure())
    real = c._component_args  # the test breaks one component on purpose

    def broken(component: str) -> list[str]:
        return [*real(component), "--no-such-flag"] if component == "scheduler" else real(component)

    monkeypatch.setattr(c, "_component_args", broken)
    with pytest.raises(ClusterError) as raised:
        c.start(timeout=90)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("kube-scheduler exited with code 1: ")
    assert "no-such-flag" in message
    assert str(c.log_dir / "kube-scheduler.log") in message


@pytest.mark.timeout(300)
def test_two_clusters_at_a_time_under_outgoing_connection_load(tmp_path: Path) -> None:
    result = stress(binaries.ensure(), tmp_path, clusters=2, parallel=2)
    assert result.failures == []
    assert result.started == 2
    assert result.connections > 0
