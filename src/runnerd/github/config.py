"""Where GitHub is (github.com or a GitHub Enterprise Server) and where a runner registers (its scope)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import quote, urlsplit, urlunsplit

from runnerd.api import RunnerScope
from runnerd.github.errors import GitHubConfigError

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_GITHUB_URL = "https://github.com/"
DEFAULT_API_VERSION = "2022-11-28"
GHES_API_PATH = "/api/v3"

ScopeKind = Literal["enterprise", "organization", "repository"]
_KINDS: tuple[str, ...] = get_args(ScopeKind)


def _normalise_url(url: str, what: str) -> tuple[str, str, str]:
    """``(scheme, netloc, path-without-trailing-slash)`` of an absolute http(s) URL, or a config error."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise GitHubConfigError(f"{what} must be an absolute http(s) URL, got {url!r}")
    if parts.query or parts.fragment:
        raise GitHubConfigError(f"{what} must not have a query or fragment, got {url!r}")
    return parts.scheme.lower(), parts.netloc, parts.path.rstrip("/")


@dataclass(frozen=True)
class GitHubConfig:
    """GitHub's endpoints.

    ``api_url``: REST API root without a trailing slash (``https://api.github.com`` or
    ``https://ghes.example.com/api/v3``). ``github_url``: the web root with a trailing slash, which runner
    pods get as ``GITHUB_URL`` and which, with the scope appended, is the runner's ``config.sh --url``.
    ``api_version``: sent as ``X-GitHub-Api-Version`` (``None`` sends none).
    """

    api_url: str = DEFAULT_API_URL
    github_url: str = DEFAULT_GITHUB_URL
    api_version: str | None = DEFAULT_API_VERSION

    def __post_init__(self) -> None:
        scheme, netloc, path = _normalise_url(self.api_url, "the GitHub API URL")
        object.__setattr__(self, "api_url", urlunsplit((scheme, netloc, path, "", "")))
        scheme, netloc, path = _normalise_url(self.github_url, "the GitHub URL")
        object.__setattr__(self, "github_url", urlunsplit((scheme, netloc, path + "/", "", "")))

    @classmethod
    def resolve(
        cls,
        *,
        enterprise_url: str | None = None,
        api_url: str | None = None,
        runner_github_url: str | None = None,
        api_version: str | None = DEFAULT_API_VERSION,
    ) -> GitHubConfig:
        """The endpoints from ARC-style settings.

        ``enterprise_url`` (``githubEnterpriseServerURL`` / ``--github-enterprise-url``): a GitHub
        Enterprise Server, e.g. ``https://ghes.example.com``; the API is at ``<url>/api/v3`` (not appended
        twice) and runners register at ``<url>/``. Otherwise github.com: the API at ``api_url``
        (``--github-url``; default ``https://api.github.com``), runners at ``https://github.com/``.
        ``runner_github_url`` (``--runner-github-url``) overrides the runners' URL in both cases
        (e.g. GHE.com data residency, ``https://octo.ghe.com/``).
        """
        if enterprise_url:
            scheme, netloc, path = _normalise_url(enterprise_url, "the GitHub Enterprise Server URL")
            if path.endswith(GHES_API_PATH):
                path = path[: -len(GHES_API_PATH)]
            resolved_api = urlunsplit((scheme, netloc, path + GHES_API_PATH, "", ""))
            web = urlunsplit((scheme, netloc, path + "/", "", ""))
        else:
            resolved_api = api_url or DEFAULT_API_URL
            web = DEFAULT_GITHUB_URL
        return cls(api_url=resolved_api, github_url=runner_github_url or web, api_version=api_version)

    @property
    def is_enterprise_server(self) -> bool:
        return urlsplit(self.api_url).path.endswith(GHES_API_PATH)


