"""The informer's in-memory cache: objects by key, plus secondary indexes.

Objects in the store are the dicts the API server sent. They are shared, not copied: readers must
treat them as read-only (``copy.deepcopy`` one before building a modified version of it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from runnerd.runtime.types import Key, Obj

IndexFunc = Callable[[Obj], Iterable[str]]
"""Maps an object to the index values it should be found under (none, one or several)."""


class Store:
    """Objects keyed by :class:`Key`, with named indexes kept up to date on every change."""

    def __init__(self, indexers: Mapping[str, IndexFunc] | None = None) -> None:
        self._items: dict[Key, Obj] = {}
        self._indexers: dict[str, IndexFunc] = dict(indexers or {})
        # index name -> index value -> keys
        self._indices: dict[str, dict[str, set[Key]]] = {name: {} for name in self._indexers}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[Obj]:
        return iter(list(self._items.values()))

    def get(self, key: Key) -> Obj | None:
        return self._items.get(key)

    def keys(self) -> list[Key]:
        return list(self._items)

    def objects(self) -> list[Obj]:
        return list(self._items.values())

    def by_index(self, index: str, value: str) -> list[Obj]:
        """Objects whose index function yielded ``value`` for the index named ``index``."""
        return [self._items[key] for key in self.index_keys(index, value)]

    def index_keys(self, index: str, value: str) -> list[Key]:
        if index not in self._indices:
            raise KeyError(f"no index named {index!r}")
        return sorted(self._indices[index].get(value, ()))

    def indexed(self, index: str) -> list[Obj]:
        """Objects the index named ``index`` holds under any value (each once): e.g. the labelled
        ones of an :func:`index_by_label` index, without a pass over every object."""
        if index not in self._indices:
            raise KeyError(f"no index named {index!r}")
        keys: set[Key] = set().union(*self._indices[index].values())
        return [self._items[key] for key in sorted(keys)]

    def add_indexer(self, name: str, func: IndexFunc) -> None:
        """Adds an index (and indexes what is already stored)."""
        if name in self._indexers:
            raise ValueError(f"index {name!r} already exists")
        self._indexers[name] = func
        self._indices[name] = {}
        for key, obj in self._items.items():
            self._index(name, func, key, obj)

    # Writes: only the informer that owns the store calls these.

    def upsert(self, obj: Obj) -> Obj | None:
        """Stores ``obj``; returns the object it replaced, if any."""
        key = Key.of(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name, func in self._indexers.items():
            self._index(name, func, key, obj)
        return old

    def delete(self, key: Key) -> Obj | None:
        """Removes the object under ``key``; returns it, if there was one."""
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _index(self, name: str, func: IndexFunc, key: Key, obj: Obj) -> None:
        index = self._indices[name]
        for value in func(obj):
            index.setdefault(value, set()).add(key)

    def _unindex(self, key: Key, obj: Obj) -> None:
        for name, func in self._indexers.items():
            index = self._indices[name]
            for value in func(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def index_by_namespace(obj: Obj) -> list[str]:
    """Index function: the object's namespace."""
    return [str(_meta(obj).get("namespace") or "")]


def index_by_owner_uid(obj: Obj) -> list[str]:
    """Index function: the UIDs of all of the object's owners."""
    return [str(ref["uid"]) for ref in _meta(obj).get("ownerReferences") or () if ref.get("uid")]


def index_by_controller_uid(obj: Obj) -> list[str]:
    """Index function: the UID of the object's controller owner (``controller: true``), if any."""
    return [
        str(ref["uid"])
        for ref in _meta(obj).get("ownerReferences") or ()
        if ref.get("controller") and ref.get("uid")
    ]


def index_by_label(label: str) -> IndexFunc:
    """An index function: the value of the object's label ``label``, if it has it."""

    def index(obj: Obj) -> list[str]:
        labels = _meta(obj).get("labels") or {}
        return [str(labels[label])] if label in labels else []

    return index


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def strip_unused(obj: Obj) -> Obj:
    """The informers' default transform: drop what no controller reads and that can be most of an
    object's size: ``metadata.managedFields`` (server-side apply bookkeeping) and kubectl's
    ``last-applied-configuration`` annotation (a second copy of the object). Changes ``obj`` in place
    (it was just decoded from the API server and is not shared yet) and returns it."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            del annotations[LAST_APPLIED]
    return obj


POD_SPEC_KEPT = ("nodeName", "nodeSelector", "overhead", "containers", "initContainers")
CONTAINER_KEPT = ("name", "image", "resources")


def slim_pod(obj: Obj) -> Obj:
    """The runner pods' cache transform: :func:`strip_unused`, and of the spec only what the
    controllers read (the node, the node selector and pod overhead that the cost ledger reads, each
    container's name, image and resources; no env, which holds the runner's JIT config, no volumes,
    probes or scripts). Status and metadata are kept whole."""
    strip_unused(obj)
    spec = obj.get("spec")
    if isinstance(spec, dict):
        slim: dict[str, Any] = {k: spec[k] for k in POD_SPEC_KEPT if k in spec}
        for kind in ("containers", "initContainers"):
            if isinstance(slim.get(kind), list):
                slim[kind] = [
                    {k: c[k] for k in CONTAINER_KEPT if k in c} for c in slim[kind] if isinstance(c, dict)
                ]
        obj["spec"] = slim
    return obj
