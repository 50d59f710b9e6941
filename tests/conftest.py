"""Shared fixtures: one real control plane per test run, a fresh namespace per test."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.error
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devcluster import binaries
from devcluster.cluster import Cluster, ClusterConfig
from devcluster.process import alive


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real kube-apiserver + etcd + scheduler + controller-manager + kwok (2 CPU, 2 GPU nodes)."""
    state_dir = Path(os.environ.get("RUNNERD_TEST_CLUSTER_DIR") or tmp_path_factory.mktemp("devcluster"))
    c = Cluster(ClusterConfig(state_dir=state_dir), binaries.ensure())
    c.start()
    pids = list(c.pids().values())
    try:
        yield c
    finally:
        c.stop()
        leftovers = [pid for pid in pids if alive(pid)]
        assert not leftovers, f"control-plane processes left running: {leftovers}"


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace (with its default ServiceAccount ready); deleted afterwards without waiting."""
    yield from fresh_namespace(cluster)


def fresh_namespace(cluster: Cluster) -> Iterator[str]:
    """The ``namespace`` fixture's body, for fixtures of other clusters (e.g. one with a real node):
    the namespace is yielded once the ServiceAccount controller has made its ``default`` account."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    deadline = time.monotonic() + 30
    while True:
        try:
            cluster.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")
            break
        except urllib.error.HTTPError as e:
            if e.code != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield name
    try:
        cluster.request("DELETE", f"/api/v1/namespaces/{name}")
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise


@pytest.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Every task a test (or what it started) created is finished when the test's fixtures that
    depend on this one are gone: request it first, so that it is torn down last."""
    yield
    current = asyncio.current_task()
    leaked = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    for task in leaked:
        task.cancel()
    assert not leaked, f"tasks left running: {leaked}"
