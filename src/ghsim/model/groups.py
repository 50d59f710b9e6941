"""Runner groups: each organization's and enterprise's groups, and which repositories they serve.

Every organization and enterprise has a ``Default`` group with id 1 (:meth:`RunnerGroups.add_default`,
called when the account is created); custom groups get ids from 2.  An enterprise group other than
its Default is *inherited* by the organizations it is shared with.  :meth:`RunnerGroups.admits` is
the scope-and-group half of routing (labels are the other half, in :mod:`.routing`).

A change here can change where queued jobs may go: the facade invalidates routing and re-matches
after :meth:`RunnerGroups.create_group` and :meth:`RunnerGroups.update_group`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Literal, TypedDict

from ..entities import Org, Repo, RunnerGroup, Scope
from ..errors import Conflict, NotFound, ValidationFailed
from .registry import Registry


class NewGroupPolicy(TypedDict, total=False):
    """The keyword options of :meth:`RunnerGroups.create_group` (for facades that pass them on)."""

    visibility: Literal["all", "selected", "private"]
    allows_public_repositories: bool
    selected_repositories: Iterable[str]
    selected_organizations: Iterable[str]


class GroupPolicyChange(TypedDict, total=False):
    """The keyword options of :meth:`RunnerGroups.update_group`: ``None`` leaves a setting as it is."""

    visibility: str | None
    allows_public_repositories: bool | None
    selected_repositories: Iterable[str] | None
    selected_organizations: Iterable[str] | None


class RunnerGroups:
    """The groups table (scope key -> group id -> group) and group policy."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._group_ids = itertools.count(2)
        self._group_uids = itertools.count(1)
        self.groups: dict[tuple[str, str], dict[int, RunnerGroup]] = {}

    # ----------------------------------------------------------------------------------------
    # changes

    def add_default(self, scope: Scope) -> RunnerGroup:
        """Give a new organization or enterprise its ``Default`` group (id 1)."""
        group = RunnerGroup(next(self._group_uids), 1, "Default", scope, default=True)
        self.groups[scope.key] = {1: group}
        return group

    def create_group(
        self,
        scope: Scope,
        name: str,
        *,
        visibility: Literal["all", "selected", "private"] = "all",
        allows_public_repositories: bool = False,
        selected_repositories: Iterable[str] = (),
        selected_organizations: Iterable[str] = (),
    ) -> RunnerGroup:
        if scope.kind == "repo":
            raise ValidationFailed("runner groups belong to organizations and enterprises")
        self.registry.scope_exists(scope)
        groups = self.groups[scope.key]
        if any(g.name.lower() == name.lower() for g in groups.values()):
            raise Conflict(f"A runner group named {name!r} already exists")
        if visibility not in ("all", "selected", "private"):
            raise ValidationFailed("visibility must be all, selected or private")
        if scope.kind == "enterprise" and visibility == "private":
            raise ValidationFailed("enterprise runner groups are visible to all or to selected organizations")
        group = RunnerGroup(
            next(self._group_uids),
            next(self._group_ids),
            name,
            scope,
            visibility=visibility,
            allows_public_repositories=allows_public_repositories,
        )
        for full in selected_repositories:
            repo = self.registry.repo_by_name(full)
            if scope.kind == "org" and repo.owner.lower() != scope.name.lower():
                raise ValidationFailed(f"{full} does not belong to {scope.name}")
            group.selected_repository_ids.add(repo.id)
        for login in selected_organizations:
            org = self.registry.org(login)
            if scope.kind != "enterprise" or (org.enterprise or "").lower() != scope.name.lower():
                raise ValidationFailed(f"{login} is not an organization of {scope.name}")
            group.selected_organization_ids.add(org.id)
        groups[group.id] = group
        return group

    def update_group(
        self,
        scope: Scope,
        group_id: int,
        *,
        visibility: str | None = None,
        allows_public_repositories: bool | None = None,
        selected_repositories: Iterable[str] | None = None,
        selected_organizations: Iterable[str] | None = None,
    ) -> RunnerGroup:
        group = self.group(scope, group_id)
        if visibility is not None:
            if visibility not in ("all", "selected", "private"):
                raise ValidationFailed("visibility must be all, selected or private")
            group.visibility = visibility  # type: ignore[assignment]
        if allows_public_repositories is not None:
            group.allows_public_repositories = allows_public_repositories
        if selected_repositories is not None:
            group.selected_repository_ids = {self.registry.repo_by_name(r).id for r in selected_repositories}
        if selected_organizations is not None:
            group.selected_organization_ids = {self.registry.org(o).id for o in selected_organizations}
        return group

    def delete_group(self, scope: Scope, group_id: int) -> RunnerGroup:
        """Remove a custom group; return the scope's ``Default`` group (which its runners join)."""
        self.registry.scope_exists(scope)
        groups = self.groups[scope.key]
        if group_id == 1 or groups.get(group_id) is None:
            raise NotFound(f"No custom runner group with id {group_id}")
        del groups[group_id]
        return groups[1]

    # ----------------------------------------------------------------------------------------
    # lookups

    def group(self, scope: Scope, group_id: int) -> RunnerGroup:
        groups = self.groups.get(scope.key)
        if groups is None:
            raise NotFound()
        group = groups.get(group_id)
        if group is None and scope.kind == "org":
            group = next((g for g in self.inherited_groups(scope.name) if g.id == group_id), None)
        if group is None:
            raise NotFound()
        return group

    def group_by_name(self, scope: Scope, name: str) -> RunnerGroup | None:
        candidates = list(self.groups.get(scope.key, {}).values())
        if scope.kind == "org":
            candidates += self.inherited_groups(scope.name)
        return next((g for g in candidates if g.name.lower() == name.lower()), None)

    def inherited_groups(self, org_login: str) -> list[RunnerGroup]:
        """Enterprise runner groups (other than the enterprise default) shared with an organization."""
        org = self.registry.org(org_login)
        if org.enterprise is None:
            return []
        out = []
        for group in self.groups.get(Scope("enterprise", org.enterprise).key, {}).values():
            if group.default:
                continue
            if group.visibility == "all" or org.id in group.selected_organization_ids:
                out.append(group)
        return out

    def org_groups(self, org_login: str, visible_to_repository: str | None = None) -> list[RunnerGroup]:
        org = self.registry.org(org_login)
        groups = list(self.groups[Scope("org", org.login).key].values()) + self.inherited_groups(org.login)
        if visible_to_repository is not None:
            repo = self.registry.repo(org.login, visible_to_repository)
            groups = [g for g in groups if self.admits_repo(g, repo)]
        return groups

    def enterprise_groups(self, slug: str, visible_to_organization: str | None = None) -> list[RunnerGroup]:
        ent = self.registry.enterprise(slug)
        groups = list(self.groups[Scope("enterprise", ent.slug).key].values())
        if visible_to_organization is not None:
            org = self.registry.org(visible_to_organization)
            groups = [g for g in groups if g.visibility == "all" or org.id in g.selected_organization_ids]
        return groups

    def group_repositories(self, group: RunnerGroup) -> list[Repo]:
        if group.scope.kind != "org":
            return []
        if group.visibility == "selected":
            repos = self.registry.repos_by_id
            return [repos[i] for i in sorted(group.selected_repository_ids) if i in repos]
        return []

    def group_organizations(self, group: RunnerGroup) -> list[Org]:
        if group.scope.kind != "enterprise" or group.visibility != "selected":
            return []
        return sorted(
            (o for o in self.registry.orgs.values() if o.id in group.selected_organization_ids),
            key=lambda o: o.id,
        )

    def for_registration(
        self, scope: Scope, *, group_id: int | None = None, group_name: str | None = None
    ) -> RunnerGroup | None:
        """The group a new runner of ``scope`` joins (``None`` for a repository runner)."""
        if scope.kind == "repo":
            if group_id not in (None, 1) or (group_name or "default").lower() != "default":
                raise NotFound("repository runners belong to the Default group")
            return None
        if group_id is not None:
            group = self.groups[scope.key].get(group_id)
            if group is None:
                raise NotFound(f"No runner group with id {group_id}")
            return group
        if not group_name:
            return self.groups[scope.key][1]
        group = next(
            (g for g in self.groups[scope.key].values() if g.name.lower() == group_name.lower()), None
        )
        if group is None:
            raise NotFound(f"No runner group named {group_name}")
        return group

    # ----------------------------------------------------------------------------------------
    # policy

    def admits(self, scope: Scope, group: RunnerGroup | None, repo: Repo) -> bool:
        """May runners of ``scope`` in ``group`` take jobs of ``repo`` (scope and group policy only)?"""
        if scope.kind == "repo":
            return scope.name.lower() == repo.full_name.lower()
        if group is None:
            return False
        if scope.kind == "org":
            return repo.owner.lower() == scope.name.lower() and self.admits_repo(group, repo)
        ent = self.registry.enterprise_of_repo(repo)
        return ent is not None and ent.slug.lower() == scope.name.lower() and self.admits_repo(group, repo)

    def admits_repo(self, group: RunnerGroup, repo: Repo) -> bool:
        """Does ``group``'s visibility cover ``repo`` (public repositories need an opt-in)?"""
        if not repo.private and not group.allows_public_repositories:
            return False
        if group.scope.kind == "org":
            # "private": every private repository of the organization
            return (
                group.visibility == "all"
                or (group.visibility == "private" and repo.private)
                or (group.visibility == "selected" and repo.id in group.selected_repository_ids)
            )
        org = self.registry.orgs.get(repo.owner.lower())
        if org is None:
            return False
        return group.visibility == "all" or (
            group.visibility == "selected" and org.id in group.selected_organization_ids
        )
