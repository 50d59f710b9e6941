"""``runnerd-dev demo`` as a newcomer runs it: it starts, a job completes on a GPU runner, a sized
A100 job is placed while a second one waits for it with admission's reason, every pool scales back
to zero, Ctrl-C stops it, it prints the cost table, and no process it started is left."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from devcluster import binaries
from devcluster.process import alive

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

SUMMARY = re.compile(
    r"^\[\d\d:\d\d\] jobs: (?P<queued>\d+) queued, (?P<running>\d+) running, (?P<done>\d+) done "
    r"\((?P<gpu_done>\d+) on GPU\) \| runners: (?P<runners>\d+) .*?, (?P<gpu_runners>\d+) GPU \| "
    r"desired: cpu (?P<cpu>\d+)/5 gpu (?P<gpu>\d+)/4 \| queue wait p50 "
)
A100 = "NVIDIA-A100-SXM4-80GB"
SIZED = r"^runnerd demo: sized job (?P<job>\d+) \(gpu=4 gpu-type=a100\) "
PLACED = re.compile(SIZED + r"placed on (?P<node>gpu-node-\d+)$")
WAITING = re.compile(SIZED + rf"waiting: waiting for 4 \u00d7 nvidia\.com/gpu \({A100}\): \d of 4 free$")
DONE = re.compile(
    r"workload done: (?P<jobs>\d+) jobs completed, (?P<gpu>\d+) on a GPU runner; every pool is back"
)


class Output:
    """The demo's stdout, line by line, read on a thread so the test can wait with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str], within: float) -> re.Match[str]:
        deadline = time.monotonic() + within
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no line matching {pattern.pattern!r} within {within}s:\n" + self.tail())
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail("the demo exited early:\n" + self.tail())
            self.lines.append(line)
            match = pattern.search(line)
            if match:
                return match

    def rest(self, within: float) -> None:
        """Read until the demo closes its output."""
        self._thread.join(within)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.lines.append(line)

    def tail(self) -> str:
        return "\n".join(self.lines[-40:])


def descendants(root: int) -> dict[int, str]:
    """Every live process below ``root`` (pid -> command line), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: dict[int, str] = {}
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            try:
                out[pid] = (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()).strip()
            except OSError:
                continue
            todo.append(pid)
    return out


def test_demo_runs_a_gpu_job_scales_to_zero_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    bin_dir = binaries.ensure().bin_dir  # built already in a test run; keeps the timed part about the demo
    argv = [sys.executable, "-m", "devcluster.cli", "demo", "--workload", "smoke"]
    argv += ["--state-dir", str(tmp_path / "demo"), "--metrics-port", "0", "--interval", "1"]
    env = {**os.environ, "RUNNERD_BIN_DIR": str(bin_dir), "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    # its own process group, as a shell gives a foreground job: Ctrl-C is SIGINT to that group
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    out = Output(proc)
    try:
        out.wait_for(re.compile(r"^Ctrl-C stops everything"), 90)
        banner = "\n".join(out.lines)
        assert "runnerd controller --kubeconfig=" in banner
        assert re.search(r"(dashboard|metrics) +http://127\.0\.0\.1:\d+/(dashboard|metrics)", banner)

        done = out.wait_for(DONE, 90)
        assert int(done["jobs"]) == 6  # smoke's 4 and the 2 sized jobs
        assert int(done["gpu"]) >= 1
        placed = {m["job"]: m["node"] for line in out.lines if (m := PLACED.search(line))}
        waited = {m["job"] for line in out.lines if (m := WAITING.search(line))}
        assert len(placed) == 2, out.tail()  # both sized jobs ran, on the A100 node, one after the other
        assert len(set(placed.values())) == 1
        assert waited, out.tail()  # the second waited for the first, with admission's reason
        assert waited <= placed.keys()
        summaries = [m for line in out.lines if (m := SUMMARY.search(line))]
        assert any(int(m["gpu_runners"]) >= 1 for m in summaries), "a GPU runner pod appeared"
        assert any(int(m["cpu"]) >= 1 and int(m["gpu"]) >= 1 for m in summaries), "both pools scaled up"
        last = summaries[-1]
        assert (last["runners"], last["cpu"], last["gpu"], last["queued"], last["running"]) == ("0",) * 5

        procs = descendants(proc.pid)
        commands = " ".join(procs.values())
        for component in ("etcd", "kube-apiserver", "kube-scheduler", "kwok", "runnerd.cli controller"):
            assert component in commands, f"{component} runs under the demo"

        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 0, out.tail()
        out.rest(10)
        assert out.lines[-1] == "runnerd demo: stopped; nothing is left running"
        # it ends with the cost ledger: every pool's runners charged, GPU time priced
        cost = out.lines.index(
            next(line for line in out.lines if line.startswith("runnerd demo: runnerd status --cost"))
        )
        assert out.lines[cost + 1] == "  COST (all time)", out.tail()
        table = out.lines[
            cost + 2 : next(i for i in range(cost, len(out.lines)) if out.lines[i].startswith("  TOTAL")) + 1
        ]
        assert table[0].split()[:7] == [
            "REPOSITORY",
            "WORKFLOW",
            "POOL",
            "RUNNER-H",
            "CPU-H",
            "GPU-H",
            "COST",
        ]
        assert {row.split()[2] for row in table[1:-1]} == {
            "example-runner-deployment",
            "gpu-runner-deployment",
            "sized-gpu-runners",
        }
        # no UNPRICED GPU-H value: every GPU product of the demo has a price
        assert all(len(row.split()) == 7 for row in table[1:-1]), "\n".join(table)
        left = {pid: cmd for pid, cmd in procs.items() if alive(pid)}
        assert not left, f"processes left behind: {left}"
        assert time.monotonic() - started < 150
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        out.rest(10)
        assert proc.stdout is not None
        proc.stdout.close()
