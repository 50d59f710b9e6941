"""The safety-net poll's pace and job-listing rules (pure)."""

from __future__ import annotations

import pytest

from runnerd.reconcile.pollpace import Pace, PollEvidence, RunFacts, list_jobs, next_interval, stretched_bound

PACE = Pace(short=55.0, longest=300.0, growth=4.0)


def ev(
    applied: int = 0, refused: int = 0, missed: int = 0, unannounced: int = 0, since: int = 100
) -> PollEvidence:
    return PollEvidence(
        applied=applied, refused=refused, missed=missed, unannounced_queued=unannounced, since_reset=since
    )


@pytest.mark.parametrize(
    ("current", "evidence", "interval", "step"),
    [
        # deliveries flow and nothing was missed: stretch, bounded
        (55.0, ev(applied=3), 220.0, "stretch"),
        (220.0, ev(applied=1), 300.0, "stretch"),
        (300.0, ev(applied=9), 300.0, "stretch"),
        # too few deliveries since the last reset (or the start) to prove the hook: keep
        (55.0, ev(applied=3, since=19), 55.0, "keep"),
        (55.0, ev(applied=3, since=20), 220.0, "stretch"),
        # idle: proves nothing, keep
        (55.0, ev(), 55.0, "keep"),
        (220.0, ev(), 220.0, "keep"),
        # a job no delivery announced: back to the short interval at once, whatever else happened
        (300.0, ev(applied=50, missed=1), 55.0, "reset"),
        # a refused delivery (bad signature, malformed, failed)
        (300.0, ev(applied=50, refused=1), 55.0, "reset"),
        # GitHub shows a queued run no delivery announced, and no delivery came
        (300.0, ev(unannounced=1), 55.0, "reset"),
        # ... while deliveries do come, it is a delivery in flight: keep stretching
        (220.0, ev(applied=2, unannounced=1), 300.0, "stretch"),
        # a current below the short interval (the repositories grew) is lifted to it
        (10.0, ev(), 55.0, "keep"),
    ],
)
def test_next_interval(current: float, evidence: PollEvidence, interval: float, step: str) -> None:
    got, got_step, why = next_interval(current, evidence, PACE)
    assert (got, got_step) == (interval, step)
    assert why


def test_a_bound_below_the_short_interval_never_stretches() -> None:
    assert next_interval(55.0, ev(applied=5), Pace(short=55.0, longest=30.0))[:2] == (55.0, "stretch")


def test_invalid_pace_is_refused() -> None:
    with pytest.raises(ValueError, match="short"):
        Pace(short=0.0)
    with pytest.raises(ValueError, match="growth"):
        Pace(short=10.0, growth=0.5)


@pytest.mark.parametrize(
    ("facts", "listed"),
    [
        (RunFacts(announced=0, open=0, unlisted_for=0.0), True),  # no delivery: list it now
        (RunFacts(announced=1, open=1, unlisted_for=0.0), False),  # announced and open: skip
        (RunFacts(announced=2, open=1, unlisted_for=299.0), False),
        (RunFacts(announced=1, open=1, unlisted_for=300.0), True),  # unlisted long enough: siblings?
        (RunFacts(announced=1, open=0, unlisted_for=0.0), True),  # announced jobs done, run still active
        # an announced job still queued whose reservation is gone (expired, or its runner took another)
        (RunFacts(announced=2, open=2, unlisted_for=0.0, uncovered=1), True),
    ],
)
def test_list_jobs(facts: RunFacts, listed: bool) -> None:
    got, why = list_jobs(facts, 300.0)
    assert got is listed
    assert why


@pytest.mark.parametrize(
    ("longest", "spread", "bound"),
    [
        (300.0, 1.0, 300.0),
        (300.0, 0.5, 300.0),
        (300.0, 720.0 / 55.0, 300.0 * 720.0 / 55.0),
        (60.0, 2.0, 120.0),
    ],
)
def test_the_stretched_bound_widens_as_the_budget_spaces_the_short_interval(
    longest: float, spread: float, bound: float
) -> None:
    assert stretched_bound(longest, spread) == pytest.approx(bound)
