"""``--webhook-audit auto``: discovery against a fake GitHub and clock, the audits it starts, and what
the safety-net poll is told (healthy only while every served scope is covered)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from runnerd.controller.deliveryaudit import AUDIT_KEY, AuditSettings, DeliveryAudit
from runnerd.controller.hookdiscovery import AutoAudit, AutoSettings
from runnerd.github import GitHubError, GitHubServerError, NotFoundError, PermissionDeniedError
from runnerd.github.budget import CallWindow
from runnerd.github.credentials import GitHubAppCredentials, PersonalAccessToken
from runnerd.reconcile.deliveryaudit import HookRef
from runnerd.reconcile.hookdiscovery import HookInfo, Scopes, scopes_of
from runnerd.web.metrics import Metrics
from tests.unit.controller.test_deliveryaudit import WALL, FakeHooks
from tests.unit.controller.test_poller import Clock

pytestmark = pytest.mark.timeout(10)

URL = "https://ci.example/webhook"


def info(owner: str, hook_id: int, repo: str = "", **kw: object) -> HookInfo:
    fields: dict[str, object] = {"active": True, "events": ("workflow_job",), "url": URL, **kw}
    return HookInfo("repo" if repo else "org", owner, repo, hook_id, **fields)  # type: ignore[arg-type]


@dataclass
class FakeGitHub(FakeHooks):
    """Hook listings by ``owner`` or ``owner/repo`` (an exception: that answer), the App's hook URL."""

    listings: dict[str, list[HookInfo] | GitHubError] = field(default_factory=dict)
    app_url: str | None = None
    """Not ``None``: GitHub App credentials, whose webhook has this URL."""

    @property
    def credentials(self) -> object:
        if self.app_url is None:
            return PersonalAccessToken("ghp_test")
        return object.__new__(GitHubAppCredentials)

    async def list_hooks(self, owner: str, repo: str | None = None) -> list[HookInfo]:
        name = f"{owner}/{repo}" if repo else owner
        self.calls.append(f"hooks {name}")
        got = self.listings.get(name, [])
        if isinstance(got, GitHubError):
            raise got
        return got

    async def get_app_hook_url(self) -> str:
        self.calls.append("app hook")
        return self.app_url or ""


def forbidden(path: str) -> PermissionDeniedError:
    return PermissionDeniedError(status=403, endpoint=f"GET {path}", message="Resource not accessible")


def auto(
    gh: FakeGitHub, clock: Clock, scopes: Scopes, *, ceiling: int = 1000, **kw: object
) -> tuple[AutoAudit, list[int]]:
    unhealthy: list[int] = []
    window = CallWindow(clock)
    metrics = Metrics()

    def make_audit(settings: AuditSettings) -> DeliveryAudit:
        return DeliveryAudit(
            github=gh,  # type: ignore[arg-type]
            settings=settings,
            window=window,
            ceiling=lambda: ceiling,
            metrics=metrics,
            monotonic=clock,
            wall=lambda: WALL + clock.now,
        )

    audit = AutoAudit(
        github=gh,  # type: ignore[arg-type]
        settings=AutoSettings(interval=60.0, **kw),  # type: ignore[arg-type]
        scopes=lambda: scopes,
        make_audit=make_audit,
        window=window,
        ceiling=lambda: ceiling,
        metrics=metrics,
        on_unhealthy=lambda: unhealthy.append(1),
        monotonic=clock,
    )
    return audit, unhealthy


OCTO = scopes_of([("octo", None, None)])


def sample(audit: AutoAudit, name: str, **labels: str) -> float | None:
    return audit.metrics.registry.get_sample_value(name, labels)


async def test_an_org_hook_is_found_once_and_audited_and_the_poll_may_stretch() -> None:
    clock = Clock()
    gh = FakeGitHub(clock, listings={"octo": [info("octo", 7, events=("push",)), info("octo", 8)]})
    audit, _ = auto(gh, clock, OCTO)
    result = await audit.reconcile(AUDIT_KEY)
    assert gh.calls == ["hooks octo", "list"]  # one listing of hooks, then the audit's first pass
    assert list(audit.audits) == [HookRef("org", "octo", hook_id=8)]
    assert audit.healthy()
    assert result is not None
    assert result.requeue_after == 60.0
    assert sample(audit, "runnerd_webhook_audit_hooks") == 1
    for _ in range(100):  # a day of passes: never listed again
        clock.now += 60
        await audit.reconcile(AUDIT_KEY)
    assert gh.calls.count("hooks octo") == 1
    assert audit.window.spent() <= 2 + 100


