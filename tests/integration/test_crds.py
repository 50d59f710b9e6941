"""The generated actions.summerwind.dev, runnerd.dev and actions.github.com (scale-set) CRDs on the
real kube-apiserver: they install with plain ``kubectl apply``, the article's manifests apply unchanged,
every good fixture is accepted and every bad one rejected with its expected message (CEL included),
status/scale subresources work, and ``kubectl get`` prints the columns."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from devcluster.cluster import Cluster
from runnerd import api
from runnerd.api import RESOURCES, RunnerDeployment, parse, scaleset, sizing, validate
from runnerd.api.validation import rule_violations
from tests.integration.support import wait_established
from tests.unit.api.manifests import CRD_DIR, MANIFESTS, SCALE_SET_CRD_DIR, Manifest, manifests

pytestmark = pytest.mark.cluster

GOOD = manifests("good")
BAD = manifests("bad")
SCALE_SET_GOOD = manifests("scaleset-good")
SCALE_SET_BAD = manifests("scaleset-bad")
SIZING_GOOD = manifests("sizing-good")
SIZING_BAD = manifests("sizing-bad")
ARTICLE_NAMESPACE = "actions-runner-system"


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> list[str]:
    """The CRDs, installed with client-side ``kubectl apply`` (so each must fit the last-applied
    annotation) and Established. They stay installed: other tests of the session use them."""
    cluster.kubectl("apply", "-f", str(CRD_DIR))
    names = [f"{r.PLURAL}.actions.summerwind.dev" for r in RESOURCES]
    names += [f"{r.PLURAL}.{sizing.GROUP}" for r in sizing.RESOURCES]  # runnerd.dev, same directory
    wait_established(cluster, names)
    return names


@pytest.fixture(scope="module")
def crd_namespace(cluster: Cluster, crds: list[str]) -> Iterator[str]:
    """One namespace for the fixture manifests of this module (objects are named per file)."""
    name = f"crds-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _apply(cluster: Cluster, text: str, *args: str) -> tuple[int, str]:
    proc = cluster.kubectl("apply", *args, "-f", "-", input=text, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _get(cluster: Cluster, namespace: str, *what: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "-n", namespace, *what, "-o", "json").stdout
    obj: dict[str, Any] = json.loads(out)
    return obj


def _is_subset(part: Any, whole: Any) -> bool:
    """Everything in ``part`` is in ``whole`` (the server may add defaults such as protocol: TCP)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            k in whole and _is_subset(v, whole[k]) for k, v in part.items()
        )
    if isinstance(part, list):
        return isinstance(whole, list) and len(part) == len(whole) and all(map(_is_subset, part, whole))
    return bool(part == whole)


def test_crds_are_established_and_applied_client_side(cluster: Cluster, crds: list[str]) -> None:
    for name in crds:
        crd = _get(cluster, "default", "crd", name)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", (name, conditions)
        assert conditions.get("NamesAccepted") == "True", (name, conditions)
        assert "NonStructuralSchema" not in conditions, (name, conditions)
        assert "kubectl.kubernetes.io/last-applied-configuration" in crd["metadata"]["annotations"], name
    # Re-applying the same files is a no-op, as an upgrade with unchanged CRDs would be.
    out = cluster.kubectl("apply", "-f", str(CRD_DIR)).stdout
    assert out.count("unchanged") == len(crds), out


def test_short_names(cluster: Cluster, crd_namespace: str) -> None:
    for short in ("rdeploy", "rrs", "hra", "runners", "runnersets"):
        cluster.kubectl("get", "-n", crd_namespace, short)


def test_article_manifests_apply_unchanged(cluster: Cluster, crds: list[str]) -> None:
    """The seed article's files, applied as they are (namespace actions-runner-system included)."""
    created_namespace = cluster.kubectl("create", "namespace", ARTICLE_NAMESPACE, check=False).returncode == 0
    try:
        order = [
            "article-runnerdeployment-repository.yaml",
            "article-hra.yaml",
            "article-hra-metrics.yaml",
            "article-runnerdeployment-dind.yaml",
            "article-runnerdeployment-organization.yaml",
        ]
        for name in order:
            proc = cluster.kubectl("apply", "-f", str(MANIFESTS / "good" / name), check=False)
            assert proc.returncode == 0, f"{name}: {proc.stderr}"
        rd = parse(_get(cluster, ARTICLE_NAMESPACE, "runnerdeployment", "example-runner-deployment"))
        assert isinstance(rd, RunnerDeployment)
        assert rd.spec.template.spec.organization == "<YOUR_ORG>"
        assert rd.spec.template.spec.repository is None  # the last apply moved it to the organization
        hra = _get(cluster, ARTICLE_NAMESPACE, "hra", "example-hra")
        assert hra["spec"]["metrics"][0]["type"] == "TotalNumberOfQueuedAndInProgressWorkflowRuns"
    finally:
        if created_namespace:
            cluster.kubectl("delete", "namespace", ARTICLE_NAMESPACE, "--wait=false", check=False)


