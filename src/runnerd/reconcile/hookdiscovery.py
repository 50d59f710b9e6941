"""The delivery audit's hook discovery (``--webhook-audit auto``, the default): which listings to read,
which hooks to audit, whether they cover every scope the controller serves, and when to look again.
Pure rules, facts in, steps out; the calls are :mod:`runnerd.controller.hookdiscovery`'s.

* **Where to look** (:func:`listings`): with GitHub App credentials, first the App's own webhook
  (``GET /app/hook/config``: an App whose webhook has no URL, or none at all, has none). Otherwise,
  and when the App has none, for every organization the webhook-scaled targets serve (a target's
  ``organization``, and a repository target's owner) ``GET /orgs/{org}/hooks``, then
  ``GET /repos/{owner}/{repo}/hooks`` for each repository target whose owner showed no matching
  organization hook (that hook already delivers the repository's events). Enterprise targets have
  no listing a token may read: they stay uncovered.
* **Which hooks** (:func:`matches`, :func:`choose`): an active hook whose ``events`` hold
  ``workflow_job`` or ``*`` and, with ``--webhook-audit-url``, whose URL starts with that prefix;
  at most ``max_hooks`` (the rest named in the outcome), ordered by kind, owner, repository, id.
* **Covered** (:func:`uncovered`): the App's hook covers every scope; an organization hook its
  organization and the organization's repositories; a repository hook its repository. The audit
  redelivers for every hook it found, but the safety-net poll may stretch only while nothing is
  uncovered (:func:`runnerd.reconcile.pollpace.audited_bound` is given the audit as healthy only
  then): a scope whose hook was not found is polled exactly as without the audit.
* **Unavailable** (:func:`verdict`): no hook found. The reason names the listings a token may not
  read (403/404: a classic PAT without ``admin:org_hook``, an App without ``organization_hooks``
  read) or says that no active hook delivers ``workflow_job``; the poll keeps today's pace.
* **When** (:func:`due`): at the first pass, whenever the set of scopes changes, and, while the
  outcome is unavailable or partial (or the audit of a found hook fails), at most every ``retry``
  seconds. Nothing else triggers a listing: discovery costs a few calls per scope change, not per
  job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from runnerd.reconcile.deliveryaudit import HookRef

MAX_HOOKS = 10
"""Hooks audited at most (each costs one listing per audit interval)."""
RETRY = 600.0
"""The default seconds between two discoveries while the last one found nothing, or not enough."""
WANTED_EVENTS = frozenset({"workflow_job", "*"})

ListingKind = Literal["app", "org", "repo"]


@dataclass(frozen=True, order=True)
class Listing:
    """One listing discovery may read: the App's hook, an organization's hooks, a repository's."""

    kind: ListingKind
    owner: str = ""
    repo: str = ""

    def __str__(self) -> str:
        if self.kind == "app":
            return "the GitHub App's webhook"
        return f"/orgs/{self.owner}/hooks" if self.kind == "org" else f"/repos/{self.owner}/{self.repo}/hooks"


@dataclass(frozen=True)
class Scopes:
    """What the webhook-scaled targets serve (casefolded)."""

    organizations: frozenset[str] = frozenset()
    repositories: frozenset[tuple[str, str]] = frozenset()
    """``(owner, name)``."""
    enterprises: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.organizations or self.repositories or self.enterprises)

    def orgs_to_list(self) -> list[str]:
        """Every organization to list: the targets' own and the repository targets' owners."""
        return sorted(self.organizations | {owner for owner, _ in self.repositories})


def scopes_of(configs: Iterable[tuple[str | None, str | None, str | None]]) -> Scopes:
    """The scopes of ``(organization, repository, enterprise)`` triples (a target's runner config)."""
    orgs: set[str] = set()
    repos: set[tuple[str, str]] = set()
    enterprises: set[str] = set()
    for organization, repository, enterprise in configs:
        if repository and "/" in repository:
            owner, name = repository.casefold().split("/", 1)
            repos.add((owner, name))
        elif organization:
            orgs.add(organization.casefold())
        elif enterprise:
            enterprises.add(enterprise.casefold())
    return Scopes(frozenset(orgs), frozenset(repos), frozenset(enterprises))


@dataclass(frozen=True)
class HookInfo:
    """A hook as a listing shows it."""

    kind: Literal["org", "repo"]
    owner: str
    repo: str
    hook_id: int
    active: bool
    events: tuple[str, ...]
    url: str

    @property
    def ref(self) -> HookRef:
        return HookRef(self.kind, self.owner, self.repo if self.kind == "repo" else "", self.hook_id)


