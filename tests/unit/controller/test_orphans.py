"""The orphan sweep removes only this installation's registrations, after a grace, with bounded memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from runnerd.api import RunnerSpec
from runnerd.controller.common import ControllerOptions, drain_labels
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.orphans import (
    REMOVED_KEPT,
    SWEEP_KEY,
    OrphanSweeper,
    carries,
    installation_label,
    resolve_installation_label,
)
from runnerd.github import Scope
from runnerd.github.errors import RunnerBusyError
from runnerd.github.models import Runner
from runnerd.manifests.pod import PodOptions, runner_labels
from runnerd.runtime import Forbidden

ORG = Scope("organization", "octo-org")
OURS = installation_label("cluster-a/*")
THEIRS = installation_label("cluster-b/*")
GRACE = 900.0


def gh_runner(rid: int, name: str, label: str, *, status: str = "offline", busy: bool = False) -> Runner:
    return Runner(rid, name, "linux", status, busy, ("self-hosted", "arc-runner", label))


@dataclass
class FakeGitHub:
    runners: list[Runner] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    busy_ids: set[int] = field(default_factory=set)

    async def list_runners(self, scope: Scope) -> list[Runner]:
        return [r for r in self.runners if r.id not in self.deleted]

    async def delete_runner(self, scope: Scope, runner_id: int) -> None:
        if runner_id in self.busy_ids:
            raise RunnerBusyError(status=422, endpoint="DELETE runners", message="busy", runner_id=runner_id)
        self.deleted.append(runner_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sweeper(github: FakeGitHub, clock: Clock, runner_names: tuple[str, ...] = (), label: str = OURS) -> Any:
    deployment = {
        "metadata": {"name": "example"},
        "spec": {"template": {"spec": {"organization": "octo-org"}}},
    }
    informers = {
        "runnerdeployments": SimpleNamespace(store=[deployment]),
        "pods": SimpleNamespace(store=[]),
    }
    runners = SimpleNamespace(store=[{"metadata": {"name": n}} for n in runner_names])
    return OrphanSweeper(
        github=github,  # type: ignore[arg-type]
        directory=RunnerDirectory(github, clock=clock),  # type: ignore[arg-type]
        runners=runners,  # type: ignore[arg-type]
        informers=informers,  # type: ignore[arg-type]
        period=0.0,
        label=label,
        grace=GRACE,
        clock=clock,
    )


@pytest.mark.parametrize(
    ("runner", "runner_objects", "removed"),
    [
        pytest.param(gh_runner(1, "example-abc-1", OURS), (), True, id="ours-offline-no-runner"),
        pytest.param(gh_runner(1, "example-abc-1", OURS.upper()), (), True, id="label-case-insensitive"),
        pytest.param(gh_runner(1, "example-abc-1", THEIRS), (), False, id="other-installation-same-name"),
        pytest.param(gh_runner(1, "example-abc-1", "arc-runner"), (), False, id="unmarked"),
        pytest.param(gh_runner(1, "example-abc-1", OURS), ("example-abc-1",), False, id="runner-exists"),
        pytest.param(gh_runner(1, "example-abc-1", OURS, status="online"), (), False, id="online"),
        pytest.param(gh_runner(1, "example-abc-1", OURS, busy=True), (), False, id="busy"),
    ],
)
async def test_removes_only_own_offline_registrations_after_the_grace(
    runner: Runner, runner_objects: tuple[str, ...], removed: bool
) -> None:
    github, clock = FakeGitHub([runner]), Clock()
    s = sweeper(github, clock, runner_objects)
    await s.reconcile(SWEEP_KEY)
    assert github.deleted == []  # first seen offline: the grace starts
    clock.now += GRACE - 1
    await s.reconcile(SWEEP_KEY)
    assert github.deleted == []  # a slow image pull is still within the grace
    clock.now += 1
    await s.reconcile(SWEEP_KEY)
    assert github.deleted == ([runner.id] if removed else [])
    assert list(s.removed) == ([runner.name] if removed else [])


async def test_coming_online_restarts_the_grace() -> None:
    github, clock = FakeGitHub([gh_runner(1, "example-abc-1", OURS)]), Clock()
    s = sweeper(github, clock)
    await s.reconcile(SWEEP_KEY)
    clock.now += GRACE / 2
    github.runners = [gh_runner(1, "example-abc-1", OURS, status="online")]
    await s.reconcile(SWEEP_KEY)
    github.runners = [gh_runner(1, "example-abc-1", OURS)]
    clock.now += GRACE / 2
    await s.reconcile(SWEEP_KEY)
    assert github.deleted == []


async def test_busy_refusal_keeps_it_for_the_next_sweep() -> None:
    github, clock = FakeGitHub([gh_runner(7, "example-abc-7", OURS)], busy_ids={7}), Clock()
    s = sweeper(github, clock)
    await s.reconcile(SWEEP_KEY)
    clock.now += GRACE
    await s.reconcile(SWEEP_KEY)
    assert github.deleted == []
    github.busy_ids.clear()
    await s.reconcile(SWEEP_KEY)
    assert github.deleted == [7]


async def test_without_an_installation_label_nothing_is_removed() -> None:
    github, clock = FakeGitHub([gh_runner(1, "example-abc-1", "")]), Clock()
    s = sweeper(github, clock, label="")
    for _ in range(3):
        await s.reconcile(SWEEP_KEY)
        clock.now += GRACE
    assert github.deleted == []


async def test_memory_is_bounded_by_the_listing() -> None:
    github, clock = FakeGitHub(), Clock()
    s = sweeper(github, clock)
    for wave in range(5):
        clock.now += 1
        github.runners = [gh_runner(wave * 1000 + i, f"example-{wave}-{i}", OURS) for i in range(50)]
        await s.reconcile(SWEEP_KEY)
        clock.now += GRACE
        await s.reconcile(SWEEP_KEY)
    assert s.suspected <= 50
    assert s.removed_total == 250
    assert len(s.removed) == REMOVED_KEPT


def test_installation_label_is_short_stable_lower_case_and_comma_free() -> None:
    label = installation_label("8f2c0d0e-uid/*")
    assert label == installation_label("8f2c0d0e-uid/*")
    assert label != installation_label("8f2c0d0e-uid/team-a")
    assert label.startswith("runnerd-")
    assert len(label) == 18
    assert label == label.lower()
    assert label.replace("-", "").isalnum()


async def test_installation_label_from_flag_cluster_uid_or_none() -> None:
    class Kube:
        def __init__(self, error: Exception | None) -> None:
            self.error = error

        async def get(self, resource: Any, name: str, **_: Any) -> dict[str, Any]:
            if self.error is not None:
                raise self.error
            assert (resource.plural, name) == ("namespaces", "kube-system")
            return {"metadata": {"uid": "u-1"}}

    assert await resolve_installation_label(Kube(None), "prod", None) == installation_label("prod")  # type: ignore[arg-type]
    assert await resolve_installation_label(Kube(None), "", "ns") == installation_label("u-1/ns")  # type: ignore[arg-type]
    forbidden = Forbidden(403, "Forbidden")
    assert await resolve_installation_label(Kube(forbidden), "", None) == ""  # type: ignore[arg-type]


def test_the_mark_is_registered_and_survives_draining() -> None:
    options = ControllerOptions(pod=PodOptions(installation_label=OURS, common_runner_labels=("team",)))
    labels = runner_labels(
        RunnerSpec.from_dict({"organization": "o", "labels": ["self-hosted", "gpu"]}), options.pod
    )
    assert labels == ["self-hosted", "gpu", "team", OURS]
    assert drain_labels(options) == ["runnerd-draining", OURS]
    assert drain_labels(ControllerOptions()) == ["runnerd-draining"]
    assert carries(gh_runner(1, "x", OURS), OURS)
    assert not carries(gh_runner(1, "x", OURS), "")
