"""Scrubbing credentials out of text that is about to be logged.

Errors from HTTP clients can quote headers or URLs; GitHub and Kubernetes tokens must never reach a
log. This is a second line of defence: code should not put secrets in exceptions in the first place.
"""

from __future__ import annotations

import re
import traceback

_MASK = "***"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer xyz / 'authorization': 'token xyz' / RemoteAuth xyz
    (
        re.compile(
            r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)((?:bearer|basic|token|remoteauth)\s+)?[^\s'\",}]+"
        ),
        r"\1\2" + _MASK,
    ),
    (re.compile(r"(?i)\b(bearer|remoteauth)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + _MASK),
    # JSON Web Tokens (service-account tokens, GitHub App JWTs)
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), _MASK),
    # GitHub tokens: ghp_, gho_, ghu_, ghs_, ghr_, github_pat_
    (re.compile(r"\b(?:gh[pousr]_|github_pat_)[A-Za-z0-9_]+"), _MASK),
    # key=value / "key": "value" for secret-sounding keys
    (
        re.compile(
            r"(?i)\b(\w*(?:token|password|passwd|secret|api[_-]?key|private[_-]?key))"
            r"(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}&]+"
        ),
        r"\1\2" + _MASK,
    ),
)


def redact(text: str) -> str:
    """``text`` with anything that looks like a credential replaced by ``***``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def describe_exception(exc: BaseException, *, with_traceback: bool = False) -> str:
    """``Type: message`` of an exception (optionally with its traceback), redacted, for a log line."""
    if with_traceback:
        return redact("".join(traceback.format_exception(exc)).rstrip())
    message = str(exc)
    return redact(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