@pytest.mark.parametrize("manifest", GOOD, ids=lambda m: m.id)
def test_good_manifest_is_accepted(cluster: Cluster, crd_namespace: str, manifest: Manifest) -> None:
    obj = dict(manifest.obj, metadata={**manifest.obj["metadata"], "name": manifest.path.stem})
    code, out = _apply(cluster, Manifest(manifest.path, obj, None, None).text_in_namespace(crd_namespace))
    assert code == 0, out
    stored = _get(cluster, crd_namespace, manifest.obj["kind"], manifest.path.stem)
    assert _is_subset(manifest.obj["spec"], stored["spec"]), (manifest.obj["spec"], stored["spec"])
    # What the server stores parses into the API types and passes the CEL rules' Python twins.
    parsed = parse(stored)
    assert parsed.name == manifest.path.stem
    assert validate(stored) == []


@pytest.mark.parametrize("manifest", BAD, ids=lambda m: m.id)
def test_bad_manifest_is_rejected(cluster: Cluster, crd_namespace: str, manifest: Manifest) -> None:
    assert manifest.expect_error
    code, out = _apply(cluster, manifest.text_in_namespace(crd_namespace), "--dry-run=server")
    assert code != 0, f"accepted: {out}"
    assert manifest.expect_error in out


def _rd(name: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "actions.summerwind.dev/v1alpha1",
            "kind": "RunnerDeployment",
            "metadata": {"name": name},
            "spec": {"replicas": 2, "template": {"spec": {"repository": "acme/widgets", "labels": ["gpu"]}}},
        }
    )


def test_status_and_scale_subresources(cluster: Cluster, namespace: str, crds: list[str]) -> None:
    ns = ("-n", namespace)
    cluster.kubectl("apply", *ns, "-f", "-", input=_rd("rd"))
    status = {
        "replicas": 2,
        "readyReplicas": 1,
        "availableReplicas": 1,
        "busyReplicas": 1,
        "selector": "app=x",
    }
    # The status subresource takes status and nothing else ...
    cluster.kubectl(
        "patch",
        *ns,
        "rdeploy",
        "rd",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status, "spec": {"replicas": 9}}),
    )
    got = _get(cluster, namespace, "rdeploy", "rd")
    assert got["status"] == status
    assert got["spec"]["replicas"] == 2
    # ... and the main resource ignores status.
    cluster.kubectl(
        "patch", *ns, "rdeploy", "rd", "--type=merge", "-p", json.dumps({"status": {"replicas": 7}})
    )
    assert _get(cluster, namespace, "rdeploy", "rd")["status"]["replicas"] == 2
    # Status is validated too.
    bad = cluster.kubectl(
        "patch",
        *ns,
        "rdeploy",
        "rd",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"readyReplicas": "one"}}),
        check=False,
    )
    assert bad.returncode != 0
    assert "must be of type integer" in bad.stderr

    scale = _get(cluster, namespace, "rdeploy", "rd", "--subresource=scale")
    assert scale["spec"]["replicas"] == 2
    assert scale["status"] == {"replicas": 2, "selector": "app=x"}
    cluster.kubectl("scale", *ns, "rdeploy/rd", "--replicas=5")
    assert _get(cluster, namespace, "rdeploy", "rd")["spec"]["replicas"] == 5


def _table(cluster: Cluster, namespace: str, what: str, *args: str) -> list[list[str]]:
    out = cluster.kubectl("get", "-n", namespace, what, *args).stdout
    return [line.split() for line in out.strip().splitlines()]


