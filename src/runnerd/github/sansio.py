"""Pure helpers for talking to GitHub's REST API: no I/O, no clock, no randomness of their own.

Everything here takes the current time (and any random draw) as an argument, so the policy of the
adapter -- when a token is stale, how long to back off, when a rate limit lifts, which page comes
next -- is tested table-driven without a network or an event loop (the style of gidgethub's
``sansio`` module, which this package builds on for headers and URL templates).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:  # PyJWT and cryptography cost 9 MiB to import: only GitHub App credentials load them
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

# GitHub rejects App JWTs whose ``exp`` is more than 10 minutes after its own clock. ``iat`` is back-dated
# to absorb clock drift between us and GitHub; ``exp`` stays well under the limit for the same reason.
APP_JWT_BACKDATE_S = 60
APP_JWT_LIFETIME_S = 9 * 60

# GitHub's documented advice for a secondary rate limit without ``retry-after``: wait at least a
# minute, then back off exponentially if it happens again.
SECONDARY_LIMIT_BASE_S = 60.0
SECONDARY_LIMIT_MAX_S = 15 * 60.0
# When ``remaining`` is 0 but ``reset`` is already in the past, still pause a moment.
MIN_PRIMARY_PAUSE_S = 1.0

_SECONDARY_MARKERS = ("secondary rate limit", "abuse detection", "abuse-rate-limits")


@dataclass(frozen=True)
class RateLimit:
    """One rate-limit bucket as GitHub reported it (``x-ratelimit-*`` headers or ``GET /rate_limit``).

    ``reset_at`` is in seconds since the epoch on *our* clock (corrected for the server's clock when the
    response carried a ``Date`` header); ``observed_at`` is when we saw it.
    """

    resource: str
    limit: int
    remaining: int
    used: int | None
    reset_at: float
    observed_at: float


def endpoint_key(method: str, template: str) -> str:
    """The name a call is counted under, e.g.
    ``"POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig"``."""
    return f"{method.upper()} {template}"


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A plain dict of ``headers`` with lower-case names (the last value wins for repeated names)."""
    return {name.lower(): value for name, value in headers.items()}


# -- Link headers (RFC 8288) -----------------------------------------------------------------------

_LINK_VALUE = re.compile(r"<(?P<url>[^>]*)>(?P<params>[^,<]*)")
_LINK_PARAM = re.compile(
    r";\s*(?P<name>[A-Za-z0-9!#$&+.^_`|~-]+)\s*=\s*(?:\"(?P<quoted>[^\"]*)\"|(?P<token>[^;\s]+))"
)


def parse_link_header(value: str | None) -> dict[str, str]:
    """``{rel: url}`` from a ``Link`` header (``rel`` may name several relations: ``rel="next last"``).

    The first link for a relation wins. A missing or malformed header gives ``{}``.
    """
    links: dict[str, str] = {}
    if not value:
        return links
    for match in _LINK_VALUE.finditer(value):
        url = match.group("url").strip()
        for param in _LINK_PARAM.finditer(match.group("params")):
            if param.group("name").lower() != "rel":
                continue
            rels = param.group("quoted") if param.group("quoted") is not None else param.group("token")
            for rel in rels.split():
                links.setdefault(rel.lower(), url)
    return links


def next_page_url(link_header: str | None) -> str | None:
    return parse_link_header(link_header).get("next")


def same_origin(url: str, base_url: str) -> bool:
    """Whether ``url`` has the scheme, host and port of ``base_url`` (so our credentials may go there)."""
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme.lower(), a.hostname, _port(a.scheme, a.port)) == (
        b.scheme.lower(),
        b.hostname,
        _port(b.scheme, b.port),
    )


def _port(scheme: str, port: int | None) -> int | None:
    if port is not None:
        return port
    return {"https": 443, "http": 80}.get(scheme.lower())


# -- time stamps -----------------------------------------------------------------------------------


def parse_timestamp(value: str) -> float:
    """Seconds since the epoch from GitHub's ISO 8601 time stamps (``2026-01-22T12:13:35Z``,
    ``2026-01-22T12:13:35.123-08:00``). Raises ``ValueError`` for anything else (including no zone)."""
    parsed = dt.datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        raise ValueError(f"time stamp without a time zone: {value!r}")
    return parsed.timestamp()


