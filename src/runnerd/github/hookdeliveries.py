"""The hook deliveries API's paths and items: what :class:`~runnerd.github.client.GitHubClient` sends
and parses for the webhook delivery audit (:mod:`runnerd.reconcile.deliveryaudit`).

``GET {hook}/deliveries?per_page=100`` (newest first, paged by the ``Link`` header's cursor),
``POST {hook}/deliveries/{delivery_id}/attempts`` (202: redeliver with the same GUID), where
``{hook}`` is ``/orgs/{org}/hooks/{hook_id}``, ``/repos/{owner}/{repo}/hooks/{hook_id}`` or
``/app/hook`` (the GitHub App's own webhook: the App's JWT, not an installation token).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runnerd.github.errors import UnexpectedResponseError
from runnerd.github.sansio import parse_timestamp
from runnerd.reconcile.deliveryaudit import DeliveryAttempt, HookRef


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
