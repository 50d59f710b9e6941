"""How often the safety-net poll looks, and which runs' jobs it lists: pure rules, facts in, steps out.

The poll exists for the ``workflow_job`` deliveries GitHub loses or delays. While deliveries
demonstrably arrive and every poll confirms they missed nothing, polling every ``short`` seconds
buys nothing but calls; the moment there is a sign of trouble, the short interval is what keeps the
promise. So the interval adapts, within a bound:

* **reset** to ``short`` when a poll found a queued job that no delivery announced and no live
  reservation held (a lost or late delivery), when a delivery was refused since the last poll (bad
  signature, unparseable, or failed: the hook is misconfigured or the intake broken), or when no
  delivery arrived since the last poll while GitHub shows a queued run that no delivery announced,
  holding a queued job an HRA serves (a run of GitHub-hosted jobs only proves nothing);
* **stretch** by ``growth`` (at most to ``longest``) when deliveries were applied since the last
  poll, the poll found none of the above, and at least ``evidence`` deliveries were applied since the
  last reset (or the start): a handful of deliveries proves little, and a hook that loses a share of
  them is caught long before that many arrive without a loss (at 30 % loss, 20 in a row arrive
  clean less than once in a thousand tries);
* **keep** it otherwise (an idle period proves nothing either way).

Guarantee: a queued job whose delivery was lost gets a reservation within ``longest`` seconds (plus
one poll's duration) of being queued, and within ``short`` once a poll has seen any sign of trouble.

When more repositories share the budget than it can poll at the wanted interval, the budget already
spaces the short interval ``spread`` times wider than wanted; the stretched bound widens alike
(:func:`stretched_bound`: ``longest * spread``), so a clean hook costs the same share of the budget
(``wanted / longest``, about a fifth by default) whatever the number of repositories, instead of all
of it. The guarantee above holds with that bound.

With the **delivery audit** (``--webhook-audit``, :mod:`runnerd.reconcile.deliveryaudit`), GitHub's
own record of the hook's deliveries covers what the poll was mostly for: a delivery GitHub attempted
and failed (our endpoint down, an error answered, a timeout) is redelivered within about one audit
interval (60 s by default) of the audit's next pass. What is left to the poll is a job no delivery
was ever attempted for (GitHub lost the event before its hook saw it). So while the audit is healthy
(its last pass succeeded within two of its intervals), the stretched bound is the audit's long bound
(:func:`audited_bound`, ``--webhook-audit-poll-bound``, 1 h by default) and a repository known only
from a delivery is first polled that long after it was learned; the moment the audit is unhealthy
(a 403, 404 or 5xx, or no pass for two intervals) the bound is the one above again and no
repository waits longer than the current interval. Guarantee with the audit healthy: a queued job
whose delivery GitHub failed gets a reservation within about one audit interval; a job no delivery
was ever attempted for, within the long bound (plus one poll's duration). Without the audit, nothing
here changes.

Which runs' jobs are listed (one call per run): a run that no delivery announced is listed at once
(that is the poll's purpose). A run that deliveries did announce is not listed, because the jobs the
deliveries named are already reserved, unless

* an announced job is still queued (as far as the deliveries say) while no live reservation holds
  it (its reservation expired, or the runner made for it took another job): the poll reserves it
  again, as it does for any queued job of a listed run, or

* every job the deliveries named has completed while GitHub still shows the run active (a job of it
  that no delivery named is queued or running: a ``needs:`` successor whose delivery was lost), or
* the run has been active ``longest`` seconds without its jobs being listed (GitHub's run objects do
  not say how many jobs a run holds, so a lost delivery of a sibling queued together with an announced
  job is found then: within ``2 * longest`` in the worst case, which this rule trades for not listing
  the jobs of every short run that webhooks already served).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LONGEST = 300.0
"""The default bound of a stretched interval (seconds)."""
GROWTH = 4.0
"""Two clean polls in a row take the default short interval (55 s) to the bound."""
EVIDENCE = 20
"""Deliveries applied since the last reset before the interval may stretch."""

Step = Literal["reset", "stretch", "keep"]


@dataclass(frozen=True)
class Pace:
    short: float
    longest: float = LONGEST
    growth: float = GROWTH
    evidence: int = EVIDENCE

    def __post_init__(self) -> None:
        if self.short <= 0 or self.growth < 1:
            raise ValueError("the short interval must be positive and the growth at least 1")


@dataclass(frozen=True)
class PollEvidence:
    """What the deliveries and one round of polls showed since the previous round."""

    applied: int
    """``workflow_job`` deliveries applied to a reservation since the previous round."""
    refused: int
    """Deliveries refused since the previous round (bad signature, malformed, failed)."""
    missed: int
    """Queued jobs the polls found that no delivery announced and no live reservation held."""
    unannounced_queued: int
    """Active runs of which no delivery named a job, holding a queued job an HRA serves."""
    since_reset: int = 0
    """Deliveries applied since the last reset (or the start), this round's included."""


def stretched_bound(longest: float, spread: float) -> float:
    """The bound of a stretched interval when the budget spaces the short interval ``spread`` (>= 1)
    times wider than wanted: as much wider (see the module docstring)."""
    return longest * max(1.0, spread)


def audited_bound(longest: float, audit_bound: float, audit_healthy: bool) -> float:
    """The bound the interval may stretch to: the delivery audit's long bound while it is healthy
    (never shorter than ``longest``), else ``longest`` (see the module docstring)."""
    return max(longest, audit_bound) if audit_healthy else longest


def next_interval(current: float, evidence: PollEvidence, pace: Pace) -> tuple[float, Step, str]:
    """The interval after a round of polls, the step taken, and why."""
    longest = max(pace.longest, pace.short)
    if evidence.missed:
        return pace.short, "reset", f"the poll found {evidence.missed} queued job(s) no delivery announced"
    if evidence.refused:
        return pace.short, "reset", f"{evidence.refused} delivery(ies) refused since the last poll"
    if evidence.unannounced_queued and not evidence.applied:
        return pace.short, "reset", "no delivery arrived while GitHub shows a queued run"
    if evidence.applied and evidence.since_reset >= pace.evidence:
        stretched = min(max(current, pace.short) * pace.growth, longest)
        return stretched, "stretch", f"{evidence.since_reset} delivery(ies) applied and none missed"
    why = "nothing missed, too few deliveries yet" if evidence.applied else "no delivery and nothing missed"
    return min(max(current, pace.short), longest), "keep", why


@dataclass(frozen=True)
class RunFacts:
    """What the deliveries said about one active run, and how long its jobs have gone unlisted."""

    announced: int
    """Jobs of the run that deliveries named (and that were applied to a reservation)."""
    open: int
    """Of those, the ones no ``completed`` delivery has closed."""
    unlisted_for: float
    """Seconds since the run was first seen active without its jobs being listed."""
    uncovered: int = 0
    """Announced jobs still queued (no ``in_progress`` or ``completed`` delivery) that no live
    reservation holds: theirs expired, or a runner made for one took another job."""


def list_jobs(facts: RunFacts, longest: float) -> tuple[bool, str]:
    """Whether to list the run's jobs now (one call), and why."""
    if facts.announced <= 0:
        return True, "no delivery announced a job of this run"
    if facts.uncovered > 0:
        return True, "an announced job is still queued and no live reservation holds it"
    if facts.open <= 0:
        return True, "every announced job completed while the run is still active"
    if facts.unlisted_for >= longest:
        return True, f"unlisted for {longest:g}s: look for a sibling whose delivery was lost"
    return False, "the deliveries announced it"
