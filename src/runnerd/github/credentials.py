"""GitHub credentials, read from a mapping shaped like ARC's credentials Secret.

ARC's Secret keys: ``github_token`` (a personal access token), or ``github_app_id``,
``github_app_installation_id`` and ``github_app_private_key`` (a GitHub App installation). As in ARC, a
token wins when both are present.

The credential objects never show their secret: ``repr``/``str`` print ``***``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from runnerd.github.errors import InvalidCredentialsError, MissingCredentialsError

TOKEN_KEY: Final = "github_token"
APP_ID_KEY: Final = "github_app_id"
INSTALLATION_ID_KEY: Final = "github_app_installation_id"
PRIVATE_KEY_KEY: Final = "github_app_private_key"

if TYPE_CHECKING:  # cryptography costs megabytes to import: only GitHub App credentials load it
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
APP_KEYS: Final = (APP_ID_KEY, INSTALLATION_ID_KEY, PRIVATE_KEY_KEY)

_REDACTED = "***"


class PersonalAccessToken:
    """A personal access token (classic or fine-grained), sent as ``Authorization: token ...``."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        token = token.strip()
        if not token:
            raise MissingCredentialsError(f"{TOKEN_KEY} is empty", missing=(TOKEN_KEY,))
        if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
            raise InvalidCredentialsError(
                f"{TOKEN_KEY} contains whitespace or non-printable characters", field=TOKEN_KEY
            )
        self._token = token

    @property
    def token(self) -> str:
        return self._token

    def __repr__(self) -> str:
        return f"PersonalAccessToken(token={_REDACTED!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PersonalAccessToken) and other._token == self._token

    def __hash__(self) -> int:
        return hash((PersonalAccessToken, self._token))


class GitHubAppCredentials:
    """A GitHub App installation: the app's ID (or client ID), the installation ID and its RSA key."""

    __slots__ = ("_private_key", "app_id", "installation_id")

    def __init__(self, *, app_id: str | int, installation_id: str | int, private_key: str | bytes) -> None:
        app_id_text = str(app_id).strip()
        if not app_id_text:
            raise MissingCredentialsError(f"{APP_ID_KEY} is empty", missing=(APP_ID_KEY,))
        if not app_id_text.isascii() or not app_id_text.isprintable() or " " in app_id_text:
            raise InvalidCredentialsError(f"{APP_ID_KEY} is not an app ID or client ID", field=APP_ID_KEY)
        self.app_id = app_id_text
        try:
            installation = int(str(installation_id).strip())
        except ValueError:
            installation = 0
        if installation <= 0:
            raise InvalidCredentialsError(
                f"{INSTALLATION_ID_KEY} must be a positive integer", field=INSTALLATION_ID_KEY
            )
        self.installation_id = installation
        self._private_key = _load_rsa_key(private_key)

    @property
    def private_key(self) -> RSAPrivateKey:
        return self._private_key

    def __repr__(self) -> str:
        return (
            f"GitHubAppCredentials(app_id={self.app_id!r}, installation_id={self.installation_id!r}, "
            f"private_key={_REDACTED!r})"
        )

    __str__ = __repr__


Credentials = PersonalAccessToken | GitHubAppCredentials


def _load_rsa_key(pem: str | bytes) -> RSAPrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    data = pem.encode() if isinstance(pem, str) else pem
    if not data.strip():
        raise MissingCredentialsError(f"{PRIVATE_KEY_KEY} is empty", missing=(PRIVATE_KEY_KEY,))
    try:
        key = serialization.load_pem_private_key(data.strip() + b"\n", password=None)
    except (ValueError, TypeError, binascii.Error):
        # cryptography's messages do not quote the key, but do not rely on that.
        raise InvalidCredentialsError(
            f"{PRIVATE_KEY_KEY} is not an unencrypted PEM private key", field=PRIVATE_KEY_KEY
        ) from None
    except Exception:  # unsupported algorithms and the like
        raise InvalidCredentialsError(f"{PRIVATE_KEY_KEY} cannot be loaded", field=PRIVATE_KEY_KEY) from None
    if not isinstance(key, RSAPrivateKey):
        raise InvalidCredentialsError(
            f"{PRIVATE_KEY_KEY} is not an RSA key (GitHub Apps sign with RS256)", field=PRIVATE_KEY_KEY
        )
    return key


def _text(data: Mapping[str, str | bytes], key: str, *, base64_encoded: bool) -> str | None:
    raw = data.get(key)
    if raw is None:
        return None
    if base64_encoded:
        try:
            raw = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidCredentialsError(f"{key} is not valid base64", field=key) from None
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidCredentialsError(f"{key} is not UTF-8 text", field=key) from None
    return raw if raw.strip() else None


def load_credentials(data: Mapping[str, str | bytes], *, base64_encoded: bool = False) -> Credentials:
    """Credentials from a Secret's data.

    ``data`` holds plain values (a Secret's ``stringData``, or ``data`` already decoded) or, with
    ``base64_encoded=True``, the base64 strings of a Secret's ``data`` as the Kubernetes API returns it.
    Surrounding whitespace (a trailing newline from ``kubectl create secret --from-file``) is ignored.

    Raises :class:`MissingCredentialsError` (which keys are missing) or :class:`InvalidCredentialsError`
    (which key is malformed).
    """
    token = _text(data, TOKEN_KEY, base64_encoded=base64_encoded)
    if token is not None:
        return PersonalAccessToken(token)
    app = {key: _text(data, key, base64_encoded=base64_encoded) for key in APP_KEYS}
    missing = tuple(key for key, value in app.items() if value is None)
    if len(missing) == len(APP_KEYS):
        raise MissingCredentialsError(
            f"no GitHub credentials: set {TOKEN_KEY}, or {', '.join(APP_KEYS)}",
            missing=(TOKEN_KEY, *APP_KEYS),
        )
    if missing:
        raise MissingCredentialsError(
            f"incomplete GitHub App credentials: missing {', '.join(missing)}", missing=missing
        )
    return GitHubAppCredentials(
        app_id=app[APP_ID_KEY] or "",
        installation_id=app[INSTALLATION_ID_KEY] or "",
        private_key=app[PRIVATE_KEY_KEY] or "",
    )
