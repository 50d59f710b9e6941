"""How ``install_autoscaling`` wires the safety-net poll: which informers wake it."""

from __future__ import annotations

import pytest

from runnerd.controller.app import build
from runnerd.controller.common import ControllerOptions
from runnerd.controller.targets import HRA_INFORMER, RD_INFORMER, RUNNERSET_INFORMER
from runnerd.github import GitHubClient
from runnerd.kube.client import KubeClient

pytestmark = pytest.mark.timeout(10)


async def test_the_poll_wakes_for_its_hras_and_their_scale_targets(
    clients: tuple[KubeClient, GitHubClient],
) -> None:
    """A RunnerDeployment or RunnerSet created after its HRA (``kubectl apply -f dir/`` applies in
    name order) names the repositories to poll: its arrival must wake the poll, which otherwise
    waited for the HRA's next change (and the poll waits for those caches to sync)."""
    kube, github = clients
    controllers = build(kube=kube, github=github, options=ControllerOptions())
    autoscaling = controllers.autoscaling
    assert autoscaling is not None
    watched = autoscaling.poll_controller.informers
    for name in (HRA_INFORMER, RD_INFORMER, RUNNERSET_INFORMER):
        assert controllers.informers[name] in watched, name
    await autoscaling.close()
