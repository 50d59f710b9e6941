from __future__ import annotations

import pytest

from runnerd.api import (
    GitHubEventScaleUpTriggerSpec,
    HorizontalRunnerAutoscalerSpec,
    PushSpec,
    RunnerConfig,
    ScaleUpTrigger,
    WorkflowJobSpec,
)
from runnerd.reconcile.matching import (
    Ambiguous,
    JobEvent,
    Level,
    Match,
    MatchResult,
    NoMatch,
    Target,
    VisibleGroups,
    job_fits_runner,
    match_workflow_job,
    missing_labels,
    workflow_job_trigger,
)


@pytest.mark.parametrize(
    ("job", "runner", "fits"),
    [
        pytest.param(("self-hosted", "gpu"), ("gpu",), True, id="self-hosted-ignored"),
        pytest.param(("Self-Hosted", "GPU"), ("gpu",), True, id="case-insensitive"),
        pytest.param(("gpu",), ("GPU", "a100", "linux"), True, id="runner-superset"),
        pytest.param(("gpu", "a100"), ("gpu",), False, id="runner-lacks-one"),
        pytest.param(("self-hosted",), (), True, id="only-self-hosted"),
        pytest.param((), ("gpu",), False, id="job-without-labels-fits-nothing"),
        pytest.param(("ubuntu-latest",), ("gpu",), False, id="hosted-label"),
        pytest.param(("gpu", "gpu"), ("gpu",), True, id="repeated-label"),
    ],
)
def test_job_fits_runner(job: tuple[str, ...], runner: tuple[str, ...], fits: bool) -> None:
    assert job_fits_runner(job, runner) is fits


def test_default_labels_extend_the_runner() -> None:
    job = ("self-hosted", "Linux", "X64", "gpu")
    assert missing_labels(job, ["gpu"]) == ("Linux", "X64")
    assert job_fits_runner(job, ["gpu"], default_labels=("linux", "x64"))


def cfg(
    *,
    repo: str | None = None,
    org: str | None = None,
    ent: str | None = None,
    group: str | None = None,
    labels: tuple[str, ...] = ("gpu",),
) -> RunnerConfig:
    return RunnerConfig(repository=repo, organization=org, enterprise=ent, group=group, labels=list(labels))


REPO = Target("ns/repo", cfg(repo="acme/app"))
ORG = Target("ns/org", cfg(org="acme"))
ORG_ML = Target("ns/org-ml", cfg(org="acme", group="ml", labels=("gpu", "a100")))
ORG_ML2 = Target("ns/org-ml2", cfg(org="acme", group="ml2", labels=("gpu", "a100")))
ENT = Target("ns/ent", cfg(ent="bigcorp", labels=("cpu",)))
ENT_BIG = Target("ns/ent-big", cfg(ent="bigcorp", group="big", labels=("gpu", "h100")))
ENT_GPU = Target("ns/ent-gpu", cfg(ent="bigcorp", labels=("gpu",)))
USER_REPO = Target("ns/user", cfg(repo="alice/tool"))
OTHER_REPO = Target("ns/other", cfg(repo="acme/other"))
NO_SCOPE = Target("ns/broken", cfg())
TWO_SCOPES = Target("ns/two", cfg(org="acme", repo="acme/app"))
ALL = [REPO, ORG, ORG_ML, ENT, ENT_BIG, USER_REPO, OTHER_REPO, NO_SCOPE, TWO_SCOPES]


def ev(
    *labels: str,
    repo: str = "acme/app",
    owner_type: str = "Organization",
    org: str | None = "acme",
    ent: str | None = "bigcorp",
    group: str | None = None,
) -> JobEvent:
    return JobEvent(
        repository=repo,
        labels=labels,
        owner_type=owner_type,
        organization=org,
        enterprise=ent,
        runner_group=group,
    )


def outcome(r: MatchResult) -> tuple[str, object]:
    if isinstance(r, Match):
        return ("match", (r.target.hra, r.level))
    if isinstance(r, Ambiguous):
        return ("ambiguous", (tuple(t.hra for t in r.targets), r.level))
    return ("none", None)


L = Level


