"""Fault injection for the Actions service, switched through the admin API.

A fault names an operation (``fnmatch`` pattern over the names below, ``*`` for all) and what goes
wrong; ``times`` limits how many requests it hits (``null``: until removed).

==================  ===========================================================================
kind                effect
==================  ===========================================================================
``error``           answer ``status`` with the ``{"typeName", "message"}`` envelope (``type``
                    names the exception; default per status: 401 InvalidToken, 404
                    RunnerScaleSetNotFound, 409 RunnerScaleSetSessionConflict, 429
                    TooManyRequests); ``text_plain: true`` sends the message as ``text/plain``
``empty``           answer ``status`` (default 200) with an empty body (ARC#4285's "EOF")
``bom``             the normal answer with a UTF-8 byte-order mark before the JSON
``stall``           hold the request ``seconds`` of simulator time first; a message poll then
                    answers 202 even if messages wait (a stalled long poll)
``empty_queue_url`` session create/refresh answers ``"messageQueueUrl": ""`` (ARC#4370)
==================  ===========================================================================

Operations: ``handshake``, ``scaleset.list``, ``scaleset.create``, ``scaleset.get``,
``scaleset.update``, ``scaleset.delete``, ``runnergroup.list``, ``session.create``,
``session.refresh``, ``session.delete``, ``message.get``, ``message.delete``, ``acquirablejobs``,
``acquirejobs``, ``jit.generate``, ``agent.get``, ``agent.list``, ``agent.delete``.
"""

from __future__ import annotations

import fnmatch
import itertools
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ValidationFailed
from .errors import DEFAULT_FOR_STATUS, SERVICE_UNAVAILABLE

KINDS = ("error", "empty", "bom", "stall", "empty_queue_url")
OPERATIONS = (
    "handshake",
    "scaleset.list",
    "scaleset.create",
    "scaleset.get",
    "scaleset.update",
    "scaleset.delete",
    "runnergroup.list",
    "session.create",
    "session.refresh",
    "session.delete",
    "message.get",
    "message.delete",
    "acquirablejobs",
    "acquirejobs",
    "jit.generate",
    "agent.get",
    "agent.list",
    "agent.delete",
)


@dataclass
class Fault:
    id: int
    op: str
    kind: str
    status: int = 0
    type: str = ""
    message: str = "Injected fault."
    text_plain: bool = False
    seconds: float = 0.0
    times: int | None = None

    def exception(self) -> str:
        return self.type or DEFAULT_FOR_STATUS.get(self.status, SERVICE_UNAVAILABLE)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultSet:
    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, spec: dict[str, Any]) -> Fault:
        op, kind = spec.get("op", "*"), spec.get("kind")
        if not isinstance(op, str) or not any(fnmatch.fnmatchcase(o, op) for o in OPERATIONS):
            raise ValidationFailed(f"op {op!r} matches no operation ({', '.join(OPERATIONS)})")
        if kind not in KINDS:
            raise ValidationFailed(f"kind must be one of {', '.join(KINDS)}")
        status = spec.get("status", 500 if kind == "error" else 200)
        times = spec.get("times")
        seconds = spec.get("seconds", 0.0)
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ValidationFailed("status must be an HTTP status")
        if times is not None and (not isinstance(times, int) or times < 1):
            raise ValidationFailed("times must be a positive integer or null")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValidationFailed("seconds must be a non-negative number")
        fault = Fault(
            next(self._ids),
            op,
            str(kind),
            status,
            str(spec.get("type") or ""),
            str(spec.get("message") or "Injected fault."),
            bool(spec.get("text_plain", False)),
            float(seconds),
            times,
        )
        self.faults.append(fault)
        return fault

    def remove(self, fault_id: int | None = None) -> None:
        self.faults = [] if fault_id is None else [f for f in self.faults if f.id != fault_id]

    def take(self, op: str) -> list[Fault]:
        """The faults that hit this request (each use counts against ``times``)."""
        hit = [f for f in self.faults if fnmatch.fnmatchcase(op, f.op)]
        for f in hit:
            if f.times is not None:
                f.times -= 1
        self.faults = [f for f in self.faults if f.times is None or f.times > 0]
        return hit
