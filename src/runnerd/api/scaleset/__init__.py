"""Pure scale-set API layer: ARC's ``actions.github.com/v1alpha1`` types and their CRDs.

No I/O, no asyncio, no Kubernetes client (the ``api`` import-linter contract covers this package).
The controllers are :mod:`runnerd.controller.scaleset`'s; the listener is not implemented yet.
"""

from collections.abc import Mapping
from typing import Any

from runnerd.api import validation
from runnerd.api.meta import parse_kind
from runnerd.api.scaleset.constants import API_VERSION, GROUP, VERSION
from runnerd.api.scaleset.crds import build_scale_set_crds
from runnerd.api.scaleset.types import (
    RESOURCE_BY_KIND,
    RESOURCES,
    AutoscalingListener,
    AutoscalingListenerSpec,
    AutoscalingListenerStatus,
    AutoscalingRunnerSet,
    AutoscalingRunnerSetSpec,
    AutoscalingRunnerSetStatus,
    AzureKeyVaultConfig,
    CounterMetric,
    EphemeralRunner,
    EphemeralRunnerSet,
    EphemeralRunnerSetSpec,
    EphemeralRunnerSetStatus,
    EphemeralRunnerSpec,
    EphemeralRunnerStatus,
    GaugeMetric,
    HistogramMetric,
    MetricsConfig,
    ProxyConfig,
    ProxyServerConfig,
    ResourceMeta,
    ScaleSetResource,
    TLSCertificateSource,
    TLSConfig,
    VaultConfig,
)


def parse(obj: Mapping[str, Any]) -> ScaleSetResource:
    """Parse a raw ``actions.github.com/v1alpha1`` object into the class of its ``kind``."""
    return parse_kind(obj, RESOURCE_BY_KIND, API_VERSION)


def validate(obj: Mapping[str, Any]) -> list[str]:
    """CEL rule violations of a raw ``actions.github.com`` object, evaluated in Python."""
    return validation.validate(obj, RESOURCE_BY_KIND)


__all__ = [
    "API_VERSION",
    "GROUP",
    "RESOURCES",
    "RESOURCE_BY_KIND",
    "VERSION",
    "AutoscalingListener",
    "AutoscalingListenerSpec",
    "AutoscalingListenerStatus",
    "AutoscalingRunnerSet",
    "AutoscalingRunnerSetSpec",
    "AutoscalingRunnerSetStatus",
    "AzureKeyVaultConfig",
    "CounterMetric",
    "EphemeralRunner",
    "EphemeralRunnerSet",
    "EphemeralRunnerSetSpec",
    "EphemeralRunnerSetStatus",
    "EphemeralRunnerSpec",
    "EphemeralRunnerStatus",
    "GaugeMetric",
    "HistogramMetric",
    "MetricsConfig",
    "ProxyConfig",
    "ProxyServerConfig",
    "ResourceMeta",
    "ScaleSetResource",
    "TLSCertificateSource",
    "TLSConfig",
    "VaultConfig",
    "build_scale_set_crds",
    "parse",
    "validate",
]
