"""The sized-job intake behind the webhook sink and the poll, and the RunnerSizingPolicy controller,
over an in-memory API server."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runnerd.controller.reservation_writer import ReservationWriter
from runnerd.controller.reservations import ReservationSink
from runnerd.controller.sizedintake import SizedIntake
from runnerd.controller.sizing import recheck_if_lost, served
from runnerd.controller.sizingpolicy import SizingPolicies
from runnerd.controller.targets import TargetResolver
from runnerd.github import WorkflowJob
from runnerd.kube.resources import Resource
from runnerd.reconcile.matching import JobEvent
from runnerd.reconcile.sizedjob import SIZED_JOB_LABEL, SizedRunner
from runnerd.runtime import AlreadyExists, EventRecorder, EventType, InformerEvent, Key, NotFound
from runnerd.web.metrics import Metrics
from tests.unit.controller.fakes import KeptEvents
from tests.unit.controller.hrakit import NOW, NS, TRIGGER, hra, informer, rd
from tests.unit.controller.hrakit import FakeKube as HraKube
from tests.unit.controller.test_reservations import event

pytestmark = pytest.mark.timeout(10)

HRAS = "horizontalrunnerautoscalers"
POLICIES = "runnersizingpolicies"
GPU_LABELS = ("self-hosted", "x", "gpu=2")


class FakeKube(HraKube):
    """The HRA tests' API server, with create and delete."""

    def __init__(self) -> None:
        super().__init__()
        self.creates: list[str] = []

    async def create(self, resource: Resource, body: dict[str, Any], *, namespace: str | None = None) -> Any:
        key = (resource.plural, namespace or "", body["metadata"]["name"])
        self.creates.append(key[2])
        if key in self.objects:
            raise AlreadyExists(409, "AlreadyExists", key[2])
        return self.put(resource.plural, body)

    async def delete(self, resource: Resource, name: str, *, namespace: str | None = None, **kw: Any) -> Any:
        if self.objects.pop((resource.plural, namespace or "", name), None) is None and not kw.get(
            "missing_ok"
        ):
            raise NotFound(404, "NotFound", name)


def policy(name: str = "gpu", target: str = "rd", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "runnerd.dev/v1alpha1",
        "kind": "RunnerSizingPolicy",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"scaleTargetRef": {"name": target}, "max": {"gpu": 8, "cpu": "16"}, **spec},
    }


class Env:
    def __init__(self, *policies: dict[str, Any], hras: tuple[dict[str, Any], ...] = ()) -> None:
        self.kube = FakeKube()
        self.events = KeptEvents()
        self.informers = {p: informer(p) for p in (HRAS, "runnerdeployments", "runners", POLICIES)}
        self.add("runnerdeployments", rd())
        for obj in policies:
            self.add(POLICIES, obj)
        for obj in hras:
            self.add(HRAS, obj)
        self.metrics = Metrics()
        recorder = EventRecorder(self.events, component="test")
        resolver = TargetResolver(self.informers)
        writer = ReservationWriter(
            self.kube, self.informers[HRAS], resolver, metrics=self.metrics, clock=lambda: NOW
        )  # type: ignore[arg-type]
        self.sink = ReservationSink(
            kube=self.kube,  # type: ignore[arg-type]
            hras=self.informers[HRAS],
            resolver=resolver,
            writer=writer,
            recorder=recorder,
            metrics=self.metrics,
            clock=lambda: NOW,
        )
        self.policies = SizingPolicies(
            kube=self.kube,  # type: ignore[arg-type]
            policies=self.informers[POLICIES],
            runners=self.informers["runners"],
            resolver=resolver,
            recorder=recorder,
            clock=lambda: NOW,
        )
        self.changed: list[tuple[str, str, str]] = []
        self.intake = SizedIntake(
            kube=self.kube,  # type: ignore[arg-type]
            policies=self.policies,
            recorder=recorder,
            metrics=self.metrics,
            hra_targets=self.sink.targets,
            on_change=self.changed.append,
            clock=lambda: 1_000.0,
        )
        self.sink.intake = self.intake

    def add(self, plural: str, obj: dict[str, Any]) -> None:
        self.informers[plural].store.upsert(self.kube.put(plural, obj))

    def sync(self) -> None:
        for plural, inf in self.informers.items():
            stored = inf.store.keys()
            for key in stored:
                if (plural, key.namespace, key.name) not in self.kube.objects:
                    inf.store.delete(key)
        for (plural, _, _), obj in self.kube.objects.items():
            if plural in self.informers:
                self.informers[plural].store.upsert(copy.deepcopy(obj))

    def runners(self) -> list[dict[str, Any]]:
        return [o for (p, _, _), o in self.kube.objects.items() if p == "runners"]

    def refused(self, rule: str) -> float | None:
        return self.metrics.sample(
            "runnerd_sized_jobs_refused_total", {"namespace": NS, "pool": "rd", "rule": rule}
        )


