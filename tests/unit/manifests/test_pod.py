"""build_runner_pod: ARC's pod contract, docker modes, registration, user overrides, errors."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from runnerd.manifests.dind import DOCKER_PRE_STOP
from runnerd.manifests.pod import PodOptions, RunnerPodError, RunnerPodMode, runner_pod_mode
from runnerd.reconcile.credentials import JitConfig, RegistrationToken
from runnerd.reconcile.runnerpod import LABEL_POD_TEMPLATE_HASH, LABEL_RUNNER_NAME
from tests.unit.manifests.podkit import (
    ARTICLE_DIND,
    ARTICLE_ORG,
    ARTICLE_REPO,
    JIT,
    KUBERNETES_MODE,
    MODES,
    NO_DOCKER,
    OPTIONS,
    TOKEN,
    container,
    container_names,
    env,
    mounts,
    pod,
    spec,
    volumes,
)

RUNNER_ENV_BASE = [
    {"name": "RUNNER_ORG", "value": ""},
    {"name": "RUNNER_REPO", "value": "octo/mlops"},
    {"name": "RUNNER_ENTERPRISE", "value": ""},
    {"name": "RUNNER_LABELS", "value": "self-hosted,arc-runner"},
    {"name": "RUNNER_GROUP", "value": ""},
    {"name": "DOCKER_ENABLED", "value": "true"},
    {"name": "DOCKERD_IN_RUNNER", "value": "false"},
    {"name": "GITHUB_URL", "value": "https://github.com/"},
    {"name": "RUNNER_WORKDIR", "value": "/runner/_work"},
    {"name": "RUNNER_EPHEMERAL", "value": "true"},
    {"name": "RUNNER_STATUS_UPDATE_HOOK", "value": "false"},
    {"name": "GITHUB_ACTIONS_RUNNER_EXTRA_USER_AGENT", "value": "runnerd/1.2.3"},
]


def test_article_runner_deployment_pod_exactly() -> None:
    """The whole pod for the article's RunnerDeployment template (repository, default options)."""
    got = pod(
        ARTICLE_REPO,
        name="example-runner-deployment-x7k2p-9qv4d",
        labels={"runner-deployment-name": "example-runner-deployment", "runner-template-hash": "abc"},
    )
    template_hash = got["metadata"]["labels"][LABEL_POD_TEMPLATE_HASH]
    assert got == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "example-runner-deployment-x7k2p-9qv4d",
            "namespace": "ns",
            "labels": {
                "runner-deployment-name": "example-runner-deployment",
                "runner-template-hash": "abc",
                "actions-runner": "",
                LABEL_RUNNER_NAME: "example-runner-deployment-x7k2p-9qv4d",
                LABEL_POD_TEMPLATE_HASH: template_hash,
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "runner",
                    "image": "summerwind/actions-runner:latest",
                    "imagePullPolicy": "Always",
                    "env": [
                        *RUNNER_ENV_BASE,
                        {"name": "DOCKER_HOST", "value": "unix:///run/docker.sock"},
                        {"name": "RUNNER_NAME", "value": "example-runner-deployment-x7k2p-9qv4d"},
                        {
                            "name": "RUNNER_TOKEN",
                            "valueFrom": {
                                "secretKeyRef": {
                                    "name": "example-runner-deployment-x7k2p-9qv4d",
                                    "key": "RUNNER_TOKEN",
                                }
                            },
                        },
                    ],
                    "volumeMounts": [
                        {"name": "runner", "mountPath": "/runner"},
                        {"name": "work", "mountPath": "/runner/_work"},
                        {"name": "var-run", "mountPath": "/run"},
                    ],
                    "readinessProbe": {
                        "exec": {"command": ["sh", "-c", "test ! -e /runner/.runnerd-job"]},
                        "periodSeconds": 1,
                        "failureThreshold": 1,
                        "successThreshold": 1,
                        "timeoutSeconds": 1,
                    },
                },
                {
                    "name": "docker",
                    "image": "docker:dind",
                    "args": ["dockerd", "--host=unix:///run/docker.sock", "--group=$(DOCKER_GROUP_GID)"],
                    "env": [{"name": "DOCKER_GROUP_GID", "value": "1001"}],
                    "volumeMounts": [
                        {"name": "runner", "mountPath": "/runner"},
                        {"name": "var-run", "mountPath": "/run"},
                        {"name": "work", "mountPath": "/runner/_work"},
                    ],
                    "securityContext": {"privileged": True},
                    "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", DOCKER_PRE_STOP]}}},
                },
            ],
            "volumes": [
                {"name": "runner", "emptyDir": {}},
                {"name": "work", "emptyDir": {}},
                {"name": "var-run", "emptyDir": {"medium": "Memory", "sizeLimit": "1M"}},
            ],
        },
    }


