"""Credentials: token files re-read as they rotate, exec credential plugins with expiry."""

from __future__ import annotations

import json
import ssl
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devcluster.pki import Pki
from runnerd.kube.auth import (
    EXEC_EXPIRY_MARGIN,
    AuthError,
    ExecCredentials,
    TokenFile,
    basic_auth,
    parse_exec_credential,
)

V1 = "client.authentication.k8s.io/v1"

PLUGIN = """\
import json, os, sys
from pathlib import Path
runs = Path(os.environ["RUNS"])
runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
Path(os.environ["INFO"]).write_text(json.dumps(info))
if os.environ.get("FAIL"):
    print("token=hunter2 refused", file=sys.stderr)
    sys.exit(3)
status = json.loads(os.environ["STATUS"])
status.setdefault("token", "tok-" + str(len(runs.read_text())))
print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}))
"""


def plugin(tmp_path: Path, status: dict[str, Any], **env: str) -> ExecCredentials:
    script = tmp_path / "plugin.py"
    script.write_text(PLUGIN)
    variables = {
        "RUNS": str(tmp_path / "runs"),
        "INFO": str(tmp_path / "info"),
        "STATUS": json.dumps(status),
        **env,
    }
    spec = {
        "apiVersion": V1,
        "command": sys.executable,
        "args": [str(script)],
        "env": [{"name": k, "value": v} for k, v in variables.items()],
        "provideClusterInfo": True,
    }
    return ExecCredentials(spec, base_dir=tmp_path, cluster={"server": "https://k:6443"})


def runs(tmp_path: Path) -> int:
    return len((tmp_path / "runs").read_text())


def in_(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_exec_token_is_kept_until_it_expires_or_is_refused(tmp_path: Path) -> None:
    credentials = plugin(tmp_path, {"expirationTimestamp": in_(3600)})
    assert await credentials.authorization(None) == "Bearer tok-1"
    assert await credentials.authorization(None) == "Bearer tok-1"
    assert runs(tmp_path) == 1
    info = json.loads((tmp_path / "info").read_text())
    assert info["spec"] == {"interactive": False, "cluster": {"server": "https://k:6443"}}
    credentials.invalidate()  # a 401
    assert await credentials.authorization(None) == "Bearer tok-2"


async def test_an_expiring_exec_token_is_renewed(tmp_path: Path) -> None:
    credentials = plugin(tmp_path, {"expirationTimestamp": in_(EXEC_EXPIRY_MARGIN / 2)})
    assert await credentials.authorization(None) == "Bearer tok-1"
    assert await credentials.authorization(None) == "Bearer tok-2"


async def test_exec_client_certificates_are_loaded(tmp_path: Path, test_pki: Pki) -> None:
    status = {
        "token": "",
        "clientCertificateData": test_pki.admin_crt.read_text(),
        "clientKeyData": test_pki.admin_key.read_text(),
    }
    credentials = plugin(tmp_path, status)
    context = ssl.create_default_context()
    assert await credentials.authorization(context) is None
    assert await credentials.authorization(context) is None
    assert runs(tmp_path) == 1


async def test_a_failing_plugin_is_reported_redacted(tmp_path: Path) -> None:
    credentials = plugin(tmp_path, {}, FAIL="1")
    with pytest.raises(AuthError, match="exited 3") as caught:
        await credentials.authorization(None)
    assert "hunter2" not in str(caught.value)
    missing = ExecCredentials({"apiVersion": V1, "command": "/nonexistent/plugin"}, base_dir=tmp_path)
    with pytest.raises(AuthError, match="/nonexistent/plugin"):
        await missing.authorization(None)


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (b"token: abc", "not JSON"),
        (b'{"kind": "Other"}', "not an ExecCredential"),
        (b'{"kind": "ExecCredential", "apiVersion": "client.authentication.k8s.io/v1beta1"}', "answered"),
        (b'{"kind": "ExecCredential", "apiVersion": "%s", "status": {}}' % V1.encode(), "no token"),
        (
            b'{"kind": "ExecCredential", "apiVersion": "%s", '
            b'"status": {"token": "s3cr3t", "expirationTimestamp": "soon"}}' % V1.encode(),
            "unreadable expirationTimestamp",
        ),
    ],
)
def test_bad_exec_credentials(output: bytes, message: str) -> None:
    with pytest.raises(AuthError, match=message) as caught:
        parse_exec_credential(output, V1)
    assert "s3cr3t" not in str(caught.value)


def test_exec_credential_expiry() -> None:
    output = json.dumps(
        {
            "kind": "ExecCredential",
            "apiVersion": V1,
            "status": {"token": "t", "expirationTimestamp": "2030-01-01T00:00:00Z"},
        }
    ).encode()
    result = parse_exec_credential(output, V1)
    assert result.expires == datetime(2030, 1, 1, tzinfo=UTC).timestamp() - EXEC_EXPIRY_MARGIN
    assert "'t'" not in repr(result)


async def test_token_file_rotation(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("one\n")
    token = TokenFile(path, period=3600)
    assert await token.authorization(None) == "Bearer one"
    path.write_text("two")
    assert await token.authorization(None) == "Bearer one"  # within the period
    token.invalidate()
    assert await token.authorization(None) == "Bearer two"
    assert await TokenFile(path, period=0).authorization(None) == "Bearer two"
    path.write_text("")
    with pytest.raises(AuthError, match="empty"):
        TokenFile(path).read()
    assert "two" not in repr(token)


def test_basic_auth() -> None:
    assert basic_auth("a", "b").header == "Basic YTpi"
    assert "YTpi" not in repr(basic_auth("a", "b"))
