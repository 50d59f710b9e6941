"""Field declarations and the generic dict <-> dataclass codec used by every API type.

Each API dataclass field is declared with :func:`field`, which records the JSON name and the
schema facts (pattern, enum, minimum, the Kubernetes OpenAPI definition for embedded pod fields,
...). The same declarations drive three things, so they cannot drift apart:

* ``from_dict``: parse the raw dicts the Kubernetes client returns (type-checked, with a path in
  every error),
* ``to_dict``: the inverse (``None`` and empty collections are omitted),
* the CRD ``openAPIV3Schema`` (:mod:`runnerd.api.crds`).

Conventions: scalar fields are ``X | None`` (``None`` = absent, so round trips are lossless and
ARC's defaults are applied by ``effective_*`` properties, never written back); list and map fields
default to empty; fields holding embedded Kubernetes structures (env, volumes, affinity, ...) are
kept as plain JSON (``dict[str, Any]``), exactly as the API server returned them.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

JSON = dict[str, Any]
"""A JSON object as the Kubernetes API returns it (embedded Kubernetes types are kept this way)."""

Quantity = int | str
"""A ``resource.Quantity`` as it appears in JSON: ``"1Gi"``, ``"500m"`` or a bare integer."""


class ApiParseError(ValueError):
    """A raw object does not have the shape the API types require."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Rule:
    """One validation rule, enforced twice with the same message.

    ``cel`` goes into the CRD as an ``x-kubernetes-validations`` entry (the API server enforces it:
    this replaces ARC's admission webhooks); ``check`` is the same predicate in Python, evaluated on
    the raw dict of the object the rule is attached to, for :func:`runnerd.api.validate` and tests.
    """

    cel: str
    message: str
    check: Callable[[Mapping[str, Any]], bool]
    message_expression: str | None = None
    field_path: str | None = None

    def to_schema(self) -> JSON:
        out: JSON = {"rule": self.cel, "message": self.message}
        if self.message_expression is not None:
            out["messageExpression"] = self.message_expression
        if self.field_path is not None:
            out["fieldPath"] = self.field_path
        return out


@dataclass(frozen=True)
class FieldInfo:
    """Schema facts for one field (stored in ``dataclasses.field(metadata=...)``)."""

    json: str
    description: str = ""
    k8s: str | None = None  # OpenAPI definition name of an embedded Kubernetes type
    pattern: str | None = None
    enum: tuple[str, ...] | None = None
    minimum: int | None = None
    min_length: int | None = None
    max_items: int | None = None
    list_map_keys: tuple[str, ...] | None = None  # x-kubernetes-list-type: map with these keys
    list_set: bool = False  # x-kubernetes-list-type: set (no duplicates)
    nullable: bool = False
    required: bool = False
    int64: bool = False
    inline: bool = False  # catch-all for the keys of an inlined Kubernetes struct (RunnerSet)


_META_KEY = "runnerd.api"

_F = TypeVar("_F")


def field(
    json: str,
    description: str = "",
    *,
    k8s: str | None = None,
    pattern: str | None = None,
    enum: tuple[str, ...] | None = None,
    minimum: int | None = None,
    min_length: int | None = None,
    max_items: int | None = None,
    list_map_keys: tuple[str, ...] | None = None,
    list_set: bool = False,
    nullable: bool = False,
    required: bool = False,
    int64: bool = False,
    inline: bool = False,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """Declare an API field. Scalars default to ``None``; pass ``factory`` for lists/maps/objects."""
    info = FieldInfo(
        json=json,
        description=description,
        k8s=k8s,
        pattern=pattern,
        enum=enum,
        minimum=minimum,
        min_length=min_length,
        max_items=max_items,
        list_map_keys=list_map_keys,
        list_set=list_set,
        nullable=nullable,
        required=required,
        int64=int64,
        inline=inline,
    )
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={_META_KEY: info})
    return dataclasses.field(default=None, metadata={_META_KEY: info})


