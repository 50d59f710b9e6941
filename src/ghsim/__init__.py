"""ghsim: a GitHub stand-in for runnerd's tests, benchmarks and demo (see docs/ghsim.md).

The pure model (:class:`World`, with an injectable :class:`Clock`) is separate from the HTTP layer
(:class:`Simulator`); :func:`run_virtual_runner` is the runner side.  Names are imported lazily, so
``import ghsim.model`` loads no I/O library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agent import RunnerResult, VirtualRunner, run_virtual_runner
    from .clock import Clock, ManualClock, SystemClock
    from .config import PrimaryLimits, SecondaryLimits, SimConfig
    from .entities import Scope
    from .model import JobSpec, TraceEntry, World
    from .server import Simulator

_EXPORTS = {
    "RunnerResult": "agent",
    "VirtualRunner": "agent",
    "run_virtual_runner": "agent",
    "Clock": "clock",
    "ManualClock": "clock",
    "SystemClock": "clock",
    "PrimaryLimits": "config",
    "SecondaryLimits": "config",
    "SimConfig": "config",
    "Scope": "entities",
    "JobSpec": "model",
    "TraceEntry": "model",
    "World": "model",
    "Simulator": "server",
}

__all__ = [
    "Clock",
    "JobSpec",
    "ManualClock",
    "PrimaryLimits",
    "RunnerResult",
    "Scope",
    "SecondaryLimits",
    "SimConfig",
    "Simulator",
    "SystemClock",
    "TraceEntry",
    "VirtualRunner",
    "World",
    "run_virtual_runner",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ghsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
