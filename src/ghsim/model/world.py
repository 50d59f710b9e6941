""":class:`World`: all simulated state behind one object, a thin facade over the model's sections.

Why a facade (composition) and not mixins: the sections share little state and depend on each
other in one direction (each uses only sections listed before it: registry, runner groups,
credentials, hooks, router, runs, runner pool, dispatch, timers); as objects, each states what it
needs in its constructor and keeps its own indexes private, which mixins sharing one ``self`` could
not.  Callers keep one object and the old API: ``world.jobs``, ``world.create_org(...)``,
``world.tick()``.  The job and runner tables are created here and handed to the sections that
read them (the router, the runs, the runner pool, the timers).

What this class adds:

* the tables callers read (``jobs``, ``runners``, ``repos``, ...) are the sections' own dicts;
* a method that one section implements is that section's bound method (assigned in ``__init__``);
* a method that spans sections is written out here: creating an account or repository (its Default
  runner group, routing invalidated), creating or changing a runner group (routing invalidated,
  queued jobs re-matched), and :meth:`summary`.
"""

from __future__ import annotations

from typing import Any, Unpack

from ..clock import Clock
from ..config import SimConfig
from ..entities import Enterprise, Job, Org, Repo, Runner, RunnerGroup, Scope
from .credentials import Credentials
from .dispatch import Dispatch
from .events import Events, EventSink
from .groups import GroupPolicyChange, NewGroupPolicy, RunnerGroups
from .hooks import Hooks
from .registry import Registry
from .routing import Router
from .runners import RunnerPool, decode_jit
from .runs import Runs
from .timers import Timers


