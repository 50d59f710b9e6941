"""The Actions service's response shapes, field for field, as the reference lists them
(/work/shared/reference/scale-set-protocol.md §2.4, §3, §4, §5, §6, §7, §8) and as ARC's
``github/actions/types.go`` (ARC@0.13.1) and ``actions/scaleset``'s ``types.go`` decode them.

``check(kind, value)`` asserts that ``value`` has exactly the required fields (plus allowed optional
ones), each of the right JSON type; nested shapes are checked too.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
STATISTICS_FIELDS = (
    "totalAvailableJobs",
    "totalAcquiredJobs",
    "totalAssignedJobs",
    "totalRunningJobs",
    "totalRegisteredRunners",
    "totalBusyRunners",
    "totalIdleRunners",
)
JOB_BASE = {
    "messageType": str,
    "runnerRequestId": int,
    "repositoryName": str,
    "ownerName": str,
    "jobId": str,
    "jobWorkflowRef": str,
    "jobDisplayName": str,
    "workflowRunId": int,
    "eventName": str,
    "requestLabels": list,
    "queueTime": "time",
    "scaleSetAssignTime": "time",
    "runnerAssignTime": "time",
    "finishTime": "time",
}
JOB_EXTRA: dict[str, dict[str, Any]] = {
    "JobAvailable": {"acquireJobUrl": str},
    "JobAssigned": {},
    "JobStarted": {"runnerId": int, "runnerName": str},
    "JobCompleted": {"result": str, "runnerId": int, "runnerName": str},
}

Spec = dict[str, Any]


def _type_ok(value: Any, want: Any) -> bool:
    if want == "time":
        return isinstance(value, str) and bool(RFC3339.match(value))
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(want, str):
        check(want, value)
        return True
    return isinstance(value, want)


def _fields(value: Any, required: Spec, optional: Spec | None = None) -> None:
    assert isinstance(value, dict), value
    optional = optional or {}
    missing = set(required) - set(value)
    extra = set(value) - set(required) - set(optional)
    assert not missing, f"missing {missing} in {value}"
    assert not extra, f"unexpected {extra} in {value}"
    for name, want in {**required, **optional}.items():
        if name in value:
            assert _type_ok(value[name], want), f"{name}={value[name]!r} is not {want}"


def _statistics(v: Any) -> None:
    _fields(v, dict.fromkeys(STATISTICS_FIELDS, int))


def _label(v: Any) -> None:
    _fields(v, {"type": str, "name": str})


def _setting(v: Any) -> None:
    _fields(v, {}, {"ephemeral": bool, "isElastic": bool, "disableUpdate": bool})


def _scale_set(v: Any) -> None:
    _fields(
        v,
        {
            "id": int,
            "name": str,
            "runnerGroupId": int,
            "runnerGroupName": str,
            "labels": list,
            "RunnerSetting": "setting",
            "createdOn": "time",
        },
        {"runnerJitConfigUrl": str, "statistics": "statistics"},
    )
    for lab in v["labels"]:
        _label(lab)


def _list_of(kind: str) -> Callable[[Any], None]:
    def checker(v: Any) -> None:
        _fields(v, {"count": int, "value": list})
        assert v["count"] == len(v["value"])
        for item in v["value"]:
            check(kind, item)

    return checker


def _runner_group(v: Any) -> None:
    _fields(v, {"id": int, "name": str, "size": int, "isDefaultGroup": bool})


def _jwt(token: Any) -> dict[str, Any]:
    assert isinstance(token, str), token
    assert token.count(".") == 2, token
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert isinstance(claims.get("exp"), int), claims
    return claims  # type: ignore[no-any-return]


def _handshake(v: Any) -> None:
    _fields(v, {"url": str, "token": str})
    assert v["url"].startswith("http")
    assert v["url"].endswith("/")
    _jwt(v["token"])


def _session(v: Any) -> None:
    _fields(
        v,
        {
            "sessionId": str,
            "ownerName": str,
            "runnerScaleSet": "scale_set",
            "messageQueueUrl": str,
            "messageQueueAccessToken": str,
            "statistics": "statistics",
        },
    )
    uuid.UUID(v["sessionId"])
    _jwt(v["messageQueueAccessToken"])


def _message(v: Any) -> None:
    _fields(v, {"messageId": int, "messageType": str, "body": str, "statistics": "statistics"})
    assert v["messageType"] == "RunnerScaleSetJobMessages"
    body = json.loads(v["body"]) if v["body"] else []
    assert isinstance(body, list)
    assert len(body) <= 50
    for item in body:
        check("job_message", item)


def _job_message(v: Any) -> None:
    kind = v.get("messageType")
    assert kind in JOB_EXTRA, kind
    _fields(v, {**JOB_BASE, **JOB_EXTRA[kind]})
    uuid.UUID(v["jobId"])
    assert all(isinstance(x, str) for x in v["requestLabels"])


def _acquirable(v: Any) -> None:
    _fields(
        v,
        {
            "acquireJobUrl": str,
            "messageType": str,
            "runnerRequestId": int,
            "repositoryName": str,
            "ownerName": str,
            "jobWorkflowRef": str,
            "eventName": str,
            "requestLabels": list,
        },
    )


def _int64_list(v: Any) -> None:
    _fields(v, {"count": int, "value": list})
    assert v["count"] == len(v["value"])
    assert all(isinstance(i, int) for i in v["value"])


def _runner_reference(v: Any) -> None:
    _fields(v, {"id": int, "name": str, "runnerScaleSetId": int})


def _jit(v: Any) -> None:
    _fields(v, {"runner": "runner_reference", "encodedJITConfig": str})
    outer = json.loads(base64.b64decode(v["encodedJITConfig"]))
    assert {".runner", ".credentials"} <= set(outer)


def _error(v: Any) -> None:
    _fields(v, {"typeName": str, "message": str})
    assert v["typeName"].startswith("GitHub.")
    assert ", " in v["typeName"]


CHECKERS: dict[str, Callable[[Any], None]] = {
    "statistics": _statistics,
    "setting": _setting,
    "scale_set": _scale_set,
    "scale_set_list": _list_of("scale_set"),
    "runner_group_list": _list_of("runner_group"),
    "runner_group": _runner_group,
    "handshake": _handshake,
    "session": _session,
    "message": _message,
    "job_message": _job_message,
    "acquirable_list": _list_of("acquirable"),
    "acquirable": _acquirable,
    "int64_list": _int64_list,
    "runner_reference": _runner_reference,
    "runner_reference_list": _list_of("runner_reference"),
    "jit": _jit,
    "error": _error,
}
#: every shape a test checked, so the conformance test can prove each was exercised
SEEN: set[str] = set()


def check(kind: str, value: Any) -> None:
    SEEN.add(kind)
    CHECKERS[kind](value)


def jwt_claims(token: str) -> dict[str, Any]:
    return _jwt(token)
