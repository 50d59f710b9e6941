"""The runner pod: a pure function from a Runner's spec to the Pod manifest the controller creates.

It keeps ARC's (legacy ``actions.summerwind.dev``) pod contract -- container names, env variables,
volumes, the dind sidecar, ``restartPolicy: Never`` -- so ARC's runner images work unchanged, and
adds first-class GPU runners (:mod:`runnerd.manifests.gpu`). The docker sidecar is
:mod:`runnerd.manifests.dind`; the names of the pod's parts are :mod:`runnerd.reconcile.runnerpod`'s.
docs/runner-pods.md describes every field of the result and why it is there.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from runnerd import __version__
from runnerd.api import JSON, RunnerConfig, RunnerSpec
from runnerd.api import constants as c
from runnerd.manifests import gpu as g
from runnerd.manifests.containers import (
    by_name,
    env_var,
    field_ref_env,
    is_zero_quantity,
    merge_env,
    merge_mounts,
    merge_resources,
    merge_volumes,
)
from runnerd.manifests.dind import DOCKER_SOCKET, docker_container
from runnerd.reconcile.credentials import (
    ANNOTATION_RUNNER_ID,
    ENV_JIT_CONFIG,
    ENV_RUNNER_TOKEN,
    JitConfig,
    Registration,
    secret_env,
)
from runnerd.reconcile.hashing import label_value, template_hash
from runnerd.reconcile.runnerpod import (
    DOCKER_CONTAINER,
    LABEL_POD_TEMPLATE_HASH,
    LABEL_RUNNER,
    LABEL_RUNNER_NAME,
    LABEL_RUNNER_TEMPLATE_HASH,
    RUNNER_CONTAINER,
    RUNNER_MOUNT_PATH,
    RUNNER_VOLUME,
    VAR_RUN_MOUNT_PATH,
    VAR_RUN_VOLUME,
    WORK_VOLUME,
)

ANNOTATION_GITHUB_API_CREDS_SECRET = "actions-runner/github-api-creds-secret"

KUBERNETES_HOOK_PATH = "/runner/k8s/index.js"

ENV_RUNNER_NAME = "RUNNER_NAME"
CONTROLLER_OWNED_ENV = frozenset({ENV_RUNNER_NAME, ENV_RUNNER_TOKEN, ENV_JIT_CONFIG})
"""Runner env the user cannot override: identity and credentials come from the controller."""

JOB_MARKER = "/runner/.runnerd-job"
"""runnerd's runner image creates this file when a job starts and removes it when the job ends (its
ACTIONS_RUNNER_HOOK_JOB_STARTED/COMPLETED hooks)."""
JOB_READINESS_PROBE: JSON = {
    "exec": {"command": ["sh", "-c", f"test ! -e {JOB_MARKER}"]},
    "periodSeconds": 1,
    "failureThreshold": 1,
    "successThreshold": 1,
    "timeoutSeconds": 1,
}
"""The runner's own job signal: the pod is not Ready while its runner runs a job, which the
controller reads as busy whatever GitHub's lagging ``busy`` flag says. Images without the hooks never
create the marker, so their pods simply stay Ready."""


class RunnerPodError(ValueError):
    """The spec cannot be turned into a valid pod (the message says why, for an event)."""


class RunnerPodMode(StrEnum):
    """How the runner pod provides Docker."""

    DIND_SIDECAR = "dind-sidecar"
    DIND_IN_RUNNER = "dind-in-runner"
    NO_DOCKER = "no-docker"
    KUBERNETES = "kubernetes"


def runner_pod_mode(spec: RunnerConfig) -> RunnerPodMode:
    """ARC's precedence: containerMode kubernetes, then dockerdWithinRunnerContainer, then dockerEnabled."""
    if spec.container_mode not in (None, "", c.CONTAINER_MODE_KUBERNETES):
        raise RunnerPodError(f'containerMode must be "" or "kubernetes", got {spec.container_mode!r}')
    if spec.is_kubernetes_container_mode:
        return RunnerPodMode.KUBERNETES
    if spec.effective_dockerd_within_runner_container:
        return RunnerPodMode.DIND_IN_RUNNER
    if spec.effective_docker_enabled:
        return RunnerPodMode.DIND_SIDECAR
    return RunnerPodMode.NO_DOCKER


