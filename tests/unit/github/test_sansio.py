"""Table-driven tests of the adapter's pure helpers."""

from __future__ import annotations

import email.utils
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from runnerd.github import sansio
from runnerd.github.sansio import RateLimit, RateLimitVerdict

pytestmark = pytest.mark.timeout(10)

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, {}),
        ("", {}),
        ("garbage", {}),
        (
            '<https://api.github.com/orgs/o/actions/runners?per_page=100&page=2>; rel="next", '
            '<https://api.github.com/orgs/o/actions/runners?per_page=100&page=5>; rel="last"',
            {
                "next": "https://api.github.com/orgs/o/actions/runners?per_page=100&page=2",
                "last": "https://api.github.com/orgs/o/actions/runners?per_page=100&page=5",
            },
        ),
        (
            '<https://x/?page=1>; rel="prev first", <https://x/?page=3>;rel=next',
            {"prev": "https://x/?page=1", "first": "https://x/?page=1", "next": "https://x/?page=3"},
        ),
        ('<https://x/?page=2>; title="a"; REL="Next"', {"next": "https://x/?page=2"}),
        ('<https://x/a>; rel="next", <https://x/b>; rel="next"', {"next": "https://x/a"}),
        ('<https://x/?after=Y3Vyc29y%3D>; rel="next"', {"next": "https://x/?after=Y3Vyc29y%3D"}),
    ],
)
def test_parse_link_header(header: str | None, expected: dict[str, str]) -> None:
    assert sansio.parse_link_header(header) == expected
    assert sansio.next_page_url(header) == expected.get("next")


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("https://api.github.com/orgs/o?page=2", "https://api.github.com", True),
        ("https://api.github.com:443/x", "https://api.github.com", True),
        ("https://API.github.com/x", "https://api.github.com", True),
        ("http://api.github.com/x", "https://api.github.com", False),
        ("https://evil.example/x", "https://api.github.com", False),
        ("https://ghes.example.com/api/v3/x", "https://ghes.example.com/api/v3", True),
        ("http://127.0.0.1:8080/x", "http://127.0.0.1:8081", False),
    ],
)
def test_same_origin(url: str, base: str, expected: bool) -> None:
    assert sansio.same_origin(url, base) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-22T12:13:35Z", 1769084015.0),
        ("2026-01-22T12:13:35.500Z", 1769084015.5),
        ("2026-01-22T04:13:35-08:00", 1769084015.0),
        ("2026-01-22T13:13:35+01:00", 1769084015.0),
    ],
)
def test_parse_timestamp(value: str, expected: float) -> None:
    assert sansio.parse_timestamp(value) == expected


@pytest.mark.parametrize("value", ["2026-01-22T12:13:35", "yesterday", ""])
def test_parse_timestamp_rejects(value: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError
        sansio.parse_timestamp(value)


@pytest.mark.parametrize(
    ("expires_at", "now", "margin", "expected"),
    [
        (NOW + 3600, NOW, 300, False),
        (NOW + 301, NOW, 300, False),
        (NOW + 300, NOW, 300, False),
        (NOW + 299, NOW, 300, True),
        (NOW - 1, NOW, 300, True),
        (NOW + 599, NOW, 600, True),
    ],
)
def test_needs_refresh(expires_at: float, now: float, margin: float, expected: bool) -> None:
    assert sansio.needs_refresh(expires_at, now, margin) is expected


def _date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "10"}, None),
        (
            {
                "X-RateLimit-Limit": "5000",
                "X-RateLimit-Remaining": "4990",
                "X-RateLimit-Used": "10",
                "X-RateLimit-Reset": str(int(NOW) + 600),
                "X-RateLimit-Resource": "core",
            },
            RateLimit("core", 5000, 4990, 10, NOW + 600, NOW),
        ),
        (  # no resource header: core; no used header: None
            {"x-ratelimit-limit": "60", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 5)},
            RateLimit("core", 60, 0, None, NOW + 5, NOW),
        ),
        (  # the server's clock is 100 s ahead of ours: its reset is 100 s earlier on our clock
            {
                "x-ratelimit-limit": "10000",
                "x-ratelimit-remaining": "9999",
                "x-ratelimit-reset": str(int(NOW) + 700),
                "x-ratelimit-resource": "actions_runner_registration",
                "date": _date(NOW + 100),
            },
            RateLimit("actions_runner_registration", 10000, 9999, None, NOW + 600, NOW),
        ),
        ({"x-ratelimit-limit": "x", "x-ratelimit-remaining": "1", "x-ratelimit-reset": "1"}, None),
    ],
)
def test_parse_rate_limit(headers: dict[str, str], expected: RateLimit | None) -> None:
    assert sansio.parse_rate_limit(headers, NOW) == expected


def _rl(remaining: int, reset: float, resource: str = "core") -> dict[str, str]:
    return {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": str(int(reset)),
        "x-ratelimit-resource": resource,
    }


