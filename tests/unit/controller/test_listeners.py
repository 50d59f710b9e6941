"""The listener manager's pure parts (metric labels, the job written on an EphemeralRunner, what
restarts a listener, the status it writes) and the listeners' metrics on a Prometheus registry.
The manager itself runs end to end in tests/integration/test_scale_sets.py."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from runnerd.controller.autoscalinglistener import AutoscalingListener, ListenerSettings
from runnerd.controller.listener_export import ListenerCollector
from runnerd.controller.listener_metrics import ListenerMetrics
from runnerd.controller.listeners import fingerprint, job_status, listener_status, scale_set_labels
from runnerd.github.actions.models import JOB_COMPLETED, JOB_STARTED, ScaleSetJob, ScaleSetStatistics


@pytest.mark.parametrize(
    ("url", "enterprise", "organization", "repository"),
    [
        ("https://github.com/octo-org", "", "octo-org", ""),
        ("https://github.com/octo-org/app", "", "octo-org", "app"),
        ("https://github.com/enterprises/acme", "acme", "", ""),
        ("https://ghes.example.com/octo-org/", "", "octo-org", ""),
        ("not a url", "", "", ""),
    ],
)
def test_scale_set_labels_are_arcs(url: str, enterprise: str, organization: str, repository: str) -> None:
    spec = {"githubConfigUrl": url, "autoscalingRunnerSetName": "set", "autoscalingRunnerSetNamespace": "ns"}
    assert scale_set_labels(spec) == {
        "name": "set",
        "namespace": "ns",
        "enterprise": enterprise,
        "organization": organization,
        "repository": repository,
    }


def test_the_job_written_on_the_runner_is_arcs() -> None:
    job = ScaleSetJob(
        JOB_STARTED,
        runner_request_id=7,
        repository_name="app",
        owner_name="octo-org",
        job_id="j-1",
        job_workflow_ref="octo-org/app/.github/workflows/ci.yml@refs/heads/main",
        job_display_name="build",
        workflow_run_id=42,
        runner_name="set-abcde-runner-fghij",
    )
    assert job_status(job) == {
        "jobRequestId": 7,
        "jobRepositoryName": "octo-org/app",
        "jobId": "j-1",
        "workflowRunId": 42,
        "jobWorkflowRef": "octo-org/app/.github/workflows/ci.yml@refs/heads/main",
        "jobDisplayName": "build",
    }


def _listener(uid: str = "u1", **spec: Any) -> dict[str, Any]:
    base = {"runnerScaleSetId": 1, "minRunners": 0, "maxRunners": 5, "ephemeralRunnerSetName": "set-a"}
    return {"metadata": {"name": "l", "namespace": "arc", "uid": uid}, "spec": {**base, **spec}}


@pytest.mark.parametrize(
    ("changed", "restarts"),
    [
        (_listener(), False),
        (_listener(status_only=True), False),  # an unknown field does not matter
        (_listener(uid="u2"), True),  # deleted and created again
        (_listener(runnerScaleSetId=2), True),  # registered again
        (_listener(maxRunners=6), True),
        (_listener(ephemeralRunnerSetName="set-b"), True),  # a template roll
        (_listener(githubConfigSecret="other"), True),
    ],
)
def test_what_restarts_a_listener(changed: dict[str, Any], restarts: bool) -> None:
    assert (fingerprint(changed) != fingerprint(_listener())) is restarts


class NoClient:
    """The status is read from the listener's attributes; nothing is called."""


async def _noop(replicas: int, patch_id: int) -> None:
    return None


def test_the_status_is_the_listeners_state() -> None:
    listener = AutoscalingListener(
        NoClient(),  # type: ignore[arg-type]
        ListenerSettings(scale_set_id=1, max_runners=5),
        _noop,
        clock=lambda: 0.0,
        stale_session_id="old",
    )
    assert listener_status(listener) == {"phase": "Pending", "sessionId": "old", "lastError": ""}
    listener.phase, listener.last_error = "Reconnecting", "SessionConflict: held"
    listener.metrics.publish_desired(3)
    assert listener_status(listener) == {
        "phase": "Reconnecting",
        "sessionId": "old",
        "lastError": "SessionConflict: held",
        "desiredRunners": 3,
    }


def test_the_listeners_metrics_are_exported_under_arcs_names() -> None:
    metrics = [
        ListenerMetrics({"name": n, "namespace": "ns", "organization": "octo-org"}) for n in ("a", "b")
    ]
    metrics[0].publish_bounds(0, 5)
    metrics[0].publish_statistics(ScaleSetStatistics(total_assigned_jobs=2))
    metrics[1].publish_desired(1)
    started = ScaleSetJob(
        JOB_STARTED, job_display_name="build", scale_set_assign_time=100.0, runner_assign_time=103.0
    )
    metrics[0].job_started(started)
    metrics[0].job_completed(ScaleSetJob(JOB_COMPLETED, job_display_name="build", result="succeeded"))
    metrics[0].listener["sessions"] += 1
    registry = CollectorRegistry()
    registry.register(ListenerCollector(lambda: metrics))
    text = generate_latest(registry).decode()
    assert 'gha_max_runners{name="a",namespace="ns",organization="octo-org"} 5.0' in text
    assert 'gha_assigned_jobs{name="a",namespace="ns",organization="octo-org"} 2.0' in text
    assert 'gha_desired_runners{name="b",namespace="ns",organization="octo-org"} 1.0' in text
    assert 'gha_started_jobs_total{enterprise="",event_name="",job_name="build"' in text
    assert 'job_result="succeeded"' in text
    assert 'gha_job_startup_duration_seconds_bucket{enterprise="",event_name="",job_name="build"' in text
    assert 'le="3.0",organization="",repository=""} 1.0' in text
    assert 'runnerd_listener_sessions_total{name="a",namespace="ns",organization="octo-org"} 1.0' in text
    assert (
        registry.get_sample_value(
            "gha_desired_runners", {"name": "b", "namespace": "ns", "organization": "octo-org"}
        )
        == 1.0
    )
