"""Registrations with no Runner: found in GitHub's listings and removed.

They appear when a Runner object vanished without its finalizer running (someone removed the
finalizer by hand, or deleted the namespace's objects with ``--force``). A GitHub runner is taken
for an orphan only when all of these hold:

* its name starts with ``<name>-`` of a RunnerReplicaSet, RunnerDeployment or RunnerSet this
  controller serves (so runners of other tools in a shared organization are never touched);
* no Runner object (and no RunnerSet pod) of that name exists;
* it is neither online nor busy, in two sweeps in a row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from runnerd.controller.directory import RunnerDirectory
from runnerd.github import GitHubClient, Scope
from runnerd.github.errors import GitHubError, RunnerBusyError
from runnerd.runtime import Informer, Key, Obj, Result

logger = logging.getLogger(__name__)

SWEEP_KEY = Key("", "github-orphan-registrations")
OWNER_INFORMERS = ("runnerreplicasets", "runnerdeployments", "runnersets")


def sweep_key(_: Obj) -> list[Key]:
    return [SWEEP_KEY]


class OrphanSweeper:
    def __init__(
        self,
        *,
        github: GitHubClient,
        directory: RunnerDirectory,
        runners: Informer,
        informers: Mapping[str, Informer],
        period: float,
    ) -> None:
        self.github = github
        self.directory = directory
        self.runners = runners
        self.informers = informers  # read at each sweep: extensions add runnersets later
        self.period = period
        self._suspects: set[tuple[Scope, str]] = set()
        self.removed: list[str] = []

    @property
    def suspected(self) -> int:
        """Registrations with no Runner seen in the last sweep (removed at the next if still so)."""
        return len(self._suspects)

    def _prefixes_and_scopes(self) -> tuple[tuple[str, ...], set[Scope]]:
        prefixes: list[str] = []
        scopes: set[Scope] = set()
        for name in OWNER_INFORMERS:
            informer = self.informers.get(name)
            for obj in informer.store if informer is not None else ():
                prefixes.append(obj["metadata"]["name"] + "-")
                spec = obj.get("spec") or {}
                # RunnerSet: the runner fields are in spec (its template is a pod template);
                # replica sets and deployments: in spec.template.spec
                for fields in (spec, (spec.get("template") or {}).get("spec") or {}):
                    for kind in ("enterprise", "organization", "repository"):
                        if fields.get(kind):
                            scopes.add(Scope(kind, fields[kind]))
        return tuple(prefixes), scopes

    async def reconcile(self, key: Key) -> Result | None:
        prefixes, scopes = self._prefixes_and_scopes()
        if not prefixes:
            self._suspects.clear()
            return Result(requeue_after=self.period)
        known = {obj["metadata"]["name"] for obj in self.runners.store}
        pods = self.informers.get("pods")
        known |= {obj["metadata"]["name"] for obj in (pods.store if pods is not None else ())}
        suspects: set[tuple[Scope, str]] = set()
        for scope in sorted(scopes):
            try:
                listing = await self.directory.refresh(scope, max_age=self.period)
            except GitHubError as exc:
                logger.info("orphan sweep: listing %s %s failed: %s", scope.kind, scope.name, exc)
                continue
            for name, runner in list(listing.runners.items()):  # forget() edits it meanwhile
                if name in known or not name.startswith(prefixes):
                    continue
                if runner.busy or runner.status == "online":
                    continue
                if (scope, name) not in self._suspects:
                    suspects.add((scope, name))
                    continue
                try:
                    await self.github.delete_runner(scope, runner.id)
                except RunnerBusyError:
                    continue
                except GitHubError as exc:
                    logger.warning("orphan sweep: removing runner %s failed: %s", name, exc)
                    suspects.add((scope, name))
                    continue
                self.directory.forget(scope, name)
                self.removed.append(name)
                logger.info(
                    "removed registration %s from %s %s: no Runner owns it", name, scope.kind, scope.name
                )
        self._suspects = suspects
        return Result(requeue_after=self.period)
