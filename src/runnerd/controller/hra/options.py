"""Autoscaling settings, shared by the HRA controller, its metric observation and the safety-net poll."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AutoscalingOptions:
    """Autoscaling settings; read live, so the CLI (or a test) may change them before the manager runs."""

    sync_period: float | None = None
    """How often an HRA is reconciled at least (None: the controller's ``--sync-period``)."""
    default_scale_down_delay: float = 600.0
    """``--default-scale-down-delay`` (HRAs without ``scaleDownDelaySecondsAfterScaleOut``)."""
    poll: bool = True
    """Run the safety-net poll (leader only)."""
    poll_bound: float = 60.0
    """A queued job whose webhook never came gets a runner within about this many seconds."""
    poll_max_calls_per_hour: int = 1000
    """The most GitHub calls the safety-net poll spends per hour (counted: 304s too)."""
    poll_max_interval: float = 300.0
    """The longest the safety-net poll stretches its interval to while deliveries flow and it finds
    nothing they missed (:mod:`runnerd.reconcile.pollpace`); at most the short interval: no stretching."""
    runner_groups_visibility: bool = False
    """Ask GitHub which runner groups a repository may use before routing a webhook (ARC's
    ``useRunnerGroupsVisibility``); only consulted when a candidate is in a non-default group."""
    ambiguity_ttl: float = 3600.0
    """``AmbiguousWebhookTarget`` turns False this long after the last ambiguous delivery."""
    workers: int | None = None
    observe_max_calls_per_hour: int = 3000
    """The ceiling of the one GitHub call budget (a sliding hour) that the metric's observations, the
    safety-net poll and the runner listings spend from; over it, the metric reuses its last
    observation. The poll keeps its own lower ceiling (``poll_max_calls_per_hour``) on the same window."""
    count_jobs_twice: bool = False
    """ARC's sum: every webhook reservation on top of the metric's count, even for a job the metric
    already counted (``--count-jobs-twice``). Off: a job known by its id counts once."""
