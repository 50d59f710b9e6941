"""The runner images' entrypoint (images/runner/runnerd-entrypoint.sh) with fake config.sh/run.sh.

(These image tests live beside the GPU helper's because both ship in the runner images.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
ENTRYPOINT = REPO / "images/runner/runnerd-entrypoint.sh"

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("pgrep") is None, reason="needs bash, pgrep"
)

CONFIG_SH = """#!/usr/bin/env bash
echo "config.sh $*" >> "$STUB_LOG"
if [ "$1" = remove ]; then rm -f .runner; echo "removed" >> "$STUB_LOG"; exit "${STUB_REMOVE_RC:-0}"; fi
n=$(cat .attempts 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > .attempts
[ "$n" -gt "${STUB_CONFIG_FAILS:-0}" ] || exit 1
echo '{"agentName": "x"}' > .runner
"""

RUN_SH = """#!/usr/bin/env bash
echo "run.sh $* token=${RUNNER_TOKEN-unset} jit=${ACTIONS_RUNNER_INPUT_JITCONFIG-unset}" >> "$STUB_LOG"
job=""
trap 'echo "run.sh TERM" >> "$STUB_LOG"; [ -z "$job" ] || kill "$job" 2>/dev/null; exit 0' TERM
if [ -n "${STUB_JOB_SECONDS:-}" ]; then
  (exec -a "$RUNNERD_JOB_PROCESS" sleep "$STUB_JOB_SECONDS") &
  job=$!
  echo "job started" >> "$STUB_LOG"
  wait "$job" && echo "job done" >> "$STUB_LOG"
  job=""
  if [ "${STUB_EXIT_AFTER_JOB:-}" = 1 ]; then
    rm -f .runner  # as an ephemeral runner does after its job
    exit "${STUB_EXIT_CODE:-0}"
  fi
fi
[ -z "${STUB_EXIT_CODE:-}" ] || exit "$STUB_EXIT_CODE"
while :; do sleep 0.1; done
"""


class Runner:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.log = tmp / "stub.log"
        assets = tmp / "assets"
        assets.mkdir()
        for name, text in (("config.sh", CONFIG_SH), ("run.sh", RUN_SH)):
            (assets / name).write_text(text)
            (assets / name).chmod(0o755)
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.home = tmp / "runner"
        self.job_process = f"Runner.Worker-{uuid.uuid4().hex}"
        self.env = {
            "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp),
            "STUB_LOG": str(self.log),
            "RUNNER_HOME": str(self.home),
            "RUNNER_ASSETS_DIR": str(assets),
            "RUNNERD_DOCKERD": str(self.bin / "runnerd-dockerd"),
            "RUNNERD_JOB_PROCESS": self.job_process,
            "RUNNER_CONFIG_RETRY_DELAY": "0",
            "RUNNER_NAME": "example-runner-deployment-x7k2p-9qv4d",
            "RUNNER_ORG": "",
            "RUNNER_REPO": "your-name/your-repo",
            "RUNNER_ENTERPRISE": "",
            "RUNNER_LABELS": "self-hosted,arc-runner",
            "RUNNER_GROUP": "",
            "DOCKER_ENABLED": "false",
            "DOCKERD_IN_RUNNER": "false",
            "GITHUB_URL": "https://github.com/",
            "RUNNER_WORKDIR": "/runner/_work",
            "RUNNER_EPHEMERAL": "true",
            "RUNNER_TOKEN": "AABBCC",
        }
        self.proc: subprocess.Popen[str] | None = None

    def fake(self, name: str, script: str) -> None:
        path = self.bin / name
        path.write_text("#!/usr/bin/env bash\n" + script)
        path.chmod(0o755)

    def start(self, **env: str) -> Runner:
        self.proc = subprocess.Popen(
            ["bash", str(ENTRYPOINT)],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return self

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def wait_for(self, line: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(x.startswith(line) for x in self.lines()):
                return
            assert self.proc is not None
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{line!r} not in {self.lines()}; output: {self.output()}")

    def term(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def finish(self, timeout: float = 20.0) -> tuple[int, str]:
        assert self.proc is not None
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out

    def output(self) -> str:
        if self.proc is not None and self.proc.poll() is None:
            return "(still running)"
        return self.proc.stdout.read() if self.proc and self.proc.stdout else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        subprocess.run(["pkill", "-f", "--", self.job_process], check=False)


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    r = Runner(tmp_path)
    yield r
    r.kill()


def test_token_mode_registers_with_arcs_arguments_then_runs(runner: Runner) -> None:
    runner.start(STUB_EXIT_CODE="0")
    rc, out = runner.finish()
    assert rc == 0, out
    assert runner.lines()[:2] == [
        "config.sh --unattended --replace --name example-runner-deployment-x7k2p-9qv4d "
        "--url https://github.com/your-name/your-repo --token AABBCC --work /runner/_work "
        "--labels self-hosted,arc-runner --ephemeral",
        "run.sh  token=unset jit=unset",  # the token stays out of the job's environment
    ]
    assert (runner.home / "config.sh").exists()  # copied from the image's assets
    assert not (runner.home / ".runner").exists()  # cleaned up for the sidecar's preStop hook


@pytest.mark.parametrize(
    ("scope", "url", "group_arg"),
    [
        ({"RUNNER_ORG": "your-org", "RUNNER_REPO": ""}, "https://github.com/your-org", " --runnergroup gpu"),
        (
            {"RUNNER_ENTERPRISE": "acme", "RUNNER_REPO": "", "GITHUB_URL": "https://ghes.example.com"},
            "https://ghes.example.com/enterprises/acme",
            " --runnergroup gpu",
        ),
        ({}, "https://github.com/your-name/your-repo", ""),  # no groups for repository runners
    ],
)
def test_scope_url_and_runner_group(runner: Runner, scope: dict[str, str], url: str, group_arg: str) -> None:
    runner.start(STUB_EXIT_CODE="0", RUNNER_GROUP="gpu", RUNNER_EPHEMERAL="false", RUNNER_LABELS="", **scope)
    assert runner.finish()[0] == 0
    assert runner.lines()[0] == (
        "config.sh --unattended --replace --name example-runner-deployment-x7k2p-9qv4d "
        f"--url {url} --token AABBCC --work /runner/_work{group_arg}"
    )


def test_registration_is_retried(runner: Runner) -> None:
    runner.start(STUB_EXIT_CODE="0", STUB_CONFIG_FAILS="2")
    assert runner.finish()[0] == 0
    assert [x.split()[0] for x in runner.lines()] == ["config.sh", "config.sh", "config.sh", "run.sh"]


def test_registration_gives_up(runner: Runner) -> None:
    runner.start(STUB_CONFIG_FAILS="99", RUNNER_CONFIG_ATTEMPTS="3")
    rc, out = runner.finish()
    assert rc == 1
    assert "config.sh failed 3 times" in out
    assert not any(x.startswith("run.sh") for x in runner.lines())


def test_jit_mode_runs_with_the_config_and_never_registers(runner: Runner) -> None:
    runner.start(
        RUNNER_TOKEN="", ACTIONS_RUNNER_INPUT_JITCONFIG="eyJqaXQiOiJjb25maWcifQ==", STUB_EXIT_CODE="0"
    )
    assert runner.finish()[0] == 0
    assert runner.lines() == ["run.sh --jitconfig eyJqaXQiOiJjb25maWcifQ== token=unset jit=unset"]


def test_no_credentials_is_an_error(runner: Runner) -> None:
    runner.start(RUNNER_TOKEN="")
    rc, out = runner.finish()
    assert rc == 1
    assert "neither ACTIONS_RUNNER_INPUT_JITCONFIG nor RUNNER_TOKEN is set" in out


def test_the_runners_exit_code_is_the_containers(runner: Runner) -> None:
    runner.start(STUB_JOB_SECONDS="0.2", STUB_EXIT_AFTER_JOB="1", STUB_EXIT_CODE="7")
    rc, out = runner.finish()
    assert rc == 7, out
    assert "the runner exited with 7" in out


def test_sigterm_idle_deregisters_at_once_then_stops(runner: Runner) -> None:
    runner.start().wait_for("run.sh")
    started = time.monotonic()
    runner.term()
    rc, out = runner.finish()
    assert rc == 0, out
    assert time.monotonic() - started < 5
    assert runner.lines()[2:] == ["config.sh remove --token AABBCC", "removed", "run.sh TERM"]


def test_sigterm_lets_a_running_job_finish_before_deregistering(runner: Runner) -> None:
    runner.start(STUB_JOB_SECONDS="2", RUNNER_EPHEMERAL="false", RUNNER_GRACEFUL_STOP_TIMEOUT="30")
    runner.wait_for("job started")
    runner.term()
    rc, out = runner.finish()
    assert rc == 0, out
    assert "a job is running; waiting for it" in out
    assert runner.lines()[2:] == [
        "job started",
        "job done",
        "config.sh remove --token AABBCC",
        "removed",
        "run.sh TERM",
    ]


def test_sigterm_ephemeral_runner_exits_by_itself_after_the_job(runner: Runner) -> None:
    runner.start(
        STUB_JOB_SECONDS="1", STUB_EXIT_AFTER_JOB="1", STUB_EXIT_CODE="0", RUNNER_GRACEFUL_STOP_TIMEOUT="30"
    )
    runner.wait_for("job started")
    runner.term()
    rc, out = runner.finish()
    assert rc == 0, out
    assert runner.lines()[2:] == ["job started", "job done"]  # nothing left to deregister or stop


def test_sigterm_timeout_stops_the_runner_and_the_job(runner: Runner) -> None:
    runner.start(STUB_JOB_SECONDS="60", RUNNER_GRACEFUL_STOP_TIMEOUT="2")
    runner.wait_for("job started")
    started = time.monotonic()
    runner.term()
    rc, out = runner.finish()
    assert rc == 143, out
    assert 1.5 < time.monotonic() - started < 10
    assert "the job is still running after 2s; stopping the runner cancels it" in out
    assert runner.lines()[2:] == ["job started", "run.sh TERM", "config.sh remove --token AABBCC", "removed"]


def test_sigterm_jit_mode_stops_without_deregistering(runner: Runner) -> None:
    runner.start(RUNNER_TOKEN="", ACTIONS_RUNNER_INPUT_JITCONFIG="abc").wait_for("run.sh")
    runner.term()
    assert runner.finish()[0] == 0
    assert runner.lines() == ["run.sh --jitconfig abc token=unset jit=unset", "run.sh TERM"]


def test_waits_for_docker(runner: Runner) -> None:
    ready = runner.tmp / "docker-ready"
    runner.fake("docker", f'[ -e "{ready}" ]\n')
    runner.start(DOCKER_ENABLED="true", STUB_EXIT_CODE="0")
    time.sleep(1.5)
    assert runner.lines() == []
    ready.touch()
    rc, out = runner.finish()
    assert rc == 0, out
    assert "Docker is up" in out


def test_gives_up_on_docker(runner: Runner) -> None:
    runner.fake("docker", "exit 1\n")
    runner.start(DOCKER_ENABLED="true", WAIT_FOR_DOCKER_SECONDS="1")
    rc, out = runner.finish()
    assert rc == 1
    assert "Docker did not answer within 1s" in out


def test_dockerd_in_runner_is_started_first_and_stopped_last(runner: Runner) -> None:
    runner.fake("runnerd-dockerd", 'echo "runnerd-dockerd $1" >> "$STUB_LOG"\n')
    runner.fake("docker", "exit 0\n")
    runner.start(DOCKERD_IN_RUNNER="true", DOCKER_ENABLED="true").wait_for("run.sh")
    runner.term()
    assert runner.finish()[0] == 0
    lines = runner.lines()
    assert lines[0] == "runnerd-dockerd start"
    assert lines[-1] == "runnerd-dockerd stop"


def test_dockerd_in_runner_needs_the_dind_image(runner: Runner) -> None:
    runner.start(DOCKERD_IN_RUNNER="true")
    rc, out = runner.finish()
    assert rc == 1
    assert "use a dind runner image" in out


def test_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    scripts = [ENTRYPOINT, *sorted((REPO / "images").glob("*/*.sh")), REPO / "hack/gpu-check.sh"]
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
    assert all(os.access(s, os.X_OK) for s in scripts)
