"""A test client for ghsim's Actions service that calls it the way ARC's listener and controller
do (paths, headers, bodies of /work/shared/reference/scale-set-protocol.md) and checks every answer's
shape with :mod:`.scaleset_schemas`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from .scaleset_schemas import check

API = "api-version=6.0-preview"
MAX_CAPACITY = 2_147_483_647
BOM = b"\xef\xbb\xbf"


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes

    @property
    def body(self) -> Any:
        raw = self.raw[3:] if self.raw.startswith(BOM) else self.raw
        return json.loads(raw) if raw else None


class ScaleSetClient:
    """One credential chain: registration token → admin JWT → sessions → queue token."""

    def __init__(self, http: aiohttp.ClientSession, api_url: str, config_url: str) -> None:
        self.http = http
        self.api_url = api_url.rstrip("/")
        self.config_url = config_url
        self.base = ""
        self.token = ""

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        shape: str | None = None,
        status: int | None = None,
    ) -> Answer:
        hdrs = {"Content-Type": "application/json", "User-Agent": "actions-runner-controller/test"}
        if token is not None:
            hdrs["Authorization"] = token
        hdrs.update(headers or {})
        data = None if body is None else json.dumps(body).encode()
        async with self.http.request(method, url, data=data, headers=hdrs) as resp:
            answer = Answer(resp.status, resp.headers, await resp.read())
        if status is not None:
            assert answer.status == status, (answer.status, answer.raw)
        if shape is not None and answer.status in (200, 201) and answer.raw:
            check(shape, answer.body)
        elif (
            answer.status >= 400
            and answer.raw
            and "json" in answer.headers.get("Content-Type", "")
            and ("/_actions/" in url or "/_broker/" in url)
        ):
            check("error", answer.body)
        return answer

    # ---- handshake ---------------------------------------------------------------------------

    async def handshake(self, registration_token: str, *, path_prefix: str = "") -> Answer:
        answer = await self.request(
            "POST",
            f"{self.api_url}{path_prefix}/actions/runner-registration",
            body={"url": self.config_url, "runner_event": "register"},
            token=f"RemoteAuth {registration_token}",
            shape="handshake",
        )
        if answer.status == 200:
            self.base, self.token = answer.body["url"], answer.body["token"]
        return answer

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path.lstrip('/')}{sep}{API}"

    async def admin(self, method: str, path: str, **kw: Any) -> Answer:
        return await self.request(method, self.url(path), token=f"Bearer {self.token}", **kw)

    # ---- scale sets --------------------------------------------------------------------------

    async def create_scale_set(
        self, name: str, group_id: int = 1, labels: list[str] | None = None, status: int | None = 200
    ) -> Answer:
        body = {
            "name": name,
            "runnerGroupId": group_id,
            "labels": [{"type": "System", "name": n} for n in (labels or [name])],
            "RunnerSetting": {"ephemeral": True, "disableUpdate": True},
            "createdOn": "0001-01-01T00:00:00Z",
        }
        return await self.admin(
            "POST", "_apis/runtime/runnerscalesets", body=body, shape="scale_set", status=status
        )

    # ---- sessions and the queue --------------------------------------------------------------

    async def open_session(
        self, scale_set_id: int, owner: str = "listener-0", status: int | None = 200
    ) -> Answer:
        return await self.admin(
            "POST",
            f"_apis/runtime/runnerscalesets/{scale_set_id}/sessions",
            body={"ownerName": owner},
            shape="session",
            status=status,
        )

    async def poll(self, session: dict[str, Any], last: int = 0, capacity: int = MAX_CAPACITY) -> Answer:
        url = session["messageQueueUrl"] + (f"?lastMessageId={last}" if last > 0 else "")
        return await self.request(
            "GET",
            url,
            token=f"Bearer {session['messageQueueAccessToken']}",
            headers={
                "Accept": "application/json; api-version=6.0-preview",
                "X-ScaleSetMaxCapacity": str(capacity),
            },
            shape="message",
        )

    async def ack(self, session: dict[str, Any], message_id: int, status: int | None = 204) -> Answer:
        return await self.request(
            "DELETE",
            f"{session['messageQueueUrl']}/{message_id}",
            token=f"Bearer {session['messageQueueAccessToken']}",
            status=status,
        )

    async def acquire(self, session: dict[str, Any], scale_set_id: int, ids: list[int]) -> Answer:
        return await self.request(
            "POST",
            self.url(f"_apis/runtime/runnerscalesets/{scale_set_id}/acquirejobs"),
            body=ids,
            token=f"Bearer {session['messageQueueAccessToken']}",
            shape="int64_list",
        )

    async def jit(self, scale_set_id: int, name: str, status: int | None = 200) -> Answer:
        return await self.admin(
            "POST",
            f"_apis/runtime/runnerscalesets/{scale_set_id}/generatejitconfig",
            body={"name": name, "workFolder": ""},
            shape="jit",
            status=status,
        )


def job_messages(message: dict[str, Any]) -> list[dict[str, Any]]:
    body = message["body"]
    return json.loads(body) if body else []


def kinds(message: dict[str, Any]) -> list[str]:
    return [m["messageType"] for m in job_messages(message)]
