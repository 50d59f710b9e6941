"""docs/install.md's proxy advice, checked against the HTTP stack the controller uses (aiohttp with
``trust_env``, for GitHub and, through runnerd.kube's transport, for the Kubernetes API)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

INSTALL_DOC = Path(__file__).resolve().parents[3] / "docs" / "install.md"


@pytest.fixture(autouse=True)
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def proxied(url: str) -> bool:
    try:
        get_env_proxy_for_url(URL(url))
    except LookupError:
        return False
    return True


def documented_env() -> dict[str, str]:
    section = INSTALL_DOC.read_text().split("## Proxy", 1)[1]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match, "no yaml example in the Proxy section"
    env: dict[str, str] = yaml.safe_load(match.group(1))["env"]
    return env


def test_the_documented_no_proxy_keeps_the_api_server_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in documented_env().items():
        monkeypatch.setenv(name, value)
    assert not proxied("https://10.96.0.1:443/api/v1/pods")  # the kubernetes Service's IP
    assert not proxied("https://kubernetes.default.svc/api")
    assert proxied("https://api.github.com/repos/octo-org/app/actions/runners")


def test_cidr_ranges_in_no_proxy_are_not_understood(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.com:3128")
    monkeypatch.setenv("NO_PROXY", "10.0.0.0/8")
    assert proxied("https://10.96.0.1:443/api/v1/pods")
