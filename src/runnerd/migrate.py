"""``runnerd migrate-from-arc``: take over what ARC's legacy controller left, without killing a job.

Run it after ARC's controller is uninstalled (its CRDs and objects stay) and before or after runnerd
starts. Each pass:

1. refuses to go on while a Deployment runs ARC's controller image (ARC would put its finalizers
   back and fight runnerd over the same objects);
2. deletes ARC's admission webhook configurations if they are still there (they fail closed:
   with ARC gone they block every Runner and runner pod);
3. observes ARC's runner pods (with ARC's finalizer) and ARC's RunnerSet StatefulSets, lists their
   runners in GitHub with the controller's credentials (the same environment variables as
   ``runnerd controller``; without them only finished runners are released), and carries out
   :func:`runnerd.reconcile.migration.plan`: finalizers of done or idle runners removed, idle
   RunnerSet runners removed from GitHub (a 422 says it took a job meanwhile: it waits) and their
   StatefulSets deleted once done or idle. Busy runners are left alone.

With ``--wait`` it repeats every few seconds until nothing waits (or ``--timeout``); the exit code
is 0 when nothing is left, 3 when busy runners still wait. ``--dry-run`` prints the plan only.
Nothing it prints or logs contains a credential.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

from runnerd.github import GitHubClient, GitHubConfig, Scope, load_credentials
from runnerd.github.errors import CredentialsError, GitHubError, MissingCredentialsError, RunnerBusyError
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import DEPLOYMENTS, PODS, STATEFUL_SETS, Resource
from runnerd.reconcile import migration as m
from runnerd.reconcile.lifecycle import GitHubState
from runnerd.reconcile.runnerpod import LABEL_RUNNER
from runnerd.reconcile.runnerset import LABEL_RUNNERSET_NAME
from runnerd.runtime import ApiError, Invalid, NotFound, Obj

ADMISSION = "admissionregistration.k8s.io"
MUTATING_WEBHOOKS = Resource(
    ADMISSION, "v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False
)
VALIDATING_WEBHOOKS = Resource(
    ADMISSION, "v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False
)
ARC_CONTROLLER_IMAGES = (
    "summerwind/actions-runner-controller",
    "actions-runner-controller/actions-runner-controller",
)
EXIT_WAITING = 3


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("migrate-from-arc", help="take over ARC's runners without killing a running job")
    p.add_argument("--kubeconfig", default=None)
    p.add_argument("--namespace", default=None, help="only this namespace (default: all)")
    p.add_argument("--github-url", default=os.environ.get("GITHUB_URL") or None, help="GitHub API URL")
    p.add_argument("--github-enterprise-url", default=os.environ.get("GITHUB_ENTERPRISE_URL") or None)
    p.add_argument("--wait", action="store_true", help="repeat until no busy runner is left")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits at most")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between passes with --wait")
    p.add_argument("--dry-run", action="store_true", help="print what would be done")


@dataclass
class Migration:
    kube: KubeClient
    github: GitHubClient | None
    out: TextIO
    namespace: str | None = None
    dry_run: bool = False

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def arc_controller_running(self) -> list[str]:
        found = []
        for d in (await self.kube.list(DEPLOYMENTS)).items:
            containers = d["spec"]["template"]["spec"].get("containers") or ()
            images = [str(c.get("image") or "") for c in containers]
            arc = any(a in i for a in ARC_CONTROLLER_IMAGES for i in images)
            if arc and d["spec"].get("replicas", 1) != 0:
                found.append(f"{d['metadata']['namespace']}/{d['metadata']['name']}")
        return found

    async def remove_arc_webhooks(self) -> None:
        mutating, validating = m.ARC_WEBHOOK_CONFIGURATIONS
        for resource, name in ((MUTATING_WEBHOOKS, mutating), (VALIDATING_WEBHOOKS, validating)):
            try:
                await self.kube.get(resource, name)
            except NotFound:
                continue
            self.say(f"delete {resource.kind} {name} (ARC's; it fails closed without ARC)")
            if not self.dry_run:
                await self.kube.delete(resource, name, missing_ok=True)

    async def github_states(self, pods: list[Obj], sets: list[Obj]) -> dict[tuple[str, str], GitHubState]:
        """GitHub's state of each ARC runner, by (namespace, runner name); absent when unknown."""
        wanted: dict[Scope, list[tuple[str, str]]] = {}
        for obj, runner_of in [(p, _name) for p in pods] + [(s, _pod_name) for s in sets]:
            found = m.scope_of(obj["spec"] if obj["kind"] == "Pod" else _template_spec(obj))
            if found is not None:
                wanted.setdefault(Scope(*found), []).append((obj["metadata"]["namespace"], runner_of(obj)))
        states: dict[tuple[str, str], GitHubState] = {}
        if self.github is None:
            return states
        for gh_scope, keys in wanted.items():
            try:
                listed = {r.name: r for r in await self.github.list_runners(gh_scope)}
            except GitHubError as exc:
                self.say(f"cannot list the runners of {gh_scope.kind} {gh_scope.name}: {exc}")
                continue
            for key in keys:
                r = listed.get(key[1])
                states[key] = (
                    GitHubState.ABSENT
                    if r is None
                    else GitHubState.BUSY
                    if r.busy
                    else GitHubState.IDLE
                    if r.online
                    else GitHubState.OFFLINE
                )
        return states

    async def _observe(self) -> tuple[list[Obj], list[Obj]]:
        pods: dict[tuple[str, str], Obj] = {}
        for selector in (LABEL_RUNNER, LABEL_RUNNERSET_NAME):
            for p in (await self.kube.list(PODS, namespace=self.namespace, label_selector=selector)).items:
                pods[(p["metadata"]["namespace"], p["metadata"]["name"])] = p
        listed = await self.kube.list(
            STATEFUL_SETS, namespace=self.namespace, label_selector=LABEL_RUNNERSET_NAME
        )
        return list(pods.values()), [s for s in listed.items if m.is_arc_statefulset(s)]

    async def pass_once(self) -> int:
        """One pass; how many runners still wait."""
        pods, sets = await self._observe()
        states = await self.github_states([p for p in pods if m.is_arc_runner_pod(p)], sets)
        waiting = 0
        skip: set[tuple[str, str]] = set()  # StatefulSets whose runner took a job meanwhile
        for action in m.plan(pods, sets, states):
            where = f"{action.kind} {action.namespace}/{action.name}"
            if action.step is m.Step.WAIT:
                waiting += 1
                self.say(f"wait   {where}: runner {action.runner} is {action.reason}")
                continue
            if (action.namespace, action.runner) in skip:
                continue
            self.say(f"{action.step.value} {where} (runner {action.runner}: {action.reason})")
            if self.dry_run:
                continue
            if not await self._do(action, pods):
                skip.add((action.namespace, action.runner))
                waiting += 1
        return waiting

    async def _do(self, action: m.Action, pods: list[Obj]) -> bool:
        if action.step is m.Step.REMOVE_FINALIZER:
            pod = _find(pods, action.namespace, action.name)
            finalizers = list((pod or {}).get("metadata", {}).get("finalizers") or ())
            if m.ARC_POD_FINALIZER not in finalizers:
                return True
            index = finalizers.index(m.ARC_POD_FINALIZER)
            patch = [
                {"op": "test", "path": f"/metadata/finalizers/{index}", "value": m.ARC_POD_FINALIZER},
                {"op": "remove", "path": f"/metadata/finalizers/{index}"},
            ]
            with contextlib.suppress(NotFound, Invalid):  # gone, or changed: the next pass sees it
                await self.kube.patch(PODS, action.name, patch, namespace=action.namespace, patch_type="json")
            return True
        if action.step is m.Step.DEREGISTER:
            return await self._deregister(action, pods)
        if action.step is m.Step.DELETE_STATEFULSET:
            await self.kube.delete(STATEFUL_SETS, action.name, namespace=action.namespace, missing_ok=True)
        return True

    async def _deregister(self, action: m.Action, pods: list[Obj]) -> bool:
        assert self.github is not None  # plan() deregisters only runners GitHub listed
        pod = _find(pods, action.namespace, action.runner)
        sts = await self.kube.get(STATEFUL_SETS, action.name, namespace=action.namespace)
        scope = m.scope_of(_template_spec(sts)) or (m.scope_of(pod["spec"]) if pod else None)
        if scope is None:
            return False
        for runner in await self.github.list_runners(Scope(*scope), name=action.runner):
            try:
                await self.github.delete_runner(Scope(*scope), runner.id)
            except RunnerBusyError:
                self.say(f"wait   runner {action.runner} took a job meanwhile")
                return False
        return True


