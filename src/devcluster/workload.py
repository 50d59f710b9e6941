"""Job workloads for ``runnerd-dev demo`` and ``bench/trace_bench.py``, as ghsim trace entries.

Every workload is a sequence of :class:`ghsim.TraceEntry` (one single-job workflow run each, in the
trace format of docs/ghsim.md#trace-files), generated from a seed so that a run can be repeated
exactly. Three kinds:

- :func:`mlops` — the demo's endless MLOps day: waves of pushes to a few repositories, each push
  bringing a lint job and some test shards (CPU, ``[self-hosted, arc-runner]``) and, for model code,
  a slower GPU training test (``[self-hosted, gpu]``); waves are separated by short and long quiet
  gaps, so pools scale up, drain and scale back to zero.
- :func:`smoke` — four short jobs (one of them on a GPU runner), for tests.
- :func:`synthetic` — the benchmark's traces: ``bursts`` bursts of ``peak`` jobs (a ``gpu_share`` of
  them GPU jobs) arriving within ``burst_window_s``, with a trickle of jobs in the gaps.

:func:`write_trace` and :func:`read_trace` convert to and from JSON lines.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ghsim.model import TraceEntry
from ghsim.trace import parse_trace

ORG = "acme-ml"
REPOS = (f"{ORG}/trainer", f"{ORG}/feature-store", f"{ORG}/serving")
CPU_LABELS = ("self-hosted", "arc-runner")
GPU_LABELS = ("self-hosted", "gpu")
GPU_LABEL = "gpu"


def repo_names(n: int) -> tuple[str, ...]:
    """``n`` repositories of the organization: the demo's three, then ``svc-000``, ``svc-001``, ..."""
    extra = tuple(f"{ORG}/svc-{i:03d}" for i in range(max(0, n - len(REPOS))))
    return (REPOS + extra)[: max(1, n)]


def is_gpu(labels: Iterable[str]) -> bool:
    return any(label.lower() == GPU_LABEL for label in labels)


def mlops(seed: int = 7, *, repos: Sequence[str] = REPOS, waves: int | None = None) -> Iterator[TraceEntry]:
    """The demo's workload, wave after wave (endless unless ``waves`` is given), in offset order.

    A wave: 1-3 pushes within 8 s, each to a random repository: ``lint`` (5-12 s), 2-4 ``test`` shards
    (15-40 s, 5 % fail) and, for the first repository (model code) or 40 % of other pushes, a
    ``train-smoke`` GPU job (40-90 s). Then a quiet gap: 20-40 s, and every third gap 140-200 s (long
    enough for both pools to scale back to zero with the demo's 30 s scale-down delay).
    """
    rng = random.Random(seed)
    t = 0.0
    counter = itertools.count(1) if waves is None else range(1, waves + 1)
    for wave in counter:
        pending: list[TraceEntry] = []
        for _ in range(rng.randint(1, 3)):
            at = t + rng.uniform(0, 8)
            repo = rng.choice(repos)
            pending.append(
                TraceEntry(
                    round(at, 2), repo, CPU_LABELS, round(rng.uniform(5, 12), 1), workflow="lint", name="ruff"
                )
            )
            for shard in range(rng.randint(2, 4)):
                conclusion = "failure" if rng.random() < 0.05 else "success"
                pending.append(
                    TraceEntry(
                        round(at + 0.5, 2),
                        repo,
                        CPU_LABELS,
                        round(rng.uniform(15, 40), 1),
                        conclusion,
                        "test",
                        f"pytest ({shard + 1})",
                    )
                )
            if repo == repos[0] or rng.random() < 0.4:
                pending.append(
                    TraceEntry(
                        round(at + 1.0, 2),
                        repo,
                        GPU_LABELS,
                        round(rng.uniform(40, 90), 1),
                        workflow="train",
                        name="train-smoke",
                    )
                )
        yield from sorted(pending, key=lambda e: e.offset)
        gap = rng.uniform(140, 200) if wave % 3 == 0 else rng.uniform(20, 40)
        t += 8 + gap


def smoke(repos: Sequence[str] = REPOS) -> list[TraceEntry]:
    """Four short jobs, one of them a GPU job: enough to see both pools go up and back to zero."""
    return [
        TraceEntry(0.0, repos[0], CPU_LABELS, 3.0, workflow="lint", name="ruff"),
        TraceEntry(0.5, repos[0], CPU_LABELS, 4.0, workflow="test", name="pytest (1)"),
        TraceEntry(1.0, repos[0], GPU_LABELS, 5.0, workflow="train", name="train-smoke"),
        TraceEntry(2.0, repos[1 % len(repos)], CPU_LABELS, 3.0, workflow="lint", name="ruff"),
    ]


