"""runnerd-gpu-setup end to end on fake trees: the CDI spec, stdout for dockerd, daemon.json, the
--gpus placeholder, --check, --docker-flags, and the console entry points."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from runnerd.gpu import cdi, cli, dockerd
from runnerd.gpu.discover import discover
from runnerd.gpu.inventory import Config
from tests.unit.gpu.fake import DRIVER, LIBDIR, UUIDS, FakeNode

REPO = Path(__file__).resolve().parents[3]
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "NVIDIA_VISIBLE_DEVICES": UUIDS[0],
    "RUNNERD_GPU_COUNT": "1",
}


def setup(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(["--root", str(root), *args], env={**BASE_ENV, **(env or {})}, stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def spec_at(root: Path, cdi_dir: str = "/etc/cdi") -> dict[str, Any]:
    data = yaml.safe_load((root / cdi_dir.lstrip("/") / "nvidia.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_setup_writes_the_spec_and_prints_nothing_for_a_recent_docker(tmp_path: Path) -> None:
    FakeNode(tmp_path, gpus=2).build()
    rc, out, err = setup(tmp_path, "--docker-version", "28.3", env={"RUNNERD_CDI_SPEC_DIR": "/etc/cdi"})
    assert (rc, out) == (0, "")
    assert "wrote /etc/cdi/nvidia.yaml: devices 0, GPU-0a1b2c3d-0000-1111-2222-333344445555, all" in err
    spec = spec_at(tmp_path)
    assert spec["cdiVersion"] == "0.5.0"
    assert spec["kind"] == "nvidia.com/gpu"
    assert [(d["name"], d["containerEdits"]["deviceNodes"]) for d in spec["devices"]] == [
        ("0", [{"path": "/dev/nvidia0"}]),
        (UUIDS[0], [{"path": "/dev/nvidia0"}]),
        ("all", [{"path": "/dev/nvidia0"}]),
    ]
    edits = spec["containerEdits"]
    assert edits["env"] == ["NVIDIA_VISIBLE_DEVICES=void"]
    assert edits["deviceNodes"] == [
        {"path": p} for p in ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")
    ]
    assert "hooks" not in edits
    mounts = {m["containerPath"]: m for m in edits["mounts"]}
    assert mounts[f"{LIBDIR}/libcuda.so.1"] == {
        "hostPath": f"{LIBDIR}/libcuda.so.{DRIVER}",
        "containerPath": f"{LIBDIR}/libcuda.so.1",
        "options": ["ro", "nosuid", "nodev", "bind"],
    }
    assert mounts["/usr/bin/nvidia-smi"]["hostPath"] == "/usr/bin/nvidia-smi"
    assert oct((tmp_path / "etc/cdi/nvidia.yaml").stat().st_mode & 0o777) == "0o644"


def test_every_exposed_gpu_gets_an_index_and_a_uuid_device(tmp_path: Path) -> None:
    FakeNode(tmp_path, gpus=4).build()
    rc, _, _ = setup(
        tmp_path,
        "--docker-version",
        "29.0",
        env={"NVIDIA_VISIBLE_DEVICES": f"{UUIDS[3]},{UUIDS[1]}", "RUNNERD_GPU_COUNT": "2"},
    )
    assert rc == 0
    devices = {
        d["name"]: [n["path"] for n in d["containerEdits"]["deviceNodes"]]
        for d in spec_at(tmp_path)["devices"]
    }
    assert devices == {
        "0": ["/dev/nvidia3"],
        "1": ["/dev/nvidia1"],
        UUIDS[3]: ["/dev/nvidia3"],
        UUIDS[1]: ["/dev/nvidia1"],
        "all": ["/dev/nvidia3", "/dev/nvidia1"],
    }


def test_failed_setup_writes_nothing_and_explains_on_stderr(tmp_path: Path) -> None:
    FakeNode(tmp_path, gpus=0, control=()).build()
    rc, out, err = setup(tmp_path, "--docker-version", "28.3")
    assert (rc, out) == (cli.EXIT_FAILED, "")
    assert (
        "runnerd-gpu-setup: ERROR: no NVIDIA device nodes in /dev: does the pod request nvidia.com/gpu" in err
    )
    assert err.rstrip().endswith("GPU setup failed; job containers will get no GPU")
    assert not (tmp_path / "etc/cdi/nvidia.yaml").exists()


@pytest.mark.parametrize(
    ("version", "flag", "daemon_json", "stdout", "written"),
    [
        ("28.2", "no", None, "", None),
        ("27.5", "yes", None, "--feature=cdi=true\n", None),
        ("26.1", "no", None, "", {"features": {"cdi": True}}),
        # a features object in daemon.json: the flag would clash with it (dockerd refuses both)
        ("27.5", "yes", {"features": {"containerd-snapshotter": True}, "mtu": 1400},
         "", {"features": {"containerd-snapshotter": True, "cdi": True}, "mtu": 1400}),
        ("25.0", "no", {"features": {"cdi": True}}, "", {"features": {"cdi": True}}),
    ],
)  # fmt: skip
def test_cdi_is_turned_on_the_way_this_dockerd_accepts(
    tmp_path: Path,
    version: str,
    flag: str,
    daemon_json: dict[str, Any] | None,
    stdout: str,
    written: dict[str, Any] | None,
) -> None:
    FakeNode(tmp_path).build()
    path = tmp_path / "etc/docker/daemon.json"
    if daemon_json is not None:
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(daemon_json))
    rc, out, _ = setup(tmp_path, "--docker-version", version, "--docker-feature-flag", flag)
    assert (rc, out) == (0, stdout)
    assert (json.loads(path.read_text()) if path.exists() else None) == written


@pytest.mark.parametrize(
    ("version", "daemon_json", "why"),
    [
        ("24.0", None, "Docker 24.0 has no CDI support"),
        ("28.3", '{"features": {"cdi": false}}', "features.cdi to false"),
        ("28.3", "{not json", "is not valid JSON"),
    ],
)
def test_no_cdi_prints_the_equivalent_docker_run_flags(
    tmp_path: Path, version: str, daemon_json: str | None, why: str
) -> None:
    FakeNode(tmp_path).build()
    if daemon_json is not None:
        (tmp_path / "etc/docker").mkdir(parents=True)
        (tmp_path / "etc/docker/daemon.json").write_text(daemon_json)
    rc, out, err = setup(tmp_path, "--docker-version", version)
    assert (rc, out) == (cli.EXIT_NO_CDI, "")
    assert why in err
    assert "--device=/dev/nvidia0 --device=/dev/nvidiactl" in err
    assert (tmp_path / "etc/cdi/nvidia.yaml").exists()


def test_placeholder_hook_in_the_sidecar_tools_dir(tmp_path: Path) -> None:
    FakeNode(tmp_path).build()
    (tmp_path / "runnerd/bin").mkdir(parents=True)
    rc, _, err = setup(tmp_path, "--docker-version", "28.3")
    assert rc == 0
    hook = tmp_path / "runnerd/bin/nvidia-cdi-hook"
    assert os.access(hook, os.X_OK)
    assert dockerd.is_placeholder(str(hook))
    assert "/runnerd/bin/nvidia-cdi-hook placeholder" in err
    result = subprocess.run([str(hook), "update-ldcache"], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "runnerd placeholder" in result.stderr
    assert "hooks" not in spec_at(tmp_path)["containerEdits"]


def test_no_placeholder_without_a_tools_dir_or_when_told(tmp_path: Path) -> None:
    FakeNode(tmp_path).build()
    _, _, err = setup(tmp_path, "--docker-version", "28.3")
    assert "use `docker run --device nvidia.com/gpu=all`" in err
    (tmp_path / "runnerd/bin").mkdir(parents=True)
    setup(tmp_path, "--docker-version", "28.3", "--no-hook-placeholder")
    assert not (tmp_path / "runnerd/bin/nvidia-cdi-hook").exists()


def test_a_real_nvidia_cdi_hook_adds_update_ldcache_and_no_placeholder(tmp_path: Path) -> None:
    FakeNode(tmp_path, extra={"/usr/local/nvidia/toolkit/nvidia-cdi-hook": "\x7fELF real hook"}).build()
    (tmp_path / "usr/local/nvidia/toolkit/nvidia-cdi-hook").chmod(0o755)
    (tmp_path / "runnerd/bin").mkdir(parents=True)
    env = {"PATH": "/runnerd/bin:/usr/local/nvidia/toolkit:/usr/bin"}
    rc, _, _ = setup(tmp_path, "--docker-version", "28.3", env=env)
    assert rc == 0
    assert not (tmp_path / "runnerd/bin/nvidia-cdi-hook").exists()
    assert spec_at(tmp_path)["containerEdits"]["hooks"] == [
        {
            "hookName": "createContainer",
            "path": "/usr/local/nvidia/toolkit/nvidia-cdi-hook",
            "args": ["nvidia-cdi-hook", "update-ldcache", "--folder", LIBDIR],
        }
    ]
    setup(tmp_path, "--docker-version", "28.3", "--ldcache-hook", "never", env=env)
    assert "hooks" not in spec_at(tmp_path)["containerEdits"]


def test_docker_flags_match_the_spec(tmp_path: Path) -> None:
    FakeNode(tmp_path, libs=("libnvidia-ml.so", "libcuda.so", "libnvidia-ptxjitcompiler.so")).build()
    rc, out, _ = setup(tmp_path, "--docker-flags")
    assert rc == 0
    flags = out.split()
    assert flags[:4] == [
        "--device=/dev/nvidia0",
        "--device=/dev/nvidiactl",
        "--device=/dev/nvidia-uvm",
        "--device=/dev/nvidia-uvm-tools",
    ]
    assert f"--volume={LIBDIR}/libcuda.so.{DRIVER}:{LIBDIR}/libcuda.so.1:ro" in flags
    assert "--volume=/usr/bin/nvidia-smi:/usr/bin/nvidia-smi:ro" in flags
    assert flags[-1] == "--env=NVIDIA_VISIBLE_DEVICES=void"
    spec = cdi.build_spec(discover(Config(root=str(tmp_path), visible_devices=UUIDS[0])))
    assert len([f for f in flags if f.startswith("--volume=")]) == len(spec["containerEdits"]["mounts"])


def test_print_spec_writes_nothing(tmp_path: Path) -> None:
    FakeNode(tmp_path).build()
    rc, out, _ = setup(tmp_path, "--print-spec")
    assert rc == 0
    assert out.startswith("# Generated by runnerd-gpu-setup")
    assert yaml.safe_load(out)["kind"] == "nvidia.com/gpu"
    assert not (tmp_path / "etc/cdi").exists()


def test_check_explains_a_working_setup(tmp_path: Path) -> None:
    FakeNode(tmp_path).build()
    rc, out, _ = setup(tmp_path, "--check", "--docker-version", "27.5", "--docker-feature-flag", "yes")
    assert rc == 0
    assert f"driver version: {DRIVER} (from /proc/driver/nvidia/version)" in out
    assert f"  * 0: /dev/nvidia0 (NVIDIA H100 80GB HBM3, {UUIDS[0]}, 0000:18:00.0)" in out
    assert f"  {LIBDIR}/libcuda.so.{DRIVER} (also as libcuda.so, libcuda.so.1)" in out
    assert "docker: enabling CDI with --feature=cdi=true (extra dockerd args: --feature=cdi=true)" in out
    assert out.rstrip().endswith("result: OK")
    assert not (tmp_path / "etc/cdi").exists()


def test_check_explains_what_is_missing(tmp_path: Path) -> None:
    FakeNode(tmp_path, libs=("libnvidia-ml.so",), binaries=()).build()
    rc, out, _ = setup(tmp_path, "--check")
    assert rc == cli.EXIT_FAILED
    assert f"ERROR: libcuda.so.{DRIVER} (capability compute) not found; looked in {LIBDIR}" in out
    assert "WARNING: nvidia-smi not found" in out
    assert "  not found: libcuda.so," in out
    assert out.rstrip().endswith("result: NOT USABLE (2 error(s))")


def test_check_json(tmp_path: Path) -> None:
    FakeNode(tmp_path).build()
    rc, out, _ = setup(tmp_path, "--check", "--json")
    data = json.loads(out)
    assert (rc, data["ok"], data["driver_version"], data["selected"]) == (0, True, DRIVER, [0])
    assert data["docker"]["cdi"] is True


def test_environment_inputs(tmp_path: Path) -> None:
    FakeNode(tmp_path, gpus=2, libs=("libnvidia-ml.so",), control=("nvidiactl",)).build()
    env = {
        "NVIDIA_DRIVER_CAPABILITIES": "utility,bogus",
        "RUNNERD_GPU_DEVICES": UUIDS[1],
        "RUNNERD_GPU_COUNT": "x",
        "RUNNERD_CDI_SPEC_DIR": "/var/run/cdi",
    }
    rc, _, err = setup(tmp_path, "--docker-version", "28.3", env=env)
    assert rc == 0
    assert "ignoring unknown driver capabilities: bogus" in err
    assert "RUNNERD_GPU_COUNT='x' is not a whole number" in err
    assert [d["name"] for d in spec_at(tmp_path, "/var/run/cdi")["devices"]] == ["0", UUIDS[1], "all"]


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--check", "--print-spec"], env={}) == cli.EXIT_USAGE
    assert "not allowed with argument" in capsys.readouterr().err


def test_yaml_writer_round_trips_awkward_values() -> None:
    value = {
        "plain": "a: b # c",
        "quote": 'say "hi"\\',
        "unicode": "ünï\n\ttab",
        "empty_list": [],
        "empty_map": {},
        "nums": [0, -1, True, False, None],
        "nested": [{"a": [1, {"b": "yes"}], "c": {}}, [["x"]], "on"],
        "weird key: x": "NO",
    }
    assert yaml.safe_load(cdi.to_yaml(value)) == value


def test_docker_version_parsing_and_probe(tmp_path: Path) -> None:
    assert dockerd.parse_version("Docker version 27.5.1, build 4c9b3b0") == (27, 5)
    assert dockerd.parse_version("Docker version 28.3.0-rc.1, build x") == (28, 3)
    assert dockerd.parse_version("dockerd: not found") is None
    fake = tmp_path / "dockerd"
    fake.write_text(
        '#!/bin/sh\ncase "$1" in\n--version) echo "Docker version 26.1.4, build 5650f9b";;\n'
        '--help) echo "      --feature map   Enable feature in the daemon";;\nesac\n'
    )
    fake.chmod(0o755)
    info = dockerd.probe(str(fake), str(tmp_path / "absent.json"))
    assert (info.version, info.has_feature_flag, info.daemon_json) == ((26, 1), True, None)
    assert dockerd.plan_cdi(info).args == ["--feature=cdi=true"]
    broken = dockerd.probe(str(tmp_path / "no-such-dockerd"), str(tmp_path / "absent.json"))
    assert broken.version is None
    assert dockerd.plan_cdi(broken).cdi is True


def test_module_and_console_script_run(tmp_path: Path) -> None:
    FakeNode(tmp_path).build()
    env = {**os.environ, **BASE_ENV, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "runnerd.gpu", "--root", str(tmp_path), "--check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "result: OK" in result.stdout
    script = Path(sys.executable).parent / "runnerd-gpu-setup"
    if not script.exists():
        pytest.skip("runnerd-gpu-setup is not installed in this environment (pip install -e .)")
    result = subprocess.run(
        [str(script), "--root", str(tmp_path / "empty"), "--check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "no NVIDIA device nodes in /dev" in result.stdout
