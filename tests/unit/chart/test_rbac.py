"""The chart's RBAC against the code: every Kubernetes request the controller's source can make
(found by reading it: each call on its KubeClient and the resource it names) is granted, and
nothing else is, apart from rules listed here with their reason.

tests/integration/test_chart.py proves the same on a real API server for the paths one job takes;
this reads every path, including those (RunnerSet, webhook reservations, conflict retries) that run
rarely.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster import binaries
from runnerd.controller import common
from runnerd.kube.resources import PODS, ROLE_BINDINGS, ROLES, SECRETS, SERVICE_ACCOUNTS, Resource

pytestmark = [pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "actions-runner-controller"
SRC = ROOT / "src"
# Scale-set mode's modules (`runnerd controller --scale-sets`, the gha-runner-scale-set-controller
# chart; tests/unit/chart/test_scale_set_rbac.py), by file name.
SCALE_SET_PREFIXES = ("autoscaling", "ephemeral", "scaleset", "listener")
CONTROLLER_DIR = SRC / "runnerd" / "controller"
CONTROLLER_FILES = sorted(p for p in CONTROLLER_DIR.rglob("*.py") if p.name != "__init__.py")
# What `runnerd controller` runs: its controllers, and the lease and event clients of the adapter.
CONTROLLER_MODULES = [
    *(p for p in CONTROLLER_FILES if not p.name.startswith(SCALE_SET_PREFIXES)),
    SRC / "runnerd" / "kube" / "client.py",
]
SCALE_SET_MODULES = [
    *(p for p in CONTROLLER_FILES if p.name.startswith(SCALE_SET_PREFIXES)),
    SRC / "runnerd" / "kube" / "client.py",
]
# What `runnerd webhook-server` runs: the reservation sink and its writer.
WEBHOOK_MODULES = [SRC / "runnerd" / "controller" / m for m in ("reservations.py", "reservation_writer.py")]

# KubeClient method -> (verb, subresource)
METHODS: dict[str, list[tuple[str, str | None]]] = {
    "get": [("get", None)],
    "list": [("list", None)],
    "watch": [("watch", None)],
    "list_watcher": [("list", None), ("watch", None)],
    "create": [("create", None)],
    "replace": [("update", None)],
    "replace_status": [("update", "status")],
    "patch": [("patch", None)],
    "patch_status": [("patch", "status")],
    "delete": [("delete", None)],
}
RECEIVERS = {"self.kube", "kube", "self.client", "controllers.kube"}
# Functions called with a KubeClient and the resource they write: name -> (verb, subresource)
# (runnerd.controller.scaleset_common's; counted where they are called, with the caller's resource).
HELPERS: dict[str, list[tuple[str, str | None]]] = {
    "set_finalizers": [("patch", None)],
    "write_status": [("patch", "status")],
}

# Calls whose resource is a variable: where it comes from.
DYNAMIC = {
    # HorizontalRunnerAutoscaler targets (targets.ScaleTarget.resource, in hra/controller.py)
    ("controller.py", "target.resource"): [common.RUNNER_DEPLOYMENTS, common.RUNNER_SETS],
    # common.patch_status(kube, RUNNER_REPLICA_SETS | RUNNER_DEPLOYMENTS, ...)
    ("common.py", "resource"): [common.RUNNER_REPLICA_SETS, common.RUNNER_DEPLOYMENTS],
    # RunnerObjects.create_identity: a kubernetes-mode runner's ServiceAccount, Role, RoleBinding
    ("runner_objects.py", "resource"): [SERVICE_ACCOUNTS, ROLES, ROLE_BINDINGS],
    # KubeListWatcher: the resource of each list_watcher() call, found above
    ("client.py", "self.resource"): [],
    # the scale-set chart's objects whose cleanup-protection finalizer an AutoscalingRunnerSet removes
    ("autoscalingrunnerset.py", "resource"): [SECRETS, ROLE_BINDINGS, ROLES, SERVICE_ACCOUNTS],
    # what the container hooks left of a job (kubernetes container mode)
    ("ephemeralrunner.py", "resource"): [PODS, SECRETS],
    # inside HELPERS: counted at their callers
    ("scaleset_common.py", "resource"): [],
}

# Granted without a request of their own: where the OwnerReferencesPermissionEnforcement admission
# plugin is on, setting blockOwnerDeletion on an owner reference needs `update` on the owner's
# finalizers (pods -> Runner -> RunnerReplicaSet -> RunnerDeployment, StatefulSet -> RunnerSet,
# Secret -> StatefulSet).
NO_REQUEST = {
    ("update", "actions.summerwind.dev", "runners/finalizers"),
    ("update", "actions.summerwind.dev", "runnerreplicasets/finalizers"),
    ("update", "actions.summerwind.dev", "runnerdeployments/finalizers"),
    ("update", "actions.summerwind.dev", "runnersets/finalizers"),
    ("update", "apps", "statefulsets/finalizers"),
}


# Granted only with rbac.allowGrantingKubernetesContainerModePermissions=true (as in ARC): the
# per-runner ServiceAccount, Role and RoleBinding of containerMode kubernetes, and what that Role
# grants (RBAC lets only a holder of a permission grant it).
NO_JOURNAL_VALUE = "reservationJournal.enabled=false"
JOURNAL_REQUESTS = {(verb, "", "configmaps") for verb in ("delete", "list", "watch")}
"""The reservation journal's requests (on by default; its ``create`` is the cost ledger's too)."""
WEBHOOK_JOURNAL_REQUESTS = {("create", "", "configmaps")}
"""The webhook server's journal: it creates entries and reads none (the leading controller folds)."""
WEBHOOK_DIRECT_REQUESTS = {("patch", "actions.summerwind.dev", "horizontalrunnerautoscalers")}
"""What the webhook server needs only without the journal: it writes the HRA's reservations itself."""
KUBERNETES_MODE_VALUE = "rbac.allowGrantingKubernetesContainerModePermissions=true"
KUBERNETES_MODE_REQUESTS = {
    ("create", "", "serviceaccounts"),
    ("create", "rbac.authorization.k8s.io", "roles"),
    ("create", "rbac.authorization.k8s.io", "rolebindings"),
}
KUBERNETES_MODE_ESCALATION = {
    ("get", "", "pods"),
    ("create", "", "pods/exec"),
    ("get", "", "pods/exec"),
    ("get", "", "pods/log"),
    ("list", "", "pods/log"),
    ("watch", "", "pods/log"),
    ("create", "batch", "jobs"),
    ("delete", "batch", "jobs"),
    ("get", "batch", "jobs"),
    ("list", "batch", "jobs"),
    ("delete", "", "secrets"),
}


