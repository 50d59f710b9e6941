"""GPU runners: where the GPU request goes in a runner pod and what the Docker daemon gets.

The NVIDIA device plugin allocates GPUs to the *container* that lists ``nvidia.com/gpu`` in its
limits; the node's runtime (NVIDIA container toolkit, or containerd/CRI-O CDI) then injects the
device nodes, the driver libraries and ``nvidia-smi`` into that container only. A job's
``docker run`` is executed by dockerd, so the GPU must be allocated to the container that runs
dockerd: the ``docker`` sidecar, or the runner container itself with ``dockerdWithinRunnerContainer``.

In that container ``runnerd-gpu-setup`` (shipped in the runner images) runs before dockerd: it
finds the allocated devices, driver libraries and ``nvidia-smi`` and writes a CDI spec to
``/etc/cdi/nvidia.yaml``, so that ``docker run --gpus all`` and ``docker run --device
nvidia.com/gpu=all`` work in jobs without any manual ``--device``/``-v`` flags.

See docs/runner-pods.md, section "GPU runners".
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from runnerd.api import JSON
from runnerd.manifests.containers import add_env_defaults, env_var
from runnerd.reconcile.runnerpod import GPU_RESOURCE, quantity_value

DEFAULT_GPU_TOLERATION: Mapping[str, str] = {
    "key": GPU_RESOURCE,
    "operator": "Exists",
    "effect": "NoSchedule",
}

CDI_VOLUME = "runnerd-cdi"
CDI_SPEC_DIR = "/etc/cdi"
TOOLS_VOLUME = "runnerd-bin"
TOOLS_DIR = "/runnerd/bin"
SETUP_COMMAND = "runnerd-gpu-setup"
INSTALL_CONTAINER = "runnerd-gpu-install"

ENV_GPU = "RUNNERD_GPU"
ENV_GPU_COUNT = "RUNNERD_GPU_COUNT"
ENV_CDI_SPEC_DIR = "RUNNERD_CDI_SPEC_DIR"
ENV_DRIVER_CAPABILITIES = "NVIDIA_DRIVER_CAPABILITIES"

# Runs in the docker sidecar (docker:dind is Alpine: POSIX sh only). $0 is a label, "$@" the
# dockerd arguments. runnerd-gpu-setup writes the CDI spec and prints extra dockerd flags, if the
# daemon needs any to enable CDI (Docker < 28); dockerd-entrypoint.sh is the official image's
# entrypoint, which the command replaces.
DOCKERD_GPU_WRAPPER = f"""\
export PATH="{TOOLS_DIR}:$PATH"
extra=""
if [ -x "{TOOLS_DIR}/{SETUP_COMMAND}" ]; then
  if ! extra="$("{TOOLS_DIR}/{SETUP_COMMAND}")"; then
    echo "runnerd: {SETUP_COMMAND} failed; job containers will not get GPUs" >&2
    extra=""
  fi
else
  echo "runnerd: {SETUP_COMMAND} is not in the runner image; job containers will not get GPUs" >&2
fi
if command -v dockerd-entrypoint.sh >/dev/null 2>&1; then
  set -- dockerd-entrypoint.sh "$@"
fi
exec "$@" $extra
"""

# Runs in an init container from the runner image: copies the helper to the volume the docker
# sidecar mounts. A runner image without the helper is not an error (the pod still works; job
# containers just get no GPU), so this never fails the pod.
INSTALL_SCRIPT = f"""\
src="$(command -v {SETUP_COMMAND} 2>/dev/null || true)"
if [ -n "$src" ]; then
  cp "$src" "{TOOLS_DIR}/{SETUP_COMMAND}" && chmod 0755 "{TOOLS_DIR}/{SETUP_COMMAND}"
else
  echo "runnerd: {SETUP_COMMAND} not found in the runner image" >&2
fi
"""


@dataclass(frozen=True, kw_only=True)
class GpuOptions:
    """Controller-level GPU settings."""

    resource_name: str = GPU_RESOURCE
    """The extended resource a GPU runner requests (limits or requests)."""
    resource_prefixes: tuple[str, ...] = ("nvidia.com/mig-",)
    """Other resources that are GPUs too (MIG slices with the device plugin's mixed strategy)."""
    toleration: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_GPU_TOLERATION), hash=False)
    """Added to GPU pods unless one of the pod's tolerations already covers its key and effect."""
    runtime_class_name: str | None = None
    """Set on GPU pods that set no runtimeClassName themselves (e.g. "nvidia"); None: leave unset."""
    driver_capabilities: str = "compute,utility"
    """Default NVIDIA_DRIVER_CAPABILITIES of the container holding the GPU (user env wins)."""

    def is_gpu_resource(self, name: str) -> bool:
        return name == self.resource_name or any(name.startswith(p) for p in self.resource_prefixes)