@pytest.mark.parametrize(
    ("raw", "org", "repo", "enterprise"),
    [
        pytest.param(ARTICLE_REPO, "", "octo/mlops", "", id="repository"),
        pytest.param(ARTICLE_ORG, "octo", "", "", id="organization"),
        pytest.param({"enterprise": "acme", "labels": ["x"]}, "", "", "acme", id="enterprise"),
    ],
)
def test_article_scopes_set_exactly_one_scope_env(
    raw: dict[str, Any], org: str, repo: str, enterprise: str
) -> None:
    e = env(container(pod(raw), "runner"))
    assert (e["RUNNER_ORG"], e["RUNNER_REPO"], e["RUNNER_ENTERPRISE"]) == (org, repo, enterprise)
    assert e["RUNNER_LABELS"] == ",".join(raw["labels"])


def test_scope_fields_and_group_and_ephemeral_and_workdir() -> None:
    e = env(container(pod(ARTICLE_ORG, group="gpu-pool", ephemeral=False, workDir="/work"), "runner"))
    assert e["RUNNER_GROUP"] == "gpu-pool"
    assert e["RUNNER_EPHEMERAL"] == "false"
    assert e["RUNNER_WORKDIR"] == "/work"


@pytest.mark.parametrize(
    ("registration", "present", "absent", "annotation"),
    [
        pytest.param(TOKEN, "RUNNER_TOKEN", "ACTIONS_RUNNER_INPUT_JITCONFIG", None, id="token"),
        pytest.param(JIT, "ACTIONS_RUNNER_INPUT_JITCONFIG", "RUNNER_TOKEN", "42", id="jit"),
    ],
)
def test_registration_env_and_runner_id_annotation(
    registration: Any, present: str, absent: str, annotation: str | None
) -> None:
    """The credential is a reference to the runner's Secret: its value is nowhere in the pod."""
    p = pod(ARTICLE_REPO, registration=registration)
    e = env(container(p, "runner"))
    assert e[present] == {"secretKeyRef": {"name": "rd-abcde-fghij", "key": present}}
    assert absent not in e
    secret_value = registration.token if present == "RUNNER_TOKEN" else registration.encoded_jit_config
    assert secret_value not in json.dumps(p)
    assert e["RUNNER_NAME"] == "rd-abcde-fghij"
    assert p["metadata"].get("annotations", {}).get("actions-runner/id") == annotation
    assert registration.kind in ("token", "jit")


def test_registration_is_a_tagged_union() -> None:
    assert RegistrationToken("t").kind == "token"
    assert JitConfig("c", 1).kind == "jit"


