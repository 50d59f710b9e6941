"""The control plane's processes: each in its own session (a signal to the group reaches its
children), dying with the process that started it (``PR_SET_PDEATHSIG``), its output appended to
its log file. :meth:`Process.output` is what this run wrote, so a restart's log is not mistaken for
an earlier one's. :func:`alive` is the one test of whether a process id still runs;
:func:`cpu_seconds` and :func:`peak_rss` what the benchmarks read of a process; :func:`terminate`
the one way a process we started is stopped (SIGTERM, then SIGKILL after a grace).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    offset: int = 0
    """Where this run's output starts in ``log`` (logs are appended to across runs)."""
    attempt: int = 1
    """1 for the first start; more when it was started again on a new port."""

    def output(self) -> str:
        try:
            with self.log.open("rb") as fh:
                fh.seek(self.offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Children get SIGTERM if the process that started them dies, so nothing is left behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> Process:
    """Start ``argv`` (in ``env``, else this process's environment), its stdout and stderr appended
    to ``log``."""
    with log.open("ab") as fh:
        offset = fh.tell()
        popen = subprocess.Popen(
            list(argv),
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    return Process(name, popen, log, offset)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie answers signal 0 but no longer runs; one of
    another user's is running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss(pid: int) -> int:
    """A live process's peak resident set size (``VmHWM``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def terminate(proc: subprocess.Popen[bytes], grace: float = 30.0) -> int:
    """Stop ``proc``: SIGTERM, and SIGKILL if it still runs ``grace`` seconds later; its exit
    status (blocking: call it through ``asyncio.to_thread`` from a loop)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()
