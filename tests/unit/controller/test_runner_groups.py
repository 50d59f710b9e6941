"""Runner-group ids are looked up again after a TTL or a 404; GitHub's default labels in matching."""

from __future__ import annotations

import pytest

from runnerd.controller.common import ControllerOptions, RunnerGroups, matching_labels
from runnerd.github import Scope
from runnerd.manifests.pod import PodOptions
from runnerd.reconcile.matching import job_fits_runner

ORG = Scope("organization", "octo-org")


class FakeGitHub:
    def __init__(self) -> None:
        self.ids = {"gpu": 7}
        self.calls = 0

    async def find_runner_group_id(self, scope: Scope, group: str) -> int:
        self.calls += 1
        return self.ids[group]


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_group_ids_are_cached_for_the_ttl_then_looked_up_again() -> None:
    github, clock = FakeGitHub(), Clock()
    groups = RunnerGroups(600.0, clock)
    assert await groups.id(github, ORG, "gpu") == 7  # type: ignore[arg-type]
    github.ids["gpu"] = 8  # deleted and re-created
    clock.now = 599.0
    assert await groups.id(github, ORG, "gpu") == 7  # type: ignore[arg-type]
    clock.now = 600.0
    assert await groups.id(github, ORG, "gpu") == 8  # type: ignore[arg-type]
    assert github.calls == 2


async def test_forget_after_a_404_looks_it_up_again() -> None:
    github, clock = FakeGitHub(), Clock()
    groups = RunnerGroups(600.0, clock)
    await groups.id(github, ORG, "gpu")  # type: ignore[arg-type]
    github.ids["gpu"] = 9
    assert groups.forget(ORG, "gpu")
    assert not groups.forget(ORG, "gpu")  # nothing cached: a 404 that is not about the group
    assert await groups.id(github, ORG, "gpu") == 9  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scope", "group"),
    [(ORG, None), (ORG, ""), (Scope("repository", "octo-org/app"), "gpu")],
)
async def test_default_group_needs_no_lookup(scope: Scope, group: str | None) -> None:
    github = FakeGitHub()
    assert await RunnerGroups(600.0).id(github, scope, group) == 1  # type: ignore[arg-type]
    assert github.calls == 0


@pytest.mark.parametrize(
    ("github_defaults", "job", "fits"),
    [
        pytest.param((), ("self-hosted", "gpu"), True, id="arc-own-labels"),
        pytest.param((), ("self-hosted", "linux", "gpu"), False, id="arc-linux-unmatched"),
        pytest.param(("linux", "x64"), ("self-hosted", "linux", "gpu"), True, id="linux"),
        pytest.param(("linux", "x64"), ("self-hosted", "Linux", "X64", "gpu"), True, id="case-insensitive"),
        pytest.param(("linux", "x64"), ("self-hosted", "linux", "arm64"), False, id="other-arch"),
        pytest.param(("linux", "arm64"), ("self-hosted", "linux", "ARM64", "gpu"), True, id="arm-cluster"),
    ],
)
def test_github_default_labels_match_only_behind_the_flag(
    github_defaults: tuple[str, ...], job: tuple[str, ...], fits: bool
) -> None:
    options = ControllerOptions(
        github_default_labels=github_defaults, pod=PodOptions(common_runner_labels=("team-a",))
    )
    defaults = matching_labels(options)
    assert defaults == ("team-a", *github_defaults)
    assert job_fits_runner(job, ["gpu"], defaults) is fits
