"""``runnerd.github`` is an adapter: it imports only the pure layers and its HTTP/JWT libraries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import runnerd.github

pytestmark = pytest.mark.timeout(10)

FORBIDDEN = (
    "runnerd.kube",
    "runnerd.web",
    "runnerd.runtime",
    "runnerd.controller",
    "runnerd.cli",
    "ghsim",
    "devcluster",
    "kubernetes_asyncio",
    "prometheus_client",
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_forbidden_imports() -> None:
    package = Path(runnerd.github.__file__).parent
    files = sorted(package.rglob("*.py"))
    assert len(files) >= 5
    offending = {
        f"{path.name}: {name}"
        for path in files
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    }
    assert offending == set()
