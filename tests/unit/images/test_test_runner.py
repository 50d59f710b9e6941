"""images/test-runner/runnerd-test-runner.py as a process (the container's main process, outside a
container) against an in-process ghsim: JIT config in, the step run during the job, exit code out,
SIGTERM while busy lets the job finish, SIGTERM while idle stops at once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devcluster.wait import wait_until
from ghsim import JobSpec, Simulator
from ghsim.entities import Scope

SCRIPT = Path(__file__).resolve().parents[3] / "images" / "test-runner" / "runnerd-test-runner.py"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(tick_interval=0.05) as s:
        s.world.create_org("octo-org")
        s.world.create_repo("octo-org", "app")
        yield s


async def start(sim: Simulator, tmp_path: Path, step: str) -> asyncio.subprocess.Process:
    _, jit = sim.world.generate_jit(Scope("repo", "octo-org/app"), "jit-1", 1, ["self-hosted", "real"])
    home = tmp_path / "runner"
    home.mkdir()
    hooks = SCRIPT.parents[1] / "runner"
    env = {
        "PATH": os.environ["PATH"],
        "ACTIONS_RUNNER_INPUT_JITCONFIG": jit,
        "GITHUB_URL": sim.base_url + "/",
        "RUNNER_HOME": str(home),
        "RUNNERD_TEST_STEP": step,
        "RUNNERD_TERMINATION_LOG": str(tmp_path / "termination-log"),
        "ACTIONS_RUNNER_HOOK_JOB_STARTED": str(hooks / "runnerd-job-started.sh"),
        "ACTIONS_RUNNER_HOOK_JOB_COMPLETED": str(hooks / "runnerd-job-completed.sh"),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )


def enqueue(sim: Simulator, duration: float) -> int:
    repo = sim.world.repo_by_name("octo-org/app")
    return sim.world.enqueue_run(repo, [JobSpec(("self-hosted", "real"), "job", duration)]).job_ids[0]


@pytest.mark.parametrize(
    ("step", "want_code", "want_log"),
    [
        (
            'echo the step ran; test "$ACTIONS_RUNNER_INPUT_JITCONFIG" = ""',
            0,
            "step-exit-code=0\nthe step ran",
        ),
        ("echo broken >&2; exit 3", 3, "step-exit-code=3\nbroken"),
    ],
)
async def test_runs_one_job_with_the_step_and_exits_with_its_code(
    sim: Simulator, tmp_path: Path, step: str, want_code: int, want_log: str
) -> None:
    job_id = enqueue(sim, 0.2)
    proc = await start(sim, tmp_path, step)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == want_code, out.decode()
    job = sim.world.jobs[job_id]
    assert (job.status, job.conclusion) == ("completed", "success")
    assert (tmp_path / "termination-log").read_text().startswith(want_log)
    assert not (tmp_path / "runner" / ".runner").exists()  # the sidecar's preStop wait ends
    assert not (tmp_path / "runner" / ".runnerd-job").exists()  # the job hooks ran (busy, then idle)


async def test_sigterm_during_a_job_lets_it_finish(sim: Simulator, tmp_path: Path) -> None:
    job_id = enqueue(sim, 2.0)
    proc = await start(sim, tmp_path, "true")
    await wait_until("the job to start", lambda: sim.world.jobs[job_id].status == "in_progress")
    await wait_until("the busy marker", (tmp_path / "runner" / ".runnerd-job").exists)
    proc.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    assert b"letting the running job finish" in out
    assert (sim.world.jobs[job_id].status, sim.world.jobs[job_id].conclusion) == ("completed", "success")


async def test_sigterm_while_idle_stops_at_once(sim: Simulator, tmp_path: Path) -> None:
    proc = await start(sim, tmp_path, "true")
    world = sim.world
    await wait_until("the runner online", lambda: any(world.runner_online(r) for r in world.runners.values()))
    proc.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, out.decode()
    assert b"idle, stopping" in out
