"""A real node for the devcluster: kubelet (built from the same Kubernetes version as the control
plane), containerd and runc, beside the kwok nodes. Its pods run as real containers.

Facts in: a started :class:`devcluster.cluster.Cluster`, the ``kubelet`` binary next to the other
binaries (``hack/build-binaries.sh``), the image manifest written by ``hack/build-images.sh``
(``images.json``: tag, docker-archive and image ID of each image), and Debian's ``containerd``,
``runc`` and CNI plugins on this machine (``hack/install-containers.sh``). Root is required.

Steps out, per node (:meth:`RealNode.start`):

1. the node's cgroups and a Linux bridge (one per node, its own /24, no NAT) whose address on this
   machine, :attr:`RealNode.gateway`, is the node's IP (kubelet refuses a loopback one) and where
   pods reach services of this machine -- nothing else; containerd with its own root, state and
   socket under the node's state directory, the CRI plugin's sandbox image set to the pause image
   built here, runc (cgroupfs driver) as the runtime, the bridge as its CNI network, and
   ``restrict_oom_score_adj`` (root has no ``CAP_SYS_RESOURCE`` on these machines);
2. every image of the manifest imported into containerd's ``k8s.io`` namespace (the dind image is
   also tagged ``docker.io/library/docker:dind``, the pod builder's default sidecar image), so no
   pod ever pulls: pods must use ``imagePullPolicy: IfNotPresent`` or ``Never``;
3. kubelet registered as :attr:`RealNode.name` with the admin kubeconfig, labelled
   ``runnerd.dev/real-node=true`` and tainted ``runnerd.dev/real-node=true:NoSchedule`` (only pods
   that tolerate it land here), its pods under the cgroup ``/runnerd-<name>`` of every hierarchy;
4. returns once the node is Ready.

The cgroup layout of these machines is hybrid (cgroup v1 controllers at ``/sys/fs/cgroup/<ctrl>``,
a controller-less cgroup v2 at ``/sys/fs/cgroup/unified``): kubelet and runc see cgroup v1, which
kubelet refuses from 1.35 on unless ``failCgroupV1: false`` (set here) -- cgroup v1 is in
maintenance mode upstream. crun is not used (it refuses hybrid mode).

:meth:`RealNode.stop` (idempotent) stops kubelet, kills and removes every container and sandbox,
stops containerd and its shims, unmounts what they left under the state directory, and removes the
node's bridge and cgroups. Nothing of a node survives its stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devcluster.cluster import ClusterError, free_port
from devcluster.process import die_with_parent

if TYPE_CHECKING:
    from devcluster.cluster import Cluster

REAL_NODE_LABEL = "runnerd.dev/real-node"
REAL_NODE_TAINT = {"key": REAL_NODE_LABEL, "value": "true", "effect": "NoSchedule"}
REAL_NODE_TOLERATION = {"key": REAL_NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
DIND_ALIAS = "docker.io/library/docker:dind"
CNI_PLUGIN_DIR = Path("/usr/lib/cni")
CGROUP_V1_ROOT = Path("/sys/fs/cgroup")
HOST_TOOLS = ("containerd", "ctr", "runc", "containerd-shim-runc-v2")
BUILD_IMAGES = Path(__file__).resolve().parents[2] / "hack" / "build-images.sh"
INSTALL_HINT = "run hack/install-containers.sh (apt-get install containerd runc containernetworking-plugins)"


class RealNodeError(ClusterError):
    """A real node could not start; the message names the step and the component's log."""


@dataclass(frozen=True)
class Image:
    """One entry of ``images.json``: an image (``archive`` a docker-archive) or, ``kind="file"``, a
    built file (``archive`` the file itself, ``id`` its sha256; the static GPU helper)."""

    tag: str
    archive: Path
    id: str
    kind: str = "image"


def read_manifest(path: Path) -> dict[str, Image]:
    """The images ``hack/build-images.sh`` built (its ``images.json``)."""
    data = json.loads(path.read_text())
    return {
        name: Image(v["tag"], Path(v["archive"]), v["id"], v.get("kind", "image")) for name, v in data.items()
    }


