"""The reservation journal is the default intake of ``runnerd controller`` and ``runnerd
webhook-server``; ``reservation_journal=False`` (``--no-reservation-journal``) writes the HRA."""

from __future__ import annotations

import pytest

from runnerd.controller.app import build, build_webhook_process
from runnerd.controller.app_autoscaling import install_journal
from runnerd.controller.common import ControllerOptions
from runnerd.controller.journal import JOURNAL_INFORMER
from runnerd.github import GitHubClient
from runnerd.kube.client import KubeClient

pytestmark = pytest.mark.timeout(10)


async def test_the_controller_journals_by_default(clients: tuple[KubeClient, GitHubClient]) -> None:
    kube, github = clients
    controllers = build(kube=kube, github=github, options=ControllerOptions())
    autoscaling = controllers.autoscaling
    assert autoscaling is not None
    journal = autoscaling.writer.journal
    assert journal is not None
    assert autoscaling.controller.journal is journal
    assert journal.informer is controllers.informers[JOURNAL_INFORMER]
    assert install_journal(controllers) is journal  # installed once
    await autoscaling.close()


async def test_without_the_journal_the_controller_writes_the_hra(
    clients: tuple[KubeClient, GitHubClient],
) -> None:
    kube, github = clients
    controllers = build(kube=kube, github=github, options=ControllerOptions(reservation_journal=False))
    assert controllers.autoscaling is not None
    assert controllers.autoscaling.writer.journal is None
    assert controllers.autoscaling.controller.journal is None
    assert JOURNAL_INFORMER not in controllers.informers
    await controllers.autoscaling.close()


@pytest.mark.parametrize("journal", [True, False])
async def test_the_webhook_server_journals_by_default_without_reading_configmaps(
    clients: tuple[KubeClient, GitHubClient], journal: bool
) -> None:
    kube, _ = clients
    process = build_webhook_process(kube=kube, namespace="ns", reservation_journal=journal)
    assert (process.writer.journal is not None) is journal
    if process.writer.journal is not None:
        assert process.writer.journal.informer is None  # it only creates entries; the leader folds
    assert JOURNAL_INFORMER not in process.informers
    await process.writer.close()