def test_printer_columns(cluster: Cluster, namespace: str, crds: list[str]) -> None:
    ns = ("-n", namespace)
    cluster.kubectl("apply", *ns, "-f", "-", input=_rd("rd"))
    cluster.kubectl(
        "patch",
        *ns,
        "rdeploy",
        "rd",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"replicas": 2, "readyReplicas": 1, "busyReplicas": 1}}),
    )
    table = _table(cluster, namespace, "runnerdeployments")
    assert table[0] == ["NAME", "DESIRED", "CURRENT", "READY", "BUSY", "AGE"]
    assert table[1][:5] == ["rd", "2", "2", "1", "1"]  # AGE ticks between calls: not compared
    assert _table(cluster, namespace, "rdeploy")[1][:5] == table[1][:5]  # the short name works
    wide = _table(cluster, namespace, "rdeploy", "-o", "wide")
    header = ["NAME", "DESIRED", "CURRENT", "READY", "BUSY", "UP-TO-DATE", "AVAILABLE", "SCOPE", "GROUP"]
    assert wide[0] == [*header, "LABELS", "AGE"]
    assert "acme/widgets" in wide[1]

    runner = {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "Runner",
        "metadata": {"name": "r1"},
        "spec": {"organization": "acme", "labels": ["gpu", "linux"]},
    }
    cluster.kubectl("apply", *ns, "-f", "-", input=yaml.safe_dump(runner))
    cluster.kubectl(
        "patch",
        *ns,
        "runner",
        "r1",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {"status": {"phase": "Running", "workflow": {"job": "build", "repository": "acme/widgets"}}}
        ),
    )
    rows = _table(cluster, namespace, "runners")
    assert rows[0] == ["NAME", "SCOPE", "LABELS", "STATUS", "JOB", "AGE"]
    assert rows[1][:5] == ["r1", "acme", '["gpu","linux"]', "Running", "build"]

    hra = {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "HorizontalRunnerAutoscaler",
        "metadata": {"name": "h"},
        "spec": {"scaleTargetRef": {"name": "rd"}, "minReplicas": 0, "maxReplicas": 5},
    }
    cluster.kubectl("apply", *ns, "-f", "-", input=yaml.safe_dump(hra))
    cluster.kubectl(
        "patch",
        *ns,
        "hra",
        "h",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"desiredReplicas": 3, "scheduledOverridesSummary": "min=2"}}),
    )
    rows = _table(cluster, namespace, "hra")
    assert rows[0] == ["NAME", "MIN", "MAX", "DESIRED", "SCHEDULE", "AGE"]
    assert rows[1][:5] == ["h", "0", "5", "3", "min=2"]


# --- actions.github.com (scale sets) ----------------------------------------------------------


@pytest.fixture(scope="module")
def scale_set_crds(cluster: Cluster) -> list[str]:
    """The scale-set CRDs, installed with client-side ``kubectl apply`` and Established."""
    cluster.kubectl("apply", "-f", str(SCALE_SET_CRD_DIR))
    names = [f"{r.PLURAL}.actions.github.com" for r in scaleset.RESOURCES]
    wait_established(cluster, names)
    return names


def _forget(cluster: Cluster, namespace: str, kind: str, name: str) -> None:
    """Delete an object a test created, finalizers and all, and wait until it is gone: a later test's
    cluster-wide scale-set controller (the chart's) must not find it."""
    patch = json.dumps({"metadata": {"finalizers": None}})
    cluster.kubectl("patch", "-n", namespace, kind, name, "--type=merge", "-p", patch, check=False)
    cluster.kubectl("delete", "-n", namespace, kind, name, "--ignore-not-found", "--timeout=30s", check=False)


def test_scale_set_crds_are_established(cluster: Cluster, scale_set_crds: list[str]) -> None:
    for name in scale_set_crds:
        crd = _get(cluster, "default", "crd", name)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", (name, conditions)
        assert "NonStructuralSchema" not in conditions, (name, conditions)


@pytest.mark.parametrize("manifest", SCALE_SET_GOOD, ids=lambda m: m.id)
def test_good_scale_set_manifest_is_accepted(
    cluster: Cluster, scale_set_crds: list[str], namespace: str, manifest: Manifest
) -> None:
    kind = f"{manifest.obj['kind']}.actions.github.com"
    code, out = _apply(cluster, manifest.text_in_namespace(namespace))
    try:
        assert code == 0, out
        stored = _get(cluster, namespace, kind, manifest.path.stem)
        assert _is_subset(manifest.obj["spec"], stored["spec"]), (manifest.obj["spec"], stored["spec"])
        assert scaleset.parse(stored).name == manifest.path.stem
        assert scaleset.validate(stored) == []
    finally:
        # ARC's finalizers in a fixture would keep the object (and its namespace) forever here, with
        # no controller to remove them, and a later test's cluster-wide controller would find it
        _forget(cluster, namespace, kind, manifest.path.stem)


