"""Shared inputs and lookups for the runner pod tests (unit and integration)."""

from __future__ import annotations

import copy
from typing import Any

from runnerd.api import RunnerSpec
from runnerd.manifests.pod import PodOptions, build_runner_pod
from runnerd.reconcile.credentials import JitConfig, Registration, RegistrationToken

TOKEN = RegistrationToken("AREGTOKEN")
JIT = JitConfig(encoded_jit_config="eyJqaXQiOiJjb25maWcifQ==", runner_id=42)
OPTIONS = PodOptions(controller_version="1.2.3")

# The article's RunnerDeployment template (shared/seed/arc-mlops-blog.txt), repository-scoped ...
ARTICLE_REPO: dict[str, Any] = {"repository": "octo/mlops", "labels": ["self-hosted", "arc-runner"]}
# ... organization-scoped ("You can specify not only repository but also organization") ...
ARTICLE_ORG: dict[str, Any] = {"organization": "octo", "labels": ["self-hosted", "arc-runner"]}
# ... and its troubleshooting section: dockerd inside the runner container (the GPU setup).
ARTICLE_DIND: dict[str, Any] = {
    **ARTICLE_REPO,
    "image": "summerwind/actions-runner-dind:latest",
    "dockerdWithinRunnerContainer": True,
}
KUBERNETES_MODE: dict[str, Any] = {
    **ARTICLE_REPO,
    "containerMode": "kubernetes",
    "workVolumeClaimTemplate": {
        "storageClassName": "standard",
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "10Gi"}},
    },
    "serviceAccountName": "runner-hooks",
}
NO_DOCKER: dict[str, Any] = {**ARTICLE_REPO, "dockerEnabled": False}
GPU_LIMIT: dict[str, Any] = {"resources": {"limits": {"nvidia.com/gpu": 1}}}

MODES: dict[str, dict[str, Any]] = {
    "dind-sidecar": ARTICLE_REPO,
    "dind-in-runner": ARTICLE_DIND,
    "no-docker": NO_DOCKER,
    "kubernetes": KUBERNETES_MODE,
}


def spec(raw: dict[str, Any], **extra: Any) -> RunnerSpec:
    return RunnerSpec.from_dict({**copy.deepcopy(raw), **extra})


def pod(
    raw: dict[str, Any],
    registration: Registration = TOKEN,
    options: PodOptions = OPTIONS,
    name: str = "rd-abcde-fghij",
    namespace: str = "ns",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owner_references: list[dict[str, Any]] | None = None,
    **spec_fields: Any,
) -> dict[str, Any]:
    """The pod for ``raw`` plus ``spec_fields`` (RunnerSpec JSON names)."""
    return build_runner_pod(
        name,
        namespace,
        spec(raw, **spec_fields),
        registration,
        options,
        labels=labels,
        annotations=annotations,
        owner_references=owner_references or (),
    )


def container(p: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in p["spec"]["containers"] if c["name"] == name]
    assert len(found) == 1, (
        f"expected one container {name!r}, got {[c['name'] for c in p['spec']['containers']]}"
    )
    return found[0]


def container_names(p: dict[str, Any]) -> list[str]:
    return [c["name"] for c in p["spec"]["containers"]]


def env(c: dict[str, Any]) -> dict[str, Any]:
    """name -> value (or the valueFrom dict); fails on duplicate names."""
    names = [e["name"] for e in c.get("env", [])]
    assert len(names) == len(set(names)), f"duplicate env names in {c['name']}: {names}"
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def volumes(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    vols = p["spec"].get("volumes", [])
    names = [v["name"] for v in vols]
    assert len(names) == len(set(names)), f"duplicate volumes: {names}"
    return {v["name"]: v for v in vols}


def mounts(c: dict[str, Any]) -> dict[str, str]:
    """mountPath -> volume name; fails on duplicate mount paths."""
    paths = [m["mountPath"] for m in c.get("volumeMounts", [])]
    assert len(paths) == len(set(paths)), f"duplicate mount paths in {c['name']}: {paths}"
    return {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}


def gpu_tolerations(p: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in p["spec"].get("tolerations", []) if t.get("key") == "nvidia.com/gpu"]


# --- the examples in docs/runner-pods.md (test_pod_docs.py checks the document against these) ---

DOCS = "docs/runner-pods.md"
EXAMPLE_OPTIONS = PodOptions(controller_version="0.1.0")
EXAMPLE_REPOSITORY = "your-name/your-repo"


def example_pods() -> dict[str, dict[str, Any]]:
    """name -> the pod the controller would create for the documented RunnerDeployment."""

    def build(rd_name: str, template: dict[str, Any], runner: str) -> dict[str, Any]:
        return build_runner_pod(
            runner,
            "actions-runner-system",
            spec(template),
            RegistrationToken("<registration token>"),
            EXAMPLE_OPTIONS,
            labels={"runner-deployment-name": rd_name, "runner-template-hash": "6d4f9c8b7"},
        )

    article = {"repository": EXAMPLE_REPOSITORY, "labels": ["self-hosted", "arc-runner"]}
    gpu = {
        "repository": EXAMPLE_REPOSITORY,
        "labels": ["self-hosted", "arc-runner", "gpu"],
        "resources": {"limits": {"nvidia.com/gpu": 1}},
    }
    return {
        "article": build("example-runner-deployment", article, "example-runner-deployment-x7k2p-9qv4d"),
        "gpu": build("gpu-runner-deployment", gpu, "gpu-runner-deployment-m2n8q-4ts7w"),
        "gpu-dind": build(
            "gpu-dind-runner-deployment",
            {**gpu, "image": "summerwind/actions-runner-dind:latest", "dockerdWithinRunnerContainer": True},
            "gpu-dind-runner-deployment-c5r9x-2bz6k",
        ),
    }


def to_yaml(value: Any) -> str:
    """YAML with multi-line strings (the shell scripts) as literal blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    Dumper.add_representer(str, text)
    return str(yaml.dump(value, Dumper=Dumper, sort_keys=False, width=120))


if __name__ == "__main__":  # print the documented examples
    for name, manifest in example_pods().items():
        print(f"<!-- example: {name} -->\n```yaml\n{to_yaml(manifest)}```\n")