@dataclass(frozen=True)
class Call:
    where: str
    verb: str
    group: str
    resource: str


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts)


def _resources(path: Path, arg: ast.expr, module: Any) -> list[Resource]:
    text = ast.unparse(arg)
    if isinstance(arg, ast.Name) and isinstance(getattr(module, arg.id, None), Resource):
        return [getattr(module, arg.id)]
    key = (path.name, text)
    if key in DYNAMIC:
        return DYNAMIC[key]
    raise AssertionError(
        f"{path.name}:{arg.lineno}: cannot tell which resource `{text}` is; add it to DYNAMIC in {__file__}"
    )


def _helper_call(node: ast.Call) -> str | None:
    """The HELPERS name ``node`` calls with a KubeClient, if it does."""
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if name in HELPERS and len(node.args) >= 2 and ast.unparse(node.args[0]) in RECEIVERS:
        return name
    return None


def requests_in(paths: list[Path]) -> set[Call]:
    """Every (verb, group, resource) a KubeClient call in these files can request."""
    found: set[Call] = set()
    for path in paths:
        module = importlib.import_module(_module_name(path))
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            helper = _helper_call(node)
            if helper is not None:
                for resource in _resources(path, node.args[1], module):
                    for verb, sub in HELPERS[helper]:
                        name = resource.plural + (f"/{sub}" if sub else "")
                        found.add(Call(f"{path.name}:{node.lineno}", verb, resource.group, name))
                continue
            if not isinstance(node.func, ast.Attribute):
                continue
            if node.func.attr not in METHODS or ast.unparse(node.func.value) not in RECEIVERS:
                continue
            if not node.args:
                continue
            subresource = next(
                (
                    str(k.value.value)
                    for k in node.keywords
                    if k.arg == "subresource" and isinstance(k.value, ast.Constant)
                ),
                None,
            )
            for resource in _resources(path, node.args[0], module):
                for verb, sub in METHODS[node.func.attr]:
                    name = resource.plural + (f"/{sub or subresource}" if (sub or subresource) else "")
                    found.add(Call(f"{path.name}:{node.lineno}", verb, resource.group, name))
    return found


