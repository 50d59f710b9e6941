"""The scale-set objects' builders: ARC's names, labels, finalizers, and the JIT config reaching the
runner only through its Secret."""

from __future__ import annotations

import pytest

from runnerd.api.scaleset import constants as c
from runnerd.manifests.scaleset import (
    ENV_JIT_CONFIG,
    LABEL_EPHEMERAL_RUNNER,
    build_ephemeral_runner,
    build_ephemeral_runner_set,
    build_jit_secret,
    build_listener,
    build_runner_pod,
    hash8,
    listener_name,
    runner_spec_hash,
)

ARS = {
    "apiVersion": c.API_VERSION,
    "kind": "AutoscalingRunnerSet",
    "metadata": {
        "name": "arc-runner-set",
        "namespace": "arc-runners",
        "uid": "ars-uid",
        "labels": {"team": "ci"},
        "annotations": {c.ANNOTATION_SCALE_SET_NAME: "arc-runner-set", "unrelated": "x"},
    },
    "spec": {
        "githubConfigUrl": "https://github.com/octo",
        "githubConfigSecret": "gh",
        "maxRunners": 5,
        "template": {
            "metadata": {"labels": {"pool": "a"}},
            "spec": {
                "containers": [{"name": "runner", "image": "img", "env": [{"name": "A", "value": "1"}]}]
            },
        },
    },
}


def test_hash8_matches_arcs_listener_names() -> None:
    # ARC#4154: namespace arc-runners -> ...-754b578d-listener (the <=0.13.0 input, the namespace alone)
    assert hash8("arc-runners") == "754b578d"
    assert listener_name(ARS) == f"arc-runner-set-{hash8('arc-runners@@https://github.com/octo')}-listener"


def test_runner_set_runner_secret_and_pod_chain() -> None:
    ers = build_ephemeral_runner_set(ARS, "arc-runner-set-abcde", 7)
    assert ers["metadata"]["labels"][c.LABEL_COMPONENT] == c.COMPONENT_RUNNER_SET
    assert ers["metadata"]["labels"]["team"] == "ci"
    assert ers["metadata"]["annotations"] == {
        c.ANNOTATION_SCALE_SET_NAME: "arc-runner-set",
        c.ANNOTATION_RUNNER_SPEC_HASH: runner_spec_hash(ARS["spec"]),
    }
    assert ers["spec"]["patchID"] == 0
    assert ers["spec"]["ephemeralRunnerSpec"]["runnerScaleSetId"] == 7
    ers["metadata"]["uid"] = "ers-uid"

    er = build_ephemeral_runner(ers, "arc-runner-set-abcde-runner-xyz12", 3)
    assert er["metadata"]["annotations"][c.ANNOTATION_PATCH_ID] == "3"
    assert er["metadata"]["finalizers"] == [c.FINALIZER_EPHEMERAL_RUNNER, c.FINALIZER_RUNNER_REGISTRATION]
    assert er["metadata"]["ownerReferences"][0]["uid"] == "ers-uid"
    er["metadata"]["uid"] = "er-uid"

    secret = build_jit_secret(er, encoded="SECRET", runner_id=11, scale_set_id=7)
    assert secret["stringData"] == {
        "jitToken": "SECRET",
        "runnerName": er["metadata"]["name"],
        "runnerId": "11",
        "scaleSetId": "7",
    }
    pod = build_runner_pod(er)
    assert pod["metadata"]["labels"][LABEL_EPHEMERAL_RUNNER] == "True"
    assert pod["metadata"]["labels"]["pool"] == "a"
    assert pod["spec"]["restartPolicy"] == "Never"
    env = pod["spec"]["containers"][0]["env"]
    assert env[0] == {"name": "A", "value": "1"}
    assert env[1]["valueFrom"]["secretKeyRef"] == {"name": er["metadata"]["name"], "key": "jitToken"}
    assert env[1]["name"] == ENV_JIT_CONFIG


def test_a_template_without_a_runner_container_makes_no_pod() -> None:
    er = {
        "metadata": {"name": "x", "namespace": "n", "uid": "u"},
        "kind": "EphemeralRunner",
        "spec": {"spec": {"containers": [{"name": "other"}]}},
    }
    with pytest.raises(ValueError, match="runner"):
        build_runner_pod(er)


def test_listener_carries_effective_bounds_and_hashes() -> None:
    ars = {**ARS, "metadata": {**ARS["metadata"], "annotations": {c.ANNOTATION_VALUES_HASH: "v1"}}}
    listener = build_listener(ars, namespace="arc-systems", ers_name="set-1", scale_set_id=7)
    assert listener["metadata"]["namespace"] == "arc-systems"
    assert (listener["spec"]["minRunners"], listener["spec"]["maxRunners"]) == (0, 5)
    assert listener["spec"]["ephemeralRunnerSetName"] == "set-1"
    assert listener["metadata"]["annotations"][c.ANNOTATION_VALUES_HASH] == "v1"
    assert listener["metadata"]["labels"][c.LABEL_SCALE_SET_NAMESPACE] == "arc-runners"
