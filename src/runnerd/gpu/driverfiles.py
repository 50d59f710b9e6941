"""Find the NVIDIA driver's files under the driver roots: the libraries and binaries to bind-mount.

- Libraries: the usual library directories under each driver root (``/``, ``$NVIDIA_DRIVER_ROOT``,
  ``/run/nvidia/driver``, …), the directories of ``/etc/ld.so.conf{,.d/*.conf}`` and of the
  NVIDIA entries of ``/etc/ld.so.cache``. A library's real file is the one named
  ``<name>.so.<driver version>``; its SONAME (``libcuda.so.1``) and, for ``libcuda``, the
  development name ``libcuda.so`` are mounted too, so job images find them without ``ldconfig``.
  Without a driver version from ``/proc``, the version suffix of ``libnvidia-ml.so.*`` is taken.
- Binaries: ``nvidia-smi`` and friends in the usual ``bin`` directories under each driver root.

Every path is read through :class:`~runnerd.gpu.inventory.Tree`; what is found, missing or odd is
recorded in the :class:`~runnerd.gpu.inventory.Inventory`. Nothing here writes anything or runs a
program.
"""

from __future__ import annotations

import os

from runnerd.gpu import elf
from runnerd.gpu.inventory import ALL_CAPABILITIES, ERROR, INFO, WARNING, Config, FileMount, Inventory, Tree

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


def find_libraries(tree: Tree, inv: Inventory, caps: set[str]) -> None:
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


def find_binaries(tree: Tree, inv: Inventory, caps: set[str]) -> None:
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