def rules_of(objects: list[dict[str, Any]], kinds: set[str], names: set[str]) -> set[tuple[str, str, str]]:
    out: set[tuple[str, str, str]] = set()
    for obj in objects:
        if obj["kind"] in kinds and obj["metadata"]["name"] in names:
            for rule in obj["rules"]:
                for verb in rule["verbs"]:
                    for group in rule["apiGroups"]:
                        for resource in rule["resources"]:
                            out.add((verb, group, resource))
    return out


def render(home: Path, *values: str) -> list[dict[str, Any]]:
    sets = [arg for value in values for arg in ("--set", value)]
    proc = subprocess.run(
        [str(binaries.ensure().path("helm")), "template", "rel", str(CHART), "--namespace", "arc",
         "--set", "githubWebhookServer.enabled=true", "--set", "githubWebhookServer.secret.create=true",
         "--set", "githubWebhookServer.secret.github_webhook_secret_token=x", *sets],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return render(tmp_path_factory.mktemp("helm"))


MANAGER_ROLES = {
    "rel-actions-runner-controller-manager",
    "rel-actions-runner-controller-volumes",
    "rel-actions-runner-controller-cluster-identity",
    "rel-actions-runner-controller-leader-election",
    "rel-actions-runner-controller-capacity",
    "rel-actions-runner-controller-cost-ledger",
    "rel-actions-runner-controller-nodes",
}


def test_the_scan_finds_the_controllers_requests() -> None:
    """A sanity check of the reader itself: requests known to exist are found."""
    calls = {(c.verb, c.group, c.resource) for c in requests_in(CONTROLLER_MODULES)}
    assert {
        ("create", "", "pods"),
        ("watch", "actions.summerwind.dev", "runners"),
        ("patch", "actions.summerwind.dev", "runners/status"),
        ("update", "coordination.k8s.io", "leases"),
        ("create", "", "events"),
        ("patch", "", "persistentvolumes"),
        ("patch", "actions.summerwind.dev", "runnersets"),  # through target.resource
    } <= calls


def test_controller_rules_are_exactly_the_requests_its_code_makes(rendered: list[dict[str, Any]]) -> None:
    calls = requests_in(CONTROLLER_MODULES)
    needed = {(c.verb, c.group, c.resource) for c in calls}
    granted = rules_of(rendered, {"ClusterRole", "Role"}, MANAGER_ROLES)
    missing = sorted(
        f"{c.verb} {c.group or 'core'}/{c.resource} ({c.where})"
        for c in calls
        if (c.verb, c.group, c.resource) not in granted | KUBERNETES_MODE_REQUESTS | JOURNAL_REQUESTS
    )
    assert not missing, f"the code makes requests the chart does not grant: {missing}"
    extra = sorted(granted - needed - NO_REQUEST)
    assert not extra, f"the chart grants what no code requests: {extra}"


WEBHOOK_ROLE = "rel-actions-runner-controller-github-webhook-server"


def webhook_server_requests() -> set[tuple[str, str, str]]:
    """What ``runnerd webhook-server`` requests, the reservation journal's aside."""
    needed = {(c.verb, c.group, c.resource) for c in requests_in(WEBHOOK_MODULES)}
    group = "actions.summerwind.dev"
    # build_webhook_process: informers on autoscalers, RunnerDeployments and RunnerSets; Events
    needed |= {
        (v, group, r)
        for v in ("list", "watch")
        for r in ("horizontalrunnerautoscalers", "runnerdeployments", "runnersets")
    }
    return needed | {("create", "", "events"), ("patch", "", "events")}


def test_webhook_server_rules_cover_its_requests_and_no_more(rendered: list[dict[str, Any]]) -> None:
    """With the reservation journal (the default) it also creates the journal's entries; it reads
    none (build_webhook_process: a journal without an informer), so it cannot list ConfigMaps; and it
    never writes the HRA (the leading controller folds the entries in), so it cannot patch one."""
    granted = rules_of(rendered, {"ClusterRole"}, {WEBHOOK_ROLE})
    journal = {
        (c.verb, c.group, c.resource) for c in requests_in([SRC / "runnerd" / "controller" / "journal.py"])
    }
    assert journal >= WEBHOOK_JOURNAL_REQUESTS
    assert webhook_server_requests() >= WEBHOOK_DIRECT_REQUESTS
    assert granted == (webhook_server_requests() - WEBHOOK_DIRECT_REQUESTS) | WEBHOOK_JOURNAL_REQUESTS


def test_without_runner_sets_the_rules_are_exactly_the_rest_of_the_code(tmp_path: Path) -> None:
    """``runnerSets.enabled=false`` runs the controller with ``--no-runner-sets``: nothing of
    runnerset*.py runs, and an HRA cannot target a RunnerSet (no informer of them)."""
    calls = requests_in([m for m in CONTROLLER_MODULES if not m.name.startswith("runnerset")])
    # (app.py lists and watches RunnerSets only in build_webhook_process, the webhook server's)
    # (per-runner ServiceAccounts and Roles are granted only with the kubernetes-mode value)
    needed = (
        {(c.verb, c.group, c.resource) for c in calls}
        - KUBERNETES_MODE_REQUESTS
        - {(verb, common.RUNNER_SETS.group, "runnersets") for verb in ("patch", "list", "watch")}
    )
    granted = rules_of(render(tmp_path, "runnerSets.enabled=false"), {"ClusterRole", "Role"}, MANAGER_ROLES)
    assert granted - needed == {
        rule for rule in NO_REQUEST if "runnersets" not in rule[2] and rule[1] != "apps"
    }
    assert needed <= granted
    assert not {rule for rule in granted if rule[2] in ("persistentvolumes", "persistentvolumeclaims")}
    # a Runner's credentials Secret is written and read by name: no Secret can be listed or watched
    assert {rule[0] for rule in granted if rule[2] == "secrets"} == {"create", "get", "patch"}


def test_without_volume_recycling_no_persistent_volume_rights(tmp_path: Path) -> None:
    objects = render(tmp_path, "runnerSets.volumeRecycling=false")
    granted = rules_of(objects, {"ClusterRole", "Role"}, MANAGER_ROLES)
    assert not {rule for rule in granted if rule[2] == "persistentvolumes"}
    assert ("create", "", "secrets") in granted  # RunnerSets themselves still work


def test_kubernetes_mode_value_grants_the_runner_identity_requests_and_the_role_they_grant(
    tmp_path: Path,
) -> None:
    needed = {(c.verb, c.group, c.resource) for c in requests_in(CONTROLLER_MODULES)}
    assert needed >= KUBERNETES_MODE_REQUESTS
    off = rules_of(render(tmp_path), {"ClusterRole", "Role"}, MANAGER_ROLES)
    on = rules_of(render(tmp_path, KUBERNETES_MODE_VALUE), {"ClusterRole", "Role"}, MANAGER_ROLES)
    assert not off & KUBERNETES_MODE_REQUESTS
    assert on - off == KUBERNETES_MODE_REQUESTS | KUBERNETES_MODE_ESCALATION
    # everything the runner's Role grants, the controller holds (RBAC's escalation check)
    from runnerd.manifests.rbac import KUBERNETES_MODE_RULES

    role = {(v, g, r) for rule in KUBERNETES_MODE_RULES for v in rule["verbs"] for g in rule["apiGroups"]
            for r in rule["resources"]}  # fmt: skip
    assert role <= on


SIZING_REQUESTS = {  # nodes are read in every case (the cost ledger); pods cluster-wide: below
    ("patch", "runnerd.dev", "runnersizingpolicies/status"),
    ("list", "runnerd.dev", "runnersizingpolicies"),
    ("watch", "runnerd.dev", "runnersizingpolicies"),
}


@pytest.mark.parametrize("watch_namespace", [None, "ci"])
def test_capacity_admission_reads_nodes_and_every_pod_cluster_wide(
    tmp_path: Path, watch_namespace: str | None
) -> None:
    """Sizing (the default, ``sizing.enabled``): nodes and pods are listed and watched cluster-wide
    by ClusterRoles even in single-namespace mode (a node's GPUs are shared by all namespaces): the
    pods by the capacity role, the nodes by the nodes role the cost ledger needs in every case;
    ``sizing.enabled=false`` grants none of what only admission needs."""
    extra = (
        ["scope.singleNamespace=true", f"scope.watchNamespace={watch_namespace}"] if watch_namespace else []
    )
    objects = render(tmp_path, *extra)
    capacity = [o for o in objects if o["kind"] == "ClusterRole" and "-capacity" in o["metadata"]["name"]]
    assert len(capacity) == 1
    assert capacity[0]["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]
    nodes = [o for o in objects if o["kind"] == "ClusterRole" and "-nodes" in o["metadata"]["name"]]
    assert [o["rules"] for o in nodes] == [
        [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]}]
    ]
    off = render(tmp_path, "sizing.enabled=false", *extra)
    names = {o["metadata"]["name"] for o in off if o["kind"] in ("ClusterRole", "Role")}
    granted = rules_of(off, {"ClusterRole", "Role"}, names)
    assert not granted & SIZING_REQUESTS
    assert not [o for o in off if o["kind"] == "ClusterRole" and "-capacity" in o["metadata"]["name"]]


