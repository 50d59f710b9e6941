"""Chart quality: ``helm lint --strict`` and every rendered object (CRDs included) valid against the
Kubernetes 1.36 schemas, runnerd's CRDs and prometheus-operator's kinds (kubeconform, strict: no
unknown field anywhere), for a matrix of values; the GPU pool's RunnerDeployment and autoscaler
(docs/gpu.md) against the CRDs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.chart import tools

pytestmark = [pytest.mark.timeout(60)]

PAT = {"authSecret": {"create": True, "github_token": "ghp_example"}}
APP_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEexample\n-----END RSA PRIVATE KEY-----\n"
MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "pat": PAT,
    "app": {
        "authSecret": {
            "create": True,
            "github_app_id": 12345,
            "github_app_installation_id": "67890",
            "github_app_private_key": APP_KEY,
        }
    },
    "webhook-server-and-monitoring": {
        **PAT,
        "replicaCount": 2,
        "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
        "githubWebhookServer": {
            "enabled": True,
            "replicaCount": 2,
            "secret": {"enabled": True, "create": True, "github_webhook_secret_token": "s3cret"},
            "ingress": {
                "enabled": True,
                "ingressClassName": "nginx",
                "hosts": [{"host": "hooks.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
                "tls": [{"hosts": ["hooks.example.com"], "secretName": "hooks-tls"}],
            },
            "podDisruptionBudget": {"enabled": True},
        },
        "metrics": {
            "serviceMonitor": {"enable": True},
            "serviceMonitorLabels": {"release": "kube-prometheus-stack"},
            "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "CI"}},
        },
    },
    "one-namespace": {**PAT, "scope": {"singleNamespace": True, "watchNamespace": "ci"}},
    "gpu-pool": {
        **PAT,
        "extraArgs": ["--common-runner-labels=linux"],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    },
}
GPU_HRA = """
apiVersion: actions.summerwind.dev/v1alpha1
kind: HorizontalRunnerAutoscaler
metadata: {name: gpu-runner-deployment, namespace: actions-runner-system}
spec:
  scaleTargetRef: {name: gpu-runner-deployment}
  minReplicas: 0
  maxReplicas: 4
  scaleUpTriggers:
    - githubEvent: {workflowJob: {}}
      duration: 30m
"""


def gpu_pool_manifests() -> str:
    """The GPU RunnerDeployment of docs/gpu.md and an autoscaler that scales it from zero."""
    doc = (tools.REPO / "docs" / "gpu.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", doc, re.S) if "kind: RunnerDeployment" in b]
    assert blocks, "docs/gpu.md has no RunnerDeployment example"
    return "---\n".join([blocks[0], GPU_HRA])


def kubeconform(tmp: Path, manifests: str) -> str:
    path = tmp / "manifests.yaml"
    path.write_text(manifests)
    location = f"{tools.schema_dir()}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"
    return tools.run(
        [tools.tool_dir() / "kubeconform", "-strict", "-summary", "-schema-location", location, path],
        cwd=tmp,
    )


@pytest.mark.parametrize("name", list(MATRIX))
def test_lint_strict_and_every_object_valid_for_kubernetes_1_36(tmp_path: Path, name: str) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(MATRIX[name]))
    out = tools.run([tools.helm(), "lint", "--strict", tools.CHART, "-f", values], cwd=tmp_path)
    assert "0 chart(s) failed" in out
    text = tools.run(
        [tools.helm(), "template", "rel", tools.CHART, "-n", "arc", "-f", values, "--include-crds"],
        cwd=tmp_path,
    )
    if name == "gpu-pool":
        text += "\n---\n" + gpu_pool_manifests()
    count = len([d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d])  # the CRDs are big
    summary = kubeconform(tmp_path, text)
    assert f"{count} resources found" in summary
    assert f"Valid: {count}, Invalid: 0, Errors: 0, Skipped: 0" in summary


@pytest.mark.parametrize(
    ("manifest", "complaint"),
    [
        (  # a misspelt field of a Kubernetes kind
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
            "spec: {ports: [{port: 80, targetPrt: 8080}]}\n",
            "additional properties 'targetPrt' not allowed",
        ),
        (  # ... of a runnerd CRD
            "apiVersion: actions.summerwind.dev/v1alpha1\nkind: RunnerDeployment\nmetadata: {name: r}\n"
            "spec: {template: {spec: {repository: a/b, lables: [gpu]}}}\n",
            "additional properties 'lables' not allowed",
        ),
        (  # ... of a PrometheusRule
            "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: p}\n"
            "spec: {groups: [{name: g, rules: [{alert: A, expr: up, fro: 5m}]}]}\n",
            "additional properties 'fro' not allowed",
        ),
        (  # a wrong type
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
            "spec: {replicas: two, selector: {}, template: {spec: {containers: []}}}\n",
            "/spec/replicas",
        ),
    ],
)
def test_the_schemas_catch_mistakes(tmp_path: Path, manifest: str, complaint: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(complaint)):
        kubeconform(tmp_path, manifest)
