"""Ports of the dev cluster: picked where no outgoing connection can take them (issue 19)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from devcluster import ports
from devcluster.ports import (
    bind_failure,
    ephemeral_range,
    free_port,
    listen_ranges,
    reason_line,
    release_port,
)


@pytest.mark.parametrize(
    ("ephemeral", "expected"),
    [
        ((32768, 60999), [range(10000, 32768), range(61000, 65536)]),
        ((1024, 65535), []),
        ((20000, 65535), [range(10000, 20000)]),
        ((1024, 40000), [range(40001, 65536)]),
        ((5000, 9000), [range(10000, 65536)]),
    ],
)
def test_listen_ranges_leave_out_the_ephemeral_range(
    ephemeral: tuple[int, int], expected: list[range]
) -> None:
    assert listen_ranges(ephemeral) == expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [("32768\t60999\n", (32768, 60999)), ("1024 65535", (1024, 65535)), ("garbage", (32768, 60999))],
)
def test_ephemeral_range_is_read_from_the_kernel_setting(
    tmp_path: Path, content: str, expected: tuple[int, int]
) -> None:
    path = tmp_path / "ip_local_port_range"
    path.write_text(content)
    assert ephemeral_range(path) == expected
    assert ephemeral_range(tmp_path / "missing") == (32768, 60999)


def test_free_ports_are_outside_the_ephemeral_range_and_distinct() -> None:
    low, high = ephemeral_range()
    if not listen_ranges((low, high)):
        pytest.skip("this machine's ephemeral range covers every port above 10000")
    picked = [free_port() for _ in range(100)]
    try:
        assert all(not low <= port <= high for port in picked), picked
        assert all(port >= ports.PORT_FLOOR for port in picked)
        assert len(set(picked)) == len(picked)
    finally:
        for port in picked:
            release_port(port)


def test_a_port_in_use_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        # the only ports left to pick: the taken one and the next
        monkeypatch.setattr(ports, "PORT_FLOOR", taken)
        ephemeral = (taken + 2, 65535)
        assert listen_ranges(ephemeral) == [range(taken, taken + 2)]
        picks = []
        for seed in range(10):
            port = free_port(rng=random.Random(seed), ephemeral=ephemeral)
            release_port(port)
            picks.append(port)
        assert taken not in picks


def test_when_every_port_is_ephemeral_the_kernel_picks() -> None:
    port = free_port(ephemeral=(1024, 65535))
    release_port(port)
    assert 0 < port <= 65535


@pytest.mark.parametrize(
    ("log", "is_bind", "line"),
    [
        (
            'I1207 starting\nE1207 run.go:72] "command failed" err="failed to listen on 127.0.0.1:60457: '
            'listen tcp 127.0.0.1:60457: bind: address already in use"\n',
            True,
            'E1207 run.go:72] "command failed" err="failed to listen on 127.0.0.1:60457: '
            'listen tcp 127.0.0.1:60457: bind: address already in use"',
        ),
        (
            '{"level":"fatal","msg":"listen tcp 127.0.0.1:2379: bind: address already in use"}\n',
            True,
            '{"level":"fatal","msg":"listen tcp 127.0.0.1:2379: bind: address already in use"}',
        ),
        (
            "I1207 starting\nE1207 error: invalid flag --foo\nI1207 exiting\n",
            False,
            "E1207 error: invalid flag --foo",
        ),
        ("I1207 starting\nI1207 exiting\n", False, "I1207 exiting"),
        (  # Go's flag package: the error, then usage text that mentions errors
            "flag provided but not defined: -no-such-flag\nUsage:\n  --log-level  debug, error\n  proxy\n",
            False,
            "flag provided but not defined: -no-such-flag",
        ),
        (
            "Error: unknown flag: --no-such-flag\n  --log-split-stream  write error messages to stderr\n",
            False,
            "Error: unknown flag: --no-such-flag",
        ),
        ("", False, "(nothing in its log)"),
    ],
)
def test_reason_line_names_the_failure(log: str, is_bind: bool, line: str) -> None:
    assert bind_failure(log) is is_bind
    assert reason_line(log) == line
