"""The demo's pure parts: workloads and traces, manifests, pod accounting, the summary line, the feed."""

from __future__ import annotations

import argparse
import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from devcluster import demo, observe, sizeddemo, stack, workload
from devcluster.workload import CPU_LABELS, GPU_LABELS, SyntheticShape
from ghsim import ManualClock
from ghsim.errors import ValidationFailed
from ghsim.model import TraceEntry, World


def test_mlops_workload_is_deterministic_ordered_and_mixed() -> None:
    first = list(itertools.islice(workload.mlops(seed=3), 200))
    again = list(itertools.islice(workload.mlops(seed=3), 200))
    other = list(itertools.islice(workload.mlops(seed=4), 200))
    assert first == again
    assert first != other
    assert [e.offset for e in first] == sorted(e.offset for e in first)
    assert all(e.repo in workload.REPOS for e in first)
    gpu = [e for e in first if e.labels == GPU_LABELS]
    cpu = [e for e in first if e.labels == CPU_LABELS]
    assert gpu
    assert cpu
    assert len(gpu) + len(cpu) == len(first)
    # GPU training tests are slower than any lint job
    assert min(e.duration for e in gpu) > max(e.duration for e in cpu if e.workflow == "lint")
    # quiet gaps: some stretches with no arrival at all that are long enough to scale to zero
    gaps = [b.offset - a.offset for a, b in itertools.pairwise(first)]
    assert max(gaps) >= 120


def test_mlops_with_a_number_of_waves_ends() -> None:
    entries = list(workload.mlops(seed=1, waves=2))
    assert 0 < len(entries) <= 2 * 3 * 6


def test_smoke_workload_has_one_gpu_job() -> None:
    entries = workload.smoke()
    assert [workload.is_gpu(e.labels) for e in entries].count(True) == 1
    assert max(e.offset + e.duration for e in entries) < 10


@pytest.mark.parametrize(
    ("peak", "share", "gpu_jobs"), [(1, 0.1, 0), (100, 0.1, 10), (1000, 0.1, 100), (10, 0.5, 5)]
)
def test_synthetic_bursts_bring_peak_jobs_with_the_gpu_share(peak: int, share: float, gpu_jobs: int) -> None:
    shape = SyntheticShape(peak=peak, gpu_share=share, bursts=2, trickle_per_min=0, seed=5)
    entries = workload.synthetic(shape)
    assert len(entries) == 2 * peak
    assert sum(workload.is_gpu(e.labels) for e in entries) == 2 * gpu_jobs
    first_burst = [e for e in entries if e.offset <= shape.burst_window_s]
    assert len(first_burst) == peak
    second_start = shape.burst_window_s + shape.gpu_duration_s[1] + shape.gap_s
    assert all(e.offset >= second_start for e in entries[peak:])
    for e in entries:
        low, high = shape.gpu_duration_s if workload.is_gpu(e.labels) else shape.duration_s
        assert low <= e.duration <= high
    assert workload.synthetic(shape) == entries


def test_synthetic_trickle_fills_the_gaps_with_short_cpu_jobs() -> None:
    shape = SyntheticShape(peak=10, bursts=2, gap_s=120, trickle_per_min=30, seed=2)
    entries = workload.synthetic(shape)
    trickle = [e for e in entries if e.workflow == "lint"]
    assert len(entries) == 20 + len(trickle)
    assert 30 < len(trickle) < 90  # about 30 per minute over a gap of two minutes
    assert all(e.labels == CPU_LABELS and 10 <= e.duration <= 30 for e in trickle)
    # only once every job of the first burst could have ended: the trickle never waits for capacity
    last_burst_end = shape.burst_window_s + shape.gpu_duration_s[1]
    assert min(e.offset for e in trickle) >= last_burst_end


def test_scaled_multiplies_offsets_and_durations() -> None:
    entry = TraceEntry(10.0, "acme-ml/trainer", GPU_LABELS, 120.0, "failure", "train", "t", None)
    (fast,) = workload.scaled([entry], 0.1)
    assert (fast.offset, fast.duration) == (1.0, 12.0)
    assert (fast.repo, fast.labels, fast.conclusion, fast.workflow, fast.name) == (
        entry.repo,
        entry.labels,
        "failure",
        "train",
        "t",
    )


def test_trace_files_round_trip_in_ghsims_format(tmp_path: Path) -> None:
    entries = [*workload.smoke(), TraceEntry(4.0, "acme-ml/serving", CPU_LABELS, 1.0, "failure", group="cpu")]
    path = tmp_path / "t.jsonl"
    assert workload.write_trace(reversed(entries), path, header="made by a test\nseed 1") == len(entries)
    text = path.read_text()
    assert text.startswith("# made by a test\n# seed 1\n")
    assert (
        '"t": 0.0, "repo": "acme-ml/trainer", "labels": ["self-hosted", "arc-runner"], "duration": 3.0'
        in text
    )
    assert workload.read_trace(path) == sorted(entries, key=lambda e: e.offset)


