"""Sized jobs as ``runnerd status`` and the dashboard list them: read from the Runners of the
sized-job contract (labels, annotations, admission's annotation or status), oldest first."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest

from runnerd.status import age
from runnerd.views.sizedjobs import (
    MAX_ROWS,
    NOT_ADMITTED_YET,
    SizedJob,
    dashboard_sized_jobs,
    open_jobs,
    sized_job,
    sized_jobs_table,
)

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
WAIT = "waiting for 2 × nvidia.com/gpu (NVIDIA-H100-80GB-HBM3): 0 of 16 free"  # noqa: RUF001
TOO_BIG = "asks for 16 × nvidia.com/gpu (NVIDIA-H100-80GB-HBM3); the largest matching node has 8"  # noqa: RUF001


def runner(
    job: str | None = "41",
    *,
    queued: str = "2026-12-07T11:50:00Z",
    annotations: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
    namespace: str = "ci",
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": f"gpu-job-{job}",
        "namespace": namespace,
        "labels": {"runnerd.dev/sized-job": job, "runnerd.dev/sizing-policy": "gpu"} if job else {},
        "annotations": {
            "runnerd.dev/queued-at": queued,
            "runnerd.dev/repository": "octo/ml",
            "runnerd.dev/workflow": "train",
            "runnerd.dev/size": SIZE,
            **(annotations or {}),
        },
        "ownerReferences": [
            {
                "apiVersion": "actions.summerwind.dev/v1alpha1",
                "kind": "RunnerDeployment",
                "name": "gpu-runners",
            }
        ],
    }
    return {"metadata": meta, "status": status or {}}


QUEUED = dt.datetime(2026, 12, 7, 11, 50, tzinfo=dt.UTC)
SIZE = "2 × GPU (h100)"  # noqa: RUF001


def job(state: str, reason: str) -> SizedJob:
    return SizedJob("ci", "41", "gpu-runners", SIZE, "octo/ml", "train", QUEUED, state, reason)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (runner(), job("waiting", NOT_ADMITTED_YET)),
        (
            runner(status={"phase": "Waiting", "reason": "WaitingForCapacity", "message": WAIT}),
            job("waiting", WAIT),
        ),
        (
            runner(status={"phase": "Refused", "reason": "SizeRefused", "message": TOO_BIG}),
            job("refused", TOO_BIG),
        ),
        (runner(status={"phase": "Refused", "reason": "SizeRefused"}), job("refused", "SizeRefused")),
        (
            runner(annotations={"runnerd.dev/admission": "placed", "runnerd.dev/admitted-node": "gpu-1"}),
            job("placed", "gpu-1"),
        ),
        # admission's annotation wins over a status written before it
        (
            runner(
                annotations={"runnerd.dev/admission": "pending"}, status={"phase": "Waiting", "message": WAIT}
            ),
            job("pending", ""),
        ),
        (runner(None), None),
        (runner(queued="soon"), replace(job("waiting", NOT_ADMITTED_YET), queued_at=None)),
    ],
    ids=[
        "not-admitted-yet",
        "waiting",
        "refused",
        "refused-no-message",
        "placed",
        "pending",
        "not-sized",
        "bad-time",
    ],
)
def test_a_runner_as_a_sized_job(obj: dict[str, Any], expected: SizedJob | None) -> None:
    assert sized_job(obj) == expected


def test_open_jobs_are_the_waiting_and_refused_ones_oldest_first() -> None:
    runners = [
        runner("3", queued="2026-12-07T11:40:00Z"),
        runner("1", queued="2026-12-07T11:45:00Z", annotations={"runnerd.dev/admission": "placed"}),
        runner("2", queued="2026-12-07T11:30:00Z", status={"phase": "Refused", "message": TOO_BIG}),
        runner("10", queued="2026-12-07T11:40:00Z"),  # same time: by job id
        runner(None),
    ]
    assert [(j.job, j.state) for j in open_jobs(runners)] == [
        ("2", "refused"),
        ("10", "waiting"),
        ("3", "waiting"),
    ]


def test_the_dashboard_table_counts_every_state_and_bounds_its_rows() -> None:
    runners = [runner(str(i), queued=f"2026-12-07T10:{i % 60:02d}:00Z") for i in range(MAX_ROWS + 3)]
    runners.append(runner("p", annotations={"runnerd.dev/admission": "placed"}))
    model = dashboard_sized_jobs(runners, NOW)
    assert model["counts"] == {"waiting": MAX_ROWS + 3, "refused": 0, "pending": 0, "placed": 1}
    assert len(model["rows"]) == MAX_ROWS
    assert model["hidden"] == 3
    first = model["rows"][0]
    assert (first["job"], first["state"], first["reason"]) == ("0", "waiting", NOT_ADMITTED_YET)
    assert first["queuedAt"] == "2026-12-07T10:00:00+00:00"
    assert first["waitingSeconds"] == 7200.0


def test_the_status_table() -> None:
    jobs = [job("waiting", WAIT), job("refused", TOO_BIG)]
    headers, rows = sized_jobs_table(jobs, NOW, age=age)
    assert headers == ["JOB", "POOL", "SIZE", "STATE", "WAITING", "REASON"]
    assert rows[0] == ["41", "gpu-runners", SIZE, "waiting", "10m", WAIT]
    headers, rows = sized_jobs_table(jobs, NOW, age=age, all_namespaces=True)
    assert headers[0] == "NAMESPACE"
    assert rows[1][:1] == ["ci"]
