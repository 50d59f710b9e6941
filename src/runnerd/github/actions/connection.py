"""How the Actions-service clients of one scale set reach GitHub: ARC's ``proxy`` and
``githubServerTLS``, resolved (the credentials Secret and the CA ConfigMap already read).

Contract:

* :class:`Connection` holds the CA bundle (PEM text, trusted *in addition to* the system's roots,
  as ARC appends it to the system pool) and the proxies per scheme with their credentials; its
  :meth:`~Connection.digest` tells two configurations apart without keeping a password in a key;
* a ``proxy`` with any field set replaces the process's ``HTTP(S)_PROXY``/``NO_PROXY``, as ARC's
  ``httpproxy.Config`` does; without one the environment applies;
* :meth:`Connection.proxy_for` follows Go's ``golang.org/x/net/http/httpproxy`` rules: ``http://``
  URLs use the ``http`` proxy and ``https://`` URLs the ``https`` proxy; ``localhost`` and loopback
  addresses are never proxied; a ``noProxy`` entry is ``*`` (nothing is proxied), an IP address, a
  CIDR range, or a domain name that matches itself and its subdomains (with a leading ``.`` or
  ``*.``: only subdomains), each optionally with ``:port``;
* nothing here logs or renders a password (:class:`ProxyServer`'s ``repr`` hides it).
"""

from __future__ import annotations

import hashlib
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

from yarl import URL


@dataclass(frozen=True)
class ProxyServer:
    url: str
    username: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class Route:
    """Where one request goes: through ``proxy`` (with basic credentials when ``username``)."""

    proxy: str
    username: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class Connection:
    """See the module docstring. ``proxied``: a ``proxy`` was configured (the environment's is not
    used then, even where this one names no proxy for a scheme)."""

    ca_bundle: str = ""
    http_proxy: ProxyServer | None = None
    https_proxy: ProxyServer | None = None
    no_proxy: tuple[str, ...] = ()
    proxied: bool = False

    def digest(self) -> str:
        h = hashlib.sha256()
        for server in (self.http_proxy, self.https_proxy):
            parts = (server.url, server.username, server.password) if server else ("",)
            h.update("\0".join(parts).encode() + b"\1")
        h.update("\0".join((self.ca_bundle, ",".join(self.no_proxy), str(self.proxied))).encode())
        return h.hexdigest()

    def ssl_context(self) -> ssl.SSLContext | None:
        """The system's roots plus :attr:`ca_bundle` (``None`` without a bundle: the defaults).
        Raises :class:`ssl.SSLError` when the bundle holds no certificate."""
        if not self.ca_bundle.strip():
            return None
        context = ssl.create_default_context()
        context.load_verify_locations(cadata=self.ca_bundle)
        return context

    def proxy_for(self, url: str) -> Route | None:
        """The proxy for a request to ``url`` (``None``: straight there)."""
        target = URL(url)
        server = {"http": self.http_proxy, "https": self.https_proxy}.get(target.scheme)
        if server is None or not server.url or target.host is None:
            return None
        if bypassed(target.host, target.port, self.no_proxy):
            return None
        return Route(server.url, server.username, server.password)


def bypassed(host: str, port: int | None, no_proxy: Sequence[str]) -> bool:
    """Whether ``host:port`` goes straight (loopback, or matched by a ``noProxy`` entry)."""
    host = host.lower().strip("[]")
    if host == "localhost" or _loopback(host):
        return True
    return any(_matches(entry.strip().lower(), host, port) for entry in no_proxy)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port
        addr, _, rest = entry[1:].partition("]")
        return addr, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    name, sep, port = entry.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, int(port)
    return entry, None


def _matches(entry: str, host: str, port: int | None) -> bool:
    if not entry:
        return False
    if entry == "*":
        return True
    if "/" in entry:
        try:
            return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    name, want_port = _split_port(entry)
    if want_port is not None and want_port != port:
        return False
    if name.startswith("*."):
        name = name[1:]
    if name.startswith("."):
        return host.endswith(name)
    return host == name or host.endswith("." + name)
