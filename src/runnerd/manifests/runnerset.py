"""The objects of one RunnerSet runner (pure builders, no I/O): its StatefulSet, its credential
Secret, the patch that consumes that credential, and a volume's claim reference.

:mod:`runnerd.reconcile.runnerset` states the contract (names, labels, single-use credentials);
these build what it describes. A spec that cannot make a runner pod raises
:class:`runnerd.manifests.pod.RunnerPodError`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from runnerd.api import JSON, RunnerConfig, RunnerPodSpec, RunnerSetSpec, RunnerSpec
from runnerd.manifests.pod import PodOptions, build_runner_pod
from runnerd.reconcile.credentials import (
    ANNOTATION_RUNNER_ID,
    CredentialKind,
    JitConfig,
    Registration,
    RegistrationToken,
    build_credentials_secret,
    owner_reference,
    secret_key,
)
from runnerd.reconcile.runnerset import (
    ANNOTATION_CONSUMED_BY,
    LABEL_RUNNER_STATEFULSET_NAME,
    LABEL_RUNNERSET_NAME,
    LABEL_TEMPLATE_HASH,
    runner_name,
    runnerset_selector,
)

STATEFULSET_SPEC_OWN = frozenset({"replicas", "selector", "template"})
"""StatefulSetSpec fields the controller sets itself; the rest of the RunnerSet's pass through."""
PASS_THROUGH_EXCLUDED = frozenset({"restartPolicy", "ephemeralContainers"})


def _json_names(cls: type[Any]) -> frozenset[str]:
    return frozenset(f.metadata["runnerd.api"].json for f in dataclasses.fields(cls) if f.metadata)


RUNNER_CONFIG_FIELDS = _json_names(RunnerConfig)
RUNNER_POD_FIELDS = _json_names(RunnerPodSpec)


def runner_spec(spec: RunnerSetSpec) -> RunnerSpec:
    """The RunnerSet as the Runner spec the pod builder takes: its runner fields plus the pod
    fields of ``spec.template.spec`` (containers named ``runner``/``docker`` are merged into the
    generated ones, as in a Runner's ``containers``). ``spec.serviceAccountName`` and
    ``spec.workVolumeClaimTemplate`` win over the template's."""
    raw = spec.to_dict()
    data: dict[str, Any] = {k: v for k, v in raw.items() if k in RUNNER_CONFIG_FIELDS}
    pod_spec = spec.template.get("spec") or {}
    data.update({k: copy.deepcopy(v) for k, v in pod_spec.items() if k in RUNNER_POD_FIELDS})
    data.pop("ephemeralContainers", None)
    if spec.service_account_name:
        data["serviceAccountName"] = spec.service_account_name
    if spec.work_volume_claim_template is not None:
        data["workVolumeClaimTemplate"] = spec.work_volume_claim_template.to_dict()
    return RunnerSpec.from_dict(data, ".spec")