async def test_a_sized_job_becomes_one_waiting_runner_and_completed_deletes_it() -> None:
    env = Env(policy(), hras=(hra(scaleUpTriggers=TRIGGER),))
    reply = await env.sink.workflow_job(event(labels=GPU_LABELS, created_at=900.0))
    assert (reply.status, reply.outcome) == (200, "sized")
    [runner] = env.runners()
    assert runner["metadata"]["name"] == "rd-job-1"
    assert runner["spec"]["labels"] == ["self-hosted", "x", "gpu=2"]
    assert runner["spec"]["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    read = SizedRunner.read(runner)
    assert read is not None
    assert (read.job_id, read.policy, read.pool, read.queued_at) == (1, "gpu", "rd", 900.0)
    assert read.workflow == "CI"
    assert env.kube.objects[(HRAS, NS, "hra")]["spec"].get("capacityReservations") is None  # no reservation
    assert env.changed == [(NS, "RunnerDeployment", "rd")]
    env.sync()
    again = await env.sink.workflow_job(event(labels=GPU_LABELS))
    assert again.outcome == "unchanged"
    assert env.kube.creates == ["rd-job-1"]  # the cache answered: no second create
    assert env.sink.reservations_of("octo/app") == {1: (Key(NS, "rd"), 900.0)}
    assert env.sink.reserved_repositories() == {"octo/app"}
    done = await env.sink.workflow_job(event("completed", labels=GPU_LABELS, conclusion="cancelled"))
    assert done.outcome == "released"
    assert env.runners() == []
    env.sync()
    late = await env.sink.workflow_job(event(labels=GPU_LABELS))  # a late queued creates nothing
    assert late.outcome == "finished"
    assert env.runners() == []


async def test_a_create_that_races_is_a_409_not_a_second_runner() -> None:
    env = Env(policy())
    assert (await env.sink.workflow_job(event(labels=GPU_LABELS))).outcome == "sized"
    # the cache has not seen it yet: the create is sent, answered 409
    assert (await env.sink.workflow_job(event(labels=GPU_LABELS))).outcome == "unchanged"
    assert len(env.runners()) == 1


@pytest.mark.parametrize(
    ("labels", "rule", "reason"),
    [
        (("self-hosted", "x", "gpu=64"), "cap", "gpu=64: above the cap of 8 GPUs"),
        (("self-hosted", "x", "gpu-type=unknown"), "product", "gpu-type=unknown: not offered"),
        (("self-hosted", "x", "gpu=1", "gpu=2"), "grammar", "two different gpu values"),
        (("self-hosted", "x", "mem=8Gi"), "cap", "does not accept mem="),
    ],
)
async def test_refused_jobs_get_no_runner_an_event_and_a_metric_once(
    labels: tuple[str, ...], rule: str, reason: str
) -> None:
    env = Env(policy())
    reply = await env.sink.workflow_job(event(labels=labels))
    assert reply.outcome == "sized_refused"
    assert reason in reply.message
    assert env.runners() == []
    assert env.events.reasons() == ["SizedJobRefused"]
    assert env.events.events[0]["involvedObject"]["name"] == "rd"
    assert reason in env.events.events[0]["message"]
    assert env.refused(rule) == 1
    await env.sink.workflow_job(event(labels=labels))  # a redelivery is not a second refusal
    assert env.refused(rule) == 1
    assert len(env.events.events) == 1
    assert env.sink.reservations_of("octo/app") == {1: (Key(NS, "rd"), 1_000.0)}
    await env.sink.workflow_job(event("completed", labels=labels))
    assert env.intake.refusals.of((NS, "RunnerDeployment", "rd")) == []


async def test_unsupported_container_mode_is_refused() -> None:
    env = Env(policy())
    obj = rd()
    obj["spec"]["template"]["spec"]["containerMode"] = "kubernetes"
    env.add("runnerdeployments", obj)
    reply = await env.sink.workflow_job(event(labels=GPU_LABELS))
    assert reply.outcome == "sized_refused"
    assert env.refused("unsupported") == 1


async def test_without_an_accepted_policy() -> None:
    # the pool has an HRA but no policy: refused (no_policy), no reservation
    env = Env(hras=(hra(scaleUpTriggers=TRIGGER),))
    reply = await env.sink.workflow_job(event(labels=GPU_LABELS))
    assert reply.outcome == "sized_refused"
    assert env.refused("no_policy") == 1
    assert env.kube.objects[(HRAS, NS, "hra")]["spec"].get("capacityReservations") is None
    # two policies for one pool: neither is Accepted, so the same
    env2 = Env(policy("a"), policy("b"), hras=(hra(scaleUpTriggers=TRIGGER),))
    assert (await env2.sink.workflow_job(event(labels=GPU_LABELS))).outcome == "sized_refused"
    # a pool that lists the sizing label as a plain label keeps today's path
    env3 = Env(hras=(hra(scaleUpTriggers=TRIGGER),))
    env3.add("runnerdeployments", rd(labels=("self-hosted", "x", "gpu=2")))
    assert (await env3.sink.workflow_job(event(labels=GPU_LABELS))).outcome == "scaled"
    # no pool fits at all: today's answer
    env4 = Env(policy())
    assert (
        await env4.sink.workflow_job(event(labels=("self-hosted", "other", "gpu=2")))
    ).outcome == "no_match"


async def test_jobs_without_sizing_labels_keep_todays_path() -> None:
    env = Env(policy(), hras=(hra(scaleUpTriggers=TRIGGER),))
    assert (await env.sink.workflow_job(event())).outcome == "scaled"
    assert env.runners() == []
    env.sync()
    assert (await env.sink.workflow_job(event("completed", conclusion="success"))).outcome == "scaled"


async def test_the_poll_hands_sized_jobs_to_the_intake() -> None:
    env = Env(policy())
    job = WorkflowJob.from_json(
        {"id": 7, "run_id": 9, "status": "queued", "labels": list(GPU_LABELS), "workflow_name": "train",
         "created_at": "2026-11-27T11:00:00Z"}
    )  # fmt: skip
    routing = JobEvent(repository="octo/app", labels=GPU_LABELS, organization="octo")
    effect, pool = await env.sink.reserve_polled(routing, 7, "octo/app", job=job)
    assert (effect, pool) == ("reserved", Key(NS, "rd"))
    [runner] = env.runners()
    assert runner["metadata"]["annotations"]["runnerd.dev/queued-at"] == "2026-11-27T11:00:00Z"
    assert runner["metadata"]["annotations"]["runnerd.dev/workflow"] == "train"
    env.sync()
    assert (await env.sink.reserve_polled(routing, 7, "octo/app", job=job))[0] == "unchanged"
    assert await env.sink.complete_polled(Key(NS, "rd"), 7) == "released"
    assert env.runners() == []


async def test_the_policy_status_counts_and_lists_and_is_written_on_change_only() -> None:
    env = Env(policy())
    await env.sink.workflow_job(event(job_id=1, labels=GPU_LABELS, created_at=100.0))
    await env.sink.workflow_job(event(job_id=2, labels=("self-hosted", "x", "gpu=64"), created_at=200.0))
    env.sync()
    await env.policies.reconcile(Key(NS, "gpu"))
    status = env.kube.objects[(POLICIES, NS, "gpu")]["status"]
    assert (status["waiting"], status["refused"], status["placed"], status["pending"]) == (1, 1, 0, 0)
    assert [j["jobId"] for j in status["waitingJobs"]] == [1]
    assert [j["jobId"] for j in status["refusedJobs"]] == [2]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"Accepted": "True", "JobsRefused": "True"}
    assert env.events.reasons()[-1] == "Accepted"
    writes = env.policies.status_writes
    env.sync()
    await env.policies.reconcile(Key(NS, "gpu"))
    assert env.policies.status_writes == writes  # nothing changed, nothing written
    assert env.policies.counts() == {(NS, "rd", "waiting"): 1, (NS, "rd", "refused"): 1}
    env.metrics.watch_sized_jobs(env.policies.counts)
    for state, jobs in (("waiting", 1), ("refused", 1), ("placed", None)):
        assert (
            env.metrics.sample("runnerd_sized_jobs", {"namespace": NS, "pool": "rd", "state": state}) == jobs
        )


