"""What the scale-set controllers need from the Actions service, as Protocols.

The client in this package implements them against the real service (or ghsim's); controller unit tests
implement them with fakes. Every method raises :class:`~runnerd.github.actions.errors.ActionsServiceError`
(or a subclass named for the service's exception) on a non-success answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from runnerd.github.actions.connection import Connection
from runnerd.github.actions.models import RunnerScaleSet, ScaleSetJitConfig, ScaleSetRunner


class ScaleSetAPI(Protocol):
    """One configuration URL's scale sets and runners (admin-token calls; the token refreshes itself)."""

    async def runner_group_id(self, name: str) -> int:
        """The id of the runner group named ``name`` (``""`` or ``"default"``: 1, no call)."""
        ...

    async def get_scale_set(self, runner_group_id: int, name: str) -> RunnerScaleSet | None: ...

    async def get_scale_set_by_id(self, scale_set_id: int) -> RunnerScaleSet | None: ...

    async def create_scale_set(
        self, name: str, runner_group_id: int, labels: Sequence[str]
    ) -> RunnerScaleSet: ...

    async def update_scale_set(
        self, scale_set_id: int, *, name: str | None = None, runner_group_id: int | None = None
    ) -> RunnerScaleSet: ...

    async def delete_scale_set(self, scale_set_id: int) -> None:
        """Idempotent: a scale set that is already gone is not an error."""
        ...

    async def generate_jit_config(
        self, scale_set_id: int, name: str, work_folder: str = ""
    ) -> ScaleSetJitConfig:
        """Registers runner ``name`` in the scale set; :class:`RunnerExists` if the name is taken."""
        ...

    async def get_runner(self, runner_id: int) -> ScaleSetRunner | None: ...

    async def get_runner_by_name(self, name: str) -> ScaleSetRunner | None: ...

    async def remove_runner(self, runner_id: int) -> None:
        """Deregisters; :class:`JobStillRunning` while it holds a job; a runner already gone is fine."""
        ...


class ScaleSetClients(Protocol):
    """Clients by configuration: one per (``githubConfigUrl``, contents of ``githubConfigSecret``)."""

    async def for_config(
        self, config_url: str, secret: Mapping[str, str], connection: Connection | None = None
    ) -> ScaleSetAPI:
        """``secret``: the Secret's decoded data (``github_token``, or ``github_app_id``,
        ``github_app_installation_id``, ``github_app_private_key``); ``connection``: the object's
        ``proxy`` and ``githubServerTLS``, resolved (a different one is a different client)."""
        ...
