"""Credentials as GitHub checks them: PAT scopes, App JWTs, installation tokens."""

from __future__ import annotations

import pytest

from ghsim import ManualClock, Simulator
from ghsim.auth import JWT_EXPIRED, JWT_IAT, JWT_TOO_LONG, JWT_UNDECODABLE

from .client import GitHub
from .conftest import Setup, make_jwt, other_key

ORG_RUNNERS = "/orgs/octo-org/actions/runners"
REPO_RUNNERS = "/repos/octo-org/app/actions/runners"


def assert_error(body: dict[str, object], status: int, message: str) -> None:
    assert body["message"] == message
    assert body["status"] == str(status)
    assert str(body["documentation_url"]).startswith("https://docs.github.com/")


@pytest.mark.parametrize("scheme", ["token", "Bearer", "bearer"])
async def test_pat_with_either_scheme(gh: GitHub, setup: Setup, scheme: str) -> None:
    r = await gh.get(ORG_RUNNERS, auth=f"{scheme} {setup.admin}")
    assert r.status == 200
    assert r.header("X-OAuth-Scopes") == "repo, admin:org, manage_runners:enterprise"


async def test_missing_and_wrong_credentials(gh: GitHub) -> None:
    missing = await gh.get(ORG_RUNNERS, token="")
    assert missing.status == 401
    assert_error(missing.body, 401, "Requires authentication")
    wrong = await gh.get(ORG_RUNNERS, token="ghp_" + "x" * 36)
    assert wrong.status == 401
    assert_error(wrong.body, 401, "Bad credentials")
    garbage = await gh.get(ORG_RUNNERS, auth="Basic Zm9vOmJhcg==")
    assert garbage.status == 401


@pytest.mark.parametrize(
    ("token", "path", "accepted"),
    [
        ("repo_only", ORG_RUNNERS, "admin:org, manage_runners:org"),
        ("org_only", REPO_RUNNERS, "repo"),
        ("org_only", "/enterprises/acme/actions/runners", "manage_runners:enterprise, admin:enterprise"),
    ],
)
async def test_pat_missing_scope(gh: GitHub, setup: Setup, token: str, path: str, accepted: str) -> None:
    r = await gh.get(path, token=getattr(setup, token))
    assert r.status == 403
    assert_error(r.body, 403, "Resource not accessible by personal access token")
    assert r.header("X-Accepted-OAuth-Scopes") == accepted


async def test_pat_without_access_sees_404(gh: GitHub, setup: Setup) -> None:
    assert (await gh.get(ORG_RUNNERS, token=setup.restricted)).status == 404
    assert (await gh.get("/orgs/other-org/actions/runners", token=setup.restricted)).status == 200


async def test_expired_pat(gh: GitHub, sim: Simulator, clock: ManualClock) -> None:
    pat = sim.world.create_pat("temp", expires_in=60).token
    assert (await gh.get(ORG_RUNNERS, token=pat)).status == 200
    clock.advance(61)
    r = await gh.get(ORG_RUNNERS, token=pat)
    assert_error(r.body, 401, "Bad credentials")


# ---- GitHub App JWTs ----------------------------------------------------------------------------


async def installation_token(
    gh: GitHub, sim: Simulator, setup: Setup, installation: int, **body: object
) -> str:
    r = await gh.post(
        f"/app/installations/{installation}/access_tokens",
        token=make_jwt(setup, sim.world.now()),
        json=body or None,
    )
    assert r.status == 201, r.body
    return str(r.body["token"])


async def test_valid_jwt_by_app_id_or_client_id(gh: GitHub, sim: Simulator, setup: Setup) -> None:
    now = sim.world.now()
    assert (await gh.get("/app", token=make_jwt(setup, now))).status == 200
    client_id = sim.world.apps[setup.app_id].client_id
    assert (await gh.get("/app", token=make_jwt(setup, now, iss=client_id))).status == 200


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"iat": -700, "exp": -100}, JWT_EXPIRED),  # expired
        ({"iat": -60, "exp": 600}, JWT_TOO_LONG),  # exp more than 10 minutes after iat
        ({"iat": 120, "exp": 500}, JWT_IAT),  # issued in the future beyond the clock skew
    ],
)
async def test_bad_jwt_times(
    gh: GitHub, sim: Simulator, setup: Setup, claims: dict[str, int], message: str
) -> None:
    now = sim.world.now()
    token = make_jwt(setup, now, iat=now + claims["iat"], exp=now + claims["exp"])
    r = await gh.get("/app", token=token)
    assert r.status == 401
    assert_error(r.body, 401, message)


