"""The reservation journal: commits that do not write the HRA, the fold, its watermark, its bounds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runnerd.api import parse_time
from runnerd.controller import journal as journal_module
from runnerd.controller.journal import (
    HRA_ANNOTATION,
    JournalFull,
    ReservationJournal,
    hra_key_of,
    journal_informer,
)
from runnerd.controller.reservation_writer import JobOp, ReservationWriter
from runnerd.controller.targets import TargetResolver
from runnerd.kube.resources import CONFIGMAPS
from runnerd.reconcile.journal import FOLDED_ANNOTATION, OPS_KEY
from runnerd.runtime import Informer, Key
from tests.unit.controller.fakes import NoListWatcher
from tests.unit.controller.hrakit import NOW, NS, TRIGGER, FakeKube, hra, informer, rd, reservation

pytestmark = pytest.mark.timeout(10)

HRAS = "horizontalrunnerautoscalers"
KEY = Key(NS, "hra")


class ListerKube(FakeKube):
    def list_watcher(self, *args: Any, **kwargs: Any) -> NoListWatcher:
        return NoListWatcher()


class Env:
    """A writer and a journal over one HRA; :meth:`sync` plays the informers' part."""

    def __init__(self, *reservations: dict[str, Any]) -> None:
        self.kube = ListerKube()
        self.monotonic = 0.0
        self.informers = {HRAS: informer(HRAS), "runnerdeployments": informer("runnerdeployments")}
        self.informers["runnerdeployments"].store.upsert(self.kube.put("runnerdeployments", rd()))
        obj = hra(scaleUpTriggers=TRIGGER, capacityReservations=list(reservations))
        self.informers[HRAS].store.upsert(self.kube.put(HRAS, obj))
        self.entries = journal_informer(self.kube, None)  # type: ignore[arg-type]
        self.journaled: list[Key] = []
        self.writer, self.journal = self.process()

    def process(self) -> tuple[ReservationWriter, ReservationJournal]:
        """A writer and journal as one controller process has them (a second one: a new leader)."""
        resolver = TargetResolver(self.informers)
        writer = ReservationWriter(self.kube, self.informers[HRAS], resolver, clock=lambda: NOW)  # type: ignore[arg-type]
        journal = ReservationJournal(
            self.kube,  # type: ignore[arg-type]
            self.entries,
            clock=lambda: NOW,
            monotonic=lambda: self.monotonic,
            on_folded=writer.remember,
        )
        writer.journal = journal
        writer.on_journaled = self.journaled.append
        return writer, journal

    def sync(self) -> None:
        for inf, plural in ((self.informers[HRAS], HRAS), (self.entries, "configmaps")):
            for key in list(inf.store.keys()):
                if (plural, key.namespace, key.name) not in self.kube.objects:
                    inf.store.delete(key)
        for (plural, _, _), obj in self.kube.objects.items():
            target: Informer | None = {HRAS: self.informers[HRAS], "configmaps": self.entries}.get(plural)
            if target is not None:
                target.store.upsert(obj)

    def hra(self) -> dict[str, Any]:
        return self.kube.objects[(HRAS, NS, "hra")]

    def listed(self) -> list[str]:
        return [r["name"] for r in self.hra()["spec"].get("capacityReservations") or []]

    def configmaps(self) -> list[dict[str, Any]]:
        return [o for (plural, _, _), o in self.kube.objects.items() if plural == "configmaps"]

    def counted(self, journal: ReservationJournal | None = None) -> list[str | None]:
        obj = self.hra()
        parsed = TargetResolver(self.informers).parse_hra(obj)
        assert parsed is not None
        view = (journal or self.journal).counted(KEY, obj, parsed)
        return [r.name for r in view.spec.capacity_reservations]


def queued(job: int) -> JobOp:
    return JobOp("queued", job, repository="octo/app")


def completed(job: int) -> JobOp:
    return JobOp("completed", job, "success", repository="octo/app")


async def test_a_burst_is_journalled_in_group_commits_and_the_hra_is_not_written() -> None:
    env = Env()
    results = await asyncio.gather(*(env.writer.apply(KEY, queued(j)) for j in range(1, 21)))
    assert [r.delta for r in results] == [1] * 20
    assert env.kube.patches == []  # the HRA is untouched
    entries = env.configmaps()
    assert 1 <= len(entries) < 20  # group commits: the first alone, the rest together
    for entry in entries:
        assert hra_key_of(entry) == KEY
        assert entry["metadata"]["annotations"][HRA_ANNOTATION] == "hra"
        assert entry["metadata"]["ownerReferences"][0]["uid"] == "uid-hra"
    assert env.journaled == [KEY] * len(entries)
    assert len(env.counted()) == 20  # counted before any fold (own entries, not yet listed)
    env.sync()
    assert len(env.counted()) == 20  # and once listed


async def test_a_duplicate_is_decided_on_the_journal_and_not_journalled_again() -> None:
    env = Env()
    await env.writer.apply(KEY, queued(1))
    env.sync()
    again = await env.writer.apply(KEY, queued(1))
    assert again.delta == 0
    assert len(env.configmaps()) == 1


async def test_the_fold_writes_the_list_and_the_watermark_then_collects() -> None:
    env = Env()
    for j in (1, 2, 3):
        await env.writer.apply(KEY, queued(j))
    await env.writer.apply(KEY, completed(2))
    env.sync()
    newest = max(int(o["metadata"]["resourceVersion"]) for o in env.configmaps())
    written = await env.journal.fold(KEY)
    assert written is not None
    assert env.listed() == ["job-1@octo/app", "job-3@octo/app"]
    assert env.hra()["metadata"]["annotations"][FOLDED_ANNOTATION] == str(newest)
    assert env.configmaps() == []
    env.sync()
    assert env.counted() == ["job-1@octo/app", "job-3@octo/app"]


