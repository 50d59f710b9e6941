"""Webhook memory under a flood of stalled bodies (issue 13 finding 3): ``--clients`` connections
each send the headers of a ``--body``-byte delivery and ``--sent`` bytes of it, then stall (and give
up after ``--give-up`` seconds without an answer). Reports the server process's RSS before, at its
peak, and after the clients are gone, and how the server answered them.

    .venv/bin/python bench/webhook_flood_bench.py --clients 150 --body 1000000 --sent 900000

The server is :class:`runnerd.web.webhook.WebhookServer` with its defaults (1 MiB body, 32 in
flight, 10 s body and header timeouts) on 127.0.0.1, in this process, as the controller runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runnerd.web.server import Address, Servers
from runnerd.web.webhook import SinkReply, WebhookServer


class NullSink:
    async def workflow_job(self, event: object) -> SinkReply:
        return SinkReply(200, "ok")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def client(port: int, body: int, sent: int, answers: Counter[str], give_up: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: workflow_job\r\n"
        f"X-Hub-Signature-256: sha256=00\r\nContent-Length: {body}\r\n\r\n"
    ).encode()
    writer.write(head + b" " * sent)
    try:
        async with asyncio.timeout(give_up):
            await writer.drain()
            line = await reader.readline()
        answers[line.decode(errors="replace").strip() or "closed"] += 1
    except ConnectionError:
        answers["reset"] += 1
    except TimeoutError:
        answers[f"no answer in {give_up:g}s"] += 1
    finally:
        writer.close()


async def clients(args: argparse.Namespace) -> None:
    """The client side (a separate process, so its buffers do not count in the server's RSS)."""
    answers: Counter[str] = Counter()
    await asyncio.gather(
        *(client(args.connect, args.body, args.sent, answers, args.give_up) for _ in range(args.clients))
    )
    print(json.dumps(dict(answers)))


async def flood(args: argparse.Namespace) -> dict[str, object]:
    server = WebhookServer(secret="bench", sink=NullSink())
    async with Servers() as servers:
        _, port = await servers.start("webhook", server.app(), Address("127.0.0.1", 0))
        gc.collect()
        before = rss_mb()
        argv = [sys.executable, __file__, f"--connect={port}", f"--clients={args.clients}"]
        argv += [f"--body={args.body}", f"--sent={args.sent}", f"--give-up={args.give_up}"]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
        peak = before
        waiting = asyncio.ensure_future(proc.communicate())
        while not waiting.done():
            peak = max(peak, rss_mb())
            await asyncio.sleep(0.1)
        out, _ = waiting.result()
        gc.collect()
        after = rss_mb()
    return {
        "clients": args.clients,
        "body_bytes": args.body,
        "sent_bytes": args.sent,
        "rss_mb_before": round(before, 1),
        "rss_mb_peak": round(peak, 1),
        "rss_mb_after": round(after, 1),
        "answers": json.loads(out),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=150)
    p.add_argument("--body", type=int, default=1_000_000)
    p.add_argument("--sent", type=int, default=900_000)
    p.add_argument("--give-up", type=float, default=30.0, help="clients close after this long unanswered")
    p.add_argument("--connect", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.connect:
        asyncio.run(clients(args))
        return 0
    print(json.dumps(asyncio.run(flood(args)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