@pytest.mark.parametrize(
    ("event", "targets", "visible", "expected"),
    [
        pytest.param(
            ev("self-hosted", "gpu"), ALL, None, ("match", ("ns/repo", L.REPOSITORY)), id="repo-first"
        ),
        pytest.param(
            ev("Self-Hosted", "GPU"), ALL, None, ("match", ("ns/repo", L.REPOSITORY)), id="label-case"
        ),
        pytest.param(
            ev("self-hosted"),
            [REPO, OTHER_REPO],
            None,
            ("match", ("ns/repo", L.REPOSITORY)),
            id="only-self-hosted",
        ),
        pytest.param(
            ev("self-hosted", "gpu"),
            [ORG, ORG_ML],
            None,
            ("match", ("ns/org", L.ORGANIZATION_DEFAULT_GROUP)),
            id="org-default-before-org-group",
        ),
        pytest.param(
            ev("gpu", "a100"),
            ALL,
            None,
            ("match", ("ns/org-ml", L.ORGANIZATION_GROUP)),
            id="labels-skip-repo-and-default",
        ),
        pytest.param(
            ev("gpu", "a100"),
            ALL,
            {"Default"},
            ("none", None),
            id="group-not-visible",
        ),
        pytest.param(
            ev("gpu", "a100"),
            ALL,
            {"ML"},
            ("match", ("ns/org-ml", L.ORGANIZATION_GROUP)),
            id="group-visible-case-insensitive",
        ),
        pytest.param(
            ev("gpu"),
            [ORG, ORG_ML],
            {"ml"},
            ("match", ("ns/org-ml", L.ORGANIZATION_GROUP)),
            id="default-group-not-visible",
        ),
        pytest.param(
            ev("gpu"),
            [ORG, ENT_GPU],
            VisibleGroups(organization=frozenset(), enterprise=frozenset({"Default"})),
            ("match", ("ns/ent-gpu", L.ENTERPRISE_DEFAULT_GROUP)),
            id="visibility-per-scope",
        ),
        pytest.param(
            ev("cpu"), ALL, None, ("match", ("ns/ent", L.ENTERPRISE_DEFAULT_GROUP)), id="enterprise-default"
        ),
        pytest.param(ev("cpu", ent=None), ALL, None, ("none", None), id="enterprise-needs-slug"),
        pytest.param(
            ev("cpu", ent="BigCorp"),
            ALL,
            None,
            ("match", ("ns/ent", L.ENTERPRISE_DEFAULT_GROUP)),
            id="slug-case",
        ),
        pytest.param(
            ev("gpu", "h100"), ALL, None, ("match", ("ns/ent-big", L.ENTERPRISE_GROUP)), id="enterprise-group"
        ),
        pytest.param(
            ev("gpu"),
            [ENT_GPU, ORG_ML, ENT_BIG],
            None,
            ("match", ("ns/ent-gpu", L.ENTERPRISE_DEFAULT_GROUP)),
            id="enterprise-default-before-org-group",
        ),
        pytest.param(
            ev("gpu"),
            [ORG, ENT_GPU],
            None,
            ("match", ("ns/org", L.ORGANIZATION_DEFAULT_GROUP)),
            id="org-before-enterprise",
        ),
        pytest.param(
            ev("gpu"),
            [REPO, Target("ns/repo2", cfg(repo="ACME/App", labels=("gpu", "linux")))],
            None,
            ("ambiguous", (("ns/repo", "ns/repo2"), L.REPOSITORY)),
            id="ambiguous-repo-level",
        ),
        pytest.param(
            ev("gpu", "a100"),
            [ORG_ML, ORG_ML2],
            None,
            ("ambiguous", (("ns/org-ml", "ns/org-ml2"), L.ORGANIZATION_GROUP)),
            id="ambiguous-groups-same-level",
        ),
        pytest.param(
            ev("gpu", "a100"),
            [ORG_ML, ORG_ML2],
            {"ml2"},
            ("match", ("ns/org-ml2", L.ORGANIZATION_GROUP)),
            id="visibility-resolves-ambiguity",
        ),
        pytest.param(
            ev("gpu", "a100"),
            [ORG_ML, ORG_ML2],
            None,
            ("ambiguous", (("ns/org-ml", "ns/org-ml2"), L.ORGANIZATION_GROUP)),
            id="ambiguity-reported-not-guessed",
        ),
        pytest.param(
            ev("gpu", "a100", group="ml2"),
            [ORG_ML, ORG_ML2],
            None,
            ("match", ("ns/org-ml2", L.ORGANIZATION_GROUP)),
            id="event-runner-group-resolves-ambiguity",
        ),
        pytest.param(
            ev("gpu", group="ml"),
            [REPO, ORG, ORG_ML],
            None,
            ("match", ("ns/org-ml", L.ORGANIZATION_GROUP)),
            id="event-custom-group-skips-repo-and-default",
        ),
        pytest.param(
            ev("gpu", group="Default"),
            [ORG, ORG_ML],
            None,
            ("match", ("ns/org", L.ORGANIZATION_DEFAULT_GROUP)),
            id="event-default-group",
        ),
        pytest.param(
            ev("gpu", group="default"),
            [REPO, ORG],
            None,
            ("match", ("ns/repo", L.REPOSITORY)),
            id="repo-runners-are-in-default",
        ),
        pytest.param(
            ev("gpu"),
            [Target("ns/explicit-default", cfg(org="acme", group="Default")), ORG_ML],
            None,
            ("match", ("ns/explicit-default", L.ORGANIZATION_DEFAULT_GROUP)),
            id="group-named-default-is-default",
        ),
        pytest.param(
            ev("gpu"),
            [Target("ns/repo-group", cfg(repo="acme/app", group="ml"))],
            {"Default"},
            ("match", ("ns/repo-group", L.REPOSITORY)),
            id="repo-target-group-ignored",
        ),
        pytest.param(
            ev("gpu", repo="alice/tool", owner_type="User", org=None),
            ALL,
            None,
            ("match", ("ns/user", L.REPOSITORY)),
            id="user-repo-repo-runner",
        ),
        pytest.param(
            ev("gpu", repo="alice/tool", owner_type="User", org=None),
            [Target("ns/alice-org", cfg(org="alice")), ENT_GPU],
            None,
            ("none", None),
            id="user-repo-stops-after-repo-level",
        ),
        pytest.param(
            ev("gpu", org="MyOrg", repo="myorg/app"),
            [Target("ns/myorg", cfg(org="myorg"))],
            None,
            ("match", ("ns/myorg", L.ORGANIZATION_DEFAULT_GROUP)),
            id="org-name-case",
        ),
        pytest.param(
            ev("gpu", org=None),
            [ORG],
            None,
            ("match", ("ns/org", L.ORGANIZATION_DEFAULT_GROUP)),
            id="org-from-owner-when-login-absent",
        ),
        pytest.param(
            ev("gpu", repo="other/app", org="other", ent=None), ALL, None, ("none", None), id="other-org"
        ),
        pytest.param(ev(), ALL, None, ("none", None), id="no-labels"),
        pytest.param(ev("gpu"), [NO_SCOPE, TWO_SCOPES], None, ("none", None), id="invalid-scopes-ignored"),
        pytest.param(ev("ubuntu-latest"), ALL, None, ("none", None), id="hosted-job"),
        pytest.param(ev("gpu"), [], None, ("none", None), id="no-targets"),
    ],
)
def test_match(
    event: JobEvent,
    targets: list[Target],
    visible: VisibleGroups | set[str] | None,
    expected: tuple[str, object],
) -> None:
    assert outcome(match_workflow_job(event, targets, visible)) == expected


