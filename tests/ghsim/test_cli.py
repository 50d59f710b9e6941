"""``python -m ghsim`` (what ``runnerd-dev github-sim`` runs) as a process."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import yaml

from ghsim.cli import build_parser

TOKEN = "ghp_" + "c" * 36


async def test_serves_until_sigterm_and_saves_its_state(tmp_path: Path) -> None:
    state = tmp_path / "state.yaml"
    state.write_text(
        yaml.safe_dump({"orgs": [{"login": "octo-org"}], "pats": [{"token": TOKEN, "scopes": ["admin:org"]}]})
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ghsim",
        "--port",
        "0",
        "--state-file",
        str(state),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            url = (await proc.stdout.readline()).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as http:
            async with http.get(
                url + "/orgs/octo-org/actions/runners", headers={"Authorization": f"token {TOKEN}"}
            ) as r:
                assert (r.status, (await r.json())["total_count"]) == (200, 0)
            async with http.get(
                url + "/api/v3/orgs/octo-org/actions/runners", headers={"Authorization": f"token {TOKEN}"}
            ) as r:
                assert r.headers["X-GitHub-Enterprise-Version"]
            async with http.post(url + "/_sim/repos", json={"full_name": "octo-org/app"}) as r:
                assert r.status == 201
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    saved = yaml.safe_load(state.read_text())
    assert [r["full_name"] for r in saved["repos"]] == ["octo-org/app"]
    assert saved["pats"][0]["token"] == TOKEN


def test_flags() -> None:
    args = build_parser().parse_args(
        ["--port", "8080", "--state-file", "s.json", "--config", '{"long_poll_s": 1}']
    )
    assert (args.port, args.state_file, args.host) == (8080, Path("s.json"), "127.0.0.1")