def test_journal_value_grants_exactly_the_journals_requests(tmp_path: Path) -> None:
    """``reservationJournal.enabled`` (true by default): the ConfigMap rights of the journal, in the
    manager's role (the watched namespaces, where the HRAs are) and, create only, the webhook
    server's; false takes exactly those away and turns the journal off in both processes."""
    journal = requests_in([SRC / "runnerd" / "controller" / "journal.py"])
    needed = {(c.verb, c.group, c.resource) for c in journal if c.resource == "configmaps"}
    assert needed == JOURNAL_REQUESTS | {("create", "", "configmaps")}
    on_objects = render(tmp_path)
    off_objects = render(tmp_path, NO_JOURNAL_VALUE)
    on = rules_of(on_objects, {"ClusterRole", "Role"}, MANAGER_ROLES)
    off = rules_of(off_objects, {"ClusterRole", "Role"}, MANAGER_ROLES)
    assert not off & JOURNAL_REQUESTS
    assert on - off == JOURNAL_REQUESTS
    manager = rules_of(on_objects, {"ClusterRole", "Role"}, {"rel-actions-runner-controller-manager"})
    assert needed <= manager
    hook_off = rules_of(off_objects, {"ClusterRole"}, {WEBHOOK_ROLE})
    assert hook_off == webhook_server_requests()
    hook_on = rules_of(on_objects, {"ClusterRole"}, {WEBHOOK_ROLE})
    assert (hook_on - hook_off, hook_off - hook_on) == (WEBHOOK_JOURNAL_REQUESTS, WEBHOOK_DIRECT_REQUESTS)
    assert not {rule for rule in hook_off if rule[2] == "configmaps"}
    for objects, args in ((on_objects, []), (off_objects, ["--no-reservation-journal"])):
        for deployment in (o for o in objects if o["kind"] == "Deployment"):
            flags = [
                a for a in deployment["spec"]["template"]["spec"]["containers"][0]["args"] if "journal" in a
            ]
            assert flags == args, deployment["metadata"]["name"]