@dataclass(frozen=True)
class SyntheticShape:
    """The shape of a benchmark trace whose bursts ask for ``peak`` runners at once."""

    peak: int
    gpu_share: float = 0.1
    bursts: int = 2
    burst_window_s: float = 20.0
    duration_s: tuple[float, float] = (60.0, 120.0)
    gpu_duration_s: tuple[float, float] = (90.0, 150.0)
    gap_s: float = 60.0
    trickle_per_min: float = 6.0
    seed: int = 1

    @property
    def gpu_jobs_per_burst(self) -> int:
        return math.floor(self.peak * self.gpu_share)

    @property
    def cpu_jobs_per_burst(self) -> int:
        return self.peak - self.gpu_jobs_per_burst


def synthetic(shape: SyntheticShape, repos: Sequence[str] = REPOS) -> list[TraceEntry]:
    """``shape.bursts`` bursts; each brings ``peak`` jobs (``floor(peak * gpu_share)`` of them GPU jobs)
    at uniform offsets within ``burst_window_s``. The next burst starts ``gap_s`` after the burst's
    longest job could have ended; in that gap (when no burst job can still run, so the trickle never
    waits for capacity) CPU jobs trickle in (Poisson, ``trickle_per_min``, 10-30 s long).
    Deterministic for a given shape (its ``seed`` included)."""
    rng = random.Random(shape.seed)
    out: list[TraceEntry] = []
    t = 0.0
    longest = max(shape.duration_s[1], shape.gpu_duration_s[1])
    for burst in range(shape.bursts):
        kinds = [True] * shape.gpu_jobs_per_burst + [False] * shape.cpu_jobs_per_burst
        rng.shuffle(kinds)
        for gpu in kinds:
            low, high = shape.gpu_duration_s if gpu else shape.duration_s
            out.append(
                TraceEntry(
                    round(t + rng.uniform(0, shape.burst_window_s), 2),
                    rng.choice(repos),
                    GPU_LABELS if gpu else CPU_LABELS,
                    round(rng.uniform(low, high), 1),
                    workflow="train" if gpu else "test",
                    name="train-smoke" if gpu else "pytest",
                )
            )
        quiet = t + shape.burst_window_s + longest
        end = quiet + shape.gap_s
        if burst < shape.bursts - 1 and shape.trickle_per_min > 0:
            at = quiet
            while True:
                at += rng.expovariate(shape.trickle_per_min / 60.0)
                if at >= end:
                    break
                out.append(
                    TraceEntry(
                        round(at, 2),
                        rng.choice(repos),
                        CPU_LABELS,
                        round(rng.uniform(10, 30), 1),
                        workflow="lint",
                        name="ruff",
                    )
                )
        t = end
    out.sort(key=lambda e: e.offset)
    return out


def scaled(entries: Iterable[TraceEntry], factor: float) -> Iterator[TraceEntry]:
    """The same trace with every offset and duration multiplied by ``factor`` (0.1: ten times faster)."""
    for e in entries:
        yield TraceEntry(
            round(e.offset * factor, 3),
            e.repo,
            e.labels,
            round(e.duration * factor, 3),
            e.conclusion,
            e.workflow,
            e.name,
            e.group,
        )


def to_json(entry: TraceEntry) -> str:
    obj: dict[str, object] = {
        "t": entry.offset,
        "repo": entry.repo,
        "labels": list(entry.labels),
        "duration": entry.duration,
    }
    if entry.conclusion != "success":
        obj["conclusion"] = entry.conclusion
    if entry.workflow != "trace":
        obj["workflow"] = entry.workflow
    if entry.name != "job":
        obj["name"] = entry.name
    if entry.group is not None:
        obj["group"] = entry.group
    return json.dumps(obj, separators=(", ", ": "))


def write_trace(entries: Iterable[TraceEntry], path: Path, header: str = "") -> int:
    """Write ``entries`` as JSON lines (``header`` lines become ``#`` comments); returns the count."""
    n = 0
    with path.open("w") as fh:
        for line in header.splitlines():
            fh.write(f"# {line}\n")
        for entry in entries:
            fh.write(to_json(entry) + "\n")
            n += 1
    return n


def read_trace(path: Path) -> list[TraceEntry]:
    """Parse a trace file (raises :class:`ghsim.errors.ValidationFailed` naming the bad line)."""
    with path.open() as fh:
        entries = parse_trace(fh)
    entries.sort(key=lambda e: e.offset)
    return entries
