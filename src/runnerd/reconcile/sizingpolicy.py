"""The ``RunnerSizingPolicy`` controller's decisions (pure): is a policy Accepted, and its status.

Facts in: the policy object, the other policies naming the same pool, whether the pool resolves (and
its runner template), the pool's sized Runners (:class:`~runnerd.reconcile.sizedjob.SizedRunner`)
and the jobs the intake refused (:class:`RefusalLog`). Steps out: an :class:`Acceptance` and the
wanted ``status``.

**Accepted** (docs/gpu-sizing.md, "The API") when all hold, else ``False`` with the reason:

* the spec parses and :func:`~runnerd.api.sizing.policy_errors` finds nothing (``InvalidSpec``);
* no other policy names the same pool (``ConflictingPolicy``, on each of them: a pool takes one);
* the pool is a RunnerDeployment (``UnsupportedTarget``: a RunnerSet's pods come from its own
  StatefulSet template, which the intake does not size; the CRD accepts the kind for later);
* the pool exists and parses (``TargetNotFound``).

An Accepted policy with ``migProfiles`` on a pool whose runners run dockerd (``dockerEnabled`` not
``false``) says so in its message: job containers there get no CDI device for a MIG slice.

**Status**: ``waiting``/``pending``/``placed`` count the pool's sized Runners by
:class:`~runnerd.reconcile.sizedjob.SizedState`; ``refused`` counts the Runners admission refused
plus the jobs the intake refused that are still queued; ``waitingJobs`` (oldest first) and
``refusedJobs`` (latest first) hold at most :data:`~runnerd.api.sizing.MAX_LISTED_JOBS` each;
``JobsRefused`` is ``True`` while any job is refused; ``observedGeneration`` is the policy's
generation. A condition keeps its ``lastTransitionTime`` while its status stays.

Guarantees: pure and deterministic (the same facts give an equal status, so the controller writes
only on change); :class:`RefusalLog` is bounded per pool.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runnerd.api import JSON, ApiParseError, RunnerSpec, format_time, parse_time
from runnerd.api.sizing import MAX_LISTED_JOBS, RunnerSizingPolicy, policy_errors
from runnerd.reconcile.sizedjob import RULE_NO_POLICY, SizedRunner, SizedState, rfc3339
from runnerd.reconcile.sizing import PoolSizing

ACCEPTED = "Accepted"
JOBS_REFUSED = "JobsRefused"
REASON_ACCEPTED = "Accepted"
REASON_INVALID = "InvalidSpec"
REASON_CONFLICT = "ConflictingPolicy"
REASON_UNSUPPORTED = "UnsupportedTarget"
REASON_NOT_FOUND = "TargetNotFound"
REASON_REFUSED = "SizedJobsRefused"
REASON_NONE_REFUSED = "NoJobsRefused"
MAX_MESSAGE = 4096

PoolKey = tuple[str, str, str]
"""``(namespace, kind, name)`` of a pool."""


def policy_pool(obj: Mapping[str, Any]) -> PoolKey | None:
    """The pool a policy object names (``None`` when it names none)."""
    meta = obj.get("metadata") or {}
    ref = (obj.get("spec") or {}).get("scaleTargetRef") or {}
    if not isinstance(ref, Mapping) or not ref.get("name"):
        return None
    return str(meta.get("namespace") or ""), str(ref.get("kind") or "RunnerDeployment"), str(ref["name"])


def claims(policies: Iterable[Mapping[str, Any]]) -> dict[PoolKey, list[str]]:
    """Pool -> the names of the live (not deleting) policies naming it, sorted."""
    out: dict[PoolKey, list[str]] = {}
    for obj in policies:
        meta = obj.get("metadata") or {}
        pool = policy_pool(obj)
        if pool is None or meta.get("deletionTimestamp"):
            continue
        out.setdefault(pool, []).append(str(meta.get("name") or ""))
    return {pool: sorted(names) for pool, names in out.items()}


@dataclass(frozen=True)
class Acceptance:
    accepted: bool
    reason: str
    message: str
    sizing: PoolSizing | None = None
    """The compiled policy (set when accepted)."""


def acceptance(
    obj: Mapping[str, Any],
    rivals: Sequence[str],
    target_problem: str | None,
    pool_spec: RunnerSpec | None,
) -> Acceptance:
    """Whether ``obj`` is Accepted. ``rivals``: the other policies naming its pool;
    ``target_problem``: why its pool does not resolve (``None``: it does, with ``pool_spec``)."""
    try:
        policy = RunnerSizingPolicy.from_dict(obj)
    except ApiParseError as exc:
        return Acceptance(False, REASON_INVALID, str(exc))
    spec = policy.spec
    errors = policy_errors(spec)
    if errors:
        return Acceptance(False, REASON_INVALID, "; ".join(errors))
    ref = spec.scale_target_ref
    kind = ref.kind or "RunnerDeployment"
    if rivals:
        names = ", ".join(sorted({policy.name or "", *rivals}))
        return Acceptance(
            False,
            REASON_CONFLICT,
            f"RunnerSizingPolicies {names} all name {kind} {ref.name}: a pool takes one policy; "
            "none of them applies until only one is left",
        )
    if kind != "RunnerDeployment":
        return Acceptance(
            False,
            REASON_UNSUPPORTED,
            f"{kind} pools are not sized: a RunnerSet's pods come from its own template; "
            "point the policy at a RunnerDeployment",
        )
    if target_problem is not None:
        return Acceptance(False, REASON_NOT_FOUND, target_problem)
    sizing = PoolSizing.from_spec(spec)
    message = f"sizing labels of jobs for {kind} {ref.name} are applied"
    if spec.mig_profiles and pool_spec is not None and pool_spec.effective_docker_enabled:
        message += (
            "; warning: migProfiles are listed but this pool's runners run dockerd (dockerEnabled is "
            "not false): job containers get no CDI device for a MIG slice (runnerd-gpu-setup refuses "
            "MIG devices); list migProfiles only for pools with dockerEnabled: false"
        )
    return Acceptance(True, REASON_ACCEPTED, message, sizing)


@dataclass(frozen=True)
class Refusal:
    """A job the intake refused (no Runner was made for it)."""

    job_id: int
    repository: str
    size: str
    """The sizing labels as the job wrote them."""
    since: float
    reason: str
    rule: str = RULE_NO_POLICY

    def listed(self) -> JSON:
        return _listed(self.job_id, self.repository, self.size, self.since, self.reason)


def _listed(job_id: int, repository: str, size: str, since: float | None, reason: str) -> JSON:
    out: JSON = {"jobId": job_id, "repository": repository, "size": size, "reason": reason[:1024]}
    if since is not None:
        out["since"] = rfc3339(since)
    return out


class RefusalLog:
    """The jobs the intake refused and that are still queued, per pool, latest last (bounded)."""

    def __init__(self, per_pool: int = MAX_LISTED_JOBS) -> None:
        self.per_pool = per_pool
        self._by_pool: dict[PoolKey, OrderedDict[int, Refusal]] = {}
        self._seeded: set[PoolKey] = set()

    def add(self, pool: PoolKey, refusal: Refusal) -> bool:
        """Record ``refusal``; ``False`` when this job was already refused in this pool."""
        jobs = self._by_pool.setdefault(pool, OrderedDict())
        if refusal.job_id in jobs:
            return False
        jobs[refusal.job_id] = refusal
        while len(jobs) > self.per_pool:
            jobs.popitem(last=False)
        return True

    def drop(self, job_id: int) -> list[PoolKey]:
        """Forget ``job_id`` (its job finished); the pools that listed it."""
        out = []
        for pool, jobs in self._by_pool.items():
            if jobs.pop(job_id, None) is not None:
                out.append(pool)
        return out

    def of(self, pool: PoolKey) -> list[Refusal]:
        return list((self._by_pool.get(pool) or {}).values())

    def has(self, job_id: int) -> bool:
        return any(job_id in jobs for jobs in self._by_pool.values())

    def all(self) -> Iterable[tuple[PoolKey, Refusal]]:
        for pool, jobs in self._by_pool.items():
            for refusal in jobs.values():
                yield pool, refusal

    def seed(self, pool: PoolKey, status: Mapping[str, Any], runner_jobs: Iterable[int]) -> None:
        """Once per pool and process: the refused jobs a policy's status lists that no Runner holds
        (the intake's, from before a restart) join the log, oldest first, so they stay listed
        and the safety-net poll can find them finished."""
        if pool in self._seeded:
            return
        self._seeded.add(pool)
        held = set(runner_jobs)
        entries = [e for e in status.get("refusedJobs") or () if isinstance(e, Mapping)]
        for entry in reversed(entries):  # listed latest first
            try:
                job_id = int(entry["jobId"])
                since = parse_time(str(entry.get("since"))).timestamp()
            except (KeyError, TypeError, ValueError):
                continue
            if job_id in held:
                continue
            self.add(
                pool,
                Refusal(
                    job_id,
                    str(entry.get("repository") or ""),
                    str(entry.get("size") or ""),
                    since,
                    str(entry.get("reason") or ""),
                ),
            )


def _condition(
    current: Sequence[Mapping[str, Any]],
    kind: str,
    status: bool,
    reason: str,
    message: str,
    generation: int,
    now: dt.datetime,
) -> JSON:
    value = "True" if status else "False"
    old = next((c for c in current if c.get("type") == kind), None)
    since = (
        str(old["lastTransitionTime"])
        if old is not None and old.get("status") == value and old.get("lastTransitionTime")
        else format_time(now.replace(microsecond=0))
    )
    return {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def desired_status(
    obj: Mapping[str, Any],
    verdict: Acceptance,
    runners: Iterable[SizedRunner],
    refusals: Sequence[Refusal],
    now: dt.datetime,
) -> JSON:
    """The policy's wanted ``status`` (see the module docstring)."""
    live = [r for r in runners if not r.deleting]
    count = {state: sum(r.state is state for r in live) for state in SizedState}
    waiting = sorted(
        (r for r in live if r.state is SizedState.WAITING),
        key=lambda r: (r.queued_at if r.queued_at is not None else float("inf"), r.job_id),
    )
    refused_runners = [r for r in live if r.state is SizedState.REFUSED]
    listed_refused: list[tuple[float, int, JSON]] = [(f.since, f.job_id, f.listed()) for f in refusals]
    listed_refused += [
        (r.queued_at or 0.0, r.job_id, _listed(r.job_id, r.repository, r.size, r.queued_at, r.reason))
        for r in refused_runners
    ]
    listed_refused.sort(key=lambda t: (-t[0], -t[1]))
    refused_total = len(refusals) + len(refused_runners)
    meta = obj.get("metadata") or {}
    generation = int(meta.get("generation") or 0)
    current = [c for c in (obj.get("status") or {}).get("conditions") or () if isinstance(c, Mapping)]
    if refused_total:
        latest = listed_refused[0][2]
        refused_message = (
            f"{refused_total} sized job(s) refused; latest: job {latest['jobId']} of "
            f"{latest['repository']}: {latest['reason']}"
        )
    else:
        refused_message = "no sized job is refused"
    conditions = [
        _condition(current, ACCEPTED, verdict.accepted, verdict.reason, verdict.message, generation, now),
        _condition(
            current,
            JOBS_REFUSED,
            bool(refused_total),
            REASON_REFUSED if refused_total else REASON_NONE_REFUSED,
            refused_message,
            generation,
            now,
        ),
    ]
    return {
        "observedGeneration": generation,
        "waiting": count[SizedState.WAITING],
        "pending": count[SizedState.PENDING],
        "placed": count[SizedState.PLACED],
        "refused": refused_total,
        "waitingJobs": [
            _listed(r.job_id, r.repository, r.size, r.queued_at, r.reason) for r in waiting[:MAX_LISTED_JOBS]
        ],
        "refusedJobs": [entry for _, _, entry in listed_refused[:MAX_LISTED_JOBS]],
        "conditions": conditions,
    }


def status_differs(current: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    """Whether writing ``wanted`` would change the status (keys it does not set are ignored)."""
    current = current or {}
    return any(current.get(k) != v for k, v in wanted.items())
