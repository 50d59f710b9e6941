"""Find what the node's NVIDIA runtime gave this container: GPUs, device nodes, driver files.

Everything is read below ``Config.root`` (``/`` in a container; a fake tree in tests), and every
path reported is the path *as seen from that root* (what dockerd, running in this container, will
bind-mount into job containers). Nothing here writes anything or runs a program.

Where things come from:

- GPUs: ``/proc/driver/nvidia/gpus/<PCI bus id>/information`` (model, UUID, device minor), else
  the ``/dev/nvidia<N>`` nodes alone. Order: by PCI bus id, which is NVML's (``nvidia-smi``) order.
- Which GPUs this container was allocated: ``RUNNERD_GPU_DEVICES`` (an explicit override), else
  ``NVIDIA_VISIBLE_DEVICES`` as the device plugin set it (UUIDs or indices). A privileged
  container (dind is one) sees every ``/dev/nvidia*`` node of the host, so without such a list
  the helper only proceeds when the number of GPUs it sees equals ``RUNNERD_GPU_COUNT``.
- Driver version: ``/proc/driver/nvidia/version``, else the version suffix of ``libnvidia-ml.so.*``.
- Libraries: the usual library directories under each driver root (``/``, ``$NVIDIA_DRIVER_ROOT``,
  ``/run/nvidia/driver``, …), the directories of ``/etc/ld.so.conf{,.d/*.conf}`` and of the
  NVIDIA entries of ``/etc/ld.so.cache``. A library's real file is the one named
  ``<name>.so.<driver version>``; its SONAME (``libcuda.so.1``) and, for ``libcuda``, the
  development name ``libcuda.so`` are mounted too, so job images find them without ``ldconfig``.
- Binaries: ``nvidia-smi`` and friends in the usual ``bin`` directories under each driver root.
"""

from __future__ import annotations

import glob
import os
import re
import stat
from dataclasses import dataclass, field

from runnerd.gpu import elf

ERROR, WARNING, INFO = "error", "warning", "info"

DEFAULT_CAPABILITIES = ("compute", "utility")
ALL_CAPABILITIES = ("compute", "utility", "video", "graphics", "display", "compat32", "ngx")

# Driver libraries by NVIDIA_DRIVER_CAPABILITIES (the names the NVIDIA container toolkit injects for
# each capability; old names that recent drivers no longer ship are harmless when absent).
LIBRARIES: dict[str, tuple[str, ...]] = {
    "utility": ("libnvidia-ml.so", "libnvidia-cfg.so", "libnvidia-nscq.so"),
    "compute": (
        "libcuda.so",
        "libcudadebugger.so",
        "libnvidia-opencl.so",
        "libnvidia-gpucomp.so",
        "libnvidia-ptxjitcompiler.so",
        "libnvidia-fatbinaryloader.so",
        "libnvidia-allocator.so",
        "libnvidia-compiler.so",
        "libnvidia-pkcs11.so",
        "libnvidia-pkcs11-openssl3.so",
        "libnvidia-nvvm.so",
        "libnvidia-tileiras.so",
    ),
    "video": ("libvdpau_nvidia.so", "libnvidia-encode.so", "libnvidia-opticalflow.so", "libnvcuvid.so"),
    "graphics": (
        "libnvidia-eglcore.so",
        "libnvidia-glcore.so",
        "libnvidia-tls.so",
        "libnvidia-glsi.so",
        "libnvidia-fbc.so",
        "libnvidia-ifr.so",
        "libnvidia-rtcore.so",
        "libnvoptix.so",
        "libGLX_nvidia.so",
        "libEGL_nvidia.so",
        "libGLESv2_nvidia.so",
        "libGLESv1_CM_nvidia.so",
        "libnvidia-glvkspirv.so",
        "libnvidia-cbl.so",
        "libnvidia-gpucomp.so",
    ),
    "ngx": ("libnvidia-ngx.so",),
}
# Without these the capability is useless: their absence is an error, the others' a note.
REQUIRED_LIBRARIES: dict[str, tuple[str, ...]] = {
    "utility": ("libnvidia-ml.so",),
    "compute": ("libcuda.so", "libnvidia-ptxjitcompiler.so"),
}
# Mounted under their development name too (the NVIDIA toolkit links libcuda.so -> libcuda.so.1:
# Triton and other JIT compilers link with -lcuda at run time).
DEV_NAME_LIBRARIES = ("libcuda.so",)

