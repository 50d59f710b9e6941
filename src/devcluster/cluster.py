"""A real local Kubernetes control plane: etcd, kube-apiserver (TLS, RBAC, service-account signing),
kube-scheduler, kube-controller-manager and kwok (simulated nodes, GPU nodes included), all on
loopback ports picked free at start.

Nothing here is a fake: the binaries are the upstream ones built from Go modules
(:mod:`devcluster.binaries`). kwok only plays the kubelet: it marks nodes Ready and pods Running.

Ports come from :func:`devcluster.ports.free_port` (outside the ephemeral range, never handed out
twice). A component that still loses its port (another program listening there) is started again
on a new port, up to :data:`~devcluster.ports.BIND_ATTEMPTS` times, and its dependents only start
once it serves; a component that fails otherwise fails the start with one line naming the
component, its exit code and the log line that says why.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from devcluster import pki
from devcluster.binaries import Binaries
from devcluster.nodes import KWOK_NODE_ANNOTATION, node_manifests
from devcluster.ports import BIND_ATTEMPTS, bind_failure, reason_line
from devcluster.ports import free_port as free_port  # re-exported: tests and benchmarks pick with it
from devcluster.ports import release_port as release_port
from devcluster.process import Process, spawn
from devcluster.process import die_with_parent as die_with_parent

_logger = logging.getLogger(__name__)

EXIT_CODE_ANNOTATION = "devcluster.runnerd.dev/exit-code"
EXIT_CONTAINER_ANNOTATION = "devcluster.runnerd.dev/exit-container"


class ClusterError(RuntimeError):
    """The control plane failed to start or to answer; the message names the component and its log."""


MIG_PROFILE = re.compile(r"^[1-9][0-9]?g\.[1-9][0-9]{0,3}gb(\+me)?$")
"""A MIG profile as the device plugin names its resource ``nvidia.com/mig-<profile>`` (``1g.10gb``)."""


@dataclass(frozen=True)
class GpuShape:
    """``nodes`` GPU nodes, each with ``gpus`` whole devices of ``product`` and, per node, the MIG
    slices ``mig`` (profile, count), as the device plugin's ``mixed`` strategy advertises them."""

    product: str = "NVIDIA-H100-80GB-HBM3"
    gpus: int = 8
    nodes: int = 2
    mig: tuple[tuple[str, int], ...] = ()

    @classmethod
    def parse(cls, text: str) -> GpuShape:
        """``PRODUCT:GPUS_PER_NODE:NODES[:MIG]``, e.g. ``NVIDIA-A100-SXM4-40GB:4:1``, or with MIG
        slices per node ``NVIDIA-A100-SXM4-80GB:0:1:1g.10gb=7`` (``PROFILE=COUNT``, comma-separated)."""
        parts = text.split(":")
        if len(parts) not in (3, 4) or not parts[0]:
            raise ValueError(f"GPU shape {text!r} is not PRODUCT:GPUS_PER_NODE:NODES[:MIG]")
        try:
            gpus, nodes = int(parts[1]), int(parts[2])
        except ValueError:
            raise ValueError(f"GPU shape {text!r}: GPUS_PER_NODE and NODES must be integers") from None
        mig = _parse_mig(text, parts[3]) if len(parts) == 4 else ()
        if (gpus < 1 and not mig) or gpus < 0 or nodes < 0:
            raise ValueError(
                f"GPU shape {text!r}: need at least 1 GPU per node (0 with MIG slices) and 0 or more nodes"
            )
        return cls(parts[0], gpus, nodes, mig)


def _parse_mig(text: str, spec: str) -> tuple[tuple[str, int], ...]:
    out: dict[str, int] = {}
    for item in spec.split(","):
        profile, _, count = item.partition("=")
        if not MIG_PROFILE.fullmatch(profile) or not count.isdigit() or int(count) < 1:
            raise ValueError(
                f"GPU shape {text!r}: MIG slices are PROFILE=COUNT,... (e.g. 1g.10gb=7), got {item!r}"
            )
        if profile in out:
            raise ValueError(f"GPU shape {text!r}: MIG profile {profile} is listed twice")
        out[profile] = int(count)
    return tuple(out.items())


MIXED_GPU_SHAPES: tuple[GpuShape, ...] = (
    GpuShape("NVIDIA-H100-80GB-HBM3", 8, 2),
    GpuShape("NVIDIA-A100-SXM4-80GB", 4, 1),
    GpuShape("NVIDIA-A100-SXM4-80GB", 0, 1, (("1g.10gb", 7),)),
)
"""A mixed fleet for GPU sizing tests (docs/gpu-sizing.md): 2 x 8 H100 for ``gpu=N``/``gpu-type=h100``,
one 4 x A100 node for ``gpu-type=a100``, one A100 split into seven ``1g.10gb`` slices for ``mig=1g.10gb``.
``runnerd-dev cluster up --gpu-shape ...`` with the same three shapes makes it from the command line."""


