"""The registry: enterprises, organizations, users and repositories, and lookups by name.

Names are case-insensitive (tables are keyed by the lower-case name); entities keep the spelling
they were created with.  A lookup of something that does not exist raises :class:`NotFound`.  This
section knows nothing of runners, groups or jobs: the facade (:class:`~ghsim.model.world.World`)
adds an account's Default runner group and invalidates routing after a creation here.
"""

from __future__ import annotations

import itertools

from ..clock import Clock
from ..entities import Enterprise, Org, Repo, Scope, User
from ..errors import NotFound, ValidationFailed


class Registry:
    """Accounts and repositories."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._repo_ids = itertools.count(100_001)
        self._org_ids = itertools.count(9_000_001)  # enterprises and organizations share it
        self._user_ids = itertools.count(5_000_001)
        self.enterprises: dict[str, Enterprise] = {}
        self.orgs: dict[str, Org] = {}
        self.users: dict[str, User] = {}
        self.repos: dict[str, Repo] = {}  # key: full name, lower case
        self.repos_by_id: dict[int, Repo] = {}

    # ----------------------------------------------------------------------------------------
    # creation

    def create_enterprise(self, slug: str, name: str | None = None) -> Enterprise:
        if not slug or slug.lower() in self.enterprises:
            raise ValidationFailed(f"enterprise {slug!r} exists or is invalid")
        ent = Enterprise(next(self._org_ids), slug, name or slug, self.clock.now())
        self.enterprises[slug.lower()] = ent
        return ent

    def create_org(self, login: str, enterprise: str | None = None, description: str | None = None) -> Org:
        if not login or login.lower() in self.orgs or login.lower() in self.users:
            raise ValidationFailed(f"account {login!r} exists or is invalid")
        if enterprise is not None:
            enterprise = self.enterprise(enterprise).slug
        org = Org(next(self._org_ids), login, enterprise, self.clock.now(), description)
        self.orgs[login.lower()] = org
        return org

    def create_user(self, login: str, site_admin: bool = False) -> User:
        if login.lower() in self.users:
            return self.users[login.lower()]
        if login.lower() in self.orgs:
            raise ValidationFailed(f"{login!r} is an organization")
        user = User(next(self._user_ids), login, site_admin)
        self.users[login.lower()] = user
        return user

    def create_repo(self, owner: str, name: str, private: bool = True) -> Repo:
        full = f"{owner}/{name}".lower()
        if not owner or not name or full in self.repos:
            raise ValidationFailed(f"repository {owner}/{name} exists or is invalid")
        now = self.clock.now()
        org = self.orgs.get(owner.lower())
        if org is not None:
            repo = Repo(next(self._repo_ids), org.login, org.id, "Organization", name, private, now)
        else:
            user = self.create_user(owner)
            repo = Repo(next(self._repo_ids), user.login, user.id, "User", name, private, now)
        self.repos[full] = repo
        self.repos_by_id[repo.id] = repo
        return repo

    # ----------------------------------------------------------------------------------------
    # lookups

    def enterprise(self, slug: str) -> Enterprise:
        ent = self.enterprises.get(slug.lower())
        if ent is None:
            raise NotFound()
        return ent

    def org(self, login: str) -> Org:
        org = self.orgs.get(login.lower())
        if org is None:
            raise NotFound()
        return org

    def repo(self, owner: str, name: str) -> Repo:
        repo = self.repos.get(f"{owner}/{name}".lower())
        if repo is None:
            raise NotFound()
        return repo

    def repo_by_name(self, full_name: str) -> Repo:
        owner, _, name = full_name.partition("/")
        return self.repo(owner, name)

    def scope_exists(self, scope: Scope) -> Scope:
        """Canonical spelling of an existing scope; :class:`NotFound` if there is none."""
        if scope.kind == "repo":
            return Scope("repo", self.repo_by_name(scope.name).full_name)
        if scope.kind == "org":
            return Scope("org", self.org(scope.name).login)
        return Scope("enterprise", self.enterprise(scope.name).slug)

    def enterprise_of_repo(self, repo: Repo) -> Enterprise | None:
        org = self.orgs.get(repo.owner.lower())
        if org is None or org.enterprise is None:
            return None
        return self.enterprises.get(org.enterprise.lower())
