"""RunnerSet: names, the runner StatefulSet built from the RunnerSet's template, its Secret, hashes."""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from runnerd.api import RunnerSet, RunnerSetSpec, validate
from runnerd.manifests.pod import PodOptions, RunnerPodError, build_runner_pod
from runnerd.manifests.runnerset import (
    build_runner_secret,
    build_runner_statefulset,
    claim_ref,
    consume_patch,
    runner_spec,
)
from runnerd.reconcile.credentials import (
    ANNOTATION_RUNNER_ID,
    ENV_JIT_CONFIG,
    ENV_RUNNER_TOKEN,
    JitConfig,
    RegistrationToken,
)
from runnerd.reconcile.lifecycle import Credentials
from runnerd.reconcile.runnerset import (
    ANNOTATION_CONSUMED_BY,
    LABEL_RUNNER_STATEFULSET_NAME,
    LABEL_RUNNERSET_NAME,
    LABEL_TEMPLATE_HASH,
    STATEFULSET_NAME_MAX,
    CredentialKind,
    claim_fits_volume,
    claim_template_name,
    parse_statefulset,
    runner_name,
    runnerset_selector,
    runnerset_template_hash,
    secret_state,
    selector_string,
    statefulset_name,
)

OPTIONS = PodOptions(controller_version="1.2.3", runner_image="ghcr.io/acme/runner:2")
JIT_SECRET = "eyJqaXQiOiJzZWNyZXQtY29uZmlnIn0="
TOKEN_SECRET = "AREGTOKENSECRET"

# ARC's documented RunnerSet example (docs: "RunnerSet"), with a work-cache claim template.
ARC_EXAMPLE: dict[str, Any] = {
    "ephemeral": False,
    "replicas": 2,
    "repository": "octo/app",
    "labels": ["gpu", "arc-runner"],
    "selector": {"matchLabels": {"app": "example"}},
    "serviceName": "example",
    "template": {
        "metadata": {"labels": {"app": "example"}, "annotations": {"team": "ml"}},
        "spec": {
            "containers": [
                {
                    "name": "runner",
                    "env": [{"name": "RUNNER_GRACEFUL_STOP_TIMEOUT", "value": "90"}],
                    "volumeMounts": [{"name": "cache", "mountPath": "/home/runner/.cache"}],
                }
            ],
            "hostNetwork": False,
            "schedulerName": "gpu-scheduler",
            "terminationGracePeriodSeconds": 120,
            "nodeSelector": {"pool": "runners"},
        },
    },
    "volumeClaimTemplates": [
        {
            "metadata": {"name": "cache"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "cache",
                "resources": {"requests": {"storage": "10Gi"}},
            },
        }
    ],
}


def spec_of(raw: dict[str, Any], **extra: Any) -> RunnerSetSpec:
    return RunnerSetSpec.from_dict({**copy.deepcopy(raw), **extra})


def sts(
    raw: dict[str, Any] = ARC_EXAMPLE,
    *,
    credentials: CredentialKind = "jit",
    runner_id: int | None = 42,
    name: str = "example-bcdfg",
    **extra: Any,
) -> dict[str, Any]:
    return build_runner_statefulset(
        runnerset="example",
        namespace="ns",
        spec=spec_of(raw, **extra),
        name=name,
        template_hash_="abc123",
        credentials=credentials,
        runner_id=runner_id,
        options=OPTIONS,
        owner_references=[
            {
                "apiVersion": "actions.summerwind.dev/v1alpha1",
                "kind": "RunnerSet",
                "name": "example",
                "uid": "u1",
                "controller": True,
            }
        ],
        finalizers=["runnerd.dev/runner-registration"],
    )


def containers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in obj["spec"]["template"]["spec"]["containers"]}


def env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env") or ()}


# --- names -----------------------------------------------------------------------------------


def test_statefulset_name_is_the_runnerset_name_and_a_generate_name_suffix() -> None:
    assert statefulset_name("example", "bcdfg") == "example-bcdfg"
    assert runner_name("example-bcdfg") == "example-bcdfg-0"


