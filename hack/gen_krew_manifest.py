#!/usr/bin/env python3
"""Build the kubectl plugin's archive and its krew manifest for a release.

    python hack/gen_krew_manifest.py --version 0.1.0 --out dist \\
        --url https://github.com/<owner>/<repo>/releases/download/v0.1.0/kubectl-runnerd-0.1.0.tar.gz

writes ``dist/kubectl-runnerd-<version>.tar.gz`` (the ``kubectl-runnerd`` launcher and the license;
byte-for-byte reproducible) and ``dist/runnerd.yaml``, a krew ``Plugin`` whose ``sha256`` is that
archive's. ``kubectl krew install --manifest=dist/runnerd.yaml --archive=dist/kubectl-runnerd-...``
installs it from the files; the release workflow publishes both.

The plugin is runnerd's Python package (``runnerd.status``): the launcher runs it with the first
Python that has it (``$RUNNERD_PYTHON``, ``python3.11``, ``python3``), so the manifest's caveats ask
for ``pip install runnerd==<version>``. ``pip install runnerd`` alone also gives ``kubectl runnerd``
(the wheel's ``kubectl-runnerd`` entry point), without krew.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
import tarfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
HOMEPAGE = "https://github.com/runnerd/runnerd"
LAUNCHER = """#!/bin/sh
# kubectl runnerd: runnerd's kubectl plugin. It needs runnerd's Python package: pip install runnerd=={version}
for py in "${{RUNNERD_PYTHON:-}}" python3.11 python3; do
  if [ -n "$py" ] && command -v "$py" >/dev/null 2>&1 && "$py" -c 'import runnerd.status' 2>/dev/null; then
    exec "$py" -c 'import sys; from runnerd.status import kubectl_main; sys.exit(kubectl_main())' "$@"
  fi
done
echo "kubectl-runnerd: runnerd's Python package is not installed: pip install runnerd=={version}" >&2
exit 1
"""


def archive(version: str) -> bytes:
    """The plugin archive: fixed order, owners, modes and times, so its checksum is reproducible."""
    files = {
        "kubectl-runnerd": (LAUNCHER.format(version=version).encode(), 0o755),
        "LICENSE": ((REPO / "LICENSE").read_bytes(), 0o644),
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def manifest(version: str, url: str, sha256: str) -> dict[str, Any]:
    """A krew ``Plugin`` (krew.googlecontainertools.github.com/v1alpha2)."""
    return {
        "apiVersion": "krew.googlecontainertools.github.com/v1alpha2",
        "kind": "Plugin",
        "metadata": {"name": "runnerd"},
        "spec": {
            "version": f"v{version}",
            "homepage": HOMEPAGE,
            "shortDescription": "Show runnerd's (ARC) runners, jobs, GPUs and GitHub API budget",
            "description": (
                "kubectl runnerd status shows, per RunnerDeployment and RunnerSet of runnerd (a drop-in\n"
                "for actions-runner-controller), desired and current runners by state, queued and running\n"
                "jobs, GPUs, and with --metrics-url the queue wait and the GitHub API budget.\n"
            ),
            "caveats": (
                f"The plugin runs runnerd's Python package (Python 3.11):\n  pip install runnerd=={version}\n"
            ),
            "platforms": [
                {
                    "selector": {
                        "matchExpressions": [{"key": "os", "operator": "In", "values": ["linux", "darwin"]}]
                    },
                    "uri": url,
                    "sha256": sha256,
                    "bin": "kubectl-runnerd",
                    "files": [{"from": "kubectl-runnerd", "to": "."}, {"from": "LICENSE", "to": "."}],
                }
            ],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", required=True, help="the release's version, without the v")
    parser.add_argument("--url", required=True, help="where the release publishes the archive")
    parser.add_argument("--out", type=Path, default=Path("dist"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data = archive(args.version)
    path = args.out / f"kubectl-runnerd-{args.version}.tar.gz"
    path.write_bytes(data)
    plugin = manifest(args.version, args.url, hashlib.sha256(data).hexdigest())
    (args.out / "runnerd.yaml").write_text(yaml.safe_dump(plugin, sort_keys=False))
    print(path)
    print(args.out / "runnerd.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
