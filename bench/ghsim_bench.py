"""Benchmark: the GitHub simulator holding 10,000 queued jobs and 2,000 busy runners.

Starts ``python -m ghsim`` as its own process (how tests and the demo use it), then from this
process:

1. creates an organization with 50 private repositories and a PAT (admin API);
2. enqueues 12,000 jobs (3,000 workflow runs of 4 jobs);
3. starts 2,000 virtual runners (1,000 from JIT configs, 1,000 from a registration token) as
   asyncio tasks; each takes a one-hour job, so 2,000 jobs run and 10,000 stay queued, while the
   runners keep long-polls and heartbeats going in the background;
4. measures REST latency one request at a time (what a controller sees), per endpoint;
5. measures throughput with 16 concurrent clients.

Prints a table and a JSON line.  Run:  .venv/bin/python bench/ghsim_bench.py
(``--quick`` uses 1,000 jobs and 200 runners.)

``--scenario scaleset`` benchmarks the Actions service's scale-set protocol instead: 100 scale sets,
each with an open session and a listener that long-polls (``X-ScaleSetMaxCapacity`` unlimited) and
acknowledges every message; 10,000 jobs routed to them and assigned (queued in REST terms, no
runner ever takes them); then 500 probe jobs at ~50/s, each timed from its ``queueTime`` (the
simulator's clock = this machine's clock) to the moment its ``JobAssigned`` reaches the listener;
then a burst of 2,000 jobs for throughput (Actions-service requests/s); RSS of the simulator
process.  ``--quick``: 20 scale sets, 1,000 jobs, 100 probes, a 400-job burst.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from ghsim.agent import VirtualRunner

ORG = "bench-org"
REPOS = 50


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def start_simulator(extra: dict[str, Any] | None = None) -> tuple[asyncio.subprocess.Process, str]:
    settings = {
        "primary": {"enabled": False},
        "secondary": {"enabled": False},
        "long_poll_s": 20,
        **(extra or {}),
    }
    config = json.dumps(settings)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ghsim", "--port", "0", "--config", config, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    url = (await proc.stdout.readline()).decode().strip()
    return proc, url


@dataclass
class RestClient:
    """The benchmark's HTTP session against one simulator: its admin API and, with ``headers`` (set
    by :func:`_seed`), its REST API as the PAT's user."""

    http: aiohttp.ClientSession
    url: str
    headers: dict[str, str] = field(default_factory=dict)

    async def sim(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, self.url + "/_sim" + path, json=body) as r:
            assert r.status < 300, (path, r.status, await r.text())
            return await r.json() if r.status != 204 else None

    def req(self, method: str, path: str, **kw: Any) -> Callable[[], Awaitable[int]]:
        async def call() -> int:
            async with self.http.request(
                method, self.url + path, headers={**self.headers, **kw.pop("h", {})}, **kw
            ) as r:
                await r.read()
                return r.status

        return call


async def main(quick: bool) -> None:
    n_jobs, n_runners = (1_000, 200) if quick else (12_000, 2_000)
    proc, url = await start_simulator()
    connector = aiohttp.TCPConnector(limit=0)
    runners: list[asyncio.Task[Any]] = []
    async with aiohttp.ClientSession(connector=connector) as http:
        client = RestClient(http, url)
        try:
            enqueue_s = await _seed(client, n_jobs)
            runners_s, jit_latencies = await _start_runners(client, n_jobs, n_runners, runners)
            results, everything, lists = await _latencies(client, n_runners, quick)
            results["POST .../generate-jitconfig (during setup)"] = [x * 1000 for x in jit_latencies]
            throughput = await _throughput(lists, 3 if quick else 5)
            final = await client.sim("GET", "/stats")
            rss = rss_mb(proc.pid)
        finally:
            for task in runners:
                task.cancel()
            await asyncio.gather(*runners, return_exceptions=True)
            proc.terminate()
            await proc.wait()
    print(
        f"ghsim benchmark: {n_jobs - n_runners} queued jobs, {n_runners} busy runners, {os.cpu_count()} CPUs"
    )
    print(
        f"  enqueue {n_jobs} jobs: {enqueue_s:.2f} s; "
        f"{n_runners} runners registered and started jobs in {runners_s:.1f} s"
    )
    print(f"  simulator RSS: {rss:.0f} MiB; jobs {final['jobs']}")
    _report(results, everything, n_jobs, n_runners, throughput, rss)


