"""The controller end to end: real API server, the article's manifests, ghsim as GitHub, virtual runners."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from ghsim import JobSpec, Simulator
from ghsim.podagent import PodAgent
from ghsim.state import generate_app_key
from runnerd.controller.common import (
    HORIZONTAL_RUNNER_AUTOSCALERS,
    RUNNER_DEPLOYMENTS,
    RUNNER_REPLICA_SETS,
    RUNNERS,
)
from runnerd.controller.process import Controllers
from runnerd.github import GitHubClient, PersonalAccessToken
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import PODS, SECRETS
from runnerd.runtime import Informer
from tests.integration.support import ARTICLE_RD, REPO, controller_process, exits_by_name, pod_agent, seed

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


@dataclass
class Env:
    sim: Simulator
    kube: KubeClient
    github: GitHubClient
    controllers: Controllers
    agent: PodAgent
    namespace: str
    cluster: Cluster

    async def apply(self, manifest: dict[str, Any]) -> None:
        manifest["metadata"]["namespace"] = self.namespace
        await self.kube.create(RUNNER_DEPLOYMENTS, manifest, namespace=self.namespace)

    async def runners(self) -> list[dict[str, Any]]:
        return (await self.kube.list(RUNNERS, namespace=self.namespace)).items

    def github_runners(self) -> list[Any]:
        return list(self.sim.world.runners.values())


@pytest.fixture
async def env(
    cluster: Cluster, crds: list[str], namespace: str, request: pytest.FixtureRequest
) -> AsyncIterator[Env]:
    async with Simulator(tick_interval=0.05) as sim:
        pat = seed(sim)
        marker = request.node.get_closest_marker("github_token")
        if marker is not None:
            pat = marker.args[0]
        async with (
            controller_process(
                cluster,
                sim,
                pat,
                namespace,
                installation_label=True,
                sync_period=5.0,
                registering_max_age=0.5,
                drain_grace=2.0,
                orphan_sweep_period=1.0,
                orphan_grace=1.0,
                credentials_refresh=1.0,
            ) as controllers,
            pod_agent(cluster, sim, namespace) as agent,
        ):
            yield Env(sim, controllers.kube, controllers.github, controllers, agent, namespace, cluster)


@pytest.mark.parametrize("scope", ["repository", "organization"])
async def test_article_runner_deployment_registers_and_runs_a_job(env: Env, scope: str) -> None:
    manifest = yaml.safe_load(ARTICLE_RD)
    if scope == "organization":
        del manifest["spec"]["template"]["spec"]["repository"]
        manifest["spec"]["template"]["spec"]["organization"] = "octo-org"
    await env.apply(manifest)

    def online() -> list[Any]:
        return [r for r in env.github_runners() if env.sim.world.runner_online(r)]

    runners = await wait_until("a runner online in GitHub", online)
    labels = {label.name for label in runners[0].labels}
    assert {"self-hosted", "arc-runner"} <= labels

    run = env.sim.world.enqueue_run(
        env.sim.world.repo_by_name(REPO), [JobSpec(("self-hosted", "arc-runner"), "test-job", 0.5)]
    )
    job_id = run.job_ids[0]
    job = await wait_until(
        "the job to complete", lambda: (j := env.sim.world.jobs[job_id]).status == "completed" and j
    )
    assert job.conclusion == "success"
    # the ephemeral runner is replaced (replicas: 1) and the finished one is gone from GitHub
    await wait_until(
        "a fresh runner online",
        lambda: [r for r in online() if r.name != job.runner_name],
    )
    assert job.runner_name not in {r.name for r in env.github_runners()}
    pods = (await env.kube.list(PODS, namespace=env.namespace)).items
    assert job.runner_name not in {p["metadata"]["name"] for p in pods}


def _removal_calls(env: Env) -> int:
    """GitHub calls that drain or remove a runner (label PUTs, DELETEs), by ghsim's count."""
    return sum(
        n
        for op, n in env.sim.core.stats.by_endpoint.items()
        if "delete-self-hosted-runner" in op or "set-custom-labels-for-self-hosted-runner" in op
    )


