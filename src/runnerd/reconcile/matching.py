"""Which HorizontalRunnerAutoscaler a ``workflow_job`` webhook event is for (pure).

A job goes to a runner whose labels include all of the job's labels (GitHub: labels are
cumulative and case-insensitive) and whose runner group the repository can use. ARC's webhook
server resolves the HRA to scale the same way, in this order of precedence (ARC's
``getScaleUpTargetWithFunction`` and ``simulator/runnergroups.go``):

1. repository runners of the event's repository (a user-owned repository stops here),
2. the organization's default runner group,
3. the enterprise's default runner group,
4. the organization's other runner groups,
5. the enterprise's other runner groups.

A level is skipped when none of its targets fits the job; the first level with a fitting target
decides. Differences from ARC, on purpose:

* Two or more fitting targets on the same level are reported as :class:`Ambiguous` instead of
  scaling whichever HRA the API server listed first: scaling the wrong pool leaves the job queued
  and an idle runner behind (ARC's docs even say such events are ignored; its code picks the first).
* Organization, enterprise, repository and group names compare case-insensitively, as GitHub treats
  them (ARC compares them exactly, so ``organization: MyOrg`` never matched events for ``myorg``).
* A target whose ``group`` is ``Default`` is in the default group (GitHub's name for it).
* A RunnerSet in a custom group is only a candidate for that group (ARC also files it under the
  default group).
* When the event names the runner group (``workflow_job.runner_group_name``, known once a runner has
  taken the job), only targets in that group are candidates; repository runners are in ``Default``.
* ``default_labels`` lets the caller declare labels every runner gets besides ``spec.labels`` (e.g.
  ``linux``, ``x64`` when runners register with GitHub's default labels). ARC declares none, so a job
  asking for ``[self-hosted, linux, gpu]`` never matched a runner with ``labels: [gpu]``.

``self-hosted`` in the job's labels is always satisfied. A job without labels matches nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence, Set
from dataclasses import dataclass, field
from enum import StrEnum

from runnerd.api import HorizontalRunnerAutoscalerSpec, RunnerConfig, ScaleUpTrigger

SELF_HOSTED = "self-hosted"
DEFAULT_GROUP = "Default"


def _fold(s: str) -> str:
    return s.casefold()


def missing_labels(
    job_labels: Iterable[str], runner_labels: Iterable[str], default_labels: Iterable[str] = ()
) -> tuple[str, ...]:
    """The job's labels (besides ``self-hosted``) that the runner lacks, compared case-insensitively."""
    have = {_fold(label) for label in (*runner_labels, *default_labels)}
    have.add(SELF_HOSTED)
    return tuple(label for label in job_labels if _fold(label) not in have)


def job_fits_runner(
    job_labels: Sequence[str], runner_labels: Iterable[str], default_labels: Iterable[str] = ()
) -> bool:
    """Every job label except ``self-hosted`` is among the runner's labels (case-insensitive).

    A job without any label fits no runner (ARC skips such jobs too).
    """
    return bool(job_labels) and not missing_labels(job_labels, runner_labels, default_labels)


def is_default_group(group: str | None) -> bool:
    return not group or _fold(group) == _fold(DEFAULT_GROUP)


def workflow_job_trigger(spec: HorizontalRunnerAutoscalerSpec) -> ScaleUpTrigger | None:
    """The HRA's workflow_job trigger, or ``None`` when the HRA does not scale on webhooks.

    As in ARC, an HRA qualifies only with exactly one ``scaleUpTriggers`` entry, and that entry has
    ``githubEvent.workflowJob``.
    """
    if len(spec.scale_up_triggers) != 1:
        return None
    trigger = spec.scale_up_triggers[0]
    if trigger.github_event is None or trigger.github_event.workflow_job is None:
        return None
    return trigger


@dataclass(frozen=True)
class JobEvent:
    """The routing facts of one ``workflow_job`` delivery."""

    repository: str  # repository.full_name, "owner/name"
    labels: tuple[str, ...]  # workflow_job.labels
    owner_type: str = "Organization"  # repository.owner.type: "User" or "Organization"
    organization: str | None = None  # organization.login (absent for user-owned repositories)
    enterprise: str | None = None  # enterprise.slug
    runner_group: str | None = None  # workflow_job.runner_group_name (null until a runner took the job)

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def org(self) -> str | None:
        if self.owner_type == "User":
            return None
        return self.organization or self.owner


@dataclass(frozen=True)
class Target:
    """A webhook-scaled HRA and the runner config of its scale target."""

    hra: str  # e.g. "namespace/name"; reported back, never interpreted
    config: RunnerConfig


@dataclass(frozen=True)
class VisibleGroups:
    """Runner groups the event's repository may use (``Default`` stands for the default group)."""

    organization: frozenset[str] = frozenset()
    enterprise: frozenset[str] = frozenset()

    @classmethod
    def of(cls, names: Iterable[str]) -> VisibleGroups:
        """The same names for both scopes (GitHub lists inherited enterprise groups with the org's)."""
        same = frozenset(names)
        return cls(organization=same, enterprise=same)

    def allows(self, enterprise_scope: bool, group: str | None) -> bool:
        names = self.enterprise if enterprise_scope else self.organization
        wanted = _fold(DEFAULT_GROUP) if is_default_group(group) else _fold(group or "")
        return any(_fold(n) == wanted for n in names)