def gpu_resources(container: Mapping[str, Any], gpu: GpuOptions) -> dict[str, Any]:
    """The GPU resources a container asks for (limits, else requests), with a positive quantity."""
    resources = container.get("resources") or {}
    out: dict[str, Any] = {}
    for key in ("requests", "limits"):  # limits last: they win
        for name, qty in (resources.get(key) or {}).items():
            if gpu.is_gpu_resource(name):
                value = quantity_value(qty)
                if value is not None and value > 0:
                    out[name] = qty
                else:
                    out.pop(name, None)
    return out


def gpu_count(container: Mapping[str, Any], gpu: GpuOptions) -> str:
    """How many GPU devices (or MIG slices) the container holds, as a string."""
    total = sum((quantity_value(q) or Decimal(0) for q in gpu_resources(container, gpu).values()), Decimal(0))
    return str(int(total)) if total == total.to_integral_value() else str(total)


def with_gpu_limits(container: Mapping[str, Any], gpu: GpuOptions) -> JSON:
    """GPUs given only in ``requests`` are copied to ``limits`` (the API server requires a limit
    for extended resources, which cannot be overcommitted)."""
    out = copy.deepcopy(dict(container))
    resources = out.get("resources") or {}
    requests = resources.get("requests") or {}
    limits = dict(resources.get("limits") or {})
    missing = {n: q for n, q in requests.items() if gpu.is_gpu_resource(n) and n not in limits}
    if missing:
        limits.update(missing)
        out["resources"] = {**resources, "limits": limits}
    return out


def move_gpus(src: Mapping[str, Any], dst: Mapping[str, Any], gpu: GpuOptions) -> tuple[JSON, JSON]:
    """Move every GPU resource of ``src`` (limits and requests) to ``dst``."""
    src_out, dst_out = copy.deepcopy(dict(src)), copy.deepcopy(dict(dst))
    src_res = dict(src_out.get("resources") or {})
    dst_res = dict(dst_out.get("resources") or {})
    for key in ("limits", "requests"):
        moving = {n: q for n, q in (src_res.get(key) or {}).items() if gpu.is_gpu_resource(n)}
        if not moving:
            continue
        kept = {n: q for n, q in src_res[key].items() if n not in moving}
        if kept:
            src_res[key] = kept
        else:
            del src_res[key]
        dst_res[key] = {**(dst_res.get(key) or {}), **moving}
    if src_res:
        src_out["resources"] = src_res
    else:
        src_out.pop("resources", None)
    dst_out["resources"] = dst_res
    return src_out, dst_out


def tolerates(tolerations: Sequence[Mapping[str, Any]], wanted: Mapping[str, Any]) -> bool:
    """Whether one of ``tolerations`` already covers the key and effect of ``wanted``.

    An empty key with operator Exists tolerates every taint; an empty effect matches every effect.
    A toleration for the same key with any operator/value counts: the user knows their taint.
    """
    key, effect = wanted.get("key") or "", wanted.get("effect") or ""
    for t in tolerations:
        t_key, t_effect = t.get("key") or "", t.get("effect") or ""
        key_ok = t_key == key or (not t_key and t.get("operator") == "Exists")
        effect_ok = not t_effect or not effect or t_effect == effect
        if key_ok and effect_ok:
            return True
    return False


def runner_gpu_env(gpu: GpuOptions) -> list[JSON]:
    """Env defaults for a container that holds a GPU but runs no dockerd."""
    return [env_var(ENV_DRIVER_CAPABILITIES, gpu.driver_capabilities)]


def dockerd_gpu_env(container: Mapping[str, Any], gpu: GpuOptions) -> list[JSON]:
    """Env defaults for the container that holds the GPU and runs dockerd."""
    return [
        env_var(ENV_GPU, "1"),
        env_var(ENV_GPU_COUNT, gpu_count(container, gpu)),
        env_var(ENV_CDI_SPEC_DIR, CDI_SPEC_DIR),
        env_var(ENV_DRIVER_CAPABILITIES, gpu.driver_capabilities),
    ]


def setup_dockerd_gpu(container: Mapping[str, Any], gpu: GpuOptions, *, wrap: bool) -> JSON:
    """The dockerd container with its GPU setup: env defaults and the CDI spec volume; with
    ``wrap`` (the docker sidecar, when the user set no command of their own) also the helper
    volume and the command that runs runnerd-gpu-setup before dockerd."""
    out = copy.deepcopy(dict(container))
    out["env"] = add_env_defaults(out.get("env") or [], dockerd_gpu_env(out, gpu))
    mounts = [{"name": CDI_VOLUME, "mountPath": CDI_SPEC_DIR}]
    if wrap:
        mounts.append({"name": TOOLS_VOLUME, "mountPath": TOOLS_DIR})
        out["command"] = ["/bin/sh", "-c", DOCKERD_GPU_WRAPPER, "runnerd-dockerd"]
    existing = out.get("volumeMounts") or []
    taken = {m.get("mountPath") for m in existing}
    out["volumeMounts"] = [*existing, *(m for m in mounts if m["mountPath"] not in taken)]
    return out


