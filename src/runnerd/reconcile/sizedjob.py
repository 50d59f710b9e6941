"""A waiting sized job as a ``Runner`` object: the contract between the intake, admission and the
Runner controller (docs/gpu-sizing.md, "Wiring").

A queued job whose labels ask for a size (``gpu=2``, ``mem=64Gi``, ...) in a pool with an Accepted
``RunnerSizingPolicy`` becomes one ``Runner`` (``actions.summerwind.dev/v1alpha1``) in the pool's
namespace, made by the intake (:mod:`runnerd.controller.sizedintake`):

* name ``<pool>-job-<job id>`` (:func:`sized_runner_name`: deterministic, so a redelivery or the
  safety-net poll creates nothing twice; shortened with a hash to stay within 63 characters); a
  job's later Runner, made after its earlier one went before the job finished, is
  ``<pool>-job-<job id>-<attempt>``, so it never meets state kept under the old name (the old pod,
  the old registration); the :data:`SIZED_JOB_LABEL` label, not the name, finds a job's Runner;
* owned by the pool (``ownerReferences``), without the ``runner-template-hash`` label, so it is
  outside every RunnerReplicaSet's selector: no replica set adopts or counts it;
* labels :data:`SIZED_JOB_LABEL` (the job id) and :data:`SIZING_POLICY_LABEL` (the policy);
* annotations :data:`QUEUED_AT_ANNOTATION`, :data:`REPOSITORY_ANNOTATION`,
  :data:`WORKFLOW_ANNOTATION` and :data:`SIZE_ANNOTATION`;
* the pool's runner template sized for the job (``manifests.sizedpod.sized_runner_spec``: labels
  exactly the job's), ``ephemeral: true``, and no finalizer: while it waits it has no pod and no
  GitHub registration, so deleting it needs no clean-up.

Admission writes :data:`ADMISSION_ANNOTATION` (``placed`` with :data:`ADMITTED_NODE_ANNOTATION`,
or ``pending``), or the Runner's status (``Waiting``/``WaitingForCapacity`` or
``Refused``/``SizeRefused``, the reason in ``message``). :meth:`SizedRunner.read` reads all of it
back as one :class:`SizedState`.

Guarantees: pure (no I/O); :func:`waiting_runner` never mutates its inputs and returns the same
object for the same facts; :meth:`SizedRunner.read` returns ``None`` for any Runner that is not a
sized job's, and never raises on a malformed one (unknown parts read as absent).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from runnerd.api import JSON, format_time, parse_time
from runnerd.api import constants as c

SIZED_JOB_LABEL: Final = "runnerd.dev/sized-job"
SIZING_POLICY_LABEL: Final = "runnerd.dev/sizing-policy"
QUEUED_AT_ANNOTATION: Final = "runnerd.dev/queued-at"
REPOSITORY_ANNOTATION: Final = "runnerd.dev/repository"
WORKFLOW_ANNOTATION: Final = "runnerd.dev/workflow"
SIZE_ANNOTATION: Final = "runnerd.dev/size"
ADMISSION_ANNOTATION: Final = "runnerd.dev/admission"
ADMITTED_NODE_ANNOTATION: Final = "runnerd.dev/admitted-node"

ADMISSION_PLACED: Final = "placed"
ADMISSION_PENDING: Final = "pending"
ADMITTED: Final = frozenset({ADMISSION_PLACED, ADMISSION_PENDING})
PHASE_WAITING: Final = "Waiting"
REASON_WAITING: Final = "WaitingForCapacity"
PHASE_REFUSED: Final = "Refused"
REASON_REFUSED: Final = "SizeRefused"
EVENT_REFUSED: Final = "SizedJobRefused"
"""The Event reason on the pool for a job the intake refused."""

LABEL_DEPLOYMENT_NAME: Final = "runner-deployment-name"
"""The pool label a RunnerDeployment's runners (and their pods) carry; the cost facts read it."""
MAX_NAME: Final = 63
NOT_ADMITTED_REASON: Final = "waiting for admission"

# the refusal rules of runnerd_sized_jobs_refused_total{rule}
RULE_GRAMMAR: Final = "grammar"
RULE_CAP: Final = "cap"
RULE_PRODUCT: Final = "product"
RULE_MIG: Final = "mig"
RULE_UNSUPPORTED: Final = "unsupported"
RULE_NO_POLICY: Final = "no_policy"
RULES: Final = (RULE_GRAMMAR, RULE_CAP, RULE_PRODUCT, RULE_MIG, RULE_UNSUPPORTED, RULE_NO_POLICY)


class SizedState(StrEnum):
    """Where a sized job stands (the ``state`` of ``runnerd_sized_jobs``)."""

    WAITING = "waiting"
    PENDING = "pending"
    PLACED = "placed"
    REFUSED = "refused"


@dataclass(frozen=True)
class JobFacts:
    """The queued job, as a delivery or the safety-net poll saw it."""

    job_id: int
    repository: str
    labels: tuple[str, ...]
    queued_at: float
    """Seconds since the epoch."""
    workflow: str | None = None


@dataclass(frozen=True)
class PoolRef:
    """The pool (scale target) a sized job runs in."""

    namespace: str
    kind: str
    name: str
    uid: str


