"""The ``actions.github.com`` CRDs, built by the same pure builder as the legacy ones.

``hack/gen_crds.py`` writes them to ``charts/gha-runner-scale-set-controller/crds/`` (file names as
ARC's chart has them, e.g. ``actions.github.com_autoscalingrunnersets.yaml``). No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runnerd.api import JSON
from runnerd.api.crds import build_group_crds
from runnerd.api.scaleset.constants import GROUP
from runnerd.api.scaleset.types import RESOURCES


def build_scale_set_crds(openapi_docs: Sequence[Mapping[str, Any]]) -> dict[str, JSON]:
    """Every CRD of the scale-set API group, keyed by file name, from the Kubernetes OpenAPI v3
    documents (``api__v1_openapi.json`` is enough: only PodTemplateSpec and its parts are embedded)."""
    return build_group_crds(openapi_docs, RESOURCES, GROUP)
