"""The Helm chart installed for real: the real helm against the local control plane.

* The article's command, word for word, from the directory that holds the chart.
* The GitHub App variant; its Secret gives the controller App credentials that work (against ghsim).
* ``helm lint`` and the schema naming a mistyped key.
* The RBAC proof: ``runnerd controller`` runs with the args and env of the chart's Deployment and the
  token of the chart's ServiceAccount (TokenRequest API), drives the article's RunnerDeployment and
  HorizontalRunnerAutoscaler through a job, and every request it makes passes through a recording
  proxy: none is refused, and every permission the chart grants was used or is accounted for. That
  identity cannot read Secrets of namespaces it does not serve.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from yarl import URL

from devcluster import binaries
from devcluster.cluster import Cluster, free_port
from devcluster.wait import wait_until
from ghsim import JobSpec, Simulator
from ghsim.entities import Scope as SimScope
from runnerd import cli, migrate
from runnerd.cli import credentials_from_env
from runnerd.controller.common import (
    HORIZONTAL_RUNNER_AUTOSCALERS,
    RUNNER_DEPLOYMENTS,
    RUNNER_REPLICA_SETS,
    RUNNERS,
    controller_ref,
)
from runnerd.controller.journal import ReservationJournal, journal_informer
from runnerd.controller.reservation_writer import utcnow
from runnerd.github import GitHubClient, GitHubConfig, Scope, load_credentials
from runnerd.github.credentials import GitHubAppCredentials
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import CONFIGMAPS, DEPLOYMENTS, PODS, SECRETS
from runnerd.reconcile.journal import HRA_LABEL, decode
from runnerd.runtime import Forbidden, Key, Manager
from tests.integration.support import (
    ARTICLE_HRA,
    ARTICLE_RD,
    REPO,
    controller_process,
    pod_agent,
    resolve_env,
    seed,
)
from tests.unit.chart.test_rbac import KUBERNETES_MODE_ESCALATION, KUBERNETES_MODE_REQUESTS

pytestmark = [pytest.mark.timeout(120)]

CHART = Path(__file__).resolve().parents[2] / "charts" / "actions-runner-controller"
GROUP = "actions.summerwind.dev"

# The article's install command, as printed there (run from the directory holding the chart).
ARTICLE_COMMAND = """helm upgrade --install actions-runner-controller ./actions-runner-controller \\
  --namespace actions-runner-system \\
  --create-namespace \\
  --set authSecret.create=true \\
  --set authSecret.github_token="${GITHUB_TOKEN}"
"""

# Keys ARC users keep in their values files (written for ARC's legacy chart 0.23).
ARC_USER_VALUES = """
replicaCount: 2
syncPeriod: 1m
defaultScaleDownDelay: 10m
enableLeaderElection: true
githubEnterpriseServerURL: https://github.example.com
authSecret:
  enabled: true
  create: false
  name: controller-manager
  annotations: {}
image:
  repository: ghcr.io/runnerd/runnerd
  pullPolicy: IfNotPresent
  actionsRunnerRepositoryAndTag: summerwind/actions-runner:latest
  dindSidecarRepositoryAndTag: docker:dind
  actionsRunnerImagePullSecrets: [regcred]
imagePullSecrets:
  - name: regcred
dockerRegistryMirror: https://mirror.example.com
dockerGID: 121
runner:
  statusUpdateHook:
    enabled: false
rbac:
  allowGrantingKubernetesContainerModePermissions: true
serviceAccount:
  create: true
  annotations: {}
  name: ""
podAnnotations: {a: b}
podLabels: {team: ci}
service:
  type: ClusterIP
  port: 443
  annotations: {}
webhookPort: 9443
metrics:
  serviceAnnotations: {}
  serviceMonitor:
    enable: true
    namespace: ""
    timeout: 30s
    interval: 1m
  serviceMonitorLabels: {release: prom}
  port: 8443
  proxy:
    enabled: true
    image: {repository: quay.io/brancz/kube-rbac-proxy, tag: v0.13.1}
resources:
  limits: {cpu: 100m}
nodeSelector: {kubernetes.io/os: linux}
tolerations: []
affinity: {}
podDisruptionBudget:
  enabled: true
  minAvailable: 1
priorityClassName: ""
env:
  https_proxy: http://proxy:3128
  no_proxy: .svc
scope:
  singleNamespace: false
  watchNamespace: ""
certManagerEnabled: true
admissionWebHooks:
  caBundle: Q0E=
logLevel: debug
logFormat: json
githubWebhookServer:
  enabled: true
  replicaCount: 1
  useRunnerGroupsVisibility: false
  logFormat: text
  secret:
    enabled: false
    create: true
    name: github-webhook-server
    github_webhook_secret_token: s
  serviceAccount: {create: true, annotations: {}, name: ""}
  service:
    type: ClusterIP
    annotations: {}
    ports:
      - {port: 80, targetPort: http, protocol: TCP, name: http}
  ingress:
    enabled: true
    ingressClassName: nginx
    annotations: {}
    hosts:
      - host: arc.example.com
        paths:
          - {path: /, pathType: Prefix}
    tls: []
  podDisruptionBudget: {enabled: false}
  queueLimit: 100
  terminationGracePeriodSeconds: 10
  lifecycle: {}
actionsMetricsServer:
  enabled: false
