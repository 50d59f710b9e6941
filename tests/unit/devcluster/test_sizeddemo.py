"""The demo's sized GPU jobs: the pool and policy, and the lines the demo prints when a sized job is
placed, waits or is refused (the workloads' two A100 jobs: tests/unit/devcluster/test_demo.py)."""

from __future__ import annotations

from typing import Any

import pytest

from devcluster import sizeddemo

WAIT = "waiting for 4 \u00d7 nvidia.com/gpu (NVIDIA-A100-SXM4-80GB): 0 of 4 free"


def runner(
    job: str | None = "7",
    annotations: dict[str, str] | None = None,
    status: dict[str, str] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"sized-gpu-runners-job-{job}", "annotations": annotations or {}}
    meta["labels"] = {} if job is None else {sizeddemo.SIZED_JOB_LABEL: job}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-07T10:00:00Z"
    return {"metadata": meta, "spec": {"labels": list(sizeddemo.FINETUNE)}, "status": status or {}}


PLACED = {sizeddemo.ADMISSION_ANNOTATION: "placed", sizeddemo.ADMITTED_NODE_ANNOTATION: "gpu-node-2"}
PREFIX = "runnerd demo: sized job 7 (gpu=4 gpu-type=a100) "


@pytest.mark.parametrize(
    ("passes", "expected"),
    [
        ([[runner()]], [[]]),  # no decision yet: nothing to say
        ([[runner(status={"phase": "Waiting", "message": WAIT})]], [[PREFIX + "waiting: " + WAIT]]),
        (
            [[runner(status={"phase": "Waiting", "message": WAIT})]] * 2 + [[runner(annotations=PLACED)]],
            [[PREFIX + "waiting: " + WAIT], [], [PREFIX + "placed on gpu-node-2"]],
        ),
        (
            [[runner(status={"phase": "Refused", "message": "asks for 16"})]],
            [[PREFIX + "refused: asks for 16"]],
        ),
        (
            [[runner(annotations={sizeddemo.ADMISSION_ANNOTATION: "pending"})]],
            [[PREFIX + "admitted (pending)"]],
        ),
        ([[runner(annotations=PLACED, deleting=True), runner(job=None, annotations=PLACED)]], [[]]),
    ],
    ids=["undecided", "waiting", "once-per-change", "refused", "pending", "deleting-or-not-sized"],
)
def test_report_says_each_change_once(passes: list[list[dict[str, Any]]], expected: list[list[str]]) -> None:
    report = sizeddemo.SizedReport()
    assert [report.lines(p) for p in passes] == expected


def test_the_pool_and_policy_route_the_sized_jobs_to_the_a100_node() -> None:
    pool, policy = sizeddemo.manifests("runnerd-demo", "acme-ml")
    assert pool["spec"]["template"]["spec"] == {"organization": "acme-ml", "labels": ["self-hosted", "linux"]}
    assert policy["spec"]["scaleTargetRef"] == {"name": pool["metadata"]["name"]}
    products = {p["name"]: p["nodeLabelValue"] for p in policy["spec"]["gpuProducts"]}
    assert products["a100"] == sizeddemo.A100
    assert policy["spec"]["admission"] == {"order": "Fifo", "maxPending": 0}