class ApiObject:
    """Base of every API dataclass: parsing, serialisation, and per-type validation rules."""

    RULES: ClassVar[tuple[Rule, ...]] = ()
    DESCRIPTION: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, path: str = "") -> typing.Self:
        """Parse a raw JSON object (``None`` parses as an empty object)."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ApiParseError(path or ".", f"expected an object, got {type(data).__name__}")
        plan = _plan_of(cls)
        kwargs: dict[str, Any] = {}
        for name, key, tp in plan.fields:
            if key in data:
                value = decode(tp, data[key], f"{path}.{key}")
                if value is not None:
                    kwargs[name] = value
        if plan.inline is not None:
            kwargs[plan.inline] = {k: copy.deepcopy(v) for k, v in data.items() if k not in plan.known}
        return cls(**kwargs)

    def to_dict(self) -> JSON:
        """The JSON form. ``None`` is left out; so are empty values of fields that default to an
        empty list/map/object. An optional field that is set is kept even when empty
        (``workflowJob: {}`` means something)."""
        out: JSON = {}
        for name, key, tp, inline, optional in _plan_of(type(self)).encoding:
            value = getattr(self, name)
            if inline:
                out.update(copy.deepcopy(value))
                continue
            encoded = encode(tp, value)
            if encoded is None:
                continue
            if not optional and isinstance(encoded, (list, dict)) and not encoded:
                continue
            out[key] = encoded
        return out


_fields_cache: dict[type, list[tuple[dataclasses.Field[Any], FieldInfo, Any]]] = {}


def fields_of(cls: type) -> list[tuple[dataclasses.Field[Any], FieldInfo, Any]]:
    """The declared API fields of a dataclass, with their resolved type hints (cached)."""
    cached = _fields_cache.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    out: list[tuple[dataclasses.Field[Any], FieldInfo, Any]] = []
    for f in dataclasses.fields(cls):
        info = f.metadata.get(_META_KEY)
        if not isinstance(info, FieldInfo):
            raise TypeError(f"{cls.__name__}.{f.name} was not declared with runnerd.api._codec.field()")
        out.append((f, info, hints[f.name]))
    _fields_cache[cls] = out
    return out


@dataclass(frozen=True)
class _Plan:
    """What parsing and serialising a class needs of its fields, worked out once (a profile at
    1,000 runners spent most of the parsing time in ``typing.get_origin``/``get_args``)."""

    fields: tuple[tuple[str, str, Any], ...]
    """(attribute, JSON name, type) of every field but the inline one."""
    inline: str | None
    known: frozenset[str]
    encoding: tuple[tuple[str, str, Any, bool, bool], ...]
    """(attribute, JSON name, type, inline, optional) of every field, in declaration order."""


_plans: dict[type, _Plan] = {}


def _plan_of(cls: type) -> _Plan:
    plan = _plans.get(cls)
    if plan is None:
        declared = fields_of(cls)
        inline = [f.name for f, info, _ in declared if info.inline]
        plan = _plans[cls] = _Plan(
            fields=tuple((f.name, info.json, tp) for f, info, tp in declared if not info.inline),
            inline=inline[-1] if inline else None,
            known=frozenset(info.json for _, info, _ in declared if not info.inline),
            encoding=tuple((f.name, info.json, tp, info.inline, is_optional(tp)) for f, info, tp in declared),
        )
    return plan


_stripped: dict[Any, Any] = {}


def strip_optional(tp: Any) -> Any:
    """``X | None`` -> ``X`` (other types unchanged); remembered per type."""
    try:
        return _stripped[tp]
    except KeyError:
        stripped = _stripped[tp] = _strip_optional(tp)
        return stripped


def _strip_optional(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
        return Union[tuple(args)]  # noqa: UP007 - runtime construction of a union
    return tp


def is_optional(tp: Any) -> bool:
    """Whether ``tp`` is ``X | None``."""
    return get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)


def is_quantity(tp: Any) -> bool:
    return set(get_args(tp)) == {int, str}


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def decode(tp: Any, value: Any, path: str) -> Any:
    """Check and convert one JSON value to the declared Python type."""
    if value is None:
        return None
    try:
        kind = _kinds[tp]
    except KeyError:
        kind = _kinds[tp] = _kind(tp)
    stripped, quantity, origin = kind
    if origin is list and isinstance(value, list):  # the common case first: lists of API objects
        (item_tp,) = get_args(stripped)
        return [decode(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is _API_OBJECT:
        return stripped.from_dict(value, path)
    return _decode_other(stripped, quantity, value, path)


_API_OBJECT = object()
_kinds: dict[Any, tuple[Any, bool, Any]] = {}


def _kind(tp: Any) -> tuple[Any, bool, Any]:
    """A declared type's (type without ``None``, whether a quantity, origin): worked out once."""
    stripped = strip_optional(tp)
    if isinstance(stripped, type) and issubclass(stripped, ApiObject):
        return stripped, False, _API_OBJECT
    return stripped, is_quantity(stripped), get_origin(stripped)


