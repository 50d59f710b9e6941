"""GitHub endpoints (github.com, GHES) and scopes."""

from __future__ import annotations

import pytest

from runnerd.api import RunnerScope
from runnerd.github import GitHubConfig, GitHubConfigError, Scope

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("kwargs", "api_url", "github_url"),
    [
        ({}, "https://api.github.com", "https://github.com/"),
        (
            {"enterprise_url": "https://ghes.example.com"},
            "https://ghes.example.com/api/v3",
            "https://ghes.example.com/",
        ),
        (
            {"enterprise_url": "https://ghes.example.com/"},
            "https://ghes.example.com/api/v3",
            "https://ghes.example.com/",
        ),
        (
            {"enterprise_url": "https://ghes.example.com/api/v3/"},
            "https://ghes.example.com/api/v3",
            "https://ghes.example.com/",
        ),
        (
            {"enterprise_url": "https://example.com/github"},
            "https://example.com/github/api/v3",
            "https://example.com/github/",
        ),
        (
            {"enterprise_url": "HTTPS://ghes.example.com:8443"},
            "https://ghes.example.com:8443/api/v3",
            "https://ghes.example.com:8443/",
        ),
        ({"api_url": "https://api.octo.ghe.com/"}, "https://api.octo.ghe.com", "https://github.com/"),
        (
            {"api_url": "https://api.octo.ghe.com", "runner_github_url": "https://octo.ghe.com"},
            "https://api.octo.ghe.com",
            "https://octo.ghe.com/",
        ),
        (
            {
                "enterprise_url": "https://ghes.example.com",
                "runner_github_url": "https://ghes-alias.example.com/",
            },
            "https://ghes.example.com/api/v3",
            "https://ghes-alias.example.com/",
        ),
    ],
)
def test_resolve(kwargs: dict[str, str], api_url: str, github_url: str) -> None:
    config = GitHubConfig.resolve(**kwargs)
    assert (config.api_url, config.github_url) == (api_url, github_url)
    assert config.is_enterprise_server is ("enterprise_url" in kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"enterprise_url": "ghes.example.com"},
        {"enterprise_url": "ftp://ghes.example.com"},
        {"api_url": "https://api.github.com/?x=1"},
        {"runner_github_url": "/relative"},
    ],
)
def test_resolve_rejects(kwargs: dict[str, str]) -> None:
    with pytest.raises(GitHubConfigError):
        GitHubConfig.resolve(**kwargs)


@pytest.mark.parametrize(
    ("scope", "template", "variables", "api_path", "runner_url"),
    [
        (
            Scope.enterprise("acme"),
            "/enterprises/{enterprise}",
            {"enterprise": "acme"},
            "/enterprises/acme",
            "https://github.com/enterprises/acme",
        ),
        (Scope.organization("octo"), "/orgs/{org}", {"org": "octo"}, "/orgs/octo", "https://github.com/octo"),
        (
            Scope.repository("octo/hello.world"),
            "/repos/{owner}/{repo}",
            {"owner": "octo", "repo": "hello.world"},
            "/repos/octo/hello.world",
            "https://github.com/octo/hello.world",
        ),
        (
            Scope.organization(" octo "),
            "/orgs/{org}",
            {"org": "octo"},
            "/orgs/octo",
            "https://github.com/octo",
        ),
        (Scope.organization("a%b"), "/orgs/{org}", {"org": "a%b"}, "/orgs/a%25b", "https://github.com/a%b"),
    ],
)
def test_scope_paths(
    scope: Scope, template: str, variables: dict[str, str], api_path: str, runner_url: str
) -> None:
    assert scope.path_template == template
    assert scope.path_vars == variables
    assert scope.api_path == api_path
    assert scope.runner_url() == runner_url


def test_scope_runner_url_on_ghes() -> None:
    config = GitHubConfig.resolve(enterprise_url="https://ghes.example.com")
    assert Scope.repository("o/r").runner_url(config.github_url) == "https://ghes.example.com/o/r"
    assert Scope.enterprise("e").runner_url(config.github_url) == "https://ghes.example.com/enterprises/e"


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("repository", "noslash"),
        ("repository", "a/b/c"),
        ("repository", "/b"),
        ("repository", "a/"),
        ("organization", "a/b"),
        ("organization", ""),
        ("enterprise", "with space"),
        ("team", "x"),
    ],
)
def test_scope_rejects(kind: str, name: str) -> None:
    with pytest.raises(GitHubConfigError):
        Scope(kind, name)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"organization": "octo"}, Scope.organization("octo")),
        ({"repository": "octo/r", "enterprise": None}, Scope.repository("octo/r")),
        ({"enterprise": "acme", "organization": ""}, Scope.enterprise("acme")),
    ],
)
def test_scope_parse(kwargs: dict[str, str | None], expected: Scope) -> None:
    assert Scope.parse(**kwargs) == expected


@pytest.mark.parametrize("kwargs", [{}, {"organization": "o", "repository": "o/r"}])
def test_scope_parse_needs_exactly_one(kwargs: dict[str, str]) -> None:
    with pytest.raises(GitHubConfigError, match="exactly one"):
        Scope.parse(**kwargs)


def test_scope_from_api_runner_scope() -> None:
    assert Scope.from_runner_scope(RunnerScope("repository", "o/r")) == Scope.repository("o/r")
    assert Scope.repository("o/r").owner == "o"
    assert Scope.repository("o/r").repo == "r"
    assert str(Scope.enterprise("e")) == "enterprises/e"
    assert len({Scope.organization("o"), Scope.organization(" o")}) == 1  # hashable, normalised
