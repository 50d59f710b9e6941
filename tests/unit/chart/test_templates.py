"""The chart rendered with ``helm template`` (no cluster): what each value turns into, and that the
rendered commands are ones runnerd's own command line accepts."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runnerd import cli

pytestmark = [pytest.mark.timeout(60)]

CHART = Path(__file__).resolve().parents[3] / "charts" / "actions-runner-controller"
GROUP = "actions.summerwind.dev"


def render_raw(
    helm_bin: Path, tmp: Path, *args: str, values: str | None = None
) -> subprocess.CompletedProcess[str]:
    extra: list[str] = []
    if values is not None:
        path = tmp / "values.yaml"
        path.write_text(values)
        extra = ["-f", str(path)]
    return subprocess.run(
        [str(helm_bin), "template", "rel", str(CHART), "--namespace", "arc", *extra, *args],
        env={"HOME": str(tmp), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


class Rendered:
    def __init__(self, text: str) -> None:
        self.objects: list[dict[str, Any]] = [d for d in yaml.safe_load_all(text) if d]

    def kinds(self) -> set[str]:
        return {d["kind"] for d in self.objects}

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.objects if d["kind"] == kind and name in (None, d["metadata"]["name"])]
        assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
        return found[0]

    def named(self, kind: str) -> set[str]:
        return {d["metadata"]["name"] for d in self.objects if d["kind"] == kind}


def render(helm_bin: Path, tmp: Path, *sets: str, values: str | None = None) -> Rendered:
    args = [a for s in sets for a in ("--set", s)]
    proc = render_raw(helm_bin, tmp, *args, values=values)
    assert proc.returncode == 0, proc.stderr
    return Rendered(proc.stdout)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env") or ()}


def parse(c: dict[str, Any]) -> Any:
    """The container's command as runnerd's own parser reads it (SystemExit on an unknown flag)."""
    assert c["command"] == ["runnerd"]
    return cli.build_parser().parse_args(c["args"])


def test_defaults_render_the_controller_only(
    helm_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCH_NAMESPACE", raising=False)
    r = render(helm_bin, tmp_path)
    assert r.kinds() == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
    }
    deployment = r.one("Deployment")
    c = container(deployment)
    assert c["image"] == "ghcr.io/runnerd/runnerd:0.1.0"
    args = parse(c)
    assert args.command == "controller"
    assert args.enable_leader_election is True
    assert args.leader_election_id == "actions-runner-controller"
    assert args.watch_namespace is None  # all namespaces
    assert (args.sync_period, args.default_scale_down_delay) == (60.0, 600.0)
    assert (args.metrics_addr, args.health_probe_bind_address) == (":8080", ":8081")
    env = env_of(c)
    # exactly the variables and Secret keys runnerd reads, from ARC's default Secret name
    for var, key in cli.ENV_TO_SECRET_KEY.items():
        assert env[var] == {"secretKeyRef": {"name": "controller-manager", "key": key, "optional": True}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics-port": 8080, "health": 8081}
    assert r.one("Service")["spec"]["ports"][0]["targetPort"] == "metrics-port"
    lease_role = r.one("Role", "rel-actions-runner-controller-leader-election")
    assert lease_role["metadata"]["namespace"] == "arc"
    assert {n for rule in lease_role["rules"] for n in rule.get("resourceNames", ())} == {
        "actions-runner-controller"
    }


def test_single_namespace_binds_a_role_there_and_only_volumes_capacity_and_cluster_id_cluster_wide(
    helm_bin: Path, tmp_path: Path
) -> None:
    r = render(helm_bin, tmp_path, "scope.singleNamespace=true")
    assert parse(container(r.one("Deployment"))).watch_namespace == "arc"  # the release namespace
    manager = r.one("Role", "rel-actions-runner-controller-manager")
    assert manager["metadata"]["namespace"] == "arc"
    cluster_roles = [d for d in r.objects if d["kind"] == "ClusterRole"]
    cluster_rules = [rule for d in cluster_roles for rule in d["rules"]]
    # volumes, capacity admission's pods (sizing.enabled, read-only), the cluster's id, the nodes (read:
    # admission's capacity and the GPU products that price the cost ledger)
    assert [rule["resources"] for rule in cluster_rules] == [
        ["persistentvolumes"],
        ["pods"],
        ["namespaces"],
        ["nodes"],
    ]
    assert cluster_rules[1]["verbs"] == ["list", "watch"]
    assert cluster_rules[2]["resourceNames"] == ["kube-system"]  # the cluster's id, nothing else
    assert cluster_rules[3]["verbs"] == ["list", "watch"]

    r = render(helm_bin, tmp_path, "scope.singleNamespace=true", "scope.watchNamespace=ci")
    assert parse(container(r.one("Deployment"))).watch_namespace == "ci"
    binding = r.one("RoleBinding", "rel-actions-runner-controller-manager")
    assert binding["metadata"]["namespace"] == "ci"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-actions-runner-controller", "namespace": "arc"}
    ]
    assert r.named("ClusterRole") == {
        "rel-actions-runner-controller-volumes-ci",
        "rel-actions-runner-controller-capacity-ci",
        "rel-actions-runner-controller-cluster-identity-ci",
        "rel-actions-runner-controller-nodes-ci",
    }


@pytest.mark.parametrize(
    ("sets", "flag", "volumes"),
    [
        ((), None, True),
        (("runnerSets.volumeRecycling=false",), "--no-volume-recycling", False),
        (("runnerSets.enabled=false",), "--no-runner-sets", False),
        (("runnerSets.enabled=false", "runnerSets.volumeRecycling=false"), "--no-runner-sets", False),
    ],
)
def test_runner_sets_off_take_their_rights_and_the_cluster_wide_volumes_away(
    helm_bin: Path, tmp_path: Path, sets: tuple[str, ...], flag: str | None, volumes: bool
) -> None:
    """Issue 13 finding 6: Secret listing and cluster-wide PersistentVolume patching were granted
    whether or not RunnerSets were used. (Every Runner's credentials live in a Secret of its own,
    written and read by name, so create/get/patch on Secrets stays.)"""
    for scope in ((), ("scope.singleNamespace=true",)):
        r = render(helm_bin, tmp_path, *scope, *sets)
        args = container(r.one("Deployment"))["args"]
        assert [a for a in args if a in ("--no-runner-sets", "--no-volume-recycling")] == (
            [flag] if flag else []
        )
        parsed = parse(container(r.one("Deployment")))
        assert parsed.runner_sets is (flag != "--no-runner-sets")
        assert parsed.volume_recycling is (flag != "--no-volume-recycling")  # moot without RunnerSets
        volume_roles = {n for n in r.named("ClusterRole") if "-volumes" in n}
        assert bool(volume_roles) is volumes
        kind = "Role" if scope else "ClusterRole"
        rules = r.one(kind, "rel-actions-runner-controller-manager")["rules"]
        resources = {res for rule in rules for res in rule["resources"]}
        runner_set_only = {"statefulsets", "persistentvolumeclaims", "runnersets"}
        secret_verbs = {v for rule in rules if "secrets" in rule["resources"] for v in rule["verbs"]}
        assert secret_verbs == (
            {"create", "get", "patch"} | (set() if flag == "--no-runner-sets" else {"list", "watch"})
        )
        if flag == "--no-runner-sets":
            assert not resources & runner_set_only
            assert not {res for res in resources if res.startswith("runnersets/")}
        else:
            assert runner_set_only <= resources
        if scope:  # nothing but the cluster's id, the nodes and pods (read) and the volumes (when recycled)
            cluster_wide = [d for d in r.objects if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
            assert {d["metadata"]["name"] for d in cluster_wide} == (
                {"rel-actions-runner-controller-volumes-arc"} if volumes else set()
            ) | {
                "rel-actions-runner-controller-cluster-identity-arc",
                "rel-actions-runner-controller-capacity-arc",
                "rel-actions-runner-controller-nodes-arc",
            }


def test_watch_namespace_without_single_namespace_is_ignored_as_in_arc(
    helm_bin: Path, tmp_path: Path
) -> None:
    r = render(helm_bin, tmp_path, "scope.watchNamespace=ci")
    assert not any(a.startswith("--watch-namespace") for a in container(r.one("Deployment"))["args"])
    assert "rel-actions-runner-controller-manager" in r.named("ClusterRole")


def test_controller_values_become_flags_runnerd_accepts(helm_bin: Path, tmp_path: Path) -> None:
    r = render(
        helm_bin, tmp_path,
        "syncPeriod=30s", "defaultScaleDownDelay=5m", "leaderElectionId=my-arc",
        "image.actionsRunnerRepositoryAndTag=summerwind/actions-runner:ubuntu-22.04",
        "image.dindSidecarRepositoryAndTag=docker:27-dind",
        "image.actionsRunnerImagePullSecrets={regcred,other}",
        "dockerRegistryMirror=https://mirror.example.com", "dockerGID=121",
        "runnerGithubURL=https://octo.ghe.com/", "logLevel=debug", "logFormat=json",
        "extraArgs={--drain-grace=1m}", "healthProbeBindAddress=:9440", "metrics.port=9090",
    )  # fmt: skip
    c = container(r.one("Deployment"))
    args = parse(c)
    assert (args.sync_period, args.default_scale_down_delay) == (30.0, 300.0)
    assert args.leader_election_id == "my-arc"
    assert args.runner_image == "summerwind/actions-runner:ubuntu-22.04"
    assert args.docker_image == "docker:27-dind"
    assert args.runner_image_pull_secret == ["regcred", "other"]
    assert args.docker_registry_mirror == "https://mirror.example.com"
    assert args.docker_gid == 121
    assert args.runner_github_url == "https://octo.ghe.com/"
    assert (args.log_level, args.log_format) == ("debug", "json")
    assert args.drain_grace == 60.0
    assert (args.metrics_addr, args.health_probe_bind_address) == (":9090", ":9440")
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics-port": 9090, "health": 9440}
    lease_role = r.one("Role", "rel-actions-runner-controller-leader-election")
    assert {n for rule in lease_role["rules"] for n in rule.get("resourceNames", ())} == {"my-arc"}


def test_no_health_address_means_no_probes(helm_bin: Path, tmp_path: Path) -> None:
    c = container(render(helm_bin, tmp_path, "healthProbeBindAddress=").one("Deployment"))
    assert "readinessProbe" not in c
    assert "livenessProbe" not in c
    assert parse(c).health_probe_bind_address == "0"


def test_github_endpoints_and_proxy_env(
    helm_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = render(
        helm_bin, tmp_path,
        "githubEnterpriseServerURL=https://github.example.com", "env.HTTPS_PROXY=http://proxy:3128",
        "env.NO_PROXY=.svc\\,10.0.0.0/8",
    )  # fmt: skip
    c = container(r.one("Deployment"))
    env = env_of(c)
    assert env["GITHUB_ENTERPRISE_URL"] == "https://github.example.com"
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    assert env["NO_PROXY"] == ".svc,10.0.0.0/8"
    monkeypatch.setenv("GITHUB_ENTERPRISE_URL", env["GITHUB_ENTERPRISE_URL"])
    assert parse(c).github_enterprise_url == "https://github.example.com"  # runnerd reads that variable

    # env as a list of EnvVar objects, as ARC's chart also takes it
    values = """