@dataclass(frozen=True)
class ClusterConfig:
    state_dir: Path
    cpu_nodes: int = 2
    gpu_shapes: tuple[GpuShape, ...] = (GpuShape(),)
    max_pods: int = 110
    node_cpu: str = "16"
    node_memory: str = "64Gi"
    gpu_node_cpu: str = "96"
    gpu_node_memory: str = "1Ti"
    real_nodes: int = 0
    """kubelet + containerd nodes beside the kwok ones (:mod:`devcluster.realnode`)."""


COMPONENT_PORTS: dict[str, tuple[str, ...]] = {
    "etcd": ("etcd-client", "etcd-peer"),
    "kube-apiserver": ("apiserver",),
    "kube-scheduler": ("scheduler",),
    "kube-controller-manager": ("controller-manager",),
    "kwok": ("kwok",),
}
"""The ports (keys of :attr:`Cluster.ports`) each component listens on."""


@dataclass
class Cluster:
    """One control plane. ``start()`` blocks until every component is up and nodes are Ready."""

    config: ClusterConfig
    binaries: Binaries
    server: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    _procs: list[Process] = field(default_factory=list)
    _pki: pki.Pki | None = None
    real_nodes: list[Any] = field(default_factory=list)

    # ----------------------------------------------------------------------------- paths
    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def env(self) -> dict[str, str]:
        """Environment for a subprocess that should talk to this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def pids(self) -> dict[str, int]:
        return {p.name: p.popen.pid for p in self._procs}

    # ----------------------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 90.0) -> None:
        """Start every component and wait until it serves; raises :class:`ClusterError` (one line)."""
        deadline = time.monotonic() + timeout
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        self._pki = pki.ensure(self.state_dir / "pki")
        for ports in COMPONENT_PORTS.values():
            for port in ports:
                self.ports[port] = free_port()
        try:
            self._start_etcd()
            self._wait("etcd", lambda: self._healthy(self._etcd_url("/health")), deadline, timeout)
            self._start_apiserver()
            self._wait(
                "kube-apiserver",
                lambda: self._healthy(f"{self.server}/readyz", verify=True),
                deadline,
                timeout,
            )
            self._start_scheduler()
            self._start_controller_manager()
            self._start_kwok()
            self._create_nodes()
            for component in ("scheduler", "controller-manager"):
                self._wait(component, self._serves(component), deadline, timeout)
            self._wait("kwok nodes Ready", self._nodes_ready, deadline, timeout)
            self._wait("default service account", self._default_sa_exists, deadline, timeout)
            if self.config.real_nodes:
                from devcluster import realnode  # only when asked for (root, containerd)

                self.real_nodes = realnode.start_nodes(self, self.config.real_nodes)
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 10.0) -> None:
        """Stop every component (newest first), SIGKILL after ``grace`` seconds. Idempotent."""
        while self.real_nodes:
            self.real_nodes.pop().stop()
        for proc in reversed(self._procs):
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGTERM)
        end = time.monotonic() + grace
        for proc in reversed(self._procs):
            remaining = max(0.1, end - time.monotonic())
            try:
                proc.popen.wait(remaining)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(5)
        self._procs.clear()
        for port in self.ports.values():
            release_port(port)

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def peak_rss_bytes(self) -> dict[str, int]:
        """Peak resident memory (VmHWM) of each running component."""
        out: dict[str, int] = {}
        for proc in self._procs:
            try:
                status = Path(f"/proc/{proc.popen.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    out[proc.name] = int(line.split()[1]) * 1024
        return out

    def check_alive(self) -> None:
        """Raises :class:`ClusterError` (one line) if a component has exited."""
        for node in self.real_nodes:
            node.check_alive()
        for proc in self._procs:
            if proc.popen.poll() is not None:
                raise ClusterError(self._exit_message(proc))

    def _exit_message(self, proc: Process) -> str:
        return (
            f"{proc.name} exited with code {proc.popen.returncode}: "
            f"{reason_line(proc.output())} (log: {proc.log})"
        )

    def _revive(self) -> None:
        """Start again, on new ports, every component that exited because its port was taken."""
        for proc in list(self._procs):
            if proc.popen.poll() is None:
                continue
            output = proc.output()
            if not bind_failure(output):
                raise ClusterError(self._exit_message(proc))
            if proc.attempt >= BIND_ATTEMPTS:
                raise ClusterError(
                    f"{proc.name} could not bind a port in {proc.attempt} attempts: "
                    f"{reason_line(output)} (log: {proc.log})"
                )
            lost = {key: self.ports[key] for key in COMPONENT_PORTS[proc.name]}
            for key in lost:
                self.ports[key] = free_port()
            _logger.warning(
                "%s lost its port (%s); starting it again on %s",
                proc.name,
                reason_line(output),
                ", ".join(f"{key} {self.ports[key]}" for key in lost),
            )
            self._procs.remove(proc)
            self._starters()[proc.name]()
            self._procs[-1].attempt = proc.attempt + 1

    def _starters(self) -> dict[str, Callable[[], None]]:
        return {
            "etcd": self._start_etcd,
            "kube-apiserver": self._start_apiserver,
            "kube-scheduler": self._start_scheduler,
            "kube-controller-manager": self._start_controller_manager,
            "kwok": self._start_kwok,
        }

    # ----------------------------------------------------------------------------- clients
    def request(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
        """An admin request to the API server; returns the decoded JSON body."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.server}{path}", data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type or "application/json")
        with urllib.request.urlopen(req, context=self.admin_ssl(), timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster."""
        return self._tool(self.binaries.kubectl, self.env, args, check=check, input=input, timeout=timeout)

    def wait_established(self, crds: Sequence[str] = (), within: float = 60.0) -> None:
        """``kubectl wait --for=condition=Established`` on the named CRDs (all without names), asked
        again while a just-created CRD has no ``status.conditions`` yet: kubectl then fails at once
        ("accessor error: <nil>") instead of waiting."""
        targets = [f"crd/{name}" for name in crds] or ["crd", "--all"]
        deadline = time.monotonic() + within
        while True:
            left = max(deadline - time.monotonic(), 1.0)
            proc = self.kubectl(
                "wait", "--for=condition=Established", f"--timeout={left:.0f}s", *targets,
                check=False, timeout=left + 10,
            )  # fmt: skip
            if proc.returncode == 0:
                return
            if "accessor error" not in proc.stderr or time.monotonic() >= deadline:
                raise ClusterError(f"CRDs not Established within {within:.0f}s: {proc.stderr.strip()}")

    def helm(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the real helm against this cluster."""
        env = {**self.env, "HELM_CACHE_HOME": str(self.state_dir / "helm" / "cache")}
        env["HELM_CONFIG_HOME"] = str(self.state_dir / "helm" / "config")
        env["HELM_DATA_HOME"] = str(self.state_dir / "helm" / "data")
        return self._tool(self.binaries.path("helm"), env, args, check=check, timeout=timeout)

    def _tool(
        self,
        binary: Path,
        env: dict[str, str],
        args: Sequence[str],
        *,
        check: bool,
        timeout: float,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(binary), *args],
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise ClusterError(
                f"{binary.name} {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc

    def compact_etcd(self) -> int:
        """Compact etcd's history up to now; watches from older resourceVersions then get 410 Gone
        (immediately for uncached resources such as podtemplates). Returns the compacted revision."""
        base = self._etcd_url()
        status = _post_json(f"{base}/v3/maintenance/status", {})
        revision = int(status["header"]["revision"])
        _post_json(f"{base}/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    # ----------------------------------------------------------------------------- internals
    def _spawn(self, name: str, argv: Sequence[str]) -> None:
        self._procs.append(spawn(name, argv, self.log_dir / f"{name}.log"))

    def _etcd_url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports['etcd-client']}{path}"

    def _serves(self, component: str) -> Callable[[], bool]:
        return lambda: self._healthy(self._local(component, "/healthz"))

    def _local(self, component: str, path: str) -> str:
        return f"https://127.0.0.1:{self.ports[component]}{path}"

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.ports['etcd-client']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.path("etcd")),
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
                "--quota-backend-bytes=4294967296",
            ],
        )

    def _start_apiserver(self) -> None:
        assert self._pki is not None
        p = self._pki
        self.server = f"https://127.0.0.1:{self.ports['apiserver']}"
        self._write_kubeconfig()
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.path("kube-apiserver")),
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd-client']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports['apiserver']}",
                f"--cert-dir={self.state_dir / 'apiserver-certs'}",
                f"--tls-cert-file={p.apiserver_crt}",
                f"--tls-private-key-file={p.apiserver_key}",
                f"--client-ca-file={p.ca_crt}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p.sa_pub}",
                f"--service-account-signing-key-file={p.sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                "--kubelet-preferred-address-types=InternalIP,Hostname",  # the real node (realnode.py)
                "--profiling=false",
                # podtemplates bypass the watch cache, so tests can make an old resourceVersion
                # expire on demand (compact_etcd) and exercise a relist after 410 Gone.
                "--watch-cache-sizes=podtemplates#0",
                "--v=1",
            ],
        )

    def _write_kubeconfig(self) -> None:
        assert self._pki is not None
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "runnerd-dev",
                    "cluster": {"server": self.server, "certificate-authority": str(self._pki.ca_crt)},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(self._pki.admin_crt),
                        "client-key": str(self._pki.admin_key),
                    },
                }
            ],
            "contexts": [{"name": "runnerd-dev", "context": {"cluster": "runnerd-dev", "user": "admin"}}],
            "current-context": "runnerd-dev",
        }
        self.kubeconfig.write_text(json.dumps(cfg, indent=2))
        self.kubeconfig.chmod(0o600)

    def _component_args(self, component: str) -> list[str]:
        kc = str(self.kubeconfig)
        return [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports[component]}",
            f"--cert-dir={self.state_dir / (component + '-certs')}",
            "--v=1",
        ]

    def _start_scheduler(self) -> None:
        self._spawn(
            "kube-scheduler",
            [str(self.binaries.path("kube-scheduler")), *self._component_args("scheduler")],
        )

    def _start_controller_manager(self) -> None:
        assert self._pki is not None
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.path("kube-controller-manager")),
                *self._component_args("controller-manager"),
                f"--service-account-private-key-file={self._pki.sa_key}",
                f"--root-ca-file={self._pki.ca_crt}",
                "--use-service-account-credentials=false",
                # no cloud, no node IPAM; kwok assigns pod IPs itself
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
                "--concurrent-gc-syncs=20",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
            ],
        )

    def _start_kwok(self) -> None:
        stages = self.state_dir / "kwok-stages.yaml"
        ours = resources.files("devcluster").joinpath("stages/container-exit.yaml").read_text()
        stages.write_text(self.binaries.kwok_stages.read_text() + "\n---\n" + ours)
        self._spawn(
            "kwok",
            [
                str(self.binaries.path("kwok")),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={stages}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                "--node-lease-duration-seconds=40",
                "--cidr=10.64.0.0/12",
                "--node-ip=10.63.0.1",
                f"--server-address=127.0.0.1:{self.ports['kwok']}",
            ],
        )

    def _create_nodes(self) -> None:
        """Create the nodes; on a kept state (``up`` after ``down``) update those that exist and
        delete simulated nodes the configuration no longer has."""
        wanted = {m["metadata"]["name"]: m for m in node_manifests(self.config)}
        selector = urllib.parse.quote("type=kwok")
        existing = self.request("GET", f"/api/v1/nodes?labelSelector={selector}")["items"]
        for node in existing:
            name = node["metadata"]["name"]
            if name not in wanted:
                self.request("DELETE", f"/api/v1/nodes/{name}")
        have = {node["metadata"]["name"] for node in existing}
        merge = "application/merge-patch+json"
        for name, manifest in wanted.items():
            if name not in have:
                self.request("POST", "/api/v1/nodes", manifest)
                continue
            meta = {k: manifest["metadata"][k] for k in ("labels", "annotations")}
            self.request(
                "PATCH", f"/api/v1/nodes/{name}", {"metadata": meta, "spec": manifest["spec"]}, merge
            )
            self.request("PATCH", f"/api/v1/nodes/{name}/status", {"status": manifest["status"]}, merge)

    def _nodes_ready(self) -> bool:
        nodes = self.request("GET", "/api/v1/nodes")["items"]
        want = len(node_manifests(self.config))
        ready = 0
        for n in nodes:
            for cond in n.get("status", {}).get("conditions", []) or []:
                if cond.get("type") == "Ready" and cond.get("status") == "True":
                    ready += 1
        return ready >= want

    def _default_sa_exists(self) -> bool:
        try:
            self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return False
            raise
        return True

    def admin_ssl(self) -> ssl.SSLContext:
        assert self._pki is not None
        ctx = ssl.create_default_context(cafile=str(self._pki.ca_crt))
        ctx.load_cert_chain(str(self._pki.admin_crt), str(self._pki.admin_key))
        return ctx

    def _healthy(self, url: str, verify: bool = False) -> bool:
        if verify:
            ctx = self.admin_ssl()
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _wait(self, what: str, probe: Callable[[], bool], deadline: float, timeout: float) -> None:
        delay = 0.05
        while True:
            self._revive()
            if probe():
                return
            if time.monotonic() > deadline:
                last = "; ".join(f"{p.name}: {reason_line(p.output())}" for p in self._procs)
                raise ClusterError(
                    f"timed out after {timeout:g}s waiting for {what} ({last}; logs: {self.log_dir})"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _post_json(url: str, body: Any) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@contextlib.contextmanager
def running(config: ClusterConfig, binaries: Binaries) -> Iterator[Cluster]:
    cluster = Cluster(config, binaries)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(config.state_dir / "etcd", ignore_errors=True)