def sized_runner_name(pool: str, job_id: int, attempt: int = 0) -> str:
    """``<pool>-job-<job id>``, and ``-<attempt>`` after it for a job's later Runners (its earlier
    one went before the job finished): a new Runner never meets what is kept under an old one's name
    (its pod, still terminating; its GitHub registration). A pool name too long for that is cut and a
    hash of it added, so two pools never share a name and the result is a valid name of at most 63
    characters."""
    tail = f"-job-{job_id}" + (f"-{attempt}" if attempt else "")
    name = pool + tail
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(pool.encode()).hexdigest()[:8]
    keep = max(MAX_NAME - len(tail) - len(digest) - 1, 1)
    return f"{pool[:keep].rstrip('-.')}-{digest}{tail}"


def rfc3339(epoch: float) -> str:
    return format_time(dt.datetime.fromtimestamp(int(epoch), dt.UTC))


def waiting_runner(
    job: JobFacts,
    pool: PoolRef,
    policy: str,
    spec: Mapping[str, Any],
    size: str,
    template_metadata: Mapping[str, Any] | None = None,
    attempt: int = 0,
) -> JSON:
    """The waiting Runner of ``job``: ``spec`` is the pool template already sized for the job
    (``manifests.sizedpod.sized_runner_spec``), ``size`` its human description; the template's own
    labels and annotations are kept, the contract's win."""
    meta = template_metadata or {}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    labels.pop("runner-template-hash", None)
    if pool.kind == "RunnerDeployment":
        labels[LABEL_DEPLOYMENT_NAME] = pool.name
    labels[SIZED_JOB_LABEL] = str(job.job_id)
    labels[SIZING_POLICY_LABEL] = policy
    annotations = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    annotations.pop(ADMISSION_ANNOTATION, None)
    annotations.pop(ADMITTED_NODE_ANNOTATION, None)
    annotations[QUEUED_AT_ANNOTATION] = rfc3339(job.queued_at)
    annotations[REPOSITORY_ANNOTATION] = job.repository
    annotations[WORKFLOW_ANNOTATION] = job.workflow or ""
    annotations[SIZE_ANNOTATION] = size
    body_spec = dict(spec)
    body_spec["ephemeral"] = True
    owner = {
        "apiVersion": c.API_VERSION,
        "kind": pool.kind,
        "name": pool.name,
        "uid": pool.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return {
        "apiVersion": c.API_VERSION,
        "kind": "Runner",
        "metadata": {
            "name": sized_runner_name(pool.name, job.job_id, attempt),
            "namespace": pool.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner],
        },
        "spec": body_spec,
    }


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return parse_time(text).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class SizedRunner:
    """A sized job's Runner, read back."""

    namespace: str
    name: str
    job_id: int
    policy: str
    pool: str | None
    """The owning pool's name (``None``: no owner reference)."""
    queued_at: float | None
    repository: str
    workflow: str
    size: str
    state: SizedState
    reason: str
    """Why it waits or was refused (admission's message); empty once admitted."""
    admitted_node: str | None
    deleting: bool

    @property
    def admitted(self) -> bool:
        return self.state in (SizedState.PLACED, SizedState.PENDING)

    @classmethod
    def read(cls, obj: Mapping[str, Any]) -> SizedRunner | None:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        try:
            job_id = int(str(labels.get(SIZED_JOB_LABEL)))
        except ValueError:
            return None
        annotations = meta.get("annotations") or {}
        status = obj.get("status") or {}
        state, reason = _state(annotations.get(ADMISSION_ANNOTATION), status)
        owner = next(
            (r for r in meta.get("ownerReferences") or () if isinstance(r, Mapping) and r.get("controller")),
            None,
        )
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            job_id=job_id,
            policy=str(labels.get(SIZING_POLICY_LABEL) or ""),
            pool=str(owner["name"]) if owner is not None and owner.get("name") else None,
            queued_at=_epoch(annotations.get(QUEUED_AT_ANNOTATION)),
            repository=str(annotations.get(REPOSITORY_ANNOTATION) or ""),
            workflow=str(annotations.get(WORKFLOW_ANNOTATION) or ""),
            size=str(annotations.get(SIZE_ANNOTATION) or ""),
            state=state,
            reason=reason,
            admitted_node=str(annotations.get(ADMITTED_NODE_ANNOTATION) or "") or None,
            deleting=bool(meta.get("deletionTimestamp")),
        )


def _state(admission: Any, status: Mapping[str, Any]) -> tuple[SizedState, str]:
    if admission == ADMISSION_PLACED:
        return SizedState.PLACED, ""
    if admission == ADMISSION_PENDING:
        return SizedState.PENDING, ""
    message = str(status.get("message") or "")
    if status.get("phase") == PHASE_REFUSED or status.get("reason") == REASON_REFUSED:
        return SizedState.REFUSED, message or "refused"
    if status.get("reason") == REASON_WAITING and message:
        return SizedState.WAITING, message
    return SizedState.WAITING, NOT_ADMITTED_REASON


def is_sized_runner(obj: Mapping[str, Any]) -> bool:
    """A Runner (or its pod: it carries the Runner's labels) made for one sized job."""
    return SIZED_JOB_LABEL in ((obj.get("metadata") or {}).get("labels") or {})


def refusal_rule(reason: str) -> str:
    """The metric rule of a :func:`runnerd.reconcile.sizing.parse_size` rejection reason."""
    text = reason.casefold()
    if "no runnersizingpolicy" in text:
        return RULE_NO_POLICY
    if "not offered by this pool" in text:
        return RULE_PRODUCT
    if text.startswith("mig=") and "not allowed" in text:
        return RULE_MIG
    if "above the cap" in text or "above this pool's cap" in text or "does not accept" in text:
        return RULE_CAP
    return RULE_GRAMMAR