async def _seed(client: RestClient, n_jobs: int) -> float:
    """The organization, its repositories and the PAT (into ``client.headers``); then ``n_jobs``
    queued jobs. The seconds the jobs took to enqueue."""
    await client.sim("POST", "/orgs", {"login": ORG})
    for i in range(REPOS):
        await client.sim("POST", "/repos", {"full_name": f"{ORG}/repo-{i}"})
    token = (await client.sim("POST", "/pats", {"login": "bench"}))["token"]
    client.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"})
    t0 = time.perf_counter()
    runs = [
        {
            "repo": f"{ORG}/repo-{i % REPOS}",
            "jobs": [{"labels": ["self-hosted", "gpu"], "duration": 3600}] * 4,
        }
        for i in range(n_jobs // 4)
    ]
    for chunk in range(0, len(runs), 500):
        await client.sim("POST", "/state", {"runs": runs[chunk : chunk + 500]})
    return time.perf_counter() - t0


async def _start_runners(
    client: RestClient, n_jobs: int, n_runners: int, runners: list[asyncio.Task[Any]]
) -> tuple[float, list[float]]:
    """Runners (into ``runners``): half from JIT configs (minted over REST), half from a registration
    token; until each runs a job. The seconds that took and the JIT configs' latencies."""
    http, url, headers = client.http, client.url, client.headers
    t0 = time.perf_counter()
    envs: list[dict[str, str]] = []
    jit_latencies: list[float] = []
    for i in range(n_runners // 2):
        s = time.perf_counter()
        async with http.post(
            f"{url}/orgs/{ORG}/actions/runners/generate-jitconfig",
            headers=headers,
            json={"name": f"jit-{i}", "runner_group_id": 1, "labels": ["gpu"]},
        ) as r:
            body = await r.json()
        jit_latencies.append(time.perf_counter() - s)
        envs.append({"ACTIONS_RUNNER_INPUT_JITCONFIG": body["encoded_jit_config"]})
    async with http.post(f"{url}/orgs/{ORG}/actions/runners/registration-token", headers=headers) as r:
        reg_token = (await r.json())["token"]
    for i in range(n_runners - len(envs)):
        envs.append(
            {"RUNNER_TOKEN": reg_token, "RUNNER_ORG": ORG, "RUNNER_NAME": f"pod-{i}", "RUNNER_LABELS": "gpu"}
        )
    runners.extend(
        asyncio.create_task(VirtualRunner(url, env, session=http, poll_wait=20, heartbeat_s=30).run())
        for env in envs
    )
    while True:
        stats = await client.sim("GET", "/stats")
        if stats["jobs"]["in_progress"] >= n_runners:
            break
        await asyncio.sleep(0.2)
    runners_s = time.perf_counter() - t0
    assert stats["jobs"]["queued"] == n_jobs - n_runners, stats["jobs"]
    assert stats["runners"]["online"] == n_runners, stats["runners"]
    return runners_s, jit_latencies


async def _latencies(
    client: RestClient, n_runners: int, quick: bool
) -> tuple[dict[str, list[float]], list[float], list[Callable[[], Awaitable[int]]]]:
    """Latency per endpoint, one request at a time (ms); all samples; the two list calls."""
    http, url, headers, req = client.http, client.url, client.headers, client.req
    async with http.get(f"{url}/repos/{ORG}/repo-0/actions/runs?per_page=1", headers=headers) as r:
        run_id = (await r.json())["workflow_runs"][0]["id"]
    async with http.get(f"{url}/repos/{ORG}/repo-0/actions/runs/{run_id}/jobs", headers=headers) as r:
        job_id = (await r.json())["jobs"][0]["id"]
    async with http.get(f"{url}/orgs/{ORG}/actions/runners?per_page=1", headers=headers) as r:
        runner_id = (await r.json())["runners"][0]["id"]
        etag = r.headers["ETag"]
    pages = n_runners // 100

    def list_runners_page() -> Awaitable[int]:
        return req("GET", f"/orgs/{ORG}/actions/runners?per_page=100&page={random.randint(1, pages)}")()

    def list_queued_runs() -> Awaitable[int]:
        repo = random.randrange(REPOS)
        return req("GET", f"/repos/{ORG}/repo-{repo}/actions/runs?status=queued&per_page=100")()

    endpoints: dict[str, Callable[[], Awaitable[int]]] = {
        "GET /orgs/{org}/actions/runners (100/page)": list_runners_page,
        "GET /orgs/{org}/actions/runners (304)": req(
            "GET", f"/orgs/{ORG}/actions/runners?per_page=1", h={"If-None-Match": etag}
        ),
        "GET /orgs/{org}/actions/runners?name=": req("GET", f"/orgs/{ORG}/actions/runners?name=pod-7"),
        "GET /orgs/{org}/actions/runners/{id}": req("GET", f"/orgs/{ORG}/actions/runners/{runner_id}"),
        "GET /repos/{o}/{r}/actions/runs?status=queued (100/page)": list_queued_runs,
        "GET /repos/{o}/{r}/actions/runs/{id}/jobs": req(
            "GET", f"/repos/{ORG}/repo-0/actions/runs/{run_id}/jobs"
        ),
        "GET /repos/{o}/{r}/actions/jobs/{id}": req("GET", f"/repos/{ORG}/repo-0/actions/jobs/{job_id}"),
        "POST /orgs/{org}/actions/runners/registration-token": req(
            "POST", f"/orgs/{ORG}/actions/runners/registration-token"
        ),
        "DELETE /orgs/{org}/actions/runners/{id} (busy: 422)": req(
            "DELETE", f"/orgs/{ORG}/actions/runners/{runner_id}"
        ),
        "GET /rate_limit": req("GET", "/rate_limit"),
    }
    n = 100 if quick else 300
    results: dict[str, list[float]] = {}
    everything: list[float] = []
    for name, call in endpoints.items():
        await call()  # warm
        samples = []
        for _ in range(n):
            s = time.perf_counter()
            status = await call()
            samples.append((time.perf_counter() - s) * 1000)
            assert status < 500, (name, status)
        results[name] = samples
        everything.extend(samples)
    return results, everything, [list_runners_page, list_queued_runs]


async def _throughput(calls: list[Callable[[], Awaitable[int]]], seconds: float) -> float:
    """Requests a second of 16 concurrent clients, each call one of ``calls`` (the first or the second,
    at even odds)."""
    done = 0
    stop_at = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await calls[0]() if random.random() < 0.5 else await calls[1]()
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(16)))
    return done / (time.perf_counter() - t0)