async def test_a_second_policy_for_the_same_pool_is_not_accepted() -> None:
    env = Env(policy("a"), policy("b"))
    for name in ("a", "b"):
        await env.policies.reconcile(Key(NS, name))
        accepted = next(
            c
            for c in env.kube.objects[(POLICIES, NS, name)]["status"]["conditions"]
            if c["type"] == "Accepted"
        )
        assert (accepted["status"], accepted["reason"]) == ("False", "ConflictingPolicy")
        assert "a, b all name RunnerDeployment rd" in accepted["message"]
    assert env.events.reasons() == ["ConflictingPolicy", "ConflictingPolicy"]
    assert env.policies.keys_of_policy(env.informers[POLICIES].store.objects()[0]) == [
        Key(NS, "a"),
        Key(NS, "b"),
    ]


async def test_runner_events_map_to_their_policy_and_pools_to_theirs() -> None:
    env = Env(policy())
    await env.sink.workflow_job(event(labels=GPU_LABELS))
    env.sync()
    [runner] = env.informers["runners"].store.objects()
    assert SIZED_JOB_LABEL in runner["metadata"]["labels"]
    assert env.policies.keys_of_runner(runner) == [Key(NS, "gpu")]
    assert env.policies.keys_of_runner({"metadata": {"namespace": NS, "name": "plain"}}) == []
    assert env.policies.keys_of_pool(env.informers["runnerdeployments"].store.objects()[0]) == [
        Key(NS, "gpu")
    ]