env:
  - name: HTTPS_PROXY
    valueFrom:
      secretKeyRef: {name: proxy, key: url}
githubURL: https://ghproxy.example.com/api
"""
    env = env_of(container(render(helm_bin, tmp_path, values=values).one("Deployment")))
    assert env["HTTPS_PROXY"] == {"secretKeyRef": {"name": "proxy", "key": "url"}}
    assert env["GITHUB_URL"] == "https://ghproxy.example.com/api"


def test_auth_secret(helm_bin: Path, tmp_path: Path) -> None:
    r = render(
        helm_bin,
        tmp_path,
        "authSecret.create=true",
        "authSecret.github_token=t0k",
        "authSecret.annotations.a=b",
    )
    secret = r.one("Secret", "controller-manager")
    assert secret["metadata"]["annotations"] == {"a": "b"}
    assert set(secret["data"]) == {"github_token"}
    assert "checksum/auth-secret" in r.one("Deployment")["spec"]["template"]["metadata"]["annotations"]

    # an existing Secret by another name: referenced, not created
    r = render(helm_bin, tmp_path, "authSecret.name=my-github")
    assert "Secret" not in r.kinds()
    env = env_of(container(r.one("Deployment")))
    assert env["GITHUB_TOKEN"]["secretKeyRef"]["name"] == "my-github"

    # authSecret.enabled=false: no credentials from a Secret at all
    env = env_of(container(render(helm_bin, tmp_path, "authSecret.enabled=false").one("Deployment")))
    assert not set(cli.ENV_TO_SECRET_KEY) & set(env)


def test_app_ids_from_a_values_file_keep_every_digit(helm_bin: Path, tmp_path: Path) -> None:
    values = """
