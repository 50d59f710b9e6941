"""``controller.scaleset.install``: the three scale-set controllers and their informers join a
controller process (not started here), and a listener maps back to its AutoscalingRunnerSet across
namespaces; the GitHub config Secret is read and decoded for the Actions-service client."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from runnerd.api.scaleset import constants as c
from runnerd.controller.common import ControllerOptions
from runnerd.controller.listeners import ListenerController
from runnerd.controller.scaleset import install, listener_owner
from runnerd.controller.scaleset_common import ScaleSetAPIs
from runnerd.github.actions.clients import ActionsClients
from runnerd.github.actions.errors import ActionsServiceError
from runnerd.runtime import Controller, Key, Manager
from tests.unit.controller.fakes import FakeKube, FakeRecorder, FakeScaleSetAPI, NoListWatcher

pytestmark = pytest.mark.timeout(10)


class ListWatchingKube(FakeKube):
    def list_watcher(self, resource: Any, **_: Any) -> NoListWatcher:
        return NoListWatcher()


class RecordingManager(Manager):
    def __init__(self) -> None:
        super().__init__()
        self.added: list[Controller] = []

    def add_controller(self, controller: Controller) -> Controller:
        self.added.append(controller)
        return super().add_controller(controller)


class Process:
    """The parts of a built controller process that an installer uses."""

    def __init__(self) -> None:
        self.kube = ListWatchingKube()
        self.options = ControllerOptions(namespace="arc-systems")
        self.recorder = FakeRecorder()
        self.manager = RecordingManager()
        self.informers: dict[str, Any] = {}


def test_install_adds_three_controllers_and_their_informers() -> None:
    process = Process()
    installed = install(process, FakeScaleSetAPI())  # type: ignore[arg-type]
    assert installed.autoscaling_runner_set.listener_namespace == "arc-systems"
    assert {i.name for i in process.manager.informers} == {
        "autoscalingrunnersets",
        "ephemeralrunnersets",
        "ephemeralrunners",
        "autoscalinglisteners",
        "scaleset-pods",
        "scaleset-secrets",
    }
    assert set(process.informers) == {i.name for i in process.manager.informers}


def test_install_with_listener_clients_adds_the_listener_manager_in_the_listener_namespace() -> None:
    process = Process()
    installed = install(
        process,  # type: ignore[arg-type]
        FakeScaleSetAPI(),
        listener_clients=ActionsClients(),
        listener_namespace="controller-ns",
    )
    assert installed.listeners is not None
    assert installed.autoscaling_runner_set.listener_namespace == "controller-ns"
    listener_controllers = [ctl for ctl in process.manager.added if isinstance(ctl, ListenerController)]
    assert [ctl.listener_manager for ctl in listener_controllers] == [installed.listeners]
    assert installed.listeners.listeners is process.informers["autoscalinglisteners"]


def test_install_without_listener_clients_runs_no_listener() -> None:
    process = Process()
    installed = install(process, FakeScaleSetAPI())  # type: ignore[arg-type]
    assert installed.listeners is None
    assert not [ctl for ctl in process.manager.added if isinstance(ctl, ListenerController)]


@pytest.mark.parametrize(
    ("labels", "keys"),
    [
        pytest.param(
            {c.LABEL_SCALE_SET_NAME: "set", c.LABEL_SCALE_SET_NAMESPACE: "arc-runners"},
            [Key("arc-runners", "set")],
            id="labelled",
        ),
        pytest.param({c.LABEL_SCALE_SET_NAME: "set"}, [], id="no-namespace"),
    ],
)
def test_listener_owner(labels: dict[str, str], keys: list[Key]) -> None:
    assert listener_owner({"metadata": {"namespace": "arc-systems", "labels": labels}}) == keys


async def test_the_config_secret_is_decoded_for_the_client() -> None:
    kube, api = FakeKube(), FakeScaleSetAPI()
    data = {"github_app_id": "1", "github_app_installation_id": "2", "github_app_private_key": "KEY"}
    kube.objects[("secrets", "ns", "app")] = {
        "metadata": {"name": "app", "namespace": "ns"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    apis = ScaleSetAPIs(kube, api)  # type: ignore[arg-type]
    await apis.for_object("ns", {"githubConfigUrl": "https://github.com/octo", "githubConfigSecret": "app"})
    assert api.configs == [("https://github.com/octo", data)]
    with pytest.raises(ActionsServiceError) as missing:
        await apis.for_object("ns", {"githubConfigUrl": "u", "githubConfigSecret": "nope"})
    assert "KEY" not in str(missing.value)
