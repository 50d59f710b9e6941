"""Cost facts from runner pods: times from the runner container, requests as the scheduler counts
them, repository/workflow/pool/product from annotations, the Runner, labels and the node."""

from __future__ import annotations

import copy
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from runnerd.reconcile.cost import RunnerFacts
from runnerd.reconcile.costfacts import UNKNOWN, cost_facts, node_products, runner_facts, runner_terminated
from tests.unit.reconcile.sizingkit import A100, H100, PRODUCT_LABEL

D = Decimal
T0 = 1_796_000_400
START, FINISH = "2026-11-30T01:00:00Z", "2026-11-30T01:30:00Z"


def pod(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "metadata": {
            "uid": "u1",
            "labels": {"runner-deployment-name": "gpu-runners"},
            "annotations": {"runnerd.dev/repository": "octo/ml", "runnerd.dev/workflow": "train"},
        },
        "spec": {
            "nodeName": "gpu-0",
            "nodeSelector": {PRODUCT_LABEL: H100},
            "containers": [
                {"name": "runner", "resources": {"limits": {"cpu": "16", "nvidia.com/gpu": "4"}}},
                {"name": "docker", "resources": {"requests": {"cpu": "500m"}}},
            ],
        },
        "status": {"containerStatuses": [{"name": "runner", "state": {"running": {"startedAt": START}}}]},
    }
    for path, value in over.items():
        node = base
        *parents, last = path.split("__")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return base


GPU = RunnerFacts("u1", "octo/ml", "train", "gpu-runners", T0, None, D("16.5"), D(4), H100)
WAITING = [{"name": "runner", "state": {"waiting": {}}}]
MIG = [{"name": "runner", "resources": {"requests": {"cpu": "2", "nvidia.com/mig-1g.10gb": "1"}}}]
TERMINATED = {"terminated": {"startedAt": START, "finishedAt": FINISH}}


@pytest.mark.parametrize(
    ("obj", "kwargs", "expected"),
    [
        pytest.param(pod(), {}, GPU, id="running"),
        pytest.param(
            pod(status__containerStatuses__0__state=TERMINATED),
            {},
            replace(GPU, finished_at=T0 + 1800),
            id="finished",
        ),
        pytest.param(pod(status__containerStatuses=WAITING), {}, None, id="waiting"),
        pytest.param(pod(status__containerStatuses=None), {}, None, id="no-status"),
        pytest.param(pod(metadata__uid=None), {}, None, id="no-uid"),
        pytest.param(
            pod(), {"node_products": {"gpu-0": A100}}, replace(GPU, gpu_product=A100), id="node-product-wins"
        ),
        pytest.param(
            pod(metadata__annotations={}),
            {"runner": {"status": {"workflow": {"repository": "octo/x", "name": "ci"}}}},
            replace(GPU, repository="octo/x", workflow="ci"),
            id="from-runner-status",
        ),
        pytest.param(
            pod(metadata__annotations={}),
            {
                "runner": {
                    "metadata": {
                        "annotations": {"runnerd.dev/repository": "octo/sized", "runnerd.dev/workflow": "w"}
                    },
                    "status": {"workflow": {"repository": "octo/x", "name": "ci"}},
                }
            },
            replace(GPU, repository="octo/sized", workflow="w"),
            id="from-sized-runner-annotations",
        ),
        pytest.param(
            pod(),
            {"runner": {"metadata": {"annotations": {"runnerd.dev/repository": "octo/other"}}}},
            GPU,
            id="pod-annotations-win",
        ),
        pytest.param(
            pod(metadata__annotations={}, metadata__labels={}),
            {
                "runner": {
                    "metadata": {"ownerReferences": [{"kind": "RunnerDeployment", "name": "sized-pool"}]},
                    "spec": {"repository": "octo/scope"},
                }
            },
            replace(GPU, repository="octo/scope", workflow=UNKNOWN, pool="sized-pool"),
            id="pool-from-owner-repository-from-scope",
        ),
        pytest.param(
            pod(metadata__annotations={}, metadata__labels={"runnerset-name": "rs"}),
            {},
            replace(GPU, repository=UNKNOWN, workflow=UNKNOWN, pool="rs"),
            id="unknown",
        ),
        pytest.param(
            pod(spec__containers=MIG),
            {},
            replace(GPU, cpu=D(2), gpus=D(1)),
            id="mig-slice-is-a-gpu",
        ),
        pytest.param(
            pod(spec__containers=[{"name": "runner", "resources": {"requests": {"cpu": "2"}}}]),
            {},
            replace(GPU, cpu=D(2), gpus=D(0), gpu_product=""),
            id="cpu-only",
        ),
    ],
)
def test_runner_facts(obj: dict[str, Any], kwargs: dict[str, Any], expected: RunnerFacts | None) -> None:
    assert runner_facts(obj, **kwargs) == expected


def test_finish_before_start_is_clamped() -> None:
    state = {"terminated": {"startedAt": FINISH, "finishedAt": START}}
    facts = runner_facts(pod(status__containerStatuses__0__state=state))
    assert facts is not None
    assert facts.finished_at == facts.started_at


def test_facts_do_not_change_the_pod() -> None:
    obj = pod()
    before = copy.deepcopy(obj)
    runner_facts(obj)
    assert obj == before


def test_node_products() -> None:
    nodes = [
        {"metadata": {"name": "gpu-0", "labels": {PRODUCT_LABEL: H100}}},
        {"metadata": {"name": "cpu-0", "labels": {}}},
        {"metadata": {"labels": {PRODUCT_LABEL: A100}}},
    ]
    assert node_products(nodes) == {"gpu-0": H100}


def test_runner_terminated() -> None:
    assert not runner_terminated(pod())
    assert runner_terminated(pod(status__containerStatuses__0__state=TERMINATED))
    assert not runner_terminated(pod(status__containerStatuses=None))


def test_cost_facts_of_many_pods() -> None:
    running = pod()
    finished = pod(metadata__uid="u2", status__containerStatuses__0__state=TERMINATED)
    waiting = pod(metadata__uid="u3", status__containerStatuses=WAITING)
    runners = {"u2": {"metadata": {"annotations": {"runnerd.dev/repository": "ignored"}}}}
    facts, live = cost_facts(
        [running, finished, waiting],
        lambda p: runners.get(p["metadata"]["uid"]),
        {"gpu-0": A100},
    )
    assert facts == [
        replace(GPU, gpu_product=A100),
        replace(GPU, uid="u2", finished_at=T0 + 1800, gpu_product=A100),
    ]
    assert live == {"u1", "u2", "u3"}  # a pod not started yet still exists
