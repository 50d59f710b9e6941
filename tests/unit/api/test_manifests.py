"""The article's and ARC's documented manifests validate against the committed CRDs; bad ones are
rejected with the expected message (the real API server runs the same fixtures in
tests/integration/test_crds.py)."""

from __future__ import annotations

import pytest

from tests.unit.api.manifests import Manifest, local_errors, manifests

GOOD = manifests("good")
BAD = manifests("bad")


@pytest.mark.parametrize("manifest", GOOD, ids=lambda m: m.id)
def test_good_manifest_is_accepted(manifest: Manifest) -> None:
    assert local_errors(manifest.obj) == []


@pytest.mark.parametrize("manifest", BAD, ids=lambda m: m.id)
def test_bad_manifest_is_rejected_with_the_expected_message(manifest: Manifest) -> None:
    assert manifest.expect_error, f"{manifest.id}: a bad manifest needs an '# expect-error: ...' header"
    assert manifest.expect_local is not None
    errors = local_errors(manifest.obj)
    assert any(manifest.expect_local in e for e in errors), f"expected {manifest.expect_local!r} in {errors}"


def test_the_articles_manifests_are_fixtures() -> None:
    article = {m.path.name: m.obj for m in GOOD if m.path.name.startswith("article-")}
    kinds = sorted(
        (obj["kind"], next(iter(obj["spec"].get("template", {}).get("spec", {})), ""))
        for obj in article.values()
    )
    assert kinds == [
        ("HorizontalRunnerAutoscaler", ""),
        ("HorizontalRunnerAutoscaler", ""),
        ("RunnerDeployment", "organization"),
        ("RunnerDeployment", "repository"),
        ("RunnerDeployment", "repository"),
    ]
    assert all(obj["metadata"]["namespace"] == "actions-runner-system" for obj in article.values())


def test_every_kind_has_good_and_bad_fixtures() -> None:
    kinds = {"Runner", "RunnerReplicaSet", "RunnerDeployment", "RunnerSet", "HorizontalRunnerAutoscaler"}
    assert {m.obj["kind"] for m in GOOD} == kinds
    assert {m.obj["kind"] for m in BAD} == kinds


def test_a_null_field_is_pruned_like_the_server_does() -> None:
    # ARC's docs write ``securityContext: null`` in a container; the server drops such nulls.
    manifest = {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "Runner",
        "metadata": {"name": "r"},
        "spec": {"repository": "a/b", "containers": [{"name": "runner", "securityContext": None}]},
    }
    assert local_errors(manifest) == []
