"""The project's own GitHub Actions workflows (.github/workflows/) pass actionlint, and do what the
operations kit promises: CI runs the README's test command with the Go-built binaries cached; the
release builds, pushes and signs the images and the chart (OCI) and publishes the Python package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.chart import tools

pytestmark = [pytest.mark.timeout(60)]

WORKFLOWS = tools.REPO / ".github" / "workflows"


def workflow(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return data


def steps(job: dict[str, Any]) -> str:
    return "\n".join(yaml.safe_dump(s) for s in job.get("steps") or ())


def test_actionlint_finds_nothing(tmp_path: Path) -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["ci.yml", "release.yml"]
    out = tools.run([tools.tool_dir() / "actionlint", "-no-color", *files], cwd=tools.REPO)
    assert out == ""


def test_ci_runs_the_readme_command_with_cached_binaries() -> None:
    assert "make test" in (tools.REPO / "README.md").read_text()
    assert "make test" in (tools.REPO / ".ci" / "run").read_text()
    ci = workflow("ci.yml")
    text = steps(ci["jobs"]["test"])
    assert "run: .ci/run" in text
    assert "~/.cache/runnerd" in text
    assert "hack/build-binaries.sh" in text
    assert "hack/build-tools.sh" in text
    assert ci["permissions"] == {"contents": "read"}


def test_release_publishes_signed_images_chart_and_package() -> None:
    jobs = workflow("release.yml")["jobs"]
    images = {i["image"] for i in jobs["images"]["strategy"]["matrix"]["include"]}
    assert images == {"runnerd", "runnerd-runner", "runnerd-runner-dind", "runnerd-runner-gpu"}
    assert "cosign sign --yes" in steps(jobs["images"])
    chart = steps(jobs["chart"])
    assert "helm push" in chart
    assert "oci://ghcr.io/" in chart
    assert "cosign sign --yes" in chart
    assert "python -m build" in steps(jobs["python"])
    assert "hack/gen_krew_manifest.py" in steps(jobs["python"])
    assert "pypa/gh-action-pypi-publish" in steps(jobs["pypi"])
    assert jobs["pypi"]["permissions"] == {"id-token": "write"}
    for name in ("images", "chart", "python"):
        assert "ci" in jobs[name]["needs"], f"{name} waits for the tests"
