"""The integration tests' shared factories (their fixtures are in ``conftest.py``): the CRDs, the
simulated GitHub, one controller process in-process, and the pod agent that plays the runners of
kwok pods.

- :func:`install_crds`: the chart's CRDs applied (client-side, so each must fit the last-applied
  annotation) and Established (:func:`wait_established`).
- :func:`seed`: the organization and repository the tests use, and an admin PAT.
- :func:`controller_process`: what ``runnerd controller`` runs (clients, informers, controllers,
  the manager) against a cluster and the simulator; stopped and closed on exit.
- :func:`webhook_controller`: :func:`controller_process` with per-job sizing's safety-net poll made
  quick, its webhook server on 127.0.0.1 and a ghsim repository hook posting to it.
- :func:`pod_agent`: ghsim's pod agent (the project's one) over the cluster, for the runner pods of
  one namespace.
The one wait helper is :func:`devcluster.wait.wait_until`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from devcluster.cluster import Cluster
from ghsim import Simulator
from ghsim.entities import Scope as SimScope
from ghsim.podagent import PodAgent, connect, container_env, required_refs
from runnerd.api import RESOURCES, RunnerSpec
from runnerd.api.sizing import RunnerSizingPolicySpec
from runnerd.controller.admission import RUNNER_SIZING_POLICIES
from runnerd.controller.app import build
from runnerd.controller.common import RUNNER_DEPLOYMENTS, ControllerOptions
from runnerd.controller.orphans import resolve_installation_label
from runnerd.controller.process import Controllers
from runnerd.github import GitHubClient, GitHubConfig, PersonalAccessToken
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import CONFIGMAPS, SECRETS
from runnerd.manifests.pod import PodOptions
from runnerd.manifests.sizedpod import sized_runner_spec
from runnerd.reconcile.sizedjob import (
    QUEUED_AT_ANNOTATION,
    REPOSITORY_ANNOTATION,
    SIZE_ANNOTATION,
    SIZED_JOB_LABEL,
    SIZING_POLICY_LABEL,
    WORKFLOW_ANNOTATION,
)
from runnerd.reconcile.sizing import PoolSizing, SizeRequest, parse_size
from runnerd.runtime import NotFound
from runnerd.web.server import Address, Servers

ORG = "octo-org"
REPO = f"{ORG}/app"
RUNNER_IMAGE = "ghcr.io/runnerd/runner:test"
RUNNER_POD_SELECTOR = "actions-runner"
CRD_DIR = Path(__file__).resolve().parents[2] / "charts" / "actions-runner-controller" / "crds"
ARTICLE_RD_AS_WRITTEN = """
apiVersion: actions.summerwind.dev/v1alpha1
kind: RunnerDeployment
metadata:
  name: example-runner-deployment
  namespace: actions-runner-system
spec:
  replicas: 1
  template:
    spec:
      repository: <YOUR_NAME>/<YOUR_REPO_NAME>
      labels:
        - self-hosted
        - arc-runner
"""
"""The article's RunnerDeployment, placeholders and all (see :func:`article`)."""

ARTICLE_HRA_AS_WRITTEN = """
apiVersion: actions.summerwind.dev/v1alpha1
kind: HorizontalRunnerAutoscaler
metadata:
  name: example-hra
  namespace: actions-runner-system
spec:
  scaleTargetRef:
    name: example-runner-deployment
  minReplicas: 0
  maxReplicas: 5
  metrics:
  - type: TotalNumberOfQueuedAndInProgressWorkflowRuns
    repositoryNames: ["<YOUR_NAME>/<YOUR_REPO_NAME>"]
"""
"""The article's HorizontalRunnerAutoscaler (its second version, with a metric), as written."""


def article(text: str, namespace: str = "actions-runner-system") -> str:
    """The article's manifest with only its placeholder (:data:`REPO`) and namespace filled in."""
    return text.replace("<YOUR_NAME>/<YOUR_REPO_NAME>", REPO).replace("actions-runner-system", namespace)


ARTICLE_RD = article(ARTICLE_RD_AS_WRITTEN)
ARTICLE_HRA = article(ARTICLE_HRA_AS_WRITTEN)
CRD_NAMES = [f"{r.PLURAL}.actions.summerwind.dev" for r in RESOURCES]