def _report(
    results: dict[str, list[float]],
    everything: list[float],
    n_jobs: int,
    n_runners: int,
    throughput: float,
    rss: float,
) -> None:
    print(f"  {'endpoint':<60} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for name, samples in results.items():
        print(f"  {name:<60} {pct(samples, 0.5):8.2f} {pct(samples, 0.9):8.2f} {pct(samples, 0.99):8.2f}")
    median = statistics.median(everything)
    print(
        f"  median over all sequential calls: {median:.2f} ms; "
        f"throughput (16 clients, list calls): {throughput:.0f} req/s"
    )
    print(
        json.dumps(
            {
                "queued_jobs": n_jobs - n_runners,
                "runners": n_runners,
                "median_ms": round(median, 3),
                "p99_ms": {k: round(pct(v, 0.99), 3) for k, v in results.items()},
                "p50_ms": {k: round(pct(v, 0.5), 3) for k, v in results.items()},
                "throughput_rps": round(throughput),
                "rss_mib": round(rss),
            }
        )
    )


# ---- scale-set scenario ----------------------------------------------------------------------------


class Listeners:
    """One ARC-like listener per scale set: long-poll, record ``JobAssigned`` arrivals, acknowledge."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.arrived: dict[int, float] = {}  # workflow run id -> arrival time
        self.latency: dict[int, float] = {}  # workflow run id -> arrival - queueTime (s)
        self.assigned = 0
        self.changed = asyncio.Event()

    async def listen(self, session: dict[str, Any]) -> None:
        queue, token = session["messageQueueUrl"], session["messageQueueAccessToken"]
        headers = {"Authorization": f"Bearer {token}", "X-ScaleSetMaxCapacity": "2147483647"}
        last = 0
        while True:
            url = queue + (f"?lastMessageId={last}" if last else "")
            async with self.http.get(url, headers=headers) as r:
                if r.status == 202:
                    continue
                assert r.status == 200, r.status
                message = await r.json()
            now = time.time()
            for job in json.loads(message["body"]):
                if job["messageType"] == "JobAssigned":
                    self.assigned += 1
                    queued = datetime.fromisoformat(job["queueTime"].replace("Z", "+00:00")).timestamp()
                    self.arrived[job["workflowRunId"]] = now
                    self.latency[job["workflowRunId"]] = now - queued
            last = message["messageId"]
            async with self.http.delete(f"{queue}/{last}", headers=headers) as r:
                assert r.status == 204
            self.changed.set()

    async def wait_for(self, run_ids: set[int] | None = None, assigned: int = 0) -> None:
        while self.assigned < assigned or (run_ids is not None and not run_ids <= self.arrived.keys()):
            self.changed.clear()
            await self.changed.wait()


class ScaleSetBench:
    def __init__(self, http: aiohttp.ClientSession, url: str, n_sets: int) -> None:
        self.http = http
        self.url = url
        self.n_sets = n_sets
        self.listeners = Listeners(http)
        self.tasks: list[asyncio.Task[Any]] = []

    async def call(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        target = path if "://" in path else self.url + path
        async with self.http.request(method, target, json=body, headers=headers) as r:
            assert r.status < 300, (path, r.status, await r.text())
            return await r.json() if r.status not in (202, 204) else None

    async def start_listeners(self) -> None:
        """Registration token → handshake → scale sets → one session and listener each."""
        await self.call("POST", "/_sim/orgs", {"login": ORG})
        await self.call("POST", "/_sim/repos", {"full_name": f"{ORG}/app"})
        pat = (await self.call("POST", "/_sim/pats", {"login": "bench"}))["token"]
        reg = await self.call(
            "POST", f"/api/v3/orgs/{ORG}/actions/runners/registration-token", Authorization=f"Bearer {pat}"
        )
        hs = await self.call(
            "POST",
            "/api/v3/actions/runner-registration",
            {"url": f"{self.url}/{ORG}", "runner_event": "register"},
            Authorization=f"RemoteAuth {reg['token']}",
        )
        base, admin = hs["url"] + "_apis/runtime/runnerscalesets", {"Authorization": f"Bearer {hs['token']}"}
        for i in range(self.n_sets):
            body = {"name": f"ss-{i}", "runnerGroupId": 1, "labels": [{"type": "System", "name": f"ss-{i}"}]}
            ss = await self.call("POST", f"{base}?api-version=6.0-preview", body, **admin)
            sess = await self.call("POST", f"{base}/{ss['id']}/sessions", {"ownerName": f"l-{i}"}, **admin)
            self.tasks.append(asyncio.create_task(self.listeners.listen(sess)))

    async def enqueue(self, jobs: int, per_run: int) -> list[int]:
        ids = []
        for start in range(0, jobs, per_run):
            n = min(per_run, jobs - start)
            specs = [{"labels": [f"ss-{random.randrange(self.n_sets)}"]} for _ in range(n)]
            ids.append((await self.call("POST", "/_sim/runs", {"repo": f"{ORG}/app", "jobs": specs}))["id"])
        return ids

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def scaleset_main(quick: bool) -> None:
    n_sets, n_jobs, n_probes, n_burst = (20, 1_000, 100, 400) if quick else (100, 10_000, 500, 2_000)
    proc, url = await start_simulator({"actions": {"long_poll_s": 50, "session_idle_s": 3600}})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        bench = ScaleSetBench(http, url, n_sets)
        try:
            await bench.start_listeners()
            t0 = time.perf_counter()
            await bench.enqueue(n_jobs, 10)
            await bench.listeners.wait_for(assigned=n_jobs)
            backlog_s = time.perf_counter() - t0
            rss_backlog = rss_mb(proc.pid)
            probes: set[int] = set()
            for _ in range(n_probes):
                probes |= set(await bench.enqueue(1, 1))
                await asyncio.sleep(0.02)
            await bench.listeners.wait_for(probes)
            before = await bench.call("GET", "/_sim/stats")
            t0 = time.perf_counter()
            await bench.enqueue(n_burst, 20)
            await bench.listeners.wait_for(assigned=n_jobs + n_probes + n_burst)
            burst_s = time.perf_counter() - t0
            after = await bench.call("GET", "/_sim/stats")
            rss = rss_mb(proc.pid)
        finally:
            await bench.stop()
            proc.terminate()
            await proc.wait()

    def actions_requests(stats: dict[str, Any]) -> int:
        return sum(n for k, n in stats["by_endpoint"].items() if k.startswith("actions/"))

    latencies = [bench.listeners.latency[r] * 1000 for r in probes]
    rps = (actions_requests(after) - actions_requests(before)) / burst_s
    p50, p90, p99 = (pct(latencies, q) for q in (0.5, 0.9, 0.99))
    print(f"ghsim scale-set benchmark: {n_sets} scale sets with open sessions, {os.cpu_count()} CPUs")
    print(f"  {n_jobs} jobs queued (runs of 10) and assigned to the scale sets in {backlog_s:.1f} s")
    print(f"  probe latency job queued -> JobAssigned at the listener ({n_probes} probes, ~50/s):")
    print(f"    p50 {p50:.2f} ms, p90 {p90:.2f} ms, p99 {p99:.2f} ms")
    print(
        f"  burst of {n_burst} jobs (runs of 20) delivered in {burst_s:.2f} s: {rps:.0f} Actions requests/s"
    )
    print(f"  simulator RSS: {rss_backlog:.0f} MiB after the backlog, {rss:.0f} MiB at the end")
    result = {"scenario": "scaleset", "scale_sets": n_sets, "queued_jobs": n_jobs, "p50_ms": round(p50, 3)}
    result.update({"p90_ms": round(p90, 3), "p99_ms": round(p99, 3), "requests_per_s": round(rps)})
    print(json.dumps({**result, "rss_mib": round(rss)}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    parser.add_argument("--scenario", choices=["rest", "scaleset"], default="rest")
    args = parser.parse_args()
    asyncio.run(scaleset_main(args.quick) if args.scenario == "scaleset" else main(args.quick))
