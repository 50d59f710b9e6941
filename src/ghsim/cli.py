"""``runnerd-dev github-sim``: run the GitHub simulator until interrupted.

Prints the base URL (one line on stdout) once the server listens; GHES clients use
``<base URL>/api/v3``.  ``--state-file`` seeds the simulator from a JSON/YAML seed document if the
file exists, and writes the simulator's setup back to it on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from .config import SimConfig
from .errors import SimError
from .server import Simulator
from .state import load_seed_file


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="runnerd-dev github-sim", description="Run the GitHub simulator.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    p.add_argument(
        "--state-file",
        type=Path,
        help="seed document (JSON or YAML) loaded at start if it exists and written back on exit",
    )
    p.add_argument("--seed", type=Path, action="append", default=[], help="extra seed document(s) to load")
    p.add_argument("--config", help='settings as JSON, e.g. \'{"primary": {"pat": 100}}\'')
    p.add_argument("--public-url", help="base URL to put in API responses (default: the listening URL)")
    p.add_argument("--log-level", default="WARNING", help="Python log level (default WARNING)")
    agent = p.add_argument_group("pod agent: play the runner process of runner pods on kwok nodes")
    agent.add_argument(
        "--pod-agent", action="store_true", help="watch pods and run a virtual runner for each"
    )
    agent.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    agent.add_argument("--namespace", help="only pods of this namespace (default: all)")
    agent.add_argument("--label-selector", help="only pods matching this label selector")
    agent.add_argument("--container", default="runner", help="the runner container's name (default runner)")
    agent.add_argument("--boot-delay", type=float, default=0.0, help="seconds before a runner registers")
    agent.add_argument("--time-scale", type=float, default=1.0, help="multiply job durations (e.g. 0.01)")
    return p


@contextlib.asynccontextmanager
async def pod_agent(args: argparse.Namespace, base_url: str) -> AsyncIterator[None]:
    if not args.pod_agent:
        yield
        return
    from .podagent import connect

    agent = connect(
        args.kubeconfig,
        base_url,
        namespace=args.namespace,
        label_selector=args.label_selector,
        container=args.container,
        boot_delay=args.boot_delay,
        time_scale=args.time_scale,
    )
    async with agent:
        yield


async def serve(args: argparse.Namespace) -> int:
    config = SimConfig()
    if args.config:
        config.update(json.loads(args.config))
    sim = Simulator(
        host=args.host, port=args.port, config=config, state_file=args.state_file, public_url=args.public_url
    )
    for path in args.seed:
        from .state import apply_seed

        apply_seed(sim.world, load_seed_file(path))
    url = await sim.start()
    print(url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with pod_agent(args, url):
            await stop.wait()
    finally:
        await sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return asyncio.run(serve(args))
    except (SimError, ValueError, OSError) as exc:
        message = exc.message if isinstance(exc, SimError) else str(exc)
        print(f"github-sim: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
