"""Which runner groups a repository may use, asked of GitHub only when a webhook's routing needs it."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from runnerd.controller.targets import WebhookTarget
from runnerd.github import GitHubClient, GitHubError, Scope
from runnerd.reconcile.matching import JobEvent, VisibleGroups, is_default_group

log = logging.getLogger(__name__)


class GroupVisibility:
    """Runner groups visible to a repository (``GET /orgs/{org}/actions/runner-groups``), cached.

    Only asked when a candidate target is in a non-default runner group of an organization or
    enterprise (ARC's ``useRunnerGroupsVisibility``); a failed lookup assumes every group visible.
    """

    def __init__(self, github: GitHubClient, *, ttl: float = 600.0) -> None:
        self.github = github
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, VisibleGroups]] = {}

    async def __call__(self, event: JobEvent, targets: Sequence[WebhookTarget]) -> VisibleGroups | None:
        org = event.org
        if org is None or all(
            t.target.config.repository or is_default_group(t.target.config.group) for t in targets
        ):
            return None
        key = (org.casefold(), event.repository.casefold())
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        try:
            groups = await self.github.list_runner_groups(
                Scope("organization", org), visible_to_repository=event.repository.split("/", 1)[1]
            )
        except GitHubError as exc:
            log.warning("runner groups visible to %s: %s; assuming every group", event.repository, exc)
            return None
        visible = VisibleGroups.of(g.name for g in groups)
        self._cache[key] = (now, visible)
        return visible
