"""The CRDs' CEL rules, evaluated in Python on raw objects.

The API server enforces the same rules (``x-kubernetes-validations``, generated from the same
:class:`~runnerd.api._codec.Rule` declarations). This copy lets the controller and the tests check
an object without a server, e.g. an object stored before the CRDs were upgraded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args, get_origin

from runnerd.api._codec import ApiObject, fields_of, strip_optional
from runnerd.api.kinds import RESOURCE_BY_KIND


def rule_violations(cls: type[ApiObject], data: Any, path: str = "") -> list[str]:
    """``"<path>: <message>"`` for every rule of ``cls`` (and of its nested types) that ``data`` breaks."""
    if not isinstance(data, Mapping):
        return []
    out: list[str] = []
    for rule in cls.RULES:
        try:
            ok = rule.check(data)
        except (TypeError, ValueError, AttributeError, KeyError):
            ok = False
        if not ok:
            out.append(f"{path or '.'}: {rule.message}")
    for _f, info, tp in fields_of(cls):
        if info.inline or data.get(info.json) is None:
            continue
        value, base, child = data[info.json], strip_optional(tp), f"{path}.{info.json}"
        if get_origin(base) is list:
            (item_tp,) = get_args(base)
            if isinstance(item_tp, type) and issubclass(item_tp, ApiObject) and isinstance(value, list):
                for i, item in enumerate(value):
                    out.extend(rule_violations(item_tp, item, f"{child}[{i}]"))
        elif isinstance(base, type) and issubclass(base, ApiObject):
            out.extend(rule_violations(base, value, child))
    return out


def validate(obj: Mapping[str, Any], kinds: Mapping[str, type[ApiObject]] = RESOURCE_BY_KIND) -> list[str]:
    """Rule violations of a raw object whose ``kind`` picks its type in ``kinds`` (by default the
    ``actions.summerwind.dev`` kinds)."""
    kind = obj.get("kind")
    cls = kinds.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return [f".kind: unknown kind {kind!r}"]
    return rule_violations(cls, obj)