async def test_a_finished_ephemeral_runner_is_removed_without_a_github_call(env: Env) -> None:
    """GitHub removed the runner after its job; its process is still ending when the replica set
    scales it away: neither a drain nor a deregistration is sent (both would be answered 404)."""
    env.agent.exit_delay = 120.0  # the pod stays Running well past the removal
    manifest = yaml.safe_load(ARTICLE_RD)
    await env.apply(manifest)
    await wait_until(
        "a runner online", lambda: [r for r in env.github_runners() if env.sim.world.runner_online(r)]
    )
    run = env.sim.world.enqueue_run(
        env.sim.world.repo_by_name(REPO), [JobSpec(("self-hosted", "arc-runner"), "test-job", 0.5)]
    )
    job = await wait_until(
        "the job to complete", lambda: (j := env.sim.world.jobs[run.job_ids[0]]).status == "completed" and j
    )
    assert job.runner_name is not None
    assert job.runner_id is not None
    await wait_until("GitHub to remove the ephemeral runner", lambda: not env.github_runners())
    before = _removal_calls(env)
    # the `completed` webhook, as the sink passes it on (see tests/unit/controller/test_reservations.py)
    env.controllers.directory.hint_finished(job.runner_name, job.runner_id)
    await scale(env, "example-runner-deployment", 0)

    async def removed() -> bool:
        pods = (await env.kube.list(PODS, namespace=env.namespace)).items
        return not await env.runners() and not pods

    await wait_until("the Runner and its pod removed", removed)
    assert exits_by_name(env.agent).get(job.runner_name) == 0  # its process had ended its job...
    assert _removal_calls(env) == before  # ...and no call was made for a runner GitHub had removed


def jobs(env: Env, run: Any) -> list[Any]:
    return [env.sim.world.jobs[j] for j in run.job_ids]


async def scale(env: Env, name: str, replicas: int) -> None:
    await env.kube.patch(RUNNER_DEPLOYMENTS, name, {"spec": {"replicas": replicas}}, namespace=env.namespace)


async def test_scale_zero_to_five_to_zero_while_jobs_run(env: Env) -> None:
    manifest = yaml.safe_load(ARTICLE_RD)
    manifest["spec"]["replicas"] = 0
    await env.apply(manifest)
    world = env.sim.world
    run = world.enqueue_run(
        world.repo_by_name(REPO), [JobSpec(("self-hosted", "arc-runner"), f"job-{i}", 4.0) for i in range(5)]
    )
    await scale(env, "example-runner-deployment", 5)
    await wait_until("all 5 jobs running", lambda: all(j.status == "in_progress" for j in jobs(env, run)))
    # scale to zero while every runner is busy: nothing may be killed
    await scale(env, "example-runner-deployment", 0)
    done = await wait_until(
        "all jobs to complete",
        lambda: all(j.status == "completed" for j in jobs(env, run)) and jobs(env, run),
    )
    assert [j.conclusion for j in done] == ["success"] * 5
    await wait_until("no runner left in GitHub", lambda: not env.github_runners())
    await wait_until("no Runner objects left", lambda: _no_runners(env))
    assert len({j.runner_name for j in done}) == 5


async def test_scale_down_trusts_githubs_422_not_the_busy_flag(env: Env) -> None:
    """GitHub's busy flag lags (as it does for real); the DELETE's 422 still protects the job."""
    env.sim.core.config.busy_flag_delay_s = 3600.0
    manifest = yaml.safe_load(ARTICLE_RD)
    manifest["spec"]["replicas"] = 2
    await env.apply(manifest)
    world = env.sim.world
    await wait_until(
        "2 runners online", lambda: len([r for r in env.github_runners() if world.runner_online(r)]) == 2
    )
    run = world.enqueue_run(world.repo_by_name(REPO), [JobSpec(("self-hosted", "arc-runner"), "job", 3.0)])
    await wait_until("the job running", lambda: jobs(env, run)[0].status == "in_progress")
    await scale(env, "example-runner-deployment", 0)
    job = await wait_until(
        "the job to complete", lambda: (j := jobs(env, run)[0]).status == "completed" and j
    )
    assert job.conclusion == "success"
    # the listing said idle the whole time; the runner's own signal kept it
    await wait_until("no runner left in GitHub", lambda: not env.github_runners())


async def _no_runners(env: Env) -> bool:
    return not await env.runners()


