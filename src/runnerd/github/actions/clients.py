"""Actions-service clients by configuration: implements :class:`ScaleSetClients`.

One :class:`ActionsClient` per (``githubConfigUrl``, contents of ``githubConfigSecret``, resolved
``proxy``/``githubServerTLS``): scale sets that share all three share the admin token and the
connection pool; a rotated Secret gets a new client
(the old one stays until :meth:`ActionsClients.close`, since callers may still hold it). The cache key
holds digests of the Secret's and the connection's contents, so no credential is kept outside the
client that uses it.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import ssl
import time
from collections.abc import Mapping
from typing import Any

from runnerd.github.actions.client import ActionsClient
from runnerd.github.actions.config import ConfigURL
from runnerd.github.actions.connection import Connection
from runnerd.github.actions.errors import ActionsServiceError
from runnerd.github.budget import CallStats, Clock, Draw, Sleep
from runnerd.github.credentials import load_credentials


def secret_digest(secret: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for key in sorted(secret):
        digest.update(key.encode() + b"\0" + str(secret[key]).strip().encode() + b"\0")
    return digest.hexdigest()


class ActionsClients:
    """See the module docstring. All clients count their calls in one :attr:`stats`."""

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        draw: Draw = random.random,
        stats: CallStats | None = None,
        **client_options: Any,
    ) -> None:
        self.stats = stats or CallStats()
        self._clock = clock
        self._sleep = sleep
        self._draw = draw
        self._options = client_options
        self._clients: dict[tuple[str, str, str], ActionsClient] = {}

    async def for_config(
        self, config_url: str, secret: Mapping[str, str], connection: Connection | None = None
    ) -> ActionsClient:
        """The client of ``config_url`` with the credentials in ``secret``, connecting as
        ``connection`` says (raises :class:`~runnerd.github.errors.GitHubConfigError`, a credentials
        error, or :class:`ActionsServiceError` ``CertificateInvalid`` for an unusable CA bundle)."""
        config = ConfigURL.parse(config_url)
        connection = connection or Connection()
        key = (config.url, secret_digest(secret), connection.digest())
        client = self._clients.get(key)
        if client is None:
            client = self._new(config, secret, connection)
            self._clients[key] = client
        return client

    def _new(self, config: ConfigURL, secret: Mapping[str, str], connection: Connection) -> ActionsClient:
        try:
            return ActionsClient(
                config,
                load_credentials(secret),
                clock=self._clock,
                sleep=self._sleep,
                draw=self._draw,
                stats=self.stats,
                connection=connection,
                **self._options,
            )
        except ssl.SSLError:
            raise ActionsServiceError(
                0, "CertificateInvalid", "githubServerTLS: the CA bundle holds no usable certificate"
            ) from None

    def __len__(self) -> int:
        return len(self._clients)

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
