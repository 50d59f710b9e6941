"""An AutoscalingRunnerSet's ``proxy`` and ``githubServerTLS`` reach every Actions-service client the
scale-set controllers ask for (the AutoscalingRunnerSet's, the EphemeralRunnerSet's and the
EphemeralRunners'): the CA bundle read from its ConfigMap key, each proxy's credentials from its
Secret, ``noProxy`` as given; what cannot be read is an ActionsServiceError naming no secret value.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from runnerd.controller.scaleset_common import API_RETRY, ScaleSetAPIs
from runnerd.github.actions.connection import Connection, ProxyServer
from runnerd.github.actions.errors import ActionsServiceError
from runnerd.runtime import Key, Result
from tests.unit.controller.conftest import SCALE_SET_NS, ScaleSetWorld, autoscaling_runner_set
from tests.unit.controller.fakes import FakeKube, FakeScaleSetAPI

pytestmark = pytest.mark.timeout(20)

CA = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
PROXY = {
    "http": {"url": "http://proxy.corp:3128"},
    "https": {"url": "http://proxy.corp:3129", "credentialSecretRef": "proxy-auth"},
    "noProxy": ["ghes.corp", "10.0.0.0/8"],
}


def ca_from(name: str, key: str) -> dict[str, Any]:
    return {"certificateFrom": {"configMapKeyRef": {"name": name, "key": key}}}


TLS = ca_from("ghes-ca", "ca.crt")
WANT = Connection(
    ca_bundle=CA,
    http_proxy=ProxyServer("http://proxy.corp:3128"),
    https_proxy=ProxyServer("http://proxy.corp:3129", "arc", "pr0xy"),
    no_proxy=("ghes.corp", "10.0.0.0/8"),
    proxied=True,
)


def add_sources(kube: FakeKube) -> None:
    kube.objects[("configmaps", SCALE_SET_NS, "ghes-ca")] = {
        "metadata": {"name": "ghes-ca", "namespace": SCALE_SET_NS},
        "data": {"ca.crt": CA},
    }
    kube.objects[("secrets", SCALE_SET_NS, "proxy-auth")] = {
        "metadata": {"name": "proxy-auth", "namespace": SCALE_SET_NS},
        "data": {
            k: base64.b64encode(v.encode()).decode()
            for k, v in {"username": "arc", "password": "pr0xy"}.items()
        },
    }


async def test_every_client_of_the_scale_set_connects_as_its_spec_says(
    scale_set_world: ScaleSetWorld,
) -> None:
    world, api = scale_set_world, scale_set_world.api
    add_sources(world.kube)
    ars = autoscaling_runner_set(proxy=PROXY, githubServerTLS=TLS)
    world.kube.objects[("autoscalingrunnersets", SCALE_SET_NS, "arc-runner-set")] = ars
    await world.settle()
    world.scale(2, 1)
    await world.settle()
    assert len(world.runners()) == 2
    assert len(api.connections) >= 3
    assert set(api.connections) == {WANT}


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ({}, None),
        ({"proxy": {}}, None),  # an empty proxy is no proxy (and is not copied to the runners)
        ({"githubServerTLS": TLS}, Connection(ca_bundle=CA)),
        ({"proxy": {"noProxy": ["*"]}}, Connection(no_proxy=("*",), proxied=True)),
        (
            {"proxy": {"https": {"url": "http://p:1"}}},
            Connection(https_proxy=ProxyServer("http://p:1"), proxied=True),
        ),
        ({"proxy": PROXY, "githubServerTLS": TLS}, WANT),
    ],
)
async def test_the_connection_of_a_spec(spec: dict[str, Any], want: Connection | None) -> None:
    kube = FakeKube()
    add_sources(kube)
    apis = ScaleSetAPIs(kube, FakeScaleSetAPI())  # type: ignore[arg-type]
    assert await apis.connection(SCALE_SET_NS, spec) == want


@pytest.mark.parametrize(
    ("spec", "exception"),
    [
        ({"githubServerTLS": ca_from("nope", "ca.crt")}, "ConfigMapNotFound"),
        ({"githubServerTLS": ca_from("ghes-ca", "x")}, "ConfigMapInvalid"),
        ({"proxy": {"http": {"url": "http://p:1", "credentialSecretRef": "nope"}}}, "SecretNotFound"),
    ],
)  # fmt: skip
async def test_a_missing_source_is_an_actions_service_error(spec: dict[str, Any], exception: str) -> None:
    kube = FakeKube()
    add_sources(kube)
    apis = ScaleSetAPIs(kube, FakeScaleSetAPI())  # type: ignore[arg-type]
    with pytest.raises(ActionsServiceError) as failed:
        await apis.connection(SCALE_SET_NS, spec)
    assert (failed.value.status, failed.value.exception) == (0, exception)
    assert "pr0xy" not in str(failed.value)


async def test_a_scale_set_without_its_ca_waits_with_an_event(scale_set_world: ScaleSetWorld) -> None:
    world = scale_set_world
    ars = autoscaling_runner_set(githubServerTLS=ca_from("not-there", "ca.crt"))
    world.kube.objects[("autoscalingrunnersets", SCALE_SET_NS, "arc-runner-set")] = ars
    await world.settle()  # its finalizer added, then the ConfigMap is missing
    result = await world.ars.reconcile(Key(SCALE_SET_NS, "arc-runner-set"))
    assert result == Result(requeue_after=API_RETRY)
    assert ("Warning", "ScaleSetError") in {(kind, reason) for kind, reason, _ in world.recorder.events}
    assert not world.api.scale_sets