def test_statefulset_name_fits_the_revision_hash_label() -> None:
    long = "a" * 40 + "-" + "b" * 30
    name = statefulset_name(long, "z2456")
    assert len(name) <= STATEFULSET_NAME_MAX
    assert name.endswith("-z2456")
    assert "--" not in name
    # the StatefulSet controller's label `controller-revision-hash: <name>-<hash up to 10>` stays valid
    assert len(f"{name}-{'x' * 10}") <= 63


@pytest.mark.parametrize("suffix", ["abcde", "bcdf", "BCDFG", "bcdfgh"])
def test_statefulset_name_rejects_other_suffixes(suffix: str) -> None:
    with pytest.raises(ValueError, match="suffix"):
        statefulset_name("example", suffix)


def test_claim_template_name_from_a_statefulset_claim() -> None:
    assert claim_template_name("cache-example-bcdfg-0", "example-bcdfg") == "cache"
    assert claim_template_name("work-cache-example-bcdfg-0", "example-bcdfg") == "work-cache"
    assert claim_template_name("cache-example-other-0", "example-bcdfg") is None
    assert claim_template_name("-example-bcdfg-0", "example-bcdfg") is None


# --- the template ----------------------------------------------------------------------------


def test_runner_spec_takes_runner_fields_and_the_templates_pod_fields() -> None:
    spec = runner_spec(spec_of(ARC_EXAMPLE))
    assert spec.repository == "octo/app"
    assert spec.labels == ["gpu", "arc-runner"]
    assert spec.ephemeral is False
    assert spec.node_selector == {"pool": "runners"}
    assert spec.termination_grace_period_seconds == 120
    assert [c["name"] for c in spec.containers] == ["runner"]


def test_runner_spec_service_account_of_the_runnerset_wins() -> None:
    raw = copy.deepcopy(ARC_EXAMPLE)
    raw["template"]["spec"]["serviceAccountName"] = "from-template"
    assert runner_spec(spec_of(raw)).service_account_name == "from-template"
    assert runner_spec(spec_of(raw, serviceAccountName="from-spec")).service_account_name == "from-spec"


def test_statefulset_has_one_replica_and_a_selector_of_its_own() -> None:
    obj = sts()
    spec = obj["spec"]
    assert obj["apiVersion"] == "apps/v1"
    assert obj["kind"] == "StatefulSet"
    assert spec["replicas"] == 1
    match = spec["selector"]["matchLabels"]
    assert match == {
        "app": "example",
        LABEL_RUNNERSET_NAME: "example",
        LABEL_TEMPLATE_HASH: "abc123",
        LABEL_RUNNER_STATEFULSET_NAME: "example-bcdfg",
    }
    labels = spec["template"]["metadata"]["labels"]
    assert match.items() <= labels.items()
    assert labels["actions-runner"] == ""
    assert spec["template"]["metadata"]["annotations"]["team"] == "ml"
    meta = obj["metadata"]
    assert meta["name"] == "example-bcdfg"
    assert meta["namespace"] == "ns"
    assert meta["labels"] == {
        LABEL_RUNNERSET_NAME: "example",
        LABEL_TEMPLATE_HASH: "abc123",
        LABEL_RUNNER_STATEFULSET_NAME: "example-bcdfg",
    }
    assert meta["finalizers"] == ["runnerd.dev/runner-registration"]
    assert meta["ownerReferences"][0]["uid"] == "u1"


def test_statefulset_passes_the_other_statefulset_fields_through() -> None:
    spec = sts()["spec"]
    assert spec["serviceName"] == "example"
    assert spec["volumeClaimTemplates"] == ARC_EXAMPLE["volumeClaimTemplates"]


