"""The runner image's job hooks drive the readiness probe the pod builder puts on the runner."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from runnerd.manifests.pod import JOB_MARKER, JOB_READINESS_PROBE

ROOT = Path(__file__).resolve().parents[3]
HOOKS = ROOT / "images" / "runner"


def probe(home: Path) -> int:
    command = JOB_READINESS_PROBE["exec"]["command"]
    script = command[-1].replace(str(Path(JOB_MARKER).parent), str(home))
    return subprocess.run([*command[:-1], script], check=False).returncode


def hook(name: str, home: Path) -> None:
    subprocess.run(["sh", str(HOOKS / name)], env={**os.environ, "RUNNER_HOME": str(home)}, check=True)


def test_pod_is_not_ready_while_a_job_runs(tmp_path: Path) -> None:
    assert probe(tmp_path) == 0  # idle (or an image without the hooks): Ready
    hook("runnerd-job-started.sh", tmp_path)
    assert probe(tmp_path) != 0  # a job runs: not Ready
    hook("runnerd-job-completed.sh", tmp_path)
    assert probe(tmp_path) == 0


def test_the_image_installs_the_hooks() -> None:
    dockerfile = (ROOT / "images" / "Dockerfile").read_text()
    assert "ACTIONS_RUNNER_HOOK_JOB_STARTED=/usr/local/bin/runnerd-job-started" in dockerfile
    assert "ACTIONS_RUNNER_HOOK_JOB_COMPLETED=/usr/local/bin/runnerd-job-completed" in dockerfile
    assert JOB_MARKER == "/runner/.runnerd-job"
