"""The reservation journal's rules: what counts (merged), what a fold writes, what is collected."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from runnerd.api import CapacityReservation
from runnerd.reconcile.journal import (
    FOLDED_ANNOTATION,
    OPS_KEY,
    Entry,
    JournalOp,
    decode,
    encode,
    fold,
    merged,
    split,
    watermark,
)
from tests.unit.reconcile.hrakit import MIN, NOW, SEC

UNTIL = NOW + 10 * MIN


def job(
    job_id: int, since: dt.datetime = NOW, until: dt.datetime = UNTIL, replicas: int = 1
) -> CapacityReservation:
    return CapacityReservation(
        name=f"job-{job_id}@o/r", effective_time=since, expiration_time=until, replicas=replicas
    )


def q(job_id: int, since: dt.datetime = NOW, until: dt.datetime = UNTIL) -> JournalOp:
    return JournalOp("queued", job_id, "o/r", since, until)


def c(job_id: int) -> JournalOp:
    return JournalOp("completed", job_id, "o/r")


def e(version: int, *ops: JournalOp) -> Entry:
    return Entry(f"hra-journal-{version}", version, ops)


def ids(reservations: tuple[CapacityReservation, ...]) -> list[str | None]:
    return [r.name for r in reservations]


@pytest.mark.parametrize(
    ("listed", "entries", "want"),
    [
        pytest.param([], [], [], id="nothing"),
        pytest.param([], [e(5, q(1), q(2))], ["job-1@o/r", "job-2@o/r"], id="entry adds in order"),
        pytest.param([job(1)], [e(5, q(1))], ["job-1@o/r"], id="job in list and entry counts once"),
        pytest.param([], [e(5, q(1)), e(6, q(1))], ["job-1@o/r"], id="duplicate queued in two entries"),
        pytest.param([job(1)], [e(5, c(1))], [], id="completed removes the listed job"),
        pytest.param([], [e(5, q(1)), e(6, c(1))], [], id="queued then completed"),
        pytest.param([], [e(5, q(1), c(1))], [], id="queued then completed in one entry"),
        pytest.param([job(2)], [e(5, c(1))], ["job-2@o/r"], id="completed of an unknown job removes nothing"),
        pytest.param(
            [CapacityReservation(name="job-1", expiration_time=UNTIL, replicas=1)],
            [e(5, c(1))],
            [],
            id="matched by job id whatever the name form",
        ),
    ],
)
def test_merged(listed: list[CapacityReservation], entries: list[Entry], want: list[str]) -> None:
    assert ids(merged(listed, entries)) == want


LATER = NOW + 2 * SEC
"""When a writer decided a ``queued`` after ``job(1, until=NOW + SEC)`` had expired."""


@pytest.mark.parametrize(
    ("listed", "entries", "want"),
    [
        pytest.param([job(1)], [e(5, q(1, since=LATER))], [(NOW, UNTIL)], id="active entry holds the job"),
        pytest.param(
            [job(1, until=NOW + SEC)],
            [e(5, q(1, since=LATER, until=LATER + MIN))],
            [(LATER, LATER + MIN)],
            id="entry expired when the op was decided: the op replaces it",
        ),
        pytest.param(
            [job(1, until=LATER)],
            [e(5, q(1, since=LATER, until=LATER + MIN))],
            [(LATER, LATER + MIN)],
            id="expiring at the op's time is expired (as housekeeping counts it)",
        ),
        pytest.param(
            [job(1, replicas=0)],
            [e(5, q(1, since=LATER, until=LATER + MIN))],
            [(LATER, LATER + MIN)],
            id="a zero-replica marker does not hold the job",
        ),
        pytest.param(
            [],
            [e(5, q(1, until=NOW + SEC)), e(6, q(1, since=LATER, until=LATER + MIN))],
            [(LATER, LATER + MIN)],
            id="a later entry replaces an earlier one expired by then",
        ),
        pytest.param(
            [job(1, until=NOW + SEC)],
            [e(5, q(1, since=LATER), c(1))],
            [],
            id="completed after the replacing queued removes it",
        ),
        pytest.param(
            [job(1, until=NOW + SEC)],
            [e(5, JournalOp("queued", 1, "o/r"))],
            [(NOW, NOW + SEC)],
            id="an op without times replaces nothing",
        ),
    ],
)
def test_merged_times(
    listed: list[CapacityReservation],
    entries: list[Entry],
    want: list[tuple[dt.datetime, dt.datetime]],
) -> None:
    """A ``queued`` op replaces its job's entry exactly when its writer no longer saw that entry."""
    got = merged(listed, entries)
    assert [(r.effective_time, r.expiration_time) for r in got] == want
    assert all(r.replicas == 1 for r in got)


