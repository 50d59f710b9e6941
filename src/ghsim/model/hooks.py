"""Webhook subscriptions: a hook belongs to a repository, an organization, an enterprise or an App.

Only the subscription lives here (URL, secret, events, and the fault switches the delivery layer
honours: drop, duplicate, reorder, delay, fail); delivery is :mod:`ghsim.webhooks`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from ..entities import Hook, Scope
from ..errors import NotFound, ValidationFailed
from .credentials import Credentials
from .registry import Registry


class Hooks:
    """The hooks table."""

    def __init__(self, registry: Registry, credentials: Credentials) -> None:
        self.registry = registry
        self.credentials = credentials
        self._hook_ids = itertools.count(500_001)
        self.hooks: dict[int, Hook] = {}

    def create_hook(
        self,
        url: str,
        *,
        scope: Scope | None = None,
        app_id: int | None = None,
        secret: str | None = None,
        events: Iterable[str] = ("workflow_job",),
        faults: dict[str, Any] | None = None,
    ) -> Hook:
        if (scope is None) == (app_id is None):
            raise ValidationFailed(
                "a hook belongs to exactly one of: repository, organization, enterprise, app"
            )
        if scope is not None:
            self.registry.scope_exists(scope)
        if app_id is not None and app_id not in self.credentials.apps:
            raise NotFound(f"no app {app_id}")
        hook = Hook(next(self._hook_ids), url, secret, list(events), scope, app_id)
        self.hooks[hook.id] = hook
        if faults:
            try:
                self.set_hook_faults(hook.id, faults)
            except ValidationFailed:
                del self.hooks[hook.id]
                raise
        return hook

    def set_hook_faults(self, hook_id: int, faults: dict[str, Any]) -> Hook:
        hook = self.hooks.get(hook_id)
        if hook is None:
            raise NotFound(f"no hook {hook_id}")
        for key, value in faults.items():
            if key in ("drop", "duplicate", "reorder"):
                if not isinstance(value, int | float) or not 0 <= value <= 1:
                    raise ValidationFailed(f"{key} is a fraction between 0 and 1")
                setattr(hook, key, float(value))
            elif key == "delay_s":
                if not isinstance(value, int | float) or value < 0:
                    raise ValidationFailed("delay_s must be a non-negative number")
                hook.delay_s = float(value)
            elif key in ("fail", "active"):
                if not isinstance(value, bool):
                    raise ValidationFailed(f"{key} must be a boolean")
                setattr(hook, key, value)
            elif key == "seed":
                if not isinstance(value, int):
                    raise ValidationFailed("seed must be an integer")
                hook.seed = value
            else:
                raise ValidationFailed(f"unknown hook setting {key}")
        return hook
