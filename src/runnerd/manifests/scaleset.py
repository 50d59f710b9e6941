"""The objects the scale-set controllers create (pure builders, no I/O).

Names, labels and annotations are ARC's (``../shared/reference/scale-set-protocol.md`` §12.5):

* an AutoscalingRunnerSet owns one EphemeralRunnerSet per runner-spec hash, named ``<ARS>-<suffix>``,
  and one AutoscalingListener ``<ARS>-<hash8>-listener`` in the controller's namespace;
* an EphemeralRunnerSet owns its EphemeralRunners, ``<ERS>-runner-<suffix>``, each annotated with the
  ``patchID`` it was created for and carrying both EphemeralRunner finalizers from the start;
* an EphemeralRunner owns its JIT Secret and its pod, both named as the EphemeralRunner; the pod's
  ``runner`` container reads ``ACTIONS_RUNNER_INPUT_JITCONFIG`` from the Secret (the credential is
  never in the pod spec);
* a runner pod that asks for GPUs gets the legacy mode's GPU treatment (:mod:`runnerd.manifests.gpu`):
  with ``containerMode: dind`` the runner's GPUs move to the ``dind`` container (a native sidecar or
  a plain one) and runnerd-gpu-setup runs there before dockerd; the GPU toleration and runtime class
  are added as for legacy runner pods.

Suffixes are chosen by the caller (so its expectations know the name before the create).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from runnerd import __version__
from runnerd.api import JSON
from runnerd.api.scaleset import constants as c
from runnerd.manifests import gpu as g
from runnerd.reconcile.credentials import owner_reference
from runnerd.reconcile.hashing import SUFFIX_ALPHABET, template_hash

ENV_JIT_CONFIG = "ACTIONS_RUNNER_INPUT_JITCONFIG"
ENV_USER_AGENT = "GITHUB_ACTIONS_RUNNER_EXTRA_USER_AGENT"
LABEL_EPHEMERAL_RUNNER = "actions-ephemeral-runner"
LABEL_RUNNER_POD = "runner-pod"
"""Kubernetes container mode: the hooks label a job's pods and Secrets with their runner's name."""
ENV_CONTAINER_HOOKS = "ACTIONS_RUNNER_CONTAINER_HOOKS"
DIND = "dind"
"""The Docker daemon's container of ``containerMode: dind`` (ARC's name; an init container with
``restartPolicy: Always`` on Kubernetes >= 1.29, else a container)."""
SECRET_KEY_JIT = "jitToken"
SECRET_KEY_RUNNER_NAME = "runnerName"
SECRET_KEY_RUNNER_ID = "runnerId"
SECRET_KEY_SCALE_SET_ID = "scaleSetId"


def owner(obj: Mapping[str, Any]) -> JSON:
    """A controller ownerReference to ``obj`` (its apiVersion and kind as stored)."""
    return owner_reference(obj, c.API_VERSION, obj["kind"])


def runner_spec_hash(spec: Mapping[str, Any]) -> str:
    """What makes a new EphemeralRunnerSet (ARC's ``RunnerSetSpecHash`` fields)."""
    keys = ("githubConfigUrl", "githubConfigSecret", "runnerGroup", "runnerScaleSetName", "proxy")
    return template_hash(
        {
            **{k: spec.get(k) for k in keys},
            "tls": spec.get("githubServerTLS"),
            "template": spec.get("template"),
        }
    )


def listener_spec_hash(spec: Mapping[str, Any]) -> str:
    """What makes a new listener: the whole AutoscalingRunnerSet spec (ARC's ``ListenerSpecHash``)."""
    return template_hash(dict(spec))


def listener_name(ars: Mapping[str, Any]) -> str:
    """``<ARS>-<hash8>-listener``, hash8 of ``namespace@runnerGroup@githubConfigUrl`` (ARC 0.13.1+):
    FNV-32a, its decimal digits mapped onto Kubernetes' safe alphabet (by code point mod 27)."""
    meta, spec = ars["metadata"], ars.get("spec") or {}
    text = f"{meta['namespace']}@{spec.get('runnerGroup') or ''}@{spec.get('githubConfigUrl') or ''}"
    return f"{meta['name']}-{hash8(text)}-listener"


def hash8(text: str) -> str:
    """ARC's short name hash: FNV-32a of ``text``, its decimal digits through the safe alphabet."""
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(SUFFIX_ALPHABET[ord(ch) % len(SUFFIX_ALPHABET)] for ch in str(value))[:8]


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def build_ephemeral_runner_set(ars: Mapping[str, Any], name: str, scale_set_id: int) -> JSON:
    """The EphemeralRunnerSet of the ARS's current template (``replicas`` 0: the listener scales it)."""
    meta, spec = ars["metadata"], ars.get("spec") or {}
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k in (c.ANNOTATION_RUNNER_GROUP_NAME, c.ANNOTATION_SCALE_SET_NAME)
    }
    template = spec.get("template") or {}
    runner_spec: JSON = {
        "githubConfigUrl": spec.get("githubConfigUrl"),
        "githubConfigSecret": spec.get("githubConfigSecret"),
        "runnerScaleSetId": scale_set_id,
        **{k: copy.deepcopy(spec[k]) for k in ("proxy", "githubServerTLS", "vaultConfig") if spec.get(k)},
        "metadata": copy.deepcopy(template.get("metadata") or {}),
        "spec": copy.deepcopy(template.get("spec") or {}),
    }
    return {
        "apiVersion": c.API_VERSION,
        "kind": "EphemeralRunnerSet",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {
                **_labels(ars),
                c.LABEL_COMPONENT: c.COMPONENT_RUNNER_SET,
                c.LABEL_PART_OF: "gha-runner-scale-set",
                c.LABEL_SCALE_SET_NAME: meta["name"],
                c.LABEL_SCALE_SET_NAMESPACE: meta["namespace"],
            },
            "annotations": {**annotations, c.ANNOTATION_RUNNER_SPEC_HASH: runner_spec_hash(spec)},
            "ownerReferences": [owner(ars)],
            "finalizers": [c.FINALIZER_EPHEMERAL_RUNNER],
        },
        "spec": {"replicas": 0, "patchID": 0, "ephemeralRunnerSpec": runner_spec},
    }