def test_pod_template_is_the_runner_pod_with_restart_policy_always() -> None:
    pod_spec = sts()["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Always"  # the only one a StatefulSet accepts
    assert pod_spec["schedulerName"] == "gpu-scheduler"  # not a runner pod field: passed through
    assert pod_spec["hostNetwork"] is False
    assert pod_spec["nodeSelector"] == {"pool": "runners"}
    assert pod_spec["terminationGracePeriodSeconds"] == 120
    runner = containers(sts())["runner"]
    assert runner["image"] == "ghcr.io/acme/runner:2"
    assert {"name": "cache", "mountPath": "/home/runner/.cache"} in runner["volumeMounts"]
    assert env(runner)["RUNNER_GRACEFUL_STOP_TIMEOUT"]["value"] == "90"
    assert "docker" in containers(sts())  # ARC's default: a dind sidecar


def test_pod_template_matches_the_runner_pod_builder_but_for_credentials() -> None:
    """The env contract, docker and GPU handling are build_runner_pod's own."""
    obj = sts()
    pod = build_runner_pod(
        "example-bcdfg-0",
        "ns",
        runner_spec(spec_of(ARC_EXAMPLE)),
        JitConfig("placeholder", 42),
        OPTIONS,
        labels=obj["spec"]["template"]["metadata"]["labels"],
    )
    built = {c["name"]: c for c in pod["spec"]["containers"]}
    ours = containers(obj)
    assert built.keys() == ours.keys()
    for name, container in built.items():
        theirs = {k: v for k, v in container.items() if k != "env"}
        assert {k: v for k, v in ours[name].items() if k != "env"} == theirs
        assert [e["name"] for e in container.get("env") or ()] == [
            e["name"] for e in ours[name].get("env") or ()
        ]
    assert pod["spec"]["volumes"] == obj["spec"]["template"]["spec"]["volumes"]


def test_credentials_come_from_the_secret_never_the_pod_spec() -> None:
    cases: tuple[tuple[CredentialKind, str], ...] = (("jit", ENV_JIT_CONFIG), ("token", ENV_RUNNER_TOKEN))
    for credentials, key in cases:
        obj = sts(credentials=credentials, runner_id=42 if credentials == "jit" else None)
        runner = env(containers(obj)["runner"])
        assert runner[key] == {
            "name": key,
            "valueFrom": {"secretKeyRef": {"name": "example-bcdfg", "key": key}},
        }
        assert runner["RUNNER_NAME"] == {"name": "RUNNER_NAME", "value": "example-bcdfg-0"}
        other = ENV_RUNNER_TOKEN if key == ENV_JIT_CONFIG else ENV_JIT_CONFIG
        assert other not in runner
        assert "placeholder" not in json.dumps(obj)


def test_jit_runner_id_is_on_the_statefulset_and_its_pod() -> None:
    obj = sts()
    assert obj["metadata"]["annotations"] == {ANNOTATION_RUNNER_ID: "42"}
    assert obj["spec"]["template"]["metadata"]["annotations"][ANNOTATION_RUNNER_ID] == "42"
    token = sts(credentials="token", runner_id=None)
    assert "annotations" not in token["metadata"]
    assert ANNOTATION_RUNNER_ID not in token["spec"]["template"]["metadata"].get("annotations", {})


def test_jit_statefulset_needs_the_runner_id() -> None:
    with pytest.raises(ValueError, match="runner id"):
        sts(runner_id=None)


def test_a_spec_without_scope_makes_no_runner() -> None:
    raw = {k: v for k, v in ARC_EXAMPLE.items() if k != "repository"}
    with pytest.raises(RunnerPodError):
        sts(raw)


def test_gpu_request_in_the_template_gets_the_gpu_setup() -> None:
    raw = copy.deepcopy(ARC_EXAMPLE)
    raw["template"]["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": 1}}
    pod_spec = sts(raw)["spec"]["template"]["spec"]
    assert any(t.get("key") == "nvidia.com/gpu" for t in pod_spec["tolerations"])
    docker = {c["name"]: c for c in pod_spec["containers"]}["docker"]
    assert docker["resources"]["limits"]["nvidia.com/gpu"] == 1  # dockerd holds the GPUs


