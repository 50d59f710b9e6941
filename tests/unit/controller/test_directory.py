"""The runner directory's cost rule (a large scope's listing is held longer) and its webhook busy hints."""

from __future__ import annotations

import pytest

from runnerd.controller.directory import RunnerDirectory, held_for
from runnerd.github import Scope
from runnerd.github.models import Runner as GitHubRunner
from runnerd.reconcile.lifecycle import GitHubState
from tests.unit.controller.fakes import Clock, FakeGitHub

ORG = Scope.organization("octo")


@pytest.mark.parametrize(
    ("max_age", "runners", "held"),
    [
        (3.0, 0, 3.0),  # one page: what was asked
        (3.0, 100, 3.0),
        (3.0, 101, 6.0),  # two pages: one call per 6 s
        (3.0, 500, 24.0),
        (3.0, 1000, 54.0),
        (3.0, 5000, 60.0),  # never longer than the period
        (30.0, 1000, 54.0),
        (90.0, 1000, 90.0),  # an older listing asked for is never refused
    ],
)
def test_a_listing_is_held_one_spacing_per_page_beyond_the_first(
    max_age: float, runners: int, held: float
) -> None:
    assert held_for(max_age, runners, spacing=6.0, period=60.0) == held


def listed(n: int) -> list[GitHubRunner]:
    return [GitHubRunner(i, f"r-{i}", "linux", "online", False, ()) for i in range(n)]


async def test_a_registration_wave_of_a_large_scope_costs_a_listing_per_held_interval() -> None:
    github, clock = FakeGitHub(listed=listed(1000)), Clock()
    directory = RunnerDirectory(github, clock=clock)  # type: ignore[arg-type]
    directory.period = 60.0
    for _ in range(30):  # registering runners ask for a 3 s old listing every 2 s for a minute
        await directory.refresh(ORG, max_age=3.0)
        clock.now += 2.0
    assert github.calls.count("GET runners") == 2  # at 0 and after 54 s; not 20


async def test_a_small_scope_is_listed_as_fresh_as_asked() -> None:
    github, clock = FakeGitHub(listed=listed(100)), Clock()
    directory = RunnerDirectory(github, clock=clock)  # type: ignore[arg-type]
    for _ in range(5):
        await directory.refresh(ORG, max_age=3.0)
        clock.now += 4.0
    assert github.calls.count("GET runners") == 5


async def test_a_webhook_busy_hint_holds_until_completed_or_a_later_listing_lacks_the_runner() -> None:
    github, clock = FakeGitHub(listed=listed(1)), Clock()
    directory = RunnerDirectory(github, clock=clock)  # type: ignore[arg-type]
    await directory.refresh(ORG, max_age=0.0)
    assert directory.state(ORG, "new") is GitHubState.ABSENT
    clock.now += 1.0
    directory.hint_busy(ORG, "new", True)  # registered after the listing, and took a job
    assert directory.state(ORG, "new") is GitHubState.BUSY
    directory.hint_busy(ORG, "new", False)  # its completed delivery
    assert directory.state(ORG, "new") is GitHubState.ABSENT

    directory.hint_busy(ORG, "new", True)
    clock.now += 1.0
    await directory.refresh(ORG, max_age=0.0)  # started after the hint, and GitHub removed it
    assert directory.state(ORG, "new") is GitHubState.ABSENT
    directory.hint_busy(ORG, "r-0", True)
    assert directory.state(ORG, "r-0") is GitHubState.BUSY  # an online idle runner: the hint wins


async def test_a_hint_newer_than_the_listing_survives_it() -> None:
    github, clock = FakeGitHub(listed=listed(1)), Clock()
    directory = RunnerDirectory(github, clock=clock)  # type: ignore[arg-type]

    async def listing_then_hint() -> list[GitHubRunner]:
        directory.hint_busy(ORG, "new", True)  # the delivery lands while the listing is in flight
        clock.now += 1.0
        return listed(1)

    github.list_runners = lambda scope, **_: listing_then_hint()  # type: ignore[method-assign]
    clock.now += 1.0
    await directory.refresh(ORG, max_age=0.0)
    assert directory.state(ORG, "new") is GitHubState.BUSY


def test_a_sibling_directory_keeps_the_cost_rule() -> None:
    directory = RunnerDirectory(FakeGitHub())  # type: ignore[arg-type]
    directory.period, directory.spacing = 20.0, 2.0
    other = directory.sibling(FakeGitHub())  # type: ignore[arg-type]
    assert (other.period, other.spacing) == (20.0, 2.0)
