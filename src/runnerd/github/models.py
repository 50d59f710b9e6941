"""Typed results of the GitHub calls: small frozen dataclasses built from GitHub's JSON.

Only the fields the controller uses are typed; ``raw`` keeps the whole object (it is left out of
``repr`` and comparisons). Secrets (tokens, JIT configs) are left out of ``repr``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runnerd.github.errors import UnexpectedResponseError
from runnerd.github.sansio import parse_timestamp

JSONObject = Mapping[str, Any]


def _require(obj: Any, what: str) -> JSONObject:
    if not isinstance(obj, Mapping):
        raise UnexpectedResponseError(f"expected a JSON object for {what}, got {type(obj).__name__}")
    return obj


def _int(obj: JSONObject, key: str, what: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnexpectedResponseError(f"{what} has no integer {key!r}")
    return value


def _opt_int(obj: JSONObject, key: str) -> int | None:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(obj: JSONObject, key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise UnexpectedResponseError(f"{what} has no string {key!r}")
    return value


def _opt_str(obj: JSONObject, key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _timestamp(obj: JSONObject, key: str, what: str) -> float:
    try:
        return parse_timestamp(_str(obj, key, what))
    except ValueError:
        raise UnexpectedResponseError(f"{what} has a malformed {key!r}") from None


def _labels(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    names = []
    for label in value:
        if isinstance(label, str):
            names.append(label)
        elif isinstance(label, Mapping) and isinstance(label.get("name"), str):
            names.append(label["name"])
    return tuple(names)


def _datetime(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


@dataclass(frozen=True)
class Runner:
    """A self-hosted runner as GitHub lists it. ``status`` is ``online`` or ``offline``.

    ``busy`` is GitHub's flag, which lags behind reality (it can read ``False`` for a minute after a
    job started): never treat it as proof that a runner is idle.
    """

    id: int
    name: str
    os: str
    status: str
    busy: bool
    labels: tuple[str, ...]
    ephemeral: bool | None = None
    runner_group_id: int | None = None
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @property
    def online(self) -> bool:
        return self.status == "online"

    @classmethod
    def from_json(cls, data: Any) -> Runner:
        obj = _require(data, "a runner")
        ephemeral = obj.get("ephemeral")
        return cls(
            id=_int(obj, "id", "runner"),
            name=_str(obj, "name", "runner"),
            os=_opt_str(obj, "os") or "",
            status=_opt_str(obj, "status") or "",
            busy=obj.get("busy") is True,
            labels=_labels(obj.get("labels")),
            ephemeral=ephemeral if isinstance(ephemeral, bool) else None,
            runner_group_id=_opt_int(obj, "runner_group_id"),
            raw=obj,
        )


@dataclass(frozen=True)
class JitConfig:
    """A just-in-time runner registration: the runner GitHub created and the config the runner starts
    with (``run.sh --jitconfig <encoded_jit_config>``). The config is a credential: not in ``repr``."""

    runner: Runner
    encoded_jit_config: str = field(repr=False)

    @property
    def runner_id(self) -> int:
        return self.runner.id

    @classmethod
    def from_json(cls, data: Any) -> JitConfig:
        obj = _require(data, "a JIT config")
        return cls(
            runner=Runner.from_json(obj.get("runner")),
            encoded_jit_config=_str(obj, "encoded_jit_config", "JIT config"),
        )


@dataclass(frozen=True)
class RegistrationToken:
    """A registration or remove token for ``config.sh`` (valid one hour). Not in ``repr``."""

    token: str = field(repr=False)
    expires_at: float

    @property
    def expires_at_datetime(self) -> dt.datetime:
        return _datetime(self.expires_at)

    @classmethod
    def from_json(cls, data: Any) -> RegistrationToken:
        obj = _require(data, "a registration token")
        return cls(
            token=_str(obj, "token", "registration token"),
            expires_at=_timestamp(obj, "expires_at", "registration token"),
        )


@dataclass(frozen=True)
class InstallationToken:
    """A GitHub App installation access token (valid one hour). Not in ``repr``."""

    token: str = field(repr=False)
    expires_at: float

    @classmethod
    def from_json(cls, data: Any) -> InstallationToken:
        obj = _require(data, "an installation token")
        return cls(
            token=_str(obj, "token", "installation token"),
            expires_at=_timestamp(obj, "expires_at", "installation token"),
        )


@dataclass(frozen=True)
class RunnerGroup:
    id: int
    name: str
    visibility: str
    default: bool
    inherited: bool
    allows_public_repositories: bool
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> RunnerGroup:
        obj = _require(data, "a runner group")
        return cls(
            id=_int(obj, "id", "runner group"),
            name=_str(obj, "name", "runner group"),
            visibility=_opt_str(obj, "visibility") or "",
            default=obj.get("default") is True,
            inherited=obj.get("inherited") is True,
            allows_public_repositories=obj.get("allows_public_repositories") is True,
            raw=obj,
        )


@dataclass(frozen=True)
class WorkflowRun:
    id: int
    name: str | None
    status: str | None
    conclusion: str | None
    event: str | None
    head_branch: str | None
    run_attempt: int | None
    created_at: str | None
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> WorkflowRun:
        obj = _require(data, "a workflow run")
        return cls(
            id=_int(obj, "id", "workflow run"),
            name=_opt_str(obj, "name"),
            status=_opt_str(obj, "status"),
            conclusion=_opt_str(obj, "conclusion"),
            event=_opt_str(obj, "event"),
            head_branch=_opt_str(obj, "head_branch"),
            run_attempt=_opt_int(obj, "run_attempt"),
            created_at=_opt_str(obj, "created_at"),
            raw=obj,
        )


@dataclass(frozen=True)
class WorkflowJob:
    """A job of a workflow run. ``labels`` is its ``runs-on``; the runner fields are set once a runner
    took it (the group is unknown while it is queued)."""

    id: int
    run_id: int
    name: str | None
    status: str | None
    conclusion: str | None
    labels: tuple[str, ...]
    runner_id: int | None
    runner_name: str | None
    runner_group_id: int | None
    runner_group_name: str | None
    workflow_name: str | None
    started_at: str | None
    completed_at: str | None
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> WorkflowJob:
        obj = _require(data, "a workflow job")
        return cls(
            id=_int(obj, "id", "workflow job"),
            run_id=_int(obj, "run_id", "workflow job"),
            name=_opt_str(obj, "name"),
            status=_opt_str(obj, "status"),
            conclusion=_opt_str(obj, "conclusion"),
            labels=_labels(obj.get("labels")),
            runner_id=_opt_int(obj, "runner_id"),
            runner_name=_opt_str(obj, "runner_name"),
            runner_group_id=_opt_int(obj, "runner_group_id"),
            runner_group_name=_opt_str(obj, "runner_group_name"),
            workflow_name=_opt_str(obj, "workflow_name"),
            started_at=_opt_str(obj, "started_at"),
            completed_at=_opt_str(obj, "completed_at"),
            raw=obj,
        )
