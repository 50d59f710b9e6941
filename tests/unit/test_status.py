"""runnerd status: rendering the tables from fixture objects (no cluster)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from runnerd import cli, status
from runnerd.reconcile.fleet import snapshot
from runnerd.views import dashboard as dm
from runnerd.views.sizedjobs import open_jobs
from runnerd.web.metrics import BudgetSnapshot, Metrics, RateLimitReading
from tests.unit.web import objects as o

NOW = dt.datetime(2026, 1, 1, 12, 5, tzinfo=dt.UTC)


def data(namespace: str | None = "ci", **kw: object) -> status.StatusData:
    fleet = snapshot(**o.fleet_objects(), now=NOW)
    scheduler, kubelet = "default-scheduler", "kubelet"
    events = [
        o.warning("e1", "Runner", "cpu-d", "RunnerFailed", "runner exited with code 1",
                  last="2026-01-01T12:04:00Z"),
        o.warning("e2", "HorizontalRunnerAutoscaler", "gpu-hra", "FailedGetScaleTarget", "x" * 200,
                  last="2026-01-01T12:01:00Z", count=4),
        o.warning("e3", "Pod", "gpu-b", "FailedScheduling", "0/4 nodes: 4 Insufficient nvidia.com/gpu.",
                  last="2026-01-01T12:04:30Z", component=scheduler),
        o.warning("e4", "Pod", "someone-elses-pod", "BackOff", "not ours", last="2026-01-01T12:04:59Z",
                  component=kubelet),
        {**o.warning("e5", "Runner", "cpu-a", "Nope", "a Normal event"), "type": "Normal"},
    ]  # fmt: skip
    return status.StatusData(
        fleet=fleet,
        events=status.warning_events(events, fleet, status.MAX_EVENTS),
        namespace=namespace,
        **kw,  # type: ignore[arg-type]
    )


def lines_of(text: str, section: str) -> list[str]:
    """The lines of one section (from its title to the next blank line)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(section))
    end = next((i for i in range(start, len(lines)) if not lines[i]), len(lines))
    return lines[start + 1 : end]


def test_targets_table() -> None:
    text = status.render_text(data(), now=NOW)
    assert text.startswith("RUNNER DEPLOYMENTS AND RUNNER SETS (namespace ci)\n")
    header, cpu, gpu, big = lines_of(text, "RUNNER DEPLOYMENTS")
    assert header.split() == ["KIND", "NAME", "DESIRED", "CURRENT", "READY", "BUSY", "QUEUED", "RUNNERS"]
    assert cpu.split()[:7] == ["RunnerDeployment", "cpu", "2", "3", "2", "1", "2"]
    assert cpu.endswith("1 idle, 1 busy, 1 draining, 1 failed")
    assert gpu.split()[:7] == ["RunnerDeployment", "gpu", "2", "2", "1", "1", "0"]
    assert gpu.endswith("1 starting, 1 busy")
    assert big.split()[:7] == ["RunnerSet", "big", "2", "2", "2", "1", "0"]
    # columns line up: every value starts where its header does
    assert cpu.index("cpu") == header.index("NAME")
    assert big.index("1 idle") == header.index("RUNNERS")


def test_wide_adds_every_state_gpus_autoscaler_scope_and_labels() -> None:
    text = status.render_text(data(), now=NOW, wide=True)
    header, cpu, gpu, big = lines_of(text, "RUNNER DEPLOYMENTS")
    assert header.split()[7:] == [
        "STARTING", "IDLE", "BUSY", "DRAINING", "FAILED",
        "GPU", "RUNNERS", "GPUS", "AUTOSCALER", "SCOPE", "LABELS",
    ]  # fmt: skip
    assert cpu.split()[7:] == [
        "0",
        "1",
        "1",
        "1",
        "1",
        "0",
        "0",
        "cpu-hra",
        "octo-org/app",
        "self-hosted,linux",
    ]
    assert gpu.split()[7:] == [
        "1",
        "0",
        "1",
        "0",
        "0",
        "2",
        "2",
        "gpu-hra",
        "octo-org/app",
        "self-hosted,gpu",
    ]
    assert big.split()[7:] == ["0", "1", "1", "0", "0", "1", "2", "-", "octo-org", "big"]
    hra_header, cpu_hra, _ = lines_of(text, "HORIZONTAL")
    assert hra_header.split()[-2:] == ["TRIGGERS", "RESERVED"]
    assert cpu_hra.split()[-2:] == ["webhook", "3"]


