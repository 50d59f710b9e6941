"""The pure parts of the Kubernetes adapter (its I/O is covered against the real API server)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from runnerd.kube import CONFIGMAPS, LEASES, NAMESPACES, ConfigError, Resource, load_config
from runnerd.kube.client import _lease_body, _lease_record, _with_resource_version, format_micro_time
from runnerd.kube.config import _kubeconfig_path
from runnerd.kube.errors import error_from_response
from runnerd.runtime import AlreadyExists, Conflict, ServerError, TooManyRequests
from runnerd.runtime.types import LeaseRecord

RUNNERS = Resource("actions.summerwind.dev", "v1alpha1", "runners", "Runner")


@pytest.mark.parametrize(
    ("resource", "args", "path"),
    [
        (CONFIGMAPS, (None, None, None), "/api/v1/configmaps"),
        (CONFIGMAPS, ("ns", None, None), "/api/v1/namespaces/ns/configmaps"),
        (CONFIGMAPS, ("ns", "cm", None), "/api/v1/namespaces/ns/configmaps/cm"),
        (
            RUNNERS,
            ("ci", "r1", "status"),
            "/apis/actions.summerwind.dev/v1alpha1/namespaces/ci/runners/r1/status",
        ),
        (LEASES, ("kube-system", "x", None), "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x"),
        (NAMESPACES, (None, "default", None), "/api/v1/namespaces/default"),
        (CONFIGMAPS, ("ns", "a/b", None), "/api/v1/namespaces/ns/configmaps/a%2Fb"),
    ],
)
def test_resource_paths(
    resource: Resource, args: tuple[str | None, str | None, str | None], path: str
) -> None:
    assert resource.path(*args) == path


@pytest.mark.parametrize(
    ("resource", "args"),
    [(NAMESPACES, ("ns", "x", None)), (CONFIGMAPS, ("ns", None, "status")), (CONFIGMAPS, ("ns", "", None))],
)
def test_invalid_paths(resource: Resource, args: tuple[str | None, str | None, str | None]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        resource.path(*args)


def test_api_version() -> None:
    assert CONFIGMAPS.api_version == "v1"
    assert RUNNERS.api_version == "actions.summerwind.dev/v1alpha1"


@pytest.mark.parametrize(
    ("status", "headers", "body", "cls", "retry_after"),
    [
        (409, {}, b'{"kind":"Status","code":409,"reason":"Conflict","message":"modified"}', Conflict, None),
        (
            409,
            {},
            b'{"kind":"Status","code":409,"reason":"AlreadyExists","message":"exists"}',
            AlreadyExists,
            None,
        ),
        (
            429,
            {"Retry-After": "4"},
            b'{"kind":"Status","code":429,"reason":"TooManyRequests"}',
            TooManyRequests,
            4.0,
        ),
        (
            429,
            {},
            b'{"kind":"Status","code":429,"reason":"TooManyRequests","details":{"retryAfterSeconds":2}}',
            TooManyRequests,
            2.0,
        ),
        (503, {}, b"<html>proxy error</html>", ServerError, None),
    ],
)
def test_error_from_response(
    status: int, headers: dict[str, str], body: bytes, cls: type[Exception], retry_after: float | None
) -> None:
    error = error_from_response(status, "Reason", headers, body)
    assert type(error) is cls
    assert error.retry_after == retry_after


def test_non_status_bodies_are_redacted() -> None:
    error = error_from_response(502, "Bad Gateway", {}, b"upstream said Authorization: Bearer abc.def")
    assert "abc.def" not in str(error)


def test_resource_version_preconditions_on_patches() -> None:
    assert _with_resource_version({"data": {"a": "1"}}, "merge", "7") == {
        "data": {"a": "1"},
        "metadata": {"resourceVersion": "7"},
    }
    assert _with_resource_version({"metadata": {"labels": {"x": "y"}}}, "merge", "7") == {
        "metadata": {"labels": {"x": "y"}, "resourceVersion": "7"}
    }
    assert _with_resource_version([{"op": "remove", "path": "/data/a"}], "json", "7") == [
        {"op": "remove", "path": "/data/a"},
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "7"},
    ]
    with pytest.raises(TypeError):
        _with_resource_version({"op": "x"}, "json", "7")
    with pytest.raises(TypeError):
        _with_resource_version([], "merge", "7")


def test_lease_round_trip() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    record = LeaseRecord("pod-a_1234", 15, moment, moment, 3, "99")
    body = _lease_body("ns", "lead", record)
    assert body["metadata"] == {"name": "lead", "namespace": "ns", "resourceVersion": "99"}
    assert body["spec"]["renewTime"] == "2026-03-04T05:06:07.890123Z"
    assert _lease_record(body) == record
    assert _lease_record({"metadata": {}, "spec": {}}) == LeaseRecord("", 0, None, None, 0, "")
    assert format_micro_time(None) is None
    assert "resourceVersion" not in _lease_body("ns", "lead", LeaseRecord("a", 1, None, None))["metadata"]


@pytest.mark.parametrize(
    ("given", "env", "expected"),
    [
        ("/explicit", {"KUBECONFIG": "/env", "KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "/explicit"),
        (None, {"KUBECONFIG": "/env", "KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "/env"),
        (None, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, None),
    ],
)
def test_kubeconfig_resolution(given: str | None, env: dict[str, str], expected: str | None) -> None:
    assert _kubeconfig_path(given, env) == expected


async def test_missing_configuration_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="not running in a cluster"):
        await load_config(environ={})
    with pytest.raises(ConfigError, match="in-cluster"):
        await load_config(environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"})
    bad = tmp_path / "kubeconfig"
    bad.write_text("apiVersion: v1\nkind: Config\nusers: [{name: u, user: {token: s3cr3t}}]\n")
    with pytest.raises(ConfigError) as caught:
        await load_config(bad)
    assert "s3cr3t" not in str(caught.value)


async def test_kubeconfig_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: s3cr3t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    config = await load_config(path)
    assert config.host == "https://127.0.0.1:6443"
    assert config.source == f"kubeconfig:{path}"
    assert "s3cr3t" not in repr(config)
