"""The Docker-in-Docker sidecar of a runner pod (``dockerEnabled``, the default mode): pure builder.

:func:`runnerd.manifests.pod.build_runner_pod` adds it beside the runner container; the two share
the docker socket (``var-run``), the work directory and ``/runner``. docs/runner-pods.md describes
the container.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from runnerd.api import JSON, RunnerSpec
from runnerd.manifests.containers import env_var, merge_env, merge_mounts, merge_resources
from runnerd.reconcile.runnerpod import (
    DOCKER_CONTAINER,
    RUNNER_MOUNT_PATH,
    RUNNER_VOLUME,
    VAR_RUN_MOUNT_PATH,
    VAR_RUN_VOLUME,
    WORK_VOLUME,
    env_value,
)

DOCKER_SOCKET = "unix:///run/docker.sock"

# Docker sidecar preStop: while the runner is still configured (it removes /runner/.runner when
# it unregisters), keep dockerd alive, then make sure dockerd is up so it gets the SIGTERM that
# follows. Bounded by RUNNER_GRACEFUL_STOP_TIMEOUT (default 15 s, as ARC's runner images use).
DOCKER_PRE_STOP = """\
{
limit="${RUNNER_GRACEFUL_STOP_TIMEOUT:-15}"
n=0
echo "runnerd preStop: waiting up to ${limit}s for the runner to stop"
while [ -f /runner/.runner ] && [ "$n" -lt "$limit" ]; do sleep 1; n=$((n + 1)); done
while ! pgrep -x dockerd >/dev/null 2>&1 && [ "$n" -lt "$limit" ]; do sleep 1; n=$((n + 1)); done
echo "runnerd preStop: done after ${n}s"
} >/proc/1/fd/1 2>&1
"""


def docker_container(
    spec: RunnerSpec,
    runner: Mapping[str, Any],
    user: Mapping[str, Any] | None,
    pod_security: Mapping[str, Any],
    privileged: bool,
    *,
    image: str,
    group_gid: str,
    registry_mirror: str,
) -> JSON:
    """The ``docker`` sidecar: dockerd on the shared socket, with the runner's work and ``/runner``
    volumes; the user's ``docker`` entry of ``spec.containers`` merged in (its values win)."""
    user = user or {}
    out: JSON = copy.deepcopy(dict(user))
    out["name"] = DOCKER_CONTAINER
    out["image"] = user.get("image") or image
    args = ["dockerd", f"--host={DOCKER_SOCKET}", *(user.get("args") or []), "--group=$(DOCKER_GROUP_GID)"]
    generated_env = [env_var("DOCKER_GROUP_GID", group_gid)]
    if spec.docker_mtu is not None:
        args += ["--mtu", str(spec.docker_mtu)]
        generated_env.append(env_var("DOCKERD_ROOTLESS_ROOTLESSKIT_MTU", str(spec.docker_mtu)))
    if registry_mirror:
        args.append(f"--registry-mirror={registry_mirror}")
    out["args"] = args
    # The preStop hook is bounded by RUNNER_GRACEFUL_STOP_TIMEOUT; give dockerd the runner's value.
    stop_timeout = env_value(runner.get("env") or [], "RUNNER_GRACEFUL_STOP_TIMEOUT")
    if stop_timeout is not None:
        generated_env.append(env_var("RUNNER_GRACEFUL_STOP_TIMEOUT", stop_timeout))
    out["env"] = merge_env(generated_env, spec.docker_env, user.get("env") or [])
    resources = merge_resources(user.get("resources"), spec.dockerd_container_resources)
    if resources:
        out["resources"] = resources
    else:
        out.pop("resources", None)
    generated_mounts = [
        {"name": RUNNER_VOLUME, "mountPath": RUNNER_MOUNT_PATH},
        {"name": VAR_RUN_VOLUME, "mountPath": VAR_RUN_MOUNT_PATH},
        {"name": WORK_VOLUME, "mountPath": spec.effective_work_dir},
    ]
    user_mounts = [*(user.get("volumeMounts") or []), *spec.docker_volume_mounts]
    out["volumeMounts"] = merge_mounts(
        generated_mounts, user_mounts, replace_by_name=(WORK_VOLUME, VAR_RUN_VOLUME)
    )
    security: JSON = {"privileged": privileged}
    if pod_security.get("seLinuxOptions"):
        security["seLinuxOptions"] = copy.deepcopy(pod_security["seLinuxOptions"])
    out["securityContext"] = {**security, **(user.get("securityContext") or {})}
    if not user.get("lifecycle"):
        out["lifecycle"] = {"preStop": {"exec": {"command": ["/bin/sh", "-c", DOCKER_PRE_STOP]}}}
    return out