@pytest.mark.parametrize(
    ("raw", "mode", "names", "privileged", "docker_env", "volume_names"),
    [
        pytest.param(
            ARTICLE_REPO,
            RunnerPodMode.DIND_SIDECAR,
            ["runner", "docker"],
            None,
            {
                "DOCKER_ENABLED": "true",
                "DOCKERD_IN_RUNNER": "false",
                "DOCKER_HOST": "unix:///run/docker.sock",
            },
            {"runner", "work", "var-run"},
            id="dind-sidecar",
        ),
        pytest.param(
            ARTICLE_DIND,
            RunnerPodMode.DIND_IN_RUNNER,
            ["runner"],
            True,
            {"DOCKER_ENABLED": "true", "DOCKERD_IN_RUNNER": "true", "DOCKER_HOST": None},
            {"runner"},
            id="dind-in-runner",
        ),
        pytest.param(
            {**NO_DOCKER, "dockerdWithinRunnerContainer": True},
            RunnerPodMode.DIND_IN_RUNNER,
            ["runner"],
            True,
            {"DOCKER_ENABLED": "true", "DOCKERD_IN_RUNNER": "true", "DOCKER_HOST": None},
            {"runner"},
            id="dind-in-runner-wins-over-dockerEnabled-false",
        ),
        pytest.param(
            NO_DOCKER,
            RunnerPodMode.NO_DOCKER,
            ["runner"],
            None,
            {"DOCKER_ENABLED": "false", "DOCKERD_IN_RUNNER": "false", "DOCKER_HOST": None},
            {"runner"},
            id="no-docker",
        ),
        pytest.param(
            KUBERNETES_MODE,
            RunnerPodMode.KUBERNETES,
            ["runner"],
            None,
            {"DOCKER_ENABLED": "false", "DOCKERD_IN_RUNNER": "false", "DOCKER_HOST": None},
            {"runner", "work"},
            id="kubernetes",
        ),
        pytest.param(
            {**KUBERNETES_MODE, "dockerdWithinRunnerContainer": True},
            RunnerPodMode.KUBERNETES,
            ["runner"],
            None,
            {"DOCKER_ENABLED": "false", "DOCKERD_IN_RUNNER": "false", "DOCKER_HOST": None},
            {"runner", "work"},
            id="kubernetes-wins-over-dind-in-runner",
        ),
    ],
)
def test_docker_modes(
    raw: dict[str, Any],
    mode: RunnerPodMode,
    names: list[str],
    privileged: bool | None,
    docker_env: dict[str, str | None],
    volume_names: set[str],
) -> None:
    assert runner_pod_mode(spec(raw)) is mode
    p = pod(raw)
    assert p["spec"]["restartPolicy"] == "Never"
    assert container_names(p) == names
    runner = container(p, "runner")
    assert runner.get("securityContext", {}).get("privileged") is privileged
    e = env(runner)
    assert {k: e.get(k) for k in docker_env} == docker_env
    assert set(volumes(p)) == volume_names


def test_dind_in_runner_is_the_article_gpu_setup() -> None:
    p = pod(ARTICLE_DIND, dockerMTU=1400, dockerRegistryMirror="https://mirror.gcr.io")
    runner = container(p, "runner")
    assert runner["image"] == "summerwind/actions-runner-dind:latest"
    assert runner["securityContext"] == {"privileged": True}
    assert {"MTU": "1400", "DOCKER_REGISTRY_MIRROR": "https://mirror.gcr.io"}.items() <= env(runner).items()
    assert mounts(runner) == {"/runner": "runner"}


def test_dind_in_runner_default_image_option() -> None:
    raw = {**ARTICLE_REPO, "dockerdWithinRunnerContainer": True}
    assert container(pod(raw), "runner")["image"] == "summerwind/actions-runner:latest"  # ARC
    options = PodOptions(dind_runner_image="summerwind/actions-runner-dind:ubuntu-22.04")
    assert (
        container(pod(raw, options=options), "runner")["image"]
        == "summerwind/actions-runner-dind:ubuntu-22.04"
    )
    assert (
        container(pod(ARTICLE_REPO, options=options), "runner")["image"] == "summerwind/actions-runner:latest"
    )


def test_sidecar_mtu_and_registry_mirror_go_to_dockerd() -> None:
    p = pod(ARTICLE_REPO, dockerMTU=1400, dockerRegistryMirror="https://mirror.gcr.io")
    docker = container(p, "docker")
    assert docker["args"] == [
        "dockerd",
        "--host=unix:///run/docker.sock",
        "--group=$(DOCKER_GROUP_GID)",
        "--mtu",
        "1400",
        "--registry-mirror=https://mirror.gcr.io",
    ]
    assert env(docker)["DOCKERD_ROOTLESS_ROOTLESSKIT_MTU"] == "1400"
    assert "MTU" not in env(container(p, "runner"))


@pytest.mark.parametrize(
    ("spec_mirror", "option_mirror", "expected"),
    [
        pytest.param(
            None, "https://opt.example", "--registry-mirror=https://opt.example", id="controller-default"
        ),
        pytest.param(
            "https://spec.example", "https://opt.example", "--registry-mirror=https://spec.example", id="spec"
        ),
        pytest.param("", "https://opt.example", None, id="spec-empty-disables"),
    ],
)
def test_registry_mirror_precedence(
    spec_mirror: str | None, option_mirror: str, expected: str | None
) -> None:
    raw = dict(ARTICLE_REPO) if spec_mirror is None else {**ARTICLE_REPO, "dockerRegistryMirror": spec_mirror}
    args = container(pod(raw, options=PodOptions(docker_registry_mirror=option_mirror)), "docker")["args"]
    assert [a for a in args if a.startswith("--registry-mirror")] == ([expected] if expected else [])