async def test_template_change_rolls_runners_and_running_jobs_finish(env: Env) -> None:
    manifest = yaml.safe_load(ARTICLE_RD)
    manifest["spec"]["replicas"] = 2
    await env.apply(manifest)
    world = env.sim.world
    online = lambda: [r for r in env.github_runners() if world.runner_online(r)]  # noqa: E731
    await wait_until("2 runners online", lambda: len(online()) == 2)
    run = world.enqueue_run(world.repo_by_name(REPO), [JobSpec(("self-hosted", "arc-runner"), "long", 5.0)])
    busy_job = await wait_until(
        "the job running", lambda: (j := jobs(env, run)[0]).status == "in_progress" and j
    )
    old_names = {r.name for r in env.github_runners()}

    await env.kube.patch(
        RUNNER_DEPLOYMENTS,
        "example-runner-deployment",
        {"spec": {"template": {"spec": {"labels": ["self-hosted", "arc-runner", "v2"]}}}},
        namespace=env.namespace,
    )

    def rolled() -> bool:
        runners = online()
        return len(runners) == 2 and all({"v2"} <= {lab.name for lab in r.labels} for r in runners)

    await wait_until("2 runners of the new template online", rolled)
    job = await wait_until(
        "the running job to finish", lambda: (j := jobs(env, run)[0]).status == "completed" and j
    )
    assert job.conclusion == "success"
    assert busy_job.runner_name in old_names
    await wait_until(
        "old runners gone from GitHub", lambda: not (old_names & {r.name for r in env.github_runners()})
    )
    rs = (await env.kube.list(RUNNER_REPLICA_SETS, namespace=env.namespace)).items
    await wait_until("one replica set left", lambda: _replica_sets(env, 1))
    assert rs


async def _replica_sets(env: Env, n: int) -> bool:
    return len((await env.kube.list(RUNNER_REPLICA_SETS, namespace=env.namespace)).items) == n


GPU_RD = """
apiVersion: actions.summerwind.dev/v1alpha1
kind: RunnerDeployment
metadata:
  name: gpu-runners
spec:
  replicas: 1
  template:
    spec:
      repository: octo-org/app
      labels: [self-hosted, gpu]
      resources:
        limits:
          nvidia.com/gpu: 1
"""


async def test_gpu_runner_deployment_lands_on_gpu_node_and_runs_a_job(env: Env) -> None:
    await env.apply(yaml.safe_load(GPU_RD))

    async def scheduled_pod() -> dict[str, Any] | None:
        running = [p for p in await _pods(env) if (p.get("status") or {}).get("phase") == "Running"]
        return running[0] if running else None

    pod = await wait_until("the GPU runner pod running", scheduled_pod)
    node = env.cluster.request("GET", f"/api/v1/nodes/{pod['spec']['nodeName']}")
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    tolerations = pod["spec"]["tolerations"]
    assert any(t.get("key") == "nvidia.com/gpu" and t.get("effect") == "NoSchedule" for t in tolerations)
    gpu_containers = [
        c["name"]
        for c in pod["spec"]["containers"]
        if "nvidia.com/gpu" in (c.get("resources") or {}).get("limits", {})
    ]
    assert gpu_containers == ["docker"]  # the GPU goes where dockerd runs the job's containers
    docker = next(c for c in pod["spec"]["containers"] if c["name"] == "docker")
    assert {"name": "RUNNERD_GPU", "value": "1"} in docker["env"]

    world = env.sim.world
    run = world.enqueue_run(world.repo_by_name(REPO), [JobSpec(("self-hosted", "gpu"), "train", 0.5)])
    job = await wait_until(
        "the GPU job to complete", lambda: (j := jobs(env, run)[0]).status == "completed" and j
    )
    assert job.conclusion == "success"
    assert job.runner_name == pod["metadata"]["name"]


async def _pods(env: Env) -> list[dict[str, Any]]:
    return (await env.kube.list(PODS, namespace=env.namespace)).items


async def _events(env: Env, name: str) -> list[dict[str, Any]]:
    from runnerd.kube.resources import EVENTS

    items = (await env.kube.list(EVENTS, namespace=env.namespace)).items
    return [e for e in items if e["involvedObject"]["name"] == name]


async def _runner_named_prefix(env: Env, prefix: str) -> dict[str, Any] | None:
    runners = [r for r in await env.runners() if r["metadata"]["name"].startswith(prefix)]
    return runners[0] if runners else None