def test_parse_statefulset_reads_the_runner_back() -> None:
    obj = sts()
    obj["metadata"]["uid"] = "s1"
    info = parse_statefulset(obj)
    assert info.name == "example-bcdfg"
    assert info.runner == "example-bcdfg-0"
    assert (info.scope_kind, info.scope_name) == ("repository", "octo/app")
    assert info.ephemeral is False
    assert info.credentials == "jit"
    assert info.runner_id == 42
    assert info.template_hash == "abc123"
    assert info.runnerset == "example"
    assert info.deleting is False
    assert parse_statefulset(sts(credentials="token", runner_id=None, ephemeral=True)).credentials == "token"


# --- the Secret ------------------------------------------------------------------------------


def created(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["uid"] = "sts-uid"
    return obj


def test_secret_holds_the_jit_config_and_belongs_to_the_statefulset() -> None:
    secret = build_runner_secret(created(sts()), JitConfig(JIT_SECRET, 42), runnerset="example")
    assert secret["metadata"]["name"] == "example-bcdfg"
    assert secret["metadata"]["namespace"] == "ns"
    assert secret["metadata"]["labels"] == {
        LABEL_RUNNERSET_NAME: "example",
        LABEL_RUNNER_STATEFULSET_NAME: "example-bcdfg",
    }
    assert secret["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "name": "example-bcdfg",
            "uid": "sts-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert secret["metadata"]["annotations"] == {ANNOTATION_RUNNER_ID: "42"}
    assert secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"][ENV_JIT_CONFIG]).decode() == JIT_SECRET
    assert secret_state(secret, "jit").credentials is Credentials.FRESH


def test_secret_holds_a_registration_token() -> None:
    obj = created(sts(credentials="token", runner_id=None))
    secret = build_runner_secret(obj, RegistrationToken(TOKEN_SECRET), runnerset="example")
    assert list(secret["data"]) == [ENV_RUNNER_TOKEN]
    assert base64.b64decode(secret["data"][ENV_RUNNER_TOKEN]).decode() == TOKEN_SECRET
    assert "annotations" not in secret["metadata"]


def test_consumed_secret_keeps_no_credential() -> None:
    secret = build_runner_secret(created(sts()), JitConfig(JIT_SECRET, 42), runnerset="example")
    patch = consume_patch("jit", "pod-uid", 42)
    assert patch == {
        "metadata": {"annotations": {ANNOTATION_CONSUMED_BY: "pod-uid", ANNOTATION_RUNNER_ID: "42"}},
        "data": {ENV_JIT_CONFIG: None},
    }
    # what the API server makes of the merge patch
    secret["metadata"]["annotations"].update(patch["metadata"]["annotations"])
    secret["data"] = {}
    state = secret_state(secret, "jit")
    assert state.credentials is Credentials.CONSUMED
    assert state.consumed_by == "pod-uid"
    assert state.runner_id == 42
    assert JIT_SECRET not in json.dumps(secret)


def test_secret_state_missing() -> None:
    assert secret_state(None, "jit").credentials is Credentials.MISSING
    empty = {"metadata": {"name": "x"}, "data": {}}
    assert secret_state(empty, "token").credentials is Credentials.MISSING


# --- hashes and selectors --------------------------------------------------------------------


def test_template_hash_ignores_replicas_only() -> None:
    base = runnerset_template_hash(spec_of(ARC_EXAMPLE))
    assert runnerset_template_hash(spec_of(ARC_EXAMPLE, replicas=7)) == base
    assert runnerset_template_hash(spec_of(ARC_EXAMPLE, effectiveTime="2024-01-01T00:00:00Z")) == base
    assert runnerset_template_hash(spec_of(ARC_EXAMPLE, labels=["other"])) != base
    changed = copy.deepcopy(ARC_EXAMPLE)
    changed["template"]["spec"]["containers"][0]["image"] = "ghcr.io/acme/runner:3"
    assert runnerset_template_hash(spec_of(changed)) != base
    assert runnerset_template_hash(spec_of(ARC_EXAMPLE), ["extra"]) != base


def test_selector_defaults_to_the_runnerset_name() -> None:
    raw = {k: v for k, v in ARC_EXAMPLE.items() if k != "selector"}
    assert runnerset_selector("example", spec_of(raw)) == {"matchLabels": {LABEL_RUNNERSET_NAME: "example"}}
    assert selector_string(runnerset_selector("example", spec_of(ARC_EXAMPLE))) == "app=example"
    with_expr = {
        "matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["x", "y"]},
            {"key": "gpu", "operator": "Exists"},
            {"key": "old", "operator": "DoesNotExist"},
            {"key": "zone", "operator": "NotIn", "values": ["z"]},
        ],
    }
    assert selector_string(with_expr) == "a=1,b=2,tier in (x,y),gpu,!old,zone notin (z)"


def test_a_parsed_runnerset_builds_too() -> None:
    rs = RunnerSet.from_dict(
        {
            "apiVersion": "actions.summerwind.dev/v1alpha1",
            "kind": "RunnerSet",
            "metadata": {"name": "example", "namespace": "ns"},
            "spec": copy.deepcopy(ARC_EXAMPLE),
        }
    )
    assert rs.spec.effective_replicas == 2
    obj = build_runner_statefulset(
        runnerset=rs.name,
        namespace="ns",
        spec=rs.spec,
        name="example-bcdfg",
        template_hash_=runnerset_template_hash(rs.spec),
        credentials="jit",
        runner_id=1,
        options=OPTIONS,
    )
    assert obj["spec"]["replicas"] == 1
    assert "finalizers" not in obj["metadata"]


# --- volumes ---------------------------------------------------------------------------------


def claim(
    storage: str = "10Gi", cls: str = "cache", modes: tuple[str, ...] = ("ReadWriteOnce",)
) -> dict[str, Any]:
    return {
        "metadata": {"name": "cache-example-bcdfg-0", "namespace": "ns"},
        "spec": {
            "storageClassName": cls,
            "accessModes": list(modes),
            "resources": {"requests": {"storage": storage}},
        },
    }


VOLUME: dict[str, Any] = {
    "metadata": {"name": "pv1"},
    "spec": {"storageClassName": "cache", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "20Gi"}},
}


