"""Trace files: one JSON object per line, each a single-job workflow run to enqueue.

``{"t": 12.5, "repo": "octo-org/app", "labels": ["self-hosted", "gpu"], "duration": 300}``

=============  ========  =======================================================================
key            required  meaning
=============  ========  =======================================================================
``t``          yes       seconds after the replay starts (alias ``offset``); not negative
``repo``       yes       ``owner/name`` of an existing repository
``labels``     yes       the job's ``runs-on`` labels (a list of strings, at least one)
``duration``   yes       seconds the job runs once a runner starts it
``conclusion`` no        ``success`` (default), ``failure``, ``cancelled`` or ``skipped``
``workflow``   no        workflow name (default ``trace``)
``name``       no        job name (default ``job``)
``group``      no        runner group the job requires
=============  ========  =======================================================================

Blank lines and lines starting with ``#`` are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from .entities import CONCLUSIONS
from .errors import ValidationFailed
from .model import TraceEntry


def parse_trace(lines: Iterable[str]) -> list[TraceEntry]:
    out: list[TraceEntry] = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ValidationFailed(f"trace line {number}: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ValidationFailed(f"trace line {number}: not a JSON object")
        out.append(_entry(obj, number))
    return out


def _entry(obj: dict[str, object], number: int) -> TraceEntry:
    def fail(why: str) -> ValidationFailed:
        return ValidationFailed(f"trace line {number}: {why}")

    offset = obj.get("t", obj.get("offset"))
    if isinstance(offset, bool) or not isinstance(offset, int | float) or offset < 0:
        raise fail("t must be a non-negative number")
    repo = obj.get("repo")
    if not isinstance(repo, str) or "/" not in repo:
        raise fail("repo must be owner/name")
    labels = obj.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise fail("labels must be a non-empty list of strings")
    duration = obj.get("duration")
    if isinstance(duration, bool) or not isinstance(duration, int | float) or duration < 0:
        raise fail("duration must be a non-negative number")
    conclusion = obj.get("conclusion", "success")
    if conclusion not in CONCLUSIONS:
        raise fail(f"conclusion must be one of {', '.join(CONCLUSIONS)}")
    workflow = obj.get("workflow", "trace")
    name = obj.get("name", "job")
    group = obj.get("group")
    if not isinstance(workflow, str) or not isinstance(name, str):
        raise fail("workflow and name must be strings")
    if group is not None and not isinstance(group, str):
        raise fail("group must be a string")
    return TraceEntry(
        float(offset), repo, tuple(labels), float(duration), str(conclusion), workflow, name, group
    )
