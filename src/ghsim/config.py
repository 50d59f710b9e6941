"""Simulator settings.  Every knob has GitHub's value as its default where GitHub has one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationFailed


@dataclass
class PrimaryLimits:
    """Primary (hourly) REST budgets, per principal (PAT, installation, app JWT, anonymous client)."""

    enabled: bool = True
    pat: int = 5000
    installation: int = 5000
    app: int = 5000
    anonymous: int = 60
    #: the ``actions_runner_registration`` resource: registration/remove tokens and JIT configs
    registration: int = 10_000
    window_s: float = 3600.0
    #: GitHub answers an exhausted primary budget with 403 (most often) or 429
    status: int = 403


@dataclass
class SecondaryLimits:
    """Secondary limits: concurrent requests and REST points per minute, per principal."""

    enabled: bool = True
    max_concurrent: int = 100
    points_per_minute: int = 900
    read_points: int = 1
    write_points: int = 5
    status: int = 403
    retry_after_s: int = 60


@dataclass
class ActionsSettings:
    """The Actions service's runner scale-set protocol (:mod:`ghsim.actions`)."""

    #: ``broker`` (github.com today: jobs auto-assigned) or ``ghes`` (``JobAvailable`` + ``acquirejobs``)
    mode: str = "broker"
    #: lifetime of the admin JWT from ``POST /actions/runner-registration``
    admin_token_ttl_s: float = 3600.0
    #: lifetime of a session's ``messageQueueAccessToken``
    queue_token_ttl_s: float = 3600.0
    #: a session nobody polls for this long expires (a crashed listener's session lingers until then)
    session_idle_s: float = 600.0
    #: how long ``GET {messageQueueUrl}`` is held when there is no message (observed: about 50 s)
    long_poll_s: float = 50.0
    #: a job assigned to a scale set that no runner starts within this time is cancelled and re-queued
    assign_timeout_s: float = 300.0
    #: ... at most this many times (then it stays assigned)
    max_requeues: int = 3
    #: job messages per queue message
    batch_size: int = 50


@dataclass
class SimConfig:
    registration_token_ttl_s: float = 3600.0
    installation_token_ttl_s: float = 3600.0
    jwt_max_lifetime_s: float = 600.0
    jwt_iat_skew_s: float = 60.0
    #: a runner that has not polled for this long is offline
    runner_offline_after_s: float = 60.0
    #: an assigned job the runner does not start within this time is re-queued (GitHub: 60 s)
    assign_timeout_s: float = 60.0
    #: a running job whose runner has not been heard of for this long fails ("lost communication")
    job_lease_s: float = 600.0
    #: a job nobody takes fails after this long (GitHub: 24 h)
    queue_timeout_s: float = 86_400.0
    #: fault: ``busy`` reads false (and DELETE succeeds) for this long after a job starts
    busy_flag_delay_s: float = 0.0
    #: how long ``/_runner/poll`` holds a request open when there is no job
    long_poll_s: float = 20.0
    runner_version: str = "2.330.0"
    primary: PrimaryLimits = field(default_factory=PrimaryLimits)
    secondary: SecondaryLimits = field(default_factory=SecondaryLimits)
    actions: ActionsSettings = field(default_factory=ActionsSettings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def update(self, patch: dict[str, Any]) -> None:
        """Apply a partial settings document (same shape as :meth:`to_dict`)."""
        _apply(self, patch, "")


def _apply(obj: Any, patch: dict[str, Any], prefix: str) -> None:
    if not isinstance(patch, dict):
        raise ValidationFailed(f"settings {prefix or 'document'} must be an object")
    names = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in patch.items():
        if key not in names:
            raise ValidationFailed(f"unknown setting {prefix}{key}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _apply(current, value, f"{prefix}{key}.")
            continue
        if isinstance(current, bool):
            if not isinstance(value, bool):
                raise ValidationFailed(f"setting {prefix}{key} must be a boolean")
        elif isinstance(current, int | float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValidationFailed(f"setting {prefix}{key} must be a number")
            value = type(current)(value)
        elif isinstance(current, str) and not isinstance(value, str):
            raise ValidationFailed(f"setting {prefix}{key} must be a string")
        setattr(obj, key, value)
