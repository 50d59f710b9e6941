"""docs/runner-pods.md shows exactly the pods the code builds for its example RunnerDeployments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.unit.manifests.podkit import DOCS, example_pods

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = re.compile(r"<!-- example: (\S+) -->\n```yaml\n(.*?)```", re.S)


def documented() -> dict[str, object]:
    return {m.group(1): yaml.safe_load(m.group(2)) for m in EXAMPLE.finditer((ROOT / DOCS).read_text())}


@pytest.mark.parametrize("name", sorted(example_pods()))
def test_documented_pod_is_what_the_code_builds(name: str) -> None:
    docs = documented()
    assert name in docs, (
        f"{DOCS} lacks the example {name!r} (regenerate: python -m tests.unit.manifests.podkit)"
    )
    assert docs[name] == example_pods()[name]


def test_every_documented_example_is_checked() -> None:
    assert set(documented()) == set(example_pods())