async def test_unschedulable_gpu_request_shows_as_event_and_status(env: Env) -> None:
    manifest = yaml.safe_load(GPU_RD)
    manifest["spec"]["template"]["spec"]["resources"]["limits"]["nvidia.com/gpu"] = 9
    await env.apply(manifest)
    runner = await wait_until("a runner", lambda: _runner_named_prefix(env, "gpu-runners-"))
    name = runner["metadata"]["name"]

    async def unschedulable_event() -> list[dict[str, Any]]:
        return [e for e in await _events(env, name) if e["reason"] == "Unschedulable"]

    events = await wait_until("an Unschedulable event on the Runner", unschedulable_event)
    assert "nvidia.com/gpu" in events[0]["message"]
    assert events[0]["type"] == "Warning"

    async def status_says_why() -> dict[str, Any] | None:
        r = await _runner_named_prefix(env, "gpu-runners-")
        status = (r or {}).get("status") or {}
        return status if status.get("reason") == "Unschedulable" else None

    status = await wait_until("the Runner's status to say why", status_says_why)
    assert "nvidia.com/gpu" in status["message"]


@pytest.mark.github_token("ghp_wrong")  # as if the Secret held a wrong token
async def test_bad_github_credentials_show_as_event_and_status(env: Env) -> None:
    await env.apply(yaml.safe_load(ARTICLE_RD))
    runner = await wait_until("a runner", lambda: _runner_named_prefix(env, "example-runner-deployment-"))
    name = runner["metadata"]["name"]

    async def bad_credentials_event() -> list[dict[str, Any]]:
        return [e for e in await _events(env, name) if e["reason"] == "GitHubBadCredentials"]

    events = await wait_until("a GitHubBadCredentials event", bad_credentials_event)
    assert "ghp_wrong" not in events[0]["message"]

    async def failed_status() -> dict[str, Any] | None:
        r = await _runner_named_prefix(env, "example-runner-deployment-")
        status = (r or {}).get("status") or {}
        return status if status.get("reason") == "GitHubBadCredentials" else None

    status = await wait_until("the Runner's status to say why", failed_status)
    assert status["phase"] == "Failed"


async def test_registration_without_a_runner_is_removed(env: Env) -> None:
    manifest = yaml.safe_load(ARTICLE_RD)
    manifest["spec"]["replicas"] = 1
    await env.apply(manifest)
    world = env.sim.world
    await wait_until("a runner online", lambda: [r for r in env.github_runners() if world.runner_online(r)])
    rrs = (await env.kube.list(RUNNER_REPLICA_SETS, namespace=env.namespace)).items[0]["metadata"]["name"]
    # a registration left behind, e.g. by a Runner whose finalizer was removed by hand
    from ghsim import Scope as SimScope

    ours = env.controllers.options.pod.installation_label
    assert ours.startswith("runnerd-")
    orphan, _ = world.generate_jit(
        SimScope("repo", REPO), f"{rrs}-gone1", 1, ["self-hosted", "arc-runner", ours]
    )
    stranger, _ = world.generate_jit(SimScope("repo", REPO), "someone-elses-runner", 1, ["self-hosted"])
    # same name scheme, another installation (a second cluster with the same RunnerDeployment)
    twin, _ = world.generate_jit(
        SimScope("repo", REPO), f"{rrs}-gone2", 1, ["arc-runner", "runnerd-other1234"]
    )
    await wait_until(
        "the orphan removed", lambda: orphan.name not in {r.name for r in env.github_runners()}, 30
    )
    assert stranger.name in {r.name for r in env.github_runners()}  # not ours: never touched
    assert twin.name in {r.name for r in env.github_runners()}
    assert [r.name for r in env.github_runners() if world.runner_online(r)]  # the live runner stays


