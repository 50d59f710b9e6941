"""Deterministic hashes of templates, stable across processes, Python versions and machines.

``template_hash`` is what ends up in the ``runner-template-hash`` / ``pod-template-hash`` labels:
canonical JSON (sorted keys, no whitespace, UTF-8) hashed with SHA-256, truncated to 40 bits and
written as 10 lowercase hex digits, which is always a valid label value. Python's ``hash()`` is
salted per process and must never be used for this.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The alphabet of the API server's ``generateName`` suffixes (no vowels, no look-alikes)."""
SUFFIX_LENGTH = 5
"""Characters ``generateName`` adds."""

HASH_LENGTH = 10
"""Hex digits kept (40 bits): a collision needs ~10^6 distinct templates of one owner."""

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_VALUE_MAX = 63


def _normalise(value: Any, path: str) -> Any:
    """JSON values in canonical form: keys with ``None`` and empty lists dropped, integral floats as ints.

    An absent list and an empty one mean the same in every Kubernetes and ARC field, and the
    API types leave empty lists out when serialising, so both hash alike. Empty objects are kept:
    ``emptyDir: {}`` means something.
    """
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{path}: object keys must be strings, got {type(k).__name__}")
            if v is None or (isinstance(v, list) and not v):
                continue
            out[k] = _normalise(v, f"{path}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_normalise(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value!r} is not valid JSON")
        return int(value) if value.is_integer() else value
    raise TypeError(f"{path}: {type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> str:
    """The canonical JSON text of a JSON-shaped value (see :func:`template_hash`)."""
    return json.dumps(
        _normalise(value, "$"), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def template_hash(spec: Any) -> str:
    """A 10-hex-digit hash of a JSON-shaped value; equal for equal content, whatever the key order."""
    digest = hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()
    return digest[:HASH_LENGTH]


def is_label_value(text: str) -> bool:
    return len(text) <= LABEL_VALUE_MAX and bool(_LABEL_VALUE.match(text))


def label_value(text: str) -> str:
    """``text`` if it is a valid label value; else a valid one made of its start and a hash of it."""
    if is_label_value(text):
        return text
    suffix = template_hash(text)[:8]
    head = re.sub(r"[^-A-Za-z0-9_.]", "-", text)[: LABEL_VALUE_MAX - len(suffix) - 1]
    head = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", head)
    return f"{head}-{suffix}" if head else suffix
