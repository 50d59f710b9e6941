"""``runnerd-dev``: developer tools.

runnerd-dev cluster up [--foreground] [--name N] [--cpu-nodes 2] [--gpu-shape PRODUCT:GPUS:NODES[:MIG] ...]
                      [--real-nodes 0]
runnerd-dev cluster down [--name N]
runnerd-dev cluster status [--name N]
runnerd-dev binaries                 # build (if missing) and print the control-plane binaries
runnerd-dev github-sim [...]         # the GitHub simulator (see docs/ghsim.md)
runnerd-dev demo [--workload smoke] [--trace FILE]   # the whole system on one machine (docs/demo.md)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from pathlib import Path

from devcluster import binaries
from devcluster.cluster import Cluster, ClusterConfig, ClusterError, GpuShape
from devcluster.process import alive

STATE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "runnerd" / "devcluster"


def _state_dir(name: str) -> Path:
    return STATE_ROOT / name


def _state_file(name: str) -> Path:
    return _state_dir(name) / "state.json"


def _read_state(name: str) -> dict[str, object] | None:
    try:
        state: dict[str, object] = json.loads(_state_file(name).read_text())
    except (OSError, ValueError):
        return None
    pid = state.get("pid")
    if not isinstance(pid, int) or not alive(pid):
        return None
    return state


def _config(args: argparse.Namespace) -> ClusterConfig:
    shapes = tuple(GpuShape.parse(s) for s in args.gpu_shape) if args.gpu_shape else None
    if shapes is None:
        shapes = (GpuShape(args.gpu_product, args.gpus_per_node, args.gpu_nodes),)
    return ClusterConfig(
        state_dir=_state_dir(args.name),
        cpu_nodes=args.cpu_nodes,
        gpu_shapes=shapes,
        max_pods=args.max_pods,
        real_nodes=args.real_nodes,
    )


def _export_line(kubeconfig: object) -> str:
    return f"export KUBECONFIG={kubeconfig}"


def _up_foreground(args: argparse.Namespace) -> int:
    config = _config(args)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    try:
        cluster = Cluster(config, binaries.ensure())
        cluster.start()
    except (ClusterError, binaries.BinariesError, OSError, subprocess.SubprocessError) as e:
        print(f"runnerd-dev: the control plane did not start: {_one_line(e)}", file=sys.stderr)
        return 1
    state = {
        "pid": os.getpid(),
        "kubeconfig": str(cluster.kubeconfig),
        "server": cluster.server,
        "components": cluster.pids(),
        "ready_seconds": round(time.monotonic() - started, 1),
    }
    _state_file(args.name).write_text(json.dumps(state, indent=2))
    print(
        f"runnerd-dev: control plane ready in {state['ready_seconds']}s at {cluster.server}",
        file=sys.stderr,
    )
    print(_export_line(cluster.kubeconfig), flush=True)
    try:
        while not stop.wait(1.0):
            try:
                cluster.check_alive()
            except ClusterError as e:
                print(f"runnerd-dev: {e}", file=sys.stderr)
                return 1
    finally:
        cluster.stop()
        with contextlib.suppress(OSError):
            _state_file(args.name).unlink()
    print("runnerd-dev: control plane stopped", file=sys.stderr)
    return 0


def _one_line(error: BaseException) -> str:
    """An exception as one line: its message (the first line, or its type when it has none)."""
    text = str(error).strip()
    if isinstance(error, urllib.error.HTTPError):
        text = f"HTTP {error.code} {error.reason} from {error.url}"
    return text.splitlines()[0] if text else type(error).__name__


def _failure_line(log: Path) -> str:
    """The supervisor's own last ``runnerd-dev:`` line in ``log`` (its one-line failure)."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    ours = [line for line in lines if line.startswith("runnerd-dev:")]
    if ours:
        return ours[-1].removeprefix("runnerd-dev:").strip()
    return lines[-1].strip() if lines else "no output"


