"""The webhook sink: routing to one HRA, job-id correlated reservations, group commit, conflicts."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from runnerd.controller.common import HORIZONTAL_RUNNER_AUTOSCALERS
from runnerd.controller.latency import PodCreateLatency
from runnerd.controller.reservation_writer import JobOp, ReservationWriter
from runnerd.controller.reservations import ReservationSink, job_reservations
from runnerd.controller.targets import TargetResolver
from runnerd.github import Scope
from runnerd.reconcile.matching import JobEvent
from runnerd.runtime import EventRecorder, Key
from runnerd.web.metrics import Metrics
from runnerd.web.payload import WorkflowJobEvent
from tests.unit.controller.fakes import KeptEvents
from tests.unit.controller.hrakit import NOW, NS, TRIGGER, FakeKube, hra, informer, rd, reservation

pytestmark = pytest.mark.timeout(10)

HRAS = "horizontalrunnerautoscalers"


class Env:
    def __init__(self, *hras: dict[str, Any], deployments: tuple[dict[str, Any], ...] = (rd(),)) -> None:
        self.kube = FakeKube()
        self.events = KeptEvents()
        self.informers = {
            HRAS: informer(HRAS),
            "runnerdeployments": informer("runnerdeployments"),
            "runners": informer("runners"),
        }
        for obj in deployments:
            self.informers["runnerdeployments"].store.upsert(self.kube.put("runnerdeployments", obj))
        for obj in hras:
            self.informers[HRAS].store.upsert(self.kube.put(HRAS, obj))
        self.written: list[Key] = []
        self.metrics = Metrics()
        resolver = TargetResolver(self.informers)
        self.writer = ReservationWriter(
            self.kube,  # type: ignore[arg-type]
            self.informers[HRAS],
            resolver,
            metrics=self.metrics,
            clock=lambda: NOW,
            on_written=lambda key, obj: self.written.append(key),
        )
        self.hints: list[tuple[Scope, str, bool]] = []
        self.finished: list[tuple[str, int]] = []
        env = self

        class Directory:
            def hint_busy(self, scope: Scope, name: str, busy: bool) -> None:
                env.hints.append((scope, name, busy))

            def hint_finished(self, name: str, runner_id: int) -> None:
                env.finished.append((name, runner_id))

        self.latency = PodCreateLatency(self.metrics)
        self.sink = ReservationSink(
            kube=self.kube,  # type: ignore[arg-type]
            hras=self.informers[HRAS],
            resolver=resolver,
            writer=self.writer,
            recorder=EventRecorder(self.events, component="test"),
            metrics=self.metrics,
            directory=Directory(),  # type: ignore[arg-type]
            runners=self.informers["runners"],
            pod_latency=self.latency,
            clock=lambda: NOW,
        )

    def reservations(self, name: str = "hra") -> list[dict[str, Any]]:
        return list(self.kube.objects[(HRAS, NS, name)]["spec"].get("capacityReservations") or [])

    def sync(self) -> None:
        for (plural, _, _), obj in self.kube.objects.items():
            if plural in self.informers:
                self.informers[plural].store.upsert(obj)


def event(
    action: str = "queued", job_id: int = 1, labels: tuple[str, ...] = ("self-hosted", "x"), **kw: Any
) -> WorkflowJobEvent:
    fields: dict[str, Any] = {
        "action": action,
        "job_id": job_id,
        "run_id": 9,
        "name": "build",
        "workflow_name": "CI",
        "head_branch": "main",
        "status": action,
        "conclusion": None,
        "labels": labels,
        "runner_id": None,
        "runner_name": None,
        "runner_group_name": None,
        "created_at": None,
        "started_at": None,
        "completed_at": None,
        "repository": "octo/app",
        "repository_name": "app",
        "owner": "octo",
        "owner_type": "Organization",
        "organization": "octo",
        "enterprise": None,
        "received_monotonic": 5.0,
    }
    fields.update(kw)
    return WorkflowJobEvent(**fields)


async def test_queued_reserves_once_and_completed_releases() -> None:
    env = Env(hra(scaleUpTriggers=TRIGGER))
    reply = await env.sink.workflow_job(event())
    assert (reply.status, reply.outcome) == (200, "scaled")
    assert "scaled ns/hra by 1" in reply.message
    [r] = env.reservations()
    assert (r["name"], r["replicas"]) == ("job-1@octo/app", 1)  # named after the job and its repository
    assert r["expirationTime"] == "2026-11-27T12:10:00Z"
    assert env.written == [Key(NS, "hra")]
    assert env.latency.waiting() == 1
    env.sync()
    again = await env.sink.workflow_job(event())  # a redelivery with a new GUID
    assert again.outcome == "unchanged"
    assert len(env.reservations()) == 1
    env.sync()
    done = await env.sink.workflow_job(event("completed", conclusion="success", runner_id=3))
    assert done.outcome == "scaled"
    assert "by -1" in done.message
    assert env.reservations() == []  # no marker left in the HRA: the list holds live jobs only
    env.sync()
    # a late queued for a finished job reserves nothing (the writer remembers finished jobs)
    assert (await env.sink.workflow_job(event())).outcome == "unchanged"


async def test_a_completion_goes_to_the_hra_holding_the_job_even_if_routing_changed() -> None:
    env = Env(hra(scaleUpTriggers=TRIGGER))
    await env.sink.workflow_job(event(labels=("self-hosted", "x")))
    env.sync()
    # the job's completion carries a runner group no target is in: routing would not find the HRA
    reply = await env.sink.workflow_job(event("completed", conclusion="failure", runner_group_name="other"))
    assert reply.outcome == "scaled"
    assert env.reservations() == []


async def test_concurrent_events_are_written_together() -> None:
    env = Env(hra(scaleUpTriggers=TRIGGER, maxReplicas=50))
    replies = await asyncio.gather(*(env.sink.workflow_job(event(job_id=i)) for i in range(10)))
    assert all(r.outcome == "scaled" for r in replies)
    assert sorted(r["name"] for r in env.reservations()) == sorted(f"job-{i}@octo/app" for i in range(10))
    assert env.writer.writes < 10  # group commit: the first write alone, the other nine together
    assert max(env.writer.batch_sizes) > 1


async def test_a_concurrent_change_of_the_reservations_is_not_lost() -> None:
    env = Env(hra(scaleUpTriggers=TRIGGER, capacityReservations=[]))

    def someone_else() -> None:  # e.g. another webhook server replica, between our read and write
        obj = copy.deepcopy(env.kube.objects[(HRAS, NS, "hra")])
        obj["spec"]["capacityReservations"] = [
            {
                "name": "job-99",
                "replicas": 1,
                "expirationTime": "2026-11-27T12:05:00Z",
                "effectiveTime": "2026-11-27T11:55:00Z",
            }
        ]
        env.kube.put(HRAS, obj)  # with a new resourceVersion, as the API server does on every write

    env.kube.before_patch = someone_else
    reply = await env.sink.workflow_job(event(job_id=1))
    assert reply.outcome == "scaled"
    assert sorted(r["name"] for r in env.reservations()) == ["job-1@octo/app", "job-99"]
    assert env.writer.conflicts == 1


async def test_status_writes_do_not_conflict_with_reservation_writes() -> None:
    env = Env(hra(scaleUpTriggers=TRIGGER))
    await env.sink.workflow_job(event(job_id=1))
    env.sync()
    # the HRA controller moves the resourceVersion; the cache still has the older one
    await env.kube.patch_status(
        HORIZONTAL_RUNNER_AUTOSCALERS, "hra", {"status": {"desiredReplicas": 1}}, namespace=NS
    )
    await env.sink.workflow_job(event(job_id=2))
    assert env.writer.conflicts == 0
    assert len(env.reservations()) == 2


async def test_ambiguity_is_reported_on_every_candidate_and_nothing_is_reserved() -> None:
    two = (rd("rd"), rd("rd2"))
    other = hra("hra2", scaleUpTriggers=TRIGGER)
    other["spec"]["scaleTargetRef"] = {"name": "rd2"}
    env = Env(hra(scaleUpTriggers=TRIGGER), other, deployments=two)
    reply = await env.sink.workflow_job(event())
    assert (reply.status, reply.outcome) == (200, "ambiguous")
    assert "ns/hra" in reply.message
    assert "ns/hra2" in reply.message
    assert env.reservations("hra") == []
    assert env.reservations("hra2") == []
    assert env.events.reasons() == ["AmbiguousWebhookTarget", "AmbiguousWebhookTarget"]
    for name in ("hra", "hra2"):
        [c] = env.kube.objects[(HRAS, NS, name)]["status"]["conditions"]
        assert (c["type"], c["status"]) == ("AmbiguousWebhookTarget", "True")
    env.sync()
    await env.sink.workflow_job(event(job_id=2))  # reported again within a minute: not repeated
    assert len(env.events.events) == 2


async def test_no_match_changes_nothing() -> None:
    env = Env(hra(scaleUpTriggers=TRIGGER))
    reply = await env.sink.workflow_job(event(labels=("self-hosted", "gpu")))
    assert (reply.status, reply.outcome) == (200, "no_match")
    assert "lacks labels ['gpu']" in reply.message
    assert env.reservations() == []
    assert env.kube.patches == []
    # counted for the "no matching pool" alert: queued self-hosted jobs only
    await env.sink.workflow_job(event("completed", labels=("self-hosted", "gpu")))
    await env.sink.workflow_job(event(job_id=3, labels=("ubuntu-latest",)))
    unmatched = env.metrics.sample("runnerd_workflow_jobs_unmatched_total", {"runs_on": "self-hosted,gpu"})
    assert unmatched == 1
    assert env.metrics.sample("runnerd_workflow_jobs_unmatched_total", {"runs_on": "ubuntu-latest"}) is None


async def test_hras_without_the_trigger_are_not_webhook_targets() -> None:
    env = Env(hra())
    assert (await env.sink.workflow_job(event())).outcome == "no_match"
    result = await env.writer.apply(Key(NS, "hra"), JobOp("queued", 5))
    assert result.update is None
    assert "no workflowJob trigger" in result.reason


async def test_in_progress_hints_the_runner_directory() -> None:
    env = Env(hra(scaleUpTriggers=TRIGGER))
    runner = {"metadata": {"name": "r-1", "namespace": NS}, "spec": {"repository": "octo/app"}}
    env.informers["runners"].store.upsert(runner)
    reply = await env.sink.workflow_job(event("in_progress", runner_name="r-1", runner_id=3))
    assert reply.outcome == "ignored"
    await env.sink.workflow_job(event("completed", runner_name="r-1", runner_id=3, conclusion="success"))
    assert env.hints == [
        (Scope.repository("octo/app"), "r-1", True),
        (Scope.repository("octo/app"), "r-1", False),
    ]
    assert env.finished == [("r-1", 3)]


async def test_hints_reach_the_directory_of_the_runners_own_credentials() -> None:
    """githubAPICredentialsFrom: a runner registered with a Secret's client is watched through that
    client's directory, so its busy and finished hints go there, not to the controller's own."""
    from runnerd.controller.clients import GitHubAPI, GitHubClients
    from runnerd.controller.directory import RunnerDirectory

    env = Env(hra(scaleUpTriggers=TRIGGER))
    own = RunnerDirectory(None)  # type: ignore[arg-type]
    theirs = own.sibling(None)  # type: ignore[arg-type]
    woken: list[str] = []
    own.on_hint(lambda scope, name: woken.append(name))
    clients = GitHubClients(None, GitHubAPI(None, own))  # type: ignore[arg-type]
    assert clients.cached(NS, None) is clients.default
    assert clients.cached(NS, "team-b") is None  # not made yet: no I/O here
    clients._entries[(NS, "team-b")] = type("E", (), {"api": GitHubAPI(None, theirs, f"{NS}/team-b")})()  # type: ignore[arg-type]
    env.sink.clients = clients
    runner = {
        "metadata": {"name": "r-b", "namespace": NS},
        "spec": {"repository": "octo/app", "githubAPICredentialsFrom": {"secretRef": {"name": "team-b"}}},
    }
    env.informers["runners"].store.upsert(runner)
    await env.sink.workflow_job(event("in_progress", runner_name="r-b", runner_id=7))
    assert env.hints == []  # the controller's own directory heard nothing
    assert woken == ["r-b"]  # the controllers are woken all the same
    await env.sink.workflow_job(event("completed", runner_name="r-b", runner_id=7, conclusion="success"))
    assert theirs.finished_age("r-b", 7) is not None
    assert env.finished == []


async def test_completed_records_the_finished_registration_also_without_a_runner_object() -> None:
    env = Env(hra(scaleUpTriggers=TRIGGER))
    # a RunnerSet's runner has no Runner object; a job cancelled before it ran names no runner
    await env.sink.workflow_job(event("completed", runner_name="set-abc", runner_id=7, conclusion="success"))
    await env.sink.workflow_job(event("completed", job_id=2, conclusion="cancelled"))
    await env.sink.workflow_job(event("in_progress", job_id=3, runner_name="set-def", runner_id=8))
    assert env.finished == [("set-abc", 7)]
    assert env.hints == []


async def test_the_poll_reserves_through_the_same_path() -> None:
    env = Env(hra(scaleUpTriggers=TRIGGER))
    routing = JobEvent(repository="octo/app", labels=("self-hosted", "x"), organization="octo")
    assert await env.sink.reserve_polled(routing, 7) == ("reserved", Key(NS, "hra"))
    env.sync()
    # the late webhook for the same job does not count it twice
    assert (await env.sink.workflow_job(event(job_id=7))).outcome == "unchanged"
    env.sync()
    assert await env.sink.complete_polled(Key(NS, "hra"), 7) == "released"
    assert env.reservations() == []


async def test_applied_deliveries_announce_their_run_and_unmatched_ones_do_not() -> None:
    env = Env(hra(scaleUpTriggers=TRIGGER))
    await env.sink.workflow_job(event(job_id=1, run_id=7))
    env.sync()
    await env.sink.workflow_job(event(job_id=2, run_id=8, labels=("self-hosted", "gpu")))  # no HRA
    ledger = env.sink.deliveries
    assert (ledger.facts("octo/app", 7, 0.0).announced, ledger.facts("octo/app", 7, 0.0).open) == (1, 1)
    assert ledger.facts("octo/app", 8, 0.0).announced == 0  # a pull-only HRA's metric still lists it
    await env.sink.workflow_job(event("completed", job_id=1, run_id=7, conclusion="success"))
    assert ledger.facts("octo/app", 7, 0.0).open == 0
    assert ledger.applied == 2


async def test_the_resolver_keeps_one_parse_per_object_whatever_the_versions() -> None:
    env = Env(hra(scaleUpTriggers=TRIGGER))
    resolver = env.writer.resolver
    obj = env.informers[HRAS].store.objects()[0]
    for version in range(50):  # every reservation write is a new version of the HRA
        meta = {**obj["metadata"], "resourceVersion": str(1000 + version)}
        assert resolver.parse_hra({**obj, "metadata": meta}) is not None
    assert resolver.cached() == 1


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([], {}),
        (["job-7@octo-org/app"], {7: "octo-org/app"}),
        (["job-7"], {7: None}),
        (["manual", "job-x@octo-org/app", "job-8@o/r"], {8: "o/r"}),
    ],
)
def test_job_reservations_by_job_id(names: list[str], expected: dict[int, str | None]) -> None:
    obj = {"spec": {"capacityReservations": [{"name": n, "replicas": 1} for n in names] + ["not a dict"]}}
    found = job_reservations(obj)
    assert {job: repo for job, (repo, _) in found.items()} == expected
    assert all(r["name"].startswith(f"job-{job}") for job, (_, r) in found.items())


def test_the_holder_of_a_job_follows_new_hra_versions_and_deleted_hras() -> None:
    """The parsed job reservations are kept per HRA version: a new version is parsed again."""
    a = hra("a")
    a["spec"]["capacityReservations"] = [{**reservation(1), "name": "job-1@octo-org/app"}]
    env = Env(a, hra("b"))
    store = env.informers[HRAS].store
    assert (env.sink.holder(1), env.sink.holder(2)) == (Key(NS, "a"), None)
    moved = copy.deepcopy(hra("b"))
    moved["spec"]["capacityReservations"] = [{**reservation(2), "name": "job-2@octo-org/app"}]
    store.upsert(moved)
    assert (env.sink.holder(1), env.sink.holder(2)) == (Key(NS, "a"), Key(NS, "b"))
    assert set(env.sink.reservations_of("octo-org/app")) == {1, 2}
    store.delete(Key(NS, "a"))
    assert (env.sink.holder(1), env.sink.holder(2)) == (None, Key(NS, "b"))
