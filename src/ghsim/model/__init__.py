"""The simulated GitHub: state, routing and time.  Pure and synchronous.

Nothing here does I/O or reads the wall clock: time comes from the injected :class:`Clock`, and
what happens (a job changes state, a runner gets work, a runner is removed) is reported to an
optional event sink.  The HTTP layer (:mod:`ghsim.server`) and the tests drive :class:`World`
directly.

Routing follows GitHub's documented rules:

* a job goes to an *online, idle* runner that has *every* label of the job (case-insensitive);
* a runner may take jobs of a repository only if it is registered to that repository, or to its
  organization in a runner group visible to the repository, or to its enterprise in a runner group
  shared with the organization (public repositories need ``allows_public_repositories``);
* repository runners are preferred to organization runners, which are preferred to enterprise
  runners; among equals, the runner that has been idle longest wins; among jobs, the oldest;
* a job nobody can take stays queued (and fails after ``queue_timeout_s``);
* an assigned job that the runner does not start within ``assign_timeout_s`` is re-queued;
* an ephemeral runner takes exactly one job and is removed when it completes; a JIT config can be
  redeemed once.

Layout: :class:`World` (:mod:`.world`) is a facade over one object per section, each in its own
module — :mod:`.registry` (enterprises, organizations, users, repositories), :mod:`.groups`
(runner groups and their policy), :mod:`.credentials` (PATs, Apps, installations, issued tokens),
:mod:`.hooks` (webhook subscriptions), :mod:`.routing` (job ↔ runner matching), :mod:`.runs`
(workflow runs and the job state machine), :mod:`.runners` (the runner pool: registration, JIT,
labels), :mod:`.dispatch` (the runner side of the job protocol), :mod:`.timers` (what happens as
time passes); :mod:`.events` and :mod:`.specs` hold the value types.
"""

from __future__ import annotations

from .credentials import new_pat
from .events import Event, EventSink, JobEvent, JobSnapshot, RunnerWake
from .runners import DEFAULT_LABELS, PollResult, Registered
from .specs import JobSpec, TraceEntry
from .world import World

__all__ = [
    "DEFAULT_LABELS",
    "Event",
    "EventSink",
    "JobEvent",
    "JobSnapshot",
    "JobSpec",
    "PollResult",
    "Registered",
    "RunnerWake",
    "TraceEntry",
    "World",
    "new_pat",
]