async def test_runner_credentials_are_in_a_secret_owned_by_the_runner(env: Env) -> None:
    """`kubectl get pods -o yaml` shows no token: the pod references a Secret of the Runner's name,
    owned by the Runner (garbage collection removes it with the Runner); once the runner is online
    the credential leaves the Secret too."""
    written: list[dict[str, Any]] = []
    secrets = Informer("test-secrets", env.kube.list_watcher(SECRETS, namespace=env.namespace))
    secrets.add_handler(lambda event: written.append(event.obj) if event.obj.get("data") else None)
    watching = asyncio.create_task(secrets.run())
    try:
        await secrets.wait_synced()
        await env.apply(yaml.safe_load(ARTICLE_RD))
        world = env.sim.world
        await wait_until(
            "a runner online", lambda: [r for r in env.github_runners() if world.runner_online(r)]
        )
        runner = (await env.runners())[0]
        name = runner["metadata"]["name"]

        async def consumed() -> dict[str, Any] | None:
            obj = await env.kube.get(SECRETS, name, namespace=env.namespace)
            return None if obj.get("data") else obj

        secret = await wait_until("the credential removed from the Secret", consumed)
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    assert [(o["kind"], o["uid"]) for o in secret["metadata"]["ownerReferences"]] == [
        ("Runner", runner["metadata"]["uid"])
    ]
    assert secret["metadata"]["annotations"]["runnerd.dev/credentials-consumed"] == "true"
    ((key, encoded),) = next(s for s in written if s["metadata"]["name"] == name)["data"].items()
    value = base64.b64decode(encoded).decode()
    assert key in ("RUNNER_TOKEN", "ACTIONS_RUNNER_INPUT_JITCONFIG")
    assert len(value) > 8
    for kind in ("pods", "runners", "events", "runnerreplicasets", "runnerdeployments"):
        dump = env.cluster.kubectl("get", kind, "-n", env.namespace, "-o", "yaml").stdout
        assert value not in dump, f"the runner's credential is readable in {kind}"
    pod = yaml.safe_load(env.cluster.kubectl("get", "pod", name, "-n", env.namespace, "-o", "yaml").stdout)
    runner_env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert runner_env[key] == {"name": key, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}

    # removed with its Runner by garbage collection (the test of that is the owner reference: the
    # collector's first sight of a new CRD's objects can take half a minute)
    assert secret["metadata"]["ownerReferences"][0]["controller"] is True


async def test_github_api_credentials_from_a_pat_and_an_app_secret_and_rotation(env: Env) -> None:
    """Two RunnerDeployments in organizations the controller's own token cannot reach, each with
    its own Secret (a PAT, a GitHub App): both run a job; the PAT is rotated in its Secret and the
    next runner registers with the new one, without a restart."""
    world = env.sim.world
    for org in ("team-a", "team-b"):
        world.create_org(org)
        world.create_repo(org, "app")
    env.github.rotate(PersonalAccessToken(world.create_pat("ops", orgs=["octo-org"]).token))
    old_pat = world.create_pat("alice", orgs=["team-a"]).token
    private_key, public_key = generate_app_key()
    app = world.create_app("team-b-runners", public_key, owner="team-b")
    installation = world.create_installation(app.id, "team-b")
    secrets = {
        "team-a-github": {"github_token": old_pat},
        "team-b-github": {
            "github_app_id": str(app.id),
            "github_app_installation_id": str(installation.id),
            "github_app_private_key": private_key,
        },
    }
    for name, data in secrets.items():
        await env.kube.create(
            SECRETS,
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data},
            namespace=env.namespace,
        )
    for org in ("team-a", "team-b"):
        manifest = yaml.safe_load(ARTICLE_RD)
        manifest["metadata"]["name"] = f"{org}-runners"
        spec = manifest["spec"]["template"]["spec"]
        spec["repository"] = f"{org}/app"
        spec["githubAPICredentialsFrom"] = {"secretRef": {"name": f"{org}-github"}}
        await env.apply(manifest)

    def online(org: str) -> list[Any]:
        return [
            r for r in env.github_runners() if world.runner_online(r) and r.scope.name.startswith(f"{org}/")
        ]

    for org in ("team-a", "team-b"):
        await wait_until(f"a runner of {org} online", lambda org=org: online(org), 60)
        run = world.enqueue_run(
            world.repo_by_name(f"{org}/app"), [JobSpec(("self-hosted", "arc-runner"), "j", 0.2)]
        )
        await wait_until(
            f"{org}'s job done", lambda run=run: world.jobs[run.job_ids[0]].conclusion == "success", 60
        )
    assert {a.secret for a in env.controllers.clients.apis()} == {
        "",
        f"{env.namespace}/team-a-github",
        f"{env.namespace}/team-b-github",
    }

    # an HRA with its own credentials (the App) counts team-b's jobs the controller's token cannot see
    hra = {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "HorizontalRunnerAutoscaler",
        "metadata": {"name": "team-b-hra"},
        "spec": {
            "scaleTargetRef": {"name": "team-b-runners"},
            "minReplicas": 0,
            "maxReplicas": 3,
            "githubAPICredentialsFrom": {"secretRef": {"name": "team-b-github"}},
            "metrics": [{"type": "TotalNumberOfQueuedAndInProgressWorkflowRuns", "repositoryNames": ["app"]}],
        },
    }
    await env.kube.create(HORIZONTAL_RUNNER_AUTOSCALERS, hra, namespace=env.namespace)
    jobs = [JobSpec(("self-hosted", "arc-runner"), f"long-{i}", 30.0) for i in range(3)]
    world.enqueue_run(world.repo_by_name("team-b/app"), jobs)

    async def team_b_replicas() -> int:
        rd = await env.kube.get(RUNNER_DEPLOYMENTS, "team-b-runners", namespace=env.namespace)
        return int(rd["spec"].get("replicas") or 0)

    await wait_until("the HRA scales team-b for its 3 jobs", lambda: _at_least(team_b_replicas(), 3), 60)

    # rotation: the Secret gets a new token and the old one stops working
    new_pat = world.create_pat("alice2", orgs=["team-a"]).token
    await env.kube.patch(
        SECRETS, "team-a-github", {"stringData": {"github_token": new_pat}}, namespace=env.namespace
    )
    world.pats.pop(old_pat)  # revoked
    await wait_until("the rotation picked up", lambda: env.controllers.clients.rotations >= 1, 30)
    before = {r.name for r in online("team-a")}
    await scale(env, "team-a-runners", 2)
    await wait_until("a second team-a runner online", lambda: {r.name for r in online("team-a")} - before, 60)

    dump = env.cluster.kubectl("get", "events,pods,runners", "-n", env.namespace, "-o", "yaml").stdout
    for secret in (old_pat, new_pat, private_key.splitlines()[1]):
        assert secret not in dump