async def test_a_job_queued_again_after_its_reservation_expired_keeps_the_new_one_through_the_fold() -> None:
    """The chaos test's loss: the HRA lists job 1's reservation, expired while the job still waits;
    the safety-net poll reserves it again (a journal entry). Counted and folded, the new reservation
    holds the job; it used to be dropped with the expired one it was deduplicated against."""
    env = Env(reservation(1, minutes=-1))
    again = await env.writer.apply(KEY, queued(1))
    assert again.delta == 1
    env.sync()
    assert env.counted() == ["job-1@octo/app"]
    await env.journal.fold(KEY)
    assert env.listed() == ["job-1@octo/app"]
    assert parse_time(env.hra()["spec"]["capacityReservations"][0]["expirationTime"]) > NOW


async def test_a_crash_between_fold_and_collection_counts_nothing_twice_or_back() -> None:
    """Entries below the watermark count for nothing: a queued folded, then its completed folded,
    the queued entry never collected, is not resurrected; a new leader reads the watermark."""
    env = Env()
    await env.writer.apply(KEY, queued(1))
    await env.writer.apply(KEY, queued(2))
    env.sync()
    deleted = env.kube.delete

    async def crash(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the leader died")

    env.kube.delete = crash  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await env.journal.fold(KEY)
    assert env.listed() == ["job-1@octo/app", "job-2@octo/app"]
    env.sync()
    assert env.counted() == ["job-1@octo/app", "job-2@octo/app"]  # in the list and an entry: once
    env.kube.delete = deleted  # type: ignore[method-assign]
    _, leader = env.process()  # a new leader, nothing in memory
    await env.writer.apply(KEY, completed(1))
    env.sync()
    await leader.fold(KEY)
    env.sync()
    assert env.listed() == ["job-2@octo/app"]
    assert env.counted(leader) == ["job-2@octo/app"]
    assert env.configmaps() == []


async def test_unfolded_entries_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "MAX_UNFOLDED", 3)
    env = Env()
    for j in (1, 2, 3):
        await env.writer.apply(KEY, queued(j))
    with pytest.raises(JournalFull) as refused:
        await env.writer.apply(KEY, queued(4))
    assert refused.value.status == 503
    env.sync()
    await env.journal.fold(KEY)
    env.sync()
    assert (await env.writer.apply(KEY, queued(4))).delta == 1


async def test_an_entry_holds_at_most_max_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "MAX_OPS_PER_ENTRY", 2)
    env = Env()
    await env.journal.append(KEY, env.hra(), [env_op(j) for j in range(5)])
    sizes = sorted(len(o["data"][OPS_KEY].split("},{")) for o in env.configmaps())
    assert sizes == [1, 2, 2]


def env_op(job: int) -> Any:
    from runnerd.reconcile.journal import JournalOp

    return JournalOp("queued", job, "octo/app", NOW, NOW)


@pytest.mark.parametrize(
    ("since_last", "requeue"),
    [(None, None), (0.25, 0.75), (1.0, None)],
)
async def test_folds_at_most_once_a_second(since_last: float | None, requeue: float | None) -> None:
    env = Env()
    env.monotonic = 10.0
    if since_last is not None:
        await env.journal.reconcile(KEY)
        env.monotonic += since_last
    result = await env.journal.reconcile(KEY)
    assert (result.requeue_after if result is not None else None) == pytest.approx(requeue)


async def test_the_fold_of_a_deleted_hra_does_nothing() -> None:
    env = Env()
    await env.writer.apply(KEY, queued(1))
    del env.kube.objects[(HRAS, NS, "hra")]
    assert await env.journal.fold(KEY) is None
    assert CONFIGMAPS.plural == "configmaps"


async def test_a_write_only_journal_counts_its_own_entries_until_the_leader_folds_them() -> None:
    """``runnerd webhook-server``'s journal (no informer: it may only create ConfigMaps): it decides on
    the HRA's list with the entries it wrote, the leader folds them, the watermark retires them."""
    env = Env()
    resolver = TargetResolver(env.informers)
    hook = ReservationWriter(env.kube, env.informers[HRAS], resolver, clock=lambda: NOW)  # type: ignore[arg-type]
    hook.journal = ReservationJournal(env.kube, None, clock=lambda: NOW)  # type: ignore[arg-type]
    assert (await hook.apply(KEY, queued(1))).delta == 1
    assert (await hook.apply(KEY, queued(1))).delta == 0  # its own entry: a duplicate
    assert len(env.configmaps()) == 1
    assert env.counted(hook.journal) == ["job-1@octo/app"]
    assert await hook.journal.fold(KEY) is None  # it folds nothing
    env.sync()
    await env.journal.fold(KEY)  # the leader
    env.sync()
    assert env.listed() == ["job-1@octo/app"]
    assert env.configmaps() == []
    assert hook.journal.entries(KEY, env.hra()) == []  # below the watermark: retired
    assert (await hook.apply(KEY, queued(1))).delta == 0  # now seen through the HRA's list
    assert (await hook.apply(KEY, completed(1))).delta == -1
    env.sync()
    await env.journal.fold(KEY)
    env.sync()
    assert env.listed() == []