def test_autoscalers_table() -> None:
    header, cpu, gpu = lines_of(status.render_text(data(), now=NOW), "HORIZONTAL RUNNER AUTOSCALERS")
    assert header.split() == ["NAME", "TARGET", "MIN", "MAX", "DESIRED", "SCHEDULE"]
    assert cpu.split() == ["cpu-hra", "RunnerDeployment/cpu", "1", "4", "2", "-"]
    assert gpu.split()[:5] == ["gpu-hra", "RunnerDeployment/gpu", "0", "2", "2"]
    assert gpu.endswith("min 1 9:00-17:00")


def test_recent_warnings_are_ours_newest_first_and_short() -> None:
    header, *rows = lines_of(status.render_text(data(), now=NOW), "RECENT WARNING EVENTS")
    assert header.split() == ["LAST", "SEEN", "OBJECT", "REASON", "COUNT", "MESSAGE"]
    assert [r.split()[1] for r in rows] == ["Pod/gpu-b", "Runner/cpu-d", "HorizontalRunnerAutoscaler/gpu-hra"]
    assert [r.split()[0] for r in rows] == ["30s", "60s", "4m"]
    assert rows[2].split()[3] == "4"
    assert rows[2].endswith("x" * (status.MESSAGE_WIDTH - 1) + "…")
    wide_rows = lines_of(status.render_text(data(), now=NOW, wide=True), "RECENT WARNING EVENTS")[1:]
    assert wide_rows[2].endswith("x" * 200)


def test_all_namespaces_adds_a_namespace_column() -> None:
    text = status.render_text(data(None), now=NOW)
    assert "(all namespaces)" in text
    for section in ("RUNNER DEPLOYMENTS", "HORIZONTAL", "RECENT WARNING"):
        header, first, *_ = lines_of(text, section)
        assert header.split()[0] == "NAMESPACE"
        assert first.split()[0] == "ci"


def test_an_empty_namespace() -> None:
    empty = status.StatusData(fleet=snapshot(now=NOW), namespace="empty", notes=["runnersets are not served"])
    text = status.render_text(empty, now=NOW)
    assert lines_of(text, "RUNNER DEPLOYMENTS") == ["none"]
    assert lines_of(text, "HORIZONTAL") == ["none"]
    assert text.rstrip().endswith("note: runnersets are not served")


def registry_text() -> str:
    metrics = Metrics()
    metrics.watch_github(
        lambda: BudgetSnapshot(
            rate_limits=[RateLimitReading("core", 5000, 4000, NOW.timestamp() + 1500)],
            calls={("GET /repos/{owner}/{repo}/actions/runners", "200"): 12, ("POST /jit", "201"): 3},
        )
    )
    labels = {"runs_on": "self-hosted", "repository": "app"}
    for wait in (1.0, 2.0, 40.0):
        metrics.observe_job_event(
            action="in_progress",
            labels=labels,
            conclusion=None,
            created_at=0.0,
            started_at=wait,
            completed_at=None,
        )
    return metrics.render().decode()


