"""ghsim's request counts by status: what a benchmark needs to tell a 404 from a 204."""

from __future__ import annotations

from ghsim.core import Stats

DELETE = "actions/delete-self-hosted-runner-from-org"


def test_calls_by_status_are_per_principal_and_reset() -> None:
    stats = Stats()
    for principal, status in (("pat", 204), ("pat", 404), ("pat", 404), ("app", 422)):
        stats.count(DELETE, principal, status)
    assert stats.calls_by_status("pat") == {DELETE: {"204": 1, "404": 2}}
    assert stats.calls_by_status("app") == {DELETE: {"422": 1}}
    stats.reset()
    assert stats.calls_by_status("pat") == {}
