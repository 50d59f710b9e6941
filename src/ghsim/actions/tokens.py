"""The Actions service's bearer tokens: JWTs (HS256) the simulator mints and checks itself.

Clients read the admin token's ``exp`` claim unverified (ARC refreshes when ``now + 60 s > exp``), so
the tokens are real JWTs.  Nothing is stored per token: the signature proves the simulator minted it,
the claims say what it is for.  :meth:`TokenMint.revoke` makes every token minted so far read as
expired (the "expired tokens" fault).

Guarantees: :meth:`TokenMint.verify` returns the claims only for a token this mint signed, of the
asked kind, not expired at the mint's clock time and not revoked; otherwise it raises
:class:`TokenRejected` with the reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
from typing import Any

from ..clock import Clock


class TokenRejected(Exception):
    pass


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenMint:
    def __init__(self, clock: Clock, secret: bytes | None = None) -> None:
        self.clock = clock
        self._secret = secret or secrets.token_bytes(32)
        self._serial = itertools.count(1)
        self._revoked_below: dict[str, int] = {}

    def mint(self, kind: str, ttl_s: float, **claims: Any) -> str:
        now = self.clock.now()
        body = {
            "typ": kind,
            "iss": "ghsim",
            "aud": "actions",
            "nbf": int(now),
            "iat": now,
            "exp": int(now + ttl_s),
            "jti": secrets.token_hex(8),
            "n": next(self._serial),
            **claims,
        }
        head = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{head}.{payload}.{self._sign(head, payload)}"

    def verify(self, token: str, kind: str) -> dict[str, Any]:
        parts = token.split(".")
        if len(parts) != 3 or not hmac.compare_digest(parts[2], self._sign(parts[0], parts[1])):
            raise TokenRejected("the token was not issued by this service")
        try:
            claims = json.loads(_unb64(parts[1]))
        except ValueError:
            raise TokenRejected("the token cannot be read") from None
        if not isinstance(claims, dict) or claims.get("typ") != kind:
            raise TokenRejected(f"not a {kind} token")
        now = self.clock.now()
        if now >= float(claims.get("exp", 0)):
            raise TokenRejected("the token has expired")
        if int(claims.get("n", 0)) < self._revoked_below.get(kind, 0):
            raise TokenRejected("the token has expired")
        return claims

    def revoke(self, kind: str) -> None:
        """Every token of ``kind`` minted so far is expired from now on."""
        self._revoked_below[kind] = next(self._serial)

    def _sign(self, head: str, payload: str) -> str:
        return _b64(hmac.new(self._secret, f"{head}.{payload}".encode(), hashlib.sha256).digest())


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
