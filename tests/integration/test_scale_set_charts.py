"""The scale-set charts installed for real: docs/scale-sets.md's commands (ARC's quickstart with our
chart directories), word for word, with the real helm against the local control plane; the App
variant; and the RBAC as the API server decides it for the chart's ServiceAccounts (impersonated):
the controller may do what scale-set mode needs where it needs it and nothing else (no listener pods,
Roles or ServiceAccounts: the listeners run in the controller process), and the runner pods' account
has no rights.

The controller process is not run here (tests/integration/test_scale_sets.py runs scale-set mode).
"""

from __future__ import annotations

import base64
import re
import shlex
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from devcluster.cluster import Cluster
from runnerd.api.scaleset import AutoscalingRunnerSet, parse
from tests.integration.test_chart import helm_bin, run_helm

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]
__all__ = ["helm_bin"]  # the fixture

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "scale-sets.md"
CONTROLLER_NS, RUNNERS_NS = "arc-systems", "arc-runners"
CONTROLLER_SA = f"system:serviceaccount:{CONTROLLER_NS}:arc-gha-rs-controller"
RUNNER_SA = f"system:serviceaccount:{RUNNERS_NS}:arc-runner-set-gha-rs-no-permission"


def documented_commands(values: Mapping[str, str] | None = None) -> list[list[str]]:
    """The ``helm install`` commands of the Install section, variables expanded, as argv; ``values``
    replaces what the block assigns to those variables (``GITHUB_PAT``, ``GITHUB_CONFIG_URL``)."""
    section = DOC.read_text().split("## Install", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "no bash block in the Install section"
    env: dict[str, str] = {}
    commands = []
    for chunk in block.group(1).replace("\\\n", " ").splitlines():
        if m := re.fullmatch(r'(\w+)="(.*)"', chunk.strip()):
            env[m.group(1)] = (values or {}).get(m.group(1), m.group(2))
        elif chunk.startswith("helm "):
            argv = shlex.split(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], chunk))
            commands.append([str(REPO / a) if a.startswith("./charts/") else a for a in argv[1:]])
    assert [c[:2] for c in commands] == [["install", "arc"], ["install", "arc-runner-set"]]
    return commands


def strip_cleanup_finalizers(cluster: Cluster, ns: str) -> None:
    """What the scale-set controller does after removing the scale set from GitHub."""
    kinds, chart = "secrets,serviceaccounts,roles,rolebindings", "app.kubernetes.io/part-of=gha-rs"
    names = cluster.kubectl("get", kinds, "-n", ns, "-l", chart, "-o", "name", check=False).stdout.split()
    for name in names:
        cluster.kubectl(
            "patch", "-n", ns, name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False
        )


@pytest.fixture(scope="module")
def installed(cluster: Cluster, helm_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("scale-set-helm")
    releases = []
    try:
        for argv in documented_commands():
            proc = run_helm(helm_bin, home, *argv, kubeconfig=cluster.kubeconfig)
            assert proc.returncode == 0, proc.stderr
            releases.append((argv[1], argv[argv.index("--namespace") + 1]))
        yield home
    finally:
        for release, ns in reversed(releases):
            strip_cleanup_finalizers(cluster, ns)
            run_helm(helm_bin, home, "uninstall", release, "--namespace", ns, kubeconfig=cluster.kubeconfig)
        for ns in (RUNNERS_NS, CONTROLLER_NS):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def get_json(cluster: Cluster, path: str) -> Any:
    return cluster.request("GET", path)


def test_documented_commands_install_both_charts(cluster: Cluster, installed: Path) -> None:
    for plural in (
        "autoscalingrunnersets",
        "ephemeralrunnersets",
        "ephemeralrunners",
        "autoscalinglisteners",
    ):
        crd = get_json(
            cluster, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.actions.github.com"
        )
        assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
    raw = get_json(
        cluster,
        f"/apis/actions.github.com/v1alpha1/namespaces/{RUNNERS_NS}/autoscalingrunnersets/arc-runner-set",
    )
    ars = parse(raw)
    assert isinstance(ars, AutoscalingRunnerSet)
    assert ars.spec.github_config_url == "https://github.com/<your_enterprise/org/repo>"
    assert ars.spec.github_config_secret == "arc-runner-set-gha-rs-github-secret"
    secret = get_json(cluster, f"/api/v1/namespaces/{RUNNERS_NS}/secrets/arc-runner-set-gha-rs-github-secret")
    assert base64.b64decode(secret["data"]["github_token"]).decode() == "<PAT>"
    # helm install looked the controller's Deployment up: the manager Role is bound to its account
    binding = get_json(
        cluster,
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{RUNNERS_NS}/rolebindings/arc-runner-set-gha-rs-manager",
    )
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "arc-gha-rs-controller", "namespace": CONTROLLER_NS}
    ]


