"""What the GPU helper found, and the read-only view of the filesystem it looks through.

:class:`Inventory` is filled by :func:`runnerd.gpu.discover.discover` (GPUs, device nodes, driver
version) and :mod:`runnerd.gpu.driverfiles` (libraries, binaries); :class:`Tree` maps paths as seen
from ``Config.root`` to this machine's paths. Nothing here writes anything or runs a program.
"""

from __future__ import annotations

import glob
import os
import stat
from dataclasses import dataclass, field

ERROR, WARNING, INFO = "error", "warning", "info"

DEFAULT_CAPABILITIES = ("compute", "utility")
ALL_CAPABILITIES = ("compute", "utility", "video", "graphics", "display", "compat32", "ngx")
DRIVER_ROOTS = ("/", "/run/nvidia/driver")


@dataclass(frozen=True)
class Config:
    """What to look for and where. Paths are absolute as seen from ``root``."""

    root: str = "/"
    driver_roots: tuple[str, ...] = DRIVER_ROOTS
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    visible_devices: str | None = None
    """NVIDIA_VISIBLE_DEVICES as the device plugin set it (None: unset)."""
    requested_devices: str | None = None
    """RUNNERD_GPU_DEVICES: an explicit list that wins over NVIDIA_VISIBLE_DEVICES."""
    expected_count: int | None = None
    """RUNNERD_GPU_COUNT: how many GPUs the pod spec gave this container."""
    extra_library_dirs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    severity: str  # ERROR, WARNING or INFO
    message: str


@dataclass(frozen=True)
class Gpu:
    index: int
    """Position among the GPUs this container sees, in PCI bus order (NVML's order)."""
    minor: int
    node: str
    """``/dev/nvidia<minor>``."""
    uuid: str | None = None
    bus_id: str | None = None
    model: str | None = None
    extra_nodes: tuple[str, ...] = ()
    """Per-GPU DRI nodes (``/dev/dri/card*``, ``renderD*``) with the graphics/display capability."""


@dataclass(frozen=True)
class FileMount:
    """A driver file to bind-mount read-only: ``path`` is where it is here (all symlinks resolved),
    ``container_path`` where job containers get it (the driver root stripped)."""

    path: str
    container_path: str
    name: str = ""
    """The library or binary name looked for (``libcuda.so``, ``nvidia-smi``)."""
    alias: bool = False
    """A second name of the same file (a library's SONAME or development name)."""


@dataclass
class Inventory:
    config: Config
    driver_version: str | None = None
    driver_version_source: str = ""
    gpus: list[Gpu] = field(default_factory=list)
    """Every GPU this container sees."""
    selected: list[Gpu] = field(default_factory=list)
    """The GPUs to expose to job containers (the allocated ones)."""
    selection_source: str = ""
    control_nodes: list[str] = field(default_factory=list)
    libraries: list[FileMount] = field(default_factory=list)
    """Real library files and their alias mounts (SONAME, dev name)."""
    binaries: list[FileMount] = field(default_factory=list)
    ipc: list[FileMount] = field(default_factory=list)
    library_dirs_searched: list[str] = field(default_factory=list)
    binary_dirs_searched: list[str] = field(default_factory=list)
    missing_libraries: list[str] = field(default_factory=list)
    missing_binaries: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [f.message for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[str]:
        return [f.message for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def note(self, severity: str, message: str) -> None:
        self.findings.append(Finding(severity, message))

    def library(self, name: str) -> FileMount | None:
        """The real file found for library ``name`` (e.g. ``libcuda.so``)."""
        for m in self.libraries:
            if m.name == name and not m.alias:
                return m
        return None

    def mounts(self) -> list[FileMount]:
        return [*self.libraries, *self.binaries, *self.ipc]


class Tree:
    """Maps absolute paths as seen from ``root`` to paths on this machine's filesystem."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def fs(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/")) if self.root != "/" else path

    def exists(self, path: str) -> bool:
        return os.path.exists(self.fs(path))

    def isdir(self, path: str) -> bool:
        return os.path.isdir(self.fs(path))

    def read(self, path: str) -> str | None:
        try:
            with open(self.fs(path), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return None

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.fs(path)))
        except OSError:
            return []

    def glob(self, pattern: str) -> list[str]:
        hits = glob.glob(self.fs(pattern))
        if self.root == "/":
            return sorted(hits)
        return sorted("/" + os.path.relpath(h, self.root) for h in hits)

    def resolve(self, path: str) -> str:
        """``path`` with every symlink resolved, absolute link targets staying inside the root."""
        parts = [p for p in path.split("/") if p]
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            current = "/" + "/".join([*done, part])
            try:
                target = os.readlink(self.fs(current))
            except OSError:
                done.append(part)
                continue
            hops += 1
            if hops > 40:
                return current
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p] + parts
        return "/" + "/".join(done)

    def is_char_device(self, path: str) -> bool:
        try:
            return stat.S_ISCHR(os.stat(self.fs(path)).st_mode)
        except OSError:
            return False
