"""The controller image installs what the chart runs (no Docker here: static checks)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_controller_image_runs_the_runnerd_console_script_as_non_root() -> None:
    dockerfile = (ROOT / "images" / "controller" / "Dockerfile").read_text()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["runnerd"] == "runnerd.cli:main"
    assert 'ENTRYPOINT ["runnerd"]' in dockerfile
    assert "-c constraints.txt" in dockerfile  # the pinned versions
    assert "USER 65532:65532" in dockerfile


def test_chart_uses_the_controller_image() -> None:
    values = (ROOT / "charts" / "actions-runner-controller" / "values.yaml").read_text()
    assert "repository: ghcr.io/runnerd/runnerd" in values
