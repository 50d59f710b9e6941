"""Where GitHub's published API descriptions are: ``$RUNNERD_NPM_DIR``, or whatever
``hack/install-npm.sh`` prints (it installs them on first use)."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def npm_dir() -> Path:
    env = os.environ.get("RUNNERD_NPM_DIR")
    if env:
        path = Path(env)
    else:
        done = subprocess.run(
            [str(REPO_ROOT / "hack" / "install-npm.sh")],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"hack/install-npm.sh failed ({done.returncode}): {done.stderr.strip()}")
        path = Path(done.stdout.strip().splitlines()[-1])
    if not (path / "@octokit" / "openapi").is_dir():
        raise RuntimeError(f"{path} has no @octokit/openapi; run hack/install-npm.sh")
    return path