class World:
    """All simulated state.  Every method is synchronous and takes its time from ``clock``.

    Sections: ``registry``, ``runner_groups``, ``credentials``, ``hook_table``, ``router``,
    ``run_table``, ``pool`` (runners), ``dispatch``, ``timers``; ``events`` reports to the sink
    and the observers.
    """

    decode_jit = staticmethod(decode_jit)

    def __init__(self, clock: Clock, config: SimConfig | None = None, sink: EventSink | None = None) -> None:
        self.clock = clock
        self.config = config or SimConfig()
        self.events = Events(sink)
        jobs: dict[int, Job] = {}
        runners: dict[int, Runner] = {}
        self.registry = Registry(clock)
        self.runner_groups = RunnerGroups(self.registry)
        self.credentials = Credentials(clock, self.config, self.registry)
        self.hook_table = Hooks(self.registry, self.credentials)
        self.router = Router(
            clock, self.registry, self.runner_groups, self.events, jobs=jobs, runners=runners
        )
        self.run_table = Runs(clock, self.registry, self.events, self.router, jobs=jobs)
        self.pool = RunnerPool(
            clock,
            self.config,
            self.registry,
            self.runner_groups,
            self.credentials,
            self.events,
            self.router,
            self.run_table,
            runners=runners,
        )
        self.dispatch = Dispatch(clock, self.events, self.router, self.run_table, self.pool)
        self.timers = Timers(
            clock, self.config, self.registry, self.credentials, self.router, self.run_table, runners=runners
        )
        self._bind_tables()
        self._bind_methods()

    def _bind_tables(self) -> None:
        registry, credentials = self.registry, self.credentials
        self.enterprises = registry.enterprises
        self.orgs = registry.orgs
        self.users = registry.users
        self.repos = registry.repos  # key: full name, lower case
        self.repos_by_id = registry.repos_by_id
        self.groups = self.runner_groups.groups  # scope key -> id -> group
        self.apps = credentials.apps
        self.installations = credentials.installations
        self.pats = credentials.pats
        self.pats_by_id = credentials.pats_by_id
        self.issued = credentials.issued
        self.installation_tokens = credentials.installation_tokens
        self.hooks = self.hook_table.hooks
        self.runners = self.pool.runners
        self.runs = self.run_table.runs
        self.jobs = self.run_table.jobs
        #: more observers of model events (the Actions service's scale sets), called after ``sink``
        self.observers = self.events.observers
        #: called with the time at the end of every :meth:`tick`
        self.tick_hooks = self.timers.tick_hooks

    def _bind_methods(self) -> None:
        registry, groups, creds, hooks = self.registry, self.runner_groups, self.credentials, self.hook_table
        pool, dispatch, runs = self.pool, self.dispatch, self.run_table
        router, timers = self.router, self.timers
        # registry
        self.create_user = registry.create_user
        self.enterprise = registry.enterprise
        self.org = registry.org
        self.repo = registry.repo
        self.repo_by_name = registry.repo_by_name
        self.scope_exists = registry.scope_exists
        self.enterprise_of_repo = registry.enterprise_of_repo
        # runner groups
        self.group = groups.group
        self.group_by_name = groups.group_by_name
        self.inherited_groups = groups.inherited_groups
        self.org_groups = groups.org_groups
        self.enterprise_groups = groups.enterprise_groups
        self.group_repositories = groups.group_repositories
        self.group_organizations = groups.group_organizations
        self.admits = groups.admits
        # credentials and hooks
        self.create_app = creds.create_app
        self.create_installation = creds.create_installation
        self.create_pat = creds.create_pat
        self.issue_token = creds.issue_token
        self.issue_installation_token = creds.issue_installation_token
        self.installation_covers = creds.installation_covers
        self.installation_for = creds.installation_for
        self.create_hook = hooks.create_hook
        self.set_hook_faults = hooks.set_hook_faults
        # runner pool
        self.runners_in = pool.runners_in
        self.runner = pool.runner
        self.runner_online = pool.runner_online
        self.runner_busy = pool.runner_busy
        self.generate_jit = pool.generate_jit
        self.delete_runner = pool.delete_runner
        self.set_labels = pool.set_labels
        self.remove_label = pool.remove_label
        self.remove_custom_labels = pool.remove_custom_labels
        self.register_runner = pool.register_runner
        self.redeem_jit = pool.redeem_jit
        self.remove_with_token = pool.remove_with_token
        self.runner_for_session = pool.runner_for_session
        # dispatch: the runner side of the job protocol
        self.poll = dispatch.poll
        self.start_job = dispatch.start_job
        self.heartbeat = dispatch.heartbeat
        self.complete_job = dispatch.complete_job
        self.disconnect = dispatch.disconnect
        self.cancel_run = dispatch.cancel_run
        # runs and jobs
        self.enqueue_run = runs.enqueue_run
        self.approve = runs.approve
        self.rerun = runs.rerun
        self.runs_of = runs.runs_of
        self.jobs_of = runs.jobs_of
        self.job_times = runs.job_times
        self.iter_jobs = runs.iter_jobs
        # routing and time
        self.eligible = router.eligible
        self.queued_count = router.queued_count
        self.schedule_trace = timers.schedule_trace
        self.next_deadline = timers.next_deadline
        self.tick = timers.tick

    # ----------------------------------------------------------------------------------------
    # the clock and the sink

    def now(self) -> float:
        return self.clock.now()

    @property
    def sink(self) -> EventSink | None:
        """Called first with every model event (the HTTP layer's); may be replaced."""
        return self.events.sink

    @sink.setter
    def sink(self, sink: EventSink | None) -> None:
        self.events.sink = sink

    # ----------------------------------------------------------------------------------------
    # changes that span sections

    def create_enterprise(self, slug: str, name: str | None = None) -> Enterprise:
        ent = self.registry.create_enterprise(slug, name)
        self.runner_groups.add_default(Scope("enterprise", ent.slug))
        self.router.invalidate()
        return ent

    def create_org(self, login: str, enterprise: str | None = None, description: str | None = None) -> Org:
        org = self.registry.create_org(login, enterprise, description)
        self.runner_groups.add_default(Scope("org", org.login))
        self.router.invalidate()
        return org

    def create_repo(self, owner: str, name: str, private: bool = True) -> Repo:
        repo = self.registry.create_repo(owner, name, private)
        self.router.invalidate()
        return repo

    def create_group(self, scope: Scope, name: str, **policy: Unpack[NewGroupPolicy]) -> RunnerGroup:
        group = self.runner_groups.create_group(scope, name, **policy)
        self.router.invalidate()
        return group

    def delete_group(self, scope: Scope, group_id: int) -> None:
        """Remove a custom runner group: its runners move to ``Default`` (as on GitHub), queued jobs
        are re-matched at once."""
        group = self.runner_groups.group(scope, group_id)
        default = self.runner_groups.delete_group(scope, group_id)
        for runner in self.runners.values():
            if runner.group is group:
                runner.group = default
        self.router.invalidate()
        self.router.rematch_all()

    def update_group(self, scope: Scope, group_id: int, **change: Unpack[GroupPolicyChange]) -> RunnerGroup:
        """Change a group's policy; queued jobs are re-matched at once."""
        group = self.runner_groups.update_group(scope, group_id, **change)
        self.router.invalidate()
        self.router.rematch_all()
        return group

    # ----------------------------------------------------------------------------------------
    # reporting

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {"waiting": 0, "queued": 0, "assigned": 0, "in_progress": 0, "completed": 0}
        for job in self.jobs.values():
            if job.status == "queued" and job.runner_id is not None:
                counts["assigned"] += 1
            else:
                counts[job.status] += 1
        online = sum(1 for r in self.runners.values() if self.runner_online(r))
        return {
            "jobs": counts,
            "runners": {
                "total": len(self.runners),
                "online": online,
                "idle": self.router.idle_count(),
                "busy": sum(1 for r in self.runners.values() if r.job_id is not None),
            },
        }
