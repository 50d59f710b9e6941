"""The chart tests' shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from devcluster import binaries


@pytest.fixture(scope="module")
def helm_bin() -> Path:
    return binaries.ensure().path("helm")
