"""Routing in the pure model: which runner gets which job (no HTTP, no sleeping)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from ghsim import JobSpec, ManualClock, World
from ghsim.entities import Runner, Scope
from ghsim.errors import ValidationFailed

from .conftest import populate


def online_runner(
    world: World,
    scope: Scope,
    labels: list[str],
    *,
    name: str | None = None,
    group: str | None = None,
    ephemeral: bool = False,
    default_labels: bool = True,
) -> Runner:
    """Register a runner with a registration token and bring it online (first poll)."""
    token = world.issue_token(scope, "registration").token
    name = name or f"runner-{len(world.runners) + 1}"
    reg = world.register_runner(
        token, scope, name, labels, group=group, ephemeral=ephemeral, default_labels=default_labels
    )
    world.poll(reg.runner.id)
    return reg.runner


def enqueue(world: World, repo: str, labels: tuple[str, ...], **kw: object) -> int:
    run = world.enqueue_run(world.repo_by_name(repo), [JobSpec(labels, **kw)])  # type: ignore[arg-type]
    return run.job_ids[0]


@dataclass(frozen=True)
class Case:
    id: str
    repo: str
    job: tuple[str, ...]
    runner: tuple[str, str]  # scope kind, name
    labels: tuple[str, ...] = ()
    expect: bool = True
    group: str | None = None
    job_group: str | None = None
    default_labels: bool = True
    prepare: Callable[[World], object] | None = None


def _public_group(world: World) -> object:
    return world.create_group(Scope("org", "octo-org"), "public-ok", allows_public_repositories=True)


def _private_group(world: World) -> object:
    return world.create_group(Scope("org", "octo-org"), "private-only", visibility="private")


CASES = [
    # labels: the runner must have every label of the job, compared case-insensitively
    Case("labels-exact", "octo-org/app", ("self-hosted", "gpu"), ("repo", "octo-org/app"), ("gpu",)),
    Case("labels-superset", "octo-org/app", ("gpu",), ("repo", "octo-org/app"), ("gpu", "a100", "big")),
    Case(
        "labels-missing-one",
        "octo-org/app",
        ("gpu", "a100"),
        ("repo", "octo-org/app"),
        ("gpu",),
        expect=False,
    ),
    Case("labels-case", "octo-org/app", ("Self-Hosted", "GPU"), ("repo", "octo-org/app"), ("gpu",)),
    Case("labels-default-os-arch", "octo-org/app", ("self-hosted", "linux", "x64"), ("repo", "octo-org/app")),
    Case(
        "labels-no-defaults",
        "octo-org/app",
        ("self-hosted", "gpu"),
        ("repo", "octo-org/app"),
        ("gpu",),
        expect=False,
        default_labels=False,
    ),
    Case(
        "labels-custom-only-no-defaults",
        "octo-org/app",
        ("gpu",),
        ("repo", "octo-org/app"),
        ("gpu",),
        default_labels=False,
    ),
    # repository runners serve their repository only
    Case("repo-runner-other-repo", "octo-org/site", ("self-hosted",), ("repo", "octo-org/app"), expect=False),
    Case("repo-runner-user-repo", "alice/dotfiles", ("self-hosted",), ("repo", "alice/dotfiles")),
    # organization runners: groups visible to the repository; public repositories need the flag
    Case("org-default-private-repo", "octo-org/app", ("self-hosted",), ("org", "octo-org")),
    Case("org-default-public-repo", "octo-org/site", ("self-hosted",), ("org", "octo-org"), expect=False),
    Case(
        "org-group-allows-public",
        "octo-org/site",
        ("self-hosted",),
        ("org", "octo-org"),
        group="public-ok",
        prepare=_public_group,
    ),
    Case(
        "org-selected-group-listed-repo", "octo-org/app", ("self-hosted",), ("org", "octo-org"), group="gpu"
    ),
    Case(
        "org-private-group-private-repo",
        "octo-org/app",
        ("self-hosted",),
        ("org", "octo-org"),
        group="private-only",
        prepare=_private_group,
    ),
    Case("org-runner-other-org", "other-org/lib", ("self-hosted",), ("org", "octo-org"), expect=False),
    Case("org-runner-user-repo", "alice/dotfiles", ("self-hosted",), ("org", "octo-org"), expect=False),
    # enterprise runners: groups shared with the repository's organization
    Case("enterprise-default-member-org", "other-org/lib", ("self-hosted",), ("enterprise", "acme")),
    Case(
        "enterprise-default-non-member",
        "solo-org/tool",
        ("self-hosted",),
        ("enterprise", "acme"),
        expect=False,
    ),
    Case("enterprise-selected-org", "octo-org/app", ("self-hosted",), ("enterprise", "acme"), group="shared"),
    Case(
        "enterprise-selected-other-org",
        "other-org/lib",
        ("self-hosted",),
        ("enterprise", "acme"),
        group="shared",
        expect=False,
    ),
    # runs-on: {group: ...}
    Case(
        "job-group-match", "octo-org/app", ("self-hosted",), ("org", "octo-org"), group="gpu", job_group="GPU"
    ),
    Case(
        "job-group-mismatch",
        "octo-org/app",
        ("self-hosted",),
        ("org", "octo-org"),
        job_group="gpu",
        expect=False,
    ),
]


@pytest.mark.parametrize("order", ["runner-first", "job-first"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_routing_table(case: Case, order: str, world: World) -> None:
    populate(world)
    if case.prepare is not None:
        case.prepare(world)

    def runner() -> Runner:
        return online_runner(
            world,
            Scope(*case.runner),
            list(case.labels),
            group=case.group,
            default_labels=case.default_labels,  # type: ignore[arg-type]
        )

    if order == "runner-first":
        r = runner()
        job_id = enqueue(world, case.repo, case.job, group=case.job_group)
    else:
        job_id = enqueue(world, case.repo, case.job, group=case.job_group)
        r = runner()
    job = world.jobs[job_id]
    if case.expect:
        assert (job.runner_id, r.job_id) == (r.id, job_id)
    else:
        assert (job.runner_id, r.job_id, job.status) == (None, None, "queued")


def test_org_selected_group_hides_unlisted_repo(world: World) -> None:
    populate(world)
    world.create_repo("octo-org", "other", private=True)
    r = online_runner(world, Scope("org", "octo-org"), [], group="gpu")
    job_id = enqueue(world, "octo-org/other", ("self-hosted",))
    assert (world.jobs[job_id].runner_id, r.job_id) == (None, None)


def test_group_visibility_change_releases_waiting_job(world: World) -> None:
    populate(world)
    world.create_repo("octo-org", "other", private=True)
    r = online_runner(world, Scope("org", "octo-org"), [], group="gpu")
    job_id = enqueue(world, "octo-org/other", ("self-hosted",))
    world.update_group(
        Scope("org", "octo-org"), r.group_id, selected_repositories=["octo-org/app", "octo-org/other"]
    )
    assert world.jobs[job_id].runner_id == r.id


def test_offline_runner_never_gets_a_job(world: World, clock: ManualClock) -> None:
    populate(world)
    scope = Scope("repo", "octo-org/app")
    token = world.issue_token(scope, "registration").token
    never_polled = world.register_runner(token, scope, "never-polled", ["gpu"]).runner
    went_away = online_runner(world, scope, ["gpu"], name="went-away")
    clock.advance(world.config.runner_offline_after_s + 1)
    world.tick()
    job_id = enqueue(world, "octo-org/app", ("gpu",))
    assert world.jobs[job_id].runner_id is None
    assert (never_polled.job_id, went_away.job_id) == (None, None)
    assert not world.runner_online(never_polled)
    assert not world.runner_online(went_away)
    # the job is still there for a runner that comes (back) online
    world.poll(went_away.id)
    assert world.jobs[job_id].runner_id == went_away.id


def test_job_nobody_can_take_stays_queued_then_fails_after_a_day(world: World, clock: ManualClock) -> None:
    populate(world)
    job_id = enqueue(world, "octo-org/app", ("self-hosted", "tpu"))
    clock.advance(23 * 3600)
    world.tick()
    assert world.jobs[job_id].status == "queued"
    clock.advance(3600)
    world.tick()
    assert (world.jobs[job_id].status, world.jobs[job_id].conclusion) == ("completed", "cancelled")


def test_repo_runner_preferred_over_org_and_enterprise(world: World) -> None:
    populate(world)
    ent = online_runner(world, Scope("enterprise", "acme"), ["x"], name="ent")
    org = online_runner(world, Scope("org", "octo-org"), ["x"], name="org")
    repo = online_runner(world, Scope("repo", "octo-org/app"), ["x"], name="repo")
    first = enqueue(world, "octo-org/app", ("x",))
    second = enqueue(world, "octo-org/app", ("x",))
    third = enqueue(world, "octo-org/app", ("x",))
    assert [world.jobs[j].runner_id for j in (first, second, third)] == [repo.id, org.id, ent.id]


def test_oldest_job_first_and_longest_idle_runner_first(world: World, clock: ManualClock) -> None:
    populate(world)
    jobs = [enqueue(world, "octo-org/app", ("x",)) for _ in range(3)]
    a = online_runner(world, Scope("repo", "octo-org/app"), ["x"], name="a")
    b = online_runner(world, Scope("repo", "octo-org/app"), ["x"], name="b")
    assert (a.job_id, b.job_id) == (jobs[0], jobs[1])
    world.complete_job(b.id, jobs[1])  # b takes the third job at once
    assert b.job_id == jobs[2]
    world.complete_job(a.id, jobs[0])
    world.complete_job(b.id, jobs[2])
    # both idle now; a became idle before b, so a gets the next job
    later = enqueue(world, "octo-org/app", ("x",))
    assert world.jobs[later].runner_id == a.id


def test_ephemeral_runner_takes_exactly_one_job(world: World) -> None:
    populate(world)
    r = online_runner(world, Scope("repo", "octo-org/app"), ["x"], ephemeral=True)
    j1 = enqueue(world, "octo-org/app", ("x",))
    j2 = enqueue(world, "octo-org/app", ("x",))
    assert r.job_id == j1
    world.start_job(r.id, j1)
    removed = world.complete_job(r.id, j1)
    assert removed
    assert r.id not in world.runners
    assert world.poll(r.id) == "removed"
    assert (world.jobs[j2].status, world.jobs[j2].runner_id) == ("queued", None)


def test_non_ephemeral_runner_goes_on(world: World) -> None:
    populate(world)
    r = online_runner(world, Scope("repo", "octo-org/app"), ["x"])
    j1 = enqueue(world, "octo-org/app", ("x",))
    j2 = enqueue(world, "octo-org/app", ("x",))
    assert world.complete_job(r.id, j1) is False
    assert r.job_id == j2


def test_jit_config_registers_once(world: World) -> None:
    populate(world)
    runner, encoded = world.generate_jit(Scope("org", "octo-org"), "jit-1", 1, ["gpu"])
    assert (runner.ephemeral, runner.configured, runner.os) == (True, False, "unknown")
    reg = world.redeem_jit(encoded)
    assert (reg.runner, runner.os) == (runner, "Linux")
    from ghsim.errors import RegistrationError

    with pytest.raises(RegistrationError) as info:
        world.redeem_jit(encoded)
    assert info.value.reason == "jit_reused"


def test_jit_runner_offline_until_redeemed(world: World) -> None:
    populate(world)
    runner, encoded = world.generate_jit(Scope("org", "octo-org"), "jit-1", 1, ["gpu"])
    job_id = enqueue(world, "octo-org/app", ("gpu",))
    assert world.jobs[job_id].runner_id is None
    world.redeem_jit(encoded)
    world.poll(runner.id)
    assert world.jobs[job_id].runner_id == runner.id


def test_jit_does_not_reserve_a_job(world: World) -> None:
    """A JIT runner takes whichever matching job is oldest, not "its" job (GitHub behaviour)."""
    populate(world)
    old = enqueue(world, "octo-org/app", ("gpu",))
    new = enqueue(world, "octo-org/app", ("gpu",))
    runner, encoded = world.generate_jit(Scope("org", "octo-org"), "for-new-job", 1, ["gpu"])
    world.redeem_jit(encoded)
    world.poll(runner.id)
    assert (runner.job_id, world.jobs[new].runner_id) == (old, None)


def test_deleting_a_busy_runner_is_refused(world: World) -> None:
    populate(world)
    scope = Scope("repo", "octo-org/app")
    r = online_runner(world, scope, ["x"])
    job_id = enqueue(world, "octo-org/app", ("x",))
    world.start_job(r.id, job_id)
    with pytest.raises(ValidationFailed, match="is still running a job"):
        world.delete_runner(scope, r.id)
    world.complete_job(r.id, job_id)
    world.delete_runner(scope, r.id)
    assert r.id not in world.runners


def test_deleting_an_assigned_runner_requeues_its_job(world: World) -> None:
    populate(world)
    scope = Scope("repo", "octo-org/app")
    r = online_runner(world, scope, ["x"])
    job_id = enqueue(world, "octo-org/app", ("x",))
    world.delete_runner(scope, r.id)  # assigned but not started: not "running a job"
    assert (world.jobs[job_id].status, world.jobs[job_id].runner_id) == ("queued", None)


def test_busy_flag_lag_fault(world: World, clock: ManualClock) -> None:
    """With ``busy_flag_delay_s`` the runner reads idle for a while after starting (TF-AWS #5085)."""
    populate(world)
    world.config.busy_flag_delay_s = 30
    scope = Scope("repo", "octo-org/app")
    r = online_runner(world, scope, ["x"])
    job_id = enqueue(world, "octo-org/app", ("x",))
    world.start_job(r.id, job_id)
    assert world.runner_busy(r) is False
    clock.advance(31)
    assert world.runner_busy(r) is True


def test_unstarted_assignment_is_requeued_after_a_minute(world: World, clock: ManualClock) -> None:
    populate(world)
    silent = online_runner(world, Scope("repo", "octo-org/app"), ["x"], name="silent")
    job_id = enqueue(world, "octo-org/app", ("x",))
    assert world.jobs[job_id].runner_id == silent.id
    other = online_runner(world, Scope("org", "octo-org"), ["x"], name="other")
    clock.advance(61)
    world.tick()
    job = world.jobs[job_id]
    assert (job.runner_id, job.assignments, silent.job_id) == (other.id, 2, None)
    assert not world.runner_online(silent)


def test_lost_runner_fails_its_job_after_the_lease(world: World, clock: ManualClock) -> None:
    populate(world)
    r = online_runner(world, Scope("repo", "octo-org/app"), ["x"])
    job_id = enqueue(world, "octo-org/app", ("x",), duration=3600)
    world.start_job(r.id, job_id)
    clock.advance(300)
    assert world.heartbeat(r.id, job_id)
    clock.advance(world.config.job_lease_s + 1)
    world.tick()
    assert (world.jobs[job_id].status, world.jobs[job_id].conclusion) == ("completed", "failure")


def test_labels_change_reroutes(world: World) -> None:
    populate(world)
    scope = Scope("repo", "octo-org/app")
    r = online_runner(world, scope, [])
    job_id = enqueue(world, "octo-org/app", ("gpu",))
    assert r.job_id is None
    world.set_labels(scope, r.id, ["GPU"], add=True)
    assert r.job_id == job_id


def test_longest_idle_runner_wins_across_label_sets(world: World) -> None:
    populate(world)
    scope = Scope("repo", "octo-org/app")
    a = online_runner(world, scope, ["x"], name="a")
    b = online_runner(world, scope, ["x", "big"], name="b")
    online_runner(world, scope, ["x"], name="c")
    first = enqueue(world, "octo-org/app", ("x",))
    second = enqueue(world, "octo-org/app", ("x",))
    assert (world.jobs[first].runner_id, world.jobs[second].runner_id) == (a.id, b.id)
