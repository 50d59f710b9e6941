"""The delivery audit's hook discovery rules: where to look, which hooks, what they cover, when again."""

from __future__ import annotations

import pytest

from runnerd.reconcile.deliveryaudit import HookRef
from runnerd.reconcile.hookdiscovery import (
    DiscoveryState,
    HookInfo,
    Listing,
    Outcome,
    Scopes,
    choose,
    due,
    listings,
    matches,
    repo_listings,
    scopes_of,
    uncovered,
    verdict,
)

pytestmark = pytest.mark.timeout(5)

URL = "https://ci.example/webhook"


def hook(
    owner: str = "octo",
    hook_id: int = 1,
    *,
    repo: str = "",
    active: bool = True,
    events: tuple[str, ...] = ("workflow_job",),
    url: str = URL,
) -> HookInfo:
    return HookInfo("repo" if repo else "org", owner, repo, hook_id, active, events, url)


def test_scopes_of_targets() -> None:
    got = scopes_of(
        [("Octo", None, None), (None, "Octo/App", None), ("octo", "alice/dots", None), (None, None, "acme")]
    )
    assert got == Scopes(
        frozenset({"octo"}), frozenset({("octo", "app"), ("alice", "dots")}), frozenset({"acme"})
    )
    assert got.orgs_to_list() == ["alice", "octo"]  # a repository target's owner is listed too
    assert scopes_of([]).empty


@pytest.mark.parametrize(
    ("info", "prefix", "expected"),
    [
        (hook(), None, True),
        (hook(events=("*",)), None, True),
        (hook(events=("push", "workflow_job")), None, True),
        (hook(events=("push", "workflow_run")), None, False),
        (hook(active=False), None, False),
        (hook(), "https://ci.example/", True),
        (hook(url="https://other.example/hook"), "https://ci.example/", False),
        (hook(url="https://other.example/hook"), "", True),  # an empty prefix filters nothing
    ],
)
def test_which_hooks_deliver_workflow_job(info: HookInfo, prefix: str | None, expected: bool) -> None:
    assert matches(info, prefix) is expected


def test_the_first_listings_are_the_apps_hook_or_the_organizations() -> None:
    scopes = scopes_of([("octo", None, None), (None, "alice/dots", None)])
    assert listings(scopes, app=True) == [Listing("app")]
    assert listings(scopes, app=False) == [Listing("org", "alice"), Listing("org", "octo")]
    assert str(Listing("repo", "alice", "dots")) == "/repos/alice/dots/hooks"


def test_a_repository_is_listed_only_when_its_owner_showed_no_matching_hook() -> None:
    scopes = scopes_of([(None, "octo/app", None), (None, "alice/dots", None)])
    assert repo_listings(scopes, ["Octo"]) == [Listing("repo", "alice", "dots")]
    assert repo_listings(scopes, []) == [Listing("repo", "alice", "dots"), Listing("repo", "octo", "app")]


def test_choose_is_ordered_deduplicated_and_bounded() -> None:
    found = [
        hook("octo", 9),
        hook("alice", 3, repo="dots"),
        hook("octo", 2),
        hook("octo", 2),
        hook("octo", 5, active=False),
    ]
    chosen, left_out = choose(found, None, max_hooks=2)
    assert chosen == [HookRef("org", "octo", hook_id=2), HookRef("org", "octo", hook_id=9)]
    assert left_out == [HookRef("repo", "alice", "dots", 3)]


@pytest.mark.parametrize(
    ("targets", "hooks", "expected"),
    [
        ([("octo", None, None)], [HookRef("org", "octo", hook_id=1)], []),
        ([(None, "octo/app", None)], [HookRef("org", "octo", hook_id=1)], []),  # the org hook covers it
        ([(None, "octo/app", None)], [HookRef("repo", "octo", "app", 1)], []),
        ([(None, "octo/app", None)], [HookRef("repo", "octo", "site", 1)], ["repository octo/app"]),
        ([("octo", None, None)], [HookRef("repo", "octo", "app", 1)], ["organization octo"]),
        (
            [("octo", None, None), (None, None, "acme")],
            [HookRef("org", "octo", hook_id=1)],
            ["enterprise acme"],
        ),
        ([("octo", None, None), (None, None, "acme")], [HookRef("app")], []),  # the App's hook: everything
        ([("octo", None, None)], [], ["organization octo"]),
    ],
)
def test_what_the_hooks_cover(
    targets: list[tuple[str | None, str | None, str | None]], hooks: list[HookRef], expected: list[str]
) -> None:
    assert uncovered(scopes_of(targets), hooks) == expected


ORG_HOOK = HookRef("org", "octo", hook_id=1)


@pytest.mark.parametrize(
    ("outcome", "state", "words"),
    [
        (Outcome(hooks=(ORG_HOOK,)), "covered", "auditing org/octo/1"),
        (
            Outcome(hooks=(ORG_HOOK,), uncovered=("enterprise acme",)),
            "partial",
            "no hook found for enterprise acme",
        ),
        (
            Outcome(unreadable=((Listing("org", "octo"), 403),)),
            "unavailable",
            "may not list the hooks: /orgs/octo/hooks (403)",
        ),
        (Outcome(), "unavailable", "no active hook delivers workflow_job"),
    ],
)
def test_the_verdict_says_why(outcome: Outcome, state: str, words: str) -> None:
    got_state, reason = verdict(outcome)
    assert got_state == state
    assert words in reason


OCTO = scopes_of([("octo", None, None)])
COVERED = DiscoveryState(OCTO, 100.0, Outcome(hooks=(ORG_HOOK,)))
NONE_FOUND = DiscoveryState(OCTO, 100.0, Outcome())
FAILED = DiscoveryState(OCTO, 100.0, Outcome(), failed=True)


@pytest.mark.parametrize(
    ("state", "scopes", "now", "failing", "expected"),
    [
        (DiscoveryState(), OCTO, 0.0, False, (True, "first discovery")),
        (COVERED, OCTO, 100_000.0, False, (False, "hooks known")),  # covered: never again on its own
        (
            COVERED,
            scopes_of([("octo", None, None), ("other", None, None)]),
            101.0,
            False,
            (True, "the scopes served changed"),
        ),
        (NONE_FOUND, OCTO, 699.0, False, (False, "waiting to retry")),
        (NONE_FOUND, OCTO, 700.0, False, (True, "retry after 600s")),
        (FAILED, OCTO, 700.0, False, (True, "retry after 600s")),
        (COVERED, OCTO, 699.0, True, (False, "waiting to retry")),  # the audit of a found hook fails
        (COVERED, OCTO, 700.0, True, (True, "retry after 600s")),
    ],
)
def test_when_to_discover(
    state: DiscoveryState, scopes: Scopes, now: float, failing: bool, expected: tuple[bool, str]
) -> None:
    assert due(state, scopes, now, 600.0, failing) == expected
