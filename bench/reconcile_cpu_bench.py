"""CPU of the two hot loops of the controller at 1,000 runners, in-process, no control plane.

* ``rrs``: one RunnerReplicaSet reconcile over ``--runners`` busy runners (Runner + Ready=False pod
  each, all listed busy by GitHub), nothing changed since the reconcile before: what every pod event
  of a large replica set costs (issue #10: ~7,900 of them in the 1,000-runner trace).
* ``dashboard``: one dashboard sample (every 2 s) with ``--runners`` runners (a tenth with a GPU) and
  ``--label-sets`` children of the job queue-wait histogram (one per job name and repository).

Process CPU per operation, the mean of ``--repeat`` in a row after one warm-up. To compare two
commits, run it with each one's ``src`` first on ``PYTHONPATH``::

    PYTHONPATH=src:. .venv/bin/python bench/reconcile_cpu_bench.py [--runners 900] [--label-sets 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from runnerd.controller.common import INDEX_CONTROLLER, ControllerOptions
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.runnerreplicaset import ReplicaSetController
from runnerd.github import Scope
from runnerd.github.models import Runner as GitHubRunner
from runnerd.runtime import EventRecorder, Informer, Key
from runnerd.runtime.store import index_by_controller_uid
from runnerd.web import dashboard
from runnerd.web.metrics import Metrics

T0 = "2026-12-07T04:00:00Z"


class _Unused:
    """An informer source never started: the stores are filled here."""

    async def list(self) -> tuple[list[Any], str]:
        raise AssertionError("not used")

    def watch(self, resource_version: str, *, timeout_seconds: int) -> Any:
        raise AssertionError("not used")


class _Kube:
    async def patch_status(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}


class _Events:
    async def create(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}

    async def patch(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}


class _GitHub:
    def __init__(self, runners: int) -> None:
        self.runners = runners

    async def list_runners(self, scope: Scope) -> list[GitHubRunner]:
        return [GitHubRunner(i, f"rs-{i}", "linux", "online", True, ()) for i in range(self.runners)]


def _informer(name: str, **kwargs: Any) -> Informer:
    return Informer(name, _Unused(), **kwargs)  # type: ignore[arg-type]


async def replica_set_reconcile(runners: int, repeat: int) -> float:
    """CPU seconds of one reconcile of an unchanged replica set of ``runners`` busy runners."""
    owner = [{"uid": "rs-uid", "controller": True}]
    replica_sets, pods = _informer("rrs"), _informer("pods")
    owned = _informer("runners", indexers={INDEX_CONTROLLER: index_by_controller_uid})
    replica_sets.store.upsert(
        {
            "metadata": {"name": "rs", "namespace": "ns", "uid": "rs-uid", "resourceVersion": "1"},
            "spec": {
                "replicas": runners,
                "selector": {"matchLabels": {"app": "x"}},
                "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"organization": "octo"}},
            },
        }
    )
    for i in range(runners):
        meta = {"namespace": "ns", "name": f"rs-{i}", "creationTimestamp": T0}
        owned.store.upsert(
            {
                "metadata": {**meta, "uid": f"r{i}", "resourceVersion": str(i), "ownerReferences": owner},
                "spec": {"organization": "octo"},
                "status": {"phase": "Running"},
            }
        )
        running = {"name": "runner", "state": {"running": {"startedAt": T0}}}
        pods.store.upsert(
            {
                "metadata": {**meta, "resourceVersion": str(100_000 + i)},
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "False"}],
                    "containerStatuses": [running],
                },
            }
        )
    directory = RunnerDirectory(_GitHub(runners))  # type: ignore[arg-type]
    await directory.refresh(Scope.organization("octo"), max_age=0)
    controller = ReplicaSetController(
        kube=_Kube(),  # type: ignore[arg-type]
        directory=directory,
        recorder=EventRecorder(_Events(), component="bench"),  # type: ignore[arg-type]
        replica_sets=replica_sets,
        runners=owned,
        pods=pods,
        options=ControllerOptions(namespace="ns"),
    )
    key = Key("ns", "rs")
    await controller.reconcile(key)
    started = time.process_time()
    for _ in range(repeat):
        await controller.reconcile(key)
    return (time.process_time() - started) / repeat


def dashboard_sample(runners: int, label_sets: int, repeat: int) -> float:
    """CPU seconds of one dashboard sample."""
    metrics = Metrics()
    names = (dashboard.RUNNERS_INFORMER, dashboard.PODS_INFORMER, dashboard.DEPLOYMENTS_INFORMER)
    informers = {name: _informer(name) for name in names}
    fleet = dashboard.Fleet(metrics, informers)
    labels = {"runner-deployment-name": "cpu"}
    for i in range(runners):
        meta = {"namespace": "ns", "name": f"cpu-{i}", "uid": f"u{i}", "labels": labels}
        informers[dashboard.RUNNERS_INFORMER].store.upsert({"metadata": meta, "status": {"phase": "Running"}})
        limits = {"limits": {"nvidia.com/gpu": "1"}} if i % 10 == 0 else {}
        informers[dashboard.PODS_INFORMER].store.upsert(
            {
                "metadata": meta,
                "spec": {"nodeName": "kwok-0", "containers": [{"name": "runner", "resources": limits}]},
                "status": {"phase": "Running"},
            }
        )
    for i in range(label_sets):
        metrics.observe_job_event(
            action="in_progress",
            labels={"job_name": f"job-{i}", "repository": f"repo-{i % 100}"},
            conclusion=None,
            created_at=0.0,
            started_at=float(i % 600),
            completed_at=None,
        )
    fleet.sample()
    started = time.process_time()
    for _ in range(repeat):
        fleet.sample()
    fleet.close()
    return (time.process_time() - started) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runners", type=int, default=900, help="runners of the replica set and fleet")
    parser.add_argument("--label-sets", type=int, default=5000, help="queue-wait histogram children")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    rrs = asyncio.run(replica_set_reconcile(args.runners, args.repeat))
    sample = dashboard_sample(args.runners, args.label_sets, max(args.repeat // 5, 3))
    print(f"| one RunnerReplicaSet reconcile, {args.runners} unchanged runners | {rrs * 1000:.2f} ms |")
    where = f"{args.runners} runners, {args.label_sets} label sets"
    print(f"| one dashboard sample, {where} | {sample * 1000:.2f} ms |")


if __name__ == "__main__":
    main()
