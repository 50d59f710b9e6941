"""The sized-job contract: the waiting Runner's name, metadata and spec, and reading it back."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runnerd.api import RunnerTemplate
from runnerd.manifests.sizedrunner import build_waiting_runner, size_text
from runnerd.reconcile.sizedjob import (
    ADMISSION_ANNOTATION,
    ADMITTED_NODE_ANNOTATION,
    LABEL_DEPLOYMENT_NAME,
    MAX_NAME,
    NOT_ADMITTED_REASON,
    QUEUED_AT_ANNOTATION,
    REPOSITORY_ANNOTATION,
    RULE_CAP,
    RULE_GRAMMAR,
    RULE_MIG,
    RULE_NO_POLICY,
    RULE_PRODUCT,
    SIZE_ANNOTATION,
    SIZED_JOB_LABEL,
    SIZING_POLICY_LABEL,
    WORKFLOW_ANNOTATION,
    JobFacts,
    PoolRef,
    SizedRunner,
    SizedState,
    is_sized_runner,
    refusal_rule,
    sized_runner_name,
    waiting_runner,
)
from runnerd.reconcile.sizing import Rejected, SizeRequest, parse_size
from tests.unit.reconcile.sizingkit import H100, POOL, PRODUCT_LABEL

JOB = JobFacts(
    job_id=4242,
    repository="octo-org/app",
    labels=("self-hosted", "linux", "gpu=2", "gpu-type=h100"),
    queued_at=1_700_000_000.0,
    workflow="train",
)
RD = PoolRef(namespace="ci", kind="RunnerDeployment", name="gpu-runners", uid="uid-1")
TEMPLATE = RunnerTemplate.from_dict(
    {
        "metadata": {
            "labels": {"team": "ml", "runner-template-hash": "abc"},
            "annotations": {"note": "x", ADMISSION_ANNOTATION: "placed"},
        },
        "spec": {
            "organization": "octo-org",
            "labels": ["linux", "gpu"],
            "ephemeral": False,
            "dockerdWithinRunnerContainer": True,
            "resources": {"limits": {"nvidia.com/gpu": "1"}},
        },
    }
)


def _size(labels: tuple[str, ...]) -> SizeRequest:
    size = parse_size(labels, POOL)
    assert isinstance(size, SizeRequest), size
    return size


@pytest.mark.parametrize(
    ("pool", "job_id", "attempt", "expected"),
    [
        ("gpu-runners", 7, 0, "gpu-runners-job-7"),
        ("a" * 50, 12345678, 0, "a" * 50 + "-job-12345678"),
        ("gpu-runners", 7, 1, "gpu-runners-job-7-1"),  # the job's earlier Runner went first
        ("gpu-runners", 7, 12, "gpu-runners-job-7-12"),
    ],
)
def test_short_names_are_pool_job_id(pool: str, job_id: int, attempt: int, expected: str) -> None:
    assert sized_runner_name(pool, job_id, attempt) == expected


@pytest.mark.parametrize("attempt", [0, 1, 99])
def test_a_long_pool_name_keeps_the_attempt_within_the_limit(attempt: int) -> None:
    name = sized_runner_name("p" * 80, 98765432101, attempt)
    assert len(name) <= MAX_NAME
    assert name.endswith("-job-98765432101" + (f"-{attempt}" if attempt else ""))


@pytest.mark.parametrize("length", [51, 60, 63, 200])
def test_long_pool_names_are_cut_and_hashed(length: int) -> None:
    pool = "p" * (length - 1) + "x"
    name = sized_runner_name(pool, 98765432101)
    assert len(name) <= MAX_NAME
    assert name.endswith("-job-98765432101")
    assert name[0].isalnum()
    # two long pools that share their first characters still get different names
    assert name != sized_runner_name("p" * (length - 1) + "y", 98765432101)
    assert name == sized_runner_name(pool, 98765432101)  # deterministic


def test_waiting_runner_carries_the_contract() -> None:
    spec = {"labels": ["self-hosted", "gpu=2"], "ephemeral": False, "organization": "octo-org"}
    meta = {"labels": {"team": "ml", "runner-template-hash": "abc"}, "annotations": {"note": "x"}}
    before = copy.deepcopy((spec, meta))
    obj = waiting_runner(JOB, RD, "gpu-policy", spec, "2 × nvidia.com/gpu", meta)  # noqa: RUF001
    assert (spec, meta) == before  # inputs untouched
    m = obj["metadata"]
    assert obj["kind"] == "Runner"
    assert obj["apiVersion"] == "actions.summerwind.dev/v1alpha1"
    assert m["name"] == "gpu-runners-job-4242"
    assert m["namespace"] == "ci"
    assert m["labels"] == {
        "team": "ml",
        LABEL_DEPLOYMENT_NAME: "gpu-runners",
        SIZED_JOB_LABEL: "4242",
        SIZING_POLICY_LABEL: "gpu-policy",
    }
    assert m["annotations"] == {
        "note": "x",
        QUEUED_AT_ANNOTATION: "2023-11-14T22:13:20Z",
        REPOSITORY_ANNOTATION: "octo-org/app",
        WORKFLOW_ANNOTATION: "train",
        SIZE_ANNOTATION: "2 × nvidia.com/gpu",  # noqa: RUF001
    }
    assert m["ownerReferences"] == [
        {
            "apiVersion": "actions.summerwind.dev/v1alpha1",
            "kind": "RunnerDeployment",
            "name": "gpu-runners",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert "finalizers" not in m  # nothing to clean up while it waits
    assert obj["spec"]["ephemeral"] is True
    assert obj == waiting_runner(JOB, RD, "gpu-policy", spec, "2 × nvidia.com/gpu", meta)  # noqa: RUF001


def test_runner_set_pools_get_no_deployment_label() -> None:
    pool = PoolRef(namespace="ci", kind="RunnerSet", name="rs", uid="u")
    obj = waiting_runner(JOB, pool, "p", {}, "s")
    assert LABEL_DEPLOYMENT_NAME not in obj["metadata"]["labels"]
    assert obj["metadata"]["ownerReferences"][0]["kind"] == "RunnerSet"


def test_built_runner_has_the_sized_spec_and_exactly_the_jobs_labels() -> None:
    before = TEMPLATE.to_dict()
    obj = build_waiting_runner(JOB, RD, "gpu-policy", TEMPLATE, _size(JOB.labels), POOL)
    assert TEMPLATE.to_dict() == before
    spec: dict[str, Any] = obj["spec"]
    assert spec["labels"] == ["self-hosted", "linux", "gpu=2", "gpu-type=h100"]
    assert spec["resources"] == {"limits": {"nvidia.com/gpu": "2"}, "requests": {"nvidia.com/gpu": "2"}}
    assert spec["nodeSelector"] == {PRODUCT_LABEL: H100}
    assert spec["ephemeral"] is True
    assert spec["organization"] == "octo-org"
    annotations = obj["metadata"]["annotations"]
    assert annotations[SIZE_ANNOTATION] == f"2 × nvidia.com/gpu ({H100})"  # noqa: RUF001
    assert ADMISSION_ANNOTATION not in annotations  # a template cannot admit its jobs
    assert "runner-template-hash" not in obj["metadata"]["labels"]  # outside every replica set


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (("gpu=2", "gpu-type=h100"), f"2 × nvidia.com/gpu ({H100})"),  # noqa: RUF001
        (("gpu=1",), "1 × nvidia.com/gpu"),  # noqa: RUF001
        (("mig=1g.10gb",), "1 × nvidia.com/mig-1g.10gb"),  # noqa: RUF001
        (("cpu=8",), "8 cpu"),
        (("mem=64Gi",), "64Gi memory"),
        (("cpu=8", "mem=64Gi"), "8 cpu"),
    ],
)
def test_size_text_is_admissions_description(labels: tuple[str, ...], expected: str) -> None:
    assert size_text(_size(labels), POOL) == expected


def _runner(
    annotations: dict[str, str] | None = None, status: dict[str, Any] | None = None, **labels: str
) -> dict[str, Any]:
    obj = waiting_runner(JOB, RD, "gpu-policy", {}, "2 × nvidia.com/gpu")  # noqa: RUF001
    obj["metadata"]["annotations"].update(annotations or {})
    obj["metadata"]["labels"].update(labels)
    if status is not None:
        obj["status"] = status
    return obj


@pytest.mark.parametrize(
    ("annotations", "status", "state", "reason", "node"),
    [
        ({}, None, SizedState.WAITING, NOT_ADMITTED_REASON, None),
        (
            {},
            {"phase": "Waiting", "reason": "WaitingForCapacity", "message": "waiting for 2: 0 of 16 free"},
            SizedState.WAITING,
            "waiting for 2: 0 of 16 free",
            None,
        ),
        (
            {},
            {"phase": "Refused", "reason": "SizeRefused", "message": "largest node has 8"},
            SizedState.REFUSED,
            "largest node has 8",
            None,
        ),
        (
            {ADMISSION_ANNOTATION: "placed", ADMITTED_NODE_ANNOTATION: "gpu-0"},
            None,
            SizedState.PLACED,
            "",
            "gpu-0",
        ),
        ({ADMISSION_ANNOTATION: "pending"}, None, SizedState.PENDING, "", None),
        # an admitted runner's later status (Idle, Running) is the Runner controller's, not a wait
        ({ADMISSION_ANNOTATION: "placed"}, {"phase": "Running"}, SizedState.PLACED, "", None),
        ({ADMISSION_ANNOTATION: "bogus"}, None, SizedState.WAITING, NOT_ADMITTED_REASON, None),
    ],
)
def test_read_back(
    annotations: dict[str, str],
    status: dict[str, Any] | None,
    state: SizedState,
    reason: str,
    node: str | None,
) -> None:
    read = SizedRunner.read(_runner(annotations, status))
    assert read is not None
    assert (read.state, read.reason, read.admitted_node) == (state, reason, node)
    assert read.admitted == (state in (SizedState.PLACED, SizedState.PENDING))
    assert (read.job_id, read.policy, read.pool) == (4242, "gpu-policy", "gpu-runners")
    assert (read.repository, read.workflow, read.size) == ("octo-org/app", "train", "2 × nvidia.com/gpu")  # noqa: RUF001
    assert read.queued_at == JOB.queued_at
    assert not read.deleting


@pytest.mark.parametrize(
    "obj",
    [
        {"metadata": {"name": "plain-runner", "labels": {"runner-deployment-name": "rd"}}},
        {"metadata": {"name": "bad", "labels": {SIZED_JOB_LABEL: "not-a-number"}}},
        {},
    ],
)
def test_other_runners_are_not_sized_jobs(obj: dict[str, Any]) -> None:
    assert SizedRunner.read(obj) is None


def test_malformed_annotations_read_as_absent() -> None:
    obj = _runner({QUEUED_AT_ANNOTATION: "yesterday"})
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    read = SizedRunner.read(obj)
    assert read is not None
    assert read.queued_at is None
    assert read.deleting
    assert is_sized_runner(obj)
    assert not is_sized_runner({"metadata": {}})


def _reason(labels: list[str], pool: Any = POOL) -> str:
    result = parse_size(labels, pool)
    assert isinstance(result, Rejected), result
    return result.reason


@pytest.mark.parametrize(
    ("labels", "pool", "rule"),
    [
        (["gpu=64"], POOL, RULE_CAP),
        (["gpu=5", "gpu-type=a100"], POOL, RULE_CAP),
        (["cpu=64"], POOL, RULE_CAP),
        (["mem=1Ti"], POOL, RULE_CAP),
        (["gpu-type=unknown"], POOL, RULE_PRODUCT),
        (["mig=7g.80gb"], POOL, RULE_MIG),
        (["gpu=two"], POOL, RULE_GRAMMAR),
        (["gpu=1", "gpu=2"], POOL, RULE_GRAMMAR),
        (["gpu=1", "mig=1g.10gb"], POOL, RULE_GRAMMAR),
        (["mem=64"], POOL, RULE_GRAMMAR),
        (["gpu=2"], None, RULE_NO_POLICY),
    ],
)
def test_refusal_rules(labels: list[str], pool: Any, rule: str) -> None:
    assert refusal_rule(_reason(labels, pool)) == rule