def test_default_labels_in_matching() -> None:
    event = ev("self-hosted", "linux", "gpu")
    assert isinstance(match_workflow_job(event, [REPO]), NoMatch)
    result = match_workflow_job(event, [REPO], default_labels=("linux", "x64"))
    assert isinstance(result, Match)
    assert result.target is REPO


def test_no_match_reports_near_misses() -> None:
    result = match_workflow_job(ev("gpu", "h200"), [REPO, ORG, OTHER_REPO])
    assert isinstance(result, NoMatch)
    assert result.near_misses == (
        "ns/repo (repository) lacks labels ['h200']",
        "ns/org (organization default group) lacks labels ['h200']",
    )
    assert "h200" in result.reason


def test_user_repo_reason() -> None:
    result = match_workflow_job(ev("gpu", repo="alice/x", owner_type="User", org=None), [ORG])
    assert isinstance(result, NoMatch)
    assert "user-owned" in result.reason


def test_ambiguous_reason_lists_targets() -> None:
    result = match_workflow_job(ev("gpu", "a100"), [ORG_ML, ORG_ML2])
    assert isinstance(result, Ambiguous)
    assert "ns/org-ml, ns/org-ml2" in result.reason


def test_match_reason() -> None:
    result = match_workflow_job(ev("gpu"), [REPO])
    assert isinstance(result, Match)
    assert result.reason.startswith("ns/repo: repository runners")


def wj() -> ScaleUpTrigger:
    return ScaleUpTrigger(github_event=GitHubEventScaleUpTriggerSpec(workflow_job=WorkflowJobSpec()))


@pytest.mark.parametrize(
    ("triggers", "eligible"),
    [
        pytest.param([], False, id="none"),
        pytest.param([wj()], True, id="one-workflow-job"),
        pytest.param([wj(), wj()], False, id="two-triggers"),
        pytest.param([ScaleUpTrigger()], False, id="no-github-event"),
        pytest.param(
            [ScaleUpTrigger(github_event=GitHubEventScaleUpTriggerSpec(push=PushSpec()))],
            False,
            id="push-only",
        ),
    ],
)
def test_workflow_job_trigger(triggers: list[ScaleUpTrigger], eligible: bool) -> None:
    spec = HorizontalRunnerAutoscalerSpec(scale_up_triggers=triggers)
    trigger = workflow_job_trigger(spec)
    assert (trigger is not None) is eligible
    if eligible:
        assert trigger is triggers[0]
