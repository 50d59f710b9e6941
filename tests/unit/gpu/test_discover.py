"""runnerd-gpu-setup discovery against fake /dev, /proc and driver trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runnerd.gpu import elf
from runnerd.gpu.discover import NO_DEVICE_NODES, discover
from runnerd.gpu.inventory import Config, Inventory, Tree
from tests.unit.gpu.fake import BUSES, DRIVER, LIBDIR, UUIDS, FakeNode, ld_cache, tiny_elf


def run(root: Path, **kw: object) -> Inventory:
    return discover(Config(root=str(root), **kw))  # type: ignore[arg-type]


def container_paths(inv: Inventory) -> set[str]:
    return {m.container_path for m in inv.mounts()}


def test_one_gpu_everything_found(tmp_path: Path) -> None:
    FakeNode(tmp_path).build()
    inv = run(tmp_path, visible_devices=UUIDS[0], expected_count=1)
    assert inv.ok, inv.findings
    assert inv.warnings == []
    assert inv.driver_version == DRIVER
    assert [(g.node, g.uuid, g.bus_id) for g in inv.selected] == [("/dev/nvidia0", UUIDS[0], BUSES[0])]
    assert inv.control_nodes == ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
    cuda = inv.library("libcuda.so")
    assert cuda is not None
    assert (cuda.path, cuda.container_path) == (f"{LIBDIR}/libcuda.so.{DRIVER}",) * 2
    # real file, SONAME (a symlink here), and libcuda's development name; nvvm's SONAME is .so.4
    assert {
        f"{LIBDIR}/libcuda.so.{DRIVER}",
        f"{LIBDIR}/libcuda.so.1",
        f"{LIBDIR}/libcuda.so",
        f"{LIBDIR}/libnvidia-ml.so.1",
        f"{LIBDIR}/libnvidia-nvvm.so.4",
        "/usr/bin/nvidia-smi",
    } <= container_paths(inv)
    assert all(m.path == f"{LIBDIR}/libcuda.so.{DRIVER}" for m in inv.libraries if m.name == "libcuda.so")
    assert "libnvidia-opencl.so" in inv.missing_libraries  # optional: noted, not an error


def test_no_device_nodes_says_what_to_check(tmp_path: Path) -> None:
    FakeNode(tmp_path, gpus=0, control=()).build()
    inv = run(tmp_path)
    assert inv.errors == [NO_DEVICE_NODES]
    assert "does the pod request nvidia.com/gpu and run with the NVIDIA runtime?" in NO_DEVICE_NODES


def test_missing_libraries_are_named_with_the_directories_searched(tmp_path: Path) -> None:
    FakeNode(tmp_path, libs=("libnvidia-ml.so",)).build()
    inv = run(tmp_path)
    assert not inv.ok
    cuda = next(e for e in inv.errors if e.startswith("libcuda.so"))
    assert cuda.startswith(f"libcuda.so.{DRIVER} (capability compute) not found; looked in {LIBDIR}")
    assert any(e.startswith("libnvidia-ptxjitcompiler.so") for e in inv.errors)
    assert not any(e.startswith("libnvidia-ml.so") for e in inv.errors)


def test_utility_only_needs_no_cuda(tmp_path: Path) -> None:
    FakeNode(tmp_path, libs=("libnvidia-ml.so",), control=("nvidiactl",)).build()
    inv = run(tmp_path, capabilities=("utility",))
    assert inv.ok, inv.errors
    assert inv.warnings == []  # no /dev/nvidia-uvm warning without compute


def test_missing_uvm_is_a_warning_for_compute(tmp_path: Path) -> None:
    FakeNode(tmp_path, control=("nvidiactl",)).build()
    inv = run(tmp_path)
    assert inv.ok
    assert any("/dev/nvidia-uvm is missing" in w for w in inv.warnings)


def test_missing_nvidiactl_is_an_error(tmp_path: Path) -> None:
    FakeNode(tmp_path, control=("nvidia-uvm",)).build()
    assert any("/dev/nvidiactl is missing" in e for e in run(tmp_path).errors)


def test_privileged_container_exposes_only_the_allocated_uuid(tmp_path: Path) -> None:
    FakeNode(tmp_path, gpus=4).build()
    inv = run(tmp_path, visible_devices=f"{UUIDS[2]},{UUIDS[3]}", expected_count=2)
    assert inv.ok, inv.errors
    assert len(inv.gpus) == 4
    assert [(g.index, g.node) for g in inv.selected] == [(2, "/dev/nvidia2"), (3, "/dev/nvidia3")]
    assert inv.selection_source == f"NVIDIA_VISIBLE_DEVICES={UUIDS[2]},{UUIDS[3]}"


def test_uuid_match_ignores_case_and_duplicates(tmp_path: Path) -> None:
    FakeNode(tmp_path, gpus=2).build()
    inv = run(tmp_path, visible_devices=f"{UUIDS[1].upper()},{UUIDS[1]}", expected_count=1)
    assert [g.minor for g in inv.selected] == [1]


def test_indices_are_pci_order(tmp_path: Path) -> None:
    FakeNode(tmp_path, gpus=4).build()
    inv = run(tmp_path, visible_devices="3,1", expected_count=2)
    assert [g.node for g in inv.selected] == ["/dev/nvidia3", "/dev/nvidia1"]


def test_host_indices_in_a_container_that_sees_only_those_gpus(tmp_path: Path) -> None:
    FakeNode(tmp_path, gpus=2).build()
    inv = run(tmp_path, visible_devices="5,7", expected_count=2)
    assert inv.ok, inv.errors
    assert len(inv.selected) == 2
    assert "host indices" in inv.selection_source


@pytest.mark.parametrize("visible", [None, "", "void", "none", "all"])
def test_no_device_list_and_more_gpus_than_allocated_refuses(tmp_path: Path, visible: str | None) -> None:
    FakeNode(tmp_path, gpus=4).build()
    inv = run(tmp_path, visible_devices=visible, expected_count=1)
    assert inv.selected == []
    [error] = inv.errors
    assert error.startswith("this container sees 4 GPUs but was given 1 (RUNNERD_GPU_COUNT)")
    assert "RUNNERD_GPU_DEVICES" in error
    assert "deviceListStrategy" in error


@pytest.mark.parametrize("visible", [None, "void", "all"])
def test_no_device_list_and_exactly_the_allocated_gpus_uses_them(tmp_path: Path, visible: str | None) -> None:
    FakeNode(tmp_path, gpus=2).build()
    inv = run(tmp_path, visible_devices=visible, expected_count=2)
    assert inv.ok, inv.errors
    assert [g.minor for g in inv.selected] == [0, 1]


def test_fewer_gpus_than_allocated_is_an_error(tmp_path: Path) -> None:
    FakeNode(tmp_path, gpus=1).build()
    [error] = run(tmp_path, expected_count=2).errors
    assert error.startswith("the pod was given 2 GPU(s) (RUNNERD_GPU_COUNT) but this container sees 1")


def test_explicit_devices_win_over_the_device_plugin(tmp_path: Path) -> None:
    FakeNode(tmp_path, gpus=3).build()
    inv = run(tmp_path, visible_devices=UUIDS[0], requested_devices=UUIDS[2], expected_count=1)
    assert [g.minor for g in inv.selected] == [2]
    assert inv.selection_source.startswith("RUNNERD_GPU_DEVICES=")


def test_count_mismatch_with_a_device_list_warns(tmp_path: Path) -> None:
    FakeNode(tmp_path, gpus=2).build()
    inv = run(tmp_path, visible_devices=f"{UUIDS[0]},{UUIDS[1]}", expected_count=1)
    assert inv.ok
    assert [g.minor for g in inv.selected] == [0, 1]
    assert any("lists 2 GPU(s) but the pod spec asked for 1" in w for w in inv.warnings)


def test_unknown_uuid_is_an_error_naming_what_is_there(tmp_path: Path) -> None:
    FakeNode(tmp_path, gpus=1).build()
    [error] = run(tmp_path, visible_devices="GPU-ffffffff-0000-0000-0000-000000000000").errors
    assert "GPU-ffffffff" in error
    assert UUIDS[0] in error


@pytest.mark.parametrize("mig", ["MIG-5c1e3f7a-0000-1111-2222-333344445555", "0:1"])
def test_mig_is_refused_clearly(tmp_path: Path, mig: str) -> None:
    FakeNode(tmp_path, gpus=1).build()
    [error] = run(tmp_path, visible_devices=mig).errors
    assert "does not support MIG" in error


def test_gpus_from_dev_nodes_when_proc_is_not_readable(tmp_path: Path) -> None:
    FakeNode(tmp_path, gpus=2, proc=False).build()
    inv = run(tmp_path, expected_count=2)
    assert inv.ok, inv.errors
    assert [(g.node, g.uuid) for g in inv.selected] == [("/dev/nvidia0", None), ("/dev/nvidia1", None)]
    assert inv.driver_version == DRIVER
    assert inv.driver_version_source == "libnvidia-ml.so.* file names"
    assert any("without UUIDs" in w for w in inv.warnings)


def test_uninitialised_uuid_is_ignored(tmp_path: Path) -> None:
    FakeNode(tmp_path).build()
    info = tmp_path / "proc/driver/nvidia/gpus" / BUSES[0] / "information"
    info.write_text(info.read_text().replace(UUIDS[0], "GPU-????????-????-????-????-????????????"))
    inv = run(tmp_path)
    assert inv.ok
    assert inv.selected[0].uuid is None


def test_driver_root_is_stripped_from_container_paths(tmp_path: Path) -> None:
    FakeNode(tmp_path, driver_root="/run/nvidia/driver", libdir="/usr/lib64").build()
    inv = run(tmp_path)
    assert inv.ok, inv.errors
    cuda = inv.library("libcuda.so")
    assert cuda is not None
    assert cuda.path == f"/run/nvidia/driver/usr/lib64/libcuda.so.{DRIVER}"
    assert cuda.container_path == f"/usr/lib64/libcuda.so.{DRIVER}"
    smi = inv.binaries[0]
    assert (smi.path, smi.container_path) == ("/run/nvidia/driver/usr/bin/nvidia-smi", "/usr/bin/nvidia-smi")


def test_soname_from_the_elf_header_when_there_is_no_symlink(tmp_path: Path) -> None:
    FakeNode(tmp_path, symlinks=False).build()
    paths = container_paths(run(tmp_path))
    assert {f"{LIBDIR}/libcuda.so.1", f"{LIBDIR}/libnvidia-nvvm.so.4", f"{LIBDIR}/libcuda.so"} <= paths


def test_library_directories_from_ld_so_conf_and_cache(tmp_path: Path) -> None:
    FakeNode(
        tmp_path, libdir="/opt/nvidia/lib", extra={"/etc/ld.so.conf.d/nv.conf": "# driver\n/opt/nvidia/lib\n"}
    ).build()
    inv = run(tmp_path)
    assert inv.ok, inv.errors
    assert "/opt/nvidia/lib" in inv.library_dirs_searched

    other = tmp_path / "other"
    FakeNode(other, libdir="/srv/driver").build()
    (other / "etc").mkdir()
    (other / "etc/ld.so.cache").write_bytes(ld_cache(["/srv/driver/libcuda.so.1", "/usr/lib/libz.so.1"]))
    inv = run(other)
    assert "/srv/driver" in inv.library_dirs_searched
    assert inv.library("libcuda.so") is not None


def test_a_stale_library_is_used_with_a_warning(tmp_path: Path) -> None:
    FakeNode(tmp_path, driver="535.183.01", libs=("libnvidia-ml.so", "libnvidia-ptxjitcompiler.so")).build()
    libdir = tmp_path / LIBDIR.lstrip("/")
    (libdir / "libcuda.so.570.86.15").write_bytes(tiny_elf("libcuda.so.1"))
    inv = run(tmp_path)
    cuda = inv.library("libcuda.so")
    assert cuda is not None
    assert cuda.path.endswith("libcuda.so.570.86.15")
    assert any("does not match the kernel module's version 535.183.01" in w for w in inv.warnings)


def test_merged_usr_directories_are_searched_once(tmp_path: Path) -> None:
    FakeNode(tmp_path).build()
    (tmp_path / "lib").symlink_to("usr/lib")
    inv = run(tmp_path)
    assert "/usr/lib/x86_64-linux-gnu" in inv.library_dirs_searched
    assert "/lib/x86_64-linux-gnu" not in inv.library_dirs_searched
    assert len([m for m in inv.libraries if m.name == "libcuda.so" and not m.alias]) == 1


def test_dri_nodes_with_the_graphics_capability(tmp_path: Path) -> None:
    FakeNode(tmp_path, gpus=2).build()
    dri = tmp_path / "dev/dri"
    (dri / "by-path").mkdir(parents=True)
    for minor, (card, render) in enumerate((("card1", "renderD128"), ("card2", "renderD129"))):
        (dri / card).write_bytes(b"")
        (dri / render).write_bytes(b"")
        (dri / "by-path" / f"pci-{BUSES[minor]}-card").symlink_to(f"../{card}")
        (dri / "by-path" / f"pci-{BUSES[minor]}-render").symlink_to(f"../{render}")
    inv = run(tmp_path, capabilities=("compute", "utility", "graphics"), visible_devices=UUIDS[1])
    assert inv.selected[0].extra_nodes == ("/dev/dri/card2", "/dev/dri/renderD129")
    assert run(tmp_path, visible_devices=UUIDS[1]).selected[0].extra_nodes == ()


def test_tree_resolves_absolute_links_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/lib/real").write_text("x")
    (tmp_path / "usr/lib/abs").symlink_to("/usr/lib/real")
    (tmp_path / "lib").symlink_to("/usr/lib")
    tree = Tree(str(tmp_path))
    assert tree.resolve("/lib/abs") == "/usr/lib/real"
    assert tree.exists(tree.resolve("/lib/abs"))


def test_device_nodes_made_with_mknod_are_character_devices_when_allowed(tmp_path: Path) -> None:
    FakeNode(tmp_path).build()
    tree = Tree(str(tmp_path))
    if os.geteuid() != 0 or not tree.is_char_device("/dev/nvidia0"):
        pytest.skip("cannot mknod here: the fake nodes are regular files")
    assert tree.is_char_device("/dev/nvidiactl")
    assert os.major(os.stat(tree.fs("/dev/nvidia0")).st_rdev) == 195
    assert run(tmp_path).ok


def test_soname_reader_on_real_and_non_elf_files(tmp_path: Path) -> None:
    (tmp_path / "text").write_text("not an elf")
    (tmp_path / "short").write_bytes(b"\x7fELF")
    assert elf.soname(str(tmp_path / "text")) is None
    assert elf.soname(str(tmp_path / "short")) is None
    assert elf.soname(str(tmp_path / "absent")) is None
    libc = Path("/lib/x86_64-linux-gnu/libc.so.6")
    if libc.exists():
        assert elf.soname(str(libc)) == "libc.so.6"


def test_ld_cache_reader(tmp_path: Path) -> None:
    (tmp_path / "cache").write_bytes(ld_cache(["/usr/lib64/libcuda.so.1", "relative/ignored.so"]))
    assert elf.ld_cache_paths(str(tmp_path / "cache")) == ["/usr/lib64/libcuda.so.1"]
    (tmp_path / "junk").write_bytes(b"ld.so-1.7.0 only the old format")
    assert elf.ld_cache_paths(str(tmp_path / "junk")) == []
    assert elf.ld_cache_paths(str(tmp_path / "absent")) == []
    if Path("/etc/ld.so.cache").exists() and Path("/lib/x86_64-linux-gnu/libc.so.6").exists():
        assert any(p.endswith("/libc.so.6") for p in elf.ld_cache_paths("/etc/ld.so.cache"))
