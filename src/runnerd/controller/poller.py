"""The safety net: a budgeted poll that finds queued jobs whose ``workflow_job`` webhook never came.

GitHub says webhooks can be late or lost. Without this poll such a job waits forever behind an HRA
that scales on webhooks only (``minReplicas: 0``); with it, it gets a runner within ``poll_bound``
seconds, through the same job-id correlated reservation as the webhook (so a webhook arriving after
the poll, or the poll seeing a job the webhook already reserved, never counts the job twice).

What is polled: every repository a webhook-scaled HRA covers: a repository-scoped target's
repository, the ``repositoryNames`` of its ``TotalNumberOfQueuedAndInProgressWorkflowRuns`` metric,
and every repository a ``workflow_job`` delivery for it came from in the last day (an organization's
repositories are not listed: that would cost a call per repository). A repository known only from
a delivery is first polled one interval after that delivery taught it: the delivery shows the hook
reaches us for it, and a sibling delivery lost at the same time is found by that poll, within the
bound every lost delivery has (counted from when the repository became known; before that nothing
polls it). Polling it at once cost a burst's every new repository two listings while its
deliveries were still arriving, and those polls took deliveries still in flight for lost ones.

One poll of one repository::

    GET /repos/{owner}/{repo}/actions/runs?status=queued        (conditional: ETag)
    GET /repos/{owner}/{repo}/actions/runs?status=in_progress   (conditional: ETag)
    GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs         only for runs that are new or changed

The listings are read through the :class:`~runnerd.controller.runwatch.RunObserver` that the
``TotalNumberOfQueuedAndInProgressWorkflowRuns`` metric reads too (one observation per repository, one
call budget): an observation the metric made in the last half interval serves the poll for free.

After each poll of a repository, every live reservation of one of its jobs (the reservation names
the repository; see :func:`runnerd.reconcile.reservations.job_reservation_name`) whose job GitHub shows
finished is released, whichever path created it and across restarts: the repositories named by
reservations are polled too. That bounds the idle time a lost ``completed`` delivery causes to one
poll interval instead of the trigger's ``duration``.

An idle repository costs 2 calls per poll, both answered 304 Not Modified (which GitHub does not
count against the rate limit, but this budget does). A queued job in a new run costs one more call
(per 100 jobs). When a run leaves both lists, it is finished: reservations the poll made for its jobs
are released (a no-op when the ``completed`` webhook already did).

The budget math, with ``B`` the bound (``--webhook-poll-bound``, default 60 s), ``C`` the ceiling of
calls per hour (``--webhook-poll-max-calls-per-hour``, default 1000) and ``R`` the repositories::

    wanted interval  = B - min(5 s, B/4)             (leaves time to reserve and create the pod)
    budget interval  = 2 * R * 3600 / C              (idle: 2 calls per repository per poll)
    interval         = max(wanted, budget)
    idle calls/hour  = 2 * R * 3600 / interval <= C

That interval is the poll's *short* interval. While ``workflow_job`` deliveries demonstrably arrive
and the polls find nothing they missed, the poll stretches it (up to ``poll_max_interval``, default
300 s), and goes back to it the moment a poll finds a job no delivery announced, a delivery is refused,
or GitHub shows a queued run while no delivery came: the rules and the guarantee are in
:mod:`runnerd.reconcile.pollpace`. When the budget spaces the short interval wider than wanted, the
stretched bound widens by the same factor (e.g. 100 repositories: short 720 s, stretched up to
3,927 s, a fifth of the budget while the hook is clean). The metric of a webhook-backed HRA reads
observations as old as that interval (:attr:`~runnerd.controller.runwatch.RunObserver.backstop_age`),
and runs that applied deliveries announced are not listed job by job
(:attr:`~runnerd.controller.runwatch.RunObserver.ledger`).

With the webhook delivery audit (``--webhook-audit``, :mod:`runnerd.controller.deliveryaudit`) the
poll's stretched bound is the audit's long bound (1 h) while the audit is healthy, and a repository
learned from a delivery, or named only by reservations (which deliveries made), is first polled that
long after (one named by a target or a metric is polled at once, as without the audit); the audit
turning unhealthy brings the pace and every repository's next poll back within the bound above at
once (:attr:`SafetyNetPoller.audit`).

e.g. B = 60 s, C = 1000: up to 7 repositories are polled every 55 s (7 * 2 * 3600 / 55 = 916
calls/hour); 20 repositories are polled every 144 s, and the ``GitHubAPIBudget`` condition says the
bound cannot be kept. The ceiling also holds when busy: calls are counted in a sliding one-hour
window and a poll that would exceed ``C`` waits. Rate limits slow the poll further: nothing is sent
while the client's gate is closed, and while the ``core`` bucket is down to its last
``max(10, 2%)`` calls the poll waits for the reset (leaving them to runner registration). Jobs are not
lost by waiting: a queued job stays in the queued list until it is served.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from runnerd.controller.runwatch import RepoObservation, RunObserver
from runnerd.github import GitHubClient, GitHubError, RateLimitedError
from runnerd.github.budget import CallWindow
from runnerd.reconcile.hra import TOTAL_JOBS, AutoscaleError, metric_repositories
from runnerd.reconcile.matching import JobEvent
from runnerd.reconcile.pollpace import Pace, PollEvidence, audited_bound, next_interval, stretched_bound
from runnerd.runtime import Key, Result
from runnerd.web.metrics import Metrics

if TYPE_CHECKING:
    from runnerd.controller.reservations import ReservationSink

log = logging.getLogger(__name__)

POLL_KEY = Key("", "safety-net-poll")
FINISHED_GRACE = 30.0
"""A reserved job missing from a listing made this much later is finished (listings lag a little)."""
IDLE_CALLS_PER_REPOSITORY = 2
LEARNED_TTL = 86_400.0
REFUSED_OUTCOMES = frozenset({"bad_signature", "malformed", "failed"})
"""Webhook outcomes that mean a delivery was lost to the intake (the poll's interval resets)."""


class AuditHealth(Protocol):
    """The webhook delivery audit, as the poll sees it (:mod:`runnerd.controller.deliveryaudit`)."""

    @property
    def bound(self) -> float: ...

    def healthy(self) -> bool: ...


class PollOptions(Protocol):
    poll: bool
    poll_bound: float
    poll_max_calls_per_hour: int
    poll_max_interval: float


@dataclass(frozen=True)
class PollPlan:
    interval: float
    wanted: float
    repositories: int
    stretched: bool

    @property
    def idle_calls_per_hour(self) -> float:
        return IDLE_CALLS_PER_REPOSITORY * self.repositories * 3600.0 / self.interval


def plan(bound: float, max_calls_per_hour: int, repositories: int) -> PollPlan:
    """The poll interval for ``repositories`` (see the module docstring for the math)."""
    if bound <= 0:
        raise ValueError("the poll bound must be positive")
    if max_calls_per_hour <= 0:
        raise ValueError("the poll budget must be positive")
    wanted = bound - min(5.0, bound / 4)
    budget = IDLE_CALLS_PER_REPOSITORY * max(repositories, 0) * 3600.0 / max_calls_per_hour
    interval = max(wanted, budget)
    return PollPlan(interval, wanted, repositories, stretched=budget > wanted)


@dataclass
class _Run:
    signature: tuple[object, ...]
    jobs: dict[int, str]


@dataclass
class _Repo:
    repository: str
    owner_type: str | None
    organization: str | None
    enterprise: str | None
    next_due: float
    runs: dict[int, _Run] = field(default_factory=dict)
    reserved: dict[int, Key] = field(default_factory=dict)  # job id -> the HRA its reservation is on
    polls: int = 0
    recheck: bool = False
    """Poll at the next pass with every active run's jobs listed afresh (:meth:`SafetyNetPoller.recheck`)."""


class SafetyNetPoller:
    """The poll (see the module docstring); run as the reconcile of a single-key controller."""

    def __init__(
        self,
        *,
        github: GitHubClient,
        sink: ReservationSink,
        options: PollOptions,
        metrics: Metrics,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        observer: RunObserver | None = None,
    ) -> None:
        self.github = github
        self.sink = sink
        self.options = options
        self.metrics = metrics
        self._monotonic = monotonic
        self._wall = wall
        self.window = observer.window if observer is not None else CallWindow(monotonic)
        self.observer = observer or RunObserver(github, self.window, clock=monotonic, wall=wall)
        self.released_finished = 0
        """Reservations (whoever made them) released because GitHub showed their job finished."""
        self._repos: dict[str, _Repo] = {}
        self._limited: tuple[str, str] | None = None
        self.last_plan: PollPlan | None = None
        self.polls = 0
        self.calls = 0
        self.recovered = 0
        """Jobs found queued without a webhook (lost deliveries)."""
        self.rechecked = 0
        """Jobs a recheck found queued after their sized Runner went (not lost deliveries)."""
        self.rate_limited = 0
        """Polls that GitHub (or the client's gate) refused with a rate limit."""
        self.deferred = 0
        """Reconciles that put polls off until a rate limit resets (no call made)."""
        self.ledger = sink.deliveries
        self.observer.ledger = self.ledger
        self.observer.live = lambda repository: self.sink.reservations_of(repository).keys()
        self.pace: float | None = None
        """The adaptive interval (``None``: the short one, until a round of polls says otherwise)."""
        self.pace_steps: dict[str, int] = {"reset": 0, "stretch": 0, "keep": 0}
        self._applied_seen = self.ledger.applied
        self._refused_seen = self._refused()
        self._round_missed = 0
        self._round_unannounced = 0
        self._since_reset = 0
        self._configured: set[str] = set()
        """Repositories known without a delivery (targets, metrics, reservations): polled at once."""
        self._targeted: set[str] = set()
        """Repositories named by targets and metrics: polled at once even while the audit is healthy (a
        repository named only by reservations, which deliveries made, then waits like a learned one)."""
        self.audit: AuditHealth | None = None
        """The webhook delivery audit (``--webhook-audit``): while it is healthy the pace may stretch to
        its long bound (:func:`runnerd.reconcile.pollpace.audited_bound`)."""
        self._audited = False

    def budget_limited(self) -> tuple[str, str] | None:
        """``(reason, message)`` while the budget (not the bound) decides how often the poll runs."""
        if not self.options.poll:
            return None
        return self._limited

    def repositories(self) -> dict[str, tuple[str, str | None, str | None, str | None]]:
        """``owner/name`` (casefolded) -> (name, owner type, organization, enterprise), known or learned."""
        found: dict[str, tuple[str, str | None, str | None, str | None]] = {}
        for t in self.sink.targets():
            config = t.target.config
            if config.repository:
                found.setdefault(config.repository.casefold(), (config.repository, None, None, None))
            hra = self.sink.resolver.parse_hra(t.hra_obj)
            for metric in hra.spec.metrics if hra is not None else ():
                if metric.type != TOTAL_JOBS:
                    continue
                try:
                    repos = metric_repositories(metric, config)
                except AutoscaleError:
                    continue
                org = config.organization
                for repo in repos:
                    found.setdefault(repo.casefold(), (repo, "Organization" if org else None, org, None))
        self._targeted = set(found)
        for repository in self.sink.reserved_repositories():
            found.setdefault(repository.casefold(), (repository, None, None, None))
        self._configured = set(found)
        now = self._monotonic()
        for key, ctx in list(self.sink.repositories.items()):
            if now - ctx.seen_at > LEARNED_TTL:
                del self.sink.repositories[key]
                continue
            found[key] = (ctx.repository, ctx.owner_type, ctx.organization, ctx.enterprise)
        return found

    def recheck(self, repository: str) -> None:
        """List ``repository``'s jobs afresh at the next pass, however slow the pace: a sized job's
        Runner went before its job finished (its runner ran another job with the same labels, or its
        pod failed), so a job may be queued with no runner; the webhooks announced it, so a paced
        poll would not list it. The caller enqueues the poll's key."""
        repo = self._repos.get(repository.casefold())
        if repo is not None:
            repo.next_due = min(repo.next_due, self._monotonic())
            repo.recheck = True

    def _sync_repos(self, now: float) -> list[_Repo]:
        """Track the repositories to poll; the new ones known only from deliveries (:meth:`reconcile`
        polls them one interval after they were learned)."""
        wanted = self.repositories()
        learned: list[_Repo] = []
        for key in list(self._repos):
            if key not in wanted:
                del self._repos[key]
        for key, (name, owner_type, org, enterprise) in wanted.items():
            repo = self._repos.get(key)
            if repo is None:
                repo = self._repos[key] = _Repo(name, owner_type, org, enterprise, next_due=now)
                if key not in self._configured or (key not in self._targeted and self._audit_healthy()):
                    learned.append(repo)
            else:
                repo.owner_type = owner_type or repo.owner_type
                repo.organization = org or repo.organization
                repo.enterprise = enterprise or repo.enterprise
        return learned

    def _mono_of(self, epoch: float) -> float:
        return self._monotonic() + max(epoch - self._wall(), 0.0)

    async def reconcile(self, key: Key) -> Result | None:
        if not self.options.poll:
            self._limited = None
            return None
        now = self._monotonic()
        learned = self._sync_repos(now)
        if not self._repos:
            self._limited = None
            self.metrics.poll_repositories.set(0)
            return None
        bound, ceiling = self.options.poll_bound, self.options.poll_max_calls_per_hour
        the_plan = plan(bound, ceiling, len(self._repos))
        self.last_plan = the_plan
        interval = self._pace_learned(learned, the_plan, now)
        self.metrics.poll_interval.set(interval)
        self.metrics.poll_repositories.set(len(self._repos))
        self.metrics.poll_budget_per_hour.set(ceiling)
        limited: tuple[str, str] | None = None
        if the_plan.stretched:
            limited = (
                "PollIntervalStretched",
                f"the safety-net poll covers {len(self._repos)} repositories every {the_plan.interval:.0f}s "
                f"to stay within {ceiling} calls/hour; lost webhooks are noticed after up to "
                f"{the_plan.interval:.0f}s instead of {bound:g}s",
            )

        limited = self._defer_while_rate_limited() or limited

        polled: list[tuple[_Repo, float]] = []
        for repo in sorted(self._repos.values(), key=lambda r: r.next_due):
            if repo.next_due > self._monotonic():
                break
            free_at = self.window.free_at(IDLE_CALLS_PER_REPOSITORY, ceiling)
            if free_at > self._monotonic():
                for r in self._repos.values():
                    r.next_due = max(r.next_due, free_at)
                limited = (
                    "PollBudgetSpent",
                    f"the safety-net poll spent its {ceiling} calls of the last hour; next poll in "
                    f"{free_at - self._monotonic():.0f}s",
                )
                break
            try:
                await self._poll(repo, interval)
                polled.append((repo, self._monotonic()))
            except RateLimitedError as exc:
                self.rate_limited += 1
                self.metrics.poll_runs.labels("rate_limited").inc()
                resume = self._mono_of(exc.resume_at)
                for r in self._repos.values():
                    r.next_due = max(r.next_due, resume)
                limited = (
                    "RateLimited",
                    f"GitHub rate limit ({exc.resource}) until {_fmt(exc.resume_at)}: "
                    "the safety-net poll waits",
                )
                break
            except GitHubError as exc:
                log.warning("safety-net poll of %s failed: %s", repo.repository, exc)
                self.metrics.poll_runs.labels("failed").inc()
                repo.next_due = self._monotonic() + min(the_plan.interval, 30.0)
                continue
            repo.next_due = self._monotonic() + interval
        if polled:
            self._adapt(the_plan.interval, spread=the_plan.interval / the_plan.wanted)
            interval = max(the_plan.interval, self.pace or 0.0)
            self.metrics.poll_interval.set(interval)
            for repo, at in polled:
                repo.next_due = at + interval
        self._limited = limited
        wake = min(r.next_due for r in self._repos.values()) - self._monotonic()
        return Result(requeue_after=max(wake, 0.01))

    def _audit_healthy(self) -> bool:
        return self.audit is not None and self.audit.healthy()

    def _pace_learned(self, learned: list[_Repo], the_plan: PollPlan, now: float) -> float:
        """The interval now; a repository a delivery just taught is first polled one interval later
        (the audit's long bound while it is healthy). The audit turning unhealthy brings the pace and
        every repository's next poll back within today's bound at once."""
        audited = self._audit_healthy()
        if self._audited and not audited:
            today = max(stretched_bound(self.options.poll_max_interval, the_plan.interval / the_plan.wanted),
                        the_plan.interval)  # fmt: skip
            if self.pace is not None and self.pace > today:
                self.pace = today
                self.observer.backstop_age = today
            self.observer.defer_bound = today
            soon = now + max(the_plan.interval, self.pace or 0.0)
            for repo in self._repos.values():
                repo.next_due = min(repo.next_due, soon)
            log.info(
                "safety-net poll: the webhook delivery audit is unhealthy; back to every %.0fs at most", today
            )
        self._audited = audited
        interval = max(the_plan.interval, self.pace or 0.0)
        first = max(interval, self.audit.bound) if audited and self.audit is not None else interval
        for repo in learned:
            repo.next_due = now + first
        return interval

    def _defer_while_rate_limited(self) -> tuple[str, str] | None:
        """While GitHub's core limit is spent (or down to its last 2 %), every repository's next poll
        waits for its reset; the condition that says so."""
        paused = self.github.paused_until("core")
        core = self.github.rate_limits.get("core")
        if paused is None and core is not None and core.reset_at > self._wall():
            reserve = max(10, core.limit // 50)
            if core.remaining <= reserve:
                paused = core.reset_at
        if paused is None:
            return None
        self.deferred += 1
        resume = self._mono_of(paused)
        for repo in self._repos.values():
            repo.next_due = max(repo.next_due, resume)
        return (
            "RateLimited",
            f"GitHub's core rate limit is (nearly) spent: the safety-net poll waits until {_fmt(paused)}",
        )

    def _refused(self) -> int:
        """Deliveries the webhook endpoint refused so far (bad signature, malformed, failed)."""
        total = 0.0
        for family in self.metrics.webhook_deliveries.collect():
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("outcome") in REFUSED_OUTCOMES:
                    total += sample.value
        return int(total)

    def _adapt(self, short: float, spread: float = 1.0) -> None:
        """After a round of polls: the next interval (:func:`runnerd.reconcile.pollpace.next_interval`);
        ``spread``: how much wider than wanted the budget spaced the short interval (it widens the
        stretched bound alike: :func:`runnerd.reconcile.pollpace.stretched_bound`)."""
        applied, refused = self.ledger.applied, self._refused()
        self._since_reset += applied - self._applied_seen
        evidence = PollEvidence(
            applied=applied - self._applied_seen,
            refused=refused - self._refused_seen,
            missed=self._round_missed,
            unannounced_queued=self._round_unannounced,
            since_reset=self._since_reset,
        )
        self._applied_seen, self._refused_seen = applied, refused
        self._round_missed = self._round_unannounced = 0
        longest = stretched_bound(self.options.poll_max_interval, spread)
        if self.audit is not None:
            longest = audited_bound(longest, self.audit.bound, self.audit.healthy())
        pace, step, why = next_interval(self.pace or short, evidence, Pace(short, longest))
        self.pace_steps[step] += 1
        if step == "reset":
            self._since_reset = 0
        if step == "reset" and (self.pace or short) > short:
            log.info("safety-net poll: back to every %.0fs: %s", short, why)
            soon = self._monotonic() + short
            for repo in self._repos.values():
                repo.next_due = min(repo.next_due, soon)
        self.pace = pace
        self.observer.backstop_age = pace
        self.observer.defer_bound = max(longest, short)

    async def _poll(self, repo: _Repo, interval: float) -> int:
        # an observation the metric made in the last half interval serves the poll too
        recheck, repo.recheck = repo.recheck, False
        if recheck:
            obs = await self.observer.observe(repo.repository, max_age=0.0, jobs_max_age=0.0, defer=False)
        else:
            obs = await self.observer.observe(repo.repository, max_age=interval / 2)
        self.polls += 1
        repo.polls += 1
        for run_id in [r for r in repo.runs if r not in obs.runs]:
            finished = repo.runs.pop(run_id)
            for job_id in finished.jobs:
                hra = repo.reserved.pop(job_id, None)
                if hra is not None:
                    await self.sink.complete_polled(hra, job_id)
        changed = 0
        # a queued job is covered while a live reservation holds it: one that expired before the job
        # got a runner (or was released by mistake) is reserved again, even in a run that did not change
        live = self.sink.reservations_of(repo.repository)
        for job_id in [j for j in repo.reserved if j not in live]:
            del repo.reserved[job_id]
        for snap in obs.runs.values():
            run = snap.run
            known = repo.runs.get(run.id)
            uncovered = any(j.status == "queued" and j.id not in live for j in snap.jobs)
            if known is not None and known.signature == (snap.signature, snap.jobs_at) and not uncovered:
                continue
            changed += 1
            repo.runs[run.id] = _Run(
                (snap.signature, snap.jobs_at), {j.id: j.status or "" for j in snap.jobs}
            )
            owner = (run.raw.get("repository") or {}).get("owner") or {}
            owner_type = str(owner.get("type") or repo.owner_type or "Organization")
            organization = repo.organization or (
                repo.repository.split("/", 1)[0] if owner_type == "Organization" else None
            )
            unannounced = not self.ledger.facts(repo.repository, run.id, 0.0).announced
            counted = False
            for job in snap.jobs:
                if job.status != "queued" or job.id in live:
                    continue
                event = JobEvent(
                    repository=repo.repository,
                    labels=job.labels,
                    owner_type=owner_type,
                    organization=organization,
                    enterprise=repo.enterprise,
                )
                effect, hra = await self.sink.reserve_polled(event, job.id, repo.repository, job=job)
                if hra is not None:
                    repo.reserved[job.id] = hra
                    if unannounced and not counted and effect in ("reserved", "unchanged"):
                        counted = True  # a queued job an HRA serves, in a run no delivery announced
                        self._round_unannounced += 1
                if effect == "reserved":
                    self._recovered(job.id, repo.repository, hra, recheck=recheck)
        await self._release_finished(obs)
        self.calls += obs.calls
        self.metrics.poll_runs.labels("changed" if changed else "unchanged").inc()
        return obs.calls

    def _recovered(self, job_id: int, repository: str, hra: Key | None, *, recheck: bool) -> None:
        """Count and log a job the poll gave a runner: a recheck's job lost its runner to another job
        (the webhooks were not lost), any other was queued without a webhook."""
        if recheck:
            self.rechecked += 1
            self.metrics.poll_jobs_rechecked.inc()
            log.info("safety-net poll: recheck of %s: job %s was still queued after its runner went; "
                     "made it a new runner on %s", repository, job_id, hra)  # fmt: skip
            return
        self.recovered += 1
        self._round_missed += 1
        self.metrics.poll_jobs_recovered.inc()
        log.info("safety-net poll: job %s of %s was queued without a webhook; reserved a runner on %s",
                 job_id, repository, hra)  # fmt: skip

    async def _release_finished(self, obs: RepoObservation) -> None:
        """Release every live reservation of this repository's jobs that GitHub shows finished: the
        job is listed as completed, or it is in no active run although the listing was made more than
        :data:`FINISHED_GRACE` seconds after the reservation (whoever made it, before a restart too).
        A job the deliveries announced in a run whose jobs were not listed is in an active run."""
        listed = {j.id: j.status for j in obs.jobs()}
        unlisted = obs.unlisted()
        for job_id, (hra, since) in self.sink.reservations_of(obs.repository).items():
            status = listed.get(job_id)
            if status is None and self.ledger.run_of(obs.repository, job_id) in unlisted:
                continue  # its run is active, its jobs were not listed (the deliveries announced it)
            if status == "completed" or (status is None and obs.fetched_wall - since > FINISHED_GRACE):
                repo = self._repos.get(obs.repository.casefold())
                if repo is not None:
                    repo.reserved.pop(job_id, None)
                if await self.sink.complete_polled(hra, job_id) == "released":
                    self.released_finished += 1
                    log.info(
                        "safety-net poll: job %s of %s finished on GitHub; released its reservation on %s",
                        job_id,
                        obs.repository,
                        hra,
                    )


def _fmt(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