async def test_sizing_stays_off_when_policies_cannot_be_listed(caplog: pytest.LogCaptureFixture) -> None:
    class Kube:
        def __init__(self, error: Exception | None) -> None:
            self.error = error

        async def list(self, resource: Resource, *, namespace: str | None = None) -> Any:
            if self.error is not None:
                raise self.error
            return []

    assert await served(Kube(None), NS)  # type: ignore[arg-type]
    assert not await served(Kube(NotFound(404, "NotFound", "the server could not find it")), NS)  # type: ignore[arg-type]
    assert "a chart upgrade does not install new CRDs" in caplog.text


def _sized(job: int | None, repository: str = "octo/app") -> dict[str, Any]:
    labels = {SIZED_JOB_LABEL: str(job)} if job is not None else {}
    annotations = {"runnerd.dev/repository": repository}
    return {
        "metadata": {"name": f"rd-job-{job}", "namespace": NS, "labels": labels, "annotations": annotations}
    }


@pytest.mark.parametrize(
    ("kind", "obj", "finished", "rechecked"),
    [
        (EventType.DELETED, _sized(7), set(), ["octo/app"]),  # gone before its job finished
        (EventType.DELETED, _sized(7), {7}, []),  # its job finished: nothing lost
        (EventType.MODIFIED, _sized(7), set(), []),
        (EventType.ADDED, _sized(7), set(), []),
        (EventType.DELETED, _sized(None), set(), []),  # a pool's own Runner
        (EventType.DELETED, _sized(7, repository=""), set(), []),
    ],
    ids=["lost", "finished", "modified", "added", "not-sized", "no-repository"],
)
def test_a_sized_runner_gone_before_its_job_finished_rechecks_its_repository(
    kind: EventType, obj: dict[str, Any], finished: set[int], rechecked: list[str]
) -> None:
    seen: list[str] = []
    lost: list[int] = []
    recheck_if_lost(InformerEvent(kind, obj), finished, seen.append, lost.append)
    assert seen == rechecked
    assert lost == ([7] if rechecked else [])


async def test_a_job_whose_runner_went_first_gets_a_runner_of_a_new_name() -> None:
    """The runner made for job 1 ran another job; job 1's next Runner must not reuse the old name:
    the old runner pod (exited, still being removed) is found by name and would make the new Runner
    look finished before it ever ran."""
    env = Env(policy())
    assert (await env.sink.workflow_job(event(labels=GPU_LABELS))).outcome == "sized"
    env.sync()
    [old] = env.runners()
    assert old["metadata"]["name"] == "rd-job-1"
    await env.kube.delete(Resource("actions.summerwind.dev", "v1alpha1", "runners", "Runner"),
                          "rd-job-1", namespace=NS)  # fmt: skip
    env.sync()
    recheck_if_lost(InformerEvent(EventType.DELETED, old), env.intake.finished, list[str]().append,
                    env.intake.runner_lost)  # fmt: skip
    assert (await env.sink.workflow_job(event(labels=GPU_LABELS))).outcome == "sized"
    env.sync()
    assert [r["metadata"]["name"] for r in env.runners()] == ["rd-job-1-1"]
    assert (await env.sink.workflow_job(event(labels=GPU_LABELS))).outcome == "unchanged"  # by label
    assert env.kube.creates == ["rd-job-1", "rd-job-1-1"]
    assert (await env.sink.workflow_job(event("completed", labels=GPU_LABELS))).outcome == "released"
    assert env.runners() == []
    assert env.intake.attempts == {}
