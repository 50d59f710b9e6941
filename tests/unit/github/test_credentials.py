"""Credentials from an ARC-shaped Secret, their errors, and that they never show their secrets."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from runnerd.github import (
    GitHubAppCredentials,
    InvalidCredentialsError,
    MissingCredentialsError,
    PersonalAccessToken,
    load_credentials,
)
from tests.unit.github.conftest import PAT

pytestmark = pytest.mark.timeout(10)


def test_token_wins_over_app(private_key_pem: str) -> None:
    creds = load_credentials(
        {
            "github_token": PAT + "\n",
            "github_app_id": "1",
            "github_app_installation_id": "2",
            "github_app_private_key": private_key_pem,
        }
    )
    assert creds == PersonalAccessToken(PAT)
    assert isinstance(creds, PersonalAccessToken)
    assert creds.token == PAT


def test_app_credentials(private_key_pem: str) -> None:
    creds = load_credentials(
        {
            "github_app_id": b"12345",
            "github_app_installation_id": " 678 ",
            "github_app_private_key": private_key_pem.encode(),
            "github_token": "  ",  # blank counts as absent
        }
    )
    assert isinstance(creds, GitHubAppCredentials)
    assert (creds.app_id, creds.installation_id) == ("12345", 678)
    assert creds.private_key.key_size == 2048


def test_base64_secret_data(private_key_pem: str) -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    data = {
        "github_app_id": b64("Iv1.abc"),
        "github_app_installation_id": b64("9"),
        "github_app_private_key": b64(private_key_pem),
    }
    creds = load_credentials(data, base64_encoded=True)
    assert isinstance(creds, GitHubAppCredentials)
    assert creds.app_id == "Iv1.abc"
    with pytest.raises(InvalidCredentialsError, match="base64") as excinfo:
        load_credentials({"github_token": "not base64!"}, base64_encoded=True)
    assert excinfo.value.field == "github_token"


@pytest.mark.parametrize(
    ("data", "missing"),
    [
        ({}, ("github_token", "github_app_id", "github_app_installation_id", "github_app_private_key")),
        (
            {"github_token": ""},
            ("github_token", "github_app_id", "github_app_installation_id", "github_app_private_key"),
        ),
        ({"github_app_id": "1"}, ("github_app_installation_id", "github_app_private_key")),
        ({"github_app_id": "1", "github_app_installation_id": "2"}, ("github_app_private_key",)),
    ],
)
def test_missing(data: dict[str, str], missing: tuple[str, ...]) -> None:
    with pytest.raises(MissingCredentialsError) as excinfo:
        load_credentials(data)
    assert excinfo.value.missing == missing
    assert excinfo.value.reason == "MissingGitHubCredentials"


def _ec_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"github_app_installation_id": "abc"}, "github_app_installation_id"),
        ({"github_app_installation_id": "-3"}, "github_app_installation_id"),
        (
            {
                "github_app_private_key": (
                    "-----BEGIN RSA PRIVATE KEY-----\nnope\n-----END RSA PRIVATE KEY-----"
                )
            },
            "github_app_private_key",
        ),
        ({"github_app_private_key": "just text"}, "github_app_private_key"),
        ({"github_app_private_key": _ec_key_pem()}, "github_app_private_key"),
        ({"github_app_id": "1 2"}, "github_app_id"),
    ],
)
def test_invalid_app_fields(private_key_pem: str, overrides: dict[str, str], field: str) -> None:
    data = {
        "github_app_id": "1",
        "github_app_installation_id": "2",
        "github_app_private_key": private_key_pem,
        **overrides,
    }
    with pytest.raises(InvalidCredentialsError) as excinfo:
        load_credentials(data)
    assert excinfo.value.field == field
    assert excinfo.value.reason == "InvalidGitHubCredentials"
    assert "nope" not in str(excinfo.value)
    assert excinfo.value.__cause__ is None


@pytest.mark.parametrize("token", ["ghp_a b", "ghp_\x00x", "ghp_é"])
def test_invalid_token(token: str) -> None:
    with pytest.raises(InvalidCredentialsError) as excinfo:
        load_credentials({"github_token": token})
    assert token not in str(excinfo.value)


def test_reprs_redact_secrets(private_key_pem: str) -> None:
    pat = PersonalAccessToken(PAT)
    app = GitHubAppCredentials(app_id="1", installation_id=2, private_key=private_key_pem)
    for text in (repr(pat), str(pat), repr(app), str(app), repr([pat, app]), f"{pat!r} {app}"):
        assert PAT not in text
        assert "PRIVATE KEY" not in text
        assert "***" in text
    assert repr(app) == "GitHubAppCredentials(app_id='1', installation_id=2, private_key='***')"
    assert not hasattr(pat, "__dict__")  # nothing else (vars(), pickling helpers) exposes the token
