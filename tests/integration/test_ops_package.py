"""The Python package as users get it: ``python -m build`` makes an sdist and a wheel (the wheel from
the sdist) with the right metadata; the wheel installed into a fresh virtual environment runs
``runnerd --version``, ``runnerd status --help`` and ``kubectl runnerd``; the krew manifest's archive
is reproducible, its checksum is the manifest's, and the plugin it installs runs."""

from __future__ import annotations

import email
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from devcluster import binaries

pytestmark = [pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
VERSION = PROJECT["version"]
SITE = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path
    venv: Path

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name


def run(*argv: str | Path, path: str = "/usr/bin:/bin", **env: str) -> str:
    proc = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": path, "HOME": "/nonexistent", **env},
    )
    assert proc.returncode == 0, f"{argv}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    tmp = tmp_path_factory.mktemp("package")
    src = tmp / "src"  # a copy: building writes egg-info and build/ next to the sources
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    dist = tmp / "dist"
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, src)
    (sdist,), (wheel,) = dist.glob("*.tar.gz"), dist.glob("*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    # the wheel alone in the fresh environment; its dependencies (same pins) from this one's
    # site-packages, appended to sys.path (its .pth files, the editable install among them, are not read)
    (venv / "lib" / SITE.parent.name / "site-packages" / "deps.pth").write_text(f"{SITE}\n")
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-deps", wheel)
    return Built(sdist, wheel, venv)


def test_the_sdist_and_wheel_carry_the_metadata(built: Built) -> None:
    assert built.sdist.name == f"runnerd-{VERSION}.tar.gz"
    assert built.wheel.name == f"runnerd-{VERSION}-py3-none-any.whl"
    with tarfile.open(built.sdist) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {"LICENSE", "README.md", "pyproject.toml", "src/runnerd/cli.py", "src/runnerd/py.typed"} <= names
    with zipfile.ZipFile(built.wheel) as wheel:
        files = set(wheel.namelist())
        meta = email.message_from_bytes(wheel.read(f"runnerd-{VERSION}.dist-info/METADATA"))
        entry_points = wheel.read(f"runnerd-{VERSION}.dist-info/entry_points.txt").decode()
    assert meta["Name"] == "runnerd"
    assert meta["Version"] == VERSION
    assert meta["License-Expression"] == "Apache-2.0"
    assert set(meta["Requires-Python"].split(",")) == {">=3.11", "<3.12"}
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert set(meta.get_all("Requires-Dist")) >= set(PROJECT["dependencies"])
    assert f"runnerd-{VERSION}.dist-info/licenses/LICENSE" in files
    assert {"runnerd/py.typed", "runnerd/web/static/dashboard.html"} <= files  # package data
    for script, target in PROJECT["scripts"].items():
        assert f"{script} = {target}" in entry_points


def test_the_installed_wheel_runs(built: Built) -> None:
    assert run(built.bin("runnerd"), "--version").strip() == f"runnerd {VERSION}"
    assert "usage: runnerd status" in run(built.bin("runnerd"), "status", "--help")
    where = run(built.bin("python"), "-c", "import runnerd; print(runnerd.__file__)")
    assert where.startswith(str(built.venv)), "runnerd comes from the wheel, not the checkout"


def test_kubectl_finds_the_plugin_of_the_install(built: Built) -> None:
    kubectl = binaries.ensure().kubectl
    path = f"{built.venv / 'bin'}:/usr/bin:/bin"
    assert str(built.bin("kubectl-runnerd")) in run(kubectl, "plugin", "list", path=path)
    assert "usage: kubectl runnerd status" in run(kubectl, "runnerd", "status", "--help", path=path)


def test_the_krew_manifest_and_its_archive(built: Built, tmp_path: Path) -> None:
    url = f"https://example.invalid/kubectl-runnerd-{VERSION}.tar.gz"
    gen = [sys.executable, REPO / "hack" / "gen_krew_manifest.py", "--version", VERSION, "--url", url]
    run(*gen, "--out", tmp_path / "a")
    run(*gen, "--out", tmp_path / "b")
    archive = (tmp_path / "a" / f"kubectl-runnerd-{VERSION}.tar.gz").read_bytes()
    assert archive == (tmp_path / "b" / f"kubectl-runnerd-{VERSION}.tar.gz").read_bytes(), "reproducible"
    plugin = yaml.safe_load((tmp_path / "a" / "runnerd.yaml").read_text())
    assert (plugin["apiVersion"], plugin["kind"]) == (
        "krew.googlecontainertools.github.com/v1alpha2",
        "Plugin",
    )
    assert plugin["metadata"]["name"] == "runnerd"
    spec = plugin["spec"]
    assert spec["version"] == f"v{VERSION}"
    assert f"pip install runnerd=={VERSION}" in spec["caveats"]
    (platform,) = spec["platforms"]
    assert platform["uri"] == url
    assert platform["sha256"] == hashlib.sha256(archive).hexdigest()

    # what krew installs: the archive's files, the bin on PATH
    plugin_dir = tmp_path / "krew"
    with tarfile.open(tmp_path / "a" / f"kubectl-runnerd-{VERSION}.tar.gz") as tar:
        tar.extractall(plugin_dir, filter="data")
    assert {f["from"] for f in platform["files"]} == {p.name for p in plugin_dir.iterdir()}
    kubectl = binaries.ensure().kubectl
    path = f"{plugin_dir}:/usr/bin:/bin"
    out = run(kubectl, "runnerd", "status", "--help", path=path, RUNNERD_PYTHON=str(built.bin("python")))
    assert "usage: kubectl runnerd status" in out
    # no Python with runnerd anywhere: the launcher says what to install
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run(
        ["/bin/sh", str(plugin_dir / "kubectl-runnerd"), "status"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": str(empty)},
    )
    assert proc.returncode == 1
    assert f"pip install runnerd=={VERSION}" in proc.stderr
