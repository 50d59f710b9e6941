"""The RunnerSizingPolicy CRD (runnerd.dev): generated into the legacy chart, its fixtures accepted or
rejected by the local stand-in of the API server (tests/integration/test_crds.py runs them on the
real one), CEL rules the same as the Python ones, and printer columns that tell the state."""

from __future__ import annotations

from typing import Any

import pytest

from runnerd.api import ApiParseError, sizing
from runnerd.api.validation import rule_violations
from tests.unit.api.manifests import (
    CRD_DIR,
    Manifest,
    committed_crds,
    local_errors,
    manifests,
    openapi_schema,
)

GOOD = manifests("sizing-good")
BAD = manifests("sizing-bad")


def test_crd_is_generated_into_the_legacy_chart() -> None:
    crd = committed_crds()["RunnerSizingPolicy"]
    assert (CRD_DIR / "runnerd.dev_runnersizingpolicies.yaml").is_file()
    assert crd["metadata"]["name"] == "runnersizingpolicies.runnerd.dev"
    assert crd["spec"]["group"] == sizing.GROUP
    assert crd["spec"]["names"]["shortNames"] == ["rsp"]
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["subresources"]) == (sizing.VERSION, {"status": {}})


def test_printer_columns_tell_the_state() -> None:
    (version,) = committed_crds()["RunnerSizingPolicy"]["spec"]["versions"]
    default = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    wide = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority")]
    assert default == ["Target", "Max GPUs", "Order", "Accepted", "Waiting", "Refused", "Age"]
    assert wide == ["Pending", "Placed", "Reason"]


def test_fixtures_exist() -> None:
    assert len(GOOD) >= 3
    assert len(BAD) >= 10


@pytest.mark.parametrize("manifest", GOOD, ids=lambda m: m.id)
def test_good_policy_is_accepted_and_usable(manifest: Manifest) -> None:
    assert local_errors(manifest.obj) == []
    policy = sizing.RunnerSizingPolicy.from_dict(manifest.obj)
    assert sizing.policy_errors(policy.spec) == []
    assert policy.to_dict() == manifest.obj


@pytest.mark.parametrize("manifest", BAD, ids=lambda m: m.id)
def test_bad_policy_is_rejected_with_its_message(manifest: Manifest) -> None:
    assert manifest.expect_local
    errors = local_errors(manifest.obj)
    assert any(manifest.expect_local in e for e in errors), errors


@pytest.mark.parametrize("manifest", BAD, ids=lambda m: m.id)
def test_bad_policy_is_also_refused_by_policy_errors(manifest: Manifest) -> None:
    """What the server refuses, the controller's own check refuses too (for objects stored before
    a CRD upgrade), unless the parser already refuses it."""
    try:
        policy = sizing.RunnerSizingPolicy.from_dict(manifest.obj)
    except ApiParseError:
        return
    assert sizing.policy_errors(policy.spec) != []


@pytest.mark.parametrize(
    ("path", "cls"),
    [
        (["spec"], sizing.RunnerSizingPolicySpec),
        (["spec", "max"], sizing.SizeCaps),
        (["spec", "admission"], sizing.AdmissionSettings),
    ],
)
def test_cel_rules_are_the_python_rules(path: list[str], cls: type[Any]) -> None:
    node = openapi_schema("RunnerSizingPolicy")
    for part in path:
        node = node["properties"][part]
    assert node["x-kubernetes-validations"] == [r.to_schema() for r in cls.RULES]


@pytest.mark.parametrize(
    ("caps", "ok"),
    [({"cpu": "500m"}, True), ({"cpu": 4}, True), ({"cpu": "0"}, False), ({"memory": "0Gi"}, False),
     ({"memory": "nonsense"}, False), ({}, True)],
)  # fmt: skip
def test_positive_quantity_rule(caps: dict[str, Any], ok: bool) -> None:
    assert (rule_violations(sizing.SizeCaps, caps) == []) is ok


def test_list_shapes_make_the_server_refuse_duplicates() -> None:
    spec = openapi_schema("RunnerSizingPolicy")["properties"]["spec"]["properties"]
    assert spec["gpuProducts"]["x-kubernetes-list-type"] == "map"
    assert spec["gpuProducts"]["x-kubernetes-list-map-keys"] == ["name"]
    assert spec["migProfiles"]["x-kubernetes-list-type"] == "set"
    assert spec["migProfiles"]["items"]["pattern"] == sizing.MIG_PROFILE_PATTERN
    assert "pattern" not in spec["migProfiles"]