@pytest.mark.parametrize(
    ("entries", "mark", "unfolded", "folded"),
    [
        pytest.param([], 0, [], [], id="empty"),
        pytest.param([e(7), e(5), e(6)], 0, [5, 6, 7], [], id="unfolded in version order"),
        pytest.param([e(7), e(5), e(6)], 6, [7], [5, 6], id="at or below the watermark is folded"),
        pytest.param([e(5)], 9, [], [5], id="all folded"),
    ],
)
def test_split(entries: list[Entry], mark: int, unfolded: list[int], folded: list[int]) -> None:
    got_unfolded, got_folded = split(entries, mark)
    assert [x.version for x in got_unfolded] == unfolded
    assert sorted(x.version for x in got_folded) == folded


@pytest.mark.parametrize(
    ("listed", "entries", "now", "want", "mark"),
    [
        pytest.param([job(1)], [], NOW, ["job-1@o/r"], None, id="nothing to fold"),
        pytest.param(
            [], [e(5, q(1)), e(9, q(2))], NOW, ["job-1@o/r", "job-2@o/r"], 9, id="watermark is newest"
        ),
        pytest.param(
            [job(1, until=NOW + SEC)], [e(5, q(2))], NOW + 2 * SEC, ["job-2@o/r"], 5, id="expired dropped"
        ),
        pytest.param(
            [job(3, replicas=0)], [e(5, q(2))], NOW, ["job-2@o/r"], 5, id="zero-replica markers dropped"
        ),
        pytest.param([job(1)], [e(5, c(1), q(1))], NOW, [], 5, id="a finished job is not queued again"),
        pytest.param(
            [job(1, until=NOW + SEC), job(2, until=NOW + SEC)],
            [e(5, q(1, since=LATER, until=LATER + MIN)), e(6, q(2, since=LATER, until=LATER + MIN))],
            LATER + SEC,
            ["job-1@o/r", "job-2@o/r"],
            6,
            id="jobs queued again after their reservations expired keep them (the chaos test's loss)",
        ),
    ],
)
def test_fold(
    listed: list[CapacityReservation],
    entries: list[Entry],
    now: dt.datetime,
    want: list[str],
    mark: int | None,
) -> None:
    written, new_mark = fold(listed, entries, now)
    assert ids(written) == want
    assert new_mark == mark


def test_a_completed_entry_after_its_queued_entry_wins_across_folds() -> None:
    """A queued folded at one fold and its completed at the next: released, not re-added."""
    first, mark = fold([], [e(5, q(1))], NOW)
    assert ids(first) == ["job-1@o/r"]
    assert mark == 5
    entries = [e(5, q(1)), e(6, c(1))]  # entry 5 not yet collected
    unfolded, _ = split(entries, mark)
    second, mark = fold(first, unfolded, NOW)
    assert ids(second) == []
    assert mark == 6
    # counted after the second fold, before collection: the list alone
    assert ids(merged(second, split(entries, mark)[0])) == []


def obj(version: str, ops: list[dict[str, Any]] | str) -> dict[str, Any]:
    data = (
        ops
        if isinstance(ops, str)
        else encode([o for o in (JournalOp.from_dict(i) for i in ops) if o])[OPS_KEY]
    )
    return {"metadata": {"name": "x", "resourceVersion": version}, "data": {OPS_KEY: data}}


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        pytest.param(obj("12", [q(1).to_dict(), c(2).to_dict()]), e(12, q(1), c(2)), id="round trip"),
        pytest.param(obj("12", "not json"), None, id="bad json"),
        pytest.param(obj("", []), None, id="no version"),
        pytest.param(obj("12", '[{"action": "started", "job": 1}]'), e(12), id="unknown action skipped"),
    ],
)
def test_decode(raw: dict[str, Any], want: Entry | None) -> None:
    got = decode(raw)
    if want is None:
        assert got is None
    else:
        assert got is not None
        assert (got.version, got.ops) == (want.version, want.ops)


@pytest.mark.parametrize(
    ("annotations", "want"),
    [({}, 0), ({FOLDED_ANNOTATION: "42"}, 42), ({FOLDED_ANNOTATION: "x"}, 0)],
)
def test_watermark(annotations: dict[str, str], want: int) -> None:
    assert watermark({"metadata": {"annotations": annotations}}) == want


def test_the_fold_restarts_starved_reservations_beyond_max_replicas() -> None:
    """Reservations beyond maxReplicas have no runner yet: their timers restart (ARC's rule), so
    they do not expire while they wait; the ones within keep theirs."""
    later = NOW + 5 * MIN
    listed = [job(1, since=NOW, until=NOW + 10 * MIN), job(2, since=NOW, until=NOW + 10 * MIN)]
    written, _ = fold(listed, [e(5, q(3, since=NOW, until=NOW + 10 * MIN))], later, max_replicas=1)
    times = {r.name: (r.effective_time, r.expiration_time) for r in written}
    assert times["job-1@o/r"] == (NOW, NOW + 10 * MIN)
    assert times["job-2@o/r"] == (later, later + 10 * MIN)
    assert times["job-3@o/r"] == (later, later + 10 * MIN)