def add_gpu_volumes(volumes: Sequence[Mapping[str, Any]], *, wrap: bool) -> list[JSON]:
    """``volumes`` plus the GPU setup's emptyDirs (a volume of the same name already there wins)."""
    wanted: list[JSON] = [{"name": CDI_VOLUME, "emptyDir": {}}]
    if wrap:
        wanted.append({"name": TOOLS_VOLUME, "emptyDir": {}})
    names = {v.get("name") for v in volumes}
    return [*(copy.deepcopy(dict(v)) for v in volumes), *(v for v in wanted if v["name"] not in names)]


def install_init_container(runner: Mapping[str, Any]) -> JSON:
    """Init container (runner image) that copies runnerd-gpu-setup for the docker sidecar."""
    out: JSON = {
        "name": INSTALL_CONTAINER,
        "image": runner.get("image"),
        "command": ["/bin/sh", "-c", INSTALL_SCRIPT],
        "volumeMounts": [{"name": TOOLS_VOLUME, "mountPath": TOOLS_DIR}],
    }
    if runner.get("imagePullPolicy"):
        out["imagePullPolicy"] = runner["imagePullPolicy"]
    return out


def gpu_runner(runner: Mapping[str, Any], gpu: GpuOptions) -> JSON:
    """A runner container that keeps its GPUs (no dockerd beside it): limits for GPUs given only in
    ``requests``, and :func:`runner_gpu_env` defaults when it holds one."""
    out = with_gpu_limits(runner, gpu)
    if gpu_resources(out, gpu):
        out["env"] = add_env_defaults(out.get("env") or [], runner_gpu_env(gpu))
    return out


def dind_gpu(
    runner: Mapping[str, Any], dockerd: Mapping[str, Any], gpu: GpuOptions
) -> tuple[JSON, JSON, bool | None]:
    """A runner container and the Docker daemon's container beside it (the legacy ``docker``
    sidecar, a scale set's ``dind``), with the runner's GPUs moved to the daemon unless the daemon
    asks for its own, and the daemon set up for CDI.

    Returns ``(runner, dockerd, wrap)``: ``wrap`` is None when the daemon holds no GPU (nothing was
    set up), else whether its command became the wrapper that runs runnerd-gpu-setup (not when the
    user gave the daemon a command of their own): then the pod also needs
    :func:`add_gpu_volumes` and, with ``wrap``, :func:`add_install_container`.
    """
    runner_out, dockerd_out = with_gpu_limits(runner, gpu), with_gpu_limits(dockerd, gpu)
    if gpu_resources(runner_out, gpu) and not gpu_resources(dockerd_out, gpu):
        runner_out, dockerd_out = move_gpus(runner_out, dockerd_out, gpu)
    wrap: bool | None = None
    if gpu_resources(dockerd_out, gpu):
        wrap = not dockerd_out.get("command")
        dockerd_out = setup_dockerd_gpu(dockerd_out, gpu, wrap=wrap)
    return gpu_runner(runner_out, gpu), dockerd_out, wrap  # the user may have given both GPUs


def add_install_container(
    init_containers: Sequence[Mapping[str, Any]], runner: Mapping[str, Any]
) -> list[JSON]:
    """``init_containers`` with :func:`install_init_container` first (before a native ``dind``
    sidecar starts). An init container of that name already there is merged over ours (its fields
    win: e.g. an ``image`` that has runnerd-gpu-setup while the runner's image has not) and moved first."""
    user = next((ic for ic in init_containers if ic.get("name") == INSTALL_CONTAINER), {})
    first: JSON = {**install_init_container(runner), **copy.deepcopy(dict(user))}
    rest = [copy.deepcopy(dict(ic)) for ic in init_containers if ic.get("name") != INSTALL_CONTAINER]
    return [first, *rest]


def uses_gpu(pod_spec: Mapping[str, Any], gpu: GpuOptions) -> bool:
    """Whether a container or init container of the pod asks for a GPU."""
    containers = [*(pod_spec.get("containers") or ()), *(pod_spec.get("initContainers") or ())]
    return any(gpu_resources(ct, gpu) for ct in containers)


def gpu_pod_fields(pod_spec: Mapping[str, Any], gpu: GpuOptions) -> JSON:
    """A GPU pod's pod-level fields: the GPU toleration unless one already covers it, and
    ``gpu.runtime_class_name`` unless the pod sets a runtime class; other pods unchanged."""
    out = copy.deepcopy(dict(pod_spec))
    if not uses_gpu(out, gpu):
        return out
    tolerations = out.get("tolerations") or []
    if not tolerates(tolerations, gpu.toleration):
        out["tolerations"] = [*tolerations, dict(gpu.toleration)]
    if gpu.runtime_class_name and not out.get("runtimeClassName"):
        out["runtimeClassName"] = gpu.runtime_class_name
    return out
