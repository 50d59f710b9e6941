"""The hook deliveries API's paths and items: what :class:`~runnerd.github.client.GitHubClient` sends
and parses for the webhook delivery audit (:mod:`runnerd.reconcile.deliveryaudit`).

``GET {hook}/deliveries?per_page=100`` (newest first, paged by the ``Link`` header's cursor),
``POST {hook}/deliveries/{delivery_id}/attempts`` (202: redeliver with the same GUID), where
``{hook}`` is ``/orgs/{org}/hooks/{hook_id}``, ``/repos/{owner}/{repo}/hooks/{hook_id}`` or
``/app/hook`` (the GitHub App's own webhook: the App's JWT, not an installation token).

The hook discovery (:mod:`runnerd.reconcile.hookdiscovery`) reads ``GET /orgs/{org}/hooks``
(``org-hook`` items), ``GET /repos/{owner}/{repo}/hooks`` (``hook`` items), both paged by ``Link``,
and ``GET /app/hook/config`` (``webhook-config``); a hook's secret is never read (GitHub masks it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from runnerd.github.errors import UnexpectedResponseError
from runnerd.github.sansio import parse_timestamp
from runnerd.reconcile.deliveryaudit import DeliveryAttempt, HookRef
from runnerd.reconcile.hookdiscovery import HookInfo


def hook_path(hook: HookRef) -> tuple[str, dict[str, str]]:
    """The hook's URL template and its variables."""
    if hook.kind == "app":
        return "/app/hook", {}
    if hook.kind == "org":
        return "/orgs/{org}/hooks/{hook_id}", {"org": hook.owner, "hook_id": str(hook.hook_id)}
    return "/repos/{owner}/{repo}/hooks/{hook_id}", {
        "owner": hook.owner,
        "repo": hook.repo,
        "hook_id": str(hook.hook_id),
    }


def attempt_from_json(obj: Any) -> DeliveryAttempt:
    """One ``hook-delivery-item``; :class:`UnexpectedResponseError` when malformed."""
    if not isinstance(obj, Mapping):
        raise UnexpectedResponseError("a hook delivery is not an object")
    try:
        action = obj.get("action")
        return DeliveryAttempt(
            id=int(obj["id"]),
            guid=str(obj["guid"]),
            event=str(obj.get("event") or ""),
            action=str(action) if action is not None else None,
            status_code=int(obj.get("status_code") or 0),
            redelivery=bool(obj.get("redelivery")),
            delivered_at=parse_timestamp(str(obj["delivered_at"])),
        )
    except (KeyError, TypeError, ValueError):
        raise UnexpectedResponseError("a malformed hook delivery") from None


def hook_info_from_json(kind: Literal["org", "repo"], owner: str, repo: str, obj: Any) -> HookInfo:
    """One ``org-hook`` or ``hook`` item of a listing; :class:`UnexpectedResponseError` when malformed."""
    if not isinstance(obj, Mapping):
        raise UnexpectedResponseError("a hook is not an object")
    try:
        config = obj.get("config") or {}
        events = obj.get("events") or []
        if not isinstance(config, Mapping) or not isinstance(events, list):
            raise TypeError
        return HookInfo(
            kind=kind,
            owner=owner,
            repo=repo,
            hook_id=int(obj["id"]),
            active=bool(obj.get("active")),
            events=tuple(str(e) for e in events),
            url=str(config.get("url") or ""),
        )
    except (KeyError, TypeError, ValueError):
        raise UnexpectedResponseError("a malformed hook") from None


def app_hook_url(obj: Any) -> str:
    """The URL of the App's ``webhook-config`` (empty: the App has no webhook)."""
    if not isinstance(obj, Mapping):
        raise UnexpectedResponseError("GET /app/hook/config: not an object")
    return str(obj.get("url") or "")
