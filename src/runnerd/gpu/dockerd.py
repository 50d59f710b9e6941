"""What dockerd needs so job containers can use the CDI spec.

- CDI itself: on by default from Docker 28.2; Docker 25.0 to 28.1 read CDI specs only with the
  ``cdi`` feature on — ``--feature cdi=true`` on the command line (releases that have the flag,
  27.x on) or ``"features": {"cdi": true}`` in daemon.json. dockerd refuses a directive given both
  as a flag and in daemon.json, so when daemon.json has a ``features`` object at all the helper
  adds ``cdi`` there instead of printing the flag. Docker before 25 has no CDI.
- ``docker run --gpus``: dockerd maps a ``--gpus`` request to the CDI device
  ``nvidia.com/gpu=<…>`` when an ``nvidia-cdi-hook`` executable is on its ``PATH`` at start
  (moby#50228; Docker releases from mid-2025 on); otherwise ``--gpus`` needs NVIDIA's runtime hook,
  which a dind container does not have. Where NVIDIA's hook is absent (the Alpine ``docker:dind``
  sidecar, where its glibc build cannot run anyway) the helper puts a placeholder of that name in
  its own directory (``/runnerd/bin``, first on dockerd's ``PATH``). The placeholder is never run:
  the spec the helper writes has no hooks. ``--device nvidia.com/gpu=all`` works either way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

CDI_DEFAULT_ON = (28, 2)
CDI_FEATURE = (25, 0)
HOOK_NAME = "nvidia-cdi-hook"
SHIM_MARKER = "runnerd-gpu-setup placeholder"
SHIM = f"""#!/bin/sh
# {SHIM_MARKER}: dockerd hands `docker run --gpus` requests to its CDI driver (nvidia.com/gpu=...)
# only when an executable named nvidia-cdi-hook is on its PATH. The CDI spec written by
# runnerd-gpu-setup uses no hooks, so nothing runs this; NVIDIA's real hook is not here.
echo "nvidia-cdi-hook: runnerd placeholder, not NVIDIA's hook; refusing to run ($*)" >&2
exit 1
"""

_VERSION = re.compile(r"version\s+v?(\d+)\.(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class DockerInfo:
    version: tuple[int, int] | None
    """dockerd's major.minor, None when it could not be run."""
    has_feature_flag: bool
    daemon_json: dict[str, Any] | None
    """The parsed daemon.json, None when absent."""
    daemon_json_error: str | None = None


@dataclass
class CdiPlan:
    cdi: bool
    """Whether dockerd will read CDI specs once the plan is applied."""
    args: list[str] = field(default_factory=list)
    """Extra dockerd arguments (printed on stdout for the wrapper)."""
    daemon_json: dict[str, Any] | None = None
    """daemon.json content to write, when it must change."""
    notes: list[str] = field(default_factory=list)


def parse_version(text: str) -> tuple[int, int] | None:
    m = _VERSION.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def probe(dockerd: str | None, daemon_json_path: str, *, timeout: float = 15.0) -> DockerInfo:
    """Ask dockerd for its version and flags (without starting it) and read daemon.json."""
    version: tuple[int, int] | None = None
    has_flag = False
    exe = dockerd or shutil.which("dockerd")
    if exe:
        try:
            out = subprocess.run(
                [exe, "--version"], capture_output=True, text=True, timeout=timeout, check=False
            )
            version = parse_version(out.stdout + out.stderr)
            if version is not None and CDI_FEATURE <= version < CDI_DEFAULT_ON:
                helptext = subprocess.run(
                    [exe, "--help"], capture_output=True, text=True, timeout=timeout, check=False
                )
                has_flag = "--feature" in helptext.stdout + helptext.stderr
        except (OSError, subprocess.SubprocessError):
            version = None
    content, error = read_daemon_json(daemon_json_path)
    return DockerInfo(
        version=version, has_feature_flag=has_flag, daemon_json=content, daemon_json_error=error
    )


def read_daemon_json(path: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"{path}: {e.strerror}"
    if not text.strip():
        return {}, None
    try:
        data = json.loads(text)
    except ValueError as e:
        return None, f"{path} is not valid JSON ({e})"
    if not isinstance(data, dict):
        return None, f"{path} is not a JSON object"
    return data, None


def plan_cdi(info: DockerInfo, *, mode: str = "auto") -> CdiPlan:
    """How to make dockerd read CDI specs. ``mode``: ``auto``, ``flag`` (print
    ``--feature=cdi=true``), ``daemon-json`` (write the feature into daemon.json), or ``none``."""
    if info.daemon_json_error:
        return CdiPlan(cdi=False, notes=[f"cannot use daemon.json: {info.daemon_json_error}"])
    features = (info.daemon_json or {}).get("features")
    if isinstance(features, dict) and "cdi" in features:
        on = features["cdi"] is True
        return CdiPlan(
            cdi=on,
            notes=["daemon.json sets features.cdi" + ("" if on else " to false: CDI specs are ignored")],
        )
    if mode == "none":
        return CdiPlan(cdi=True, notes=["not changing dockerd's CDI setting (--enable-cdi none)"])
    version = info.version
    if version is None and mode == "auto":
        return CdiPlan(
            cdi=True,
            notes=["could not run dockerd --version; assuming Docker 28.2 or later (CDI on by default)"],
        )
    if version is not None and version >= CDI_DEFAULT_ON and mode == "auto":
        return CdiPlan(cdi=True, notes=[f"Docker {version[0]}.{version[1]}: CDI is on by default"])
    if version is not None and version < CDI_FEATURE:
        return CdiPlan(
            cdi=False,
            notes=[f"Docker {version[0]}.{version[1]} has no CDI support (Docker 25 or later needed)"],
        )
    use_flag = mode == "flag" or (mode == "auto" and info.has_feature_flag and not isinstance(features, dict))
    if use_flag:
        return CdiPlan(cdi=True, args=["--feature=cdi=true"], notes=["enabling CDI with --feature=cdi=true"])
    content = dict(info.daemon_json or {})
    content["features"] = {**(features if isinstance(features, dict) else {}), "cdi": True}
    return CdiPlan(cdi=True, daemon_json=content, notes=["enabling CDI with features.cdi in daemon.json"])


def write_daemon_json(path: str, content: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".runnerd-tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def is_placeholder(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return SHIM_MARKER.encode() in f.read(4096)
    except OSError:
        return False


def real_hook(search_path: str) -> str | None:
    """NVIDIA's nvidia-cdi-hook on ``search_path`` (a PATH-style list), not runnerd's placeholder."""
    for d in search_path.split(os.pathsep):
        candidate = os.path.join(d, HOOK_NAME)
        if (
            d
            and os.path.isfile(candidate)
            and os.access(candidate, os.X_OK)
            and not is_placeholder(candidate)
        ):
            return candidate
    return None


def install_placeholder(directory: str) -> str:
    path = os.path.join(directory, HOOK_NAME)
    if os.path.exists(path) and not is_placeholder(path):
        return path  # a real hook: leave it
    tmp = path + ".runnerd-tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(SHIM)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path
