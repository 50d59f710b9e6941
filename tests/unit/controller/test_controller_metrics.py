"""The scale-set controller's ARC metrics (``gha_controller_*``): labels from the config URL, counts
from the EphemeralRunnerSets' status summed per scale set, running listeners, and the text a
Prometheus scrape gets."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from runnerd.api.scaleset import constants as c
from runnerd.controller.controller_metrics import ControllerCollector, label_values

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("https://github.com/octo-org", ("arc", "ns", "", "octo-org", "")),
        ("https://github.com/octo-org/app", ("arc", "ns", "app", "octo-org", "")),
        ("https://github.com/enterprises/big", ("arc", "ns", "", "", "big")),
        ("https://ghes.corp/octo-org/app/", ("arc", "ns", "app", "octo-org", "")),
        ("not a url", ("arc", "ns", "", "", "")),
    ],
)
def test_label_values(url: str, want: tuple[str, ...]) -> None:
    assert label_values("arc", "ns", url) == want


def runner_set(name: str, scale_set: str, status: dict[str, int], **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "arc-runners",
            "labels": {c.LABEL_SCALE_SET_NAME: scale_set, c.LABEL_SCALE_SET_NAMESPACE: "arc-runners"},
            **meta,
        },
        "spec": {"ephemeralRunnerSpec": {"githubConfigUrl": "https://github.com/octo-org"}},
        "status": status,
    }


def scrape(collector: ControllerCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def labels(name: str) -> str:
    return f'enterprise="",name="{name}",namespace="arc-runners",organization="octo-org",repository=""'


def test_counts_per_scale_set_and_running_listeners() -> None:
    sets = [
        # a template roll: the old set still runs a job, the new one has the rest
        runner_set("arc-old", "arc", {"runningEphemeralRunners": 1}),
        runner_set(
            "arc-new",
            "arc",
            {"pendingEphemeralRunners": 2, "runningEphemeralRunners": 3, "failedEphemeralRunners": 1},
        ),
        runner_set("gpu-x", "gpu", {}),
        runner_set(
            "gone-x", "gone", {"runningEphemeralRunners": 5}, deletionTimestamp="2026-01-01T00:00:00Z"
        ),
    ]
    listening = [
        {
            "name": "arc",
            "namespace": "arc-runners",
            "organization": "octo-org",
            "repository": "",
            "enterprise": "",
        }
    ]
    text = scrape(ControllerCollector(lambda: sets, lambda: listening))
    for line in (
        f"gha_controller_pending_ephemeral_runners{{{labels('arc')}}} 2.0",
        f"gha_controller_running_ephemeral_runners{{{labels('arc')}}} 4.0",
        f"gha_controller_failed_ephemeral_runners{{{labels('arc')}}} 1.0",
        f"gha_controller_running_ephemeral_runners{{{labels('gpu')}}} 0.0",
        f"gha_controller_running_listeners{{{labels('arc')}}} 1.0",
    ):
        assert line in text.splitlines(), line
    assert 'name="gone"' not in text
    assert "# TYPE gha_controller_running_listeners gauge" in text


def test_nothing_to_report_is_empty_families() -> None:
    text = scrape(ControllerCollector(list))
    assert "# TYPE gha_controller_pending_ephemeral_runners gauge" in text
    assert "gha_controller_pending_ephemeral_runners{" not in text
