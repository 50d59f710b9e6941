"""Per-job GPU sizing in ``runnerd-dev demo`` (docs/demo.md, docs/gpu.md).

What the demo adds when the controller runs with ``--enable-sizing``:

- a pool with no replicas of its own, :data:`SIZED_RD` (organization runners labelled
  ``[self-hosted, linux]``), and a ``RunnerSizingPolicy`` naming it (:func:`manifests`): up to 8
  GPUs of the H100 or A100 product per job, first in first out, no pod ever ``Pending``;
- two sized jobs at the start of the built-in workloads (:func:`entries`): two
  ``[self-hosted, linux, gpu=4, gpu-type=a100]`` jobs on the fleet's one 4-GPU A100 node, so the
  first is placed and the second waits for it, with admission's reason;
- :class:`SizedReport`: one line each time a sized job's state or reason changes, read from its
  Runner (``runnerd.dev/admission``/``runnerd.dev/admitted-node`` annotations, ``status``).

The dev cluster never imports the product: the label and annotation names below are the sized-job
contract's (docs/gpu-sizing.md, "The sized job's Runner"), spelled out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ghsim.model import TraceEntry

SIZED_RD = "sized-gpu-runners"
SIZING_POLICY = "gpu-sizing"
SIZED_LABELS = ("self-hosted", "linux")
A100 = "NVIDIA-A100-SXM4-80GB"
H100 = "NVIDIA-H100-80GB-HBM3"
SIZED_JOB_LABEL = "runnerd.dev/sized-job"
ADMISSION_ANNOTATION = "runnerd.dev/admission"
ADMITTED_NODE_ANNOTATION = "runnerd.dev/admitted-node"
FINETUNE = (*SIZED_LABELS, "gpu=4", "gpu-type=a100")


def manifests(namespace: str, org: str) -> list[dict[str, Any]]:
    """The sized pool and its policy."""
    pool = {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "RunnerDeployment",
        "metadata": {"name": SIZED_RD, "namespace": namespace},
        "spec": {"replicas": 0, "template": {"spec": {"organization": org, "labels": list(SIZED_LABELS)}}},
    }
    policy = {
        "apiVersion": "runnerd.dev/v1alpha1",
        "kind": "RunnerSizingPolicy",
        "metadata": {"name": SIZING_POLICY, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"name": SIZED_RD},
            "max": {"gpu": 8, "cpu": "16", "memory": "64Gi"},
            "gpuProducts": [
                {"name": "h100", "nodeLabelValue": H100},
                {"name": "a100", "nodeLabelValue": A100},
            ],
            "admission": {"order": "Fifo", "maxPending": 0},
        },
    }
    return [pool, policy]


def entries(repo: str, scale: float = 1.0) -> list[TraceEntry]:
    """Two A100 fine-tuning jobs of 4 GPUs a second apart: the A100 node (4 GPUs) runs one at a time."""
    return [
        TraceEntry(1.5 * scale, repo, FINETUNE, 15.0 * scale, workflow="finetune", name="finetune (1)"),
        TraceEntry(2.5 * scale, repo, FINETUNE, 5.0 * scale, workflow="finetune", name="finetune (2)"),
    ]


class SizedReport:
    """The lines to print about sized jobs: each job's state (placed, waiting, refused) and reason,
    once per change."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[str, str]] = {}

    def lines(self, runners: Iterable[Mapping[str, Any]]) -> list[str]:
        out = []
        for runner in runners:
            meta = runner.get("metadata") or {}
            job = (meta.get("labels") or {}).get(SIZED_JOB_LABEL)
            if job is None or meta.get("deletionTimestamp"):
                continue
            annotations = meta.get("annotations") or {}
            status = runner.get("status") or {}
            if ADMISSION_ANNOTATION in annotations:
                node = annotations.get(ADMITTED_NODE_ANNOTATION)
                state = (
                    "placed",
                    f"placed on {node}" if node else f"admitted ({annotations[ADMISSION_ANNOTATION]})",
                )
            elif status.get("phase") in ("Waiting", "Refused"):
                phase = str(status["phase"]).lower()
                state = (phase, f"{phase}: {status.get('message') or ''}")
            else:
                continue
            if self.seen.get(job) != state:
                self.seen[job] = state
                labels = (runner.get("spec") or {}).get("labels") or ()
                size = " ".join(label for label in labels if "=" in label)  # the job's sizing labels
                out.append(f"runnerd demo: sized job {job} ({size}) {state[1]}")
        return out
