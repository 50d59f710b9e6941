"""Where the Kubernetes API is and how to authenticate: a kubeconfig file or the pod's service account.

Our own loading, the way ``kubectl`` and client-go do it, without kubernetes_asyncio (whose
generated client costs 38 MiB to import; see docs/ARCHITECTURE.md):

- in-cluster: ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``, the service account's
  CA, and its token re-read as it rotates (:class:`~runnerd.kube.auth.TokenFile`);
- kubeconfig (``$KUBECONFIG`` may list several files: the first to name a cluster, user or context,
  and the first ``current-context``, win, as in kubectl): the current context or ``context``; the
  cluster's ``server``, ``certificate-authority(-data)``, ``insecure-skip-tls-verify``,
  ``tls-server-name`` and ``proxy-url`` (HTTP proxies); the user's ``client-certificate(-data)`` /
  ``client-key(-data)``, ``token`` / ``tokenFile``, ``username`` / ``password``, and ``exec``
  credential plugins (:class:`~runnerd.kube.auth.ExecCredentials`). Relative paths are relative to
  the file that names them.
- The deprecated ``auth-provider`` (gcp, oidc; removed from kubectl 1.26) is the one case handed to
  kubernetes_asyncio, imported only then; its token is read once, as before.

Guarantees: a :class:`KubeConfig`'s ``repr`` and every :class:`ConfigError` are free of
credentials; nothing here opens a connection.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runnerd.kube.auth import (
    AuthError,
    Credentials,
    ExecCredentials,
    StaticCredentials,
    TokenFile,
    basic_auth,
    load_cert_chain_data,
)
from runnerd.runtime.redact import redact

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ConfigError(Exception):
    """No usable Kubernetes configuration was found."""


@dataclass(frozen=True)
class TLSConfig:
    """How to verify the server and (optionally) present a client certificate."""

    ca_file: str | None = None
    ca_data: bytes | None = field(default=None, repr=False)
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = field(default=None, repr=False)
    key_data: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    server_name: str | None = None

    def context(self) -> ssl.SSLContext:
        """A client TLS context for these settings (reads the files now)."""
        # the cluster's CA only, when it names one (the system's CAs otherwise)
        context = ssl.create_default_context(
            cafile=self.ca_file, cadata=self.ca_data.decode() if self.ca_data else None
        )
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        elif self.cert_data and self.key_data:
            load_cert_chain_data(context, self.cert_data, self.key_data)
        return context


@dataclass(frozen=True)
class KubeConfig:
    """A loaded client configuration (server, TLS, credentials). ``repr`` shows no credentials."""

    host: str
    source: str
    """``in-cluster`` or ``kubeconfig:<path>``."""
    tls: TLSConfig = field(default_factory=TLSConfig)
    credentials: Credentials = field(default_factory=StaticCredentials, repr=False, compare=False)
    proxy: str | None = None
    """An HTTP proxy for every request (a kubeconfig cluster's ``proxy-url``)."""

    @property
    def secure(self) -> bool:
        return self.host.startswith("https:")


async def load_config(
    kubeconfig: str | os.PathLike[str] | None = None,
    *,
    context: str | None = None,
    environ: Mapping[str, str] | None = None,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
) -> KubeConfig:
    """Loads the configuration the way ``kubectl`` and controller-runtime do.

    In order: ``kubeconfig`` (a path) if given; else ``$KUBECONFIG``; else the in-cluster service
    account (when ``$KUBERNETES_SERVICE_HOST`` is set), whose token is re-read as it rotates; else
    ``~/.kube/config``.
    """
    env = os.environ if environ is None else environ
    path = _kubeconfig_path(kubeconfig, env)
    if path is None:
        try:
            return in_cluster_config(env, service_account_dir)
        except (OSError, ValueError, AuthError) as exc:
            raise ConfigError(f"in-cluster configuration: {redact(str(exc))}") from None
    try:
        merged = _read_kubeconfigs([p for p in path.split(os.pathsep) if p])
        if merged.legacy_provider(context):
            return await _legacy_provider_config(path, context, merged)
        return merged.config(context, source=f"kubeconfig:{path}")
    except ConfigError as exc:
        raise ConfigError(f"kubeconfig {path}: {exc}") from None
    except (OSError, ValueError, TypeError, KeyError, AuthError, yaml.YAMLError) as exc:
        raise ConfigError(f"kubeconfig {path}: {redact(f'{type(exc).__name__}: {exc}')}") from None


def in_cluster_config(env: Mapping[str, str], service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> KubeConfig:
    """The pod's service account: raises :class:`ValueError`/:class:`OSError` if it is not usable."""
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise ValueError("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set")
    token, ca = service_account_dir / "token", service_account_dir / "ca.crt"
    credentials = TokenFile(token)
    credentials.read()  # fail now, not at the first request
    if not ca.is_file():
        raise ValueError(f"no service-account CA at {ca}")
    server = f"[{host}]" if ":" in host else host
    return KubeConfig(
        host=f"https://{server}:{port}",
        source="in-cluster",
        tls=TLSConfig(ca_file=str(ca)),
        credentials=credentials,
    )


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


@dataclass
class _Merged:
    """Named clusters, users and contexts of one or more kubeconfig files, each with its file's directory."""

    current_context: str = ""
    clusters: dict[str, tuple[Mapping[str, Any], Path]] = field(default_factory=dict)
    users: dict[str, tuple[Mapping[str, Any], Path]] = field(default_factory=dict)
    contexts: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def add(self, document: Mapping[str, Any], base: Path) -> None:
        self.current_context = self.current_context or str(document.get("current-context") or "")
        for key, named, inner in (("clusters", self.clusters, "cluster"), ("users", self.users, "user")):
            for entry in document.get(key) or ():
                named.setdefault(str(entry["name"]), (entry.get(inner) or {}, base))
        for entry in document.get("contexts") or ():
            self.contexts.setdefault(str(entry["name"]), entry.get("context") or {})

    def _context(self, name: str | None) -> tuple[Mapping[str, Any], Path, Mapping[str, Any], Path]:
        name = name or self.current_context
        if not name:
            raise ConfigError("no current-context and no context given")
        if name not in self.contexts:
            raise ConfigError(f"no context {name!r}")
        ctx = self.contexts[name]
        if str(ctx.get("cluster") or "") not in self.clusters:
            raise ConfigError(f"context {name!r}: no cluster {ctx.get('cluster')!r}")
        cluster, cluster_base = self.clusters[str(ctx["cluster"])]
        user, user_base = self.users.get(str(ctx.get("user") or ""), ({}, cluster_base))
        return cluster, cluster_base, user, user_base

    def legacy_provider(self, name: str | None) -> bool:
        return "auth-provider" in self._context(name)[2]

    def config(self, name: str | None, *, source: str) -> KubeConfig:
        cluster, cluster_base, user, user_base = self._context(name)
        server = str(cluster.get("server") or "").rstrip("/")
        if not server:
            raise ConfigError("the context's cluster has no server")
        proxy = str(cluster.get("proxy-url") or "") or None
        if proxy and not proxy.startswith(("http://", "https://")):
            raise ConfigError("proxy-url: only HTTP(S) proxies are supported")
        return KubeConfig(
            host=server,
            source=source,
            tls=_tls(cluster, cluster_base, user, user_base),
            credentials=_credentials(user, user_base, cluster),
            proxy=proxy,
        )


def _read_kubeconfigs(paths: list[str]) -> _Merged:
    merged = _Merged()
    for path in paths:
        if len(paths) > 1 and not os.path.exists(path):
            continue  # kubectl skips missing files of a $KUBECONFIG list
        document = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(document, dict):
            raise ConfigError(f"{path} is not a kubeconfig")
        merged.add(document, Path(path).resolve().parent)
    return merged


def _resolve(base: Path, value: Any) -> str:
    return str(base / os.path.expanduser(str(value)))


def _data(section: Mapping[str, Any], key: str) -> bytes | None:
    value = section.get(f"{key}-data")
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{key}-data is not base64") from None


def _tls(
    cluster: Mapping[str, Any], cluster_base: Path, user: Mapping[str, Any], user_base: Path
) -> TLSConfig:
    def file(section: Mapping[str, Any], key: str, base: Path) -> str | None:
        return _resolve(base, section[key]) if section.get(key) and not section.get(f"{key}-data") else None

    return TLSConfig(
        ca_file=file(cluster, "certificate-authority", cluster_base),
        ca_data=_data(cluster, "certificate-authority"),
        cert_file=file(user, "client-certificate", user_base),
        key_file=file(user, "client-key", user_base),
        cert_data=_data(user, "client-certificate"),
        key_data=_data(user, "client-key"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        server_name=str(cluster.get("tls-server-name") or "") or None,
    )


def _credentials(user: Mapping[str, Any], base: Path, cluster: Mapping[str, Any]) -> Credentials:
    if user.get("exec"):
        info = {
            k: cluster[k] for k in ("server", "tls-server-name", "insecure-skip-tls-verify") if k in cluster
        }
        if cluster.get("certificate-authority-data"):
            info["certificate-authority-data"] = cluster["certificate-authority-data"]
        if cluster.get("proxy-url"):
            info["proxy-url"] = cluster["proxy-url"]
        return ExecCredentials(user["exec"], base_dir=base, cluster=info)
    if user.get("token"):
        return StaticCredentials(f"Bearer {user['token']}")
    if user.get("tokenFile"):
        return TokenFile(_resolve(base, user["tokenFile"]))
    if user.get("username") and user.get("password"):
        return basic_auth(str(user["username"]), str(user["password"]))
    return StaticCredentials()


async def _legacy_provider_config(path: str, context: str | None, merged: _Merged) -> KubeConfig:
    """``auth-provider`` (gcp/oidc): kubernetes_asyncio reads the token once; the rest is ours."""
    from kubernetes_asyncio.client import Configuration  # only for this deprecated case
    from kubernetes_asyncio.config import load_kube_config

    configuration = Configuration()
    await load_kube_config(
        config_file=path, context=context, client_configuration=configuration, persist_config=False
    )
    loaded = merged.config(context, source=f"kubeconfig:{path}")
    header = configuration.api_key.get("BearerToken")
    return KubeConfig(
        host=loaded.host,
        source=loaded.source,
        tls=loaded.tls,
        credentials=StaticCredentials(str(header) if header else None),
        proxy=loaded.proxy,
    )
