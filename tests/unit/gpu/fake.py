"""Fake GPU containers for runnerd-gpu-setup: a /dev, /proc/driver/nvidia and driver tree in a tmp dir.

Device nodes are real character devices (``os.mknod``, major 195 as NVIDIA's) where this process
may create them (root with CAP_MKNOD), else empty regular files: the helper only checks that a node
exists — ``runnerd.gpu.check`` checks on real hardware that they are character devices.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

DRIVER = "570.86.15"
LIBDIR = "/usr/lib/x86_64-linux-gnu"
UUIDS = (
    "GPU-0a1b2c3d-0000-1111-2222-333344445555",
    "GPU-1a1b2c3d-0000-1111-2222-333344445555",
    "GPU-2a1b2c3d-0000-1111-2222-333344445555",
    "GPU-3a1b2c3d-0000-1111-2222-333344445555",
)
BUSES = ("0000:18:00.0", "0000:2a:00.0", "0000:3b:00.0", "0000:4c:00.0")
CORE_LIBS = ("libnvidia-ml.so", "libcuda.so", "libnvidia-ptxjitcompiler.so", "libnvidia-nvvm.so")
SONAMES = {"libnvidia-nvvm.so": "libnvidia-nvvm.so.4"}


def node(path: Path, minor: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(195, minor))
    except (PermissionError, OSError):
        path.write_bytes(b"")


def tiny_elf(soname: str) -> bytes:
    """A minimal ELF64 little-endian shared object whose only content is a DT_SONAME."""
    strtab = b"\0" + soname.encode() + b"\0"
    ehsize, phentsize, phnum = 64, 56, 2
    dyn_off = ehsize + phentsize * phnum
    str_off = dyn_off + 3 * 16
    # DT_STRTAB (its vaddr, = file offset: one PT_LOAD at 0), DT_SONAME (offset 1 in it), DT_NULL
    dynamic = struct.pack("<qQqQqQ", 5, str_off, 14, 1, 0, 0)
    total = str_off + len(strtab)
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH", 3, 62, 1, 0, ehsize, 0, 0, ehsize, phentsize, phnum, 64, 0, 0
    )
    load = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, total, total, 0x1000)
    dyn = struct.pack("<IIQQQQQQ", 2, 6, dyn_off, dyn_off, dyn_off, len(dynamic), len(dynamic), 8)
    return header + load + dyn + dynamic + strtab


def ld_cache(paths: list[str]) -> bytes:
    """A glibc ld.so.cache (new format) listing ``paths``."""
    header_size, entry_size = 48, 24
    strings = b""
    offsets = []
    base = header_size + entry_size * len(paths)
    for p in paths:
        offsets.append(base + len(strings))
        strings += p.encode() + b"\0"
    out = b"glibc-ld.so.cache1.1" + struct.pack("<IIB3xI12x", len(paths), len(strings), 2, 0)
    for off in offsets:
        out += struct.pack("<iIIIQ", 0x0303, off, off, 0, 0)
    return out + strings


@dataclass
class FakeNode:
    """A container's view of a GPU node: what the NVIDIA runtime would have put in it."""

    root: Path
    driver: str | None = DRIVER
    gpus: int = 1
    libdir: str = LIBDIR
    driver_root: str = "/"
    libs: tuple[str, ...] = CORE_LIBS
    binaries: tuple[str, ...] = ("nvidia-smi",)
    control: tuple[str, ...] = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools")
    proc: bool = True
    symlinks: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    def build(self) -> FakeNode:
        r = self.root
        dr = r / self.driver_root.lstrip("/")
        for name in self.control:
            node(r / "dev" / name, 255)
        for i in range(self.gpus):
            node(r / "dev" / f"nvidia{i}", i)
            if self.proc:
                info = r / "proc/driver/nvidia/gpus" / BUSES[i] / "information"
                info.parent.mkdir(parents=True, exist_ok=True)
                info.write_text(
                    "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 42\n"
                    f"GPU UUID: \t {UUIDS[i]}\nVideo BIOS: \t 96.00.99.00.01\nBus Type: \t PCIe\n"
                    f"Bus Location: \t {BUSES[i]}\nDevice Minor: \t {i}\nGPU Excluded:\t No\n"
                )
        if self.proc and self.driver:
            v = r / "proc/driver/nvidia/version"
            v.parent.mkdir(parents=True, exist_ok=True)
            v.write_text(
                f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {self.driver}  Thu Jan  2 00:00:00 UTC 2025"
                "\n"
                "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
            )
        libdir = dr / self.libdir.lstrip("/")
        libdir.mkdir(parents=True, exist_ok=True)
        version = self.driver or DRIVER
        for lib in self.libs:
            soname = SONAMES.get(lib, f"{lib}.1")
            real = libdir / f"{lib}.{version}"
            real.write_bytes(tiny_elf(soname))
            if self.symlinks:
                (libdir / soname).symlink_to(real.name)
        bindir = dr / "usr/bin"
        bindir.mkdir(parents=True, exist_ok=True)
        for b in self.binaries:
            (bindir / b).write_text("#!/bin/sh\n")
            (bindir / b).chmod(0o755)
        for rel, text in self.extra.items():
            p = r / rel.lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        return self