async def _at_least(value: Any, n: int) -> bool:
    return bool(await value >= n)


async def test_kubernetes_mode_runner_gets_its_own_service_account_and_role(env: Env) -> None:
    """rbac.allowGrantingKubernetesContainerModePermissions: a kubernetes-mode runner without
    serviceAccountName runs as its own ServiceAccount, which may do what the container hooks do in
    its namespace and nothing else; all three objects go with the Runner."""
    options = env.controllers.runner.options
    env.controllers.runner.options = dataclasses.replace(
        options, pod=dataclasses.replace(options.pod, service_account_per_runner=True)
    )
    manifest = yaml.safe_load(ARTICLE_RD)
    manifest["spec"]["template"]["spec"].update(
        containerMode="kubernetes",
        workVolumeClaimTemplate={
            "storageClassName": "standard",
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    )
    await env.apply(manifest)
    pod = await wait_until("the runner pod", lambda: _pods(env), 60)
    name = pod[0]["metadata"]["name"]
    assert pod[0]["spec"]["serviceAccountName"] == name
    runner = next(r for r in await env.runners() if r["metadata"]["name"] == name)
    for kind in ("serviceaccount", "role", "rolebinding"):
        obj = yaml.safe_load(env.cluster.kubectl("get", kind, name, "-n", env.namespace, "-o", "yaml").stdout)
        assert [o["uid"] for o in obj["metadata"]["ownerReferences"]] == [runner["metadata"]["uid"]]

    identity = f"system:serviceaccount:{env.namespace}:{name}"

    def can_i(verb: str, resource: str, namespace: str = env.namespace) -> bool:
        proc = env.cluster.kubectl(
            "auth", "can-i", verb, resource, "-n", namespace, f"--as={identity}", check=False
        )
        return proc.stdout.strip() == "yes"

    for verb, resource in [
        ("create", "pods"),
        ("delete", "pods"),
        ("create", "pods/exec"),
        ("get", "pods/log"),
        ("create", "jobs.batch"),
        ("create", "secrets"),
    ]:
        assert can_i(verb, resource), f"the runner may not {verb} {resource}"
    assert not can_i("create", "pods", "default")  # only its own namespace
    assert not can_i("create", "deployments.apps")
    assert not can_i("create", "roles.rbac.authorization.k8s.io")

    await scale(env, "example-runner-deployment", 0)

    async def identity_gone() -> bool:
        proc = env.cluster.kubectl("get", "serviceaccount", name, "-n", env.namespace, check=False)
        return proc.returncode != 0

    await wait_until("the ServiceAccount removed with its Runner", identity_gone, 60)
