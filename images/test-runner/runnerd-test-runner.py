#!/usr/bin/python3
"""The test runner image's main process: ghsim's virtual runner in a real container.

Facts in (the runner container's environment, as runnerd's pod builder sets it):
``ACTIONS_RUNNER_INPUT_JITCONFIG`` or ``RUNNER_TOKEN`` + ARC's registration variables (see
``ghsim.agent``); ``GHSIM_URL`` (the simulator's address as seen from the pod); ``DOCKER_ENABLED``,
``DOCKERD_IN_RUNNER``, ``WAIT_FOR_DOCKER_SECONDS`` (120); ``RUNNERD_TEST_STEP`` (a shell command run
as the job's step); ``RUNNER_HOME`` (/runner) and runnerd's job hooks.

Steps out, like runnerd's real entrypoint:

1. ``DOCKERD_IN_RUNNER=true``: ``sudo -E runnerd-dockerd start``; ``DOCKER_ENABLED=true``: wait until
   ``docker info`` answers; ``$RUNNER_HOME/.runner`` marks the runner configured (the sidecar's
   preStop waits for it to go).
2. The virtual runner registers, takes one job and reports it; while the job runs the job hooks mark
   the runner busy and ``RUNNERD_TEST_STEP`` runs; its exit code and output tail go to
   ``/dev/termination-log`` (the container's termination message).
3. SIGTERM: an idle runner stops at once; a busy one finishes its job first.
4. Exit code: the step's when it failed, else the virtual runner's (``ghsim.agent``); 1 when Docker
   never came up. The credentials are removed from the environment the step sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, "/opt/runnerd/lib")

from ghsim.agent import run_virtual_runner

CREDENTIALS = ("ACTIONS_RUNNER_INPUT_JITCONFIG", "RUNNER_TOKEN")
TERMINATION_LOG = Path(os.environ.get("RUNNERD_TERMINATION_LOG", "/dev/termination-log"))


def say(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} runnerd-test-runner: {msg}", flush=True)


def truthy(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


def start_docker(env: dict[str, str]) -> bool:
    if truthy("DOCKERD_IN_RUNNER"):
        say("starting dockerd in this container")
        if subprocess.run(["sudo", "-E", "runnerd-dockerd", "start"], env=env, check=False).returncode:
            return False
    if not truthy("DOCKER_ENABLED") and not truthy("DOCKERD_IN_RUNNER"):
        return True
    deadline = time.monotonic() + float(os.environ.get("WAIT_FOR_DOCKER_SECONDS", "120"))
    while time.monotonic() < deadline:
        probe = subprocess.run(["docker", "info"], env=env, capture_output=True, check=False)
        if probe.returncode == 0:
            say("docker is up")
            return True
        time.sleep(0.5)
    say("docker did not answer in time")
    return False


class Job:
    """The job hooks and the step: run while the virtual runner holds a job."""

    def __init__(self, step_env: dict[str, str]) -> None:
        self.step_env = step_env
        self.busy = False
        self.step_rc = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def hook(self, busy: bool) -> None:
        self.busy = busy
        name = "ACTIONS_RUNNER_HOOK_JOB_STARTED" if busy else "ACTIONS_RUNNER_HOOK_JOB_COMPLETED"
        script = os.environ.get(name)
        if script:
            await asyncio.to_thread(subprocess.run, [script], env=self.step_env, check=False)
        if not busy:
            self.idle.set()
            return
        self.idle.clear()
        step = os.environ.get("RUNNERD_TEST_STEP")
        if step:
            await asyncio.to_thread(self.run_step, step)

    def run_step(self, step: str) -> None:
        say(f"step: {step}")
        proc = subprocess.run(
            ["/bin/sh", "-c", step], env=self.step_env, capture_output=True, text=True, check=False
        )
        out = (proc.stdout + proc.stderr).strip()
        print(out, flush=True)
        self.step_rc = proc.returncode
        say(f"step exited {proc.returncode}")
        tail = "\n".join(out.splitlines()[-20:])
        with contextlib.suppress(OSError):
            TERMINATION_LOG.write_text(f"step-exit-code={proc.returncode}\n{tail}\n"[:4000])


async def main() -> int:
    env = dict(os.environ)
    step_env = {k: v for k, v in env.items() if k not in CREDENTIALS}
    home = Path(env.get("RUNNER_HOME", "/runner"))
    if not start_docker(step_env):
        return 1
    base_url = env.get("GHSIM_URL") or env.get("GITHUB_URL", "")
    job = Job(step_env)
    marker = home / ".runner"
    marker.write_text("configured\n")
    runner = asyncio.create_task(run_virtual_runner(base_url, env, job_hook=job.hook))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    stop = asyncio.create_task(stopping.wait())
    await asyncio.wait({runner, stop}, return_when=asyncio.FIRST_COMPLETED)
    if not runner.done():
        say("SIGTERM: " + ("letting the running job finish" if job.busy else "idle, stopping"))
        if job.busy:
            await job.idle.wait()
            await asyncio.wait({runner}, timeout=float(env.get("RUNNER_GRACEFUL_STOP_TIMEOUT", "15")))
        runner.cancel()
    stop.cancel()
    code = 0
    try:
        code = await runner
    except asyncio.CancelledError:
        code = 0
    marker.unlink(missing_ok=True)
    if truthy("DOCKERD_IN_RUNNER"):
        await asyncio.to_thread(
            subprocess.run, ["sudo", "-E", "runnerd-dockerd", "stop"], env=step_env, check=False
        )
    code = job.step_rc or code
    say(f"exit {code}")
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