@pytest.mark.parametrize(
    ("image", "gid"),
    [
        ("summerwind/actions-runner:latest", "1001"),
        ("summerwind/actions-runner:ubuntu-22.04", "121"),
        ("summerwind/actions-runner:ubuntu-24.04", "121"),
        ("summerwind/actions-runner:ubuntu-20.04", "1001"),
    ],
)
def test_docker_group_gid_follows_runner_image(image: str, gid: str) -> None:
    assert env(container(pod(ARTICLE_REPO, image=image), "docker"))["DOCKER_GROUP_GID"] == gid


def test_docker_gid_option_and_docker_env_override() -> None:
    assert (
        env(container(pod(ARTICLE_REPO, options=PodOptions(docker_gid=999)), "docker"))["DOCKER_GROUP_GID"]
        == "999"
    )
    p = pod(ARTICLE_REPO, dockerEnv=[{"name": "DOCKER_GROUP_GID", "value": "42"}])
    assert env(container(p, "docker"))["DOCKER_GROUP_GID"] == "42"


def test_kubernetes_container_mode() -> None:
    p = pod(KUBERNETES_MODE)
    runner = container(p, "runner")
    e = env(runner)
    assert e["ACTIONS_RUNNER_CONTAINER_HOOKS"] == "/runner/k8s/index.js"
    assert e["ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER"] == "true"
    assert e["ACTIONS_RUNNER_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert e["ACTIONS_RUNNER_JOB_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert e["ACTIONS_RUNNER_REQUIRE_SAME_NODE"] == "true"
    assert volumes(p)["work"] == {
        "name": "work",
        "ephemeral": {
            "volumeClaimTemplate": {
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "10Gi"}},
                    "storageClassName": "standard",
                }
            }
        },
    }
    assert mounts(runner) == {"/runner": "runner", "/runner/_work": "work"}
    assert p["spec"]["serviceAccountName"] == "runner-hooks"  # the user's; runnerd creates none


def test_kubernetes_mode_rwx_does_not_require_same_node() -> None:
    raw = copy.deepcopy(KUBERNETES_MODE)
    raw["workVolumeClaimTemplate"]["accessModes"] = ["ReadWriteMany"]
    assert env(container(pod(raw), "runner"))["ACTIONS_RUNNER_REQUIRE_SAME_NODE"] == "false"


@pytest.mark.parametrize(
    ("raw", "options", "expected"),
    [
        pytest.param(
            {k: v for k, v in KUBERNETES_MODE.items() if k != "serviceAccountName"},
            PodOptions(service_account_per_runner=True),
            "rd-abcde-fghij",
            id="kubernetes-mode-per-runner",
        ),
        pytest.param(
            {**KUBERNETES_MODE, "serviceAccountName": "hooks"},
            OPTIONS,
            "hooks",
            id="kubernetes-mode-explicit",
        ),
        pytest.param(ARTICLE_REPO, OPTIONS, None, id="docker-mode-default"),
        pytest.param(
            ARTICLE_REPO,
            PodOptions(runner_status_update_hook=True, service_account_per_runner=True),
            "rd-abcde-fghij",
            id="status-hook",
        ),
    ],
)
def test_service_account(raw: dict[str, Any], options: PodOptions, expected: str | None) -> None:
    p = pod(raw, options=options)
    assert p["spec"].get("serviceAccountName") == expected
    assert (
        env(container(p, "runner"))["RUNNER_STATUS_UPDATE_HOOK"]
        == str(options.runner_status_update_hook).lower()
    )