def _up_background(args: argparse.Namespace) -> int:
    existing = _read_state(args.name)
    if existing:
        print(f"runnerd-dev: cluster {args.name!r} is already running", file=sys.stderr)
        print(_export_line(existing["kubeconfig"]))
        return 0
    try:
        binaries.ensure()  # build in the foreground so progress and failures are visible
    except binaries.BinariesError as e:
        print(f"runnerd-dev: {_one_line(e)}", file=sys.stderr)
        return 1
    state_dir = _state_dir(args.name)
    state_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        _state_file(args.name).unlink()
    argv = [sys.executable, "-m", "devcluster.cli", *args.argv, "--foreground"]
    log = state_dir / "supervisor.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh, start_new_session=True)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        state = _read_state(args.name)
        if state and state.get("pid") == proc.pid:
            print(
                f"runnerd-dev: control plane ready at {state['server']} "
                f"(stop it with: runnerd-dev cluster down --name {args.name})",
                file=sys.stderr,
            )
            print(_export_line(state["kubeconfig"]))
            return 0
        if proc.poll() is not None:
            print(f"runnerd-dev: {_failure_line(log)} (log: {log})", file=sys.stderr)
            return 1
        time.sleep(0.2)
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(30)
    print(f"runnerd-dev: not ready after {args.timeout:g}s (log: {log})", file=sys.stderr)
    return 1


def _down(args: argparse.Namespace) -> int:
    state = _read_state(args.name)
    if not state:
        print(f"runnerd-dev: cluster {args.name!r} is not running", file=sys.stderr)
        return 0
    pid = state["pid"]
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
    print(f"runnerd-dev: cluster {args.name!r} stopped", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    state = _read_state(args.name)
    if not state:
        print(f"cluster {args.name!r}: not running")
        return 1
    print(json.dumps(state, indent=2))
    return 0


def _binaries(_args: argparse.Namespace) -> int:
    try:
        b = binaries.ensure()
    except binaries.BinariesError as e:
        print(f"runnerd-dev: {e}", file=sys.stderr)
        return 1
    for name in binaries.REQUIRED:
        print(b.path(name))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runnerd-dev", description="runnerd developer tools")
    sub = parser.add_subparsers(dest="command", required=True)

    cluster = sub.add_parser("cluster", help="a real local Kubernetes control plane with simulated nodes")
    csub = cluster.add_subparsers(dest="action", required=True)
    up = csub.add_parser("up", help="start it (in the background unless --foreground)")
    up.add_argument(
        "--name", default="default", help="cluster name (state under ~/.cache/runnerd/devcluster)"
    )
    up.add_argument("--foreground", action="store_true", help="stay in the foreground; Ctrl-C stops it")
    up.add_argument("--cpu-nodes", type=int, default=2)
    up.add_argument("--gpu-nodes", type=int, default=2)
    up.add_argument("--gpus-per-node", type=int, default=8)
    up.add_argument("--gpu-product", default="NVIDIA-H100-80GB-HBM3")
    up.add_argument(
        "--gpu-shape",
        action="append",
        metavar="PRODUCT:GPUS:NODES[:MIG]",
        help="GPU node shape (repeatable); replaces --gpu-nodes/--gpus-per-node/--gpu-product; MIG: "
        "slices per node as PROFILE=COUNT,... (e.g. NVIDIA-A100-SXM4-80GB:0:1:1g.10gb=7)",
    )
    up.add_argument("--max-pods", type=int, default=110, help="pods per node")
    up.add_argument(
        "--real-nodes",
        type=int,
        default=0,
        help="kubelet + containerd nodes running real containers (root; docs/devcluster.md)",
    )
    up.add_argument("--timeout", type=float, default=120, help="seconds to wait for readiness")
    for action, helptext in (("down", "stop it"), ("status", "show its state")):
        p = csub.add_parser(action, help=helptext)
        p.add_argument("--name", default="default")

    sub.add_parser("binaries", help="build (if missing) and list the control-plane binaries")
    from devcluster import demo

    demo.add_parser(sub)
    sim = sub.add_parser("github-sim", help="the GitHub simulator (docs/ghsim.md)", add_help=False)
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["github-sim"]:
        from ghsim.cli import main as sim_main

        return sim_main(raw[1:])
    args = build_parser().parse_args(raw)
    if args.command == "binaries":
        return _binaries(args)
    if args.command == "demo":
        from devcluster import demo

        return demo.main(args)
    if args.action == "up":
        args.argv = raw
        return _up_foreground(args) if args.foreground else _up_background(args)
    if args.action == "down":
        return _down(args)
    return _status(args)


if __name__ == "__main__":
    sys.exit(main())