def missing_host_tools() -> list[str]:
    """What this machine lacks to run a real node (empty: all there)."""
    missing = [t for t in HOST_TOOLS if shutil.which(t) is None]
    missing += [
        f"CNI plugin {p}" for p in ("bridge", "host-local", "loopback") if not (CNI_PLUGIN_DIR / p).exists()
    ]
    if os.geteuid() != 0:
        missing.append("root")
    return missing


@dataclass
class RealNode:
    """One kubelet + containerd node registered with ``cluster``; see the module docstring."""

    cluster: Cluster
    kubelet: Path
    images: Mapping[str, Image]
    name: str = "real-node-0"
    index: int = 0
    max_pods: int = 30
    _procs: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    # ----------------------------------------------------------------------------- layout
    @property
    def state_dir(self) -> Path:
        return self.cluster.state_dir / "real-nodes" / self.name

    @property
    def socket(self) -> Path:
        return self.state_dir / "containerd.sock"

    @property
    def cgroup(self) -> str:
        return f"runnerd-{self.name}"

    @property
    def bridge(self) -> str:
        return f"rd{zlib.crc32(str(self.state_dir).encode()) & 0xFFFFFF:06x}"

    @property
    def subnet(self) -> str:
        """A /24 per node: 10.<200+index>.<crc of the state dir>.0/24 (distinct across clusters)."""
        third = zlib.crc32(str(self.state_dir).encode()) % 250 + 1
        return f"10.{200 + self.index}.{third}.0/24"

    @property
    def gateway(self) -> str:
        """This machine's address on the node's pod network."""
        return self.subnet.rsplit(".", 1)[0] + ".1"

    # ----------------------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 180.0) -> None:
        missing = missing_host_tools()
        if missing:
            raise RealNodeError(f"real node: this machine lacks {', '.join(missing)}; {INSTALL_HINT}")
        if not self.kubelet.is_file():
            raise RealNodeError(f"real node: {self.kubelet} not found; run hack/build-binaries.sh")
        deadline = time.monotonic() + timeout
        self.stop()  # a previous run's leftovers
        for sub in ("containerd", "kubelet", "cni/net.d", "logs"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        try:
            self._make_cgroups()
            self._make_bridge()
            self._start_containerd(deadline)
            self._import_images()
            self._start_kubelet()
            self._wait("node Ready", self._ready, deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop everything of this node and remove what it left behind (idempotent)."""
        procs = dict((name, p) for name, p, _ in self._procs)
        self._terminate(procs.get("kubelet"))
        if procs.get("containerd") is not None and procs["containerd"].poll() is None:
            self._remove_containers()
        self._terminate(procs.get("containerd"))
        self._procs.clear()
        self._kill_shims()
        self._unmount_all()
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True, check=False)
        self._remove_cgroups()

    def leftovers(self) -> list[str]:
        """What of this node is still there (empty after :meth:`stop`): mounts, shims, bridge, cgroups."""
        found = [f"mount {m}" for m in self._mounts()]
        found += [f"shim pid {pid}" for pid in self._shims()]
        if Path(f"/sys/class/net/{self.bridge}").exists():
            found.append(f"bridge {self.bridge}")
        found += [f"cgroup {d}" for d in self._cgroup_dirs() if d.exists()]
        return found

    def check_alive(self) -> None:
        for name, popen, log in self._procs:
            if popen.poll() is not None:
                raise RealNodeError(f"{name} exited with code {popen.returncode}; see {log}:\n{_tail(log)}")

    def ctr(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run containerd's ``ctr`` against this node's containerd, in the ``k8s.io`` namespace."""
        return subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # ----------------------------------------------------------------------------- containerd
    def _spawn(self, name: str, argv: list[str]) -> None:
        log = self.state_dir / "logs" / f"{name}.log"
        with log.open("ab") as fh:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self._procs.append((name, popen, log))

    def containerd_config(self) -> str:
        d = self.state_dir
        pause = self.images["pause"].tag
        return f"""version = 2
root = "{d / "containerd/root"}"
state = "{d / "containerd/state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{d / "containerd-ttrpc.sock"}"
[debug]
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "containerd/opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  enable_unprivileged_ports = true
  # root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj (the sandbox's -998), so
  # containerd clamps it to its own value
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_PLUGIN_DIR}"
    conf_dir = "{d / "cni/net.d"}"
"""

    def cni_config(self) -> dict[str, Any]:
        return {
            "cniVersion": "1.0.0",
            "name": f"runnerd-{self.name}",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.subnet, "gateway": self.gateway}]],
                        "dataDir": str(self.state_dir / "cni/ipam"),
                    },
                }
            ],
        }

    def _start_containerd(self, deadline: float) -> None:
        config = self.state_dir / "containerd.toml"
        config.write_text(self.containerd_config())
        (self.state_dir / "cni/net.d/10-runnerd.conflist").write_text(json.dumps(self.cni_config(), indent=2))
        self._spawn("containerd", ["containerd", "--config", str(config)])
        self._wait("containerd", lambda: self.ctr("version", timeout=10).returncode == 0, deadline)

    def _import_images(self) -> None:
        for name, image in sorted(self.images.items()):
            if image.kind != "image":
                continue
            proc = self.ctr("images", "import", "--no-unpack=false", str(image.archive))
            if proc.returncode != 0:
                raise RealNodeError(
                    f"ctr images import {image.archive} ({name}) failed: {proc.stderr.strip()}"
                )
            if name == "dind":
                self.ctr("images", "rm", DIND_ALIAS)
                tagged = self.ctr("images", "tag", image.tag, DIND_ALIAS)
                if tagged.returncode != 0:
                    raise RealNodeError(
                        f"ctr images tag {image.tag} {DIND_ALIAS} failed: {tagged.stderr.strip()}"
                    )

    def _make_bridge(self) -> None:
        """The pod bridge, made before kubelet: its gateway address is the node's IP (kubelet refuses
        a loopback one) and where kubelet serves, so it must exist before the first pod."""
        prefix = self.subnet.rsplit("/", 1)[1]
        for cmd in (
            ["ip", "link", "add", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", f"{self.gateway}/{prefix}", "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
        ):
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RealNodeError(f"real node {self.name}: {' '.join(cmd)} failed: {proc.stderr.strip()}")

    # ----------------------------------------------------------------------------- kubelet
    def kubelet_config(self) -> dict[str, Any]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # hybrid cgroup layout = cgroup v1 for kubelet: refused from 1.35 on unless opted in
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.cgroup}",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": self.gateway,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "failSwapOn": False,
            "maxPods": self.max_pods,
            "serializeImagePulls": False,
            "resolvConf": "/etc/resolv.conf",
            "podLogsDir": str(self.state_dir / "pod-logs"),
            "registerWithTaints": [dict(REAL_NODE_TAINT)],
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "2%",
                "imagefs.available": "2%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "nodeStatusUpdateFrequency": "4s",
            "syncFrequency": "5s",
            "fileCheckFrequency": "5s",
            "shutdownGracePeriod": "0s",
            "localStorageCapacityIsolation": True,
        }

    def _start_kubelet(self) -> None:
        config = self.state_dir / "kubelet.yaml"
        config.write_text(json.dumps(self.kubelet_config(), indent=2))
        root = self.state_dir / "kubelet"
        self._spawn(
            "kubelet",
            [
                str(self.kubelet),
                f"--config={config}",
                f"--kubeconfig={self.cluster.kubeconfig}",
                f"--root-dir={root}",
                f"--cert-dir={root / 'pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.gateway}",
                f"--node-labels={REAL_NODE_LABEL}=true,type=real",
                "--v=1",
            ],
        )

    def _ready(self) -> bool:
        try:
            node = self.cluster.request("GET", f"/api/v1/nodes/{self.name}")
        except OSError:
            return False
        conditions = (node.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _wait(self, what: str, probe: Any, deadline: float) -> None:
        delay = 0.1
        while not probe():
            self.check_alive()
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {log}:\n{_tail(log, 40)}" for _, _, log in self._procs)
                raise RealNodeError(f"real node {self.name}: timed out waiting for {what}\n{logs}")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    # ----------------------------------------------------------------------------- cgroups
    def _cgroup_dirs(self) -> Iterator[Path]:
        if not CGROUP_V1_ROOT.is_dir():
            return
        for hierarchy in sorted(CGROUP_V1_ROOT.iterdir()):
            if (hierarchy / "cgroup.procs").exists():
                yield hierarchy / self.cgroup

    def _make_cgroups(self) -> None:
        """kubelet wants its cgroupRoot to exist in every hierarchy; cpuset needs cpus/mems set."""
        for d in self._cgroup_dirs():
            d.mkdir(exist_ok=True)
            if d.parent.name == "cpuset":
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (d / f).write_text((d.parent / f).read_text())

    def _remove_cgroups(self) -> None:
        for top in self._cgroup_dirs():
            if not top.is_dir():
                continue
            for d in sorted(
                (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            ):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()

    # ----------------------------------------------------------------------------- teardown
    def _terminate(self, popen: subprocess.Popen[bytes] | None, grace: float = 15.0) -> None:
        if popen is None or popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGTERM)
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(5)

    def _remove_containers(self) -> None:
        """Kill every task, then remove containers (sandboxes included) and their network namespaces."""
        netns: set[str] = set()
        ids = self.ctr("containers", "list", "--quiet", timeout=30).stdout.split()
        for cid in ids:
            info = self.ctr("containers", "info", cid, timeout=30)
            with contextlib.suppress(ValueError, KeyError, TypeError):
                for ns in json.loads(info.stdout)["Spec"]["linux"]["namespaces"]:
                    if ns.get("type") == "network" and ns.get("path"):
                        netns.add(ns["path"])
            self.ctr("tasks", "kill", "--signal", "SIGKILL", cid, timeout=30)
        for cid in ids:
            for _ in range(50):
                if self.ctr("tasks", "delete", "--force", cid, timeout=30).returncode != 0:
                    break
            self.ctr("containers", "delete", cid, timeout=30)
        for path in netns:
            subprocess.run(["umount", path], capture_output=True, check=False)
            with contextlib.suppress(OSError):
                Path(path).unlink()

    def _shims(self) -> list[int]:
        """containerd's shims of this node (they outlive containerd; their command line names its socket)."""
        marker = str(self.socket).encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmdline and marker in cmdline:
                pids.append(int(proc.name))
        return pids

    def _kill_shims(self) -> None:
        for pid in self._shims():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _mounts(self) -> list[str]:
        root = str(self.state_dir) + "/"
        try:
            lines = Path("/proc/self/mountinfo").read_text().splitlines()
        except OSError:
            return []
        return [line.split()[4] for line in lines if line.split()[4].startswith(root)]

    def _unmount_all(self) -> None:
        for point in reversed(self._mounts()):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def ensure_images() -> Path:
    """The image manifest, building what is missing (``hack/build-images.sh``; minutes when cold).
    ``RUNNERD_IMAGES_MANIFEST`` names an existing ``images.json`` instead."""
    override = os.environ.get("RUNNERD_IMAGES_MANIFEST")
    if override:
        return Path(override)
    proc = subprocess.run(["bash", str(BUILD_IMAGES)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RealNodeError(f"hack/build-images.sh failed (exit {proc.returncode}):\n{tail}")
    return Path(proc.stdout.strip().splitlines()[-1])


def start_nodes(cluster: Cluster, count: int) -> list[RealNode]:
    """Start ``count`` real nodes (``real-node-0``, …); stops those already started on failure."""
    missing = missing_host_tools()
    if missing:
        raise RealNodeError(f"real node: this machine lacks {', '.join(missing)}; {INSTALL_HINT}")
    images = read_manifest(ensure_images())
    kubelet = cluster.binaries.path("kubelet")
    nodes: list[RealNode] = []
    try:
        for i in range(count):
            node = RealNode(cluster, kubelet, images, name=f"real-node-{i}", index=i)
            nodes.append(node)
            node.start()
    except BaseException:
        for node in reversed(nodes):
            node.stop()
        raise
    return nodes
