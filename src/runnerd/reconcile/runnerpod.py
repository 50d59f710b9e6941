"""What the decisions and the builders both know of a runner pod (pure, no I/O).

The names runnerd gives a runner pod's containers, volumes and labels (ARC's, so ARC's runner images
and tools keep working), and readers of container dicts. The pod itself is built by
:func:`runnerd.manifests.pod.build_runner_pod`; its state is read by :mod:`runnerd.reconcile.podstate`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from runnerd.api import parse_quantity

RUNNER_CONTAINER = "runner"
DOCKER_CONTAINER = "docker"

RUNNER_VOLUME, RUNNER_MOUNT_PATH = "runner", "/runner"
WORK_VOLUME = "work"
VAR_RUN_VOLUME, VAR_RUN_MOUNT_PATH = "var-run", "/run"

LABEL_RUNNER = "actions-runner"
"""On every runner pod (value ``""``), as ARC sets it."""
LABEL_RUNNER_NAME = "runnerd.dev/runner-name"
"""The Runner's name (made label-safe when longer than 63 characters)."""
LABEL_POD_TEMPLATE_HASH = "pod-template-hash"
"""Hash of what the pod is built from (Runner labels/annotations/spec, GitHub URL), as in ARC."""
LABEL_RUNNER_TEMPLATE_HASH = "runner-template-hash"
"""Set by the replica set on its Runners; left out of the pod template hash (as in ARC)."""

GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource of the NVIDIA device plugin."""


def env_value(env: Iterable[Mapping[str, Any]], name: str) -> str | None:
    """The literal value of ``name`` (the last entry wins); ``None`` if absent or not a literal."""
    found: str | None = None
    for e in env:
        if e.get("name") == name:
            value = e.get("value")
            found = value if isinstance(value, str) and "valueFrom" not in e else None
    return found


def quantity_value(value: Any) -> Decimal | None:
    """The numeric value of a quantity, ``None`` when it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    try:
        return parse_quantity(value)
    except ValueError:
        return None
