"""The per-runner identity of ``containerMode: kubernetes`` runners: pure builders (no I/O).

In kubernetes container mode the runner's container hooks start each job's containers as pods
(and jobs, and secrets for their env) in the runner's namespace, so the runner pod needs a
ServiceAccount allowed to do that. ARC creates one per runner when the spec names none (and its
chart value ``rbac.allowGrantingKubernetesContainerModePermissions`` lets it); runnerd does the same
behind the same value (the controller's ``--kubernetes-mode-service-accounts``):

* a ServiceAccount, a Role and a RoleBinding, all named as the runner (its pod's
  ``serviceAccountName``), in the runner's namespace, labelled ``runnerd.dev/runner-name``;
* owned by the Runner (garbage-collected with it), created before its pod;
* the Role grants exactly ARC's rules (:data:`KUBERNETES_MODE_RULES`), in that namespace only.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from runnerd.api import JSON

KUBERNETES_MODE_RULES: tuple[JSON, ...] = (
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get", "create"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "create", "delete"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create", "delete"]},
)
"""What the runner container hooks do in the runner's namespace (ARC's Role for this mode)."""


def _meta(name: str, namespace: str, labels: Mapping[str, str], owner_ref: Mapping[str, Any]) -> JSON:
    return {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels),
        "ownerReferences": [dict(owner_ref)],
    }


def build_runner_identity(
    name: str, namespace: str, *, labels: Mapping[str, str], owner_ref: Mapping[str, Any]
) -> tuple[JSON, JSON, JSON]:
    """The ServiceAccount, Role and RoleBinding ``name`` of one kubernetes-mode runner."""
    service_account: JSON = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name, namespace, labels, owner_ref),
    }
    role: JSON = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(name, namespace, labels, owner_ref),
        "rules": [copy.deepcopy(r) for r in KUBERNETES_MODE_RULES],
    }
    binding: JSON = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(name, namespace, labels, owner_ref),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }
    return service_account, role, binding