def test_metrics_section() -> None:
    model = dm.build(status.samples_from_text(registry_text()), generated_at=NOW.timestamp())
    d = data(metrics=model, metrics_url="http://127.0.0.1:8080/metrics")
    text = status.render_text(d, now=NOW)
    section = text[text.index("METRICS (http://127.0.0.1:8080/metrics)") :]
    assert "Jobs:          0 completed\n" in section  # a registry without the fleet: no runner numbers
    assert "GPU:" not in section
    # 3 jobs: 1 s and 2 s (bucket (1,2]) and 40 s (bucket (30,45]): p50 at rank 1.5 is 1.5 s
    assert "since start: p50 1.5s, p95 " in section
    assert "(3 jobs)" in section
    header, core = lines_of(section, "GITHUB API")
    assert header.split() == ["RESOURCE", "REMAINING", "LIMIT", "RESETS"]
    assert core.split() == ["core", "4000", "5000", "in", "25m"]
    assert "GET /repos/{owner}/{repo}/actions/runners   12      200:12" in section
    assert "15 calls, 0 retried, 0 waited for a rate limit" in section
    assert "Delivery audit: no hook read (off, or none found" in section


@pytest.mark.parametrize(
    ("hooks", "healthy", "words"),
    [(0, 0, "no hook read"), (2, 1, "2 hook(s) read, healthy"), (1, 0, "1 hook(s) read, not healthy")],
)
def test_the_delivery_audit_line(hooks: int, healthy: int, words: str) -> None:
    metrics = Metrics()
    metrics.audit_hooks.set(hooks)
    metrics.audit_healthy.set(healthy)
    model = dm.build(status.samples_from_text(metrics.render().decode()), generated_at=NOW.timestamp())
    text = status.render_text(data(metrics=model, metrics_url="http://127.0.0.1:8080/metrics"), now=NOW)
    assert f"Delivery audit: {words}" in text


def test_json_output() -> None:
    doc = json.loads(status.render_json(data(), now=NOW))
    cpu = doc["targets"][0]
    assert cpu == {
        "namespace": "ci",
        "kind": "RunnerDeployment",
        "name": "cpu",
        "desired": 2,
        "current": 3,
        "ready": 2,
        "busy": 1,
        "queuedJobs": 2,
        "runningJobs": 1,
        "runners": {"starting": 0, "idle": 1, "busy": 1, "draining": 1, "failed": 1},
        "gpuRunners": 0,
        "gpus": 0,
        "autoscaler": "cpu-hra",
        "scope": "octo-org/app",
        "labels": ["self-hosted", "linux"],
    }
    assert doc["autoscalers"][1]["schedule"] == "min 1 9:00-17:00"
    assert doc["autoscalers"][0]["target"] == {"kind": "RunnerDeployment", "name": "cpu"}
    assert [e["object"] for e in doc["warningEvents"]] == [
        "Pod/gpu-b", "Runner/cpu-d", "HorizontalRunnerAutoscaler/gpu-hra",
    ]  # fmt: skip
    assert doc["metrics"] is None


def test_the_context_namespace(tmp_path: Path) -> None:
    config = {
        "current-context": "b",
        "contexts": [
            {"name": "a", "context": {"namespace": "one"}},
            {"name": "b", "context": {"namespace": "two"}},
        ],
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    assert status.context_namespace(str(path), None, {}) == "two"
    assert status.context_namespace(None, "a", {"KUBECONFIG": str(path)}) == "one"
    assert status.context_namespace(None, "missing", {"KUBECONFIG": str(path)}) == "default"
    assert status.context_namespace(str(tmp_path / "nope"), None, {}) == "default"


@pytest.mark.parametrize(
    ("argv", "namespace", "all_namespaces", "output"),
    [
        (["status"], None, False, None),
        (["status", "-n", "ci", "-o", "wide"], "ci", False, "wide"),
        (["status", "-A", "-o", "json", "--metrics-url", "http://x/metrics"], None, True, "json"),
    ],
)
def test_flags(argv: list[str], namespace: str | None, all_namespaces: bool, output: str | None) -> None:
    args = cli.build_parser().parse_args(argv)
    assert (args.namespace, args.all_namespaces, args.output) == (namespace, all_namespaces, output)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["status", "-o", "yaml"])


