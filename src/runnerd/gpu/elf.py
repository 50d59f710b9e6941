"""Two small readers of system files: an ELF shared object's SONAME and glibc's ld.so.cache.

Both read only what they need (a library such as libcuda is tens of MiB) and return ``None`` or an
empty list for anything they do not understand: they are hints for discovery, never required.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_STRTAB, _DT_SONAME = 0, 5, 14
_MAX_DYNAMIC_ENTRIES = 4096


def soname(path: str) -> str | None:
    """The DT_SONAME of the ELF shared object at ``path`` (e.g. ``libcuda.so.1``), else None."""
    try:
        with open(path, "rb") as f:
            return _soname(f)
    except (OSError, struct.error, ValueError):
        return None


def _soname(f: BinaryIO) -> str | None:
    ident = f.read(16)
    if len(ident) < 16 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        return None
    is64 = ident[4] == 2
    end = "<" if ident[5] == 1 else ">"
    if is64:
        header = struct.unpack(end + "HHIQQQIHHHHHH", f.read(48))
        phoff, phentsize, phnum = header[4], header[8], header[9]
        ph_format, word = end + "IIQQQQQQ", end + "qQ"
    else:
        header = struct.unpack(end + "HHIIIIIHHHHHH", f.read(36))
        phoff, phentsize, phnum = header[4], header[8], header[9]
        ph_format, word = end + "IIIIIIII", end + "iI"

    loads: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset)
    dynamic: tuple[int, int] | None = None  # (offset, filesz)
    for i in range(phnum):
        f.seek(phoff + i * phentsize)
        ph = struct.unpack(ph_format, f.read(struct.calcsize(ph_format)))
        if is64:
            p_type, p_offset, p_vaddr, p_filesz = ph[0], ph[2], ph[3], ph[5]
        else:
            p_type, p_offset, p_vaddr, p_filesz = ph[0], ph[1], ph[2], ph[4]
        if p_type == _PT_LOAD:
            loads.append((p_vaddr, p_filesz, p_offset))
        elif p_type == _PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return None

    strtab: int | None = None
    name_offset: int | None = None
    size = struct.calcsize(word)
    f.seek(dynamic[0])
    for _ in range(min(dynamic[1] // size, _MAX_DYNAMIC_ENTRIES)):
        tag, value = struct.unpack(word, f.read(size))
        if tag == _DT_NULL:
            break
        if tag == _DT_STRTAB:
            strtab = value
        elif tag == _DT_SONAME:
            name_offset = value
    if strtab is None or name_offset is None:
        return None
    for vaddr, filesz, offset in loads:
        if vaddr <= strtab < vaddr + filesz:
            f.seek(offset + (strtab - vaddr) + name_offset)
            raw = f.read(256).split(b"\0", 1)[0]
            return raw.decode("utf-8", "replace") or None
    return None


_NEW_MAGIC = b"glibc-ld.so.cache1.1"
_NEW_HEADER = struct.Struct("<20sIIB3xI12x")  # magic+version, nlibs, len_strings, flags, ext offset
_NEW_ENTRY = struct.Struct("<iIIIQ")  # flags, key, value, osversion, hwcap


def ld_cache_paths(path: str) -> list[str]:
    """The library paths listed in a glibc ``ld.so.cache`` (the new format, glibc 2.x default since
    2.32 and present beside the old one before). Little-endian caches only; else ``[]``."""
    try:
        with open(path, "rb") as f:
            data = f.read(64 * 1024 * 1024)
    except OSError:
        return []
    start = data.find(_NEW_MAGIC)
    if start < 0 or len(data) < start + _NEW_HEADER.size:
        return []
    _magic, nlibs, _len_strings, _flags, _ext = _NEW_HEADER.unpack_from(data, start)
    out: list[str] = []
    for i in range(nlibs):
        at = start + _NEW_HEADER.size + i * _NEW_ENTRY.size
        if at + _NEW_ENTRY.size > len(data):
            break
        _eflags, _key, value, _osv, _hwcap = _NEW_ENTRY.unpack_from(data, at)
        end = data.find(b"\0", start + value)
        if end < 0:
            break
        text = data[start + value : end].decode("utf-8", "replace")
        if text.startswith("/"):
            out.append(os.path.normpath(text))
    return out
