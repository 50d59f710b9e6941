"""The scale-set charts (gha-runner-scale-set-controller, gha-runner-scale-set) rendered with ``helm
template``: ARC's documented install commands render verbatim, ``helm lint --strict`` and kubeconform
(strict, our CRDs included) pass for a matrix of ARC's values, the AutoscalingRunnerSet is one the CRD
and its CEL rules accept, values that cannot work are refused, and the RBAC is least privilege."""

from __future__ import annotations

import base64
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runnerd import cli
from runnerd.api.scaleset import AutoscalingRunnerSet, parse
from tests.unit.api.manifests import SCALE_SET_CRD_DIR, local_errors
from tests.unit.chart import tools
from tests.unit.chart.test_ops_chart import APP_KEY, kubeconform

pytestmark = [pytest.mark.timeout(60)]

CONTROLLER = tools.REPO / "charts" / "gha-runner-scale-set-controller"
SCALE_SET = tools.REPO / "charts" / "gha-runner-scale-set"
OCI = "oci://ghcr.io/actions/actions-runner-controller-charts"

# ARC's quickstart (docs.github.com, "Quickstart for Actions Runner Controller"), verbatim.
ARC_INSTALL_CONTROLLER = f"""
NAMESPACE="arc-systems"
helm install arc \\
    --namespace "${{NAMESPACE}}" \\
    --create-namespace \\
    {OCI}/gha-runner-scale-set-controller
"""
ARC_INSTALL_SCALE_SET = f"""
INSTALLATION_NAME="arc-runner-set"
NAMESPACE="arc-runners"
GITHUB_CONFIG_URL="https://github.com/<your_enterprise/org/repo>"
GITHUB_PAT="<PAT>"
helm install "${{INSTALLATION_NAME}}" \\
    --namespace "${{NAMESPACE}}" \\
    --create-namespace \\
    --set githubConfigUrl="${{GITHUB_CONFIG_URL}}" \\
    --set githubConfigSecret.github_token="${{GITHUB_PAT}}" \\
    {OCI}/gha-runner-scale-set
"""

PAT = {"githubConfigUrl": "https://github.com/octo-org/app", "githubConfigSecret": {"github_token": "ghp_x"}}
EXISTING = {"githubConfigUrl": "https://github.com/octo-org", "githubConfigSecret": "pre-defined-secret"}
CLAIM = {
    "accessModes": ["ReadWriteOnce"],
    "storageClassName": "standard",
    "resources": {"requests": {"storage": "1Gi"}},
}
SCALE_SET_MATRIX: dict[str, dict[str, Any]] = {
    "pat": {**PAT, "minRunners": 0, "maxRunners": 5},
    "app": {
        "githubConfigUrl": "https://github.com/octo-org",
        "githubConfigSecret": {
            "github_app_id": 12345678,
            "github_app_installation_id": "87654321",
            "github_app_private_key": APP_KEY,
        },
    },
    "dind": {
        **EXISTING,
        "containerMode": {"type": "dind"},
        "runnerGroup": "ci",
        "runnerScaleSetName": "dind-set",
    },
    "kubernetes": {
        **EXISTING,
        "containerMode": {
            "type": "kubernetes",
            "kubernetesModeWorkVolumeClaim": CLAIM,
            "kubernetesModeAdditionalRoleRules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}
            ],
        },
    },
    "everything": {
        **EXISTING,
        "containerMode": {"type": "kubernetes-novolume"},
        "scaleSetLabels": ["gpu", "large"],
        "proxy": {
            "http": {"url": "http://proxy:3128", "credentialSecretRef": "proxy-auth"},
            "https": {"url": "http://proxy:3128"},
            "noProxy": ["example.internal"],
        },
        "githubServerTLS": {
            "certificateFrom": {"configMapKeyRef": {"name": "ghes-ca", "key": "ca.crt"}},
            "runnerMountPath": "/usr/local/share/ca-certificates/",
        },
        "keyVault": {
            "type": "azure_key_vault",
            "azureKeyVault": {
                "url": "https://v",
                "tenantId": "t",
                "clientId": "c",
                "certificatePath": "/p",
                "secretKey": "k",
            },
        },
        "listenerTemplate": {
            "spec": {"containers": [{"name": "listener", "resources": {"limits": {"memory": "128Mi"}}}]}
        },
        "listenerMetrics": {"gauges": {"gha_desired_runners": {"labels": ["name"]}}},
        "controllerServiceAccount": {"namespace": "ops", "name": "scale-sets"},
        "labels": {"team": "ml", "app.kubernetes.io/name": "ignored"},
        "annotations": {"owner": "ml"},
        "resourceMeta": {
            "autoscalingRunnerSet": {"labels": {"tier": "gpu"}},
            "ephemeralRunner": {"annotations": {"a": "b"}},
        },
        "namespaceOverride": "runners",
    },
}
CONTROLLER_MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "ha-single-namespace-metrics": {
        "replicaCount": 2,
        "flags": {"watchSingleNamespace": "arc-runners", "logLevel": "info", "logFormat": "json"},
        "metrics": {
            "controllerManagerAddr": ":8080",
            "listenerAddr": ":8080",
            "listenerEndpoint": "/metrics",
        },
        "env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"annotations": {"iam": "role"}},
    },
}