"""


# --------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def helm_bin() -> Path:
    return binaries.ensure().path("helm")


def helm_env(helm_bin: Path, home: Path, kubeconfig: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "HELM_"))}
    env["PATH"] = f"{helm_bin.parent}{os.pathsep}{env.get('PATH', '')}"
    for var in ("CACHE", "CONFIG", "DATA"):
        env[f"HELM_{var}_HOME"] = str(home / var.lower())
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return env


def run_helm(
    helm_bin: Path, home: Path, *args: str, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """helm with its homes under ``home``; never given a secret on its command line."""
    return subprocess.run(
        [str(helm_bin), *args],
        env=helm_env(helm_bin, home, kubeconfig),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def install(
    cluster: Cluster, helm_bin: Path, tmp: Path, release: str, ns: str, values: dict[str, Any]
) -> str:
    """``helm upgrade --install`` with a values file (0600: it may hold a token); returns the notes."""
    path = tmp / f"{release}-values.yaml"
    path.write_text(yaml.safe_dump(values))
    path.chmod(0o600)
    proc = run_helm(
        helm_bin, tmp / "helm", "upgrade", "--install", release, str(CHART), "--namespace", ns,
        "-f", str(path), kubeconfig=cluster.kubeconfig,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def manifest(cluster: Cluster, helm_bin: Path, tmp: Path, release: str, ns: str) -> list[dict[str, Any]]:
    proc = run_helm(
        helm_bin, tmp / "helm", "get", "manifest", release, "--namespace", ns, kubeconfig=cluster.kubeconfig
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def uninstall(cluster: Cluster, helm_bin: Path, tmp: Path, release: str, ns: str) -> None:
    run_helm(helm_bin, tmp / "helm", "uninstall", release, "--namespace", ns, kubeconfig=cluster.kubeconfig)


def get(cluster: Cluster, path: str) -> Any:
    return cluster.request("GET", path)


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name
    ]
    assert found, f"no container {name}"
    return found[0]


def env_sources(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env") or ()}


def ca_file(cluster: Cluster) -> str:
    admin = json.loads(cluster.kubeconfig.read_text())
    return str(admin["clusters"][0]["cluster"]["certificate-authority"])


def write_kubeconfig(path: Path, server: str, token: str, ca: str | None) -> Path:
    cluster: dict[str, Any] = {"server": server}
    if ca:
        cluster["certificate-authority"] = ca
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "sa"}}],
        "current-context": "c",
    }
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    return path


def service_account_token(cluster: Cluster, ns: str, sa: str) -> str:
    """A token of the ServiceAccount from the TokenRequest API."""
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }
    answer = cluster.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token", body)
    return str(answer["status"]["token"])


# ------------------------------------------------------------------- (a) the article's command
def namespace_gone(cluster: Cluster, name: str, within: float = 60.0) -> bool:
    """Whether the namespace is gone (waiting while it terminates): the article's fixed namespace is
    shared with other tests of the session (test_crds.py applies the article's manifests there)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            cluster.request("GET", f"/api/v1/namespaces/{name}")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return True
            raise
        time.sleep(0.2)
    return False


def test_article_command_installs_the_chart(cluster: Cluster, helm_bin: Path, tmp_path: Path) -> None:
    ns = "actions-runner-system"
    get_ns = cluster.kubectl("get", "namespace", ns, "-o", "jsonpath={.status.phase}", check=False)
    if get_ns.stdout == "Terminating":
        assert namespace_gone(cluster, ns), f"{ns} left terminating by an earlier test"
    parent = tmp_path / "work"
    shutil.copytree(CHART, parent / "actions-runner-controller")
    env = helm_env(helm_bin, tmp_path / "helm", cluster.kubeconfig)
    env["GITHUB_TOKEN"] = "ghp_" + "article0token0for0the0chart0test"[:36]
    try:
        for revision in (1, 2):  # upgrade --install: the same command again upgrades in place
            proc = subprocess.run(
                ["bash", "-c", ARTICLE_COMMAND], cwd=parent, env=env, capture_output=True, text=True,
                timeout=90, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            assert f"REVISION: {revision}" in proc.stdout
        notes = proc.stdout
        assert "No cert-manager is needed" in notes
        assert "kind: RunnerDeployment" in notes

        secret = get(cluster, f"/api/v1/namespaces/{ns}/secrets/controller-manager")
        assert set(secret["data"]) == {"github_token"}
        assert base64.b64decode(secret["data"]["github_token"]).decode() == env["GITHUB_TOKEN"]

        sa = "actions-runner-controller"
        get(cluster, f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}")
        deployment = get(cluster, f"/apis/apps/v1/namespaces/{ns}/deployments/actions-runner-controller")
        pod_spec = deployment["spec"]["template"]["spec"]
        assert pod_spec["serviceAccountName"] == sa
        assert deployment["spec"]["replicas"] == 1
        manager = container(deployment, "manager")
        assert manager["command"] == ["runnerd"]
        assert manager["args"][0] == "controller"
        assert "--enable-leader-election" in manager["args"]
        assert "--health-probe-bind-address=:8081" in manager["args"]
        assert not any(a.startswith("--watch-namespace") for a in manager["args"])  # all namespaces
        sources = env_sources(manager)
        assert sources["POD_NAME"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}
        assert sources["POD_NAMESPACE"] == {
            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}
        }
        for var, key in (
            ("GITHUB_TOKEN", "github_token"),
            ("GITHUB_APP_PRIVATE_KEY", "github_app_private_key"),
        ):
            assert sources[var]["secretKeyRef"] == {
                "name": "controller-manager",
                "key": key,
                "optional": True,
            }
        assert manager["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health", "scheme": "HTTP"}
        assert manager["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert pod_spec["securityContext"]["runAsNonRoot"] is True
        assert manager["securityContext"]["readOnlyRootFilesystem"] is True
        assert manager["securityContext"]["allowPrivilegeEscalation"] is False

        role = get(
            cluster, "/apis/rbac.authorization.k8s.io/v1/clusterroles/actions-runner-controller-manager"
        )
        granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
        assert {(GROUP, "runners"), ("", "pods"), ("", "events")} <= granted
        binding = get(
            cluster,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/actions-runner-controller-manager",
        )
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]
        lease_role = get(
            cluster,
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/actions-runner-controller-leader-election",
        )
        assert {r for rule in lease_role["rules"] for r in rule["resources"]} == {"leases"}
        get(cluster, f"/api/v1/namespaces/{ns}/services/actions-runner-controller-metrics-service")

        kinds = {d["kind"] for d in manifest(cluster, helm_bin, tmp_path, "actions-runner-controller", ns)}
        assert kinds == {
            "ServiceAccount",
            "Secret",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment",
        }  # fmt: skip  (no webhook server by default, no cert-manager objects, no admission webhooks)
        for crd in (
            "runners",
            "runnerdeployments",
            "runnerreplicasets",
            "runnersets",
            "horizontalrunnerautoscalers",
        ):
            obj = get(cluster, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}.{GROUP}")
            assert any(
                c["type"] == "Established" and c["status"] == "True" for c in obj["status"]["conditions"]
            )
    finally:
        uninstall(cluster, helm_bin, tmp_path, "actions-runner-controller", ns)
        with contextlib.suppress(Exception):
            cluster.request("DELETE", f"/api/v1/namespaces/{ns}")
        namespace_gone(cluster, ns)  # the next test to use the article's namespace finds it free


# ------------------------------------------------------------------------ (b) a GitHub App
async def test_github_app_variant_installs_and_its_credentials_work(
    cluster: Cluster, helm_bin: Path, namespace: str, tmp_path: Path
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    key_file = tmp_path / "app.pem"
    key_file.write_text(pem)
    key_file.chmod(0o600)
    release = namespace
    # ARC users pass the IDs with --set (numbers) and the key with --set-file.
    proc = run_helm(
        helm_bin, tmp_path / "helm", "upgrade", "--install", release, str(CHART), "--namespace", namespace,
        "--set", "authSecret.create=true", "--set", "authSecret.github_app_id=123456",
        "--set", "authSecret.github_app_installation_id=78901234",
        "--set-file", f"authSecret.github_app_private_key={key_file}",
        kubeconfig=cluster.kubeconfig,
    )  # fmt: skip
    try:
        assert proc.returncode == 0, proc.stderr
        secret = get(cluster, f"/api/v1/namespaces/{namespace}/secrets/controller-manager")
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert data == {
            "github_app_id": "123456",
            "github_app_installation_id": "78901234",
            "github_app_private_key": pem,
        }

        # The controller's environment as the kubelet builds it from the chart's Deployment ...
        deployment = get(
            cluster, f"/apis/apps/v1/namespaces/{namespace}/deployments/{release}-actions-runner-controller"
        )
        async with await KubeClient.connect(str(cluster.kubeconfig)) as kube:
            pod = {
                "metadata": {"name": "manager-0", "namespace": namespace},
                "spec": deployment["spec"]["template"]["spec"],
            }
            env = await resolve_env(kube, pod, container="manager")
        assert env is not None
        assert "GITHUB_TOKEN" not in env
        credentials = load_credentials(credentials_from_env(env))
        assert isinstance(credentials, GitHubAppCredentials)

        # ... authenticates as the App's installation (ghsim checks the JWT against the public key).
        async with Simulator(tick_interval=0.05) as sim:
            sim.world.create_org("octo-org")
            app = sim.world.create_app("runnerd-test", public, ident=123456)
            sim.world.create_installation(app.id, "octo-org", ident=78901234)
            async with GitHubClient(
                credentials, config=GitHubConfig(api_url=sim.base_url), trust_env=False
            ) as gh:
                assert await gh.list_runners(Scope.organization("octo-org")) == []
    finally:
        uninstall(cluster, helm_bin, tmp_path, release, namespace)


# ------------------------------------------------------------------ (c) lint and the schema
def test_helm_lint_is_clean(helm_bin: Path, tmp_path: Path) -> None:
    proc = run_helm(helm_bin, tmp_path, "lint", "--strict", str(CHART))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout
    assert "[ERROR]" not in proc.stdout
    # with the values the article and the GitHub App variant use
    proc = run_helm(
        helm_bin, tmp_path, "lint", "--strict", str(CHART), "--set", "authSecret.create=true",
        "--set", "authSecret.github_app_id=1", "--set", "authSecret.github_app_installation_id=2",
        "--set", "authSecret.github_app_private_key=pem",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("typo", "where", "key"),
    [
        ("authSecret.github_tokn=x", "/authSecret", "github_tokn"),
        ("replicaCont=2", "", "replicaCont"),
        (
            "githubWebhookServer.secret.github_webhook_secret=x",
            "/githubWebhookServer/secret",
            "github_webhook_secret",
        ),
        ("scope.watchNamespaces=x", "/scope", "watchNamespaces"),
    ],
)
def test_schema_names_a_mistyped_key(helm_bin: Path, tmp_path: Path, typo: str, where: str, key: str) -> None:
    proc = run_helm(helm_bin, tmp_path, "lint", str(CHART), "--set", typo)
    assert proc.returncode != 0
    assert f"at '{where}': additional properties '{key}' not allowed" in proc.stdout + proc.stderr


def test_values_arc_users_keep_pass_the_schema(cluster: Cluster, helm_bin: Path, tmp_path: Path) -> None:
    """Keys from ARC legacy values files (several are accepted and ignored) lint cleanly."""
    path = tmp_path / "arc-values.yaml"
    path.write_text(ARC_USER_VALUES)
    proc = run_helm(helm_bin, tmp_path, "lint", "--strict", str(CHART), "-f", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_helm(helm_bin, tmp_path, "template", "r", str(CHART), "-f", str(path))
    assert proc.returncode == 0, proc.stderr
    proc = run_helm(
        helm_bin, tmp_path, "install", "r", str(CHART), "-f", str(path), "--dry-run=client",
        "--set", "metrics.serviceMonitor.enable=false",  # no prometheus-operator CRDs here
        kubeconfig=cluster.kubeconfig,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "certManagerEnabled is ignored" in notes
    assert "admissionWebHooks is ignored" in notes
    assert "GitHub webhooks: point a webhook" in notes


# ---------------------------------------------------------- (d) the chart's RBAC, end to end
HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass(frozen=True)
class Access:
    """One API request as RBAC sees it."""

    verb: str
    group: str
    resource: str  # with its subresource: pods, runners/status
    namespace: str | None
    status: int


def classify(method: str, url: URL, status: int) -> Access | None:
    """The RBAC verb and resource of a request (None for discovery and other non-resource paths)."""
    parts = [p for p in url.path.split("/") if p]
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"]:
        group, rest = (parts[1], parts[3:]) if len(parts) > 2 else ("", [])
    else:
        return None
    if not rest:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = f"{rest[0]}/{rest[2]}" if len(rest) >= 3 else rest[0]
    named = len(rest) >= 2
    if method == "GET":
        verb = "watch" if url.query.get("watch") in ("true", "1") else "get" if named else "list"
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}[method]
    return Access(verb, group, resource, namespace, status)


class RecordingProxy:
    """Plain HTTP on 127.0.0.1 in front of the API server: each request goes on unchanged (the
    caller's bearer token included), and what it asked for and the answer's status are noted."""

    def __init__(self, upstream: str, cafile: str) -> None:
        self.upstream = upstream
        self.cafile = cafile
        self.accesses: list[Access] = []
        self.url = ""

    def refused(self) -> list[Access]:
        return sorted({a for a in self.accesses if a.status in (401, 403)}, key=str)

    def fail_on_refusal(self) -> None:
        if refused := self.refused():
            pytest.fail(f"the API server refused the controller: {refused}")

    async def __aenter__(self) -> RecordingProxy:
        context = ssl.create_default_context(cafile=self.cafile)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
        await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        url = URL(self.upstream + str(request.rel_url), encoded=True)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(request.method, url, headers=headers, data=body or None) as answer:
            access = classify(request.method, url, answer.status)
            if access is not None:
                self.accesses.append(access)
            response = web.StreamResponse(status=answer.status, reason=answer.reason)
            for k, v in answer.headers.items():
                if k.lower() not in HOP_BY_HOP:
                    response.headers.add(k, v)
            with contextlib.suppress(ConnectionResetError):  # the controller closed a watch
                await response.prepare(request)
                async for chunk in answer.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            return response


def granted_to(objects: list[dict[str, Any]], sa: str, ns: str) -> set[tuple[str, str, str]]:
    """(verb, group, resource) of every rule the chart binds to the ServiceAccount."""
    roles = {(d["kind"], d["metadata"]["name"]): d for d in objects if d["kind"] in ("Role", "ClusterRole")}
    found: set[tuple[str, str, str]] = set()
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        subject = {"kind": "ServiceAccount", "name": sa, "namespace": ns}
        if subject not in binding["subjects"]:
            continue
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        for rule in role["rules"]:
            for verb in rule["verbs"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        found.add((verb, group, resource))
    return found


# Permissions the chart grants that a RunnerDeployment + HRA run through one job does not use.
NOT_REACHED = {
    **{
        (verb, "apps", "statefulsets"): "RunnerSet: one StatefulSet per runner"
        for verb in ("create", "delete", "get", "patch")
    },
    ("patch", "", "secrets"): "per-runner credentials: a Runner's pod replaced; RunnerSet credentials used",
    ("get", "", "secrets"): "githubAPICredentialsFrom: a RunnerDeployment's own credentials Secret",
    # rbac.allowGrantingKubernetesContainerModePermissions (this test's values set it)
    **{
        k: "containerMode kubernetes: a runner's own ServiceAccount and Role"
        for k in KUBERNETES_MODE_REQUESTS
    },
    **{k: "what a kubernetes-mode runner's Role grants" for k in KUBERNETES_MODE_ESCALATION},
    **{(verb, "", "persistentvolumeclaims"): "RunnerSet: volume reuse" for verb in ("delete", "patch")},
    **{(verb, "", "persistentvolumes"): "RunnerSet: volume reuse" for verb in ("get", "patch")},
    ("patch", GROUP, "runnersets"): "an HRA whose target is a RunnerSet",
    ("patch", GROUP, "runnersets/status"): "RunnerSet status",
    ("patch", GROUP, "runners/status"): "a Runner's status is written only in phases users act on",
    ("delete", GROUP, "runnerreplicasets"): "a RunnerDeployment template change",
    ("get", GROUP, "horizontalrunnerautoscalers"): "webhook sink, before its cache has the HRA",
    ("patch", GROUP, "horizontalrunnerautoscalers"): "webhook sink: capacity reservations",
    ("patch", "", "events"): "an Event that repeats",
    ("update", "", "configmaps"): "the cost ledger's later passes (its first write creates it)",
    ("delete", "", "configmaps"): "the reservation journal's fold: no webhook delivery in this test"
    " (test_webhook_server_writes_a_reservation_with_its_charts_rbac folds one)",
    ("patch", "runnerd.dev", "runnersizingpolicies/status"): "sizing: a RunnerSizingPolicy's status",
    # sizing.enabled (the default): capacity admission's informers, with --enable-sizing
    **{(verb, "", "nodes"): "sizing: capacity admission's node informer" for verb in ("list", "watch")},
    **{
        (verb, "runnerd.dev", "runnersizingpolicies"): "sizing: the pools' policies"
        for verb in ("list", "watch")
    },
    **{
        (
            "update",
            group,
            f"{kind}/finalizers",
        ): "blockOwnerDeletion, where OwnerReferencesPermissionEnforcement is on"
        for group, kind in (
            (GROUP, "runners"),
            (GROUP, "runnerreplicasets"),
            (GROUP, "runnerdeployments"),
            (GROUP, "runnersets"),
            ("apps", "statefulsets"),
        )
    },
}


ADDRESS_FLAGS = {
    "--metrics-addr": "metrics",
    "--health-probe-bind-address": "health",
    "--webhook-addr": "webhook",
}


async def start_like_the_deployment(
    kube: KubeClient, deployment: dict[str, Any], name: str, kubeconfig: Path, log: Path
) -> tuple[asyncio.subprocess.Process, dict[str, int]]:
    """The ``name`` container of the chart's Deployment as a process: its command and args, its env
    as the kubelet resolves it; only the listening addresses move to free loopback ports (returned
    by flag: metrics, health, webhook)."""
    c = container(deployment, name)
    assert c["command"] == ["runnerd"]
    ports: dict[str, int] = {}
    args = []
    for arg in c["args"]:
        flag, _, value = arg.partition("=")
        if flag in ADDRESS_FLAGS and value not in ("", "0"):
            ports[ADDRESS_FLAGS[flag]] = free_port()
            arg = f"{flag}=127.0.0.1:{ports[ADDRESS_FLAGS[flag]]}"
        args.append(arg)
    meta = deployment["metadata"]
    pod = {
        "metadata": {"name": f"{meta['name']}-5d8c7b9f4-x2x7q", "namespace": meta["namespace"]},
        "spec": deployment["spec"]["template"]["spec"],
    }
    env = await resolve_env(kube, pod, container=name)
    assert env is not None
    inherited = {k: v for k, v in os.environ.items() if k != "KUBECONFIG" and not k.startswith("GITHUB_")}
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runnerd.cli",
            *args,
            f"--kubeconfig={kubeconfig}",
            env={**inherited, **env, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return proc, ports


async def is_ready(http: aiohttp.ClientSession, port: int) -> bool:
    with contextlib.suppress(aiohttp.ClientError):
        async with http.get(f"http://127.0.0.1:{port}/readyz") as answer:
            return answer.status == 200
    return False


async def stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                return await proc.wait()
        except TimeoutError:
            proc.kill()
    return await proc.wait()


@pytest.fixture
def namespaces(cluster: Cluster, namespace: str) -> Iterator[tuple[str, str]]:
    """Two more namespaces: the one the controller serves, and one it must not read."""
    names = (f"{namespace}-runners", f"{namespace}-other")
    for name in names:
        cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    yield names
    for name in names:
        with contextlib.suppress(Exception):
            cluster.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.mark.timeout(150)
async def test_controller_runs_a_job_with_the_charts_rbac_and_reads_no_other_secrets(
    cluster: Cluster, helm_bin: Path, namespace: str, namespaces: tuple[str, str], tmp_path: Path
) -> None:
    runners_ns, other_ns = namespaces
    cluster.request(
        "POST",
        f"/api/v1/namespaces/{other_ns}/secrets",
        {"metadata": {"name": "not-yours"}, "stringData": {"k": "v"}},
    )
    release = namespace
    sa = f"{release}-actions-runner-controller"
    ca = ca_file(cluster)
    log = tmp_path / "controller.log"
    async with (
        Simulator(tick_interval=0.05) as sim,
        await KubeClient.connect(str(cluster.kubeconfig)) as kube,
    ):
        world = sim.world
        pat = seed(sim)
        try:
            install(
                cluster, helm_bin, tmp_path, release, namespace,
                {
                    "authSecret": {"create": True, "github_token": pat},
                    "githubURL": sim.base_url,
                    "runnerGithubURL": sim.base_url + "/",
                    "syncPeriod": "5s",
                    "logLevel": "debug",
                    "scope": {"singleNamespace": True, "watchNamespace": runners_ns},
                    "extraArgs": ["--drain-grace=2s"],
                },
            )  # fmt: skip
            objects = manifest(cluster, helm_bin, tmp_path, release, namespace)
            token = service_account_token(cluster, namespace, sa)
            sa_kubeconfig = write_kubeconfig(tmp_path / "sa.kubeconfig", cluster.server, token, ca)
            deployment = await kube.get(DEPLOYMENTS, sa, namespace=namespace)

            async with RecordingProxy(cluster.server, ca) as proxy, aiohttp.ClientSession() as http:
                via_proxy = write_kubeconfig(tmp_path / "controller.kubeconfig", proxy.url, token, None)
                proc, ports = await start_like_the_deployment(kube, deployment, "manager", via_proxy, log)

                def guard() -> None:
                    proxy.fail_on_refusal()
                    assert proc.returncode is None, log.read_text()[-3000:]

                try:
                    await wait_until(
                        "the controller ready (every informer has listed)",
                        lambda: is_ready(http, ports["health"]),
                        30,
                        guard,
                    )
                    async with pod_agent(cluster, sim, runners_ns):
                        rd = yaml.safe_load(ARTICLE_RD)
                        rd["metadata"]["namespace"] = runners_ns
                        await kube.create(RUNNER_DEPLOYMENTS, rd, namespace=runners_ns)
                        await wait_until(
                            "a runner online",
                            lambda: any(world.runner_online(r) for r in world.runners.values()),
                        )
                        run = world.enqueue_run(
                            world.repo_by_name(REPO), [JobSpec(("self-hosted", "arc-runner"), "build", 0.5)]
                        )
                        job = await wait_until(
                            "the job done",
                            lambda: (j := world.jobs[run.job_ids[0]]).status == "completed" and j,
                            guard=guard,
                        )
                        assert job.conclusion == "success"

                        hra = yaml.safe_load(ARTICLE_HRA)
                        hra["metadata"]["namespace"] = runners_ns
                        await kube.create(HORIZONTAL_RUNNER_AUTOSCALERS, hra, namespace=runners_ns)

                        async def scaled_to_zero() -> bool:
                            runners = await kube.list(RUNNERS, namespace=runners_ns)
                            pods = await kube.list(PODS, namespace=runners_ns)
                            return not runners.items and not pods.items and not world.runners

                        await wait_until(
                            "the HRA to scale to zero and every runner gone", scaled_to_zero, 40, guard
                        )
                finally:
                    code = await stop(proc)
            output = log.read_text(errors="replace")
            assert code == 0, output[-3000:]

            # Nothing the controller asked for was refused ...
            assert proxy.accesses, "no request went through the proxy"
            assert not proxy.refused(), proxy.refused()
            assert "Forbidden" not in output
            # ... it stayed in the namespace it serves (and its Lease's) ...
            used = {(a.verb, a.group, a.resource) for a in proxy.accesses}
            places = {(a.namespace, a.resource) for a in proxy.accesses}
            assert {ns for ns, _ in places} <= {runners_ns, namespace, None}
            # cluster-wide: volumes, the kube-system Namespace (the installation id; the rule
            # names that one Namespace, so any other would have been refused above), the nodes
            # (capacity admission, and the GPU product that prices the cost ledger) and with sizing
            # the pods capacity admission counts (read-only)
            assert {r for ns, r in places if ns is None} <= {
                "persistentvolumes",
                "namespaces",
                "nodes",
                "pods",
            }
            # in its own namespace: its Lease and the cost ledger ConfigMap
            assert {r for ns, r in places if ns == namespace} == {"leases", "configmaps"}
            assert {
                ("update", "coordination.k8s.io", "leases"),
                ("create", "", "pods"),
                ("delete", "", "pods"),
            } <= used
            assert ("patch", GROUP, "runnerdeployments") in used  # the HRA scaled the article's RD
            # ... and every permission the chart grants was used here or has a reason.
            granted = granted_to(objects, sa, namespace)
            assert granted, "no rule bound to the chart's ServiceAccount"
            unaccounted = sorted(granted - used - NOT_REACHED.keys())
            assert not unaccounted, f"granted, not used, no reason in NOT_REACHED: {unaccounted}"

            # That identity cannot read Secrets where it does not serve.
            def can_i(verb: str, ns: str) -> bool:
                proc = cluster.kubectl(
                    "auth", "can-i", verb, "secrets", "-n", ns, f"--kubeconfig={sa_kubeconfig}", check=False
                )
                return proc.stdout.strip() == "yes"

            for verb in ("get", "list", "watch"):
                assert not can_i(verb, other_ns)
                assert not can_i(verb, namespace)  # not even its own Secret: the kubelet reads that
            assert can_i("list", runners_ns)
            async with await KubeClient.connect(str(sa_kubeconfig)) as as_controller:
                with pytest.raises(Forbidden):
                    await as_controller.get(SECRETS, "not-yours", namespace=other_ns)
                with pytest.raises(Forbidden):
                    await as_controller.list(SECRETS, namespace=other_ns)
        finally:
            uninstall(cluster, helm_bin, tmp_path, release, namespace)


def rules_review(cluster: Cluster, token: str, ns: str) -> set[tuple[str, str, str]]:
    """(verb, group, resource) the token's identity may do in ``ns`` (a SelfSubjectRulesReview, which
    includes what cluster-wide bindings grant), less what every authenticated identity may."""
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": ns},
    }
    req = urllib.request.Request(
        f"{cluster.server}/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(
        req, context=ssl.create_default_context(cafile=ca_file(cluster)), timeout=30
    ) as r:
        status = json.loads(r.read())["status"]
    everyone = {"authorization.k8s.io", "authentication.k8s.io"}  # self-reviews: system:basic-user
    return {
        (verb, group, resource)
        for rule in status.get("resourceRules") or ()
        for verb in rule["verbs"]
        for group in rule.get("apiGroups") or ()
        for resource in rule.get("resources") or ()
        if group not in everyone
    }


@pytest.mark.timeout(120)
def test_without_runner_sets_nothing_outside_the_namespace_and_no_secrets_or_volumes_anywhere(
    cluster: Cluster, helm_bin: Path, namespace: str, namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """Issue 13 finding 6 on a real API server: ``scope.singleNamespace`` grants nothing outside its
    namespace once RunnerSets are off but the read of the cluster's id (the kube-system Namespace, by
    name), of the nodes (capacity admission; their GPU products price the cost ledger) and capacity
    admission's read of pods, and cluster-wide without RunnerSets no StatefulSet, claim or
    PersistentVolume right and no Secret listing is left anywhere (kube-system included). A Runner's
    credentials Secret is created, read and patched by name, wherever Runners may live."""
    cluster_id = {("get", "", "namespaces")}  # resourceNames: [kube-system] (tests/unit/chart)
    # the nodes (cost ledger, admission) and, with sizing.enabled (the default), the pods (read-only)
    cluster_id |= {(verb, "", kind) for verb in ("list", "watch") for kind in ("nodes", "pods")}
    by_name = {("create", "", "secrets"), ("get", "", "secrets"), ("patch", "", "secrets")}
    runners_ns, other_ns = namespaces
    single, wide = f"{namespace}-one", f"{namespace}-all"
    off = {"runnerSets": {"enabled": False}}
    try:
        install(cluster, helm_bin, tmp_path, single, namespace,
                {**off, "scope": {"singleNamespace": True, "watchNamespace": runners_ns}})  # fmt: skip
        token = service_account_token(cluster, namespace, f"{single}-actions-runner-controller")
        inside = rules_review(cluster, token, runners_ns)
        assert ("create", "", "pods") in inside
        for ns in (other_ns, "kube-system", "default"):
            assert rules_review(cluster, token, ns) == cluster_id, ns
        assert not {r for r in inside if r[2] in ("statefulsets", "persistentvolumeclaims")}
        assert {r for r in inside if r[2] == "secrets"} == by_name

        install(cluster, helm_bin, tmp_path, wide, namespace, off)
        token = service_account_token(cluster, namespace, f"{wide}-actions-runner-controller")
        for ns in (other_ns, "kube-system"):
            granted = rules_review(cluster, token, ns)
            assert ("create", "", "pods") in granted  # Runners may live in any namespace
            touched = {
                r
                for r in granted
                if r[2] in ("secrets", "statefulsets", "persistentvolumeclaims", "persistentvolumes")
            }
            assert touched == by_name, (ns, touched)
    finally:
        uninstall(cluster, helm_bin, tmp_path, single, namespace)
        uninstall(cluster, helm_bin, tmp_path, wide, namespace)


# ------------------------------------------------------------ moving from ARC (docs/install.md)
INSTALL_DOC = Path(__file__).resolve().parents[2] / "docs" / "install.md"
ARC_TEMPLATE_HASH = "6b9d7c5f4"  # ARC's FNV-32a hash format (runnerd's are 10 hex digits)


def doc_block(marker: str) -> str:
    """The first fenced block after ``marker`` in docs/install.md (the commands users copy)."""
    text = INSTALL_DOC.read_text()
    after = text[text.index(marker) :]
    match = re.search(r"```bash\n(.*?)```", after, re.S)
    assert match, f"no bash block after {marker!r}"
    return textwrap.dedent(match.group(1))


def arc_objects(
    rd: dict[str, Any], namespace: str, sim_url: str, registration_token: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A RunnerReplicaSet, Runner and pod as ARC 0.27's controller makes them for the article's
    RunnerDeployment (ARC's names, labels, finalizers and runner env)."""
    spec = rd["spec"]["template"]["spec"]
    labels = {"runner-deployment-name": rd["metadata"]["name"], "runner-template-hash": ARC_TEMPLATE_HASH}
    rrs_name = f"{rd['metadata']['name']}-hw8xl"
    runner_name = f"{rrs_name}-zq5tv"
    rrs = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "RunnerReplicaSet",
        "metadata": {"name": rrs_name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }
    runner = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Runner",
        "metadata": {
            "name": runner_name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {"sync-time": "2024-05-01T10:00:00Z"},
            "finalizers": ["runner.actions.summerwind.dev"],
        },
        "spec": spec,
    }
    env = {
        "RUNNER_ORG": "",
        "RUNNER_REPO": spec["repository"],
        "RUNNER_ENTERPRISE": "",
        "RUNNER_LABELS": ",".join(spec["labels"]),
        "RUNNER_GROUP": "",
        "DOCKER_ENABLED": "true",
        "DOCKERD_IN_RUNNER": "false",
        "GITHUB_URL": sim_url + "/",
        "RUNNER_WORKDIR": "/runner/_work",
        "RUNNER_EPHEMERAL": "true",
        "RUNNER_NAME": runner_name,
        "RUNNER_TOKEN": registration_token,
        "DOCKER_HOST": "unix:///run/docker.sock",
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": runner_name,
            "namespace": namespace,
            "labels": {**labels, "actions-runner": "", "pod-template-hash": "7f8c9d6b5"},
            "finalizers": ["actions.summerwind.dev/runner-pod"],
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "runner",
                    "image": "summerwind/actions-runner:latest",
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                },
                {"name": "docker", "image": "docker:dind", "securityContext": {"privileged": True}},
            ],
        },
    }
    return rrs, runner, pod


async def create_owned(
    kube: KubeClient, rd: dict[str, Any], rrs: dict[str, Any], runner: dict[str, Any], pod: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create ``rrs``, ``runner`` and ``pod`` in the namespace of ``rd``, each owned by the one
    before it as ARC's controllers own them; the Runner and the pod as created."""
    namespace = rd["metadata"]["namespace"]
    rrs["metadata"]["ownerReferences"] = [controller_ref(rd)]
    rrs = await kube.create(RUNNER_REPLICA_SETS, rrs, namespace=namespace)
    runner["metadata"]["ownerReferences"] = [controller_ref(rrs)]
    runner = await kube.create(RUNNERS, runner, namespace=namespace)
    pod["metadata"]["ownerReferences"] = [controller_ref(runner)]
    return runner, await kube.create(PODS, pod, namespace=namespace)


@pytest.mark.timeout(120)
async def test_takes_over_what_arc_left_without_killing_its_busy_runner(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    async with (
        Simulator(tick_interval=0.05) as sim,
        await KubeClient.connect(str(cluster.kubeconfig)) as kube,
    ):
        world = sim.world
        pat = seed(sim)
        # ARC's world: the article's RunnerDeployment, and what ARC's controller made for it.
        rd = yaml.safe_load(ARTICLE_RD)
        rd["metadata"]["namespace"] = namespace
        rd = await kube.create(RUNNER_DEPLOYMENTS, rd, namespace=namespace)
        token = world.issue_token(SimScope("repo", REPO), "registration").token
        runner, _ = await create_owned(kube, rd, *arc_objects(rd, namespace, sim.base_url, token))
        arc_runner = runner["metadata"]["name"]

        async with pod_agent(cluster, sim, namespace):
            # ARC's runner registered (with its registration token) and is running a job.
            run = world.enqueue_run(
                world.repo_by_name(REPO), [JobSpec(("self-hosted", "arc-runner"), "build", 4.0)]
            )
            job = await wait_until(
                "ARC's runner busy", lambda: (j := world.jobs[run.job_ids[0]]).status == "in_progress" and j
            )
            assert job.runner_name == arc_runner

            # Step 4 of the move, as docs/install.md prints it (ARC's controller is gone), with
            # this cluster's kubeconfig and the simulator's URL and token.
            command = shlex.split(doc_block("<!-- tested: test_chart.py runs this command as written -->"))
            assert command[:2] == ["runnerd", "migrate-from-arc"]
            args = cli.build_parser().parse_args(
                [*command[1:], "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace,
                 "--github-url", sim.base_url, "--interval", "0.5"]
            )  # fmt: skip
            out = io.StringIO()
            migration = asyncio.create_task(migrate.run(args, {"github_token": pat}, out))
            await wait_until("the busy runner seen as busy", lambda: "is busy" in out.getvalue())
            held = await kube.get(PODS, arc_runner, namespace=namespace)
            assert held["metadata"].get("finalizers") == ["actions.summerwind.dev/runner-pod"]

            # runnerd starts.
            try:
                async with controller_process(
                    cluster, sim, pat, namespace, sync_period=2.0, registering_max_age=0.5, drain_grace=1.0
                ):
                    done = await wait_until(
                        "ARC's runner to finish its job",
                        lambda: (j := world.jobs[run.job_ids[0]]).status == "completed" and j,
                        30,
                    )
                    assert done.conclusion == "success"  # not interrupted by the move
                    assert done.runner_name == arc_runner

                    async def moved() -> bool:
                        sets = (await kube.list(RUNNER_REPLICA_SETS, namespace=namespace)).items
                        runners = (await kube.list(RUNNERS, namespace=namespace)).items
                        pods = (await kube.list(PODS, namespace=namespace)).items
                        online = [r for r in world.runners.values() if world.runner_online(r)]
                        return (
                            len(sets) == 1
                            and sets[0]["metadata"]["labels"]["runner-template-hash"] != ARC_TEMPLATE_HASH
                            and len(runners) == 1
                            and [p["metadata"]["name"] for p in pods] == [runners[0]["metadata"]["name"]]
                            and [r.name for r in online] == [runners[0]["metadata"]["name"]]
                        )

                    await wait_until("ARC's replica set, runner and pod replaced by runnerd's", moved, 45)
                    assert arc_runner not in {r.name for r in world.runners.values()}  # deregistered
                    assert await asyncio.wait_for(migration, 30) == 0, out.getvalue()
            finally:
                migration.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await migration


WEBHOOK_HRA = """
apiVersion: actions.summerwind.dev/v1alpha1
kind: HorizontalRunnerAutoscaler
metadata:
  name: example-hra
spec:
  scaleTargetRef:
    name: example-runner-deployment
  minReplicas: 0
  maxReplicas: 5
  scaleUpTriggers:
    - githubEvent:
        workflowJob: {}
      duration: 10m
"""


async def journalled_jobs(kube: KubeClient, namespace: str) -> list[int]:
    """The job ids of the reservation journal's entries in ``namespace``."""
    listed = await kube.list(CONFIGMAPS, namespace=namespace, label_selector=f"{HRA_LABEL}=true")
    return [op.job_id for obj in listed.items if (entry := decode(obj)) is not None for op in entry.ops]


async def fold_journal(kube: KubeClient, key: Key) -> None:
    """What the leading controller does with the journal: one fold of ``key``'s entries."""
    informer = journal_informer(kube, key.namespace)
    manager = Manager()
    manager.add_informer(informer)
    task = asyncio.create_task(manager.run())
    try:
        await wait_until("the journal listed", lambda: manager.ready and informer.store.keys())
        assert await ReservationJournal(kube, informer, clock=utcnow).fold(key) is not None
    finally:
        manager.stop()
        await task


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "no-journal"])
async def test_webhook_server_writes_a_reservation_with_its_charts_rbac(
    cluster: Cluster, helm_bin: Path, namespace: str, tmp_path: Path, journal: bool
) -> None:
    """``runnerd webhook-server`` as the chart's webhook Deployment runs it, with its own
    ServiceAccount: GitHub's ``workflow_job`` delivery (from ghsim's hook) becomes a capacity
    reservation on the HRA, and no request is refused. With the reservation journal (the default)
    the server only creates a journal entry, which the leading controller's fold (run here with the
    admin's client) writes into the HRA and deletes; with ``reservationJournal.enabled=false`` the
    server patches the HRA itself."""
    release = namespace
    ca = ca_file(cluster)
    secret = "webhook-secret-for-the-chart-test"
    log = tmp_path / "webhook-server.log"
    async with (
        Simulator(tick_interval=0.05) as sim,
        await KubeClient.connect(str(cluster.kubeconfig)) as kube,
    ):
        world = sim.world
        world.create_org("octo-org")
        world.create_repo("octo-org", "app")
        try:
            install(
                cluster, helm_bin, tmp_path, release, namespace,
                {
                    "authSecret": {"create": True, "github_token": world.create_pat("admin").token},
                    "scope": {"singleNamespace": True},
                    "githubWebhookServer": {
                        "enabled": True,
                        "secret": {"create": True, "github_webhook_secret_token": secret},
                    },
                    "reservationJournal": {"enabled": journal},
                },
            )  # fmt: skip
            objects = manifest(cluster, helm_bin, tmp_path, release, namespace)
            deployment = next(
                d
                for d in objects
                if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-github-webhook-server")
            )
            sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
            deployment = await kube.get(DEPLOYMENTS, deployment["metadata"]["name"], namespace=namespace)
            for manifest_text, resource in (
                (ARTICLE_RD, RUNNER_DEPLOYMENTS),
                (WEBHOOK_HRA, HORIZONTAL_RUNNER_AUTOSCALERS),
            ):
                obj = yaml.safe_load(manifest_text)
                obj["metadata"]["namespace"] = namespace
                await kube.create(resource, obj, namespace=namespace)
            token = service_account_token(cluster, namespace, sa)

            async with RecordingProxy(cluster.server, ca) as proxy, aiohttp.ClientSession() as http:
                via_proxy = write_kubeconfig(tmp_path / "webhook.kubeconfig", proxy.url, token, None)
                proc, ports = await start_like_the_deployment(
                    kube, deployment, "github-webhook-server", via_proxy, log
                )

                def guard() -> None:
                    proxy.fail_on_refusal()
                    assert proc.returncode is None, log.read_text()[-3000:]

                try:
                    await wait_until(
                        "the webhook server ready", lambda: is_ready(http, ports["metrics"]), 30, guard
                    )
                    world.create_hook(
                        f"http://127.0.0.1:{ports['webhook']}/", scope=SimScope("repo", REPO), secret=secret
                    )
                    world.enqueue_run(
                        world.repo_by_name(REPO), [JobSpec(("self-hosted", "arc-runner"), "build", 60)]
                    )

                    async def reserved() -> bool:
                        hra = await kube.get(
                            HORIZONTAL_RUNNER_AUTOSCALERS, "example-hra", namespace=namespace
                        )
                        return len(hra["spec"].get("capacityReservations") or []) == 1

                    if journal:
                        await wait_until(
                            "a journal entry from the workflow_job delivery",
                            lambda: journalled_jobs(kube, namespace),
                            20,
                            guard,
                        )
                        await fold_journal(kube, Key(namespace, "example-hra"))
                    await wait_until(
                        "a capacity reservation from the workflow_job delivery", reserved, 20, guard
                    )
                    assert not await journalled_jobs(kube, namespace)  # folded entries are deleted
                finally:
                    code = await stop(proc)
            assert code == 0, log.read_text()[-3000:]
            assert not proxy.refused(), proxy.refused()
            used = {(a.verb, a.group, a.resource) for a in proxy.accesses}
            if journal:  # it creates entries and reads none; the HRA is the leader's to write
                assert {a for a in used if a[2] == "configmaps"} == {("create", "", "configmaps")}
                assert ("patch", GROUP, "horizontalrunnerautoscalers") not in used
            else:
                assert ("patch", GROUP, "horizontalrunnerautoscalers") in used
                assert not {a for a in used if a[2] == "configmaps"}
            granted = granted_to(objects, sa, namespace)
            assert used <= granted
            # least privilege: with the journal the server may not write the HRA's reservations
            assert (("patch", GROUP, "horizontalrunnerautoscalers") in granted) is not journal
            assert {a.namespace for a in proxy.accesses} == {namespace}
        finally:
            uninstall(cluster, helm_bin, tmp_path, release, namespace)
