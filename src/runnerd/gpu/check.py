"""Check runnerd-gpu-setup against a real NVIDIA GPU machine: does it find everything nvidia-smi
reports, and is what it finds real and working?

    PYTHONPATH=src python3 -m runnerd.gpu.check        # or: hack/gpu-check.sh

Needs only Python 3 and this repository (no virtualenv, standard library only). Prints a PASS/FAIL
report on stdout and, when ``$OUT`` is set, also writes it to ``$OUT/gpu-check.txt`` with the CDI
spec the helper would write (``$OUT/nvidia.yaml``). Exit status 0 when every check passes, 1 when
one fails, 2 when there is no NVIDIA GPU at all. Runs in a few seconds (each nvidia-smi call is
bounded by 20 s).

The checks: the helper sees every GPU ``nvidia-smi`` lists (UUID, PCI bus id) and its
``/dev/nvidia<minor>`` node; the driver version matches and ``libnvidia-ml.so.<version>`` and
``libcuda.so.<version>`` are found; every NVIDIA library nvidia-smi itself loads (``LD_DEBUG``)
is in the spec; ``nvidia-smi`` is the same file; every device node is a real character device and
every mount source exists; the spec renders; and the CUDA driver the helper found initialises and
counts the same GPUs (``cuInit``/``cuDeviceGetCount`` through ctypes).
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from runnerd.gpu import cdi
from runnerd.gpu.discover import discover
from runnerd.gpu.inventory import Config, Inventory

NO_GPU = "no NVIDIA GPU found"
SMI_TIMEOUT = 20.0


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failed: int = 0
    passed: int = 0

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        self.lines.append(f"{'PASS' if ok else 'FAIL'}  {what}" + (f": {detail}" if detail else ""))
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok

    def info(self, text: str) -> None:
        self.lines.append(f"      {text}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@dataclass(frozen=True)
class SmiGpu:
    index: int
    uuid: str
    bus_id: str
    driver_version: str
    name: str


def _smi(
    smi: str, args: Sequence[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [smi, *args], capture_output=True, text=True, timeout=SMI_TIMEOUT, check=False, env=env
    )


def _bus(bus_id: str) -> str:
    """nvidia-smi writes 00000000:18:00.0 (8-digit domain); /proc uses 0000:18:00.0."""
    domain, _, rest = bus_id.strip().lower().partition(":")
    return f"{int(domain, 16):04x}:{rest}" if rest else bus_id.lower()


def query_smi(smi: str, report: Report) -> list[SmiGpu] | None:
    listed = _smi(smi, ["-L"])
    if not report.check(
        listed.returncode == 0, "nvidia-smi -L runs", (listed.stderr or listed.stdout).strip()[:300]
    ):
        return None
    names = [line for line in listed.stdout.splitlines() if line.startswith("GPU ")]
    report.info(f"nvidia-smi -L: {len(names)} GPU(s)")
    for line in names:
        report.info(line.strip())
    q = _smi(smi, ["--query-gpu=index,uuid,pci.bus_id,driver_version,name", "--format=csv,noheader"])
    if not report.check(q.returncode == 0, "nvidia-smi --query-gpu runs", q.stderr.strip()[:300]):
        return None
    gpus: list[SmiGpu] = []
    for line in q.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 5 and parts[0].isdigit():
            gpus.append(SmiGpu(int(parts[0]), parts[1], _bus(parts[2]), parts[3], ",".join(parts[4:])))
    report.check(
        len(gpus) == len(names), "nvidia-smi -L and --query-gpu agree", f"{len(names)} vs {len(gpus)}"
    )
    return gpus


def libraries_loaded_by(smi: str) -> list[str] | None:
    """Real paths of the NVIDIA/CUDA libraries nvidia-smi loads (glibc's LD_DEBUG=libs), else None."""
    env = dict(os.environ, LD_DEBUG="libs")
    try:
        out = _smi(smi, ["-L"], env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    paths = set()
    for m in re.finditer(r"calling init: (\S+)", out.stderr):
        name = os.path.basename(m.group(1))
        if "nvidia" in name or name.startswith("libcuda"):
            paths.add(os.path.realpath(m.group(1)))
    return sorted(paths) if "calling init:" in out.stderr else None


def cuda_device_count(libcuda: str) -> tuple[int | None, str]:
    try:
        lib = ctypes.CDLL(libcuda)
    except OSError as e:
        return None, f"cannot load {libcuda}: {e}"
    rc = lib.cuInit(0)
    if rc != 0:
        return None, f"cuInit returned CUDA error {rc}"
    count = ctypes.c_int(0)
    rc = lib.cuDeviceGetCount(ctypes.byref(count))
    if rc != 0:
        return None, f"cuDeviceGetCount returned CUDA error {rc}"
    return count.value, "ok"


def no_gpu_here() -> bool:
    return (
        shutil.which("nvidia-smi") is None
        and not os.path.exists("/dev/nvidiactl")
        and not os.path.exists("/proc/driver/nvidia/version")
    )


def run(report: Report, out_dir: str | None) -> int:
    report.lines.append(
        f"runnerd GPU check on {platform.node()} ({platform.machine()}, Python {platform.python_version()})"
    )
    if no_gpu_here():
        report.check(False, NO_GPU, "no nvidia-smi on PATH, no /dev/nvidiactl, no /proc/driver/nvidia")
        return 2
    smi = shutil.which("nvidia-smi")
    if not report.check(smi is not None, "nvidia-smi is on PATH"):
        return 1
    assert smi is not None
    smi_gpus = query_smi(smi, report)
    if not smi_gpus:
        report.check(False, NO_GPU, "nvidia-smi lists no GPU")
        return 2

    # Expose every GPU nvidia-smi lists, as the device plugin would with NVIDIA_VISIBLE_DEVICES.
    config = Config(
        root="/",
        visible_devices=",".join(g.uuid for g in smi_gpus),
        expected_count=len(smi_gpus),
        driver_roots=("/", *(r for r in (os.environ.get("NVIDIA_DRIVER_ROOT"), "/run/nvidia/driver") if r)),
    )
    started = time.monotonic()
    inv = discover(config)
    report.info(f"discovery took {time.monotonic() - started:.2f}s")
    for finding in inv.findings:
        report.info(f"helper {finding.severity}: {finding.message}")
    report.check(inv.ok, "the helper reports no error", "; ".join(inv.errors))
    _check_gpus(report, inv, smi_gpus)
    _check_driver(report, inv, smi_gpus[0].driver_version)
    _check_files(report, inv, smi)
    _check_spec(report, inv, out_dir)
    lib = inv.library("libcuda.so")
    if lib is not None:
        count, why = cuda_device_count(lib.path)
        report.check(
            count == len(smi_gpus),
            f"CUDA driver {lib.path} initialises and counts the GPUs",
            f"{count} ({why})",
        )
    return 0 if report.failed == 0 else 1


def _check_gpus(report: Report, inv: Inventory, smi_gpus: list[SmiGpu]) -> None:
    report.check(
        len(inv.gpus) == len(smi_gpus), "GPU count", f"helper {len(inv.gpus)}, nvidia-smi -L {len(smi_gpus)}"
    )
    by_uuid = {g.uuid: g for g in inv.gpus if g.uuid}
    for s in smi_gpus:
        g = by_uuid.get(s.uuid)
        if not report.check(g is not None, f"GPU {s.index} {s.uuid} found by the helper", s.name):
            continue
        assert g is not None
        report.check(
            g.bus_id == s.bus_id, f"GPU {s.index} PCI bus id", f"helper {g.bus_id}, nvidia-smi {s.bus_id}"
        )
        report.check(os.path.exists(g.node), f"GPU {s.index} device node {g.node} present")
        report.check(g in inv.selected, f"GPU {s.index} exposed in the spec")
    for node in ("/dev/nvidiactl", "/dev/nvidia-uvm"):
        report.check(node in inv.control_nodes, f"control node {node} found")


def _check_driver(report: Report, inv: Inventory, smi_version: str) -> None:
    report.check(
        inv.driver_version == smi_version,
        "driver version",
        f"helper {inv.driver_version} (from {inv.driver_version_source}), nvidia-smi {smi_version}",
    )
    for name in ("libnvidia-ml.so", "libcuda.so", "libnvidia-ptxjitcompiler.so"):
        lib = inv.library(name)
        expected = f"{name}.{smi_version}"
        report.check(
            lib is not None and os.path.basename(lib.path) == expected,
            f"{expected} found",
            lib.path if lib else "missing; searched " + ", ".join(inv.library_dirs_searched),
        )
    for name in ("libnvidia-ml.so", "libcuda.so"):
        soname = f"{name}.1"
        report.check(
            any(os.path.basename(m.container_path) == soname for m in inv.libraries),
            f"{soname} (SONAME) mounted",
        )


def _check_files(report: Report, inv: Inventory, smi: str) -> None:
    real_smi = os.path.realpath(smi)
    mounted = {os.path.realpath(m.path) for m in inv.binaries}
    report.check(
        real_smi in mounted, "nvidia-smi found by the helper", f"{real_smi}; helper: {sorted(mounted)}"
    )
    loaded = libraries_loaded_by(smi)
    if loaded is None:
        report.info("LD_DEBUG gave nothing (not glibc?): cannot list the libraries nvidia-smi loads")
    else:
        in_spec = {os.path.realpath(m.path) for m in inv.libraries}
        missing = [p for p in loaded if p not in in_spec]
        report.check(
            not missing,
            f"every NVIDIA library nvidia-smi loads is in the spec ({len(loaded)})",
            ", ".join(missing) or ", ".join(loaded),
        )
    nodes = [n for g in inv.selected for n in (g.node, *g.extra_nodes)] + inv.control_nodes
    not_char = [n for n in nodes if not stat.S_ISCHR(os.stat(n).st_mode)]
    report.check(not not_char, f"all {len(nodes)} device nodes are character devices", ", ".join(not_char))
    absent = [m.path for m in inv.mounts() if not os.path.exists(m.path)]
    report.check(not absent, f"all {len(inv.mounts())} mount sources exist", ", ".join(absent))
    real = [m for m in inv.libraries if not m.alias]
    report.info(f"libraries in the spec ({len(real)}): " + ", ".join(os.path.basename(m.path) for m in real))
    if inv.missing_libraries:
        report.info("not on this machine: " + ", ".join(inv.missing_libraries))


def _check_spec(report: Report, inv: Inventory, out_dir: str | None) -> None:
    try:
        text = cdi.render(cdi.build_spec(inv))
    except (TypeError, ValueError) as e:
        report.check(False, "CDI spec renders", str(e))
        return
    names = cdi.device_names(inv)
    report.check(bool(names) and "all" in names, "CDI spec renders", f"devices {', '.join(names)}")
    report.info("docker run flags without CDI: " + cdi.shell_line(cdi.docker_run_flags(inv)))
    if out_dir:
        with open(os.path.join(out_dir, "nvidia.yaml"), "w", encoding="utf-8") as f:
            f.write(text)


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    report = Report()
    out_dir = os.environ.get("OUT") or None
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    try:
        rc = run(report, out_dir)
    except Exception as e:  # a report even when the check itself breaks
        report.check(False, "the check ran to the end", f"{type(e).__name__}: {e}")
        rc = 1
    summary = f"{report.passed} passed, {report.failed} failed"
    verdict = "RESULT: " + ("PASS" if rc == 0 else NO_GPU.upper() if rc == 2 else "FAIL") + f" ({summary})"
    report.lines.append(verdict)
    text = report.text()
    sys.stdout.write(text)
    if out_dir:
        with open(os.path.join(out_dir, "gpu-check.txt"), "w", encoding="utf-8") as f:
            f.write(text)
    return rc


if __name__ == "__main__":
    sys.exit(main())