def install_crds(cluster: Cluster) -> list[str]:
    """Apply the chart's CRDs and wait until they are Established; their names."""
    cluster.kubectl("apply", "-f", str(CRD_DIR))
    cluster.wait_established(CRD_NAMES)
    return CRD_NAMES


def wait_established(cluster: Cluster, names: list[str], within: float = 60.0) -> None:
    """The named CRDs are Established (see :meth:`devcluster.cluster.Cluster.wait_established`)."""
    cluster.wait_established(names, within)


def seed(sim: Simulator) -> str:
    """The organization :data:`ORG` with the repository :data:`REPO`; an admin PAT's token."""
    sim.world.create_org(ORG)
    sim.world.create_repo(ORG, REPO.split("/")[1])
    return sim.world.create_pat("admin").token


@contextlib.asynccontextmanager
async def controller_process(
    cluster: Cluster,
    sim: Simulator,
    token: str,
    namespace: str,
    *,
    start: bool = True,
    runner_image: str = RUNNER_IMAGE,
    installation_label: bool = False,
    configure: Callable[[Controllers], None] | None = None,
    github: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[Controllers]:
    """One controller process (its own clients, informers and in-memory state) watching
    ``namespace``, with ``token`` as its PAT. ``options`` are :class:`ControllerOptions` fields;
    ``github`` extra :class:`GitHubClient` arguments; ``runner_image`` the runner pods' image;
    ``installation_label`` resolves the installation's label as ``runnerd controller`` does;
    ``configure`` runs before the manager starts. ``start=False``: the caller runs
    ``controllers.manager`` itself."""
    kube = await KubeClient.connect(str(cluster.kubeconfig))
    client = GitHubClient(
        PersonalAccessToken(token),
        config=GitHubConfig(api_url=sim.base_url),
        trust_env=False,
        **(github or {}),
    )
    label = await resolve_installation_label(kube, "", namespace) if installation_label else ""
    pod = PodOptions(runner_image=runner_image, github_url=sim.base_url + "/", installation_label=label)
    controllers = build(
        kube=kube, github=client, options=ControllerOptions(namespace=namespace, pod=pod, **options)
    )
    if configure is not None:
        configure(controllers)
    task = asyncio.create_task(controllers.manager.run(), name=f"manager-{namespace}") if start else None
    try:
        yield controllers
    finally:
        if task is not None:
            controllers.manager.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
        if controllers.autoscaling is not None:
            await controllers.autoscaling.close()
        await controllers.clients.close()
        await client.close()
        await kube.close()


@contextlib.asynccontextmanager
async def webhook_controller(
    cluster: Cluster,
    sim: Simulator,
    token: str,
    namespace: str,
    *,
    secret: str,
    hook: bool = True,
    configure: Callable[[Controllers], None] | None = None,
    **options: Any,
) -> AsyncIterator[Controllers]:
    """:func:`controller_process` with ``--enable-sizing``, the safety-net poll every 2 s (no call
    ceiling), its webhook server on 127.0.0.1 and, with ``hook``, a ghsim hook on :data:`REPO`
    posting ``workflow_job`` deliveries signed with ``secret``; ``configure`` runs after that."""

    def setup(controllers: Controllers) -> None:
        autoscaling = controllers.autoscaling
        assert autoscaling is not None
        autoscaling.options.poll_bound = 2.0
        autoscaling.options.poll_max_calls_per_hour = 100_000
        if configure is not None:
            configure(controllers)

    options = {"enable_sizing": True, "sync_period": 5.0, **options}
    async with (
        controller_process(cluster, sim, token, namespace, configure=setup, **options) as controllers,
        Servers() as servers,
    ):
        autoscaling = controllers.autoscaling
        assert autoscaling is not None
        host, port = await servers.start(
            "webhook", autoscaling.webhook_server(secret).app(), Address("127.0.0.1", 0)
        )
        if hook:
            url = f"http://{host}:{port}/webhook"
            sim.world.create_hook(url, scope=SimScope("repo", REPO), secret=secret)
        yield controllers


def pod_agent(cluster: Cluster, sim: Simulator, namespace: str, **options: Any) -> Any:
    """ghsim's pod agent for the runner pods of ``namespace`` (an async context manager yielding
    the :class:`PodAgent`); ``options`` are the agent's."""
    settings: dict[str, Any] = {"label_selector": RUNNER_POD_SELECTOR, "poll_wait": 1.0, **options}
    return connect(str(cluster.kubeconfig), sim.base_url, namespace=namespace, **settings)


def exits_by_name(agent: PodAgent) -> dict[str, int]:
    """The exit codes of the runner processes the agent played, by pod name."""
    return {key.name: code for key, code in agent.exits.items()}


async def resolve_env(
    kube: KubeClient, pod: Mapping[str, Any], container: str = "runner"
) -> dict[str, str] | None:
    """The container's environment as the kubelet resolves it when it creates the container
    (literal values, Secret and ConfigMap keys read now, field references); ``None`` when a
    required key is missing (the kubelet's CreateContainerConfigError)."""

    async def read(kind: str, namespace: str, name: str, key: str) -> str | None:
        try:
            obj = await kube.get(SECRETS if kind == "Secret" else CONFIGMAPS, name, namespace=namespace)
        except NotFound:
            return None
        value = (obj.get("data") or {}).get(key)
        if value is None or kind != "Secret":
            return value if value is None else str(value)
        return base64.b64decode(value).decode()

    env = await container_env(pod, read, container)
    return env if required_refs(pod, container) <= env.keys() else None


# --- sized jobs (issue #16): a pool, its policy and the sized Runners the intake makes ---------------

SIZED_POOL = "gpu-runners"
SIZED_POLICY = "gpu"


async def sizing_pool(kube: KubeClient, namespace: str, policy: Mapping[str, Any]) -> dict[str, Any]:
    """A RunnerDeployment with no replicas of its own (the pool sized Runners belong to) and the
    RunnerSizingPolicy ``policy`` (its spec, less ``scaleTargetRef``) naming it; the pool object."""
    rd = {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "RunnerDeployment",
        "metadata": {"name": SIZED_POOL, "namespace": namespace},
        "spec": {"replicas": 0, "template": {"spec": {"repository": REPO}}},
    }
    pool = await kube.create(RUNNER_DEPLOYMENTS, rd, namespace=namespace)
    body = {
        "apiVersion": "runnerd.dev/v1alpha1",
        "kind": "RunnerSizingPolicy",
        "metadata": {"name": SIZED_POLICY, "namespace": namespace},
        "spec": {"scaleTargetRef": {"kind": "RunnerDeployment", "name": SIZED_POOL}, **policy},
    }
    await kube.create(RUNNER_SIZING_POLICIES, body, namespace=namespace)
    return pool


def sized_runner(
    pool: Mapping[str, Any],
    policy: Mapping[str, Any],
    job_id: int,
    labels: list[str],
    queued_at: float,
    template: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A sized job's waiting Runner as the intake makes it (the sized-job contract): named
    ``<pool>-job-<id>``, owned by the pool, the sized-job labels and annotations, the pool's template
    with the job's size applied, exactly the job's labels, ephemeral."""
    sizing = PoolSizing.from_spec(
        RunnerSizingPolicySpec.from_dict({"scaleTargetRef": {"name": SIZED_POOL}, **policy})
    )
    size = parse_size(labels, sizing)
    assert isinstance(size, SizeRequest), size
    base = RunnerSpec.from_dict(dict(template or {"repository": REPO, "dockerEnabled": False}))
    spec = sized_runner_spec(base, labels, size, sizing).to_dict()
    meta = pool["metadata"]
    when = dt.datetime.fromtimestamp(queued_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "Runner",
        "metadata": {
            "name": f"{meta['name']}-job-{job_id}",
            "namespace": meta["namespace"],
            "labels": {SIZED_JOB_LABEL: str(job_id), SIZING_POLICY_LABEL: SIZED_POLICY},
            "annotations": {
                QUEUED_AT_ANNOTATION: when,
                REPOSITORY_ANNOTATION: REPO,
                WORKFLOW_ANNOTATION: "train",
                SIZE_ANNOTATION: size.describe(),
            },
            "ownerReferences": [
                {
                    "apiVersion": "actions.summerwind.dev/v1alpha1",
                    "kind": "RunnerDeployment",
                    "name": meta["name"],
                    "uid": meta["uid"],
                }
            ],
        },
        "spec": {**spec, "ephemeral": True},
    }
