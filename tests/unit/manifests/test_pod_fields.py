"""Pass-through of every ARC RunnerPodSpec field (one row each) and the `containers` merge rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from runnerd.manifests.pod import PodOptions
from tests.unit.manifests.podkit import (
    ARTICLE_DIND,
    ARTICLE_REPO,
    KUBERNETES_MODE,
    NO_DOCKER,
    container,
    container_names,
    env,
    mounts,
    pod,
    volumes,
)

Pod = dict[str, Any]


def runner(p: Pod) -> dict[str, Any]:
    return container(p, "runner")


def docker(p: Pod) -> dict[str, Any]:
    return container(p, "docker")


AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ci"]}]}]
        }
    }
}
TSC = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}]
SIDECAR = {"name": "cache-proxy", "image": "squid:6"}
INIT = {"name": "warm-cache", "image": "busybox", "command": ["true"]}

# (field, value, where it shows up in the pod, expected there)
ROWS: list[tuple[str, Any, Callable[[Pod], Any], Any]] = [
    (
        "resources",
        {"limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "1"}},
        lambda p: runner(p)["resources"],
        {"limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "1"}},
    ),
    ("nodeSelector", {"pool": "ci"}, lambda p: p["spec"]["nodeSelector"], {"pool": "ci"}),
    (
        "tolerations",
        [{"key": "ci", "operator": "Exists", "effect": "NoSchedule"}],
        lambda p: p["spec"]["tolerations"],
        [{"key": "ci", "operator": "Exists", "effect": "NoSchedule"}],
    ),
    ("affinity", AFFINITY, lambda p: p["spec"]["affinity"], AFFINITY),
    (
        "volumes",
        [{"name": "cache", "persistentVolumeClaim": {"claimName": "cache"}}],
        lambda p: volumes(p)["cache"],
        {"name": "cache", "persistentVolumeClaim": {"claimName": "cache"}},
    ),
    (
        "volumeMounts",
        [{"name": "cache", "mountPath": "/cache"}],
        lambda p: mounts(runner(p))["/cache"],
        "cache",
    ),
    ("env", [{"name": "FOO", "value": "bar"}], lambda p: env(runner(p))["FOO"], "bar"),
    (
        "envFrom",
        [{"configMapRef": {"name": "ci-env"}}],
        lambda p: runner(p)["envFrom"],
        [{"configMapRef": {"name": "ci-env"}}],
    ),
    ("serviceAccountName", "ci-runner", lambda p: p["spec"]["serviceAccountName"], "ci-runner"),
    ("automountServiceAccountToken", False, lambda p: p["spec"]["automountServiceAccountToken"], False),
    ("sidecarContainers", [SIDECAR], lambda p: p["spec"]["containers"][-1], SIDECAR),
    ("initContainers", [INIT], lambda p: p["spec"]["initContainers"], [INIT]),
    (
        "securityContext",
        {"fsGroup": 1001, "runAsNonRoot": False},
        lambda p: p["spec"]["securityContext"],
        {"fsGroup": 1001, "runAsNonRoot": False},
    ),
    ("imagePullPolicy", "IfNotPresent", lambda p: runner(p)["imagePullPolicy"], "IfNotPresent"),
    (
        "imagePullSecrets",
        [{"name": "regcred"}],
        lambda p: p["spec"]["imagePullSecrets"],
        [{"name": "regcred"}],
    ),
    ("priorityClassName", "ci-low", lambda p: p["spec"]["priorityClassName"], "ci-low"),
    ("terminationGracePeriodSeconds", 3600, lambda p: p["spec"]["terminationGracePeriodSeconds"], 3600),
    # The API server forbids ephemeralContainers on create ("cannot be set on create"): they are
    # not in the pod; the controller adds them through the ephemeralcontainers subresource.
    (
        "ephemeralContainers",
        [{"name": "debug", "image": "busybox"}],
        lambda p: p["spec"].get("ephemeralContainers"),
        None,
    ),
    (
        "hostAliases",
        [{"ip": "10.0.0.1", "hostnames": ["ghes.internal"]}],
        lambda p: p["spec"]["hostAliases"],
        [{"ip": "10.0.0.1", "hostnames": ["ghes.internal"]}],
    ),
    ("topologySpreadConstraints", TSC, lambda p: p["spec"]["topologySpreadConstraints"], TSC),
    ("runtimeClassName", "gvisor", lambda p: p["spec"]["runtimeClassName"], "gvisor"),
    ("dnsPolicy", "None", lambda p: p["spec"]["dnsPolicy"], "None"),
    (
        "dnsConfig",
        {"nameservers": ["1.1.1.1"], "searches": ["corp"]},
        lambda p: p["spec"]["dnsConfig"],
        {"nameservers": ["1.1.1.1"], "searches": ["corp"]},
    ),
    ("enableServiceLinks", False, lambda p: p["spec"]["enableServiceLinks"], False),
    (
        "dockerdContainerResources",
        {"limits": {"memory": "8Gi"}},
        lambda p: docker(p)["resources"],
        {"limits": {"memory": "8Gi"}},
    ),
    (
        "dockerVolumeMounts",
        [{"name": "docker-cache", "mountPath": "/var/lib/docker"}],
        lambda p: mounts(docker(p))["/var/lib/docker"],
        "docker-cache",
    ),
    (
        "dockerEnv",
        [{"name": "DOCKER_TLS_CERTDIR", "value": ""}],
        lambda p: env(docker(p))["DOCKER_TLS_CERTDIR"],
        "",
    ),
    (
        "containers",
        [{"name": "runner", "ports": [{"containerPort": 8080}]}],
        lambda p: runner(p)["ports"],
        [{"containerPort": 8080}],
    ),
    ("image", "ghcr.io/acme/runner:2", lambda p: runner(p)["image"], "ghcr.io/acme/runner:2"),
]


@pytest.mark.parametrize(("field", "value", "get", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_arc_pod_field_passes_through(
    field: str, value: Any, get: Callable[[Pod], Any], expected: Any
) -> None:
    p = pod({**ARTICLE_REPO, field: value})
    assert get(p) == expected


def test_every_runner_pod_spec_field_has_a_row() -> None:
    from runnerd.api import RunnerPodSpec, fields_of

    covered = {r[0] for r in ROWS} | {"workVolumeClaimTemplate"}  # the last: test_pod.py, kubernetes mode
    declared = {info.json for _, info, _ in fields_of(RunnerPodSpec)}
    assert declared <= covered, f"no pass-through row for {sorted(declared - covered)}"


def test_template_metadata_labels_and_annotations_pass_through() -> None:
    p = pod(ARTICLE_REPO, labels={"team": "ml"}, annotations={"prometheus.io/scrape": "true"})
    assert p["metadata"]["labels"]["team"] == "ml"
    assert p["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}


def test_controller_image_pull_secrets_unless_spec_sets_some() -> None:
    options = PodOptions(runner_image_pull_secrets=("a", "b"))
    assert pod(ARTICLE_REPO, options=options)["spec"]["imagePullSecrets"] == [{"name": "a"}, {"name": "b"}]
    p = pod({**ARTICLE_REPO, "imagePullSecrets": [{"name": "mine"}]}, options=options)
    assert p["spec"]["imagePullSecrets"] == [{"name": "mine"}]


def test_selinux_options_turn_privileged_off() -> None:
    se = {"seLinuxOptions": {"level": "s0:c123,c456"}}
    p = pod({**ARTICLE_REPO, "securityContext": se})
    assert docker(p)["securityContext"] == {"privileged": False, "seLinuxOptions": {"level": "s0:c123,c456"}}
    assert "privileged" not in runner(pod({**ARTICLE_DIND, "securityContext": se})).get("securityContext", {})


def test_user_work_volume_and_mount_replace_the_generated_ones() -> None:
    p = pod(
        {
            **ARTICLE_REPO,
            "volumes": [{"name": "work", "persistentVolumeClaim": {"claimName": "w"}}],
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            "dockerVolumeMounts": [{"name": "work", "mountPath": "/work"}],
        }
    )
    assert volumes(p)["work"] == {"name": "work", "persistentVolumeClaim": {"claimName": "w"}}
    assert mounts(runner(p))["/work"] == "work"
    assert "/runner/_work" not in mounts(runner(p))
    assert mounts(docker(p)) == {"/runner": "runner", "/run": "var-run", "/work": "work"}


def test_user_mount_at_a_generated_path_wins() -> None:
    p = pod(
        {
            **ARTICLE_REPO,
            "volumes": [{"name": "fast", "emptyDir": {}}],
            "volumeMounts": [{"name": "fast", "mountPath": "/runner"}],
        }
    )
    assert mounts(runner(p))["/runner"] == "fast"


# --- the `containers` override: the user's runner/docker entries are laid over the generated ones


def test_containers_runner_entry_is_merged_not_replaced() -> None:
    p = pod(
        {
            **ARTICLE_REPO,
            "env": [{"name": "FROM_SPEC", "value": "1"}, {"name": "BOTH", "value": "spec"}],
            "resources": {"limits": {"cpu": "2"}, "requests": {"cpu": "1"}},
            "containers": [
                {
                    "name": "runner",
                    "image": "ignored-because-spec-image-wins:1",
                    "command": ["/custom-entrypoint.sh"],
                    "env": [{"name": "BOTH", "value": "container"}, {"name": "RUNNER_TOKEN", "value": "x"}],
                    "resources": {"limits": {"cpu": "4"}},
                    "volumeMounts": [{"name": "extra", "mountPath": "/extra"}],
                    "securityContext": {"runAsUser": 1001},
                    "readinessProbe": {"exec": {"command": ["test", "-f", "/runner/.runner"]}},
                }
            ],
            "image": "ghcr.io/acme/runner:2",
            "volumes": [{"name": "extra", "emptyDir": {}}],
        }
    )
    r = runner(p)
    assert r["image"] == "ghcr.io/acme/runner:2"
    assert r["command"] == ["/custom-entrypoint.sh"]
    assert r["readinessProbe"] == {"exec": {"command": ["test", "-f", "/runner/.runner"]}}
    e = env(r)
    assert (e["FROM_SPEC"], e["BOTH"]) == ("1", "container")
    assert e["RUNNER_TOKEN"] == {"secretKeyRef": {"name": "rd-abcde-fghij", "key": "RUNNER_TOKEN"}}
    assert e["RUNNER_REPO"] == "octo/mlops"
    assert r["resources"] == {"limits": {"cpu": "4"}, "requests": {"cpu": "1"}}  # per key, as ARC
    assert mounts(r) == {"/runner": "runner", "/runner/_work": "work", "/run": "var-run", "/extra": "extra"}
    assert r["securityContext"] == {"runAsUser": 1001}


def test_containers_runner_image_used_when_spec_has_none() -> None:
    p = pod({**ARTICLE_REPO, "containers": [{"name": "runner", "image": "mine:1"}]})
    assert runner(p)["image"] == "mine:1"


def test_containers_docker_entry_is_merged() -> None:
    p = pod(
        {
            **ARTICLE_REPO,
            "dockerEnv": [{"name": "A", "value": "spec"}],
            "containers": [
                {
                    "name": "docker",
                    "image": "docker:27-dind",
                    "args": ["--storage-driver=overlay2"],
                    "env": [{"name": "A", "value": "container"}],
                    "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}},
                }
            ],
        }
    )
    d = docker(p)
    assert d["image"] == "docker:27-dind"
    assert d["args"] == [
        "dockerd",
        "--host=unix:///run/docker.sock",
        "--storage-driver=overlay2",
        "--group=$(DOCKER_GROUP_GID)",
    ]
    assert env(d)["A"] == "container"
    assert d["securityContext"] == {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}
    assert "preStop" in d["lifecycle"]


def test_containers_order_and_extra_containers() -> None:
    p = pod(
        {
            **ARTICLE_REPO,
            "containers": [{"name": "metrics", "image": "exporter:1"}, {"name": "runner"}],
            "sidecarContainers": [SIDECAR],
        }
    )
    # user order kept, docker (absent from `containers`) appended, then sidecarContainers
    assert container_names(p) == ["metrics", "runner", "docker", "cache-proxy"]
    assert container(p, "metrics") == {"name": "metrics", "image": "exporter:1"}

    p = pod({**ARTICLE_REPO, "containers": [{"name": "metrics", "image": "exporter:1"}]})
    assert container_names(p) == ["runner", "metrics", "docker"]


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        pytest.param(KUBERNETES_MODE, ["runner"], id="kubernetes-drops-docker"),
        pytest.param(NO_DOCKER, ["runner", "docker"], id="no-docker-keeps-it-untouched"),
    ],
)
def test_containers_docker_entry_outside_sidecar_mode(raw: dict[str, Any], names: list[str]) -> None:
    p = pod({**raw, "containers": [{"name": "runner"}, {"name": "docker", "image": "docker:dind"}]})
    assert container_names(p) == names
    if "docker" in names:
        assert docker(p) == {"name": "docker", "image": "docker:dind"}