def matches(hook: HookInfo, url_prefix: str | None = None) -> bool:
    """The hook delivers ``workflow_job`` events (to us, when a URL prefix is given)."""
    if not hook.active or not WANTED_EVENTS & set(hook.events):
        return False
    return not url_prefix or hook.url.startswith(url_prefix)


def repo_listings(scopes: Scopes, orgs_with_hooks: Iterable[str]) -> list[Listing]:
    """The repositories to list after the organizations: those whose owner showed no matching hook."""
    covered = {o.casefold() for o in orgs_with_hooks}
    return [Listing("repo", o, r) for o, r in sorted(scopes.repositories) if o not in covered]


def listings(scopes: Scopes, *, app: bool) -> list[Listing]:
    """The first listings to read: the App's hook with App credentials, else the organizations'."""
    if app:
        return [Listing("app")]
    return [Listing("org", org) for org in scopes.orgs_to_list()]


def choose(
    hooks: Iterable[HookInfo], url_prefix: str | None = None, max_hooks: int = MAX_HOOKS
) -> tuple[list[HookRef], list[HookRef]]:
    """The hooks to audit and the matching ones left out by the bound."""
    found = sorted({h.ref for h in hooks if matches(h, url_prefix)}, key=_order)
    return found[:max_hooks], found[max_hooks:]


def _order(ref: HookRef) -> tuple[str, str, str, int]:
    return (ref.kind, ref.owner.casefold(), ref.repo.casefold(), ref.hook_id)


def uncovered(scopes: Scopes, hooks: Sequence[HookRef]) -> list[str]:
    """The scopes no chosen hook delivers for (empty: the audit covers them all)."""
    if any(h.kind == "app" for h in hooks):
        return []
    orgs = {h.owner.casefold() for h in hooks if h.kind == "org"}
    repos = {(h.owner.casefold(), h.repo.casefold()) for h in hooks if h.kind == "repo"}
    out = [f"organization {o}" for o in sorted(scopes.organizations) if o not in orgs]
    out += [
        f"repository {o}/{r}" for o, r in sorted(scopes.repositories) if o not in orgs and (o, r) not in repos
    ]
    out += [f"enterprise {e}" for e in sorted(scopes.enterprises)]
    return out


@dataclass(frozen=True)
class Outcome:
    """What one discovery found."""

    hooks: tuple[HookRef, ...] = ()
    left_out: tuple[HookRef, ...] = ()
    unreadable: tuple[tuple[Listing, int], ...] = ()
    """Listings answered 403 or 404 (the token may not read them), with the status."""
    uncovered: tuple[str, ...] = ()

    @property
    def available(self) -> bool:
        return bool(self.hooks)

    @property
    def complete(self) -> bool:
        """Every scope is covered by an audited hook (the poll may stretch while they are healthy)."""
        return self.available and not self.uncovered


Verdict = Literal["covered", "partial", "unavailable"]


def verdict(outcome: Outcome) -> tuple[Verdict, str]:
    """The audit's state after a discovery, and why (no secrets: listing paths and status codes)."""
    if not outcome.available:
        if outcome.unreadable:
            names = ", ".join(f"{listing} ({status})" for listing, status in outcome.unreadable[:3])
            return "unavailable", (
                f"the credentials may not list the hooks: {names}; a classic PAT needs admin:org_hook "
                "(read), a GitHub App organization_hooks: read"
            )
        return "unavailable", "no active hook delivers workflow_job events to the scopes served"
    hooks = ", ".join(str(h) for h in outcome.hooks)
    if outcome.uncovered:
        return "partial", f"auditing {hooks}; no hook found for {', '.join(outcome.uncovered[:3])}"
    extra = f" ({len(outcome.left_out)} more matching hook(s) left out)" if outcome.left_out else ""
    return "covered", f"auditing {hooks}{extra}"


@dataclass
class DiscoveryState:
    """When discovery last ran, for which scopes, and with what result."""

    scopes: Scopes | None = None
    at: float | None = None
    outcome: Outcome = field(default_factory=Outcome)
    failed: bool = False
    """The last discovery could not finish (a 5xx, a connection error, the budget)."""


def due(
    state: DiscoveryState, scopes: Scopes, now: float, retry: float, audit_failing: bool
) -> tuple[bool, str]:
    """Whether to discover now, and why (see the module docstring)."""
    if state.at is None:
        return True, "first discovery"
    if state.scopes != scopes:
        return True, "the scopes served changed"
    if state.failed or not state.outcome.complete or audit_failing:
        if now - state.at >= retry:
            return True, f"retry after {retry:g}s"
        return False, "waiting to retry"
    return False, "hooks known"