async def test_jwt_within_clock_skew_is_accepted(gh: GitHub, sim: Simulator, setup: Setup) -> None:
    now = sim.world.now()
    assert (await gh.get("/app", token=make_jwt(setup, now, iat=now + 30, exp=now + 500))).status == 200


async def test_jwt_signed_with_the_wrong_key(gh: GitHub, sim: Simulator, setup: Setup) -> None:
    token = make_jwt(setup, sim.world.now(), key=other_key()[0])
    r = await gh.get("/app", token=token)
    assert_error(r.body, 401, JWT_UNDECODABLE)


async def test_jwt_of_unknown_app(gh: GitHub, sim: Simulator, setup: Setup) -> None:
    r = await gh.get("/app", token=make_jwt(setup, sim.world.now(), iss="999"))
    assert_error(r.body, 401, JWT_UNDECODABLE)


async def test_jwt_is_not_for_runner_endpoints(gh: GitHub, sim: Simulator, setup: Setup) -> None:
    r = await gh.get(ORG_RUNNERS, token=make_jwt(setup, sim.world.now()))
    assert_error(r.body, 403, "Resource not accessible by integration")


# ---- installation tokens --------------------------------------------------------------------------


async def test_installation_token_works_on_its_account(gh: GitHub, sim: Simulator, setup: Setup) -> None:
    tok = await installation_token(gh, sim, setup, setup.inst_octo)
    assert (await gh.get(ORG_RUNNERS, token=tok)).status == 200
    assert (await gh.get(REPO_RUNNERS, token=tok)).status == 200
    assert (await gh.post(f"{ORG_RUNNERS}/registration-token", token=tok)).status == 201
    assert (await gh.get("/repos/octo-org/app/actions/runs", token=tok)).status == 200


async def test_token_of_another_installation(gh: GitHub, sim: Simulator, setup: Setup) -> None:
    tok = await installation_token(gh, sim, setup, setup.inst_other)
    org = await gh.get(ORG_RUNNERS, token=tok)
    assert_error(org.body, 403, "Resource not accessible by integration")
    repo = await gh.get(REPO_RUNNERS, token=tok)
    assert_error(repo.body, 404, "Not Found")


async def test_installation_token_on_enterprise_endpoints(gh: GitHub, sim: Simulator, setup: Setup) -> None:
    tok = await installation_token(gh, sim, setup, setup.inst_octo)
    r = await gh.get("/enterprises/acme/actions/runners", token=tok)
    assert_error(r.body, 403, "Resource not accessible by integration")


async def test_installation_permissions_are_checked(gh: GitHub, sim: Simulator, setup: Setup) -> None:
    tok = await installation_token(gh, sim, setup, setup.inst_octo, permissions={"administration": "read"})
    assert (await gh.get(REPO_RUNNERS, token=tok)).status == 200
    write = await gh.post(f"{REPO_RUNNERS}/registration-token", token=tok)
    assert_error(write.body, 403, "Resource not accessible by integration")
    org = await gh.get(ORG_RUNNERS, token=tok)  # organization_self_hosted_runners was not requested
    assert org.status == 403


async def test_installation_token_narrowed_to_repositories(gh: GitHub, sim: Simulator, setup: Setup) -> None:
    tok = await installation_token(gh, sim, setup, setup.inst_octo, repositories=["app"])
    assert (await gh.get(REPO_RUNNERS, token=tok)).status == 200
    assert (await gh.get("/repos/octo-org/site/actions/runners", token=tok)).status == 404


async def test_installation_token_expires(
    gh: GitHub, sim: Simulator, setup: Setup, clock: ManualClock
) -> None:
    tok = await installation_token(gh, sim, setup, setup.inst_octo)
    clock.advance(3599)
    assert (await gh.get(ORG_RUNNERS, token=tok)).status == 200
    clock.advance(2)
    r = await gh.get(ORG_RUNNERS, token=tok)
    assert_error(r.body, 401, "Bad credentials")


async def test_installation_token_lifetime_is_configurable(
    gh: GitHub, sim: Simulator, setup: Setup, clock: ManualClock
) -> None:
    sim.core.config.installation_token_ttl_s = 60
    tok = await installation_token(gh, sim, setup, setup.inst_octo)
    clock.advance(61)
    assert (await gh.get(ORG_RUNNERS, token=tok)).status == 401


async def test_registration_token_expires_after_an_hour(gh: GitHub, sim: Simulator, setup: Setup) -> None:
    from datetime import datetime

    r = await gh.post(f"{ORG_RUNNERS}/registration-token")
    expires = datetime.fromisoformat(r.body["expires_at"].replace("Z", "+00:00")).timestamp()
    assert expires == sim.world.now() + 3600