@pytest.mark.parametrize(
    ("status", "headers", "message", "strikes", "expected"),
    [
        (200, _rl(0, NOW + 60), None, 0, None),
        (404, {}, None, 0, None),
        (403, _rl(10, NOW + 60), "Resource not accessible by integration", 0, None),  # permissions
        (403, _rl(0, NOW + 1234), "API rate limit exceeded", 0, RateLimitVerdict(NOW + 1234, "core", False)),
        (
            429,
            _rl(0, NOW + 30, "actions_runner_registration"),
            None,
            0,
            RateLimitVerdict(NOW + 30, "actions_runner_registration", False),
        ),
        (403, _rl(0, NOW - 5), None, 0, RateLimitVerdict(NOW + 1, "core", False)),  # reset already past
        (403, {"retry-after": "42", **_rl(100, NOW + 999)}, None, 0, RateLimitVerdict(NOW + 42, "*", True)),
        (429, {"Retry-After": _date(NOW + 90)}, None, 0, RateLimitVerdict(NOW + 90, "*", True)),
        (  # Retry-After date on a server clock 10 s ahead
            429,
            {"retry-after": _date(NOW + 90), "date": _date(NOW + 10)},
            None,
            0,
            RateLimitVerdict(NOW + 80, "*", True),
        ),
        (
            403,
            _rl(4000, NOW + 60),
            "You have exceeded a secondary rate limit.",
            0,
            RateLimitVerdict(NOW + 60, "*", True),
        ),
        (403, {}, "You have exceeded a secondary rate limit.", 2, RateLimitVerdict(NOW + 240, "*", True)),
        (429, {}, None, 10, RateLimitVerdict(NOW + 900, "*", True)),  # capped at 15 minutes
        (
            403,
            {},
            "You have triggered an abuse detection mechanism.",
            0,
            RateLimitVerdict(NOW + 60, "*", True),
        ),
    ],
)
def test_classify_rate_limit(
    status: int, headers: dict[str, str], message: str | None, strikes: int, expected: RateLimitVerdict | None
) -> None:
    assert (
        sansio.classify_rate_limit(status, headers, message, now=NOW, secondary_strikes=strikes) == expected
    )


@pytest.mark.parametrize(
    ("bucket", "expected"),
    [
        (None, None),
        (RateLimit("core", 5000, 1, 4999, NOW + 60, NOW), None),
        (RateLimit("core", 5000, 0, 5000, NOW + 60, NOW), NOW + 60),
        (RateLimit("core", 5000, 0, 5000, NOW - 60, NOW), NOW + 1),
    ],
)
def test_exhausted_until(bucket: RateLimit | None, expected: float | None) -> None:
    assert sansio.exhausted_until(bucket, NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("0", NOW), ("120", NOW + 120), ("-5", NOW), ("soon", None)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert sansio.parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("attempt", "draw", "expected"),
    [
        (1, 0.0, 0.25),
        (1, 1.0, 0.5),
        (2, 0.0, 0.5),
        (3, 0.5, 1.5),
        (4, 1.0, 4.0),
        (10, 0.0, 4.0),  # capped nominal 8 s, halved
        (10, 1.0, 8.0),
        (1, 7.0, 0.5),  # draws are clamped
    ],
)
def test_backoff_delay(attempt: int, draw: float, expected: float) -> None:
    assert sansio.backoff_delay(attempt, base_s=0.5, max_s=8.0, draw=draw) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("status", "expected"), [(200, False), (404, False), (422, False), (500, True), (502, True), (503, True)]
)
def test_is_retryable_status(status: int, expected: bool) -> None:
    assert sansio.is_retryable_status(status) is expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (None, None),
        ({"message": "Not Found", "documentation_url": "x"}, "Not Found"),
        ("  <html>oops</html> ", "<html>oops</html>"),
        ([1, 2], None),
        (
            {
                "message": "Validation Failed",
                "errors": [{"resource": "Runner", "code": "invalid", "field": "labels"}],
            },
            "Validation Failed: invalid",
        ),
        ({"message": "Validation Failed", "errors": ["name taken"]}, "Validation Failed: name taken"),
    ],
)
def test_error_message(data: Any, expected: str | None) -> None:
    assert sansio.error_message(data) == expected


@pytest.mark.parametrize(
    ("method", "template", "expected"),
    [
        (
            "post",
            "/repos/{owner}/{repo}/actions/runners/generate-jitconfig",
            "POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig",
        ),
        ("GET", "/rate_limit", "GET /rate_limit"),
    ],
)
def test_endpoint_key(method: str, template: str, expected: str) -> None:
    assert sansio.endpoint_key(method, template) == expected


def test_app_jwt_claims_and_signature(rsa_key: rsa.RSAPrivateKey) -> None:
    token = sansio.make_app_jwt("12345", rsa_key, NOW + 0.9)
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(
        token, rsa_key.public_key(), algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False}
    )
    assert header["alg"] == "RS256"
    assert claims == {"iss": "12345", "iat": int(NOW) - 60, "exp": int(NOW) + 540}
    assert claims["exp"] - claims["iat"] <= 600