class Level(StrEnum):
    REPOSITORY = "repository"
    ORGANIZATION_DEFAULT_GROUP = "organization default group"
    ENTERPRISE_DEFAULT_GROUP = "enterprise default group"
    ORGANIZATION_GROUP = "organization runner group"
    ENTERPRISE_GROUP = "enterprise runner group"


LEVELS: tuple[Level, ...] = tuple(Level)


@dataclass(frozen=True)
class Match:
    target: Target
    level: Level
    reason: str


@dataclass(frozen=True)
class Ambiguous:
    level: Level
    targets: tuple[Target, ...]
    reason: str


@dataclass(frozen=True)
class NoMatch:
    reason: str
    near_misses: tuple[str, ...] = field(default=())  # targets in scope whose labels fall short


MatchResult = Match | Ambiguous | NoMatch


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and _fold(a or "") == _fold(b or "")


def _level_of(config: RunnerConfig) -> Level | None:
    scope = config.scope
    if scope is None:
        return None
    if scope.kind == "repository":
        return Level.REPOSITORY
    default = is_default_group(config.group)
    if scope.kind == "organization":
        return Level.ORGANIZATION_DEFAULT_GROUP if default else Level.ORGANIZATION_GROUP
    return Level.ENTERPRISE_DEFAULT_GROUP if default else Level.ENTERPRISE_GROUP


def _in_scope(
    level: Level, config: RunnerConfig, event: JobEvent, visible: VisibleGroups | None
) -> str | None:
    """Why ``config`` cannot take the job at ``level`` (``None``: it can, labels aside)."""
    scope = config.scope
    assert scope is not None  # _level_of filtered these out
    group = None if level is Level.REPOSITORY else config.group
    if event.runner_group is not None and not (
        (is_default_group(event.runner_group) and is_default_group(group)) or _same(event.runner_group, group)
    ):
        return f"the job ran in runner group {event.runner_group!r}"
    if level is Level.REPOSITORY:
        return None if _same(scope.name, event.repository) else "another repository"
    enterprise_scope = scope.kind == "enterprise"
    event_scope = event.enterprise if enterprise_scope else event.org
    if not _same(scope.name, event_scope):
        return "another " + scope.kind
    if visible is not None and not visible.allows(enterprise_scope, group):
        return f"runner group {group or DEFAULT_GROUP!r} is not visible to {event.repository}"
    return None


def match_workflow_job(
    event: JobEvent,
    targets: Iterable[Target],
    visible_groups: VisibleGroups | Set[str] | None = None,
    *,
    default_labels: Collection[str] = (),
) -> MatchResult:
    """The target to scale for ``event`` (see the module docstring for the rules).

    ``visible_groups`` are the runner groups visible to the event's repository; ``None`` means
    unknown, and then every group is assumed visible (as ARC does without GitHub credentials).
    """
    if not event.labels:
        return NoMatch("the job has no labels")
    visible: VisibleGroups | None
    if visible_groups is None or isinstance(visible_groups, VisibleGroups):
        visible = visible_groups
    else:
        visible = VisibleGroups.of(visible_groups)

    by_level: dict[Level, list[Target]] = {level: [] for level in LEVELS}
    for t in targets:
        level = _level_of(t.config)
        if level is not None:
            by_level[level].append(t)

    levels = LEVELS
    if event.org is None:  # user-owned repository: repository runners only
        levels = (Level.REPOSITORY,)
    if event.runner_group is not None and not is_default_group(event.runner_group):
        levels = tuple(level for level in levels if level is not Level.REPOSITORY)

    near: list[str] = []
    for level in levels:
        fitting: list[Target] = []
        for t in by_level[level]:
            if _in_scope(level, t.config, event, visible) is not None:
                continue
            lacking = missing_labels(event.labels, t.config.labels, default_labels)
            if lacking:
                near.append(f"{t.hra} ({level}) lacks labels {list(lacking)}")
            else:
                fitting.append(t)
        if len(fitting) == 1:
            t = fitting[0]
            return Match(
                t,
                level,
                f"{t.hra}: {level} runners with labels {t.config.labels} fit job labels {list(event.labels)}",
            )
        if fitting:
            names = ", ".join(t.hra for t in fitting)
            return Ambiguous(
                level,
                tuple(fitting),
                f"{len(fitting)} {level} targets fit job labels {list(event.labels)} equally: {names}; "
                "not scaling any",
            )

    where = event.repository
    if event.org is None:
        where += " (user-owned: only repository runners can take its jobs)"
    reason = f"no scale target fits the job of {where} with labels {list(event.labels)}"
    if near:
        reason += ": " + "; ".join(near)
    return NoMatch(reason, tuple(near))
