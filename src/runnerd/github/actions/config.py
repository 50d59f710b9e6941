"""``githubConfigUrl``: where a scale set registers, and where its REST API is.

Facts in (the URL as ARC users write it), steps out (:class:`ConfigURL`). Rules follow ARC's
``github/actions/config.go``: the URL is trimmed of ``/`` and its path has one segment (an
organization), two starting with ``enterprises`` (an enterprise) or two (a repository). github.com,
``www.github.com``, ``github.localhost`` and ``*.ghe.com`` are *hosted*: their REST API is on
``api.<host>``; any other host (GitHub Enterprise Server, a simulator on ``127.0.0.1``) serves it under
``/api/v3``. The environment variable ``GITHUB_ACTIONS_FORCE_GHES`` forces the second form.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from runnerd.github.config import Scope
from runnerd.github.errors import GitHubConfigError

FORCE_GHES_ENV = "GITHUB_ACTIONS_FORCE_GHES"
_HOSTED = frozenset({"github.com", "www.github.com", "github.localhost"})


@dataclass(frozen=True)
class ConfigURL:
    """A parsed ``githubConfigUrl``: ``url`` as given (trimmed), the runner ``scope``, the REST
    ``api_url`` (no trailing slash) and whether the host is ``hosted`` (github.com-style)."""

    url: str
    scope: Scope
    api_url: str
    hosted: bool

    @classmethod
    def parse(cls, raw: str, *, force_ghes: bool | None = None) -> ConfigURL:
        url = raw.strip().strip("/")
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise GitHubConfigError(f"invalid config URL {raw!r}: must be an absolute http(s) URL")
        segments = [s for s in parts.path.strip("/").split("/") if s] if parts.path.strip("/") else []
        scope = _scope(segments, raw)
        netloc = parts.netloc.lower()
        host = parts.hostname or ""
        if force_ghes is None:
            force_ghes = FORCE_GHES_ENV in os.environ
        hosted = not force_ghes and (host in _HOSTED or host.endswith(".ghe.com"))
        scheme = parts.scheme.lower()
        if hosted:
            api_host = "github.com" if host == "www.github.com" else netloc
            api_url = f"{scheme}://api.{api_host}"
        else:
            api_url = f"{scheme}://{netloc}/api/v3"
        return cls(url=url, scope=scope, api_url=api_url, hosted=hosted)

    @property
    def registration_token_path(self) -> str:
        """The REST path (under ``api_url``) that mints a runner registration token."""
        return f"{self.scope.api_path}/actions/runners/registration-token"

    @property
    def labels(self) -> dict[str, str]:
        """ARC's metric labels from the URL: ``enterprise``, ``organization``, ``repository``."""
        out = {"enterprise": "", "organization": "", "repository": ""}
        if self.scope.kind == "enterprise":
            out["enterprise"] = self.scope.name
        else:
            out["organization"] = self.scope.owner
            if self.scope.kind == "repository":
                out["repository"] = self.scope.repo
        return out


def _scope(segments: list[str], raw: str) -> Scope:
    if len(segments) == 1:
        return Scope.organization(segments[0])
    if len(segments) == 2 and segments[0].lower() == "enterprises":
        return Scope.enterprise(segments[1])
    if len(segments) == 2:
        return Scope.repository(f"{segments[0]}/{segments[1]}")
    raise GitHubConfigError(f"invalid config URL {raw!r}, should point to an enterprise, org, or repository")