def test_claim_fits_volume() -> None:
    assert claim_fits_volume(claim(), VOLUME)
    assert claim_fits_volume(claim("20Gi"), VOLUME)
    assert not claim_fits_volume(claim("21Gi"), VOLUME)
    assert not claim_fits_volume(claim(cls="other"), VOLUME)
    assert not claim_fits_volume(claim(modes=("ReadWriteMany",)), VOLUME)
    block = copy.deepcopy(VOLUME)
    block["spec"]["volumeMode"] = "Block"
    assert not claim_fits_volume(claim(), block)


def test_claim_ref_reserves_the_volume_for_one_claim() -> None:
    assert claim_ref(claim()) == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": "ns",
        "name": "cache-example-bcdfg-0",
    }


# --- the documented example ------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[3] / "docs" / "runner-pods.md"


def test_documented_runnerset_builds_the_documented_statefulset() -> None:
    block = re.search(r"<!-- runnerset: manifest -->\n```yaml\n(.*?)```", DOCS.read_text(), re.S)
    assert block is not None
    manifest = yaml.safe_load(block.group(1))
    assert validate(manifest) == []
    rs = RunnerSet.from_dict({**manifest, "metadata": {**manifest["metadata"], "namespace": "ns"}})
    obj = build_runner_statefulset(
        runnerset=rs.name,
        namespace="ns",
        spec=rs.spec,
        name=statefulset_name(rs.name, "bcdfg"),
        template_hash_=runnerset_template_hash(rs.spec),
        credentials="jit",
        runner_id=42,
        options=OPTIONS,
    )
    runner = env(containers(obj)["runner"])
    assert runner["RUNNER_NAME"] == {"name": "RUNNER_NAME", "value": "example-bcdfg-0"}
    assert runner[ENV_JIT_CONFIG]["valueFrom"] == {
        "secretKeyRef": {"name": "example-bcdfg", "key": ENV_JIT_CONFIG}
    }
    assert obj["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "cache"
    assert claim_template_name("cache-example-bcdfg-0", obj["metadata"]["name"]) == "cache"