def test_runner_volume_size_medium_and_var_run_limit() -> None:
    p = pod(
        ARTICLE_REPO, volumeSizeLimit="4Gi", volumeStorageMedium="Memory", dockerVarRunVolumeSizeLimit="2M"
    )
    assert volumes(p)["runner"] == {"name": "runner", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}}
    assert volumes(p)["var-run"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2M"}


def test_volume_size_limit_zero_disables_runner_volume_without_sidecar() -> None:
    p = pod(ARTICLE_DIND, volumeSizeLimit="0")
    assert "runner" not in volumes(p)
    assert "volumeMounts" not in container(p, "runner")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param({"labels": ["x"]}, "exactly one of enterprise", id="no-scope"),
        pytest.param(
            {"organization": "a", "repository": "a/b"}, "exactly one of enterprise", id="two-scopes"
        ),
        pytest.param(
            {**ARTICLE_REPO, "volumeSizeLimit": 0}, "volumeSizeLimit 0", id="sidecar-needs-runner-volume"
        ),
        pytest.param(
            {**ARTICLE_REPO, "containerMode": "kubernetes"},
            "needs workVolumeClaimTemplate",
            id="k8s-without-claim",
        ),
        pytest.param(
            {**KUBERNETES_MODE, "volumes": [{"name": "work", "emptyDir": {}}]},
            '"work" volume',
            id="k8s-work-volume",
        ),
        pytest.param(
            {**KUBERNETES_MODE, "volumeMounts": [{"name": "work", "mountPath": "/w"}]},
            '"work" volume mount',
            id="k8s-work-mount",
        ),
        pytest.param({**ARTICLE_REPO, "containerMode": "Kubernetes"}, "containerMode must be", id="bad-mode"),
    ],
)
def test_invalid_specs_raise(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(RunnerPodError, match=message):
        pod(raw)


# --- env: ARC's contract and the user's overrides ----------------------------------------------


def test_common_runner_labels_appended_without_duplicates() -> None:
    options = PodOptions(common_runner_labels=("linux", "Arc-Runner", "x64"))
    assert env(container(pod(ARTICLE_REPO, options=options), "runner"))["RUNNER_LABELS"] == (
        "self-hosted,arc-runner,linux,x64"
    )


def test_github_url_and_user_agent_from_options() -> None:
    options = PodOptions(github_url="https://ghes.example.com/", controller_version="9.9.9")
    e = env(container(pod(ARTICLE_REPO, options=options), "runner"))
    assert e["GITHUB_URL"] == "https://ghes.example.com/"
    assert e["GITHUB_ACTIONS_RUNNER_EXTRA_USER_AGENT"] == "runnerd/9.9.9"


def test_user_env_wins_except_identity_and_credentials() -> None:
    user_env = [
        {"name": "RUNNER_LABELS", "value": "mine"},
        {"name": "DOCKER_HOST", "value": "tcp://localhost:2375"},
        {"name": "RUNNER_NAME", "value": "impostor"},
        {"name": "RUNNER_TOKEN", "value": "stolen"},
        {"name": "ACTIONS_RUNNER_INPUT_JITCONFIG", "value": "stolen"},
        {"name": "EXTRA", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]
    runner = container(pod(ARTICLE_REPO, env=user_env), "runner")
    e = env(runner)
    assert e["RUNNER_LABELS"] == "mine"
    assert e["DOCKER_HOST"] == "tcp://localhost:2375"
    assert e["RUNNER_NAME"] == "rd-abcde-fghij"
    assert e["RUNNER_TOKEN"] == {"secretKeyRef": {"name": "rd-abcde-fghij", "key": "RUNNER_TOKEN"}}
    assert "ACTIONS_RUNNER_INPUT_JITCONFIG" not in e
    assert e["EXTRA"] == {"secretKeyRef": {"name": "s", "key": "k"}}
    names = [x["name"] for x in runner["env"]]
    # user entries come after the controller's, in their own order (so $(VAR) references resolve)
    assert names[-3:] == ["RUNNER_LABELS", "DOCKER_HOST", "EXTRA"]


def test_graceful_stop_timeout_is_shared_with_dockerd() -> None:
    p = pod(ARTICLE_REPO, env=[{"name": "RUNNER_GRACEFUL_STOP_TIMEOUT", "value": "300"}])
    assert env(container(p, "docker"))["RUNNER_GRACEFUL_STOP_TIMEOUT"] == "300"
    p = pod(
        ARTICLE_REPO,
        env=[{"name": "RUNNER_GRACEFUL_STOP_TIMEOUT", "value": "300"}],
        dockerEnv=[{"name": "RUNNER_GRACEFUL_STOP_TIMEOUT", "value": "60"}],
    )
    assert env(container(p, "docker"))["RUNNER_GRACEFUL_STOP_TIMEOUT"] == "60"
    assert "RUNNER_GRACEFUL_STOP_TIMEOUT" not in env(container(pod(ARTICLE_REPO), "docker"))


def test_docker_pre_stop_is_bounded() -> None:
    command = container(pod(ARTICLE_REPO), "docker")["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["/bin/sh", "-c"]
    assert "RUNNER_GRACEFUL_STOP_TIMEOUT:-15" in command[2]
    assert "/runner/.runner" in command[2]
    assert command[2].count('"$n" -lt "$limit"') == 2


# --- metadata ------------------------------------------------------------------------------------


def test_metadata_labels_annotations_and_owner() -> None:
    owner = {"apiVersion": "actions.summerwind.dev/v1alpha1", "kind": "Runner", "name": "r", "uid": "u1"}
    p = pod(
        {**ARTICLE_REPO, "githubAPICredentialsFrom": {"secretRef": {"name": "gh-creds"}}},
        registration=JIT,
        labels={"team": "ml", "actions-runner": "overridden?"},
        annotations={"note": "x"},
        owner_references=[owner],
    )
    meta = p["metadata"]
    assert meta["labels"]["team"] == "ml"
    assert meta["labels"]["actions-runner"] == ""
    assert meta["annotations"] == {
        "note": "x",
        "actions-runner/id": "42",
        "actions-runner/github-api-creds-secret": "gh-creds",
    }
    assert meta["ownerReferences"] == [owner]


def test_long_runner_name_gets_a_label_safe_value() -> None:
    name = "a-very-long-runner-deployment-name-for-the-ml-platform-team-x7k2p-9qv4d"
    value = pod(ARTICLE_REPO, name=name)["metadata"]["labels"][LABEL_RUNNER_NAME]
    assert len(name) > 63 >= len(value)
    assert value.startswith("a-very-long-runner-deployment-name")


def test_pod_template_hash_tracks_spec_not_token() -> None:
    def h(raw: dict[str, Any], **kw: Any) -> str:
        return str(pod(raw, **kw)["metadata"]["labels"][LABEL_POD_TEMPLATE_HASH])

    base = h(ARTICLE_REPO)
    assert h(ARTICLE_REPO, registration=RegistrationToken("other")) == base
    assert h(ARTICLE_REPO, registration=JIT) == base
    assert h(ARTICLE_REPO, labels={"runner-template-hash": "zzz"}) == base
    assert h(ARTICLE_REPO, labels={"team": "ml"}) != base
    assert h({**ARTICLE_REPO, "labels": ["self-hosted"]}) != base
    assert h(ARTICLE_REPO, options=PodOptions(github_url="https://ghes.example/")) != base


def test_inputs_are_not_mutated() -> None:
    s = spec(
        {
            **ARTICLE_REPO,
            "env": [{"name": "A", "value": "1"}],
            "resources": {"limits": {"nvidia.com/gpu": 1}},
            "containers": [{"name": "runner", "env": [{"name": "B", "value": "2"}]}],
            "tolerations": [{"key": "k", "operator": "Exists"}],
        }
    )
    before = s.to_dict()
    labels = {"a": "b"}
    from runnerd.manifests.pod import build_runner_pod

    first = build_runner_pod("r", "ns", s, TOKEN, OPTIONS, labels=labels)
    second = build_runner_pod("r", "ns", s, TOKEN, OPTIONS, labels=labels)
    assert s.to_dict() == before
    assert labels == {"a": "b"}
    assert first == second
    first["spec"]["containers"][0]["env"].clear()
    assert s.env == [{"name": "A", "value": "1"}]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_builds_without_duplicate_names(mode: str) -> None:
    p = pod(MODES[mode])
    volumes(p)
    for c in p["spec"]["containers"]:
        env(c)
        mounts(c)
        for m in c.get("volumeMounts", []):
            assert m["name"] in volumes(p), f"{c['name']} mounts undefined volume {m['name']}"


def test_kubernetes_mode_without_a_service_account_is_refused_with_the_permissions_needed() -> None:
    raw = {k: v for k, v in KUBERNETES_MODE.items() if k != "serviceAccountName"}
    with pytest.raises(RunnerPodError, match=r"needs serviceAccountName.*pods/exec"):
        pod(raw)
