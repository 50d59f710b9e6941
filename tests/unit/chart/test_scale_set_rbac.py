"""Scale-set mode's RBAC against its code, the way tests/unit/chart/test_rbac.py proves the legacy
chart's: every Kubernetes request the scale-set controllers' source can make (read from it) is
granted by the gha-runner-scale-set-controller chart's ClusterRole and Roles plus the manager Role
each gha-runner-scale-set release renders, and nothing else is, apart from rules listed here with
their reason. Requests are also checked for where they are granted: the informers' list/watch
cluster-wide, writes on core and RBAC objects only in a scale set's namespace (its manager Role).

tests/integration/test_scale_set_charts.py asks the API server the same for a few requests, as
the installed charts' ServiceAccounts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.chart.test_rbac import SCALE_SET_MODULES, requests_in, rules_of
from tests.unit.chart.test_scale_set_charts import CONTROLLER, SCALE_SET, render

pytestmark = [pytest.mark.timeout(60)]

GROUP = "actions.github.com"
RBAC = "rbac.authorization.k8s.io"
SCALE_SET_VALUES = {"githubConfigUrl": "https://github.com/octo-org", "githubConfigSecret": "gh"}
GHES_TLS = {"certificateFrom": {"configMapKeyRef": {"name": "ghes-ca", "key": "ca.crt"}}}
# replicaCount 2: leader election (and its Lease Role) is on, as the chart does it
CONTROLLER_VALUES = {"replicaCount": 2}
CONTROLLER_ROLES = {"rel-gha-rs-controller", "rel-gha-rs-controller-leader-election"}
SINGLE_NAMESPACE_ROLES = {
    "rel-gha-rs-controller-watch",
    "rel-gha-rs-controller-single-namespace",
    "rel-gha-rs-controller-leader-election",
}
MANAGER_ROLE = "rel-gha-rs-manager"

# Granted without a request of their own.
NO_REQUEST = {
    # OwnerReferencesPermissionEnforcement: blockOwnerDeletion on an owner reference needs `update`
    # on the owner's finalizers (ephemeralrunnerset -> autoscalingrunnerset, ephemeralrunner ->
    # ephemeralrunnerset, pod and JIT Secret -> ephemeralrunner).
    ("update", GROUP, "autoscalingrunnersets/finalizers"),
    ("update", GROUP, "ephemeralrunnersets/finalizers"),
    ("update", GROUP, "ephemeralrunners/finalizers"),
    # The in-process listener writes its AutoscalingListener's status (docs/scale-sets-listener.md,
    # "Where the listener runs"); its task is being wired into the controller.
    ("patch", GROUP, "autoscalinglisteners/status"),
}


def needed() -> set[tuple[str, str, str]]:
    return {(c.verb, c.group, c.resource) for c in requests_in(SCALE_SET_MODULES)}


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("helm")
    return {
        "controller": render(tmp, CONTROLLER, CONTROLLER_VALUES),
        "single": render(tmp, CONTROLLER, {**CONTROLLER_VALUES, "flags": {"watchSingleNamespace": "ci"}}),
        # with githubServerTLS: the controller reads the CA's ConfigMap, which the chart then grants
        "scale-set": render(tmp, SCALE_SET, {**SCALE_SET_VALUES, "githubServerTLS": GHES_TLS}),
    }


def granted(objects: dict[str, list[dict[str, Any]]], controller: str, roles: set[str]) -> set[Any]:
    return rules_of(objects[controller], {"ClusterRole", "Role"}, roles) | rules_of(
        objects["scale-set"], {"Role"}, {MANAGER_ROLE}
    )


def test_the_scan_finds_the_scale_set_requests() -> None:
    """A sanity check of the reader itself: requests known to exist are found."""
    assert {
        ("create", "", "pods"),
        ("create", "", "secrets"),
        ("watch", GROUP, "ephemeralrunners"),
        ("patch", GROUP, "ephemeralrunners/status"),  # through write_status() and directly
        ("patch", GROUP, "autoscalingrunnersets"),  # set_finalizers()
        ("patch", RBAC, "roles"),  # the chart's cleanup-protection finalizer
        ("create", GROUP, "autoscalinglisteners"),
        ("update", "coordination.k8s.io", "leases"),
        ("create", "", "events"),
    } <= needed()


@pytest.mark.parametrize(
    ("controller", "roles"), [("controller", CONTROLLER_ROLES), ("single", SINGLE_NAMESPACE_ROLES)]
)
def test_rules_are_exactly_the_requests_the_code_makes(
    objects: dict[str, list[dict[str, Any]]], controller: str, roles: set[str]
) -> None:
    calls = requests_in(SCALE_SET_MODULES)
    have = granted(objects, controller, roles)
    missing = sorted(
        f"{c.verb} {c.group or 'core'}/{c.resource} ({c.where})"
        for c in calls
        if (c.verb, c.group, c.resource) not in have
    )
    assert not missing, f"the code makes requests the charts do not grant: {missing}"
    extra = sorted(have - needed() - NO_REQUEST)
    assert not extra, f"the charts grant what no code requests: {extra}"


def test_reads_are_cluster_wide_and_core_writes_only_where_a_scale_set_is(
    objects: dict[str, list[dict[str, Any]]],
) -> None:
    cluster = rules_of(objects["controller"], {"ClusterRole"}, {"rel-gha-rs-controller"})
    manager = rules_of(objects["scale-set"], {"Role"}, {MANAGER_ROLE})
    reads = {r for r in needed() if r[0] in ("list", "watch")}
    assert reads <= cluster, "informers list and watch in every namespace"
    core_writes = {r for r in needed() if r[1] in ("", RBAC) and r[0] not in ("list", "watch")}
    core_writes -= {("create", "", "events"), ("patch", "", "events")}
    assert core_writes <= manager
    assert not core_writes & cluster


def test_the_ghes_ca_is_the_only_config_map_and_only_by_name(tmp_path: Path) -> None:
    objects = render(tmp_path, SCALE_SET, {**SCALE_SET_VALUES, "githubServerTLS": GHES_TLS})
    manager = next(o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == MANAGER_ROLE)
    plain = rules_of(render(tmp_path, SCALE_SET, SCALE_SET_VALUES), {"Role"}, {MANAGER_ROLE})
    assert rules_of(objects, {"Role"}, {MANAGER_ROLE}) - plain == {("get", "", "configmaps")}
    names = [r.get("resourceNames") for r in manager["rules"] if "configmaps" in r["resources"]]
    assert names == [["ghes-ca"]]