def build_ephemeral_runner(ers: Mapping[str, Any], name: str, patch_id: int) -> JSON:
    """One runner of the set, for ``patch_id``, with both EphemeralRunner finalizers preset."""
    meta, spec = ers["metadata"], ers.get("spec") or {}
    return {
        "apiVersion": c.API_VERSION,
        "kind": "EphemeralRunner",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {**_labels(ers), c.LABEL_COMPONENT: c.COMPONENT_RUNNER},
            "annotations": {
                **(meta.get("annotations") or {}),
                c.ANNOTATION_PATCH_ID: str(patch_id),
            },
            "ownerReferences": [owner(ers)],
            "finalizers": [c.FINALIZER_EPHEMERAL_RUNNER, c.FINALIZER_RUNNER_REGISTRATION],
        },
        "spec": copy.deepcopy(spec.get("ephemeralRunnerSpec") or {}),
    }


def build_jit_secret(er: Mapping[str, Any], *, encoded: str, runner_id: int, scale_set_id: int) -> JSON:
    """The EphemeralRunner's JIT Secret (ARC's keys); ``encoded`` is a credential."""
    meta = er["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": _labels(er),
            "ownerReferences": [owner(er)],
        },
        "stringData": {
            SECRET_KEY_JIT: encoded,
            SECRET_KEY_RUNNER_NAME: meta["name"],
            SECRET_KEY_RUNNER_ID: str(runner_id),
            SECRET_KEY_SCALE_SET_ID: str(scale_set_id),
        },
    }


def uses_container_hooks(er: Mapping[str, Any]) -> bool:
    """The runner runs its jobs' containers through the hooks (``containerMode: kubernetes``)."""
    containers = ((er.get("spec") or {}).get("spec") or {}).get("containers") or ()
    runner: Mapping[str, Any] = next((x for x in containers if x.get("name") == c.RUNNER_CONTAINER_NAME), {})
    return any(e.get("name") == ENV_CONTAINER_HOOKS for e in runner.get("env") or ())