def build_runner_statefulset(
    *,
    runnerset: str,
    namespace: str,
    spec: RunnerSetSpec,
    name: str,
    template_hash_: str,
    credentials: CredentialKind,
    runner_id: int | None,
    options: PodOptions,
    owner_references: Sequence[Mapping[str, Any]] = (),
    finalizers: Sequence[str] = (),
) -> JSON:
    """The StatefulSet of one runner (``replicas: 1``) named ``name``.

    Its pod template is :func:`runnerd.manifests.pod.build_runner_pod`'s runner pod for
    ``spec.template`` (env contract, docker modes, GPU setup), with the credential read from the
    Secret ``name`` and ``restartPolicy: Always`` (the only one a StatefulSet accepts). Pod fields
    the runner pod builder does not know (``hostNetwork``, ``schedulerName``, ...) are passed
    through from the template, and so are the StatefulSetSpec fields other than replicas, selector
    and template (``volumeClaimTemplates``, ``serviceName``, ...). Raises
    :class:`runnerd.manifests.pod.RunnerPodError` for a spec that cannot make a runner pod.
    """
    if credentials == "jit" and runner_id is None:
        raise ValueError("a JIT runner's StatefulSet needs its runner id")
    tmeta = spec.template.get("metadata") or {}
    user_selector = runnerset_selector(runnerset, spec)
    own = {LABEL_RUNNERSET_NAME: runnerset, LABEL_TEMPLATE_HASH: template_hash_}
    selector_labels = {
        **(user_selector.get("matchLabels") or {}),
        **own,
        LABEL_RUNNER_STATEFULSET_NAME: name,
    }
    labels = {**(tmeta.get("labels") or {}), **selector_labels}
    pod_template = _pod_template(
        name, namespace, spec, credentials, runner_id, options, labels, dict(tmeta.get("annotations") or {})
    )
    sts_spec: JSON = {
        k: copy.deepcopy(v) for k, v in spec.stateful_set.items() if k not in STATEFULSET_SPEC_OWN
    }
    selector: JSON = {"matchLabels": selector_labels}
    if user_selector.get("matchExpressions"):
        selector["matchExpressions"] = copy.deepcopy(user_selector["matchExpressions"])
    sts_spec = {
        "replicas": 1,
        "selector": selector,
        "template": pod_template,
        **sts_spec,
    }
    meta: JSON = {
        "name": name,
        "namespace": namespace,
        "labels": {**own, LABEL_RUNNER_STATEFULSET_NAME: name},
    }
    if runner_id is not None:
        meta["annotations"] = {ANNOTATION_RUNNER_ID: str(runner_id)}
    if finalizers:
        meta["finalizers"] = list(finalizers)
    if owner_references:
        meta["ownerReferences"] = [copy.deepcopy(dict(o)) for o in owner_references]
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": sts_spec}


def _pod_template(
    name: str,
    namespace: str,
    spec: RunnerSetSpec,
    credentials: CredentialKind,
    runner_id: int | None,
    options: PodOptions,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> JSON:
    """The runner pod of StatefulSet ``name`` as its pod template (credentials from its Secret)."""
    placeholder: Registration = (
        JitConfig("", runner_id or 0) if credentials == "jit" else RegistrationToken("")
    )
    pod = build_runner_pod(
        runner_name(name),
        namespace,
        runner_spec(spec),
        placeholder,
        options,
        labels=dict(labels),
        annotations=dict(annotations),
        credentials_secret=name,
    )
    pod_spec: JSON = pod["spec"]
    pod_spec["restartPolicy"] = "Always"
    for k, v in (spec.template.get("spec") or {}).items():
        if k not in RUNNER_POD_FIELDS and k not in PASS_THROUGH_EXCLUDED and k not in pod_spec:
            pod_spec[k] = copy.deepcopy(v)
    pod_meta: JSON = {"labels": pod["metadata"]["labels"]}
    if pod["metadata"].get("annotations"):
        pod_meta["annotations"] = pod["metadata"]["annotations"]
    return {"metadata": pod_meta, "spec": pod_spec}


def build_runner_secret(
    statefulset: Mapping[str, Any], registration: Registration, *, runnerset: str
) -> JSON:
    """The Secret holding the runner's credential, owned by (and named as) its StatefulSet."""
    meta = statefulset["metadata"]
    return build_credentials_secret(
        meta["name"],
        meta["namespace"],
        registration,
        owner_ref=owner_reference(statefulset, "apps/v1", "StatefulSet"),
        labels={LABEL_RUNNERSET_NAME: runnerset, LABEL_RUNNER_STATEFULSET_NAME: meta["name"]},
    )


def consume_patch(kind: CredentialKind, pod_uid: str, runner_id: int | None) -> JSON:
    """Merge patch that removes a runner Secret's credential and records who used it."""
    annotations = {ANNOTATION_CONSUMED_BY: pod_uid}
    if runner_id is not None:
        annotations[ANNOTATION_RUNNER_ID] = str(runner_id)
    return {"metadata": {"annotations": annotations}, "data": {secret_key(kind): None}}


def claim_ref(claim: Mapping[str, Any]) -> JSON:
    """A PersistentVolume ``claimRef`` that reserves the volume for ``claim`` (pre-binding)."""
    meta = claim["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": meta["namespace"],
        "name": meta["name"],
    }
