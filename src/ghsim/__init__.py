"""ghsim: a GitHub stand-in for runnerd's tests, benchmarks and demo (see docs/ghsim.md).

The pure model (:class:`World`, with an injectable :class:`Clock`) is separate from the HTTP layer
(:class:`Simulator`).  :func:`run_virtual_runner` is the runner side.
"""

from .agent import RunnerResult, VirtualRunner, run_virtual_runner
from .clock import Clock, ManualClock, SystemClock
from .config import PrimaryLimits, SecondaryLimits, SimConfig
from .entities import Scope
from .model import JobSpec, TraceEntry, World
from .server import Simulator

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