def test_a_bad_trace_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"t": 0, "repo": "acme-ml/trainer", "labels": ["self-hosted"], "duration": 1}\n{"t": -1}\n'
    )
    with pytest.raises(ValidationFailed, match="line 2"):
        workload.read_trace(path)


def _by_kind(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_manifests_are_the_articles_pair_and_a_gpu_pair(tmp_path: Path) -> None:
    opts = stack.StackOptions(state_dir=tmp_path, cpu_max=5, gpu_max=3, scale_down_delay_s=30)
    docs = _by_kind(stack.manifests(opts))
    assert set(docs) == {
        ("RunnerDeployment", "example-runner-deployment"),
        ("HorizontalRunnerAutoscaler", "example-hra"),
        ("RunnerDeployment", "gpu-runner-deployment"),
        ("HorizontalRunnerAutoscaler", "gpu-hra"),
    }
    assert all(d["apiVersion"] == "actions.summerwind.dev/v1alpha1" for d in docs.values())
    assert all(d["metadata"]["namespace"] == "runnerd-demo" for d in docs.values())
    cpu = docs[("RunnerDeployment", "example-runner-deployment")]["spec"]["template"]["spec"]
    assert cpu == {"organization": "acme-ml", "labels": ["self-hosted", "arc-runner"]}
    gpu = docs[("RunnerDeployment", "gpu-runner-deployment")]["spec"]["template"]["spec"]
    assert gpu["labels"] == ["self-hosted", "gpu"]
    assert gpu["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    hra = docs[("HorizontalRunnerAutoscaler", "example-hra")]["spec"]
    assert hra["scaleTargetRef"] == {"name": "example-runner-deployment"}
    assert (hra["minReplicas"], hra["maxReplicas"], hra["scaleDownDelaySecondsAfterScaleOut"]) == (0, 5, 30)
    assert hra["metrics"] == [
        {
            "type": "TotalNumberOfQueuedAndInProgressWorkflowRuns",
            "repositoryNames": ["trainer", "feature-store", "serving"],
        }
    ]
    assert hra["scaleUpTriggers"] == [{"githubEvent": {"workflowJob": {}}, "duration": "30m"}]
    assert docs[("HorizontalRunnerAutoscaler", "gpu-hra")]["spec"]["maxReplicas"] == 3


def test_manifests_without_a_gpu_pool_or_metric(tmp_path: Path) -> None:
    opts = stack.StackOptions(state_dir=tmp_path, gpu_max=0, hra_metric=False)
    docs = stack.manifests(opts)
    assert [d["kind"] for d in docs] == ["RunnerDeployment", "HorizontalRunnerAutoscaler"]
    assert "metrics" not in docs[1]["spec"]


def _pod(
    name: str, uid: str, *, gpus: int = 0, phase: str = "Pending", deleting: bool = False
) -> dict[str, Any]:
    limits = {"nvidia.com/gpu": gpus} if gpus else {}
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "runner"}, {"name": "docker", "resources": {"limits": limits}}]},
        "status": {"phase": phase},
    }


