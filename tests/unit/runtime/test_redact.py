from __future__ import annotations

import pytest

from runnerd.runtime.errors import (
    AlreadyExists,
    ApiError,
    Conflict,
    NotFound,
    ResourceExpired,
    ServerError,
    TooManyRequests,
    api_error,
    from_status,
)
from runnerd.runtime.redact import describe_exception, redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("headers={'Authorization': 'Bearer abc.def-ghi'}", "abc.def-ghi"),
        ("Authorization: token ghp_aaaaBBBB1111", "ghp_aaaaBBBB1111"),
        ("sent RemoteAuth xyz123 to the service", "xyz123"),
        ("jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl in body", "eyJzdWIiOiJ4In0"),
        ("url=https://x/y?access_token=s3cret&page=2", "s3cret"),
        ('{"token": "AAAB3Nza", "expires_at": "2026"}', "AAAB3Nza"),
        ("password=hunter2", "hunter2"),
        ("github_pat_11ABCDEFG_abcdefghijklmnop leaked", "github_pat_11ABCDEFG_abcdefghijklmnop"),
        ("client_secret: 'shh'", "shh"),
    ],
)
def test_redact_removes_credentials(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "***" in redact(text)


@pytest.mark.parametrize(
    "text", ["409 Conflict: the object has been modified", "runner r1 registered with id 42", "page=2"]
)
def test_redact_keeps_ordinary_text(text: str) -> None:
    assert redact(text) == text


def test_describe_exception() -> None:
    assert describe_exception(ValueError()) == "ValueError"
    assert describe_exception(ValueError("Bearer abc")) == "ValueError: Bearer ***"
    try:
        raise RuntimeError("password=x")
    except RuntimeError as exc:
        text = describe_exception(exc, with_traceback=True)
    assert "Traceback" in text
    assert "password=x" not in text


@pytest.mark.parametrize(
    ("status", "reason", "cls"),
    [
        (404, "NotFound", NotFound),
        (409, "Conflict", Conflict),
        (409, "AlreadyExists", AlreadyExists),
        (410, "Expired", ResourceExpired),
        (429, "TooManyRequests", TooManyRequests),
        (500, "InternalError", ServerError),
        (0, "", ServerError),
        (418, "Teapot", ApiError),
    ],
)
def test_error_taxonomy(status: int, reason: str, cls: type[ApiError]) -> None:
    error = api_error(status, reason, "msg")
    assert type(error) is cls
    assert (error.status, error.reason, error.message) == (status, reason, "msg")


def test_from_status_reads_code_and_retry_after() -> None:
    error = from_status(
        {
            "kind": "Status",
            "code": 429,
            "reason": "TooManyRequests",
            "message": "slow",
            "details": {"retryAfterSeconds": 3},
        }
    )
    assert isinstance(error, TooManyRequests)
    assert error.retry_after == 3.0
    assert str(error) == "429 TooManyRequests: slow"
    assert isinstance(from_status({}, http_status=410), ResourceExpired)
