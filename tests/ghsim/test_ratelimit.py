"""Primary and secondary rate limits, over HTTP and in the pure limiter."""

from __future__ import annotations

import pytest

from ghsim import ManualClock, SimConfig, Simulator
from ghsim.ratelimit import RateLimiter

from .client import GitHub, Resp
from .conftest import Setup

RUNNERS = "/orgs/octo-org/actions/runners"


def rate(r: Resp) -> tuple[int, int, int, str]:
    return (
        int(r.header("X-RateLimit-Limit") or -1),
        int(r.header("X-RateLimit-Remaining") or -1),
        int(r.header("X-RateLimit-Used") or -1),
        r.header("X-RateLimit-Resource") or "",
    )


async def test_headers_count_down(gh: GitHub, sim: Simulator) -> None:
    first = await gh.get(RUNNERS)
    second = await gh.get(RUNNERS)
    assert rate(first) == (5000, 4999, 1, "core")
    assert rate(second) == (5000, 4998, 2, "core")
    assert int(first.header("X-RateLimit-Reset") or 0) == int(sim.world.now()) + 3600


async def test_registration_calls_use_their_own_budget(gh: GitHub) -> None:
    await gh.get(RUNNERS)
    r = await gh.post(f"{RUNNERS}/registration-token")
    assert rate(r) == (10_000, 9_999, 1, "actions_runner_registration")
    assert rate(await gh.get(RUNNERS)) == (5000, 4998, 2, "core")


async def test_not_modified_and_rate_limit_calls_are_free(gh: GitHub) -> None:
    first = await gh.get(RUNNERS)
    cached = await gh.get(RUNNERS, headers={"If-None-Match": first.header("ETag") or ""})
    assert (cached.status, rate(cached)[1]) == (304, 4999)
    overview = await gh.get("/rate_limit")
    assert overview.body["resources"]["core"]["remaining"] == 4999
    assert rate(await gh.get(RUNNERS)) == (5000, 4998, 2, "core")


async def test_budgets_are_per_principal(gh: GitHub, sim: Simulator, setup: Setup) -> None:
    await gh.get(RUNNERS)
    other = await gh.get("/repos/octo-org/app/actions/runners", token=setup.repo_only)
    assert rate(other)[1] == 4999


async def test_exhaustion_and_reset(gh: GitHub, setup: Setup) -> None:
    await gh.sim("POST", "/ratelimit", {"token": setup.admin, "remaining": 1})
    last = await gh.get(RUNNERS)
    assert (last.status, rate(last)[1]) == (200, 0)
    refused = await gh.get(RUNNERS)
    assert refused.status == 403
    assert refused.body["message"].startswith("API rate limit exceeded for user ID")
    assert refused.body["documentation_url"].startswith("https://docs.github.com/rest/")
    assert rate(refused)[1] == 0
    # the other budget is untouched
    assert (await gh.post(f"{RUNNERS}/registration-token")).status == 201
    await gh.sim("POST", "/ratelimit", {"token": setup.admin, "reset": True})
    restored = await gh.get(RUNNERS)
    assert (restored.status, rate(restored)[1]) == (200, 4999)


async def test_exhaustion_with_429_and_window_reset(
    gh: GitHub, sim: Simulator, setup: Setup, clock: ManualClock
) -> None:
    await gh.sim("PATCH", "/config", {"primary": {"pat": 2, "status": 429}})
    assert rate(await gh.get(RUNNERS))[:2] == (2, 1)
    await gh.get(RUNNERS)
    refused = await gh.get(RUNNERS)
    assert (refused.status, refused.body["status"]) == (429, "429")
    clock.advance(3600)
    assert (await gh.get(RUNNERS)).status == 200


async def test_primary_limits_can_be_switched_off(gh: GitHub, sim: Simulator) -> None:
    sim.core.config.primary.pat = 1
    sim.core.config.primary.enabled = False
    for _ in range(3):
        assert (await gh.get(RUNNERS)).status == 200


async def test_installation_tokens_share_the_installation_budget(
    gh: GitHub, sim: Simulator, setup: Setup
) -> None:
    from .test_auth import installation_token

    a = await installation_token(gh, sim, setup, setup.inst_octo)
    b = await installation_token(gh, sim, setup, setup.inst_octo)
    await gh.get(RUNNERS, token=a)
    assert rate(await gh.get(RUNNERS, token=b))[1] == 4998


async def test_secondary_points_per_minute(gh: GitHub, sim: Simulator, clock: ManualClock) -> None:
    clock.set(clock.now() - clock.now() % 60 + 60)  # start of a minute
    sim.core.config.secondary.points_per_minute = 11
    for _ in range(2):
        assert (await gh.post(f"{RUNNERS}/registration-token")).status == 201  # 5 points each
    assert (await gh.get(RUNNERS)).status == 200  # 1 point: 11 used
    refused = await gh.get(RUNNERS)
    assert refused.status == 403
    assert refused.body["message"].startswith("You have exceeded a secondary rate limit")
    assert refused.header("Retry-After") == "60"
    clock.advance(60)
    assert (await gh.get(RUNNERS)).status == 200


async def test_secondary_limits_can_be_switched_off(gh: GitHub, sim: Simulator) -> None:
    sim.core.config.secondary.points_per_minute = 1
    sim.core.config.secondary.enabled = False
    for _ in range(3):
        assert (await gh.get(RUNNERS)).status == 200


def test_concurrency_limit(clock: ManualClock) -> None:
    config = SimConfig()
    config.secondary.max_concurrent = 2
    limiter = RateLimiter(clock, config)
    assert limiter.enter("pat:1", "GET").allowed
    assert limiter.enter("pat:1", "GET").allowed
    third = limiter.enter("pat:1", "GET")
    assert (third.allowed, third.retry_after, third.reason) == (False, 60, "concurrent requests")
    assert limiter.enter("pat:2", "GET").allowed  # another principal
    limiter.leave("pat:1")
    assert limiter.enter("pat:1", "GET").allowed


def test_set_remaining_then_consume(clock: ManualClock) -> None:
    limiter = RateLimiter(clock, SimConfig())
    limiter.set_remaining("pat:1", "pat", "core", 2)
    assert [limiter.consume("pat:1", "pat", "core").remaining for _ in range(2)] == [1, 0]
    assert limiter.check("pat:1", "pat", "core").allowed is False
    limiter.reset("pat:1")
    assert limiter.check("pat:1", "pat", "core").remaining == 5000


@pytest.mark.parametrize(
    ("kind", "limit"), [("pat", 5000), ("installation", 5000), ("app", 5000), ("anonymous", 60)]
)
def test_default_budgets(clock: ManualClock, kind: str, limit: int) -> None:
    assert RateLimiter(clock, SimConfig()).check("x", kind, "core").limit == limit


async def test_date_header_follows_the_simulator_clock(gh: GitHub, clock: ManualClock) -> None:
    from email.utils import parsedate_to_datetime

    clock.advance(12_345)
    r = await gh.get(RUNNERS)
    assert parsedate_to_datetime(r.header("Date") or "").timestamp() == int(clock.now())
