"""How a request to the Kubernetes API authenticates: the ``Authorization`` header, and exec plugins.

A :class:`Credentials` gives the header for the next request (``None``: none, e.g. client
certificates only) and may load a client certificate into the connection's TLS context first;
:meth:`Credentials.invalidate` (called on a 401) makes the next request fetch afresh.

- :class:`StaticCredentials`: a fixed header (a kubeconfig ``token``, ``username``/``password``).
- :class:`TokenFile`: a bearer token read from a file and re-read at least every minute and after a
  401, as client-go does, so a rotated service-account token (or a kubeconfig ``tokenFile``) is
  picked up without a restart.
- :class:`ExecCredentials`: a client-go credential plugin (``users[].user.exec``): runs the command
  with ``KUBERNETES_EXEC_INFO`` and reads an ``ExecCredential`` (``status.token``, or
  ``clientCertificateData``/``clientKeyData``) from its output; the result is kept until its
  ``expirationTimestamp`` (less a margin) or a 401, then the command runs again. One run at a time.

Guarantees: no credential appears in a ``repr``, a log line or an exception message (plugin
output and stderr are redacted); certificates from data are loaded through files in a private
temporary directory that is removed at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from runnerd.runtime.redact import redact

__all__ = [
    "AuthError",
    "Credentials",
    "ExecCredentials",
    "ExecResult",
    "StaticCredentials",
    "TokenFile",
    "basic_auth",
    "load_cert_chain_data",
]

TOKEN_FILE_PERIOD = 60.0
"""A token file is re-read at least this often (seconds), as client-go does."""
EXEC_EXPIRY_MARGIN = 10.0
"""An exec credential is renewed this long (seconds) before its ``expirationTimestamp``."""
EXEC_TIMEOUT = 60.0
"""A credential plugin that has not answered within this many seconds fails."""


class AuthError(Exception):
    """Credentials could not be obtained (a token file unreadable, a plugin that failed)."""


class Credentials(Protocol):
    async def authorization(self, tls: ssl.SSLContext | None) -> str | None:
        """The ``Authorization`` header for the next request (loading a client certificate into
        ``tls`` first where the credentials are certificates)."""
        ...

    def invalidate(self) -> None:
        """The server answered 401: fetch afresh for the next request."""
        ...


@dataclass(frozen=True)
class StaticCredentials:
    """A fixed header, or none (``header=None``: client certificates or no authentication)."""

    header: str | None = field(default=None, repr=False)

    async def authorization(self, tls: ssl.SSLContext | None) -> str | None:
        return self.header

    def invalidate(self) -> None:
        pass


def basic_auth(username: str, password: str) -> StaticCredentials:
    return StaticCredentials("Basic " + base64.b64encode(f"{username}:{password}".encode()).decode())


class TokenFile:
    """A bearer token in a file, re-read every :data:`TOKEN_FILE_PERIOD` seconds and after a 401."""

    def __init__(self, path: str | os.PathLike[str], *, period: float = TOKEN_FILE_PERIOD) -> None:
        self.path = Path(path)
        self.period = period
        self._token = ""
        self._read_at: float | None = None

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r})"

    def read(self) -> str:
        """The token now (re-read from the file when due); raises :class:`AuthError`."""
        now = time.monotonic()
        if self._read_at is None or now - self._read_at >= self.period:
            try:
                token = self.path.read_text().strip()
            except OSError as exc:
                raise AuthError(f"token file {self.path}: {exc.strerror or exc}") from None
            if not token:
                raise AuthError(f"token file {self.path} is empty")
            self._token, self._read_at = token, now
        return self._token

    async def authorization(self, tls: ssl.SSLContext | None) -> str | None:
        return f"Bearer {self.read()}"

    def invalidate(self) -> None:
        self._read_at = None


def load_cert_chain_data(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """Load a PEM client certificate and key given as data (``ssl`` only reads files)."""
    with tempfile.TemporaryDirectory(prefix="runnerd-tls-") as directory:
        cert_path, key_path = Path(directory, "tls.crt"), Path(directory, "tls.key")
        for path, data in ((cert_path, cert), (key_path, key)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
        context.load_cert_chain(cert_path, key_path)


@dataclass(frozen=True)
class ExecResult:
    token: str | None = field(repr=False)
    cert: bytes | None = field(repr=False)
    key: bytes | None = field(repr=False)
    expires: float | None
    """``time.time()`` at which to run the plugin again (``None``: only after a 401)."""


class ExecCredentials:
    """A client-go credential plugin (``exec`` in a kubeconfig user), see the module docstring."""

    def __init__(
        self, spec: Mapping[str, Any], *, base_dir: Path, cluster: Mapping[str, Any] | None = None
    ) -> None:
        self.api_version = str(spec.get("apiVersion") or "")
        if not self.api_version.startswith("client.authentication.k8s.io/"):
            raise AuthError(f"exec plugin: unsupported apiVersion {self.api_version!r}")
        command = str(spec.get("command") or "")
        if not command:
            raise AuthError("exec plugin: no command")
        if spec.get("interactiveMode") == "Always":
            raise AuthError("exec plugin: interactiveMode Always needs a terminal; the controller has none")
        # like kubectl: a relative path with a separator is relative to the kubeconfig's directory
        self.command = (
            str(base_dir / command) if os.sep in command and not os.path.isabs(command) else command
        )
        self.args = [str(a) for a in spec.get("args") or ()]
        self.env = {str(e["name"]): str(e["value"]) for e in spec.get("env") or ()}
        self.cluster = cluster if spec.get("provideClusterInfo") else None
        self._result: ExecResult | None = None
        self._loaded: tuple[int, int] | None = None  # (id of the context, id of the result) loaded
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"ExecCredentials({self.command!r})"

    async def authorization(self, tls: ssl.SSLContext | None) -> str | None:
        result = await self._current()
        loaded = (id(tls), id(result))
        if result.cert is not None and result.key is not None and tls is not None and self._loaded != loaded:
            load_cert_chain_data(tls, result.cert, result.key)
            self._loaded = loaded
        return f"Bearer {result.token}" if result.token else None

    def invalidate(self) -> None:
        self._result = None

    async def _current(self) -> ExecResult:
        async with self._lock:
            result = self._result
            if result is None or (result.expires is not None and time.time() >= result.expires):
                result = self._result = await self._run()
            return result

    def _exec_info(self) -> str:
        spec: dict[str, Any] = {"interactive": False}
        if self.cluster is not None:
            spec["cluster"] = dict(self.cluster)
        return json.dumps({"apiVersion": self.api_version, "kind": "ExecCredential", "spec": spec})

    async def _run(self) -> ExecResult:
        env = {**os.environ, **self.env, "KUBERNETES_EXEC_INFO": self._exec_info()}
        try:
            process = await asyncio.create_subprocess_exec(
                self.command,
                *self.args,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise AuthError(f"exec plugin {self.command}: {exc.strerror or exc}") from None
        try:
            out, err = await asyncio.wait_for(process.communicate(), EXEC_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AuthError(f"exec plugin {self.command}: no answer within {EXEC_TIMEOUT:.0f} s") from None
        if process.returncode != 0:
            detail = redact(err.decode("utf-8", "replace").strip()[-500:])
            raise AuthError(f"exec plugin {self.command} exited {process.returncode}: {detail}")
        return parse_exec_credential(out, self.api_version)


def parse_exec_credential(output: bytes, api_version: str) -> ExecResult:
    """An ``ExecCredential``'s status; raises :class:`AuthError` (never quoting the output)."""
    try:
        decoded = json.loads(output)
    except ValueError:
        raise AuthError("exec plugin: its output is not JSON") from None
    if not isinstance(decoded, dict) or decoded.get("kind") != "ExecCredential":
        raise AuthError("exec plugin: its output is not an ExecCredential")
    if decoded.get("apiVersion") != api_version:
        raise AuthError(f"exec plugin: answered {decoded.get('apiVersion')!r}, asked {api_version!r}")
    status = decoded.get("status") or {}
    token = status.get("token") or None
    cert = status.get("clientCertificateData") or None
    key = status.get("clientKeyData") or None
    if token is None and (cert is None or key is None):
        raise AuthError("exec plugin: no token and no client certificate and key in its status")
    expires: float | None = None
    if status.get("expirationTimestamp"):
        try:
            moment = datetime.fromisoformat(str(status["expirationTimestamp"]))
        except ValueError:
            raise AuthError("exec plugin: unreadable expirationTimestamp") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        expires = moment.timestamp() - EXEC_EXPIRY_MARGIN
    return ExecResult(
        token=str(token) if token else None,
        cert=str(cert).encode() if cert else None,
        key=str(key).encode() if key else None,
        expires=expires,
    )