async def test_a_token_that_may_not_list_hooks_leaves_the_poll_as_today_and_retries_rarely(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    gh = FakeGitHub(clock, listings={"octo": forbidden("/orgs/{org}/hooks")})
    audit, _ = auto(gh, clock, OCTO, retry=600.0)
    result = await audit.reconcile(AUDIT_KEY)
    assert not audit.healthy()
    assert audit.audits == {}
    assert result is not None
    assert result.requeue_after == 60.0  # the scopes are looked at again; no call before the retry
    assert "may not list the hooks: /orgs/octo/hooks (403)" in audit.reason
    assert "ghp_test" not in caplog.text
    warnings = [r for r in caplog.records if "webhook delivery audit" in r.getMessage()]
    assert len(warnings) == 1
    clock.now += 599
    await audit.reconcile(AUDIT_KEY)
    assert gh.calls == ["hooks octo"]
    clock.now += 1
    await audit.reconcile(AUDIT_KEY)
    assert gh.calls == ["hooks octo", "hooks octo"]
    assert len([r for r in caplog.records if "webhook delivery audit" in r.getMessage()]) == 1  # logged once


async def test_repository_scopes_list_the_owner_then_the_repository_without_an_org_hook() -> None:
    clock = Clock()
    scopes = scopes_of([(None, "octo/app", None), (None, "alice/dots", None)])
    gh = FakeGitHub(
        clock,
        listings={
            "octo": [info("octo", 1)],
            "alice": NotFoundError(status=404, endpoint="GET /orgs/{org}/hooks", message="Not Found"),
            "alice/dots": [info("alice", 4, repo="dots")],
        },
    )
    audit, _ = auto(gh, clock, scopes)
    await audit.reconcile(AUDIT_KEY)
    assert [c for c in gh.calls if c.startswith("hooks")] == ["hooks alice", "hooks octo", "hooks alice/dots"]
    assert set(audit.audits) == {HookRef("org", "octo", hook_id=1), HookRef("repo", "alice", "dots", 4)}
    assert audit.healthy()


async def test_a_partial_cover_is_audited_but_the_poll_keeps_its_pace() -> None:
    clock = Clock()
    scopes = scopes_of([("octo", None, None), ("other", None, None)])
    gh = FakeGitHub(clock, listings={"octo": [info("octo", 1)], "other": [info("other", 2, active=False)]})
    audit, _ = auto(gh, clock, scopes)
    await audit.reconcile(AUDIT_KEY)
    assert list(audit.audits) == [HookRef("org", "octo", hook_id=1)]
    assert audit.audits[HookRef("org", "octo", hook_id=1)].healthy()
    assert not audit.healthy()
    assert "no hook found for organization other" in audit.reason


async def test_the_url_prefix_picks_our_hook() -> None:
    clock = Clock()
    gh = FakeGitHub(clock, listings={"octo": [info("octo", 1, url="https://chat.example/"), info("octo", 2)]})
    audit, _ = auto(gh, clock, OCTO, url_prefix="https://ci.example/")
    await audit.reconcile(AUDIT_KEY)
    assert list(audit.audits) == [HookRef("org", "octo", hook_id=2)]


@pytest.mark.parametrize(
    ("app_url", "expected"), [(URL, [HookRef("app")]), ("", [HookRef("org", "octo", hook_id=3)])]
)
async def test_app_credentials_use_the_apps_hook_else_the_organizations(
    app_url: str, expected: list[HookRef]
) -> None:
    clock = Clock()
    gh = FakeGitHub(clock, listings={"octo": [info("octo", 3)]}, app_url=app_url)
    audit, _ = auto(gh, clock, OCTO)
    await audit.reconcile(AUDIT_KEY)
    assert gh.calls[0] == "app hook"
    assert list(audit.audits) == expected
    assert audit.healthy()


async def test_new_scopes_rediscover_and_keep_the_audits_found_again() -> None:
    clock = Clock()
    current = [OCTO]
    gh = FakeGitHub(clock, listings={"octo": [info("octo", 1)], "other": [info("other", 2)]})
    audit, _ = auto(gh, clock, OCTO)
    audit.scopes = lambda: current[0]
    await audit.reconcile(AUDIT_KEY)
    first = audit.audits[HookRef("org", "octo", hook_id=1)]
    current[0] = scopes_of([("octo", None, None), ("other", None, None)])
    clock.now += 1
    await audit.reconcile(AUDIT_KEY)
    assert audit.audits[HookRef("org", "octo", hook_id=1)] is first
    assert HookRef("org", "other", hook_id=2) in audit.audits
    assert [c for c in gh.calls if c.startswith("hooks")] == ["hooks octo", "hooks octo", "hooks other"]


async def test_a_failed_discovery_or_a_failing_hook_is_retried_and_the_poll_told_once() -> None:
    clock = Clock()
    error = GitHubServerError(status=502, endpoint="GET /orgs/{org}/hooks", message="Bad Gateway")
    gh = FakeGitHub(clock, listings={"octo": error})
    audit, unhealthy = auto(gh, clock, OCTO, retry=600.0)
    await audit.reconcile(AUDIT_KEY)
    assert audit.state.failed
    assert sample(audit, "runnerd_webhook_audit_discoveries_total", outcome="failed") == 1
    gh.listings["octo"] = [info("octo", 1)]
    clock.now += 600
    await audit.reconcile(AUDIT_KEY)
    assert audit.healthy()
    gh.fail = NotFoundError(
        status=404, endpoint="GET /orgs/{org}/hooks/{hook_id}/deliveries", message="Not Found"
    )
    for _ in range(3):  # the hook was deleted: two intervals later the poll is told, once
        clock.now += 60
        await audit.reconcile(AUDIT_KEY)
    assert not audit.healthy()
    assert unhealthy == [1]
    gh.fail = None
    gh.listings["octo"] = [info("octo", 9)]  # a new hook
    clock.now += 600
    await audit.reconcile(AUDIT_KEY)
    assert list(audit.audits) == [HookRef("org", "octo", hook_id=9)]


async def test_discovery_calls_are_spent_from_the_polls_budget() -> None:
    clock = Clock()
    gh = FakeGitHub(clock, listings={"octo": [info("octo", 1)]})
    audit, _ = auto(gh, clock, OCTO, ceiling=0)
    await audit.reconcile(AUDIT_KEY)
    assert gh.calls == []
    assert audit.state.failed
    assert not audit.healthy()