def helm(
    tmp: Path, *args: str | Path, values: dict[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    extra: list[str] = []
    if values is not None:
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        extra = ["-f", str(path)]
    return subprocess.run(
        [str(tools.helm()), *map(str, args), *extra],
        env={"HOME": str(tmp), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def render(tmp: Path, chart: Path, values: dict[str, Any], *args: str) -> list[dict[str, Any]]:
    proc = helm(tmp, "template", "rel", chart, "--namespace", "arc", *args, values=values)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def documented_template(script: str, chart: Path) -> list[str]:
    """A documented ``helm install`` as ``helm template`` of our chart, every other argument verbatim."""
    env: dict[str, str] = {}
    for line in script.strip().splitlines():
        m = re.fullmatch(r'(\w+)="(.*)"', line)
        if m:
            env[m.group(1)] = m.group(2)
    command = script.strip().split("helm install", 1)[1].replace("\\\n", " ")
    argv = shlex.split(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], command))
    assert argv[-1].startswith(OCI)
    return ["template", *argv[:-1], str(chart)]


# --- ARC's documented install commands --------------------------------------------------------------------


def test_arcs_quickstart_renders_verbatim(tmp_path: Path) -> None:
    proc = helm(tmp_path, *documented_template(ARC_INSTALL_CONTROLLER, CONTROLLER), "--include-crds")
    assert proc.returncode == 0, proc.stderr
    controller = [d for d in yaml.safe_load_all(proc.stdout) if d]
    deployment = one(controller, "Deployment")
    assert deployment["metadata"]["namespace"] == "arc-systems"
    assert {o["metadata"]["name"] for o in controller if o["kind"] == "CustomResourceDefinition"} == {
        f"{p}.actions.github.com"
        for p in ("autoscalingrunnersets", "ephemeralrunnersets", "ephemeralrunners", "autoscalinglisteners")
    }
    proc = helm(tmp_path, *documented_template(ARC_INSTALL_SCALE_SET, SCALE_SET))
    assert proc.returncode == 0, proc.stderr
    objects = [d for d in yaml.safe_load_all(proc.stdout) if d]
    ars = one(objects, "AutoscalingRunnerSet")
    assert (ars["metadata"]["name"], ars["metadata"]["namespace"]) == ("arc-runner-set", "arc-runners")
    assert ars["spec"]["githubConfigUrl"] == "https://github.com/<your_enterprise/org/repo>"
    secret = one(objects, "Secret")
    assert base64.b64decode(secret["data"]["github_token"]).decode() == "<PAT>"
    assert (
        ars["spec"]["githubConfigSecret"]
        == secret["metadata"]["name"]
        == "arc-runner-set-gha-rs-github-secret"
    )
    # without a cluster to look the controller up in, the manager Role goes to the quickstart's controller
    labels = deployment["metadata"]["labels"]
    subject = one(objects, "RoleBinding", "arc-runner-set-gha-rs-manager")["subjects"][0]
    assert (subject["namespace"], subject["name"]) == (
        labels["actions.github.com/controller-service-account-namespace"],
        labels["actions.github.com/controller-service-account-name"],
    )
    assert one(controller, "ServiceAccount")["metadata"]["name"] == subject["name"]


# --- lint, kubeconform, the CRD -----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCALE_SET_MATRIX))
def test_scale_set_chart_lints_and_every_object_is_valid(tmp_path: Path, name: str) -> None:
    values = SCALE_SET_MATRIX[name]
    lint = helm(tmp_path, "lint", "--strict", SCALE_SET, values=values)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    objects = render(tmp_path, SCALE_SET, values)
    summary = kubeconform(tmp_path, yaml.safe_dump_all(objects))
    assert f"Valid: {len(objects)}, Invalid: 0, Errors: 0, Skipped: 0" in summary
    ars = one(objects, "AutoscalingRunnerSet")
    assert local_errors(ars) == []  # the CRD's schema and CEL rules (Python twins) accept it
    assert isinstance(parse(ars), AutoscalingRunnerSet)


@pytest.mark.parametrize("name", list(CONTROLLER_MATRIX))
def test_controller_chart_lints_and_every_object_is_valid(tmp_path: Path, name: str) -> None:
    values = CONTROLLER_MATRIX[name]
    lint = helm(tmp_path, "lint", "--strict", CONTROLLER, values=values)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    objects = render(tmp_path, CONTROLLER, values, "--include-crds")
    summary = kubeconform(tmp_path, yaml.safe_dump_all(objects))
    assert f"Valid: {len(objects)}, Invalid: 0, Errors: 0, Skipped: 0" in summary


def test_controller_crds_are_the_generated_ones() -> None:
    assert (CONTROLLER / "crds") == SCALE_SET_CRD_DIR
    assert len(list(SCALE_SET_CRD_DIR.glob("actions.github.com_*.yaml"))) == 4


# --- what values render to ----------------------------------------------------------------------------


def test_controller_flags_are_runnerds(tmp_path: Path) -> None:
    objects = render(tmp_path, CONTROLLER, CONTROLLER_MATRIX["ha-single-namespace-metrics"])
    c = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["runnerd"]
    assert c["args"][:2] == ["controller", "--scale-sets"]
    # every rendered flag is runnerd's: scale-set mode only (the legacy controllers need --legacy)
    args = cli.build_parser().parse_args(c["args"])
    assert (args.scale_sets, args.legacy) == (True, False)
    assert args.enable_leader_election is True
    assert args.leader_election_id == "rel-gha-rs-controller"
    assert (args.watch_namespace, args.log_level, args.log_format, args.metrics_addr) == (
        "arc-runners",
        "info",
        "json",
        ":8080",
    )
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    assert env["CONTROLLER_MANAGER_CONTAINER_IMAGE"] == c["image"] == "ghcr.io/runnerd/runnerd:0.1.0"
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    defaults = one(render(tmp_path, CONTROLLER, {}), "Deployment")["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert "--metrics-addr=0" in defaults["args"]  # metrics off unless asked, as in ARC
    assert not any(a.startswith("--enable-leader-election") for a in defaults["args"])


def test_scale_set_values_become_the_autoscaling_runner_set(tmp_path: Path) -> None:
    objects = render(tmp_path, SCALE_SET, SCALE_SET_MATRIX["everything"])
    ars = one(objects, "AutoscalingRunnerSet")
    spec = ars["spec"]
    assert ars["metadata"]["namespace"] == "runners"
    assert spec["runnerScaleSetLabels"] == ["gpu", "large"]
    assert spec["proxy"]["http"] == {"url": "http://proxy:3128", "credentialSecretRef": "proxy-auth"}
    assert spec["githubServerTLS"] == {
        "certificateFrom": {"configMapKeyRef": {"name": "ghes-ca", "key": "ca.crt"}}
    }
    assert spec["vaultConfig"]["azureKeyVault"] == {
        "url": "https://v",
        "tenantId": "t",
        "clientId": "c",
        "certificatePath": "/p",
    }
    assert spec["listenerMetrics"] == {"gauges": {"gha_desired_runners": {"labels": ["name"]}}}
    assert spec["ephemeralRunnerMetadata"] == {"annotations": {"a": "b"}}
    assert ars["metadata"]["labels"]["tier"] == "gpu"
    assert ars["metadata"]["labels"]["team"] == "ml"
    assert ars["metadata"]["labels"]["app.kubernetes.io/name"] == "rel"  # reserved keys are the chart's
    assert ars["metadata"]["annotations"]["owner"] == "ml"
    runner = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in runner["env"]}
    assert env["ACTIONS_RUNNER_CONTAINER_HOOKS"] == "/home/runner/k8s-novolume/index.js"
    assert env["NODE_EXTRA_CA_CERTS"] == "/usr/local/share/ca-certificates/ca.crt"
    assert spec["template"]["spec"]["serviceAccountName"] == "rel-gha-rs-kube-mode"
    subject = one(objects, "RoleBinding", "rel-gha-rs-manager")["subjects"][0]
    assert (subject["namespace"], subject["name"]) == ("ops", "scale-sets")
    manager = one(objects, "Role", "rel-gha-rs-manager")
    assert {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["ghes-ca"],
        "verbs": ["get"],
    } in manager["rules"]


@pytest.mark.parametrize(
    ("mode", "init_containers", "volumes"),
    [
        ("", [], []),
        ("dind", ["init-dind-externals", "dind"], ["work", "dind-sock", "dind-externals"]),
        ("kubernetes", [], ["work"]),
        ("kubernetes-novolume", [], []),
    ],
)
def test_container_modes(tmp_path: Path, mode: str, init_containers: list[str], volumes: list[str]) -> None:
    values = {**EXISTING, "containerMode": {"type": mode, "kubernetesModeWorkVolumeClaim": CLAIM}}
    objects = render(tmp_path, SCALE_SET, values)
    pod = one(objects, "AutoscalingRunnerSet")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod.get("initContainers", [])] == init_containers
    assert [v["name"] for v in pod.get("volumes", [])] == volumes
    assert pod["restartPolicy"] == "Never"
    kube = mode.startswith("kubernetes")
    assert pod["serviceAccountName"] == ("rel-gha-rs-kube-mode" if kube else "rel-gha-rs-no-permission")
    assert (
        {o["metadata"]["name"] for o in objects if o["kind"] == "Role"}
        == {"rel-gha-rs-manager", "rel-gha-rs-kube-mode"}
    ) is kube
    if mode == "dind":
        dind = pod["initContainers"][1]
        assert dind["restartPolicy"] == "Always"  # a native sidecar: it stops when the runner does
        assert dind["securityContext"] == {"privileged": True}
    if mode == "kubernetes":
        assert pod["volumes"][0]["ephemeral"]["volumeClaimTemplate"]["spec"] == CLAIM


def test_user_env_and_volumes_win_over_the_modes_defaults(tmp_path: Path) -> None:
    runner = {
        "name": "runner",
        "image": "my/runner:1",
        "env": [{"name": "DOCKER_HOST", "value": "tcp://d:2375"}],
    }
    values = {
        **EXISTING,
        "containerMode": {"type": "dind"},
        "template": {
            "spec": {"containers": [runner], "volumes": [{"name": "work", "hostPath": {"path": "/w"}}]}
        },
    }
    pod = one(render(tmp_path, SCALE_SET, values), "AutoscalingRunnerSet")["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["DOCKER_HOST"] == "tcp://d:2375"
    assert next(v for v in pod["volumes"] if v["name"] == "work") == {
        "name": "work",
        "hostPath": {"path": "/w"},
    }
    assert pod["initContainers"][0]["image"] == "my/runner:1"  # externals come from the runner's image


def test_app_secret_keeps_every_digit(tmp_path: Path) -> None:
    objects = render(tmp_path, SCALE_SET, SCALE_SET_MATRIX["app"])
    data = {k: base64.b64decode(v).decode() for k, v in one(objects, "Secret")["data"].items()}
    assert data == {
        "github_app_id": "12345678",
        "github_app_installation_id": "87654321",
        "github_app_private_key": APP_KEY,
    }
    assert one(objects, "Secret")["metadata"]["finalizers"] == ["actions.github.com/cleanup-protection"]


def test_an_existing_secret_creates_none(tmp_path: Path) -> None:
    objects = render(tmp_path, SCALE_SET, EXISTING)
    assert not [o for o in objects if o["kind"] == "Secret"]
    ars = one(objects, "AutoscalingRunnerSet")
    assert ars["spec"]["githubConfigSecret"] == "pre-defined-secret"
    assert "actions.github.com/cleanup-github-secret-name" not in ars["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"githubConfigSecret": {"github_token": "x"}}, "githubConfigUrl is required"),
        ({"githubConfigUrl": "https://github.com/o"}, "At least one of githubConfigSecret.github_token"),
        ({**PAT, "minRunners": 3, "maxRunners": 2}, "maxRunners has to be greater or equal to minRunners"),
        ({**PAT, "containerMode": {"type": "kubernetes"}}, "kubernetesModeWorkVolumeClaim is required"),
        (
            {**PAT, "githubConfigSecret": {"github_app_id": 1}},
            "needs githubConfigSecret.github_app_installation_id",
        ),
        ({**PAT, "runnerScaleSetName": "x" * 46}, "/runnerScaleSetName"),
        ({**PAT, "minRunners": -1}, "/minRunners"),
        ({**PAT, "containerMode": {"type": "docker"}}, "/containerMode/type"),
        ({**PAT, "githubConfigUrll": "typo"}, "githubConfigUrll"),
    ],
)
def test_values_that_cannot_work_are_refused(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    proc = helm(tmp_path, "template", "rel", SCALE_SET, values=values)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_controller_values_schema_refuses_typos(tmp_path: Path) -> None:
    proc = helm(tmp_path, "template", "rel", CONTROLLER, values={"flags": {"updateStrategy": "sometimes"}})
    assert proc.returncode != 0
    assert "updateStrategy" in proc.stderr


# --- RBAC ---------------------------------------------------------------------------------------------


def _rules(obj: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in obj["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_controller_rbac_is_least_privilege(tmp_path: Path) -> None:
    objects = render(tmp_path, CONTROLLER, {})
    cluster = _rules(one(objects, "ClusterRole"))
    assert not {r for r in cluster if "*" in r}
    # cluster-wide it only reads core objects; it writes them through each scale set's manager Role,
    # in the runners' namespaces (tests/unit/chart/test_scale_set_rbac.py: exactly what the code asks)
    assert {r for r in cluster if r[0] == "" and r[2] not in ("list", "watch")} == {
        ("", "events", "create"),
        ("", "events", "patch"),
    }
    assert not {r for r in cluster if r[0] == "rbac.authorization.k8s.io"}
    # the listeners run in the controller process: no listener pods, Secrets or ServiceAccounts
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding")]
    ha = render(tmp_path, CONTROLLER, {"replicaCount": 2})
    lease = one(ha, "Role", "rel-gha-rs-controller-leader-election")
    assert {n for rule in lease["rules"] for n in rule.get("resourceNames", ())} == {"rel-gha-rs-controller"}


def test_single_namespace_controller_has_no_cluster_role(tmp_path: Path) -> None:
    objects = render(tmp_path, CONTROLLER, {"flags": {"watchSingleNamespace": "ci"}})
    assert not [o for o in objects if o["kind"].startswith("Cluster")]
    watch = one(objects, "Role", "rel-gha-rs-controller-watch")
    assert watch["metadata"]["namespace"] == "ci"
    assert "autoscalinglisteners" not in {r[1] for r in _rules(watch)}
    home = one(objects, "Role", "rel-gha-rs-controller-single-namespace")
    assert home["metadata"]["namespace"] == "arc"
    assert "autoscalinglisteners" in {r[1] for r in _rules(home)}
    deployment = one(objects, "Deployment")
    assert deployment["metadata"]["labels"]["actions.github.com/controller-watch-single-namespace"] == "ci"


def test_runner_pods_get_no_rights(tmp_path: Path) -> None:
    objects = render(tmp_path, SCALE_SET, PAT)
    sa = one(objects, "ServiceAccount")
    assert sa["metadata"]["name"] == "rel-gha-rs-no-permission"
    assert sa["automountServiceAccountToken"] is False
    bound = {s["name"] for o in objects if o["kind"] == "RoleBinding" for s in o["subjects"]}
    assert sa["metadata"]["name"] not in bound
    manager = _rules(one(objects, "Role", "rel-gha-rs-manager"))
    assert not {r for r in manager if "*" in r}
    assert (
        "",
        "serviceaccounts",
        "create",
    ) not in manager  # listener ServiceAccounts live with the controller