def can_i(cluster: Cluster, who: str, verb: str, resource: str, *where: str) -> bool:
    proc = cluster.kubectl("auth", "can-i", verb, resource, *where, f"--as={who}", check=False)
    return proc.stdout.strip() == "yes"


@pytest.mark.parametrize(
    ("verb", "resource", "where", "allowed"),
    [
        # the scale-set kinds, wherever they are
        ("create", "ephemeralrunners.actions.github.com", ("-n", RUNNERS_NS), True),
        ("patch", "ephemeralrunnersets.actions.github.com", ("-A",), True),
        ("patch", "autoscalingrunnersets.actions.github.com/status", ("-n", RUNNERS_NS), True),
        ("update", "autoscalingrunnersets.actions.github.com", ("-n", RUNNERS_NS), False),
        ("create", "autoscalinglisteners.actions.github.com", ("-n", CONTROLLER_NS), True),
        ("create", "autoscalingrunnersets.actions.github.com", ("-n", RUNNERS_NS), False),
        ("delete", "autoscalingrunnersets.actions.github.com", ("-n", RUNNERS_NS), False),
        # reading everywhere, writing only where a scale set or the listeners live
        ("list", "pods", ("-A",), True),
        ("watch", "secrets", ("-A",), True),
        ("create", "pods", ("-n", RUNNERS_NS), True),
        ("create", "secrets", ("-n", RUNNERS_NS), True),
        ("patch", "roles", ("-n", RUNNERS_NS), True),  # the chart's cleanup-protection finalizer
        ("create", "roles", ("-n", RUNNERS_NS), False),
        ("create", "pods", ("-n", CONTROLLER_NS), False),
        ("create", "serviceaccounts", ("-n", CONTROLLER_NS), False),
        ("create", "pods", ("-n", "default"), False),
        ("get", "secrets", ("-n", "default"), False),
        ("create", "roles", ("-n", "default"), False),
        ("create", "serviceaccounts", ("-n", RUNNERS_NS), False),
        ("delete", "nodes", (), False),
    ],
)
def test_controller_rights(
    cluster: Cluster, installed: Path, verb: str, resource: str, where: tuple[str, ...], allowed: bool
) -> None:
    assert can_i(cluster, CONTROLLER_SA, verb, resource, *where) is allowed


def test_runner_pods_have_no_rights(cluster: Cluster, installed: Path) -> None:
    for verb, resource in (
        ("get", "pods"),
        ("list", "secrets"),
        ("create", "pods"),
        ("get", "ephemeralrunners"),
    ):
        assert not can_i(cluster, RUNNER_SA, verb, resource, "-n", RUNNERS_NS), (verb, resource)


def test_the_documented_app_values_install(
    cluster: Cluster, helm_bin: Path, installed: Path, tmp_path: Path
) -> None:
    section = DOC.read_text().split("With a GitHub App", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block, "no yaml block for the App"
    values = tmp_path / "app-values.yaml"
    values.write_text(block.group(1))
    values.chmod(0o600)
    ns = f"ss-app-{uuid.uuid4().hex[:8]}"
    proc = run_helm(
        helm_bin, installed, "install", "app-set", str(REPO / "charts" / "gha-runner-scale-set"),
        "--namespace", ns, "--create-namespace", "-f", str(values), kubeconfig=cluster.kubeconfig,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    try:
        secret = get_json(cluster, f"/api/v1/namespaces/{ns}/secrets/app-set-gha-rs-github-secret")
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert (data["github_app_id"], data["github_app_installation_id"]) == ("123456", "654321")
        assert data["github_app_private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
        assert "github_token" not in data
    finally:
        strip_cleanup_finalizers(cluster, ns)
        run_helm(
            helm_bin, installed, "uninstall", "app-set", "--namespace", ns, kubeconfig=cluster.kubeconfig
        )
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