# --- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PodOptions:
    """Controller-level settings (ARC's flags of the same meaning in brackets)."""

    runner_image: str = "summerwind/actions-runner:latest"  # --runner-image
    dind_runner_image: str | None = None
    """Default image with dockerdWithinRunnerContainer when spec.image is unset; None: runner_image (ARC)."""
    docker_image: str = "docker:dind"  # --docker-image
    docker_gid: int = 1001  # --docker-gid
    runner_image_pull_secrets: tuple[str, ...] = ()  # --runner-image-pull-secret
    github_url: str = "https://github.com/"  # --runner-github-url / GitHub Enterprise Server URL
    common_runner_labels: tuple[str, ...] = ()  # --common-runner-labels
    installation_label: str = ""
    """The label that marks this controller installation's registrations (``runnerd-<id>``; empty:
    none). It goes to GitHub with the runner's labels but into no template hash and no job matching
    (:mod:`runnerd.controller.orphans`)."""
    docker_registry_mirror: str = ""  # --docker-registry-mirror
    runner_status_update_hook: bool = False  # --runner-status-update-hook
    service_account_per_runner: bool = False
    """containerMode kubernetes (or the status hook) without serviceAccountName: use a ServiceAccount
    named after the runner, which the Runner controller creates with its Role
    (``--kubernetes-mode-service-accounts``, :mod:`runnerd.manifests.rbac`). Off: such a spec
    is refused with a message saying which ServiceAccount to provide."""
    controller_version: str = __version__
    gpu: g.GpuOptions = field(default_factory=g.GpuOptions)


DEFAULT_OPTIONS = PodOptions()


# --- the builder -----------------------------------------------------------------------------


