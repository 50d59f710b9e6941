"""The CDI spec (and the equivalent ``docker run`` flags) for what discovery found.

The spec (kind ``nvidia.com/gpu``, cdiVersion 0.5.0, which every CDI-capable Docker — 25 and
later — reads) has:

- one device per exposed GPU, named by its index among the exposed GPUs (``0``, ``1``, …: what a
  job's ``--gpus device=0`` means is "the runner's first GPU", whichever host GPU that is), one per
  GPU UUID (``GPU-…``), and ``all``; each lists its ``/dev/nvidia<N>`` node (and DRI nodes with
  the graphics capability);
- common ``containerEdits``, applied whenever any of the devices is requested: the control nodes
  (``/dev/nvidiactl``, ``/dev/nvidia-uvm``, …), read-only bind mounts of the driver libraries
  (real file, SONAME and, for libcuda, ``libcuda.so``) and binaries at the paths they have here,
  and ``NVIDIA_VISIBLE_DEVICES=void``.

Why ``NVIDIA_VISIBLE_DEVICES=void``: the devices are injected by this spec, so no NVIDIA runtime
hook further down may inject more (``void`` is the toolkit's own "inject nothing" value; the
CUDA runtime itself never reads the variable, it reads ``CUDA_VISIBLE_DEVICES``). NVIDIA's own
generated specs carry the same edit.

Device nodes carry only their ``path``: the CDI library in dockerd stats the node (it exists at
that path in dockerd's container) to fill in type, major and minor. Hooks are used only when a
real ``nvidia-cdi-hook`` is on this machine (``update-ldcache``, so images whose library
directories differ from this container's still find the libraries); the ``docker:dind`` sidecar
is Alpine, where NVIDIA's glibc-linked hook cannot run, so its spec has none — the SONAME mounts
make ``ldconfig`` unnecessary for the common Debian/Ubuntu layout.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from typing import Any

from runnerd.gpu.inventory import Inventory

CDI_VERSION = "0.5.0"
CDI_KIND = "nvidia.com/gpu"
SPEC_FILE = "nvidia.yaml"
MOUNT_OPTIONS = ("ro", "nosuid", "nodev", "bind")
VOID_ENV = "NVIDIA_VISIBLE_DEVICES=void"

_PLAIN_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def device_names(inv: Inventory) -> list[str]:
    names = [str(i) for i in range(len(inv.selected))]
    names += [g.uuid for g in inv.selected if g.uuid]
    return [*names, "all"] if inv.selected else []


def build_spec(inv: Inventory, *, ldcache_hook: str | None = None) -> dict[str, Any]:
    """The CDI spec as a JSON-shaped dict. ``ldcache_hook``: the path of a real nvidia-cdi-hook to
    run ``update-ldcache`` with (None: no hooks)."""
    devices: list[dict[str, Any]] = []
    for i, gpu in enumerate(inv.selected):
        nodes = [{"path": p} for p in (gpu.node, *gpu.extra_nodes)]
        devices.append({"name": str(i), "containerEdits": {"deviceNodes": nodes}})
    for gpu in inv.selected:
        if gpu.uuid:
            nodes = [{"path": p} for p in (gpu.node, *gpu.extra_nodes)]
            devices.append({"name": gpu.uuid, "containerEdits": {"deviceNodes": nodes}})
    all_nodes = [{"path": p} for g in inv.selected for p in (g.node, *g.extra_nodes)]
    devices.append({"name": "all", "containerEdits": {"deviceNodes": all_nodes}})

    edits: dict[str, Any] = {"env": [VOID_ENV]}
    if inv.control_nodes:
        edits["deviceNodes"] = [{"path": p} for p in inv.control_nodes]
    mounts = [
        {"hostPath": m.path, "containerPath": m.container_path, "options": list(MOUNT_OPTIONS)}
        for m in inv.mounts()
    ]
    if mounts:
        edits["mounts"] = mounts
    if ldcache_hook:
        folders = sorted({os.path.dirname(m.container_path) for m in inv.libraries})
        args = ["nvidia-cdi-hook", "update-ldcache"]
        for folder in folders:
            args += ["--folder", folder]
        edits["hooks"] = [{"hookName": "createContainer", "path": ldcache_hook, "args": args}]
    return {"cdiVersion": CDI_VERSION, "kind": CDI_KIND, "devices": devices, "containerEdits": edits}


def docker_run_flags(inv: Inventory) -> list[str]:
    """``docker run`` flags equivalent to ``--device nvidia.com/gpu=all`` with the spec above, for
    a Docker without CDI: paths are dockerd's (this container's)."""
    flags: list[str] = []
    for gpu in inv.selected:
        for node in (gpu.node, *gpu.extra_nodes):
            flags.append(f"--device={node}")
    flags += [f"--device={n}" for n in inv.control_nodes]
    flags += [f"--volume={m.path}:{m.container_path}:ro" for m in inv.mounts()]
    flags.append(f"--env={VOID_ENV}")
    return flags


def shell_line(flags: list[str]) -> str:
    return shlex.join(flags)


def to_yaml(value: Any, indent: int = 0) -> str:
    """YAML for JSON-shaped data (dicts with string keys, lists, strings, ints, bools): block style,
    every string double-quoted with JSON escapes (a valid YAML double-quoted scalar)."""
    return "".join(_yaml_lines(value, indent))


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _key(key: str) -> str:
    return key if _PLAIN_KEY.fullmatch(key) else json.dumps(key)


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        if not value:
            return [pad + "{}\n"]
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{_key(k)}:\n")
                lines += _yaml_lines(v, indent + 2)
            else:
                lines.append(f"{pad}{_key(k)}: {_inline(v)}\n")
        return lines
    if isinstance(value, list):
        if not value:
            return [pad + "[]\n"]
        for item in value:
            if isinstance(item, (dict, list)) and item:
                inner = _yaml_lines(item, indent + 2)
                lines.append(pad + "- " + inner[0][indent + 2 :])
                lines += inner[1:]
            else:
                lines.append(f"{pad}- {_inline(item)}\n")
        return lines
    return [pad + _scalar(value) + "\n"]


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def render(spec: dict[str, Any], *, header: str = "") -> str:
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + "---\n" + to_yaml(spec)
