"""Two runnerd installations on two clusters, one GitHub organization, the same RunnerDeployment
names: neither ever removes the other's registrations, even those offline (pods still starting)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
import yaml

from devcluster import binaries
from devcluster.cluster import Cluster, ClusterConfig
from devcluster.wait import wait_until
from ghsim import Scope as SimScope
from ghsim import Simulator
from runnerd.controller.common import RUNNER_DEPLOYMENTS, RUNNERS
from runnerd.controller.process import Controllers
from runnerd.kube.client import KubeClient
from tests.integration.support import controller_process, install_crds

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

ORG_RD = """
apiVersion: actions.summerwind.dev/v1alpha1
kind: RunnerDeployment
metadata:
  name: example-runner-deployment
spec:
  replicas: 2
  template:
    spec:
      organization: octo-org
      labels: [self-hosted, arc-runner]
"""


@pytest.fixture(scope="module")
def second_cluster(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    other = Cluster(ClusterConfig(state_dir=tmp_path_factory.mktemp("devcluster-b")), binaries.ensure())
    other.start()
    try:
        yield other
    finally:
        other.stop()


@dataclass
class Installation:
    kube: KubeClient
    controllers: Controllers
    namespace: str


@contextlib.asynccontextmanager
async def installation(
    cluster: Cluster, namespace: str, sim: Simulator, pat: str
) -> AsyncIterator[Installation]:
    install_crds(cluster)
    cluster.kubectl("create", "namespace", namespace, check=False)
    async with controller_process(
        cluster,
        sim,
        pat,
        namespace,
        installation_label=True,
        sync_period=2.0,
        registering_max_age=0.5,
        orphan_sweep_period=0.5,
        orphan_grace=1.0,
    ) as controllers:
        yield Installation(controllers.kube, controllers, namespace)


async def test_two_clusters_one_org_same_names_never_remove_each_others_runners(
    cluster: Cluster, second_cluster: Cluster, namespace: str
) -> None:
    async with Simulator(tick_interval=0.05) as sim:
        world = sim.world
        world.create_org("octo-org")
        pat = world.create_pat("admin").token
        # The same namespace name and RunnerDeployment on both clusters: only the cluster differs.
        async with (
            installation(cluster, namespace, sim, pat) as a,
            installation(second_cluster, namespace, sim, pat) as b,
        ):
            label_a = a.controllers.options.pod.installation_label
            label_b = b.controllers.options.pod.installation_label
            assert label_a != label_b
            for inst in (a, b):
                manifest = yaml.safe_load(ORG_RD)
                manifest["metadata"]["namespace"] = inst.namespace
                await inst.kube.create(RUNNER_DEPLOYMENTS, manifest, namespace=inst.namespace)

            def registered() -> dict[str, set[str]]:
                out: dict[str, set[str]] = {label_a: set(), label_b: set()}
                for r in world.runners.values():
                    for label in r.labels:
                        if label.name in out:
                            out[label.name].add(r.name)
                return out

            # No pod agent: every registration stays offline, as while a large image is pulled.
            await wait_until("two registrations per installation", lambda: all(
                len(v) == 2 for v in registered().values()
            ), 60)  # fmt: skip
            before = registered()
            # the old sweep's test (a name prefix of a RunnerDeployment served here) fits all four
            assert all(n.startswith("example-runner-deployment-") for v in before.values() for n in v)

            sweepers = (a.controllers.sweeper, b.controllers.sweeper)
            start = [s.sweeps for s in sweepers]
            await wait_until(
                "several sweeps past the grace on both sides",
                lambda: all(s.sweeps >= n + 6 for s, n in zip(sweepers, start, strict=True)),
                60,
            )
            assert registered() == before
            assert a.controllers.sweeper.removed_total == b.controllers.sweeper.removed_total == 0

            # A's own orphan (a registration with A's mark and no Runner) is removed by A alone.
            orphan, _ = world.generate_jit(
                SimScope("org", "octo-org"), "example-gone1", 1, ["arc-runner", label_a]
            )
            await wait_until("A removes its orphan", lambda: orphan.name not in {
                r.name for r in world.runners.values()
            }, 30)  # fmt: skip
            assert list(a.controllers.sweeper.removed) == [orphan.name]
            assert b.controllers.sweeper.removed_total == 0
            assert registered() == before
            runners_b = (await b.kube.list(RUNNERS, namespace=b.namespace)).items
            assert {r["metadata"]["name"] for r in runners_b} == before[label_b]
