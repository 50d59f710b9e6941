"""The webhook payload model against GitHub's published examples and schemas (no HTTP)."""

from __future__ import annotations

from typing import Any

import pytest

from ghsim import JobSpec, ManualClock, World
from ghsim.entities import Hook, Scope
from ghsim.model import JobEvent
from ghsim.payloads import PayloadError, WorkflowJobEvent, build_workflow_job_event
from ghsim.render import Renderer

from .conftest import populate
from .schemas import validate_workflow_job_payload, webhook_examples

EXAMPLES = webhook_examples()


def test_there_are_examples_of_every_action() -> None:
    assert {e["action"] for e in EXAMPLES} == {"queued", "waiting", "in_progress", "completed"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e['action']}-{e['workflow_job']['id']}")
def test_github_examples_parse(example: dict[str, Any]) -> None:
    event = WorkflowJobEvent.from_dict(example)
    job = example["workflow_job"]
    assert (event.action, event.workflow_job.id, event.workflow_job.labels) == (
        example["action"],
        job["id"],
        job["labels"],
    )
    assert event.repository_full_name == example["repository"]["full_name"]
    assert event.installation_id == example.get("installation", {}).get("id")
    # what the model read, it writes back unchanged
    written = event.to_dict()["workflow_job"]
    assert {k: written[k] for k in job if k in written} == {k: job[k] for k in job if k in written}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.pop("workflow_job"), "missing workflow_job"),
        (lambda p: p.update(action="exploded"), "unknown workflow_job action"),
        (lambda p: p["workflow_job"].update(labels="gpu"), "labels has the wrong type"),
        (lambda p: p["workflow_job"].update(id="1"), "id has the wrong type"),
        (lambda p: p["workflow_job"].update(status="running"), "unknown status"),
    ],
)
def test_malformed_payloads_are_rejected(mutate: Any, message: str) -> None:
    import copy

    payload = copy.deepcopy(EXAMPLES[0])
    mutate(payload)
    with pytest.raises(PayloadError, match=message):
        WorkflowJobEvent.from_dict(payload)


def _events(world: World) -> list[JobEvent]:
    events: list[JobEvent] = []
    world.sink = lambda e: events.append(e) if isinstance(e, JobEvent) else None
    return events


@pytest.mark.parametrize("conclusion", ["success", "failure", "cancelled", "skipped"])
@pytest.mark.parametrize("level", ["repo", "org", "enterprise", "app"])
def test_every_simulated_payload_validates(level: str, conclusion: str) -> None:
    world = World(ManualClock())
    setup = populate(world)
    events = _events(world)
    scope = Scope("org", "octo-org")
    reg = world.register_runner(world.issue_token(scope, "registration").token, scope, "r", ["gpu"])
    world.poll(reg.runner.id)
    run = world.enqueue_run(
        world.repo_by_name("octo-org/app"),
        [JobSpec(("gpu",), conclusion=conclusion), JobSpec(("gpu",), wait=5)],
    )
    world.start_job(reg.runner.id, run.job_ids[0])
    world.complete_job(reg.runner.id, run.job_ids[0])
    world.cancel_run(run.id)
    assert [e.action for e in events] == ["queued", "waiting", "in_progress", "completed", "completed"]
    renderer = Renderer(world, "http://127.0.0.1:9999")
    hook = Hook(
        1,
        "http://127.0.0.1/hook",
        None,
        ["workflow_job"],
        None
        if level == "app"
        else Scope(level, {"repo": "octo-org/app", "org": "octo-org", "enterprise": "acme"}[level]),  # type: ignore[arg-type]
        setup.app_id if level == "app" else None,
    )
    for event in events:
        payload = build_workflow_job_event(
            renderer, event.action, event.job, hook, setup.inst_octo if level == "app" else None
        ).to_dict()
        validate_workflow_job_payload(payload)
        assert ("enterprise" in payload) == (level == "enterprise")
        assert ("installation" in payload) == (level == "app")
        # and the simulator's own payloads parse through the model
        assert WorkflowJobEvent.from_dict(payload).to_dict() == payload
