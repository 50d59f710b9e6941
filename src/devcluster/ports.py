"""Loopback ports for the dev cluster's components and the demo's servers.

The contract of :func:`free_port`:

* every port is picked outside ``net.ipv4.ip_local_port_range``, from :data:`PORT_FLOOR` up, so no
  outgoing connection of this machine (etcd's, the API server's, a test's) can take it between the
  pick and the component's bind;
* it was free (bindable on 127.0.0.1) when picked;
* one process never hands out the same port twice while it is in use (until
  :func:`release_port`, or for :data:`HANDED_FOR` seconds).

What a component that lost its port anyway looks like in its log: :func:`bind_failure`; the line
that says why a component stopped: :func:`reason_line`.
"""

from __future__ import annotations

import random
import re
import socket
import threading
import time
from pathlib import Path

BIND_ATTEMPTS = 5
"""How many times a component that lost its port is started again on a new one."""
BIND_FAILURES = ("address already in use", "eaddrinuse", "bind: address")
"""Log text of a component that could not bind its port."""
PORT_FLOOR = 10000
"""Ports below this are left to well-known services (databases, proxies, dev servers)."""
EPHEMERAL_DEFAULT = (32768, 60999)
PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
HANDED_FOR = 600.0
"""A port handed out is not handed out again by this process for this long (or until released)."""


def ephemeral_range(path: Path = PORT_RANGE_FILE) -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (``net.ipv4.ip_local_port_range``)."""
    try:
        low, high = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        return EPHEMERAL_DEFAULT
    return (low, high) if 0 < low <= high <= 65535 else EPHEMERAL_DEFAULT


def listen_ranges(ephemeral: tuple[int, int]) -> list[range]:
    """Ports from :data:`PORT_FLOOR` up that no outgoing connection can take (may be empty)."""
    low, high = ephemeral
    ranges = [range(PORT_FLOOR, low), range(max(high + 1, PORT_FLOOR), 65536)]
    return [r for r in ranges if len(r) > 0]


_handed: dict[int, float] = {}
_handed_lock = threading.Lock()


def bindable(port: int) -> bool:
    """Whether a listener could bind ``port`` on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, rng: random.Random | None = None, ephemeral: tuple[int, int] | None = None) -> int:
    """A loopback port that is free now and outside the ephemeral range (see the module docstring).

    Falls back to a kernel-chosen port only where the ephemeral range covers every port above
    :data:`PORT_FLOOR`.
    """
    ranges = listen_ranges(ephemeral or ephemeral_range())
    pick = rng or random.SystemRandom()
    now = time.monotonic()
    with _handed_lock:
        for port, at in list(_handed.items()):
            if now - at > HANDED_FOR:
                del _handed[port]
        for _ in range(200 if ranges else 0):
            candidates = pick.choices(ranges, weights=[len(r) for r in ranges])[0]
            port = pick.choice(candidates)
            if port not in _handed and bindable(port):
                _handed[port] = now
                return port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        _handed[port] = now
        return port


def release_port(port: int) -> None:
    """``port`` is no longer in use by what it was picked for; a later pick may return it."""
    with _handed_lock:
        _handed.pop(port, None)


def bind_failure(text: str) -> bool:
    """Whether a component's log says it could not bind its port."""
    lowered = text.lower()
    return any(marker in lowered for marker in BIND_FAILURES)


_ERROR_LINE = re.compile(
    r'^(error|fatal|panic)\b|^[EF]\d{4} |"level":"(error|fatal|panic)"|flag provided but not defined',
    re.IGNORECASE,
)
"""A line that is an error report (Go's flag package, cobra, klog, zap), not usage text about errors."""


def reason_line(text: str) -> str:
    """The log line that best says why a component stopped: a bind failure, else the last error
    report, else the last line mentioning an error, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for wanted in (
        bind_failure,
        lambda line: bool(_ERROR_LINE.search(line)),
        lambda line: any(w in line.lower() for w in ("error", "fatal", "panic")),
    ):
        for line in reversed(lines):
            if wanted(line):
                return line
    return lines[-1] if lines else "(nothing in its log)"
