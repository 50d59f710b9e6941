"""The pure model: runs and jobs over time, tokens, traces, seeds, settings."""

from __future__ import annotations

import pytest

from ghsim import JobSpec, ManualClock, SimConfig, World
from ghsim.entities import Scope
from ghsim.errors import Conflict, RegistrationError, ValidationFailed
from ghsim.state import apply_seed, export_seed
from ghsim.trace import parse_trace

from .conftest import populate
from .test_routing import online_runner


def test_run_status_follows_its_jobs(world: World) -> None:
    populate(world)
    run = world.enqueue_run(
        world.repo_by_name("octo-org/app"), [JobSpec(("x",)), JobSpec(("x",), conclusion="failure")]
    )
    assert (run.status, run.conclusion) == ("queued", None)
    a = online_runner(world, Scope("repo", "octo-org/app"), ["x"], name="a")
    b = online_runner(world, Scope("repo", "octo-org/app"), ["x"], name="b")
    assert run.status == "queued"  # assigned is not started
    world.start_job(a.id, run.job_ids[0])
    assert run.status == "in_progress"
    world.complete_job(a.id, run.job_ids[0])
    world.complete_job(b.id, run.job_ids[1])  # uses the job's planned conclusion
    assert (run.status, run.conclusion) == ("completed", "failure")
    assert world.runs_of(world.repo_by_name("octo-org/app"), "failure") == [run]


def test_waiting_job_auto_approves(world: World, clock: ManualClock) -> None:
    populate(world)
    run = world.enqueue_run(world.repo_by_name("octo-org/app"), [JobSpec(("x",), wait=30)])
    job = world.jobs[run.job_ids[0]]
    assert (job.status, run.status, world.next_deadline()) == ("waiting", "waiting", clock.now() + 30)
    clock.advance(30)
    world.tick()
    assert (job.status, job.queued_at) == ("queued", clock.now())
    with pytest.raises(ValidationFailed):
        world.approve(job.id)


def test_rerun_creates_a_new_attempt(world: World) -> None:
    populate(world)
    run = world.enqueue_run(world.repo_by_name("octo-org/app"), [JobSpec(("x",))])
    with pytest.raises(Conflict):
        world.rerun(run.id)
    world.cancel_run(run.id)
    world.rerun(run.id)
    assert (run.run_attempt, run.status, len(run.job_ids)) == (2, "queued", 2)
    assert [j.run_attempt for j in world.jobs_of(run)] == [2]
    assert [j.run_attempt for j in world.jobs_of(run, latest=False)] == [1, 2]


def test_registration_tokens(world: World, clock: ManualClock) -> None:
    populate(world)
    scope = Scope("repo", "octo-org/app")
    tok = world.issue_token(scope, "registration").token
    first = world.register_runner(tok, scope, "a", [])
    second = world.register_runner(tok, scope, "b", [])  # reusable within the hour
    assert first.runner.id != second.runner.id
    with pytest.raises(RegistrationError) as wrong_scope:
        world.register_runner(tok, Scope("org", "octo-org"), "c", [])
    remove = world.issue_token(scope, "remove").token
    with pytest.raises(RegistrationError) as remove_is_not_registration:
        world.register_runner(remove, scope, "d", [])
    clock.advance(3600)
    with pytest.raises(RegistrationError) as expired:
        world.register_runner(tok, scope, "e", [])
    assert [e.value.reason for e in (wrong_scope, remove_is_not_registration, expired)] == [
        "invalid_token",
        "invalid_token",
        "expired_token",
    ]


def test_remove_token_deregisters(world: World) -> None:
    populate(world)
    scope = Scope("org", "octo-org")
    r = online_runner(world, scope, [], name="gone")
    world.remove_with_token(world.issue_token(scope, "remove").token, scope, "gone")
    assert r.id not in world.runners
    with pytest.raises(RegistrationError):
        world.remove_with_token("nope", scope, "gone")


def test_trace_replay_at_its_offsets(world: World, clock: ManualClock) -> None:
    populate(world)
    entries = parse_trace(
        [
            "# a comment",
            '{"t": 0, "repo": "octo-org/app", "labels": ["gpu"], "duration": 60}',
            "",
            '{"t": 10.5, "repo": "octo-org/app", "labels": ["gpu"], "duration": 5, '
            '"conclusion": "failure", "group": "gpu"}',
        ]
    )
    assert world.schedule_trace(entries) == 2
    world.tick()
    assert len(world.jobs) == 1
    assert world.next_deadline() == clock.now() + 10.5
    clock.advance(10)
    world.tick()
    assert len(world.jobs) == 1
    clock.advance(1)
    world.tick()
    second = list(world.jobs.values())[1]
    assert (second.duration, second.planned_conclusion, second.group, second.created_at) == (
        5.0,
        "failure",
        "gpu",
        clock.now(),
    )


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"repo": "o/r", "labels": ["x"], "duration": 1}', "t must be"),
        ('{"t": 0, "repo": "nope", "labels": ["x"], "duration": 1}', "repo must be"),
        ('{"t": 0, "repo": "o/r", "labels": [], "duration": 1}', "labels must be"),
        ('{"t": 0, "repo": "o/r", "labels": ["x"], "duration": -1}', "duration must be"),
        (
            '{"t": 0, "repo": "o/r", "labels": ["x"], "duration": 1, "conclusion": "meh"}',
            "conclusion must be",
        ),
    ],
)
def test_trace_errors_name_the_line(line: str, error: str) -> None:
    with pytest.raises(ValidationFailed, match=f"trace line 1: {error}"):
        parse_trace([line])