def parse_http_date(value: str | None) -> float | None:
    """Seconds since the epoch from an HTTP date (``Date``, ``Retry-After``); ``None`` if unparseable."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def needs_refresh(expires_at: float, now: float, min_validity_s: float) -> bool:
    """Whether a credential expiring at ``expires_at`` has less than ``min_validity_s`` left at ``now``."""
    return expires_at - now < min_validity_s


# -- rate limits -----------------------------------------------------------------------------------


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def server_clock_offset(headers: Mapping[str, str], now: float) -> float:
    """Seconds to add to a server time stamp to put it on our clock (0 when the response has no ``Date``)."""
    server_now = parse_http_date(lower_headers(headers).get("date"))
    return 0.0 if server_now is None else now - server_now


def parse_rate_limit(headers: Mapping[str, str], now: float) -> RateLimit | None:
    """The bucket a response reported in its ``x-ratelimit-*`` headers, or ``None`` if incomplete."""
    h = lower_headers(headers)
    limit = _int(h.get("x-ratelimit-limit"))
    remaining = _int(h.get("x-ratelimit-remaining"))
    reset = _int(h.get("x-ratelimit-reset"))
    if limit is None or remaining is None or reset is None:
        return None
    resource = (h.get("x-ratelimit-resource") or "core").strip() or "core"
    return RateLimit(
        resource=resource,
        limit=limit,
        remaining=remaining,
        used=_int(h.get("x-ratelimit-used")),
        reset_at=reset + server_clock_offset(h, now),
        observed_at=now,
    )


def parse_retry_after(value: str | None, now: float, *, server_offset: float = 0.0) -> float | None:
    """When a ``Retry-After`` (delay in seconds, or an HTTP date) lets us go again; ``None`` if absent."""
    if value is None or not value.strip():
        return None
    seconds = _int(value)
    if seconds is not None:
        return now + max(seconds, 0)
    when = parse_http_date(value)
    return None if when is None else max(when + server_offset, now)


def is_secondary_limit_message(message: str | None) -> bool:
    text = (message or "").lower()
    return any(marker in text for marker in _SECONDARY_MARKERS)


@dataclass(frozen=True)
class RateLimitVerdict:
    """Why a response was a rate limit: which gate to close (``"*"`` for every call) and until when."""

    resume_at: float
    key: str
    secondary: bool


def classify_rate_limit(
    status: int,
    headers: Mapping[str, str],
    message: str | None,
    *,
    now: float,
    secondary_strikes: int = 0,
) -> RateLimitVerdict | None:
    """Whether a response is a rate limit, following GitHub's documented rules.

    * ``retry-after`` on a 403/429: wait that long (a secondary limit; it applies to every call).
    * ``x-ratelimit-remaining: 0`` on a 403/429: the primary limit of that resource is spent until
      ``x-ratelimit-reset``.
    * a 429, or a 403 whose message names a secondary rate limit, without either header: wait a minute,
      doubling for each consecutive strike (``secondary_strikes`` before this one), up to 15 minutes.

    Any other 403 is a permission problem, not a rate limit (``None``).
    """
    if status not in (403, 429):
        return None
    h = lower_headers(headers)
    offset = server_clock_offset(h, now)
    retry_at = parse_retry_after(h.get("retry-after"), now, server_offset=offset)
    if retry_at is not None:
        return RateLimitVerdict(resume_at=retry_at, key="*", secondary=True)
    bucket = parse_rate_limit(h, now)
    if bucket is not None and bucket.remaining == 0:
        return RateLimitVerdict(
            resume_at=max(bucket.reset_at, now + MIN_PRIMARY_PAUSE_S), key=bucket.resource, secondary=False
        )
    if status == 429 or is_secondary_limit_message(message):
        pause = min(SECONDARY_LIMIT_BASE_S * 2.0 ** max(secondary_strikes, 0), SECONDARY_LIMIT_MAX_S)
        return RateLimitVerdict(resume_at=now + pause, key="*", secondary=True)
    return None


def exhausted_until(bucket: RateLimit | None, now: float) -> float | None:
    """After a *successful* response: if it spent the last call of its bucket, when the bucket refills."""
    if bucket is None or bucket.remaining > 0:
        return None
    return max(bucket.reset_at, now + MIN_PRIMARY_PAUSE_S)


# -- retries ---------------------------------------------------------------------------------------


def backoff_delay(attempt: int, *, base_s: float, max_s: float, draw: float) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential, capped, with "equal jitter".

    The nominal delay ``min(max_s, base_s * 2**(attempt-1))`` is halved and the other half is scaled
    by ``draw`` (uniform in [0, 1)), so concurrent retries spread out but never retry at once.
    """
    nominal = min(max_s, base_s * 2.0 ** max(attempt - 1, 0))
    draw = min(max(draw, 0.0), 1.0)
    return nominal / 2 + nominal / 2 * draw


def is_retryable_status(status: int) -> bool:
    """Server-side failures worth retrying for an idempotent call."""
    return status >= 500


# -- GitHub App JWT --------------------------------------------------------------------------------


def app_jwt_claims(app_id: str, now: float) -> dict[str, Any]:
    issued_at = int(now) - APP_JWT_BACKDATE_S
    return {"iat": issued_at, "exp": issued_at + APP_JWT_BACKDATE_S + APP_JWT_LIFETIME_S, "iss": app_id}


def make_app_jwt(app_id: str, private_key: RSAPrivateKey, now: float) -> str:
    """An RS256 JWT that authenticates as the GitHub App itself (to mint installation tokens)."""
    import jwt  # only with App credentials (see the imports)

    token: str = jwt.encode(app_jwt_claims(app_id, now), private_key, algorithm="RS256")
    return token


# -- error bodies ----------------------------------------------------------------------------------


def error_message(data: Any) -> str | None:
    """GitHub's ``message`` (with any 422 ``errors`` details) from a decoded error body."""
    if isinstance(data, str):
        return data.strip()[:500] or None
    if not isinstance(data, Mapping):
        return None
    message = data.get("message")
    text = str(message) if message is not None else None
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        details = []
        for err in errors[:5]:
            if isinstance(err, Mapping):
                details.append(str(err.get("message") or err.get("code") or err.get("field") or err))
            else:
                details.append(str(err))
        text = f"{text or 'validation failed'}: {'; '.join(details)}"
    return text
