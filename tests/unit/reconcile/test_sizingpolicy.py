"""The RunnerSizingPolicy controller's pure decisions: Accepted, the status, the refusal log."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from runnerd.api import RunnerSpec
from runnerd.reconcile.sizedjob import JobFacts, PoolRef, SizedRunner, waiting_runner
from runnerd.reconcile.sizingpolicy import (
    ACCEPTED,
    JOBS_REFUSED,
    REASON_ACCEPTED,
    REASON_CONFLICT,
    REASON_INVALID,
    REASON_NOT_FOUND,
    REASON_UNSUPPORTED,
    Acceptance,
    Refusal,
    RefusalLog,
    acceptance,
    claims,
    desired_status,
    policy_pool,
    status_differs,
)
from tests.unit.reconcile.sizingkit import POLICY

NOW = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
POOL_KEY = ("ci", "RunnerDeployment", "gpu-runners")
NO_DOCKER = RunnerSpec.from_dict({"dockerEnabled": False})
DIND = RunnerSpec.from_dict({})


def _policy(name: str = "gpu", spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "runnerd.dev/v1alpha1",
        "kind": "RunnerSizingPolicy",
        "metadata": {"name": name, "namespace": "ci", "generation": 3, **meta},
        "spec": copy.deepcopy(POLICY if spec is None else spec),
    }


def _with(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(POLICY)
    spec.update(changes)
    return spec


@pytest.mark.parametrize(
    ("obj", "rivals", "problem", "pool", "accepted", "reason", "in_message"),
    [
        (_policy(), [], None, NO_DOCKER, True, REASON_ACCEPTED, "RunnerDeployment gpu-runners"),
        (_policy(), [], None, DIND, True, REASON_ACCEPTED, "warning: migProfiles are listed"),
        (_policy(spec=_with(migProfiles=[])), [], None, DIND, True, REASON_ACCEPTED, "are applied"),
        (
            _policy(spec=_with(max={"gpu": 2})),
            [],
            None,
            NO_DOCKER,
            False,
            REASON_INVALID,
            "maxGpus: 4 is above",
        ),
        (_policy(spec=_with(max="lots")), [], None, NO_DOCKER, False, REASON_INVALID, ".spec.max"),
        (_policy(), ["other"], None, NO_DOCKER, False, REASON_CONFLICT, "gpu, other all name"),
        (
            _policy(spec=_with(scaleTargetRef={"kind": "RunnerSet", "name": "rs"})),
            [],
            None,
            None,
            False,
            REASON_UNSUPPORTED,
            "RunnerSet pools are not sized",
        ),
        (
            _policy(),
            [],
            "RunnerDeployment ci/gpu-runners not found",
            None,
            False,
            REASON_NOT_FOUND,
            "not found",
        ),
    ],
)
def test_acceptance(
    obj: dict[str, Any],
    rivals: list[str],
    problem: str | None,
    pool: RunnerSpec | None,
    accepted: bool,
    reason: str,
    in_message: str,
) -> None:
    verdict = acceptance(obj, rivals, problem, pool)
    assert (verdict.accepted, verdict.reason) == (accepted, reason)
    assert in_message in verdict.message
    assert (verdict.sizing is not None) == accepted
    if "warning" not in in_message and accepted:
        assert "warning" not in verdict.message


def test_claims_and_pools() -> None:
    deleting = _policy("gone", deletionTimestamp="2026-01-01T00:00:00Z")
    nameless = _policy("nameless", spec={"scaleTargetRef": {}})
    found = claims(
        [
            _policy("b"),
            _policy("a"),
            deleting,
            nameless,
            _policy("c", spec=_with(scaleTargetRef={"name": "x"})),
        ]
    )
    assert found == {POOL_KEY: ["a", "b"], ("ci", "RunnerDeployment", "x"): ["c"]}
    assert policy_pool(nameless) is None


def _sized(
    job_id: int, queued_at: float, annotations: dict[str, str] | None = None, **status: str
) -> SizedRunner:
    job = JobFacts(job_id, "octo-org/app", ("gpu=2",), queued_at, "train")
    obj = waiting_runner(job, PoolRef("ci", "RunnerDeployment", "gpu-runners", "u"), "gpu", {}, "2 GPUs")
    obj["metadata"]["annotations"].update(annotations or {})
    if status:
        obj["status"] = status
    read = SizedRunner.read(obj)
    assert read is not None
    return read


ACCEPT = Acceptance(True, REASON_ACCEPTED, "ok")


def test_status_counts_and_lists() -> None:
    runners = [
        _sized(3, 300.0, reason="WaitingForCapacity", message="waiting for 2: 0 of 16 free"),
        _sized(1, 100.0),
        _sized(2, 200.0, {"runnerd.dev/admission": "placed"}),
        _sized(4, 400.0, {"runnerd.dev/admission": "pending"}),
        _sized(5, 500.0, phase="Refused", reason="SizeRefused", message="largest node has 8"),
    ]
    refusals = [
        Refusal(9, "octo-org/app", "gpu=64", 900.0, "gpu=64: above the cap of 8 GPUs for this pool", "cap")
    ]
    status = desired_status(_policy(), ACCEPT, runners, refusals, NOW)
    assert (status["waiting"], status["pending"], status["placed"], status["refused"]) == (2, 1, 1, 2)
    assert status["observedGeneration"] == 3
    assert [j["jobId"] for j in status["waitingJobs"]] == [1, 3]  # oldest first
    assert status["waitingJobs"][1] == {
        "jobId": 3,
        "repository": "octo-org/app",
        "size": "2 GPUs",
        "since": "1970-01-01T00:05:00Z",
        "reason": "waiting for 2: 0 of 16 free",
    }
    assert [j["jobId"] for j in status["refusedJobs"]] == [9, 5]  # latest first
    assert status["refusedJobs"][0]["reason"].startswith("gpu=64: above the cap")
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions[ACCEPTED]["status"] == "True"
    assert conditions[JOBS_REFUSED]["status"] == "True"
    assert "job 9 of octo-org/app: gpu=64" in conditions[JOBS_REFUSED]["message"]


def test_lists_are_bounded() -> None:
    runners = [_sized(i, float(i)) for i in range(1, 80)]
    refusals = [Refusal(1000 + i, "o/r", "gpu=64", float(i), "cap") for i in range(70)]
    status = desired_status(_policy(), ACCEPT, runners, refusals, NOW)
    assert len(status["waitingJobs"]) == 50
    assert len(status["refusedJobs"]) == 50
    assert status["waiting"] == 79
    assert status["refused"] == 70
    assert status["refusedJobs"][0]["jobId"] == 1069


def test_conditions_keep_their_transition_time_and_unchanged_status_is_not_rewritten() -> None:
    obj = _policy()
    first = desired_status(obj, ACCEPT, [], [], NOW)
    assert {c["type"]: c["status"] for c in first["conditions"]} == {ACCEPTED: "True", JOBS_REFUSED: "False"}
    obj["status"] = first
    later = NOW + dt.timedelta(hours=1)
    again = desired_status(obj, ACCEPT, [], [], later)
    assert again == first
    assert not status_differs(obj["status"], again)
    flipped = desired_status(obj, Acceptance(False, REASON_CONFLICT, "two"), [], [], later)
    assert status_differs(obj["status"], flipped)
    accepted = next(c for c in flipped["conditions"] if c["type"] == ACCEPTED)
    assert accepted["lastTransitionTime"] == "2026-12-07T11:00:00Z"


def test_deleting_runners_are_not_counted() -> None:
    job = JobFacts(1, "o/r", ("gpu=1",), 1.0)
    obj = waiting_runner(job, PoolRef("ci", "RunnerDeployment", "gpu-runners", "u"), "gpu", {}, "1")
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    runner = SizedRunner.read(obj)
    assert runner is not None
    assert desired_status(_policy(), ACCEPT, [runner], [], NOW)["waiting"] == 0


def test_refusal_log() -> None:
    log = RefusalLog(per_pool=3)
    other = ("ci", "RunnerDeployment", "cpu")
    assert log.add(POOL_KEY, Refusal(1, "o/r", "gpu=64", 1.0, "cap"))
    assert not log.add(POOL_KEY, Refusal(1, "o/r", "gpu=64", 2.0, "cap"))  # already refused
    for job in (2, 3, 4):
        log.add(POOL_KEY, Refusal(job, "o/r", "gpu=64", float(job), "cap"))
    assert [r.job_id for r in log.of(POOL_KEY)] == [2, 3, 4]  # the oldest fell out
    log.add(other, Refusal(3, "o/r", "gpu=64", 3.0, "no policy"))
    assert log.has(3)
    assert sorted(log.drop(3)) == sorted([POOL_KEY, other])
    assert not log.has(3)
    assert log.drop(3) == []
    assert [(p, r.job_id) for p, r in log.all()] == [(POOL_KEY, 2), (POOL_KEY, 4)]


def test_refusal_log_seeds_once_from_a_status() -> None:
    status = desired_status(
        _policy(),
        ACCEPT,
        [_sized(5, 500.0, phase="Refused", reason="SizeRefused", message="largest node has 8")],
        [Refusal(7, "o/r", "gpu=64", 700.0, "cap"), Refusal(8, "o/r", "gpu-type=x", 800.0, "product")],
        NOW,
    )
    log = RefusalLog()
    log.seed(POOL_KEY, status, runner_jobs=[5])
    assert [(r.job_id, r.since, r.size) for r in log.of(POOL_KEY)] == [
        (7, 700.0, "gpu=64"),
        (8, 800.0, "gpu-type=x"),
    ]
    log.drop(7)
    log.seed(POOL_KEY, status, runner_jobs=[5])  # once per process
    assert [r.job_id for r in log.of(POOL_KEY)] == [8]
    log.seed(("x", "RunnerDeployment", "y"), {"refusedJobs": [{"jobId": "bad"}, {"jobId": 1}]}, [])
    assert log.of(("x", "RunnerDeployment", "y")) == []