def _decode_other(tp: Any, quantity: bool, value: Any, path: str) -> Any:
    if quantity:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ApiParseError(path, f"expected a quantity (string or integer), got {_type_name(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ApiParseError(path, f"expected a boolean, got {_type_name(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ApiParseError(path, f"expected an integer, got {_type_name(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ApiParseError(path, f"expected a number, got {_type_name(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ApiParseError(path, f"expected a string, got {_type_name(value)}")
        return value
    if tp is dt.datetime:
        if not isinstance(value, str):
            raise ApiParseError(path, f"expected an RFC 3339 time string, got {_type_name(value)}")
        try:
            return parse_time(value)
        except ValueError as e:
            raise ApiParseError(path, str(e)) from None
    origin = get_origin(tp)
    if origin is list:
        (item_tp,) = get_args(tp)
        if not isinstance(value, list):
            raise ApiParseError(path, f"expected a list, got {_type_name(value)}")
        return [decode(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, val_tp = get_args(tp)
        if not isinstance(value, dict):
            raise ApiParseError(path, f"expected an object, got {_type_name(value)}")
        if val_tp is Any:
            return copy.deepcopy(value)
        return {str(k): decode(val_tp, v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, ApiObject):
        return tp.from_dict(value, path)
    raise TypeError(f"unsupported API field type {tp!r} at {path}")  # pragma: no cover - declaration bug


def encode(tp: Any, value: Any) -> Any:
    """The JSON form of one Python value of the declared type."""
    if value is None:
        return None
    tp = strip_optional(tp)
    if isinstance(value, ApiObject):
        return value.to_dict()
    if isinstance(value, dt.datetime):
        return format_time(value)
    if isinstance(value, list):
        item_tp = get_args(tp)[0] if get_origin(tp) is list else Any
        return [encode(item_tp, v) for v in value]
    if isinstance(value, dict):
        val_tp = get_args(tp)[1] if get_origin(tp) is dict else Any
        if val_tp is Any:
            return copy.deepcopy(value)
        return {k: encode(val_tp, v) for k, v in value.items()}
    return value


# --- time, duration, quantity ------------------------------------------------------------------


def parse_time(text: str) -> dt.datetime:
    """Parse a Kubernetes ``metav1.Time``/``MicroTime`` (RFC 3339); the result is timezone-aware."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an RFC 3339 time: {text!r}") from None
    if value.tzinfo is None:
        raise ValueError(f"RFC 3339 time without a UTC offset: {text!r}")
    return value


def format_time(value: dt.datetime) -> str:
    """RFC 3339 as Kubernetes writes it: ``Z`` for UTC, the offset kept otherwise."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: API times must be timezone-aware")
    timespec = "microseconds" if value.microsecond else "seconds"
    if value.utcoffset() == dt.timedelta(0):
        return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec=timespec) + "Z"
    return value.isoformat(timespec=timespec)


GO_DURATION_PATTERN = r"^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$"
"""What Go's ``time.ParseDuration`` accepts (``metav1.Duration`` in JSON): ``30m``, ``1h30m``, ``0s``."""

_GO_DURATION_UNITS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "μs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_GO_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> dt.timedelta:
    """Parse a Go duration string (``metav1.Duration``), e.g. ``"10m"``, ``"1h30m"``, ``"-1.5s"``."""
    if not re.fullmatch(GO_DURATION_PATTERN, text):
        raise ValueError(f"not a Go duration: {text!r}")
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body == "0":
        return dt.timedelta(0)
    seconds = sum(Decimal(n) * _GO_DURATION_UNITS[u] for n, u in _GO_DURATION_PART.findall(body))
    return sign * dt.timedelta(seconds=float(seconds))


_DECIMAL = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
QUANTITY_PATTERN = rf"^(\+|-)?{_DECIMAL}(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?{_DECIMAL}))?$"
"""The ``resource.Quantity`` grammar: a signed decimal with a binary-SI, decimal-SI or exponent suffix."""

_QUANTITY_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY_SPLIT = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)$")


def parse_quantity(value: Quantity) -> Decimal:
    """The numeric value of a quantity (``"1Gi"`` -> 1073741824, ``"500m"`` -> 0.5)."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if not re.fullmatch(QUANTITY_PATTERN, value):
        raise ValueError(f"not a quantity: {value!r}")
    m = _QUANTITY_SPLIT.match(value)
    assert m is not None  # the pattern above guarantees a number prefix
    number, suffix = Decimal(m.group(1)), m.group(2)
    if suffix in _QUANTITY_SUFFIX:
        return number * _QUANTITY_SUFFIX[suffix]
    try:
        return number * (Decimal(10) ** Decimal(suffix[1:]))
    except InvalidOperation:  # pragma: no cover - excluded by the pattern
        raise ValueError(f"not a quantity: {value!r}") from None


FLOAT_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
"""Decimal numbers as ARC's HRA metric thresholds and factors are written (strings parsed as float64)."""
