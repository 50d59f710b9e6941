"""Webhook intake, end to end through the reservation sink: deliveries/s and acknowledgement latency
of one organization hook, with today's HRA write and with the reservation journal, side by side.

For each mode, a fresh namespace on the real control plane (devcluster) holds one RunnerDeployment
and one HRA with ``--live`` live reservations; the controller's real pieces run in this process
(informers on HRAs, RunnerDeployments and, for the journal, its ConfigMaps; the
:class:`~runnerd.controller.reservation_writer.ReservationWriter` with its group commit; the
:class:`~runnerd.controller.reservations.ReservationSink`; the journal's fold controller as the
leader runs it). ``--deliveries`` ``queued`` deliveries of distinct jobs go through
``ReservationSink.workflow_job`` (what the webhook server awaits before it answers) with
``--in-flight`` of them at a time (GitHub's and ghsim's parallelism per hook). Reported: deliveries/s
from the first send to the last acknowledgement, acknowledgement p50/p99, the writes (HRA patches or
journal entries), and for the journal how long after the last acknowledgement every job was in the
HRA's ``capacityReservations`` (the fold's lag).

    nice -n 5 .venv/bin/python bench/intake_bench.py [--live 1000] [--deliveries 1000] [--in-flight 16]

The HRA controller, runners and pods are not run: this measures the intake only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devcluster import binaries  # noqa: E402
from devcluster.cluster import Cluster, ClusterConfig, GpuShape  # noqa: E402
from devcluster.stack import install_crds  # noqa: E402
from devcluster.wait import wait_until  # noqa: E402
from runnerd.controller.common import HORIZONTAL_RUNNER_AUTOSCALERS, RUNNER_DEPLOYMENTS  # noqa: E402
from runnerd.controller.journal import ReservationJournal, hra_key_of, journal_informer  # noqa: E402
from runnerd.controller.reservation_writer import ReservationWriter  # noqa: E402
from runnerd.controller.reservations import ReservationSink  # noqa: E402
from runnerd.controller.targets import HRA_INFORMER, RD_INFORMER, TargetResolver  # noqa: E402
from runnerd.kube.client import KubeClient  # noqa: E402
from runnerd.reconcile.reservations import parse_job_reservation  # noqa: E402
from runnerd.runtime import Controller, EventRecorder, Informer, Key, Manager  # noqa: E402
from runnerd.web.metrics import Metrics  # noqa: E402
from runnerd.web.payload import WorkflowJobEvent  # noqa: E402

REPO = "acme/svc"
LABELS = ("self-hosted", "bench")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def manifests(namespace: str, live: int) -> tuple[dict[str, Any], dict[str, Any]]:
    rd = {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "RunnerDeployment",
        "metadata": {"name": "bench", "namespace": namespace},
        "spec": {"replicas": 0, "template": {"spec": {"repository": REPO, "labels": list(LABELS)}}},
    }
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    hra = {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "HorizontalRunnerAutoscaler",
        "metadata": {"name": "bench", "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"name": "bench"},
            "minReplicas": 0,
            "maxReplicas": 100_000,
            "scaleUpTriggers": [{"githubEvent": {"workflowJob": {}}, "duration": "60m"}],
            "capacityReservations": [
                {"name": f"job-{j}@{REPO}", "effectiveTime": since, "expirationTime": until, "replicas": 1}
                for j in range(1, live + 1)
            ],
        },
    }
    return rd, hra


def queued(job_id: int) -> WorkflowJobEvent:
    owner, name = REPO.split("/")
    return WorkflowJobEvent(
        action="queued", job_id=job_id, run_id=job_id, name="build", workflow_name="CI", head_branch="main",
        status="queued", conclusion=None, labels=LABELS, runner_id=None, runner_name=None,
        runner_group_name=None, created_at=None, started_at=None, completed_at=None, repository=REPO,
        repository_name=name, owner=owner, owner_type="Organization", organization=owner, enterprise=None,
        received_monotonic=time.monotonic(),
    )  # fmt: skip


async def measure(kube: KubeClient, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    namespace = f"intake-{mode}"
    rd, hra = manifests(namespace, args.live)
    await kube.create(RUNNER_DEPLOYMENTS, rd, namespace=namespace)
    await kube.create(HORIZONTAL_RUNNER_AUTOSCALERS, hra, namespace=namespace)
    hras = Informer(HRA_INFORMER, kube.list_watcher(HORIZONTAL_RUNNER_AUTOSCALERS, namespace=namespace))
    rds = Informer(RD_INFORMER, kube.list_watcher(RUNNER_DEPLOYMENTS, namespace=namespace))
    manager = Manager()
    manager.add_informer(hras)
    manager.add_informer(rds)
    resolver = TargetResolver({HRA_INFORMER: hras, RD_INFORMER: rds})
    metrics = Metrics()
    writer = ReservationWriter(kube, hras, resolver, metrics=metrics)
    if mode == "journal":
        entries = journal_informer(kube, namespace)
        manager.add_informer(entries)
        journal = ReservationJournal(kube, entries, clock=writer.clock, on_folded=writer.remember)
        fold = Controller("reservation-journal", journal.reconcile, workers=1)
        fold.watch(entries, lambda obj: [k] if (k := hra_key_of(obj)) is not None else [])
        manager.add_controller(fold)
        writer.journal = journal
    sink = ReservationSink(
        kube=kube, hras=hras, resolver=resolver, writer=writer,
        recorder=EventRecorder(kube.event_sink(), component="bench"), metrics=metrics,
    )  # fmt: skip
    task = asyncio.create_task(manager.run())
    key = Key(namespace, "bench")
    await wait_until("caches synced", lambda: manager.ready and hras.store.get(key) and rds.store.get(key))
    jobs = list(range(args.live + 1, args.live + 1 + args.deliveries))
    gate = asyncio.Semaphore(args.in_flight)
    acks: list[float] = []
    outcomes: dict[str, int] = {}

    async def deliver(job: int) -> None:
        async with gate:
            started = time.perf_counter()
            reply = await sink.workflow_job(queued(job))
            acks.append(time.perf_counter() - started)
            outcomes[reply.outcome] = outcomes.get(reply.outcome, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(deliver(j) for j in jobs))
    elapsed = time.perf_counter() - started
    wanted = set(jobs)
    landed = None
    while landed is None:
        obj = await kube.get(HORIZONTAL_RUNNER_AUTOSCALERS, "bench", namespace=namespace)
        names = {parse_job_reservation(r.get("name")) for r in obj["spec"].get("capacityReservations") or ()}
        if wanted <= {p[0] for p in names if p is not None}:
            landed = time.perf_counter() - started - elapsed
        elif time.perf_counter() - started - elapsed > 60:
            landed = float("nan")
        else:
            await asyncio.sleep(0.02)
    manager.stop()
    await task
    await writer.close()
    return {
        "mode": mode,
        "live": args.live,
        "deliveries": args.deliveries,
        "in_flight": args.in_flight,
        "deliveries_per_s": round(args.deliveries / elapsed),
        "ack_p50_ms": round(1000 * pct(acks, 0.5), 1),
        "ack_p99_ms": round(1000 * pct(acks, 0.99), 1),
        "writes": writer.writes,
        "in_hra_after_last_ack_ms": round(1000 * landed),
        "outcomes": outcomes,
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    state = Path(tempfile.mkdtemp(prefix="runnerd-intake-bench-"))
    cluster = Cluster(
        ClusterConfig(state_dir=state, cpu_nodes=1, gpu_shapes=(GpuShape(nodes=0),), max_pods=110),
        binaries.ensure(),
    )
    cluster.start()
    try:
        install_crds(cluster)
        kube = await KubeClient.connect(str(cluster.kubeconfig))
        results = []
        try:
            for mode in args.modes:
                cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": f"intake-{mode}"}})
                results.append(await measure(kube, mode, args))
                print(json.dumps(results[-1]), file=sys.stderr)
        finally:
            await kube.close()
        return results
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)  # etcd data of a throwaway control plane


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--live", type=int, default=1000)
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--modes", nargs="+", default=["hra", "journal"], choices=["hra", "journal"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = asyncio.run(run(args))
    print(
        "| intake | live jobs | deliveries/s | ack p50 / p99 | writes | all in the HRA after the last ack |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['mode']} | {r['live']:,} | {r['deliveries_per_s']:,} | "
            f"{r['ack_p50_ms']} / {r['ack_p99_ms']} ms | {r['writes']} | {r['in_hra_after_last_ack_ms']} ms |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
