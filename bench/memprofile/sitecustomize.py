"""Heap profile of the runnerd controller process in a benchmark (``trace_bench.py --tracemalloc``).

Python imports this module at start-up when its folder is on ``PYTHONPATH``; it does nothing unless
``RUNNERD_TRACEMALLOC`` names an output file and the process is the controller (``-m runnerd.cli``).
Then it traces allocations (8 frames) and, every 5 s, samples the resident set size minus what
tracemalloc itself uses; whenever the traced memory reaches a new peak (5 % above the last profile)
it writes the profile (live bytes by the innermost ``runnerd`` line that allocated them, and by file)
to that file, so the file ends holding the profile at the peak.

``RUNNERD_CPROFILE`` (``trace_bench.py --cprofile``) names a file for a CPU profile instead: cProfile
runs in the controller's main thread (its event loop) from start-up, and the ``pstats`` file is
written when the process exits (the bench stops it with SIGTERM, a graceful exit). Read it with
``python -m pstats FILE`` (``sort tottime``, ``stats 40``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

INTERVAL = 5.0
TOP = 30


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _holder(trace: tracemalloc.Traceback) -> str:
    for frame in reversed(trace):  # the most recent frame last
        if "/runnerd/" in frame.filename:
            return f"{frame.filename.split('/src/', 1)[-1]}:{frame.lineno}"
    return f"(outside runnerd) {trace[-1].filename.rsplit('/', 1)[-1]}:{trace[-1].lineno}"


def _write(out: Path, corrected_peak: int) -> None:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
    )
    by_line: Counter[str] = Counter()
    by_file: Counter[str] = Counter()
    for stat in snapshot.statistics("traceback"):
        where = _holder(stat.traceback)
        by_line[where] += stat.size
        by_file[where.rsplit(":", 1)[0]] += stat.size
    current, peak = tracemalloc.get_traced_memory()
    mib = 2**20
    lines = [
        f"traced now {current / mib:.1f} MiB, traced peak {peak / mib:.1f} MiB, "
        f"RSS now {_rss() / mib:.1f} MiB, "
        f"tracemalloc's own {tracemalloc.get_tracemalloc_memory() / mib:.1f} MiB, "
        f"peak RSS less tracemalloc's own so far {corrected_peak / mib:.1f} MiB",
        "",
        "live bytes by the innermost runnerd line that allocated them:",
        *(f"{size / mib:9.2f} MiB  {where}" for where, size in by_line.most_common(TOP)),
        "",
        "by file:",
        *(f"{size / mib:9.2f} MiB  {where}" for where, size in by_file.most_common(TOP)),
    ]
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)


def _watch(out: Path) -> None:
    dumped = 0
    corrected_peak = 0
    while True:
        time.sleep(INTERVAL)
        corrected_peak = max(corrected_peak, _rss() - tracemalloc.get_tracemalloc_memory())
        current, _ = tracemalloc.get_traced_memory()
        if current > dumped * 1.05:
            dumped = current
            _write(out, corrected_peak)
        else:  # keep the corrected peak in the header current
            text = out.read_text().split("\n", 1) if out.exists() else ["", ""]
            head = text[0].rsplit("so far ", 1)[0] + f"so far {corrected_peak / 2**20:.1f} MiB"
            out.write_text(head + "\n" + text[1])


def _start() -> None:
    target = os.environ.get("RUNNERD_TRACEMALLOC")
    if not target or "runnerd.cli" not in getattr(sys, "orig_argv", ()):
        return
    tracemalloc.start(8)
    threading.Thread(target=_watch, args=(Path(target),), name="tracemalloc-profile", daemon=True).start()


def _start_cprofile() -> None:
    target = os.environ.get("RUNNERD_CPROFILE")
    if not target or "runnerd.cli" not in getattr(sys, "orig_argv", ()):
        return
    import atexit
    import cProfile

    profile = cProfile.Profile()

    def dump() -> None:
        profile.disable()
        profile.dump_stats(target)

    atexit.register(dump)
    profile.enable()


_start()
_start_cprofile()