BINARIES: dict[str, tuple[str, ...]] = {
    "utility": ("nvidia-smi", "nvidia-debugdump", "nvidia-persistenced"),
    "compute": ("nvidia-cuda-mps-control", "nvidia-cuda-mps-server"),
}
REQUIRED_BINARIES: dict[str, tuple[str, ...]] = {"utility": ("nvidia-smi",)}

LIBRARY_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/lib64",
    "/lib",
    "/usr/local/nvidia/lib64",
    "/usr/local/nvidia/lib",
    "/usr/lib/x86_64-linux-gnu/nvidia/current",
    "/usr/lib/aarch64-linux-gnu/nvidia/current",
    "/usr/lib64/nvidia",
    "/usr/lib/nvidia",
)
BINARY_DIRS = ("/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin", "/usr/local/nvidia/bin")
DRIVER_ROOTS = ("/", "/run/nvidia/driver")
IPC_SOCKETS = ("/run/nvidia-persistenced/socket",)

CONTROL_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
NO_DEVICE_NODES = (
    "no NVIDIA device nodes in /dev: does the pod request nvidia.com/gpu and run with the NVIDIA runtime?"
)

_VERSION_IN_PROC = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+\.\d+(?:\.\d+)?)")
_GPU_NODE = re.compile(r"nvidia(\d+)")
_MIG = re.compile(r"^(MIG-.+|\d+:\d+|GPU-[^/]+/\d+/\d+)$")


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


def discover(config: Config) -> Inventory:
    tree = Tree(config.root)
    inv = Inventory(config=config)
    caps = set(config.capabilities)
    if "all" in caps:
        caps = set(ALL_CAPABILITIES)

    _find_driver_version(tree, inv)
    _find_gpus(tree, inv, graphics=bool(caps & {"graphics", "display"}))
    _find_control_nodes(tree, inv, compute="compute" in caps)
    if inv.gpus or inv.control_nodes:
        _select_gpus(inv)
    _find_libraries(tree, inv, caps)
    _find_binaries(tree, inv, caps)
    for sock in IPC_SOCKETS:
        if tree.exists(sock):
            inv.ipc.append(FileMount(path=sock, container_path=sock, name=os.path.basename(sock)))
    return inv


def _find_driver_version(tree: Tree, inv: Inventory) -> None:
    text = tree.read("/proc/driver/nvidia/version")
    if text:
        m = _VERSION_IN_PROC.search(text)
        if m:
            inv.driver_version, inv.driver_version_source = m.group(1), "/proc/driver/nvidia/version"
            return
    inv.note(
        INFO,
        "/proc/driver/nvidia/version is not readable: the driver version is taken from the library names",
    )


