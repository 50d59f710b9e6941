"""Where the Kubernetes API is and how to authenticate: a kubeconfig file or the pod's service account."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import load_incluster_config, load_kube_config

from runnerd.runtime.redact import redact


class ConfigError(Exception):
    """No usable Kubernetes configuration was found."""


@dataclass(frozen=True)
class KubeConfig:
    """A loaded client configuration (server, TLS, credentials). ``repr`` shows no credentials."""

    host: str
    source: str
    """``in-cluster`` or ``kubeconfig:<path>``."""
    configuration: Any = field(repr=False, compare=False)
    """The kubernetes_asyncio ``Configuration`` (untyped; only :mod:`runnerd.kube` uses it)."""


async def load_config(
    kubeconfig: str | os.PathLike[str] | None = None,
    *,
    context: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> KubeConfig:
    """Loads the configuration the way ``kubectl`` and controller-runtime do.

    In order: ``kubeconfig`` (a path) if given; else ``$KUBECONFIG``; else the in-cluster service
    account (when ``$KUBERNETES_SERVICE_HOST`` is set), whose token is re-read as it rotates; else
    ``~/.kube/config``.
    """
    env = os.environ if environ is None else environ
    configuration = Configuration()
    path = _kubeconfig_path(kubeconfig, env)
    if path is None:
        try:
            load_incluster_config(client_configuration=configuration, try_refresh_token=True)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise ConfigError(f"in-cluster configuration: {redact(str(exc))}") from exc
        return KubeConfig(host=str(configuration.host), source="in-cluster", configuration=configuration)
    try:
        await load_kube_config(
            config_file=path, context=context, client_configuration=configuration, persist_config=False
        )
    except Exception as exc:
        raise ConfigError(f"kubeconfig {path}: {redact(str(exc))}") from exc
    return KubeConfig(host=str(configuration.host), source=f"kubeconfig:{path}", configuration=configuration)


def _kubeconfig_path(kubeconfig: str | os.PathLike[str] | None, env: Mapping[str, str]) -> str | None:
    """The kubeconfig to load, or ``None`` for the in-cluster configuration."""
    if kubeconfig is not None:
        return os.fspath(kubeconfig)
    if env.get("KUBECONFIG"):
        return env["KUBECONFIG"]
    if env.get("KUBERNETES_SERVICE_HOST"):
        return None
    path = os.path.expanduser("~/.kube/config")
    if not os.path.exists(path):
        raise ConfigError(f"no kubeconfig given, no {path}, and not running in a cluster")
    return path
