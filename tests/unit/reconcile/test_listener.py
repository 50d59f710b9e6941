"""The listener's desired-count decision: ARC 0.9.1-0.13's arithmetic, step by step (pure)."""

from __future__ import annotations

import pytest

from runnerd.reconcile.listener import MAX_INT32, ScaleState, decide, desired_runners

# (assigned, jobs completed) per message; a 202 is (0, 0), as ARC <= 0.13 passes it
Step = tuple[int, int]


@pytest.mark.parametrize(
    ("min_runners", "max_runners", "steps", "expected"),
    [
        pytest.param(
            0,
            None,
            [(0, 0), (0, 0), (1, 0), (1, 0), (0, 1), (0, 0)],
            [(0, 0), (0, 0), (1, 2), (1, 3), (0, 4), (0, 0)],
            id="one job, quickstart: empty batches at min patch with id 0",
        ),
        pytest.param(
            0,
            None,
            [(3, 0), (0, 0), (0, 0)],
            [(3, 0), (3, 1), (3, 2)],
            id="the first patch id is 0 even when busy; a 202 never scales down",
        ),
        pytest.param(
            2,
            5,
            [(10, 0), (0, 0), (0, 1), (0, 0)],
            [(5, 0), (5, 1), (2, 2), (2, 0)],
            id="min runners are extra idle runners, capped by max",
        ),
        pytest.param(
            2,
            None,
            [(0, 0), (1, 0), (0, 0), (0, 1), (3, 2)],
            [(2, 0), (3, 1), (3, 2), (2, 3), (5, 4)],
            id="min 2: a job adds one; completions let it shrink back",
        ),
        pytest.param(0, 0, [(4, 0), (0, 0)], [(0, 0), (0, 0)], id="max 0: nothing, ever"),
        pytest.param(1, 1, [(0, 0), (7, 0), (0, 3)], [(1, 0), (1, 1), (1, 2)], id="min = max"),
        pytest.param(0, None, [(0, 2), (0, 0)], [(0, 0), (0, 0)], id="completions alone at min"),
        pytest.param(0, None, [(-1, 0)], [(0, 0)], id="a negative count is none"),
    ],
)
def test_decisions(
    min_runners: int, max_runners: int | None, steps: list[Step], expected: list[Step]
) -> None:
    state = ScaleState()
    got = []
    for assigned, completed in steps:
        decision = decide(
            state,
            min_runners=min_runners,
            max_runners=max_runners,
            assigned=assigned,
            jobs_completed=completed,
        )
        assert decision.empty_batch == (assigned <= 0 and completed <= 0)
        got.append((decision.replicas, decision.patch_id))
        state = decision.state
    assert got == expected


def test_sequence_wraps_to_one() -> None:
    decision = decide(
        ScaleState(patch_seq=MAX_INT32, last_target=3),
        min_runners=0,
        max_runners=None,
        assigned=3,
        jobs_completed=0,
    )
    assert (decision.replicas, decision.patch_id, decision.state.patch_seq) == (3, 1, 1)


@pytest.mark.parametrize(
    ("min_runners", "max_runners", "assigned", "expected"),
    [(0, None, 0, 0), (0, None, 7, 7), (3, None, 7, 10), (3, 8, 7, 8), (0, 0, 5, 0), (2, 10, -4, 2)],
)
def test_desired_runners(min_runners: int, max_runners: int | None, assigned: int, expected: int) -> None:
    assert desired_runners(min_runners, max_runners, assigned) == expected
