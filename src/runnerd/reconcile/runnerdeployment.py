"""The pure rollout decision of a RunnerDeployment: one RunnerReplicaSet per pod template.

A template change makes a new replica set; the old ones keep their runners until the new one is
ready, then scale to 0 (busy runners finish their job first) and go once no runner is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReplicaSetView:
    name: str
    template_hash: str
    replicas: int  # spec.replicas
    ready: int  # runners online or busy
    runners: int  # Runner objects that still exist (any phase)
    created_at: float


@dataclass(frozen=True)
class RolloutPlan:
    create: bool = False  # create a replica set for the current template
    scale: dict[str, int] = field(default_factory=dict)  # name -> new spec.replicas
    delete: tuple[str, ...] = ()  # replica sets with no runners left


def plan_rollout(desired: int, template_hash: str, replica_sets: Sequence[ReplicaSetView]) -> RolloutPlan:
    """Roll a runner deployment to ``template_hash``.

    The replica set of the current template is kept at ``desired``. Older ones keep their runners
    until the new one has ``desired`` ready runners, then go to 0 replicas (idle runners are removed,
    busy ones finish their job first) and are deleted once no runner is left.
    """
    current = [rs for rs in replica_sets if rs.template_hash == template_hash]
    current.sort(key=lambda rs: (-rs.created_at, rs.name))
    newest = current[0] if current else None
    old = [rs for rs in replica_sets if rs is not newest]

    scale: dict[str, int] = {}
    if newest is not None and newest.replicas != desired:
        scale[newest.name] = desired
    new_ready = newest is not None and newest.ready >= desired
    delete: list[str] = []
    for rs in old:
        if rs.replicas == 0 and rs.runners == 0:
            delete.append(rs.name)
        elif rs.replicas != 0 and (new_ready or desired == 0):
            scale[rs.name] = 0
    return RolloutPlan(create=newest is None, scale=scale, delete=tuple(sorted(delete)))
