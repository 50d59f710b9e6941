"""runnerd.gpu.check (hack/gpu-check.sh): the dry run without a GPU, and its nvidia-smi parsing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runnerd.gpu import check

REPO = Path(__file__).resolve().parents[3]

SMI = """#!/bin/sh
if [ -n "${LD_DEBUG:-}" ]; then
  echo "     12345:	calling init: /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1" >&2
  echo "     12345:	calling init: /lib/x86_64-linux-gnu/libc.so.6" >&2
fi
case "$1" in
-L) echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0a1b2c3d-0000-1111-2222-333344445555)";;
--query-gpu=*)
  echo "0, GPU-0a1b2c3d-0000-1111-2222-333344445555, 00000000:18:00.0, 570.86.15, NVIDIA H100 80GB HBM3";;
esac
"""


def test_dry_run_without_a_gpu_says_so(tmp_path: Path) -> None:
    if not check.no_gpu_here():
        pytest.skip("this machine has an NVIDIA GPU (or its driver): run hack/gpu-check.sh for real")
    out = tmp_path / "out"
    result = subprocess.run(
        ["sh", str(REPO / "hack/gpu-check.sh")],
        env={"PATH": os.environ["PATH"], "OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "FAIL  no NVIDIA GPU found" in result.stdout
    assert result.stdout.rstrip().endswith("RESULT: NO NVIDIA GPU FOUND (0 passed, 1 failed)")
    assert (out / "gpu-check.txt").read_text() == result.stdout


def test_nvidia_smi_parsing(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(SMI)
    smi.chmod(0o755)
    report = check.Report()
    gpus = check.query_smi(str(smi), report)
    assert gpus == [
        check.SmiGpu(
            index=0,
            uuid="GPU-0a1b2c3d-0000-1111-2222-333344445555",
            bus_id="0000:18:00.0",
            driver_version="570.86.15",
            name="NVIDIA H100 80GB HBM3",
        )
    ]
    assert (report.passed, report.failed) == (3, 0)
    assert check.libraries_loaded_by(str(smi)) == [
        os.path.realpath("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1")
    ]


def test_a_failing_nvidia_smi_fails_the_check(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'\n"
        "exit 9\n"
    )
    smi.chmod(0o755)
    report = check.Report()
    assert check.query_smi(str(smi), report) is None
    assert report.failed == 1
    assert "could not communicate with the NVIDIA driver" in report.text()