def build_runner_pod(er: Mapping[str, Any], gpu: g.GpuOptions | None = None) -> JSON:
    """The runner pod from the EphemeralRunner's inlined template, GPUs set up as ``gpu`` says;
    raises ValueError without a ``runner`` container."""
    meta, spec = er["metadata"], er.get("spec") or {}
    template_meta = spec.get("metadata") or {}
    pod_spec = copy.deepcopy(spec.get("spec") or {})
    containers = pod_spec.get("containers") or []
    runner = next((x for x in containers if x.get("name") == c.RUNNER_CONTAINER_NAME), None)
    if runner is None:
        raise ValueError("the template has no container named runner")
    env = [e for e in runner.get("env") or () if e.get("name") not in (ENV_JIT_CONFIG, ENV_USER_AGENT)]
    runner["env"] = [
        *env,
        {
            "name": ENV_JIT_CONFIG,
            "valueFrom": {"secretKeyRef": {"name": meta["name"], "key": SECRET_KEY_JIT}},
        },
        {"name": ENV_USER_AGENT, "value": f"runnerd/{__version__}"},
    ]
    pod_spec.setdefault("restartPolicy", "Never")
    pod_spec = apply_gpu(pod_spec, gpu or g.GpuOptions())
    labels = {
        **_labels(er),
        **(template_meta.get("labels") or {}),
        LABEL_EPHEMERAL_RUNNER: "True",
        "pod-template-hash": template_hash(spec.get("spec") or {}),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": dict(template_meta.get("annotations") or {}),
            "ownerReferences": [owner(er)],
        },
        "spec": pod_spec,
    }


def apply_gpu(pod_spec: Mapping[str, Any], gpu: g.GpuOptions) -> JSON:
    """The runner pod's spec with its GPUs where dockerd runs (see the module docstring)."""
    out = copy.deepcopy(dict(pod_spec))
    containers, inits = out.get("containers") or [], out.get("initContainers") or []
    ri = next(i for i, ct in enumerate(containers) if ct.get("name") == c.RUNNER_CONTAINER_NAME)
    dind = [(lst, i) for lst in (inits, containers) for i, x in enumerate(lst) if x.get("name") == DIND]
    wrap: bool | None = None
    if dind:
        lst, di = dind[0]
        containers[ri], lst[di], wrap = g.dind_gpu(containers[ri], lst[di], gpu)
    else:
        containers[ri] = g.gpu_runner(containers[ri], gpu)
    if wrap is not None:
        out["volumes"] = g.add_gpu_volumes(out.get("volumes") or [], wrap=wrap)
        if wrap:
            out["initContainers"] = g.add_install_container(inits, containers[ri])
    return g.gpu_pod_fields(out, gpu)


def build_listener(ars: Mapping[str, Any], *, namespace: str, ers_name: str, scale_set_id: int) -> JSON:
    """The AutoscalingListener of the ARS (in the controller's namespace; no ownerReference can
    cross namespaces, so the ARS's finalizer deletes it)."""
    meta, spec = ars["metadata"], ars.get("spec") or {}
    min_runners = spec.get("minRunners")
    max_runners = spec.get("maxRunners")
    listener_spec: JSON = {
        "githubConfigUrl": spec.get("githubConfigUrl"),
        "githubConfigSecret": spec.get("githubConfigSecret"),
        "runnerScaleSetId": scale_set_id,
        "autoscalingRunnerSetNamespace": meta["namespace"],
        "autoscalingRunnerSetName": meta["name"],
        "ephemeralRunnerSetName": ers_name,
        "minRunners": c.DEFAULT_MIN_RUNNERS if min_runners is None else min_runners,
        "maxRunners": c.DEFAULT_MAX_RUNNERS if max_runners is None else max_runners,
        **{k: copy.deepcopy(spec[k]) for k in ("proxy", "githubServerTLS", "vaultConfig") if spec.get(k)},
    }
    if spec.get("listenerMetrics"):
        listener_spec["metrics"] = copy.deepcopy(spec["listenerMetrics"])
    if spec.get("listenerTemplate"):
        listener_spec["template"] = copy.deepcopy(spec["listenerTemplate"])
    annotations = {c.ANNOTATION_RUNNER_SPEC_HASH: listener_spec_hash(spec)}
    values_hash = (meta.get("annotations") or {}).get(c.ANNOTATION_VALUES_HASH)
    if values_hash:
        annotations[c.ANNOTATION_VALUES_HASH] = values_hash
    return {
        "apiVersion": c.API_VERSION,
        "kind": "AutoscalingListener",
        "metadata": {
            "name": listener_name(ars),
            "namespace": namespace,
            "labels": {
                **_labels(ars),
                c.LABEL_COMPONENT: c.COMPONENT_LISTENER,
                c.LABEL_SCALE_SET_NAME: meta["name"],
                c.LABEL_SCALE_SET_NAMESPACE: meta["namespace"],
            },
            "annotations": annotations,
        },
        "spec": listener_spec,
    }
