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
- Driver version: ``/proc/driver/nvidia/version``, else (found with the libraries) the version
  suffix of ``libnvidia-ml.so.*``.
- Libraries and binaries: :mod:`runnerd.gpu.driverfiles`.
"""

from __future__ import annotations

import os
import re

from runnerd.gpu.driverfiles import find_binaries, find_libraries
from runnerd.gpu.inventory import (
    ALL_CAPABILITIES,
    ERROR,
    INFO,
    WARNING,
    Config,
    FileMount,
    Gpu,
    Inventory,
    Tree,
)

IPC_SOCKETS = ("/run/nvidia-persistenced/socket",)
CONTROL_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
NO_DEVICE_NODES = (
    "no NVIDIA device nodes in /dev: does the pod request nvidia.com/gpu and run with the NVIDIA runtime?"
)

_VERSION_IN_PROC = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+\.\d+(?:\.\d+)?)")
_GPU_NODE = re.compile(r"nvidia(\d+)")
_MIG = re.compile(r"^(MIG-.+|\d+:\d+|GPU-[^/]+/\d+/\d+)$")


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
    find_libraries(tree, inv, caps)
    find_binaries(tree, inv, caps)
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
