"""Small pure helpers that build container and pod dicts (env, volume mounts, volumes, resources).

Everything here takes and returns plain JSON-shaped dicts and lists and never mutates its inputs.
The readers the decisions use too (``env_value``, ``quantity_value``) are in
:mod:`runnerd.reconcile.runnerpod`.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from runnerd.api import JSON
from runnerd.reconcile.runnerpod import quantity_value


def env_var(name: str, value: str) -> JSON:
    return {"name": name, "value": value}


def field_ref_env(name: str, field_path: str) -> JSON:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def merge_env(
    base: Sequence[Mapping[str, Any]],
    *overrides: Sequence[Mapping[str, Any]],
    protected: Collection[str] = (),
) -> list[JSON]:
    """One env list from layers, later layers winning by name; no name appears twice.

    Entries keep their own position: ``base`` entries that no later layer overrides come first,
    then each override layer in its order. Names in ``protected`` are taken from ``base`` only
    (override layers cannot replace them). Within one layer the last entry of a name wins, as in
    Kubernetes.
    """
    layers: list[list[Mapping[str, Any]]] = [list(base)]
    for layer in overrides:
        layers.append([e for e in layer if e.get("name") not in protected])
    winner: dict[str, tuple[int, int]] = {}
    for li, layer in enumerate(layers):
        for ei, entry in enumerate(layer):
            winner[str(entry.get("name"))] = (li, ei)
    out: list[JSON] = []
    for li, layer in enumerate(layers):
        for ei, entry in enumerate(layer):
            if winner[str(entry.get("name"))] == (li, ei):
                out.append(copy.deepcopy(dict(entry)))
    return out


def env_names(env: Iterable[Mapping[str, Any]]) -> set[str]:
    return {str(e.get("name")) for e in env}


def add_env_defaults(env: Sequence[Mapping[str, Any]], defaults: Sequence[Mapping[str, Any]]) -> list[JSON]:
    """``env`` plus the ``defaults`` whose names it does not define yet (appended)."""
    present = env_names(env)
    out = [copy.deepcopy(dict(e)) for e in env]
    out.extend(copy.deepcopy(dict(d)) for d in defaults if d.get("name") not in present)
    return out


def merge_mounts(
    generated: Sequence[Mapping[str, Any]],
    user: Sequence[Mapping[str, Any]],
    replace_by_name: Collection[str] = (),
) -> list[JSON]:
    """Generated volume mounts, then the user's.

    A generated mount is left out when a user mount has the same ``mountPath`` (two mounts at one
    path are invalid), or, for the names in ``replace_by_name``, the same volume name (ARC lets a
    user mount named ``work`` replace the generated work mount).
    """
    user_paths = {m.get("mountPath") for m in user}
    user_names = {m.get("name") for m in user}
    out = [
        copy.deepcopy(dict(m))
        for m in generated
        if m.get("mountPath") not in user_paths
        and not (m.get("name") in replace_by_name and m.get("name") in user_names)
    ]
    out.extend(copy.deepcopy(dict(m)) for m in user)
    return out


def merge_volumes(generated: Sequence[Mapping[str, Any]], user: Sequence[Mapping[str, Any]]) -> list[JSON]:
    """Generated volumes, then the user's; a user volume replaces the generated one of the same name."""
    user_names = {v.get("name") for v in user}
    out = [copy.deepcopy(dict(v)) for v in generated if v.get("name") not in user_names]
    out.extend(copy.deepcopy(dict(v)) for v in user)
    return out


def merge_resources(container: Mapping[str, Any] | None, fallback: Mapping[str, Any] | None) -> JSON:
    """ARC's rule: the container's ``limits``/``requests`` where it sets them, else the fallback's."""
    container = container or {}
    fallback = fallback or {}
    out: JSON = {k: copy.deepcopy(v) for k, v in container.items() if k not in ("limits", "requests")}
    for key in ("limits", "requests"):
        chosen = container.get(key) or fallback.get(key)
        if chosen:
            out[key] = copy.deepcopy(dict(chosen))
    return out


def is_zero_quantity(value: Any) -> bool:
    v = quantity_value(value)
    return v is not None and v == 0


def by_name(items: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Items keyed by ``name`` (the first of a name wins)."""
    out: dict[str, Mapping[str, Any]] = {}
    for item in items:
        out.setdefault(str(item.get("name")), item)
    return out