def test_pod_gpus_sums_the_containers_limits() -> None:
    assert observe.pod_gpus(_pod("a", "1", gpus=2)) == 2
    assert observe.pod_gpus(_pod("a", "1")) == 0
    assert (
        observe.pod_gpus({"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "4"}}}]}}) == 4
    )


def test_tracking_agent_records_when_pods_appear_end_and_go() -> None:
    clock = ManualClock(1000.0)
    agent = observe.TrackingPodAgent(None, "http://sim", watch=False, clock=clock.now)
    agent.handle("ADDED", _pod("gpu-1", "u1", gpus=1))
    agent.handle("ADDED", _pod("cpu-1", "u2"))
    clock.advance(10)
    agent.handle("MODIFIED", _pod("cpu-1", "u2", phase="Succeeded"))
    clock.advance(5)
    agent.handle("DELETED", _pod("cpu-1", "u2", phase="Succeeded"))
    agent.handle("MODIFIED", _pod("gpu-1", "u1", gpus=1, deleting=True))
    agent.handle("DELETED", _pod("never-seen", "u3"))
    cpu, gpu = agent.by_name()["cpu-1"], agent.by_name()["gpu-1"]
    assert (cpu.created, cpu.ended, cpu.deleted, cpu.gpus) == (1000.0, 1010.0, 1015.0, 0)
    assert (gpu.created, gpu.ended, gpu.deleted, gpu.gpus) == (1000.0, 1015.0, None, 1)
    assert cpu.reserved_until(2000.0) == 1010.0
    assert agent.alive() == []
    assert "never-seen" not in agent.by_name()
    assert not agent.tasks  # no pod was Running: no virtual runner started


def test_tracking_agent_records_when_a_pod_is_refused_by_the_scheduler_and_when_it_is_bound() -> None:
    clock = ManualClock(1000.0)
    agent = observe.TrackingPodAgent(None, "http://sim", watch=False, clock=clock.now)
    refused = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
    waiting, direct = _pod("gpu-8", "u1", gpus=8), _pod("gpu-1", "u2", gpus=1)
    agent.handle("ADDED", waiting)
    agent.handle("ADDED", direct)
    clock.advance(1)
    agent.handle("MODIFIED", {**waiting, "status": {"phase": "Pending", "conditions": [refused]}})
    agent.handle("MODIFIED", {**direct, "spec": {**direct["spec"], "nodeName": "gpu-node-0"}})
    clock.advance(10)
    bound = {**waiting, "spec": {**waiting["spec"], "nodeName": "gpu-node-1"}}
    agent.handle("MODIFIED", {**bound, "status": {"phase": "Pending", "conditions": [refused]}})
    pods = agent.by_name()
    assert (pods["gpu-8"].unschedulable, pods["gpu-8"].bound) == (1001.0, 1011.0)
    assert (pods["gpu-1"].unschedulable, pods["gpu-1"].bound) == (None, 1001.0)
    assert observe.unschedulable({"status": {"conditions": [refused]}})
    assert not observe.unschedulable({"status": {"conditions": [{**refused, "status": "True"}]}})
    assert not observe.unschedulable({})


def test_tracking_agent_ends_the_pods_a_relist_no_longer_shows() -> None:
    clock = ManualClock(1000.0)
    agent = observe.TrackingPodAgent(None, "http://sim", watch=False, clock=clock.now)
    agent.handle("ADDED", _pod("cpu-1", "u1"))
    agent.handle("ADDED", _pod("cpu-2", "u2"))
    clock.advance(10)
    agent.listed([_pod("cpu-2", "u2")])  # cpu-1 was deleted while the watch was down (410 Gone)
    assert [p.name for p in agent.alive()] == ["cpu-2"]
    assert (agent.by_name()["cpu-1"].ended, agent.by_name()["cpu-1"].deleted) == (1010.0, 1010.0)


async def test_tracking_agent_has_no_connection_limit() -> None:
    agent = observe.TrackingPodAgent(None, "http://sim", watch=False)
    await agent.start()
    try:
        assert agent._session is not None
        assert agent._session.connector is not None
        assert agent._session.connector.limit == 0
    finally:
        await agent.stop()


def _snapshot(**changes: Any) -> observe.Snapshot:
    values: dict[str, Any] = {
        "elapsed": 75.0,
        "queued": 2,
        "running": 3,
        "done": 10,
        "done_on_gpu": 1,
        "runners": 5,
        "idle": 1,
        "busy": 3,
        "starting": 1,
        "gpu_runners": 1,
        "desired": {"cpu": 4, "gpu": 1},
        "maximum": {"cpu": 5, "gpu": 4},
        "wait_p50": 3.25,
    }
    values.update(changes)
    return observe.Snapshot(**values)


def test_summary_line() -> None:
    assert _snapshot().line() == (
        "[01:15] jobs: 2 queued, 3 running, 10 done (1 on GPU) | runners: 5 (1 idle, 3 busy, 1 starting), "
        "1 GPU | desired: cpu 4/5 gpu 1/4 | queue wait p50 3.2s"
    )
    line = _snapshot(desired={"cpu": None, "gpu": 0}, wait_p50=None).line()
    assert "desired: cpu ?/5 gpu 0/4 | queue wait p50 -" in line


def test_finished_only_when_the_trace_is_over_all_done_and_all_at_zero() -> None:
    class FeederState:
        exhausted = True
        scheduled = 10

    feeder: Any = FeederState()
    zero = {"runners": 0, "desired": {"cpu": 0, "gpu": 0}, "queued": 0, "running": 0}
    assert demo.finished(_snapshot(**zero), feeder) == (
        "runnerd demo: workload done: 10 jobs completed, 1 on a GPU runner; every pool is back to zero "
        "(Ctrl-C stops the demo)"
    )
    assert demo.finished(_snapshot(**{**zero, "runners": 1}), feeder) is None
    assert demo.finished(_snapshot(**{**zero, "desired": {"cpu": 0, "gpu": None}}), feeder) is None
    assert demo.finished(_snapshot(**{**zero, "done": 9}), feeder) is None
    feeder.exhausted = False
    assert demo.finished(_snapshot(**zero), feeder) is None


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([5.0], 99, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([float(i) for i in range(1, 101)], 95, 95.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float | None) -> None:
    assert observe.percentile(values, q) == expected


class _Core:
    def __init__(self) -> None:
        self.pokes = 0

    def poke(self) -> None:
        self.pokes += 1


class _Sim:
    def __init__(self, clock: ManualClock) -> None:
        self.world = World(clock)
        self.world.create_org("acme-ml")
        for repo in workload.REPOS:
            self.world.create_repo("acme-ml", repo.split("/")[1])
        self.core = _Core()


def test_feeder_schedules_ahead_and_runs_the_jobs_on_time() -> None:
    clock = ManualClock()
    sim = _Sim(clock)
    entries = [TraceEntry(float(t), "acme-ml/trainer", CPU_LABELS, 1.0) for t in (0, 10, 50, 100)]
    feeder = observe.Feeder(sim, entries, lookahead_s=30)  # type: ignore[arg-type]
    feeder.feed()
    assert (feeder.scheduled, feeder.exhausted) == (2, False)
    sim.world.tick()
    assert len(sim.world.jobs) == 1
    clock.advance(25)
    feeder.feed()
    sim.world.tick()
    assert (feeder.scheduled, len(sim.world.jobs)) == (3, 2)
    clock.advance(100)
    feeder.feed()
    sim.world.tick()
    assert (feeder.scheduled, feeder.exhausted, len(sim.world.jobs)) == (4, True, 4)
    assert sim.core.pokes == 3


def test_feeder_handles_an_endless_workload_lazily() -> None:
    clock = ManualClock()
    sim = _Sim(clock)
    feeder = observe.Feeder(sim, workload.mlops(seed=1), lookahead_s=60)  # type: ignore[arg-type]
    feeder.feed()
    assert 0 < feeder.scheduled < 40
    assert not feeder.exhausted


def _ns(**changes: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo.add_parser(parser.add_subparsers(dest="command"))
    ns = parser.parse_args(["demo", "--metrics-port", "0"])
    for k, v in changes.items():
        setattr(ns, k, v)
    return ns


def test_args_default_to_the_mlops_demo_and_smoke_scales_down_fast(tmp_path: Path) -> None:
    args = demo.args_from(_ns(state_dir=tmp_path))
    assert (args.workload, args.trace, args.seed, args.interval) == ("mlops", None, 7, 5.0)
    assert args.stack is not None
    assert (args.stack.cpu_max, args.stack.gpu_max, args.stack.scale_down_delay_s) == (5, 4, 30)
    assert args.stack.hra_metric
    webhook_only = demo.args_from(_ns(state_dir=tmp_path, webhook_only=True))
    assert webhook_only.stack is not None
    assert not webhook_only.stack.hra_metric
    smoke = demo.args_from(_ns(state_dir=tmp_path, workload="smoke"))
    assert smoke.stack is not None
    assert smoke.stack.scale_down_delay_s == 3


def test_load_workload_from_a_trace_takes_its_repositories(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    workload.write_trace(
        [TraceEntry(0, "acme-ml/docs", CPU_LABELS, 10), TraceEntry(5, "acme-ml/trainer", GPU_LABELS, 20)],
        path,
    )
    args = demo.DemoArgs(state_dir=tmp_path, trace=path, time_scale=0.5)
    entries, repos, what = demo.load_workload(args)
    assert repos == ("acme-ml/docs", "acme-ml/trainer")
    assert [(e.offset, e.duration) for e in entries] == [(0, 5), (2.5, 10)]
    assert what.endswith("(2 jobs), time x0.5")


def test_main_refuses_a_missing_or_bad_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(_ns(state_dir=tmp_path, trace=tmp_path / "missing.jsonl")) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert demo.main(_ns(state_dir=tmp_path, trace=bad)) == 2
    err = capsys.readouterr().err
    assert "no trace file" in err
    assert "trace line 1: not JSON" in err


def test_mlops_job_mix_over_an_hour_is_mostly_cpu() -> None:
    hour = list(itertools.takewhile(lambda e: e.offset < 3600, workload.mlops(seed=7)))
    kinds = Counter(e.workflow for e in hour)
    assert kinds["test"] > kinds["lint"] > 0
    assert 0 < kinds["train"] < kinds["test"]


@pytest.mark.parametrize("workload", ["smoke", "mlops"])
def test_built_in_workloads_start_with_two_sized_a100_jobs(tmp_path: Path, workload: str) -> None:
    args = demo.args_from(_ns(state_dir=tmp_path, workload=workload))
    assert args.stack is not None
    assert "--enable-sizing" in args.stack.controller_args
    entries, _, what = demo.load_workload(args)
    first = list(itertools.islice(entries, 40))
    assert [e.offset for e in first] == sorted(e.offset for e in first)
    sized = [e for e in first if e.labels == sizeddemo.FINETUNE]
    assert [(e.offset, e.duration) for e in sized] == [(1.5, 15.0), (2.5, 5.0)]
    assert "2 sized A100 jobs" in what