def build_runner_pod(
    runner_name: str,
    namespace: str,
    spec: RunnerSpec,
    registration: Registration,
    options: PodOptions = DEFAULT_OPTIONS,
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    owner_references: Sequence[Mapping[str, Any]] = (),
    credentials_secret: str | None = None,
) -> JSON:
    """The runner Pod manifest for Runner ``runner_name``.

    ``labels``/``annotations`` are the Runner's (its replica set's selector labels and the
    template metadata); the pod gets them plus its own. The runner's credential is read from the
    Secret ``credentials_secret`` (default: the runner's name; :mod:`runnerd.reconcile.credentials`):
    only ``registration``'s kind and runner id go into the pod. Raises :class:`RunnerPodError` for
    specs that cannot make a valid pod.
    """
    mode = runner_pod_mode(spec)
    _validate(spec, mode, options)
    labels = dict(labels or {})
    annotations = dict(annotations or {})
    pod_security = spec.security_context or {}
    # ARC: with SELinux options on the pod, containers are not made privileged.
    privileged = not pod_security.get("seLinuxOptions")
    users = by_name(spec.containers)

    runner = _runner_container(
        runner_name,
        spec,
        mode,
        registration,
        options,
        users.get(RUNNER_CONTAINER),
        privileged,
        credentials_secret or runner_name,
    )
    docker = None
    if mode is RunnerPodMode.DIND_SIDECAR:
        docker = docker_container(
            spec,
            runner,
            users.get(DOCKER_CONTAINER),
            pod_security,
            privileged,
            image=options.docker_image,
            group_gid=docker_group_gid(str(runner["image"]), options),
            registry_mirror=_registry_mirror(spec, options),
        )
    containers, volumes, init_containers = _apply_gpu(
        _order_containers(spec.containers, runner, docker, mode),
        merge_volumes(_generated_volumes(spec, mode), spec.volumes),
        [copy.deepcopy(ic) for ic in spec.init_containers],
        mode,
        options.gpu,
    )
    containers.extend(copy.deepcopy(sc) for sc in spec.sidecar_containers)
    pod_spec: JSON = {"restartPolicy": "Never", "containers": containers}
    if init_containers:
        pod_spec["initContainers"] = init_containers
    if volumes:
        pod_spec["volumes"] = volumes
    _pod_fields(pod_spec, runner_name, spec, mode, options)
    pod_spec = g.gpu_pod_fields(pod_spec, options.gpu)

    metadata = _pod_metadata(runner_name, namespace, spec, registration, options, labels, annotations)
    if owner_references:
        metadata["ownerReferences"] = [copy.deepcopy(dict(o)) for o in owner_references]
    for key in ("initContainers", "containers"):
        if key in pod_spec:
            pod_spec[key] = [_ordered(ct, _CONTAINER_KEY_ORDER) for ct in pod_spec[key]]
    pod_spec = _ordered(pod_spec, _POD_SPEC_KEY_ORDER)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def _pod_metadata(
    runner_name: str,
    namespace: str,
    spec: RunnerSpec,
    registration: Registration,
    options: PodOptions,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> JSON:
    """The pod's name, labels (the Runner's plus the pod's own) and annotations (the Runner's, its
    registration id, the Secret of its GitHub API credentials)."""
    pod_labels = {
        **labels,
        LABEL_RUNNER: "",
        LABEL_RUNNER_NAME: label_value(runner_name),
        LABEL_POD_TEMPLATE_HASH: pod_template_hash(spec, labels, annotations, options),
    }
    pod_annotations = dict(annotations)
    if isinstance(registration, JitConfig):
        pod_annotations[ANNOTATION_RUNNER_ID] = str(registration.runner_id)
    creds = spec.github_api_credentials_from
    if creds is not None and creds.secret_ref.name:
        pod_annotations[ANNOTATION_GITHUB_API_CREDS_SECRET] = creds.secret_ref.name
    metadata: JSON = {"name": runner_name, "namespace": namespace, "labels": pod_labels}
    if pod_annotations:
        metadata["annotations"] = pod_annotations
    return metadata


# Key order only makes `kubectl get -o yaml`-style dumps and the documented examples readable.
_CONTAINER_KEY_ORDER = (
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "env",
    "envFrom",
    "resources",
    "volumeMounts",
    "securityContext",
    "lifecycle",
)
_POD_SPEC_KEY_ORDER = ("restartPolicy", "initContainers", "containers", "volumes")


def _ordered(d: Mapping[str, Any], first: Sequence[str]) -> JSON:
    return {**{k: d[k] for k in first if k in d}, **{k: v for k, v in d.items() if k not in first}}


def pod_template_hash(
    spec: RunnerSpec, labels: Mapping[str, str], annotations: Mapping[str, str], options: PodOptions
) -> str:
    """What ARC hashes into ``pod-template-hash`` (less the registration token, which changes hourly)."""
    return template_hash(
        {
            "labels": {k: v for k, v in labels.items() if k != LABEL_RUNNER_TEMPLATE_HASH},
            "annotations": dict(annotations),
            "spec": spec.to_dict(),
            "githubURL": options.github_url,
        }
    )


def _runner_volume_enabled(spec: RunnerConfig) -> bool:
    """``volumeSizeLimit: 0`` leaves the /runner emptyDir out (ARC)."""
    return spec.volume_size_limit is None or not is_zero_quantity(spec.volume_size_limit)


def _validate(spec: RunnerSpec, mode: RunnerPodMode, options: PodOptions) -> None:
    if spec.scope is None:
        raise RunnerPodError("spec needs exactly one of enterprise, organization or repository")
    if mode is RunnerPodMode.DIND_SIDECAR and not _runner_volume_enabled(spec):
        raise RunnerPodError(
            "volumeSizeLimit 0 disables the runner volume, which the docker sidecar needs "
            "(it shares the work directory with the runner container)"
        )
    if mode is RunnerPodMode.KUBERNETES:
        if spec.work_volume_claim_template is None:
            raise RunnerPodError("containerMode kubernetes needs workVolumeClaimTemplate")
        if not spec.service_account_name and not options.service_account_per_runner:
            raise RunnerPodError(
                "containerMode kubernetes needs serviceAccountName: a ServiceAccount that may create and"
                " delete pods, pods/exec, pods/log, jobs and secrets in this namespace (the runner"
                " container hooks run job containers as pods), or let runnerd create one per runner"
                " (chart value rbac.allowGrantingKubernetesContainerModePermissions)"
            )
        if any(v.get("name") == WORK_VOLUME for v in spec.volumes):
            raise RunnerPodError(
                'containerMode kubernetes: set workVolumeClaimTemplate instead of a "work" volume'
            )
        runner_mounts = [
            *spec.volume_mounts,
            *by_name(spec.containers).get(RUNNER_CONTAINER, {}).get("volumeMounts", []),
        ]
        if any(m.get("name") == WORK_VOLUME for m in runner_mounts):
            raise RunnerPodError('containerMode kubernetes: the "work" volume mount is generated; remove it')


def runner_labels(spec: RunnerConfig, options: PodOptions) -> list[str]:
    """spec.labels, the controller's common labels, then its installation label, without
    case-insensitive duplicates: the labels the runner registers with."""
    out: list[str] = []
    seen: set[str] = set()
    for label in [*spec.labels, *options.common_runner_labels, options.installation_label]:
        if label and label.lower() not in seen:
            seen.add(label.lower())
            out.append(label)
    return out


def _runner_env(
    runner_name: str,
    spec: RunnerSpec,
    mode: RunnerPodMode,
    registration: Registration,
    options: PodOptions,
    credentials_secret: str,
) -> list[JSON]:
    docker_available = mode in (RunnerPodMode.DIND_SIDECAR, RunnerPodMode.DIND_IN_RUNNER)
    env = [
        env_var("RUNNER_ORG", spec.organization or ""),
        env_var("RUNNER_REPO", spec.repository or ""),
        env_var("RUNNER_ENTERPRISE", spec.enterprise or ""),
        env_var("RUNNER_LABELS", ",".join(runner_labels(spec, options))),
        env_var("RUNNER_GROUP", spec.group or ""),
        env_var("DOCKER_ENABLED", _bool(docker_available)),
        env_var("DOCKERD_IN_RUNNER", _bool(mode is RunnerPodMode.DIND_IN_RUNNER)),
        env_var("GITHUB_URL", options.github_url),
        env_var("RUNNER_WORKDIR", spec.effective_work_dir),
        env_var("RUNNER_EPHEMERAL", _bool(spec.effective_ephemeral)),
        env_var("RUNNER_STATUS_UPDATE_HOOK", _bool(options.runner_status_update_hook)),
        env_var("GITHUB_ACTIONS_RUNNER_EXTRA_USER_AGENT", f"runnerd/{options.controller_version}"),
    ]
    if mode is RunnerPodMode.KUBERNETES:
        wvct = spec.work_volume_claim_template
        same_node = wvct is None or "ReadWriteOnce" in wvct.access_modes
        env += [
            env_var("ACTIONS_RUNNER_CONTAINER_HOOKS", KUBERNETES_HOOK_PATH),
            env_var("ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER", "true"),
            field_ref_env("ACTIONS_RUNNER_POD_NAME", "metadata.name"),
            field_ref_env("ACTIONS_RUNNER_JOB_NAMESPACE", "metadata.namespace"),
            env_var("ACTIONS_RUNNER_REQUIRE_SAME_NODE", _bool(same_node)),
        ]
    if mode is RunnerPodMode.DIND_SIDECAR:
        env.append(env_var("DOCKER_HOST", DOCKER_SOCKET))
    if mode is RunnerPodMode.DIND_IN_RUNNER:
        if spec.docker_mtu is not None:
            env.append(env_var("MTU", str(spec.docker_mtu)))
        mirror = _registry_mirror(spec, options)
        if mirror:
            env.append(env_var("DOCKER_REGISTRY_MIRROR", mirror))
    env.append(env_var(ENV_RUNNER_NAME, runner_name))
    env.append(secret_env(registration.kind, credentials_secret))
    return env


def _runner_container(
    runner_name: str,
    spec: RunnerSpec,
    mode: RunnerPodMode,
    registration: Registration,
    options: PodOptions,
    user: Mapping[str, Any] | None,
    privileged: bool,
    credentials_secret: str,
) -> JSON:
    user = user or {}
    default_image = options.runner_image
    if mode is RunnerPodMode.DIND_IN_RUNNER and options.dind_runner_image:
        default_image = options.dind_runner_image
    out: JSON = copy.deepcopy(dict(user))
    out["name"] = RUNNER_CONTAINER
    # ARC: spec.image beats the image of a `runner` entry in spec.containers.
    out["image"] = spec.image or user.get("image") or default_image
    out["imagePullPolicy"] = user.get("imagePullPolicy") or spec.effective_image_pull_policy
    out["env"] = merge_env(
        _runner_env(runner_name, spec, mode, registration, options, credentials_secret),
        spec.env,
        user.get("env") or [],
        protected=CONTROLLER_OWNED_ENV,
    )
    env_from = [*spec.env_from, *(user.get("envFrom") or [])]
    if env_from:
        out["envFrom"] = copy.deepcopy(env_from)
    else:
        out.pop("envFrom", None)
    resources = merge_resources(user.get("resources"), spec.resources)
    if resources:
        out["resources"] = resources
    else:
        out.pop("resources", None)

    generated: list[JSON] = []
    if _runner_volume_enabled(spec):
        generated.append({"name": RUNNER_VOLUME, "mountPath": RUNNER_MOUNT_PATH})
    if mode in (RunnerPodMode.DIND_SIDECAR, RunnerPodMode.KUBERNETES):
        generated.append({"name": WORK_VOLUME, "mountPath": spec.effective_work_dir})
    if mode is RunnerPodMode.DIND_SIDECAR:
        generated.append({"name": VAR_RUN_VOLUME, "mountPath": VAR_RUN_MOUNT_PATH})
    user_mounts = [*(user.get("volumeMounts") or []), *spec.volume_mounts]
    mounts = merge_mounts(generated, user_mounts, replace_by_name=(WORK_VOLUME,))
    if mounts:
        out["volumeMounts"] = mounts
    # dockerd in the runner needs a privileged container (not with pod SELinux options, as ARC).
    security = {
        **({"privileged": True} if mode is RunnerPodMode.DIND_IN_RUNNER and privileged else {}),
        **(user.get("securityContext") or {}),
    }
    if security:
        out["securityContext"] = security
    if "readinessProbe" not in user:
        out["readinessProbe"] = copy.deepcopy(JOB_READINESS_PROBE)
    return out


def docker_group_gid(runner_image: str, options: PodOptions) -> str:
    """The docker socket's group: the docker GID of ARC's runner image for that Ubuntu release."""
    if "22.04" in runner_image or "24.04" in runner_image:
        return "121"
    if "20.04" in runner_image:
        return "1001"
    return str(options.docker_gid)


def _registry_mirror(spec: RunnerConfig, options: PodOptions) -> str:
    if spec.docker_registry_mirror is not None:
        return spec.docker_registry_mirror
    return options.docker_registry_mirror


def _order_containers(
    user_containers: Sequence[Mapping[str, Any]], runner: JSON, docker: JSON | None, mode: RunnerPodMode
) -> list[JSON]:
    """spec.containers order, with runner first and docker last when spec.containers lacks them."""
    out: list[JSON] = []
    names = set()
    for uc in user_containers:
        name = uc.get("name")
        names.add(name)
        if name == RUNNER_CONTAINER:
            out.append(runner)
        elif name == DOCKER_CONTAINER and docker is not None:
            out.append(docker)
        elif name == DOCKER_CONTAINER and mode is RunnerPodMode.KUBERNETES:
            continue  # ARC drops a docker container in kubernetes mode
        else:
            out.append(copy.deepcopy(dict(uc)))
    if RUNNER_CONTAINER not in names:
        out.insert(0, runner)
    if docker is not None and DOCKER_CONTAINER not in names:
        out.append(docker)
    return out


def _generated_volumes(spec: RunnerSpec, mode: RunnerPodMode) -> list[JSON]:
    volumes: list[JSON] = []
    limit = spec.volume_size_limit
    if _runner_volume_enabled(spec):
        empty_dir: JSON = {}
        if spec.volume_storage_medium:
            empty_dir["medium"] = spec.volume_storage_medium
        if limit is not None:
            empty_dir["sizeLimit"] = limit
        volumes.append({"name": RUNNER_VOLUME, "emptyDir": empty_dir})
    if mode is RunnerPodMode.DIND_SIDECAR:
        volumes.append({"name": WORK_VOLUME, "emptyDir": {}})
        volumes.append(
            {
                "name": VAR_RUN_VOLUME,
                "emptyDir": {
                    "medium": "Memory",
                    "sizeLimit": spec.effective_docker_var_run_volume_size_limit,
                },
            }
        )
    if mode is RunnerPodMode.KUBERNETES:
        wvct = spec.work_volume_claim_template
        assert wvct is not None  # _validate
        claim_spec: JSON = {
            "accessModes": list(wvct.access_modes),
            "resources": copy.deepcopy(wvct.resources),
        }
        if wvct.storage_class_name is not None:
            claim_spec["storageClassName"] = wvct.storage_class_name
        volumes.append({"name": WORK_VOLUME, "ephemeral": {"volumeClaimTemplate": {"spec": claim_spec}}})
    return volumes


def _apply_gpu(
    containers: list[JSON],
    volumes: list[JSON],
    init_containers: list[JSON],
    mode: RunnerPodMode,
    gpu: g.GpuOptions,
) -> tuple[list[JSON], list[JSON], list[JSON]]:
    """Put the runner's GPU request where dockerd runs and set that container up for CDI."""
    index = {ct["name"]: i for i, ct in enumerate(containers)}
    ri = index[RUNNER_CONTAINER]
    di = index.get(DOCKER_CONTAINER) if mode is RunnerPodMode.DIND_SIDECAR else None
    wrap: bool | None = None
    if di is not None:
        containers[ri], containers[di], wrap = g.dind_gpu(containers[ri], containers[di], gpu)
    else:
        runner = g.with_gpu_limits(containers[ri], gpu)
        if mode is RunnerPodMode.DIND_IN_RUNNER and g.gpu_resources(runner, gpu):
            containers[ri], wrap = g.setup_dockerd_gpu(runner, gpu, wrap=False), False
        else:
            containers[ri] = g.gpu_runner(runner, gpu)
    if wrap is not None:
        volumes = g.add_gpu_volumes(volumes, wrap=wrap)
        if wrap:
            init_containers = g.add_install_container(init_containers, containers[ri])
    return containers, volumes, init_containers


def _pod_fields(
    pod_spec: JSON, runner_name: str, spec: RunnerSpec, mode: RunnerPodMode, options: PodOptions
) -> None:
    """Pod-level pass-through of ARC's RunnerPodSpec (the spec's value replaces the default)."""
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name
    elif options.service_account_per_runner and (
        mode is RunnerPodMode.KUBERNETES or options.runner_status_update_hook
    ):
        pod_spec["serviceAccountName"] = runner_name
    if spec.automount_service_account_token is not None:
        pod_spec["automountServiceAccountToken"] = spec.automount_service_account_token
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = copy.deepcopy(spec.image_pull_secrets)
    elif options.runner_image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in options.runner_image_pull_secrets]
    if spec.affinity:
        pod_spec["affinity"] = copy.deepcopy(spec.affinity)
    if spec.tolerations:
        pod_spec["tolerations"] = copy.deepcopy(spec.tolerations)
    if spec.priority_class_name:
        pod_spec["priorityClassName"] = spec.priority_class_name
    if spec.termination_grace_period_seconds is not None:
        pod_spec["terminationGracePeriodSeconds"] = spec.termination_grace_period_seconds
    # spec.ephemeralContainers is not set here: the API server forbids it on create (the controller
    # adds them through the pods/ephemeralcontainers subresource once the pod exists).
    if spec.host_aliases:
        pod_spec["hostAliases"] = copy.deepcopy(spec.host_aliases)
    if spec.topology_spread_constraints:
        pod_spec["topologySpreadConstraints"] = copy.deepcopy(spec.topology_spread_constraints)
    if spec.runtime_class_name:
        pod_spec["runtimeClassName"] = spec.runtime_class_name
    if spec.dns_policy:
        pod_spec["dnsPolicy"] = spec.dns_policy
    if spec.dns_config is not None:
        pod_spec["dnsConfig"] = copy.deepcopy(spec.dns_config)
    if spec.enable_service_links is not None:
        pod_spec["enableServiceLinks"] = spec.enable_service_links
    if spec.security_context is not None:
        pod_spec["securityContext"] = copy.deepcopy(spec.security_context)


def _bool(value: bool) -> str:
    return "true" if value else "false"
