"""Sized jobs that wait or were refused, as ``runnerd status`` and the dashboard list them (pure).

A waiting sized job is a Runner that the intake made for it (docs/gpu-sizing.md, "Wiring": the
sized-job contract): labelled :data:`SIZED_JOB_LABEL` (the job id), annotated with the queue time,
repository, workflow and human size; admission then annotates it :data:`ADMISSION_ANNOTATION`
``placed``/``pending`` or writes its ``status`` (``phase: Waiting``, ``reason: WaitingForCapacity``;
``phase: Refused``, ``reason: SizeRefused``) with the reason as ``message``. This module reads only
those fields, so both views show what admission decided and nothing they computed themselves.

States: ``placed`` and ``pending`` (admitted), ``waiting`` (admission's reason, or "not admitted
yet" before its first decision), ``refused``. Jobs the intake refused (no Runner) are reported
there as the pool's ``SizedJobRefused`` events, which ``runnerd status`` lists among the warnings.
Rows are oldest first (queue time, then job id); the views show at most :data:`MAX_ROWS`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from runnerd.api import parse_time
from runnerd.reconcile.sizedjob import (
    ADMISSION_ANNOTATION,
    ADMITTED_NODE_ANNOTATION,
    QUEUED_AT_ANNOTATION,
    REPOSITORY_ANNOTATION,
    SIZE_ANNOTATION,
    SIZED_JOB_LABEL,
    WORKFLOW_ANNOTATION,
)

POOL_KINDS: Final = ("RunnerDeployment", "RunnerSet")
STATES: Final = ("waiting", "refused", "pending", "placed")
NOT_ADMITTED_YET: Final = "not admitted yet"
MAX_ROWS: Final = 50


@dataclass(frozen=True)
class SizedJob:
    namespace: str
    job: str
    pool: str
    size: str
    repository: str
    workflow: str
    queued_at: dt.datetime | None
    state: str
    reason: str
    """Admission's reason (waiting, refused) or the admitted node (placed)."""

    @property
    def open(self) -> bool:
        """Waiting or refused: what the views list."""
        return self.state in ("waiting", "refused")


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def _pool(meta: Mapping[str, Any]) -> str:
    for ref in meta.get("ownerReferences") or ():
        if ref.get("kind") in POOL_KINDS and ref.get("name"):
            return str(ref["name"])
    return ""


def _state(annotations: Mapping[str, Any], status: Mapping[str, Any]) -> tuple[str, str]:
    admission = annotations.get(ADMISSION_ANNOTATION)
    if admission == "placed":
        return "placed", str(annotations.get(ADMITTED_NODE_ANNOTATION) or "")
    if admission == "pending":
        return "pending", ""
    if status.get("phase") == "Refused":
        return "refused", str(status.get("message") or status.get("reason") or "")
    if status.get("phase") == "Waiting":
        return "waiting", str(status.get("message") or status.get("reason") or "")
    return "waiting", NOT_ADMITTED_YET


def sized_job(runner: Mapping[str, Any]) -> SizedJob | None:
    """The sized job a Runner stands for (``None``: not a sized job's Runner)."""
    meta = runner.get("metadata") or {}
    job = (meta.get("labels") or {}).get(SIZED_JOB_LABEL)
    if not job:
        return None
    annotations = meta.get("annotations") or {}
    state, reason = _state(annotations, runner.get("status") or {})
    return SizedJob(
        namespace=str(meta.get("namespace") or ""),
        job=str(job),
        pool=_pool(meta),
        size=str(annotations.get(SIZE_ANNOTATION) or ""),
        repository=str(annotations.get(REPOSITORY_ANNOTATION) or ""),
        workflow=str(annotations.get(WORKFLOW_ANNOTATION) or ""),
        queued_at=_time(annotations.get(QUEUED_AT_ANNOTATION)),
        state=state,
        reason=reason,
    )


def _order(job: SizedJob) -> tuple[float, str]:
    return (job.queued_at.timestamp() if job.queued_at else float("inf"), job.job)


def sized_jobs(runners: Iterable[Mapping[str, Any]]) -> list[SizedJob]:
    """Every sized job's Runner among ``runners``, oldest first."""
    return sorted((j for r in runners if (j := sized_job(r)) is not None), key=_order)


def open_jobs(runners: Iterable[Mapping[str, Any]]) -> list[SizedJob]:
    """The waiting and refused ones, oldest first."""
    return [j for j in sized_jobs(runners) if j.open]


def _waited(job: SizedJob, now: dt.datetime) -> float | None:
    return None if job.queued_at is None else max((now - job.queued_at).total_seconds(), 0.0)


def sized_job_json(j: SizedJob, now: dt.datetime | None = None) -> dict[str, Any]:
    """One job as data (``now``: add how long it has waited)."""
    out: dict[str, Any] = {
        "namespace": j.namespace,
        "job": j.job,
        "pool": j.pool,
        "size": j.size,
        "repository": j.repository,
        "workflow": j.workflow,
        "queuedAt": j.queued_at.isoformat() if j.queued_at else None,
        "state": j.state,
        "reason": j.reason,
    }
    if now is not None:
        out["waitingSeconds"] = _waited(j, now)
    return out


def dashboard_sized_jobs(runners: Iterable[Mapping[str, Any]], now: dt.datetime) -> dict[str, Any]:
    """The dashboard's "Waiting sized jobs" table: at most :data:`MAX_ROWS` rows, with the counts
    of every state (so a hidden row is still counted)."""
    jobs = sized_jobs(runners)
    shown = [j for j in jobs if j.open]
    rows = [sized_job_json(j, now) for j in shown[:MAX_ROWS]]
    counts = {state: sum(j.state == state for j in jobs) for state in STATES}
    return {"rows": rows, "hidden": max(len(shown) - MAX_ROWS, 0), "counts": counts}


def sized_jobs_table(
    jobs: Sequence[SizedJob],
    now: dt.datetime,
    *,
    age: Callable[[dt.datetime | None, dt.datetime], str],
    all_namespaces: bool = False,
) -> tuple[list[str], list[list[object]]]:
    """``runnerd status``'s table of waiting and refused sized jobs (``age``: its age formatter)."""
    headers = ["JOB", "POOL", "SIZE", "STATE", "WAITING", "REASON"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows: list[list[object]] = []
    for j in jobs[:MAX_ROWS]:
        row: list[object] = [
            j.job,
            j.pool or "-",
            j.size or "-",
            j.state,
            age(j.queued_at, now),
            j.reason or "-",
        ]
        rows.append([j.namespace, *row] if all_namespaces else row)
    return headers, rows
