"""Typed shapes of the Actions service's scale-set resources (its JSON names: see ``from_json``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunnerScaleSet:
    id: int
    name: str
    runner_group_id: int
    runner_group_name: str = ""
    labels: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunnerScaleSet:
        return cls(
            id=int(data["id"]),
            name=str(data.get("name") or ""),
            runner_group_id=int(data.get("runnerGroupId") or 0),
            runner_group_name=str(data.get("runnerGroupName") or ""),
            labels=tuple(str(label.get("name", "")) for label in data.get("labels") or ()),
        )


@dataclass(frozen=True)
class ScaleSetRunner:
    """A runner registration in the scale set's pool (``RunnerReference``)."""

    id: int
    name: str
    scale_set_id: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScaleSetRunner:
        return cls(int(data["id"]), str(data.get("name") or ""), int(data.get("runnerScaleSetId") or 0))


@dataclass(frozen=True)
class ScaleSetJitConfig:
    """A single-use runner configuration; ``encoded`` is a credential: never log it."""

    runner: ScaleSetRunner
    encoded: str

    def __repr__(self) -> str:
        return f"ScaleSetJitConfig(runner={self.runner!r}, encoded=<redacted>)"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScaleSetJitConfig:
        return cls(ScaleSetRunner.from_json(data["runner"]), str(data["encodedJITConfig"]))


@dataclass(frozen=True)
class ScaleSetStatistics:
    total_available_jobs: int = 0
    total_acquired_jobs: int = 0
    total_assigned_jobs: int = 0
    total_running_jobs: int = 0
    total_registered_runners: int = 0
    total_busy_runners: int = 0
    total_idle_runners: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScaleSetStatistics:
        def n(key: str) -> int:
            return int(data.get(key) or 0)

        return cls(
            total_available_jobs=n("totalAvailableJobs"),
            total_acquired_jobs=n("totalAcquiredJobs"),
            total_assigned_jobs=n("totalAssignedJobs"),
            total_running_jobs=n("totalRunningJobs"),
            total_registered_runners=n("totalRegisteredRunners"),
            total_busy_runners=n("totalBusyRunners"),
            total_idle_runners=n("totalIdleRunners"),
        )
