"""Dev-cluster ports under pressure (issue 19): a component whose port is taken is started again on
a new one, and two clusters start side by side while outgoing connections churn the ephemeral range.
The long version (20 clusters) is ``bench/devcluster_stress_bench.py``."""

from __future__ import annotations

import contextlib
import itertools
import re
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from devcluster import binaries, cluster
from devcluster.cluster import Cluster, ClusterConfig, ClusterError
from devcluster.portload import stress

pytestmark = pytest.mark.cluster

PICK_ORDER = ["etcd-client", "etcd-peer", "apiserver", "scheduler", "controller-manager", "kwok"]
"""The order in which :meth:`Cluster.start` picks its ports."""


VICTIMS = ("etcd-client", "apiserver", "scheduler", "kwok")


def _hand_out_taken(monkeypatch: pytest.MonkeyPatch, taken: dict[str, int], thread: threading.Thread) -> None:
    """The cluster started in ``thread`` gets, for each port named in ``taken``, a port another
    program already listens on (as if it had been taken between the pick and the bind)."""
    real: Callable[..., int] = cluster.free_port
    counter = itertools.count()
    by_index = {PICK_ORDER.index(name): port for name, port in taken.items()}

    def pick(**kwargs: object) -> int:
        if threading.current_thread() is not thread:
            return real(**kwargs)
        index = next(counter)
        return by_index[index] if index in by_index else real(**kwargs)

    monkeypatch.setattr(cluster, "free_port", pick)


@pytest.mark.timeout(240)
def test_components_whose_ports_are_taken_start_on_others_beside_a_second_cluster_under_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with contextlib.ExitStack() as stack:
        squatters = {name: stack.enter_context(socket.socket()) for name in VICTIMS}
        for sock in squatters.values():
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        taken = {name: sock.getsockname()[1] for name, sock in squatters.items()}
        first = Cluster(
            ClusterConfig(state_dir=tmp_path / "a", cpu_nodes=1, gpu_shapes=()), binaries.ensure()
        )
        first_ports: dict[str, int] = {}

        def start_first() -> None:
            first.start(timeout=180)
            first_ports.update(first.ports)
            first.stop()

        thread = threading.Thread(target=start_first)
        _hand_out_taken(monkeypatch, taken, thread)
        # the second cluster starts beside the first, under outgoing-connection load
        thread.start()
        try:
            result = stress(binaries.ensure(), tmp_path / "b", clusters=1, parallel=1)
        finally:
            thread.join(200)
    assert result.failures == []
    assert result.started == 1
    assert result.connections > 0
    assert first_ports, "the first cluster did not start; see its logs under " + str(tmp_path / "a")
    assert all(first_ports[name] != port for name, port in taken.items()), (first_ports, taken)


@pytest.mark.timeout(120)
def test_a_failure_is_one_line_naming_the_component_and_its_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = Cluster(ClusterConfig(state_dir=tmp_path / "c", cpu_nodes=1, gpu_shapes=()), binaries.ensure())
    real = c._spawn  # the test breaks the first component on purpose

    def broken(name: str, argv: Sequence[str]) -> None:
        real(name, [*argv, "--no-such-flag"] if name == "etcd" else argv)

    monkeypatch.setattr(c, "_spawn", broken)
    with pytest.raises(ClusterError) as raised:
        c.start(timeout=60)
    message = str(raised.value)
    assert "\n" not in message
    assert re.match(r"etcd exited with code [1-9][0-9]*: .*no-such-flag", message), message
    assert message.endswith(f"(log: {c.log_dir / 'etcd.log'})")
