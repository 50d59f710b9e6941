"""Credentials as GitHub checks them: classic PATs with scopes, GitHub App JWTs, installation tokens.

Pure and synchronous (time comes from the world's clock).  Errors are :mod:`ghsim.errors`
exceptions carrying GitHub's status codes and messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .entities import App, Installation, InstallationToken, Pat, Repo, Scope
from .errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from .model import World

PrincipalKind = Literal["pat", "installation", "app", "anonymous"]

#: What an endpoint needs.  ``repo_admin``: runner endpoints of a repository; ``repo_actions``:
#: workflow runs and jobs; ``org_runners`` / ``enterprise_runners``: runner endpoints of an
#: organization or enterprise; ``org_read``: runner groups of an organization; ``app``: a GitHub
#: App JWT; ``org_hooks`` / ``repo_hooks``: an organization's or repository's webhooks (their
#: deliveries); ``any``: anything, anonymous included.
Need = Literal[
    "repo_admin", "repo_actions", "org_runners", "enterprise_runners", "org_hooks", "repo_hooks", "app", "any"
]

#: classic PAT scopes that satisfy a need (a scope implies those listed with it)
ACCEPTED_SCOPES: dict[str, tuple[str, ...]] = {
    "repo_admin": ("repo",),
    "repo_actions": ("repo",),
    "org_runners": ("admin:org", "manage_runners:org"),
    "enterprise_runners": ("manage_runners:enterprise", "admin:enterprise"),
    "org_hooks": ("admin:org_hook",),
    "repo_hooks": ("repo", "admin:repo_hook"),
}

#: GitHub App permissions that satisfy a need
APP_PERMISSION: dict[str, str] = {
    "repo_admin": "administration",
    "repo_actions": "actions",
    "org_runners": "organization_self_hosted_runners",
    "org_hooks": "organization_hooks",
    "repo_hooks": "repository_hooks",
}

NOT_ACCESSIBLE_BY_INTEGRATION = "Resource not accessible by integration"
NOT_ACCESSIBLE_BY_PAT = "Resource not accessible by personal access token"
JWT_UNDECODABLE = "A JSON web token could not be decoded"
JWT_EXPIRED = (
    "'Expiration time' claim ('exp') must be a numeric value representing the future time at which "
    "the assertion expires"
)
JWT_TOO_LONG = "'Expiration time' claim ('exp') is too far in the future"
JWT_IAT = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    #: the rate-limit identity, e.g. ``pat:3``, ``installation:40000001``, ``app:100001``
    key: str
    pat: Pat | None = None
    installation: Installation | None = None
    token: InstallationToken | None = None
    app: App | None = None

    @property
    def login(self) -> str:
        if self.pat is not None:
            return self.pat.login
        if self.app is not None:
            return f"{self.app.slug}[bot]"
        return "anonymous"


ANONYMOUS = Principal("anonymous", "anonymous")


def load_public_key(pem: str) -> RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ValidationFailed(f"not a PEM public key: {exc}") from None
    if not isinstance(key, RSAPublicKey):
        raise ValidationFailed("GitHub Apps use RSA keys")
    return key


class Authenticator:
    def __init__(self, world: World) -> None:
        self.world = world
        self._keys: dict[int, tuple[str, RSAPublicKey]] = {}

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            return ANONYMOUS
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() not in ("token", "bearer") or not credential:
            raise Unauthorized("Bad credentials")
        if credential.count(".") == 2 and credential.startswith("eyJ"):
            return self._jwt(credential)
        now = self.world.now()
        pat = self.world.pats.get(credential)
        if pat is not None:
            if pat.expires_at is not None and pat.expires_at <= now:
                raise Unauthorized("Bad credentials")
            return Principal("pat", f"pat:{pat.id}", pat=pat)
        tok = self.world.installation_tokens.get(credential)
        if tok is not None:
            inst = self.world.installations.get(tok.installation_id)
            if tok.expires_at <= now or inst is None:
                raise Unauthorized("Bad credentials")
            return Principal("installation", f"installation:{inst.id}", installation=inst, token=tok)
        raise Unauthorized("Bad credentials")

    def _key(self, app: App) -> RSAPublicKey:
        cached = self._keys.get(app.id)
        if cached is None or cached[0] != app.public_key_pem:
            cached = (app.public_key_pem, load_public_key(app.public_key_pem))
            self._keys[app.id] = cached
        return cached[1]

    def _jwt(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Unauthorized(JWT_UNDECODABLE) from None
        if header.get("alg") != "RS256":
            raise Unauthorized(JWT_UNDECODABLE)
        app = self._app_for_issuer(claims.get("iss"))
        if app is None:
            raise Unauthorized(JWT_UNDECODABLE)
        try:
            jwt.decode(
                token,
                key=self._key(app),
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False},
            )
        except jwt.PyJWTError:
            raise Unauthorized(JWT_UNDECODABLE) from None
        now = self.world.now()
        cfg = self.world.config
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or isinstance(iat, bool) or iat > now + cfg.jwt_iat_skew_s:
            raise Unauthorized(JWT_IAT)
        if not isinstance(exp, int | float) or isinstance(exp, bool) or exp <= now:
            raise Unauthorized(JWT_EXPIRED)
        if exp - iat > cfg.jwt_max_lifetime_s:
            raise Unauthorized(JWT_TOO_LONG)
        return Principal("app", f"app:{app.id}", app=app)

    def _app_for_issuer(self, iss: object) -> App | None:
        if isinstance(iss, int) and not isinstance(iss, bool):
            return self.world.apps.get(iss)
        if isinstance(iss, str):
            if iss.isdigit():
                return self.world.apps.get(int(iss))
            return next((a for a in self.world.apps.values() if a.client_id == iss), None)
        return None

    # ---- authorization -------------------------------------------------------------------------

    def authorize(self, principal: Principal, need: Need, scope: Scope | None, method: str) -> None:
        """Raise GitHub's 401/403/404 unless ``principal`` may do ``need`` on ``scope``."""
        if need == "any":
            return
        if need == "app":
            if principal.kind != "app":
                raise Unauthorized(JWT_UNDECODABLE)
            return
        if principal.kind == "anonymous":
            raise Unauthorized("Requires authentication")
        if principal.kind == "app":
            raise Forbidden(NOT_ACCESSIBLE_BY_INTEGRATION)
        assert scope is not None
        write = method not in ("GET", "HEAD")
        if principal.pat is not None:
            self._authorize_pat(principal.pat, need, scope)
            return
        assert principal.installation is not None
        assert principal.token is not None
        self._authorize_installation(principal.installation, principal.token, need, scope, write)

    def _authorize_pat(self, pat: Pat, need: Need, scope: Scope) -> None:
        if not self._pat_sees(pat, scope):
            raise NotFound()
        accepted = ACCEPTED_SCOPES[need]
        if not any(s in pat.scopes for s in accepted):
            raise Forbidden(NOT_ACCESSIBLE_BY_PAT, accepted_scopes=", ".join(accepted))

    def _pat_sees(self, pat: Pat, scope: Scope) -> bool:
        if scope.kind == "repo":
            repo = self.world.repo_by_name(scope.name)
            if pat.repos is None and pat.orgs is None:
                return True
            return repo.full_name.lower() in (pat.repos or set()) or repo.owner.lower() in (pat.orgs or set())
        if scope.kind == "org":
            return pat.orgs is None or scope.name.lower() in pat.orgs
        return pat.enterprises is None or scope.name.lower() in pat.enterprises

    def _authorize_installation(
        self, inst: Installation, token: InstallationToken, need: Need, scope: Scope, write: bool
    ) -> None:
        if scope.kind == "enterprise":
            raise Forbidden(NOT_ACCESSIBLE_BY_INTEGRATION)
        if scope.kind == "repo":
            repo: Repo = self.world.repo_by_name(scope.name)
            if not self.world.installation_covers(inst, repo) or (
                token.repository_ids is not None and repo.id not in token.repository_ids
            ):
                raise NotFound()
        elif inst.account_kind != "org" or inst.account.lower() != scope.name.lower():
            raise Forbidden(NOT_ACCESSIBLE_BY_INTEGRATION)
        permission = APP_PERMISSION.get(need)
        level = token.permissions.get(permission or "")
        if level is None or (write and level != "write"):
            raise Forbidden(NOT_ACCESSIBLE_BY_INTEGRATION)
