"""A runner's registration credentials: kept in a Secret per runner, never in a pod spec.

Contract (pure, no I/O):

* a runner registers either with a registration token (``RUNNER_TOKEN``, ARC's runner images run
  ``config.sh --token``) or with a just-in-time config (``ACTIONS_RUNNER_INPUT_JITCONFIG``, the
  runner is already registered under ``runner_id``);
* the credential lives in one Secret per runner, under the env variable's name as key, owned by
  the object whose lifetime the runner has (a Runner, or a RunnerSet's StatefulSet): garbage
  collection removes it with its owner;
* the runner container reads it with ``valueFrom.secretKeyRef``
  (:func:`secret_env`): ``kubectl get pod -o yaml`` shows the Secret's name, never the value, and
  neither do the Runner object, its status or any Event;
* a Secret left from an earlier registration of the same runner (its pod failed and is replaced) is
  overwritten in place by :func:`replace_patch`, a JSON patch that first tests that the Secret is
  still owned by the same object, so a Secret of someone else's with that name is never changed.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from runnerd.api import JSON

ENV_RUNNER_TOKEN = "RUNNER_TOKEN"
ENV_JIT_CONFIG = "ACTIONS_RUNNER_INPUT_JITCONFIG"
ANNOTATION_RUNNER_ID = "actions-runner/id"
"""The GitHub runner id, where known (JIT configs): on the pod, the Secret, a RunnerSet's StatefulSet."""

CredentialKind = Literal["jit", "token"]


@dataclass(frozen=True)
class RegistrationToken:
    """Register with a registration token: the runner image runs ``config.sh --token``."""

    token: str = field(repr=False)
    kind: Literal["token"] = field(default="token", init=False)


@dataclass(frozen=True)
class JitConfig:
    """Start from a just-in-time config (the runner is already registered under ``runner_id``).

    Needs a runner image whose entrypoint honours ``ACTIONS_RUNNER_INPUT_JITCONFIG`` (the
    actions/runner ``run.sh`` does; ARC's legacy startup.sh insists on RUNNER_TOKEN).
    """

    encoded_jit_config: str = field(repr=False)
    runner_id: int
    kind: Literal["jit"] = field(default="jit", init=False)


Registration = RegistrationToken | JitConfig


def secret_key(kind: CredentialKind) -> str:
    """The Secret's data key, which is also the runner container's env variable."""
    return ENV_JIT_CONFIG if kind == "jit" else ENV_RUNNER_TOKEN


def secret_env(kind: CredentialKind, secret: str) -> JSON:
    """The runner container's credential env entry: a reference to Secret ``secret``."""
    key = secret_key(kind)
    return {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _value(registration: Registration) -> str:
    if isinstance(registration, JitConfig):
        return registration.encoded_jit_config
    return registration.token


def _data(registration: Registration) -> dict[str, str]:
    value = base64.b64encode(_value(registration).encode()).decode("ascii")
    return {secret_key(registration.kind): value}


def owner_reference(owner: Mapping[str, Any], api_version: str, kind: str) -> JSON:
    """A controller reference to ``owner`` (a stored object: it has a uid; list items may lack
    their apiVersion and kind, hence the defaults)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner.get("apiVersion") or api_version,
        "kind": owner.get("kind") or kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_credentials_secret(
    name: str,
    namespace: str,
    registration: Registration,
    *,
    owner_ref: Mapping[str, Any],
    labels: Mapping[str, str] | None = None,
) -> JSON:
    """The Secret ``name`` that holds ``registration``'s credential, owned through ``owner_ref``."""
    meta: JSON = {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels or {}),
        "ownerReferences": [dict(owner_ref)],
    }
    if isinstance(registration, JitConfig):
        meta["annotations"] = {ANNOTATION_RUNNER_ID: str(registration.runner_id)}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": _data(registration),
    }


def replace_patch(registration: Registration, owner_uid: str) -> list[JSON]:
    """JSON patch: the Secret's data and runner-id annotation become ``registration``'s, if (and only
    if) its first owner reference is still ``owner_uid`` (else the API server answers 422)."""
    annotations = (
        {ANNOTATION_RUNNER_ID: str(registration.runner_id)} if isinstance(registration, JitConfig) else {}
    )
    return [
        {"op": "test", "path": "/metadata/ownerReferences/0/uid", "value": owner_uid},
        {"op": "replace", "path": "/data", "value": _data(registration)},
        {"op": "add", "path": "/metadata/annotations", "value": annotations},
    ]