def _read_information(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _find_gpus(tree: Tree, inv: Inventory, *, graphics: bool) -> None:
    gpus: list[tuple[str, int, str | None, str | None]] = []  # (sort key, minor, uuid, model)
    proc = "/proc/driver/nvidia/gpus"
    for bus in tree.listdir(proc):
        info = _read_information(tree.read(f"{proc}/{bus}/information") or "")
        try:
            minor = int(info.get("Device Minor", ""))
        except ValueError:
            inv.note(WARNING, f"{proc}/{bus}/information has no Device Minor; GPU ignored")
            continue
        uuid = info.get("GPU UUID") or None
        if uuid and not re.fullmatch(r"GPU-[0-9a-fA-F-]+", uuid):
            uuid = None  # "GPU-????..." before the driver initialised the GPU
        gpus.append((bus.lower(), minor, uuid, info.get("Model") or None))
    nodes = {int(m.group(1)) for n in tree.listdir("/dev") if (m := _GPU_NODE.fullmatch(n))}
    if not gpus:
        gpus = [("", minor, None, None) for minor in sorted(nodes)]
        if nodes:
            inv.note(
                WARNING,
                f"{proc} is not readable: GPUs are taken from the /dev/nvidia<N> nodes, without UUIDs",
            )
    for index, (bus, minor, uuid, model) in enumerate(sorted(gpus, key=lambda g: (g[0], g[1]))):
        node = f"/dev/nvidia{minor}"
        extra: list[str] = []
        if graphics and bus:
            for kind in ("card", "render"):
                link = f"/dev/dri/by-path/pci-{bus}-{kind}"
                if os.path.lexists(tree.fs(link)):
                    target = tree.resolve(link)
                    if tree.exists(target):
                        extra.append(target)
        inv.gpus.append(
            Gpu(
                index=index,
                minor=minor,
                node=node,
                uuid=uuid,
                bus_id=bus or None,
                model=model,
                extra_nodes=tuple(extra),
            )
        )


def _find_control_nodes(tree: Tree, inv: Inventory, *, compute: bool) -> None:
    inv.control_nodes = [n for n in CONTROL_NODES if tree.exists(n)]
    if not inv.gpus and not inv.control_nodes:
        inv.note(ERROR, NO_DEVICE_NODES)
        return
    if "/dev/nvidiactl" not in inv.control_nodes:
        inv.note(ERROR, "/dev/nvidiactl is missing: the NVIDIA runtime did not set up this container")
    if compute and "/dev/nvidia-uvm" not in inv.control_nodes:
        inv.note(
            WARNING,
            "/dev/nvidia-uvm is missing: CUDA programs will fail to initialise (is the nvidia-uvm kernel "
            "module loaded on the node?); nvidia-smi still works",
        )


def _parse_device_list(value: str | None) -> list[str] | None:
    """Device list entries, or None when the value names no devices (unset, empty, void, none)."""
    if value is None:
        return None
    entries = [e.strip() for e in value.split(",") if e.strip()]
    if not entries or entries in (["void"], ["none"]):
        return None
    return entries


def _select_gpus(inv: Inventory) -> None:
    config = inv.config
    source, value = "RUNNERD_GPU_DEVICES", config.requested_devices
    if _parse_device_list(value) is None:
        source, value = "NVIDIA_VISIBLE_DEVICES", config.visible_devices
    entries = _parse_device_list(value)
    expected = config.expected_count
    shown = f"{source}={value}" if value is not None else "NVIDIA_VISIBLE_DEVICES unset"

    if entries is None or entries == ["all"]:
        if expected is None or expected == len(inv.gpus):
            inv.selected = list(inv.gpus)
            inv.selection_source = f"every GPU this container sees ({shown})"
        elif expected > len(inv.gpus):
            inv.note(
                ERROR,
                f"the pod was given {expected} GPU(s) (RUNNERD_GPU_COUNT) but this container sees "
                f"{len(inv.gpus)} ({_describe(inv.gpus)})",
            )
        else:
            inv.note(
                ERROR,
                f"this container sees {len(inv.gpus)} GPUs but was given {expected} (RUNNERD_GPU_COUNT), and "
                f"{shown} does not say which: a privileged container sees every GPU of the node, so exposing "
                "them all would hand out GPUs allocated to other pods. Run the NVIDIA device plugin with "
                "its default deviceListStrategy 'envvar' (it sets NVIDIA_VISIBLE_DEVICES to the allocated "
                "GPUs), or set RUNNERD_GPU_DEVICES",
            )
        return

    mig = [e for e in entries if _MIG.match(e)]
    if mig:
        inv.note(
            ERROR,
            f"{source} names MIG devices ({', '.join(mig)}): runnerd-gpu-setup does not support MIG "
            "slices yet; give the runner whole GPUs",
        )
        return
    by_uuid = {g.uuid.lower(): g for g in inv.gpus if g.uuid}
    indices = [int(e) for e in entries if e.isdigit()]
    if len(indices) == len(entries) == len(inv.gpus) and max(indices) >= len(inv.gpus):
        # Host indices, but this container only sees the listed GPUs (its /proc is masked).
        inv.selected = list(inv.gpus)
        inv.selection_source = f"{shown} (host indices; this container sees exactly those GPUs)"
        return
    chosen: list[Gpu] = []
    for entry in entries:
        gpu: Gpu | None = None
        if entry.isdigit():
            i = int(entry)
            gpu = inv.gpus[i] if i < len(inv.gpus) else None
        else:
            gpu = by_uuid.get(entry.lower())
        if gpu is None:
            inv.note(
                ERROR,
                f"{source} names {entry!r}, which is none of the GPUs this container sees "
                f"({_describe(inv.gpus) or 'none'})",
            )
            continue
        if gpu not in chosen:
            chosen.append(gpu)
    if inv.errors:
        return
    inv.selected = chosen
    inv.selection_source = shown
    if expected is not None and expected != len(chosen):
        inv.note(
            WARNING,
            f"{source} lists {len(chosen)} GPU(s) but the pod spec asked for {expected} (RUNNERD_GPU_COUNT); "
            f"exposing the {len(chosen)} listed",
        )
    for gpu in chosen:
        if not os.path.exists(Tree(config.root).fs(gpu.node)):
            inv.note(ERROR, f"{gpu.node} ({gpu.uuid or 'GPU ' + str(gpu.index)}) is missing from /dev")


def _describe(gpus: list[Gpu]) -> str:
    return ", ".join(f"{g.node}" + (f" {g.uuid}" if g.uuid else "") for g in gpus)


def _search_dirs(tree: Tree, inv: Inventory) -> list[tuple[str, str]]:
    """(driver root, directory) pairs to search for libraries, most specific first, deduplicated
    by real path."""
    config = inv.config
    dirs: list[str] = [*config.extra_library_dirs, *LIBRARY_DIRS]
    for conf in ["/etc/ld.so.conf", *tree.glob("/etc/ld.so.conf.d/*.conf")]:
        for line in (tree.read(conf) or "").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("/"):
                dirs.append(line)
    for path in elf.ld_cache_paths(tree.fs("/etc/ld.so.cache")):
        name = os.path.basename(path)
        if "nvidia" in name or name.startswith("libcuda"):
            dirs.append(os.path.dirname(path))

    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for root in _driver_roots(tree, config):
        for d in dirs:
            full = os.path.normpath(root.rstrip("/") + "/" + d.lstrip("/"))
            if not tree.isdir(full):
                continue
            real = tree.resolve(full)
            if real in seen:
                continue
            seen.add(real)
            out.append((root, full))
    return out


def _driver_roots(tree: Tree, config: Config) -> list[str]:
    roots: list[str] = []
    for r in config.driver_roots:
        r = "/" + r.strip("/")
        if r not in roots and tree.isdir(r):
            roots.append(r)
    return roots


def _container_path(root: str, path: str) -> str:
    if root == "/" or not path.startswith(root.rstrip("/") + "/"):
        return path
    return path[len(root.rstrip("/")) :]


def _version_key(suffix: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in suffix.split("."))


def _find_libraries(tree: Tree, inv: Inventory, caps: set[str]) -> None:
    dirs = _search_dirs(tree, inv)
    inv.library_dirs_searched = [d for _, d in dirs]
    wanted: list[str] = []
    for cap in ALL_CAPABILITIES:
        if cap in caps:
            wanted += [n for n in LIBRARIES.get(cap, ()) if n not in wanted]

    if inv.driver_version is None:
        versions = sorted(
            {
                f[len("libnvidia-ml.so.") :]
                for _, d in dirs
                for f in tree.listdir(d)
                if f.startswith("libnvidia-ml.so.") and f.count(".") >= 3
            },
            key=_version_key,
        )
        if versions:
            inv.driver_version, inv.driver_version_source = versions[-1], "libnvidia-ml.so.* file names"
            if len(versions) > 1:
                inv.note(WARNING, f"libnvidia-ml.so of several driver versions: {', '.join(versions)}")

    seen_paths: set[str] = set()
    for name in wanted:
        found = _find_library(tree, inv, dirs, name)
        if found is None:
            inv.missing_libraries.append(name)
            continue
        root, directory, real_name = found
        real = tree.resolve(f"{directory}/{real_name}")
        if real in seen_paths:
            continue
        seen_paths.add(real)
        target = _container_path(root, f"{directory}/{real_name}")
        inv.libraries.append(FileMount(path=real, container_path=target, name=name))
        aliases = [
            entry
            for entry in tree.listdir(directory)
            if entry != real_name
            and entry.startswith(name)
            and os.path.islink(tree.fs(f"{directory}/{entry}"))
            and tree.resolve(f"{directory}/{entry}") == real
        ]
        so = elf.soname(tree.fs(real))
        if so and so != real_name and so not in aliases:
            aliases.append(so)
        if name in DEV_NAME_LIBRARIES and name not in aliases:
            aliases.append(name)
        for alias in sorted(aliases):
            inv.libraries.append(
                FileMount(
                    path=real,
                    container_path=_container_path(root, f"{directory}/{alias}"),
                    name=name,
                    alias=True,
                )
            )

    for cap in sorted(caps):
        for name in REQUIRED_LIBRARIES.get(cap, ()):
            if name in inv.missing_libraries:
                inv.note(
                    ERROR,
                    f"{name}{'.' + inv.driver_version if inv.driver_version else '.*'} (capability {cap}) "
                    f"not found; looked in {', '.join(inv.library_dirs_searched) or 'no existing directory'}",
                )
    optional = [n for n in inv.missing_libraries if not any(n in REQUIRED_LIBRARIES.get(c, ()) for c in caps)]
    if optional:
        inv.note(INFO, f"optional libraries not present: {', '.join(optional)}")


def _find_library(
    tree: Tree, inv: Inventory, dirs: list[tuple[str, str]], name: str
) -> tuple[str, str, str] | None:
    """(driver root, directory, file name) of the real file of library ``name``: the one with the
    driver version, else the highest-versioned regular file (libraries with their own versioning,
    or an unknown driver version)."""
    version = inv.driver_version
    fallback: tuple[tuple[int, ...], str, str, str] | None = None
    for root, d in dirs:
        if version and tree.exists(f"{d}/{name}.{version}"):
            return root, d, f"{name}.{version}"
        for entry in tree.listdir(d):
            if not entry.startswith(name + "."):
                continue
            path = tree.fs(f"{d}/{entry}")
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            key = _version_key(entry[len(name) + 1 :])
            if fallback is None or key > fallback[0]:
                fallback = (key, root, d, entry)
    if fallback is None:
        return None
    _, root, d, entry = fallback
    suffix = entry[len(name) + 1 :]
    if version and suffix != version:
        inv.note(
            WARNING,
            f"{d}/{entry} does not match the kernel module's version {version}: a stale driver library?",
        )
    return root, d, entry


def _find_binaries(tree: Tree, inv: Inventory, caps: set[str]) -> None:
    roots = _driver_roots(tree, inv.config)
    searched: list[str] = []
    for root in roots:
        for d in BINARY_DIRS:
            full = os.path.normpath(root.rstrip("/") + "/" + d.lstrip("/"))
            if tree.isdir(full) and full not in searched:
                searched.append(full)
    inv.binary_dirs_searched = searched
    seen: set[str] = set()
    for cap in sorted(caps):
        for name in BINARIES.get(cap, ()):
            hit: FileMount | None = None
            for root in roots:
                for d in BINARY_DIRS:
                    candidate = os.path.normpath(f"{root.rstrip('/')}/{d.lstrip('/')}/{name}")
                    if tree.exists(candidate) and os.path.isfile(tree.fs(candidate)):
                        hit = FileMount(
                            path=tree.resolve(candidate),
                            container_path=_container_path(root, candidate),
                            name=name,
                        )
                        break
                if hit:
                    break
            if hit is None:
                inv.missing_binaries.append(name)
                if name in REQUIRED_BINARIES.get(cap, ()):
                    inv.note(
                        WARNING,
                        f"{name} not found (looked in {', '.join(searched) or 'no existing directory'}): "
                        "jobs will have no nvidia-smi",
                    )
            elif hit.container_path not in seen:
                seen.add(hit.container_path)
                inv.binaries.append(hit)
