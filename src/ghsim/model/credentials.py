"""Credentials: PATs, GitHub Apps and their installations, and the tokens the model issues.

* a PAT belongs to a user (created on demand) and may be restricted to organizations, repositories
  or enterprises;
* an App is installed on an organization, user or enterprise, for all or selected repositories; an
  installation token narrows the installation's permissions and repositories, never widens them;
* registration and remove tokens are bound to one scope and reusable until they expire
  (:meth:`Credentials.valid_token` checks one);
* tokens that expired more than a day ago are forgotten (:meth:`Credentials.forget_expired`, from
  the tick).

Token values are random (:mod:`secrets`) and never logged.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import string
from collections.abc import Iterable
from typing import Literal

from ..clock import Clock
from ..config import SimConfig
from ..entities import App, Installation, InstallationToken, IssuedToken, Pat, Repo, Scope
from ..errors import NotFound, ValidationFailed
from .registry import Registry

NOT_ACCESSIBLE_REPO = (
    "There is at least one repository that does not exist or is not accessible to the parent installation."
)
TOKEN_ALPHABET = string.ascii_uppercase + string.digits
ALNUM = string.ascii_letters + string.digits
DEFAULT_APP_PERMISSIONS = {
    "administration": "write",
    "organization_self_hosted_runners": "write",
    "actions": "read",
    "metadata": "read",
}


def random_string(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def new_pat() -> str:
    return "ghp_" + random_string(ALNUM, 36)


class Credentials:
    """Apps, installations, PATs and issued tokens."""

    def __init__(self, clock: Clock, config: SimConfig, registry: Registry) -> None:
        self.clock = clock
        self.config = config
        self.registry = registry
        self._ids = itertools.count(1)
        self._app_ids = itertools.count(100_001)
        self._installation_ids = itertools.count(40_000_001)
        self.apps: dict[int, App] = {}
        self.installations: dict[int, Installation] = {}
        self.pats: dict[str, Pat] = {}
        self.pats_by_id: dict[int, Pat] = {}
        self.issued: dict[str, IssuedToken] = {}
        self.installation_tokens: dict[str, InstallationToken] = {}

    # ----------------------------------------------------------------------------------------
    # Apps and installations

    def create_app(
        self,
        slug: str,
        public_key_pem: str,
        *,
        name: str | None = None,
        owner: str = "octo-org",
        permissions: dict[str, str] | None = None,
        ident: int | None = None,
    ) -> App:
        if any(a.slug.lower() == slug.lower() for a in self.apps.values()):
            raise ValidationFailed(f"app {slug!r} exists")
        if ident is not None and ident in self.apps:
            raise ValidationFailed(f"app id {ident} exists")
        app_id = ident if ident is not None else next(self._app_ids)
        while ident is None and app_id in self.apps:
            app_id = next(self._app_ids)
        app = App(
            app_id,
            slug,
            name or slug,
            "Iv23li" + hashlib.sha1(f"{app_id}".encode()).hexdigest()[:14],
            public_key_pem,
            owner,
            dict(permissions or DEFAULT_APP_PERMISSIONS),
            self.clock.now(),
        )
        self.apps[app.id] = app
        return app

    def create_installation(
        self,
        app_id: int,
        account: str,
        *,
        repositories: Iterable[str] | None = None,
        permissions: dict[str, str] | None = None,
        ident: int | None = None,
    ) -> Installation:
        if ident is not None and ident in self.installations:
            raise ValidationFailed(f"installation id {ident} exists")
        app = self.apps.get(app_id)
        if app is None:
            raise NotFound(f"no app {app_id}")
        kind, acct_id, acct = self._account(account)
        for inst in self.installations.values():
            if inst.app_id == app_id and inst.account.lower() == acct.lower():
                raise ValidationFailed(f"app {app.slug} is already installed on {acct}")
        repo_ids: set[int] = set()
        if repositories is not None:
            for full in repositories:
                repo = self.registry.repo_by_name(full)
                if repo.owner.lower() != acct.lower():
                    raise ValidationFailed(f"{full} does not belong to {acct}")
                repo_ids.add(repo.id)
        inst_id = ident if ident is not None else next(self._installation_ids)
        while ident is None and inst_id in self.installations:
            inst_id = next(self._installation_ids)
        inst = Installation(
            inst_id,
            app_id,
            kind,
            acct,
            acct_id,
            "all" if repositories is None else "selected",
            repo_ids,
            dict(permissions if permissions is not None else app.permissions),
            self.clock.now(),
        )
        self.installations[inst.id] = inst
        return inst

    def _account(self, account: str) -> tuple[Literal["org", "user", "enterprise"], int, str]:
        """Kind, id and spelling of the account an App is installed on."""
        reg = self.registry
        key = account.lower()
        if key in reg.orgs:
            return "org", reg.orgs[key].id, reg.orgs[key].login
        if key in reg.enterprises:
            return "enterprise", reg.enterprises[key].id, reg.enterprises[key].slug
        if key in reg.users:
            return "user", reg.users[key].id, reg.users[key].login
        raise NotFound(f"no account {account}")

    def installation_covers(self, inst: Installation, repo: Repo) -> bool:
        if inst.account_kind == "enterprise":
            ent = self.registry.enterprise_of_repo(repo)
            return ent is not None and ent.slug.lower() == inst.account.lower()
        if repo.owner.lower() != inst.account.lower():
            return False
        return inst.repository_selection == "all" or repo.id in inst.repository_ids

    def installation_for(self, app_id: int | None, scope: Scope) -> Installation | None:
        """The installation (of ``app_id``, or of any app) that covers ``scope``."""
        for inst in self.installations.values():
            if app_id is not None and inst.app_id != app_id:
                continue
            if scope.kind == "repo":
                repo = self.registry.repo_by_name(scope.name)
                if self.installation_covers(inst, repo):
                    return inst
            elif inst.account.lower() == scope.name.lower() and (
                (scope.kind == "org" and inst.account_kind == "org")
                or (scope.kind == "enterprise" and inst.account_kind == "enterprise")
            ):
                return inst
        return None

    # ----------------------------------------------------------------------------------------
    # PATs and issued tokens

    def create_pat(
        self,
        login: str = "octocat",
        scopes: Iterable[str] = ("repo", "admin:org", "manage_runners:enterprise"),
        *,
        token: str | None = None,
        expires_in: float | None = None,
        orgs: Iterable[str] | None = None,
        repos: Iterable[str] | None = None,
        enterprises: Iterable[str] | None = None,
    ) -> Pat:
        user = self.registry.create_user(login)
        token = token or new_pat()
        if token in self.pats:
            raise ValidationFailed("token exists")
        now = self.clock.now()
        pat = Pat(
            next(self._ids),
            token,
            user.login,
            user.id,
            tuple(scopes),
            now,
            None if expires_in is None else now + expires_in,
            None if orgs is None else {o.lower() for o in orgs},
            None if repos is None else {r.lower() for r in repos},
            None if enterprises is None else {e.lower() for e in enterprises},
        )
        self.pats[token] = pat
        self.pats_by_id[pat.id] = pat
        return pat

    def issue_token(self, scope: Scope, kind: Literal["registration", "remove"]) -> IssuedToken:
        scope = self.registry.scope_exists(scope)
        tok = IssuedToken(
            random_string(TOKEN_ALPHABET, 29),
            kind,
            scope,
            self.clock.now() + self.config.registration_token_ttl_s,
        )
        self.issued[tok.token] = tok
        return tok

    def valid_token(self, token: str, kind: Literal["registration", "remove"]) -> IssuedToken | None:
        """The issued token of this kind, expired or not; ``None`` if there is none."""
        issued = self.issued.get(token)
        return issued if issued is not None and issued.kind == kind else None

    def issue_installation_token(
        self,
        installation_id: int,
        *,
        permissions: dict[str, str] | None = None,
        repositories: Iterable[str] | None = None,
        repository_ids: Iterable[int] | None = None,
    ) -> InstallationToken:
        inst = self.installations.get(installation_id)
        if inst is None:
            raise NotFound()
        if inst.suspended:
            raise ValidationFailed("This installation has been suspended")
        perms = dict(inst.permissions)
        if permissions is not None:
            for name, level in permissions.items():
                granted = inst.permissions.get(name)
                if granted is None or (granted == "read" and level != "read"):
                    raise ValidationFailed("The permissions requested are not granted to this installation.")
            perms = dict(permissions)
        repo_ids: set[int] | None = None
        if repositories is not None or repository_ids is not None:
            repo_ids = self._token_repositories(inst, repositories or (), repository_ids or ())
        tok = InstallationToken(
            "ghs_" + random_string(ALNUM, 36),
            inst.id,
            self.clock.now() + self.config.installation_token_ttl_s,
            perms,
            repo_ids,
        )
        self.installation_tokens[tok.token] = tok
        return tok

    def _token_repositories(
        self, inst: Installation, repositories: Iterable[str], repository_ids: Iterable[int]
    ) -> set[int]:
        """The repositories an installation token is narrowed to (each must be covered)."""
        reg = self.registry
        repo_ids: set[int] = set()
        for full in repositories:
            repo = reg.repos.get(f"{inst.account}/{full}".lower()) or reg.repos.get(full.lower())
            if repo is None or not self.installation_covers(inst, repo):
                raise ValidationFailed(NOT_ACCESSIBLE_REPO)
            repo_ids.add(repo.id)
        for rid in repository_ids:
            by_id = reg.repos_by_id.get(rid)
            if by_id is None or not self.installation_covers(inst, by_id):
                raise ValidationFailed(NOT_ACCESSIBLE_REPO)
            repo_ids.add(rid)
        return repo_ids

    def forget_expired(self, now: float) -> None:
        """Drop issued and installation tokens that expired more than a day ago."""
        for token in [t for t, it in self.issued.items() if it.expires_at <= now - 86_400]:
            del self.issued[token]
        for token in [t for t, it in self.installation_tokens.items() if it.expires_at <= now - 86_400]:
            del self.installation_tokens[token]
