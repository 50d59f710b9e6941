"""The integration tests' shared fixtures (``cluster`` and ``namespace`` come from tests/conftest.py;
the factories they share are in ``support.py``)."""

from __future__ import annotations

import pytest

from devcluster.cluster import Cluster
from tests.integration.support import install_crds


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> list[str]:
    """The CRDs (see :func:`install_crds`), applied again by each module: a chart test may have
    removed them."""
    return install_crds(cluster)
