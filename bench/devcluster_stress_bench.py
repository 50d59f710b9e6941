"""Dev-cluster start/stop stress (issue 19): ``--clusters`` small clusters (1 CPU node), started and
stopped ``--parallel`` at a time, while ``--threads`` threads open and close loopback connections as
fast as they can (so the ephemeral port range churns, as on a busy CI machine). None may fail.

    .venv/bin/python bench/devcluster_stress_bench.py --clusters 20 --parallel 2

Prints one JSON object: clusters started, failures (one line each), components started again on a
new port, start time p50/max, and how many background connections were made.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devcluster import binaries
from devcluster.portload import stress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="threads making outgoing connections")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="devcluster-stress-") as root:
        result = stress(
            binaries.ensure(),
            Path(root),
            clusters=args.clusters,
            parallel=args.parallel,
            threads=args.threads,
        )
    starts = sorted(result.start_seconds)
    print(
        json.dumps(
            {
                "clusters": args.clusters,
                "parallel": args.parallel,
                "started": result.started,
                "failures": result.failures,
                "restarted_on_new_port": result.restarts,
                "start_s_p50": round(statistics.median(starts), 1) if starts else None,
                "start_s_max": round(starts[-1], 1) if starts else None,
                "background_connections": result.connections,
                "wall_s": round(time.monotonic() - began, 1),
            },
            indent=2,
        )
    )
    return 0 if not result.failures and result.started == args.clusters else 1


if __name__ == "__main__":
    sys.exit(main())
