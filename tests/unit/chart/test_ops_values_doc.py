"""docs/install.md's values reference is what hack/gen_values_doc.py makes of values.schema.json and
values.yaml, and it lists every key values.yaml sets."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.unit.chart.tools import CHART, REPO


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_values_doc", REPO / "hack" / "gen_values_doc.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_in_install_md_is_fresh(gen: ModuleType) -> None:
    assert gen.main(["--check"]) == 0, "run: .venv/bin/python hack/gen_values_doc.py"


def leaves(values: Any, prefix: str = "") -> set[str]:
    if not isinstance(values, dict) or not values:
        return {prefix.rstrip(".")}
    return {leaf for key, sub in values.items() for leaf in leaves(sub, f"{prefix}{key}.")}


def test_every_key_of_values_yaml_is_in_the_reference(gen: ModuleType) -> None:
    """Each key is a row, or inside a free-form object whose row shows the whole default."""
    rows = re.findall(r"^\| `([^`]+)` \| .*? \| (`.*?`)? \|", gen.reference(), re.M)
    with_default = {key for key, default in rows if default}
    assert len(with_default) > 100
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for leaf in leaves(values):
        parts = leaf.split(".")
        covering = [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
        assert any(key in with_default for key in covering), f"{leaf} is not in the values reference"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# top\na: 1\n", {"a": "top"}),
        ("a:\n  # one\n  # two\n  b: 1\n", {"a.b": "one two"}),
        ("# dropped\n\nc: 1\n", {}),
        ("a:\n  b: 1\n# back at the top\nd: 2\n", {"d": "back at the top"}),
    ],
)
def test_comments_attach_to_the_key_below(gen: ModuleType, text: str, expected: dict[str, str]) -> None:
    assert gen.comments(text) == expected


def test_markers_missing_is_an_error(gen: ModuleType) -> None:
    with pytest.raises(SystemExit, match="markers are missing"):
        gen.render("# a document without the markers\n")


def test_install_md_keeps_its_other_sections(gen: ModuleType) -> None:
    doc = (REPO / "docs" / "install.md").read_text()
    assert gen.render(doc).split(gen.BEGIN)[0] == doc.split(gen.BEGIN)[0]
    assert Path(gen.DOC) == REPO / "docs" / "install.md"
