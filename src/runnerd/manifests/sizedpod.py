"""A size request applied to a pool's runner template: the spec a sized job's runner pod is built from.

The sizing is applied to the :class:`~runnerd.api.RunnerSpec` *before* the existing pod
builder (:func:`runnerd.manifests.pod.build_runner_pod`) runs, not patched into the finished pod:
the builder decides which container holds the GPU (the docker sidecar, or the runner with
``dockerdWithinRunnerContainer``), copies GPU requests to limits, adds the CDI setup, the
``nvidia.com/gpu`` toleration and the runtime class. Sizing the input keeps all of that true for
sized pods without touching the builder.

What changes (docs/gpu-sizing.md, "From labels to a pod"), and nothing else:

* ``labels``: exactly the job's labels (:func:`runnerd.reconcile.sizing.runner_labels_for_job`);
* ``cpu=``/``mem=``: requests **and** limits of the runner container (``spec.resources`` and a
  ``runner`` entry of ``spec.containers``, whichever the builder will use);
* ``gpu=``/``mig=``: every GPU resource (``nvidia.com/gpu``, ``nvidia.com/mig-*``) of the template
  is removed from every container and ``dockerdContainerResources``, and the asked one is set on
  the runner container in requests and limits (the builder moves it to dockerd's container);
* ``gpu-type=``: ``nodeSelector[<product label>] = <node value>`` plus the product's tolerations.

A dimension the job does not name keeps the template's value. Guarantees: pure; the input spec is
never mutated; an empty size returns an equal copy with the labels unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from runnerd.api import JSON, RunnerSpec
from runnerd.manifests import gpu as g
from runnerd.manifests.pod import PodOptions, build_runner_pod
from runnerd.reconcile.credentials import JitConfig
from runnerd.reconcile.runnerpod import RUNNER_CONTAINER
from runnerd.reconcile.sizing import PoolSizing, SizeRequest, runner_labels_for_job

MIG_RESOURCE_PREFIX = "nvidia.com/mig-"


def mig_resource(profile: str) -> str:
    """The extended resource the NVIDIA device plugin advertises for a MIG profile (``mixed``
    strategy): ``nvidia.com/mig-<profile>`` with ``+`` turned into ``.``, because a resource name
    cannot hold a ``+`` (``1g.10gb+me`` is ``nvidia.com/mig-1g.10gb.me``)."""
    return MIG_RESOURCE_PREFIX + profile.replace("+", ".")


def size_resources(size: SizeRequest, gpu: g.GpuOptions) -> dict[str, str]:
    """The resources a size sets (the same map goes into requests and limits)."""
    out: dict[str, str] = {}
    if size.cpu:
        out["cpu"] = size.cpu
    if size.memory:
        out["memory"] = size.memory
    if size.mig_profile:
        out[mig_resource(size.mig_profile)] = "1"
    elif size.gpus:
        out[gpu.resource_name] = str(size.gpus)
    return out


def _without_gpus(resources: Mapping[str, Any] | None, gpu: g.GpuOptions) -> JSON:
    out: JSON = copy.deepcopy(dict(resources or {}))
    for key in ("requests", "limits"):
        kept = {n: q for n, q in (out.get(key) or {}).items() if not gpu.is_gpu_resource(n)}
        if kept:
            out[key] = kept
        else:
            out.pop(key, None)
    return out


def _overlay(
    resources: Mapping[str, Any] | None, wanted: Mapping[str, str], drop_gpus: bool, gpu: g.GpuOptions
) -> JSON:
    out = _without_gpus(resources, gpu) if drop_gpus else copy.deepcopy(dict(resources or {}))
    if wanted:
        for key in ("requests", "limits"):
            out[key] = {**(out.get(key) or {}), **wanted}
    return out


def _with_tolerations(
    existing: Sequence[Mapping[str, Any]], extra: Sequence[Mapping[str, Any]]
) -> list[JSON]:
    out = [copy.deepcopy(dict(t)) for t in existing]
    for t in extra:
        if not g.tolerates(out, t):
            out.append(copy.deepcopy(dict(t)))
    return out


def sized_runner_spec(
    spec: RunnerSpec,
    job_labels: Sequence[str],
    size: SizeRequest,
    pool: PoolSizing,
    gpu: g.GpuOptions | None = None,
) -> RunnerSpec:
    """The pool template ``spec`` sized for one job (see the module docstring)."""
    gpu = gpu or g.GpuOptions()
    out = RunnerSpec.from_dict(spec.to_dict())
    if size.is_empty:
        return out
    out.labels = runner_labels_for_job(job_labels)
    wanted = size_resources(size, gpu)
    drop_gpus = bool(size.gpus or size.mig_profile)
    out.resources = _overlay(out.resources, wanted, drop_gpus, gpu)
    containers: list[JSON] = []
    for container in out.containers:
        ct = copy.deepcopy(container)
        name = ct.get("name")
        user_resources = ct.get("resources") or {}
        if name == RUNNER_CONTAINER and (user_resources.get("requests") or user_resources.get("limits")):
            ct["resources"] = _overlay(user_resources, wanted, drop_gpus, gpu)
        elif drop_gpus and user_resources:
            ct["resources"] = _without_gpus(user_resources, gpu)
        containers.append(ct)
    out.containers = containers
    if drop_gpus:
        out.dockerd_container_resources = _without_gpus(out.dockerd_container_resources, gpu)
    if size.product is not None:
        out.node_selector = {**out.node_selector, pool.product_label: size.product.node_label_value}
        out.tolerations = _with_tolerations(out.tolerations, size.product.tolerations)
    return out


def unsupported_reason(spec: RunnerSpec, size: SizeRequest) -> str | None:
    """Why this pool cannot run a job of ``size`` at all (``None``: it can).

    With ``containerMode: kubernetes`` a job's containers run in pods the runner container hooks
    create from their own template, so a GPU on the runner pod would reach no job step.
    """
    if spec.is_kubernetes_container_mode and (size.gpus or size.mig_profile):
        return (
            f"labels {list(size.labels)} ask for GPUs, but this pool uses containerMode kubernetes: "
            "job pods get their GPUs from the container hooks' pod template, which runnerd does not size"
        )
    return None


PLACEHOLDER_REGISTRATION = JitConfig(encoded_jit_config="", runner_id=0)
"""Stands in for a registration where only the pod's shape matters (no credential goes anywhere)."""


def sized_pod_spec(name: str, namespace: str, spec: RunnerSpec, options: PodOptions) -> JSON:
    """The ``spec`` of the pod the Runner controller will build for a (sized) Runner, built by the same
    builder, so admission counts exactly what the scheduler will (``RunnerPodError`` if none can be
    built). The registration does not change the pod's resources, selector or tolerations."""
    pod = build_runner_pod(name, namespace, spec, PLACEHOLDER_REGISTRATION, options)
    out: JSON = pod["spec"]
    return out
