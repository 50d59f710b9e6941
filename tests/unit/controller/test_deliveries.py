"""The delivery ledger: what applied deliveries announced, per run, bounded."""

from __future__ import annotations

from runnerd.controller.deliveries import DeliveryLedger
from runnerd.reconcile.pollpace import RunFacts


def test_jobs_are_announced_per_run_and_closed_by_completed() -> None:
    ledger = DeliveryLedger()
    ledger.record("Octo/App", 1, 11, "queued")
    ledger.record("octo/app", 1, 12, "queued")
    ledger.record("octo/app", 1, 11, "completed")
    assert ledger.facts("octo/APP", 1, 5.0, live={12}) == RunFacts(announced=2, open=1, unlisted_for=5.0)
    # 12 is queued: without a live reservation holding it, it is uncovered
    assert ledger.facts("octo/app", 1, 5.0).uncovered == 1
    assert ledger.run_of("octo/app", 12) == 1
    assert ledger.applied == 3
    # a late queued does not reopen a completed job
    ledger.record("octo/app", 1, 11, "queued")
    assert ledger.facts("octo/app", 1, 0.0).open == 1


def test_unknown_runs_and_deliveries_without_a_run_announce_nothing() -> None:
    ledger = DeliveryLedger()
    ledger.record("octo/app", None, 11, "queued")
    assert ledger.applied == 1
    assert len(ledger) == 0
    assert ledger.facts("octo/app", 1, 0.0) == RunFacts(0, 0, 0.0)
    assert ledger.run_of("octo/app", 11) is None


def test_the_ledger_is_bounded_dropping_the_least_recent_run_with_its_jobs() -> None:
    ledger = DeliveryLedger(max_runs=2)
    ledger.record("octo/app", 1, 11, "queued")
    ledger.record("octo/app", 2, 21, "queued")
    ledger.record("octo/app", 1, 12, "queued")  # run 1 is the most recent now
    ledger.record("octo/app", 3, 31, "queued")
    assert len(ledger) == 2
    assert ledger.facts("octo/app", 2, 0.0).announced == 0
    assert ledger.run_of("octo/app", 21) is None
    assert ledger.facts("octo/app", 1, 0.0).announced == 2


def test_a_started_job_is_not_uncovered_and_started_counts_no_delivery() -> None:
    ledger = DeliveryLedger()
    ledger.record("octo/app", 1, 11, "queued")
    ledger.started("octo/app", 1, 11)
    ledger.started("octo/app", 1, 99)  # unknown: ignored
    ledger.started("octo/app", None, 11)
    assert ledger.facts("octo/app", 1, 0.0) == RunFacts(announced=1, open=1, unlisted_for=0.0, uncovered=0)
    assert ledger.applied == 1
    ledger.record("octo/app", 1, 11, "queued")  # a reordered queued does not undo the start
    assert ledger.facts("octo/app", 1, 0.0).uncovered == 0