def _find(objects: list[Obj], namespace: str, name: str) -> Obj | None:
    return next(
        (o for o in objects if (o["metadata"]["namespace"], o["metadata"]["name"]) == (namespace, name)), None
    )


def _template_spec(sts: Obj) -> Obj:
    return dict((sts["spec"].get("template") or {}).get("spec") or {})


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _pod_name(sts: Obj) -> str:
    return f"{sts['metadata']['name']}-0"


def github_client(args: argparse.Namespace, credentials: Mapping[str, str]) -> GitHubClient | None:
    """A client with the controller's credentials (its environment variables); None without any."""
    try:
        loaded = load_credentials(credentials)
    except MissingCredentialsError:
        return None
    config = GitHubConfig.resolve(enterprise_url=args.github_enterprise_url, api_url=args.github_url)
    return GitHubClient(loaded, config=config)


async def run(args: argparse.Namespace, credentials: Mapping[str, str], out: TextIO) -> int:
    try:
        github = github_client(args, credentials)
    except CredentialsError as exc:
        print(f"GitHub credentials: {exc}", file=out)
        return 2
    if github is None:
        print("no GitHub credentials (GITHUB_TOKEN or GITHUB_APP_*): only finished runners go", file=out)
    try:
        async with await KubeClient.connect(args.kubeconfig) as kube:
            migration = Migration(kube, github, out, namespace=args.namespace, dry_run=args.dry_run)
            running = await migration.arc_controller_running()
            if running:
                print(f"ARC's controller still runs ({', '.join(running)}): uninstall it first", file=out)
                return 2
            await migration.remove_arc_webhooks()
            deadline = time.monotonic() + args.timeout
            while True:
                waiting = await migration.pass_once()
                if waiting == 0:
                    print("done: nothing of ARC's is left waiting", file=out)
                    return 0
                if not args.wait or args.dry_run or time.monotonic() > deadline:
                    print(f"{waiting} runner(s) still busy: run again (or use --wait)", file=out)
                    return EXIT_WAITING
                await asyncio.sleep(args.interval)
    except ApiError as exc:
        print(f"Kubernetes: {exc}", file=out)
        return 2
    finally:
        if github is not None:
            await github.close()