authSecret:
  create: true
  github_app_id: 1234567
  github_app_installation_id: 98765432
  github_app_private_key: |
    -----BEGIN RSA PRIVATE KEY-----
    MIIB
    -----END RSA PRIVATE KEY-----
"""
    data = render(helm_bin, tmp_path, values=values).one("Secret")["data"]
    decoded = {k: base64.b64decode(v).decode() for k, v in data.items()}
    assert decoded["github_app_id"] == "1234567"
    assert decoded["github_app_installation_id"] == "98765432"
    assert decoded["github_app_private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----\nMIIB\n")


def test_webhook_server(helm_bin: Path, tmp_path: Path) -> None:
    r = render(
        helm_bin, tmp_path,
        "githubWebhookServer.enabled=true", "githubWebhookServer.secret.create=true",
        "githubWebhookServer.secret.github_webhook_secret_token=whsec", "scope.singleNamespace=true",
        "githubWebhookServer.useRunnerGroupsVisibility=true",
    )  # fmt: skip
    deployment = r.one("Deployment", "rel-actions-runner-controller-github-webhook-server")
    c = container(deployment)
    args = parse(c)
    assert args.command == "webhook-server"
    assert (args.webhook_addr, args.metrics_addr, args.watch_namespace) == (":8000", ":8080", "arc")
    assert args.use_runner_groups_visibility is True
    env = env_of(c)
    assert env["GITHUB_WEBHOOK_SECRET_TOKEN"] == {
        "secretKeyRef": {"name": "github-webhook-server", "key": "github_webhook_secret_token"}
    }
    # group visibility needs GitHub credentials: the controller's Secret unless secret.enabled
    assert env["GITHUB_TOKEN"]["secretKeyRef"]["name"] == "controller-manager"
    assert set(r.one("Secret", "github-webhook-server")["data"]) == {"github_webhook_secret_token"}
    service = r.one("Service", "rel-actions-runner-controller-github-webhook-server")
    assert service["spec"]["ports"] == [{"port": 80, "targetPort": "http", "protocol": "TCP", "name": "http"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # the controller's metrics Service must not select webhook pods
    metrics = r.one("Service", "rel-actions-runner-controller-metrics-service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert not metrics["spec"]["selector"].items() <= labels.items()
    role = r.one("Role", "rel-actions-runner-controller-github-webhook-server")
    assert role["metadata"]["namespace"] == "arc"
    verbs = {
        (g, res): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for res in rule["resources"]
    }
    # the reservation journal (the default): the server journals, the leading controller writes the HRA
    assert verbs[(GROUP, "horizontalrunnerautoscalers")] == {"get", "list", "watch"}
    assert verbs[("", "configmaps")] == {"create"}
    assert verbs[(GROUP, "runnerdeployments")] == {"list", "watch"}
    assert "Ingress" not in r.kinds()

    r = render(
        helm_bin, tmp_path,
        "githubWebhookServer.enabled=true", "githubWebhookServer.ingress.enabled=true",
        "githubWebhookServer.ingress.hosts[0].host=arc.example.com",
        "githubWebhookServer.ingress.hosts[0].paths[0].path=/hooks",
        "githubWebhookServer.ingress.hosts[0].paths[0].pathType=Exact",
        "githubWebhookServer.ingress.tls[0].secretName=tls",
        "githubWebhookServer.ingress.tls[0].hosts[0]=arc.example.com",
    )  # fmt: skip
    assert "Secret" not in r.kinds()  # the token is in the user's own Secret of ARC's default name
    ingress = r.one("Ingress")
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]
    assert (path["path"], path["pathType"]) == ("/hooks", "Exact")
    assert path["backend"]["service"] == {
        "name": "rel-actions-runner-controller-github-webhook-server",
        "port": {"number": 80},
    }
    assert ingress["spec"]["tls"] == [{"secretName": "tls", "hosts": ["arc.example.com"]}]


@pytest.mark.parametrize(
    "flag", ["metrics.serviceMonitor.enable=true", "metrics.serviceMonitor.enabled=true"]
)
def test_service_monitor(helm_bin: Path, tmp_path: Path, flag: str) -> None:
    r = render(
        helm_bin,
        tmp_path,
        flag,
        "metrics.serviceMonitorLabels.release=prom",
        "githubWebhookServer.enabled=true",
    )
    monitors = [d for d in r.objects if d["kind"] == "ServiceMonitor"]
    assert len(monitors) == 2  # the controller's and the webhook server's
    controller = r.one("ServiceMonitor", "rel-actions-runner-controller-service-monitor")
    assert controller["metadata"]["labels"]["release"] == "prom"
    assert controller["spec"]["endpoints"][0]["port"] == "metrics-port"
    assert (
        controller["spec"]["selector"]["matchLabels"]
        == r.one("Service", "rel-actions-runner-controller-metrics-service")["spec"]["selector"]
    )


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["authSecret.create=true"], "authSecret.create=true needs authSecret.github_token"),
        (
            ["authSecret.create=true", "authSecret.github_app_id=1"],
            "missing github_app_installation_id, github_app_private_key",
        ),
        (["image.repository=summerwind/actions-runner-controller"], "is ARC's controller image"),
        (["image.repository=ghcr.io/actions/actions-runner-controller"], "is ARC's controller image"),
        (["authSecret.github_basicauth_username=u"], "does not support basic authentication"),
        (
            ["githubWebhookServer.enabled=true", "githubWebhookServer.secret.create=true"],
            "needs githubWebhookServer.secret.github_webhook_secret_token",
        ),
        (["actionsMetricsServer.enabled=true"], "not part of runnerd"),
        (
            [
                "podDisruptionBudget.enabled=true",
                "podDisruptionBudget.minAvailable=1",
                "podDisruptionBudget.maxUnavailable=1",
            ],
            "not both",
        ),
        (["logLevel=verbose"], "at '/logLevel'"),
        (["syncPeriod=sixty"], "at '/syncPeriod'"),
    ],
)
def test_values_that_cannot_work_are_refused_with_a_reason(
    helm_bin: Path, tmp_path: Path, sets: list[str], message: str
) -> None:
    proc = render_raw(helm_bin, tmp_path, *[a for s in sets for a in ("--set", s)])
    assert proc.returncode != 0
    assert message in proc.stderr


def test_accepted_and_ignored_arc_values_change_nothing(helm_bin: Path, tmp_path: Path) -> None:
    baseline = render_raw(helm_bin, tmp_path)
    ignored = render_raw(
        helm_bin, tmp_path,
        "--set", "certManagerEnabled=true", "--set", "admissionWebHooks.caBundle=Q0E=",
        "--set", "runner.statusUpdateHook.enabled=true", "--set", "metrics.proxy.enabled=true",
        "--set", "webhookPort=9443",
        "--set", "service.port=443", "--set", "githubUploadURL=https://uploads.example.com",
        "--set", "githubWebhookServer.queueLimit=100",
    )  # fmt: skip
    assert baseline.returncode == ignored.returncode == 0, ignored.stderr
    assert ignored.stdout == baseline.stdout


def test_kubernetes_mode_permissions_value_turns_on_per_runner_service_accounts(
    helm_bin: Path, tmp_path: Path
) -> None:
    off = render(helm_bin, tmp_path)
    on = render(helm_bin, tmp_path, "rbac.allowGrantingKubernetesContainerModePermissions=true")
    assert "--kubernetes-mode-service-accounts" not in container(off.one("Deployment"))["args"]
    assert "--kubernetes-mode-service-accounts" in container(on.one("Deployment"))["args"]
    rules = on.one("ClusterRole", "rel-actions-runner-controller-manager")["rules"]
    assert {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["roles", "rolebindings"],
        "verbs": ["create"],
    } in rules