def test_job_times_record_the_lifecycle(world: World, clock: ManualClock) -> None:
    populate(world)
    run = world.enqueue_run(world.repo_by_name("octo-org/app"), [JobSpec(("x",), duration=30)])
    job_id = run.job_ids[0]
    clock.advance(5)
    r = online_runner(world, Scope("repo", "octo-org/app"), ["x"])
    clock.advance(2)
    world.start_job(r.id, job_id)
    clock.advance(30)
    world.complete_job(r.id, job_id)
    t = world.job_times(world.jobs[job_id])
    start = t["created_at"]
    assert [t[k] - start for k in ("queued_at", "assigned_at", "started_at", "completed_at")] == [0, 5, 7, 37]


def test_seed_round_trip(world: World) -> None:
    setup = populate(world)
    world.create_hook(
        "http://127.0.0.1:1/h", scope=Scope("org", "octo-org"), secret="s", faults={"drop": 0.1}
    )
    world.config.primary.pat = 42
    seed = export_seed(world)
    again = World(ManualClock())
    apply_seed(again, seed)
    assert export_seed(again) == seed
    assert again.pats[setup.admin].scopes == world.pats[setup.admin].scopes
    assert again.apps[setup.app_id].public_key_pem == world.apps[setup.app_id].public_key_pem
    assert again.config.primary.pat == 42


def test_seed_with_generated_app_key() -> None:
    world = World(ManualClock())
    created = apply_seed(
        world,
        {
            "orgs": [{"login": "o"}],
            "repos": [{"full_name": "o/r", "private": False}],
            "apps": [{"slug": "a"}],
            "installations": [{"app": "a", "account": "o", "repositories": ["o/r"]}],
            "runs": [{"repo": "o/r", "jobs": [{"labels": ["x"], "duration": 3}]}],
        },
    )
    assert created["apps"][0]["private_key_pem"].startswith("-----BEGIN PRIVATE KEY-----")
    assert world.installations[created["installations"][0]["id"]].repository_selection == "selected"
    assert len(world.jobs) == 1


@pytest.mark.parametrize(
    "seed",
    [
        {"bogus": []},
        {"orgs": {"login": "o"}},
        {"orgs": [{"login": ""}]},
        {"repos": [{"full_name": "o/r", "private": "yes"}]},
        {"config": {"primary": {"pat": "many"}}},
        {"config": {"nonsense": 1}},
    ],
)
def test_bad_seeds_are_rejected(seed: dict[str, object]) -> None:
    with pytest.raises(ValidationFailed):
        apply_seed(World(ManualClock()), seed)


def test_config_update() -> None:
    config = SimConfig()
    config.update({"long_poll_s": 2, "secondary": {"enabled": False}, "primary": {"installation": 15000}})
    assert (config.long_poll_s, config.secondary.enabled, config.primary.installation) == (2.0, False, 15000)
    with pytest.raises(ValidationFailed):
        config.update({"secondary": {"enabled": 1}})


def test_entities_are_validated(world: World) -> None:
    populate(world)
    with pytest.raises(ValidationFailed):
        world.create_org("octo-org")
    with pytest.raises(Conflict):
        world.create_group(Scope("org", "octo-org"), "GPU")
    with pytest.raises(ValidationFailed):
        world.create_group(Scope("enterprise", "acme"), "p", visibility="private")
    with pytest.raises(ValidationFailed):
        world.create_group(Scope("org", "octo-org"), "x", selected_repositories=["other-org/lib"])
    with pytest.raises(ValidationFailed):
        JobSpec(())
    with pytest.raises(ValidationFailed):
        JobSpec(("x",), conclusion="timed_out")


def test_summary_counts(world: World) -> None:
    populate(world)
    online_runner(world, Scope("repo", "octo-org/app"), ["x"])
    world.enqueue_run(world.repo_by_name("octo-org/app"), [JobSpec(("x",)), JobSpec(("y",))])
    summary = world.summary()
    assert summary["jobs"] == {"waiting": 0, "queued": 1, "assigned": 1, "in_progress": 0, "completed": 0}
    assert summary["runners"] == {"total": 1, "online": 1, "idle": 0, "busy": 1}


def test_package_exports() -> None:
    import ghsim
    from ghsim.server import Simulator

    assert sorted(ghsim.__all__) == sorted(ghsim._EXPORTS)
    assert [getattr(ghsim, name).__name__ for name in ghsim.__all__] == ghsim.__all__
    assert (ghsim.World, ghsim.Simulator) == (World, Simulator)
    with pytest.raises(AttributeError):
        _ = ghsim.nope  # type: ignore[attr-defined]
