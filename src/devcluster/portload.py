"""Background load of outgoing loopback connections, and a start/stop stress of dev clusters under it.

:class:`ConnectionLoad` keeps opening and closing TCP connections to a local listener, so ports of the
ephemeral range are taken (connected, then in TIME_WAIT) all the time, as on a busy CI machine.
:func:`stress` starts and stops clusters under such a load, ``parallel`` at a time. Used by
``tests/integration/test_devcluster_ports.py`` (short) and ``bench/devcluster_stress_bench.py``.
"""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from devcluster.binaries import Binaries
from devcluster.cluster import Cluster, ClusterConfig, ClusterError


class ConnectionLoad:
    """``threads`` threads connecting to a loopback listener as fast as they can; ``with`` runs it."""

    def __init__(self, threads: int = 2) -> None:
        self.threads = threads
        self.connections = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    def __enter__(self) -> ConnectionLoad:
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(512)
        self._workers = [threading.Thread(target=self._accept, daemon=True)]
        self._workers += [threading.Thread(target=self._connect, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with socket.create_connection(self._listener.getsockname(), timeout=5):
            pass  # wakes the accept loop
        for worker in self._workers:
            worker.join(10)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            conn, _ = self._listener.accept()
            conn.close()

    def _connect(self) -> None:
        address = self._listener.getsockname()
        while not self._stop.is_set():
            try:
                with socket.create_connection(address, timeout=5):
                    pass
            except OSError:
                time.sleep(0.01)  # the ephemeral range is exhausted for a moment: that is the point
                continue
            with self._lock:
                self.connections += 1


@dataclass
class StressResult:
    started: int = 0
    failures: list[str] = field(default_factory=list)
    restarts: int = 0
    """Components started again on a new port because theirs was taken."""
    start_seconds: list[float] = field(default_factory=list)
    connections: int = 0


class _Restarts(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "lost its port" in record.getMessage():
            self.count += 1


def stress(binaries: Binaries, root: Path, *, clusters: int, parallel: int, threads: int = 2) -> StressResult:
    """Start and stop ``clusters`` small clusters, ``parallel`` at a time, under a :class:`ConnectionLoad`."""
    result = StressResult()
    restarts = _Restarts()
    logger = logging.getLogger("devcluster.cluster")
    logger.addHandler(restarts)

    def one(index: int) -> None:
        state = root / f"c{index}"
        cluster = Cluster(ClusterConfig(state_dir=state, cpu_nodes=1, gpu_shapes=()), binaries)
        began = time.monotonic()
        try:
            cluster.start(timeout=180)
            result.start_seconds.append(time.monotonic() - began)
            result.started += 1
        except ClusterError as e:
            result.failures.append(f"cluster {index}: {e}")
        finally:
            cluster.stop()
            shutil.rmtree(state, ignore_errors=True)

    try:
        with ConnectionLoad(threads) as load, ThreadPoolExecutor(parallel) as pool:
            list(pool.map(one, range(clusters)))
            result.connections = load.connections
    finally:
        logger.removeHandler(restarts)
    result.restarts = restarts.count
    return result