@pytest.mark.parametrize("manifest", SCALE_SET_BAD, ids=lambda m: m.id)
def test_bad_scale_set_manifest_is_rejected(
    cluster: Cluster, scale_set_crds: list[str], namespace: str, manifest: Manifest
) -> None:
    assert manifest.expect_error
    code, out = _apply(cluster, manifest.text_in_namespace(namespace), "--dry-run=server")
    assert code != 0, f"accepted: {out}"
    assert manifest.expect_error in out


def test_scale_set_printer_columns(cluster: Cluster, scale_set_crds: list[str], namespace: str) -> None:
    ns = ("-n", namespace)
    ars = next(m for m in SCALE_SET_GOOD if m.path.name == "ars-quickstart.yaml")
    cluster.kubectl("apply", *ns, "-f", "-", input=ars.text_in_namespace(namespace))
    try:
        status = {"currentRunners": 3, "phase": "Running", "pendingEphemeralRunners": 1}
        status |= {"runningEphemeralRunners": 2, "failedEphemeralRunners": 0}
        cluster.kubectl(
            "patch",
            *ns,
            "autoscalingrunnerset",
            "ars-quickstart",
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )
        out = cluster.kubectl("get", *ns, "autoscalingrunnersets").stdout.splitlines()
        assert out[0].split() == [
            *("NAME", "MINIMUM", "RUNNERS", "MAXIMUM", "RUNNERS", "CURRENT", "RUNNERS", "PHASE"),
            *("PENDING", "RUNNERS", "RUNNING", "RUNNERS", "FAILED", "RUNNERS", "AGE"),
        ]
        assert out[1].split()[:8] == ["ars-quickstart", "0", "5", "3", "Running", "1", "2", "0"]
        assert api.GROUP != scaleset.GROUP  # both groups served side by side
    finally:
        _forget(cluster, namespace, "autoscalingrunnerset", "ars-quickstart")


@pytest.mark.parametrize("manifest", SIZING_GOOD, ids=lambda m: m.id)
def test_good_sizing_policy_is_accepted(cluster: Cluster, crd_namespace: str, manifest: Manifest) -> None:
    code, out = _apply(cluster, manifest.text_in_namespace(crd_namespace))
    assert code == 0, out
    stored = _get(cluster, crd_namespace, "runnersizingpolicy", manifest.path.stem)
    assert _is_subset(manifest.obj["spec"], stored["spec"]), (manifest.obj["spec"], stored["spec"])
    policy = sizing.RunnerSizingPolicy.from_dict(stored)
    assert sizing.policy_errors(policy.spec) == []
    assert rule_violations(sizing.RunnerSizingPolicy, stored) == []


@pytest.mark.parametrize("manifest", SIZING_BAD, ids=lambda m: m.id)
def test_bad_sizing_policy_is_rejected(cluster: Cluster, crd_namespace: str, manifest: Manifest) -> None:
    assert manifest.expect_error
    code, out = _apply(cluster, manifest.text_in_namespace(crd_namespace), "--dry-run=server")
    assert code != 0, f"accepted: {out}"
    assert manifest.expect_error in out


def test_sizing_policy_printer_columns(cluster: Cluster, namespace: str, crds: list[str]) -> None:
    ns = ("-n", namespace)
    policy = next(m for m in SIZING_GOOD if m.path.name == "rsp-gpu-runners.yaml")
    cluster.kubectl("apply", *ns, "-f", "-", input=policy.text_in_namespace(namespace))
    condition = {"type": "Accepted", "status": "True", "reason": "Valid", "message": "usable"}
    condition["lastTransitionTime"] = "2026-01-01T00:00:00Z"
    status = {"waiting": 2, "pending": 0, "placed": 1, "refused": 1, "conditions": [condition]}
    status["waitingJobs"] = [{"jobId": 41, "repository": "acme/ml", "size": "8 x GPU", "reason": "waiting"}]
    patch = json.dumps({"status": status})
    cluster.kubectl(
        "patch", *ns, "rsp", "rsp-gpu-runners", "--subresource=status", "--type=merge", "-p", patch
    )
    out = cluster.kubectl("get", *ns, "runnersizingpolicies").stdout.splitlines()
    assert out[0].split() == [
        *("NAME", "TARGET", "MAX", "GPUS", "ORDER", "ACCEPTED", "WAITING", "REFUSED", "AGE"),
    ]
    assert out[1].split()[:7] == ["rsp-gpu-runners", "gpu-runners", "8", "Backfill", "True", "2", "1"]
    wide = cluster.kubectl("get", *ns, "rsp", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-6:] == ["WAITING", "PENDING", "PLACED", "REFUSED", "REASON", "AGE"]
    assert wide[1].split()[5:10] == ["2", "0", "1", "1", "usable"]