@dataclass(frozen=True, order=True)
class Scope:
    """Where runners register: an enterprise (slug), an organization (login) or a repository
    (``owner/repo``). Build one with :meth:`enterprise`, :meth:`organization`, :meth:`repository`,
    :meth:`parse` or :meth:`from_runner_scope`; the constructor validates."""

    kind: ScopeKind
    name: str

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise GitHubConfigError(f"unknown scope kind {self.kind!r}")
        name = self.name.strip()
        if not name or any(c.isspace() for c in name):
            raise GitHubConfigError(f"invalid {self.kind} name {self.name!r}")
        if self.kind == "repository":
            owner, sep, repo = name.partition("/")
            if not sep or not owner or not repo or "/" in repo:
                raise GitHubConfigError(f"repository must be owner/name, got {self.name!r}")
        elif "/" in name:
            raise GitHubConfigError(f"invalid {self.kind} name {self.name!r}")
        object.__setattr__(self, "name", name)

    @classmethod
    def enterprise(cls, slug: str) -> Scope:
        return cls("enterprise", slug)

    @classmethod
    def organization(cls, login: str) -> Scope:
        return cls("organization", login)

    @classmethod
    def repository(cls, full_name: str) -> Scope:
        return cls("repository", full_name)

    @classmethod
    def parse(
        cls, *, enterprise: str | None = None, organization: str | None = None, repository: str | None = None
    ) -> Scope:
        """The one scope of a Runner spec's ``enterprise``/``organization``/``repository`` fields."""
        given = [
            (kind, value)
            for kind, value in (
                ("enterprise", enterprise),
                ("organization", organization),
                ("repository", repository),
            )
            if value
        ]
        if len(given) != 1:
            raise GitHubConfigError(
                "exactly one of enterprise, organization and repository must be set, "
                f"got {len(given)}: {', '.join(k for k, _ in given) or 'none'}"
            )
        kind, value = given[0]
        assert value is not None
        return cls(kind, value)  # type: ignore[arg-type]

    @classmethod
    def from_runner_scope(cls, scope: RunnerScope) -> Scope:
        return cls(scope.kind, scope.name)

    @property
    def owner(self) -> str:
        """The organization (or user) that owns a repository, or the organization itself."""
        if self.kind == "enterprise":
            raise GitHubConfigError("an enterprise scope has no owner")
        return self.name.partition("/")[0]

    @property
    def repo(self) -> str:
        if self.kind != "repository":
            raise GitHubConfigError(f"{self} is not a repository scope")
        return self.name.partition("/")[2]

    @property
    def path_template(self) -> str:
        """The REST path prefix as a URI template: ``/enterprises/{enterprise}``, ``/orgs/{org}``,
        ``/repos/{owner}/{repo}`` (calls are counted by template, so this never embeds names)."""
        if self.kind == "enterprise":
            return "/enterprises/{enterprise}"
        if self.kind == "organization":
            return "/orgs/{org}"
        return "/repos/{owner}/{repo}"

    @property
    def path_vars(self) -> dict[str, str]:
        if self.kind == "enterprise":
            return {"enterprise": self.name}
        if self.kind == "organization":
            return {"org": self.name}
        return {"owner": self.owner, "repo": self.repo}

    @property
    def api_path(self) -> str:
        """The expanded, percent-encoded REST path prefix: ``/repos/octo/hello``."""
        if self.kind == "enterprise":
            return f"/enterprises/{quote(self.name, safe='')}"
        if self.kind == "organization":
            return f"/orgs/{quote(self.name, safe='')}"
        return f"/repos/{quote(self.owner, safe='')}/{quote(self.repo, safe='')}"

    @property
    def runner_path(self) -> str:
        """The scope's path under the GitHub web URL: ``enterprises/e``, ``org``, ``owner/repo``."""
        if self.kind == "enterprise":
            return f"enterprises/{self.name}"
        return self.name

    def runner_url(self, github_url: str = DEFAULT_GITHUB_URL) -> str:
        """The runner's registration URL (``config.sh --url``): ``https://github.com/octo/hello``."""
        return github_url.rstrip("/") + "/" + self.runner_path

    def __str__(self) -> str:
        return self.runner_path