def test_kubectl_plugin_without_a_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert status.kubectl_main([]) == 0
    assert "kubectl runnerd" in capsys.readouterr().out


async def test_a_missing_kubeconfig_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(
        kubeconfig=str(tmp_path / "missing"), context=None, namespace="ci", all_namespaces=False, output=None,
        metrics_url=None,
    )  # fmt: skip
    out = tmp_path / "out.txt"
    with out.open("w") as f:
        assert await status.run_status(args, {}, f) == 1
    assert "runnerd status:" in capsys.readouterr().err
    assert out.read_text() == ""


def test_metrics_section_of_a_controller() -> None:
    target = {"namespace": "ci", "kind": "RunnerDeployment", "name": "gpu"}
    fleet_samples: list[dm.Sample] = [
        (dm.RUNNERS, {**target, "state": "busy"}, 1.0),
        (dm.JOBS_QUEUED, target, 2.0),
        (dm.JOBS_RUNNING, target, 1.0),
        (dm.GPU_RUNNERS, target, 1.0),
        (dm.GPUS_REQUESTED, target, 4.0),
        (dm.GPU_BUSY_SECONDS + "_total", target, 1800.0),
        (dm.GPU_RESERVED_SECONDS + "_total", target, 3600.0),
        (dm.QUEUE_WAIT_WINDOW, {}, 300.0),
    ]
    model = dm.build(
        [*status.samples_from_text(registry_text()), *fleet_samples], generated_at=NOW.timestamp()
    )
    text = status.render_text(data(metrics=model, metrics_url="http://x/metrics"), now=NOW)
    assert "Jobs:          2 queued, 1 running, 0 completed" in text
    assert "GPU:           1 GPU runners (4 GPUs); 0.500 GPU-hours used of 1.000 reserved" in text
    assert "Queue wait:    last 5 min: p50 -" in text


def test_sized_jobs_waiting_or_refused_are_listed_with_their_reasons() -> None:
    waiting = "waiting for 2 x nvidia.com/gpu (NVIDIA-H100-80GB-HBM3): 0 of 16 free"
    refused = "asks for 16 x nvidia.com/gpu (NVIDIA-H100-80GB-HBM3); the largest matching node has 8"
    runners = [
        {
            "metadata": {
                "name": f"gpu-job-{job}",
                "namespace": "ci",
                "labels": {"runnerd.dev/sized-job": job},
                "annotations": {"runnerd.dev/queued-at": queued, "runnerd.dev/size": size},
                "ownerReferences": [{"kind": "RunnerDeployment", "name": "gpu"}],
            },
            "status": {"phase": phase, "message": message},
        }
        for job, queued, size, phase, message in [
            ("42", "2026-01-01T12:03:00Z", "2 x GPU", "Waiting", waiting),
            ("41", "2026-01-01T11:05:00Z", "16 x GPU", "Refused", refused),
        ]
    ]
    sized = open_jobs(runners)
    text = status.render_text(data(sized_jobs=sized), now=NOW)
    header, first, second = lines_of(text, "SIZED JOBS WAITING OR REFUSED")
    assert header.split() == ["JOB", "POOL", "SIZE", "STATE", "WAITING", "REASON"]
    assert first.split()[:5] == ["41", "gpu", "16", "x", "GPU"]
    state, reason = header.index("STATE"), header.index("REASON")
    assert first[state:reason].split() == ["refused", "60m"]  # oldest first
    assert first[reason:] == refused
    assert second[state:reason].split() == ["waiting", "2m"]
    assert second[reason:] == waiting
    doc = json.loads(status.render_json(data(sized_jobs=sized), now=NOW))
    assert [(j["job"], j["state"], j["reason"]) for j in doc["sizedJobs"]] == [
        ("41", "refused", refused),
        ("42", "waiting", waiting),
    ]
    assert "SIZED JOBS" not in status.render_text(data(), now=NOW)  # no section without sized jobs
