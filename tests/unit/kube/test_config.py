"""Loading a kubeconfig or the in-cluster service account, without kubernetes_asyncio."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from devcluster.pki import Pki
from runnerd.kube.auth import ExecCredentials, TokenFile
from runnerd.kube.config import ConfigError, TLSConfig, load_config
from tests.unit.kube.conftest import b64, kubeconfig

SERVER = "https://10.1.2.3:6443"


@pytest.mark.parametrize(
    ("cluster", "user", "header", "tls", "proxy"),
    [
        ({"insecure-skip-tls-verify": True}, {"token": "t0k"}, "Bearer t0k", TLSConfig(insecure=True), None),
        (
            {"certificate-authority": "ca.crt", "tls-server-name": "kubernetes"},
            {"username": "ann", "password": "pw"},
            "Basic YW5uOnB3",
            TLSConfig(ca_file="DIR/ca.crt", server_name="kubernetes"),
            None,
        ),
        (
            {"certificate-authority-data": "Q0E=", "proxy-url": "http://proxy:3128"},
            {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"},
            None,
            TLSConfig(ca_data=b"CA", cert_data=b"CERT", key_data=b"KEY"),
            "http://proxy:3128",
        ),
        (
            {},
            {"client-certificate": "certs/me.crt", "client-key": "/abs/me.key"},
            None,
            TLSConfig(cert_file="DIR/certs/me.crt", key_file="/abs/me.key"),
            None,
        ),
        ({}, {"token": "static", "tokenFile": "ignored"}, "Bearer static", TLSConfig(), None),
    ],
)
async def test_kubeconfig_fields(
    tmp_path: Path,
    cluster: dict[str, Any],
    user: dict[str, Any],
    header: str | None,
    tls: TLSConfig,
    proxy: str | None,
) -> None:
    path = kubeconfig(tmp_path / "config", server=SERVER + "/", cluster=cluster, user=user)
    config = await load_config(path)
    assert config.host == SERVER
    assert config.source == f"kubeconfig:{path}"
    assert config.proxy == proxy
    for name in ("ca_file", "cert_file", "key_file"):
        expected = getattr(tls, name)
        assert getattr(config.tls, name) == (expected.replace("DIR", str(tmp_path)) if expected else None)
    assert (config.tls.ca_data, config.tls.cert_data, config.tls.key_data) == (
        tls.ca_data,
        tls.cert_data,
        tls.key_data,
    )
    assert (config.tls.insecure, config.tls.server_name) == (tls.insecure, tls.server_name)
    assert await config.credentials.authorization(None) == header
    for secret in ("t0k", "pw", "static", "Q0VSVA"):
        assert secret not in repr(config)


async def test_token_file_is_relative_to_its_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    config = await load_config(kubeconfig(tmp_path / "config", server=SERVER, user={"tokenFile": "token"}))
    assert isinstance(config.credentials, TokenFile)
    assert await config.credentials.authorization(None) == "Bearer from-file"


async def test_exec_plugin_is_configured(tmp_path: Path) -> None:
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "bin/plugin", "args": ["a"]}}
    config = await load_config(kubeconfig(tmp_path / "config", server=SERVER, user=user))
    assert isinstance(config.credentials, ExecCredentials)
    assert config.credentials.command == str(tmp_path / "bin/plugin")
    assert config.credentials.args == ["a"]


async def test_context_and_merged_files(tmp_path: Path) -> None:
    first = {
        "current-context": "one",
        "clusters": [{"name": "k", "cluster": {"server": "https://first:1"}}],
        "users": [{"name": "u", "user": {"token": "first"}}],
        "contexts": [{"name": "one", "context": {"cluster": "k", "user": "u"}}],
    }
    second = {
        "current-context": "two",
        "clusters": [
            {"name": "k", "cluster": {"server": "https://ignored:2"}},
            {"name": "k2", "cluster": {"server": "https://second:2"}},
        ],
        "contexts": [{"name": "two", "context": {"cluster": "k2", "user": "u"}}],
    }
    (tmp_path / "a").write_text(json.dumps(first))
    (tmp_path / "b").write_text(json.dumps(second))
    paths = os.pathsep.join(str(tmp_path / n) for n in ("a", "missing", "b"))
    assert (await load_config(paths)).host == "https://first:1"
    chosen = await load_config(paths, context="two")
    assert chosen.host == "https://second:2"
    assert await chosen.credentials.authorization(None) == "Bearer first"
    with pytest.raises(ConfigError, match="no context 'three'"):
        await load_config(paths, context="three")


@pytest.mark.parametrize(
    ("cluster", "user", "message"),
    [
        ({"proxy-url": "socks5://p:1080"}, {}, "only HTTP"),
        ({"certificate-authority-data": "not base64!"}, {}, "not base64"),
        ({}, {"exec": {"apiVersion": "v1", "command": "x"}}, "unsupported apiVersion"),
    ],
)
async def test_unusable_kubeconfigs(
    tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        await load_config(kubeconfig(tmp_path / "config", server=SERVER, cluster=cluster, user=user))


async def test_in_cluster(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_text("CA")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    config = await load_config(environ=env, service_account_dir=tmp_path)
    assert (config.host, config.source, config.tls.ca_file) == (
        "https://[fd00::1]:443",
        "in-cluster",
        str(tmp_path / "ca.crt"),
    )
    assert await config.credentials.authorization(None) == "Bearer sa-token"
    (tmp_path / "ca.crt").unlink()
    with pytest.raises(ConfigError, match=r"in-cluster.*no service-account CA"):
        await load_config(environ=env, service_account_dir=tmp_path)


def test_tls_contexts(test_pki: Pki) -> None:
    from_files = TLSConfig(
        ca_file=str(test_pki.ca_crt), cert_file=str(test_pki.admin_crt), key_file=str(test_pki.admin_key)
    )
    from_data = TLSConfig(
        ca_data=test_pki.ca_crt.read_bytes(),
        cert_data=test_pki.admin_crt.read_bytes(),
        key_data=test_pki.admin_key.read_bytes(),
    )
    for tls in (from_files, from_data):
        context = tls.context()
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert len(context.get_ca_certs()) == 1  # the cluster's CA only
    insecure = TLSConfig(insecure=True).context()
    assert (insecure.verify_mode, insecure.check_hostname) == (ssl.CERT_NONE, False)


def test_normal_paths_do_not_import_kubernetes_asyncio(tmp_path: Path, test_pki: Pki) -> None:
    """With a kubeconfig (certificates, a token) or in-cluster, the generated client is never loaded
    (nor PyJWT and cryptography, which only GitHub App credentials and scale sets need)."""
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_bytes(test_pki.ca_crt.read_bytes())
    certs = kubeconfig(
        tmp_path / "certs",
        server="https://127.0.0.1:1",
        cluster={"certificate-authority-data": b64(test_pki.ca_crt)},
        user={"client-certificate-data": b64(test_pki.admin_crt), "client-key-data": b64(test_pki.admin_key)},
    )
    token = kubeconfig(tmp_path / "token-config", server="https://127.0.0.1:1", user={"token": "x"})
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        import runnerd.cli, runnerd.controller.app
        from runnerd.kube.client import KubeClient
        from runnerd.kube.config import load_config

        async def main():
            env = {{"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "1"}}
            configs = [await load_config({str(certs)!r}), await load_config({str(token)!r}),
                       await load_config(environ=env, service_account_dir=Path({str(tmp_path)!r}))]
            for config in configs:
                async with KubeClient(config, request_timeout=2) as kube:
                    try:
                        await kube.request("GET", "/version")
                    except Exception:
                        pass  # nothing listens: only the imports matter
        asyncio.run(main())
        heavy = ("kubernetes_asyncio", "jwt", "cryptography")  # 38 and 9 MiB; PAT credentials need neither
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
