"""The HRA scale decision (ARC's HRA controller): metrics, clamps, reservations, schedule, hold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest

from runnerd.api import (
    CapacityReservation,
    HorizontalRunnerAutoscalerSpec,
    HorizontalRunnerAutoscalerStatus,
    MetricSpec,
    RecurrenceRule,
    RunnerConfig,
    ScheduledOverride,
    parse_time,
)
from runnerd.reconcile.hra import (
    PERCENTAGE_BUSY,
    TOTAL_JOBS,
    AutoscaleError,
    JobObservation,
    Observations,
    RunnerObservation,
    ScaleDecision,
    desired_replicas,
    metric_repositories,
    suggest_by_busy_runners,
    suggest_by_queued_jobs,
)
from tests.unit.reconcile.hrakit import MIN, NOW, SEC, res

REPO = RunnerConfig(repository="acme/app", labels=["gpu", "linux"])
ORG = RunnerConfig(organization="acme", labels=["gpu"])
ENT = RunnerConfig(enterprise="bigcorp", labels=["gpu"])
PERSISTENT = RunnerConfig(repository="acme/app", labels=["gpu"], ephemeral=False)


def spec(
    min_replicas: int | None = 1,
    max_replicas: int | None = 10,
    metrics: Sequence[MetricSpec] = (),
    reservations: Sequence[CapacityReservation] = (),
    overrides: Sequence[ScheduledOverride] = (),
    delay: int | None = None,
) -> HorizontalRunnerAutoscalerSpec:
    return HorizontalRunnerAutoscalerSpec(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        metrics=list(metrics),
        capacity_reservations=list(reservations),
        scheduled_overrides=list(overrides),
        scale_down_delay_seconds_after_scale_out=delay,
    )


def status(
    desired: int | None = None, last_out: dt.timedelta | None = None
) -> HorizontalRunnerAutoscalerStatus:
    return HorizontalRunnerAutoscalerStatus(
        desired_replicas=desired, last_successful_scale_out_time=None if last_out is None else NOW + last_out
    )


def job(st: str, *labels: str, id: int | None = None) -> JobObservation:
    return JobObservation(status=st, labels=labels, id=id)


def runners(
    busy: int = 0, idle: int = 0, terminating: int = 0, unregistered_busy: int = 0
) -> list[RunnerObservation]:
    out = [RunnerObservation(f"b{i}", busy=True) for i in range(busy)]
    out += [RunnerObservation(f"i{i}") for i in range(idle)]
    out += [RunnerObservation(f"t{i}", registered=False, terminating_busy=True) for i in range(terminating)]
    out += [RunnerObservation(f"u{i}", registered=False, busy=True) for i in range(unregistered_busy)]
    return out


def obs(
    target: RunnerConfig = REPO,
    replicas: int | None = None,
    jobs: dict[str, list[JobObservation]] | None = None,
    runner_list: list[RunnerObservation] | None = None,
) -> Observations:
    return Observations(target=target, target_replicas=replicas, jobs=jobs, runners=runner_list)


TNQ = MetricSpec(type=TOTAL_JOBS)
TNQ_ORG = MetricSpec(type=TOTAL_JOBS, repository_names=["app", "acme/lib"])
PRB = MetricSpec(type=PERCENTAGE_BUSY)


def decide(
    s: HorizontalRunnerAutoscalerSpec,
    st: HorizontalRunnerAutoscalerStatus | None = None,
    o: Observations | None = None,
    **kw: object,
) -> ScaleDecision:
    return desired_replicas(s, st or status(), NOW, o or obs(), **kw)  # type: ignore[arg-type]


# --- min/max clamps, no metrics, reservations ------------------------------------------------------


@pytest.mark.parametrize(
    ("s", "desired"),
    [
        pytest.param(spec(min_replicas=None), 1, id="nil-min-is-1"),
        pytest.param(spec(min_replicas=-3), 1, id="negative-min-is-1"),
        pytest.param(spec(min_replicas=0), 0, id="min-0-no-metrics"),
        pytest.param(spec(min_replicas=3), 3, id="no-metrics-suggest-min"),
        pytest.param(spec(min_replicas=0, max_replicas=0), 0, id="min-0-max-0"),
        pytest.param(
            spec(min_replicas=0, max_replicas=0, reservations=[res(), res()]), 0, id="max-0-caps-reservations"
        ),
        pytest.param(spec(min_replicas=0, reservations=[res(), res()]), 2, id="min-0-plus-reserved"),
        pytest.param(spec(min_replicas=2, reservations=[res()]), 3, id="min-plus-reserved"),
        pytest.param(spec(min_replicas=2, max_replicas=2, reservations=[res()]), 2, id="max-caps"),
        pytest.param(spec(min_replicas=5, max_replicas=5), 5, id="min-equals-max"),
        pytest.param(spec(min_replicas=5, max_replicas=3), 3, id="max-wins-over-min"),
        pytest.param(spec(min_replicas=0, reservations=[res(replicas=3)]), 3, id="multi-replica-reservation"),
        pytest.param(
            spec(min_replicas=0, reservations=[res(exp=dt.timedelta(0))]), 0, id="expiring-now-is-expired"
        ),
        pytest.param(spec(min_replicas=0, reservations=[res(exp=SEC)]), 1, id="expiring-in-1s-active"),
        pytest.param(spec(min_replicas=0, reservations=[res(exp=-MIN)]), 0, id="expired"),
        pytest.param(spec(min_replicas=0, reservations=[res(exp=None)]), 0, id="no-expiration-is-expired"),
        pytest.param(
            spec(min_replicas=0, reservations=[res(replicas=0, name="job-1")]),
            0,
            id="marker-reserves-nothing",
        ),
        pytest.param(
            spec(min_replicas=0, reservations=[res(replicas=None)]), 0, id="nil-replicas-reserves-nothing"
        ),
        pytest.param(
            spec(min_replicas=0, reservations=[res(replicas=-2), res()]), 1, id="negative-replicas-ignored"
        ),
        pytest.param(
            spec(min_replicas=0, max_replicas=3, reservations=[res() for _ in range(5)]),
            3,
            id="starved-beyond-max",
        ),
    ],
)
def test_clamps_and_reservations(s: HorizontalRunnerAutoscalerSpec, desired: int) -> None:
    assert decide(s).desired_replicas == desired


def test_max_replicas_required() -> None:
    with pytest.raises(AutoscaleError, match="maxReplicas is required"):
        decide(spec(max_replicas=None))


def test_naive_now_rejected() -> None:
    with pytest.raises(AutoscaleError, match="timezone-aware"):
        desired_replicas(spec(), status(), dt.datetime(2026, 1, 1), obs())


def test_reservation_reasons_and_active_set() -> None:
    d = decide(spec(min_replicas=0, reservations=[res(name="job-1"), res(exp=-MIN, name="job-2"), res()]))
    assert d.reserved_replicas == 2
    assert [r.name for r in d.active_reservations] == ["job-1", None]
    assert any(
        "2 replicas reserved by 2 capacity reservations (job-1, unnamed); 1 expired" in r for r in d.reasons
    )


# --- TotalNumberOfQueuedAndInProgressWorkflowRuns ---------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "target", "jobs", "suggested", "desired"),
    [
        pytest.param(TNQ, REPO, {"acme/app": []}, 0, 1, id="no-jobs-single-metric-falls-back-to-min"),
        pytest.param(
            TNQ,
            REPO,
            {"acme/app": [job("queued", "self-hosted", "gpu"), job("in_progress", "gpu", "linux")]},
            2,
            2,
            id="queued-plus-in-progress",
        ),
        pytest.param(
            TNQ,
            REPO,
            {"acme/app": [job("queued", "self-hosted", "GPU"), job("queued", "Self-Hosted", "Linux")]},
            2,
            2,
            id="labels-case-insensitive",
        ),
        pytest.param(
            TNQ, REPO, {"acme/app": [job("queued", "self-hosted")]}, 1, 1, id="self-hosted-only-job-fits"
        ),
        pytest.param(
            TNQ,
            REPO,
            {"acme/app": [job("queued", "gpu", "a100"), job("queued", "gpu")]},
            1,
            1,
            id="runner-must-be-superset",
        ),
        pytest.param(TNQ, REPO, {"acme/app": [job("queued")]}, 0, 1, id="job-without-labels-skipped"),
        pytest.param(
            TNQ,
            REPO,
            {"acme/app": [job("completed", "gpu"), job("waiting", "gpu"), job("queued", "gpu")]},
            1,
            1,
            id="completed-and-other-statuses-not-counted",
        ),
        pytest.param(
            TNQ,
            REPO,
            {"acme/app": [job("queued", "gpu", id=7), job("queued", "gpu", id=7), job("queued", "gpu")]},
            2,
            2,
            id="same-job-id-counted-once",
        ),
        pytest.param(
            TNQ,
            REPO,
            {"ACME/App": [job("queued", "gpu"), job("queued", "gpu"), job("queued", "gpu")]},
            3,
            3,
            id="repository-key-case-insensitive",
        ),
        pytest.param(
            TNQ_ORG,
            ORG,
            {
                "acme/app": [job("queued", "gpu")],
                "acme/lib": [job("in_progress", "gpu"), job("queued", "cpu")],
            },
            2,
            2,
            id="org-repositories",
        ),
        pytest.param(
            TNQ,
            REPO,
            {"acme/app": [job("queued", "gpu") for _ in range(15)]},
            15,
            10,
            id="capped-at-max",
        ),
    ],
)
def test_queued_jobs_metric(
    metric: MetricSpec,
    target: RunnerConfig,
    jobs: dict[str, list[JobObservation]],
    suggested: int,
    desired: int,
) -> None:
    o = obs(target=target, jobs=jobs)
    assert suggest_by_queued_jobs(metric, o).suggested == suggested
    d = decide(spec(metrics=[metric]), o=o)
    assert d.desired_replicas == desired
    assert d.metric == (TOTAL_JOBS if suggested > 0 else None)


@pytest.mark.parametrize(
    ("metric", "target", "jobs", "message"),
    [
        pytest.param(TNQ, ORG, {}, "repositoryNames is required", id="org-without-repository-names"),
        pytest.param(TNQ, ENT, {}, "does not support enterprise", id="enterprise"),
        pytest.param(TNQ, RunnerConfig(), {}, "exactly one of", id="no-scope"),
        pytest.param(TNQ, REPO, None, "were not observed", id="jobs-not-gathered"),
        pytest.param(
            TNQ_ORG, ORG, {"acme/app": []}, "acme/lib were not observed", id="one-repository-missing"
        ),
    ],
)
def test_queued_jobs_errors(
    metric: MetricSpec, target: RunnerConfig, jobs: dict[str, list[JobObservation]] | None, message: str
) -> None:
    with pytest.raises(AutoscaleError, match=message):
        decide(spec(metrics=[metric]), o=obs(target=target, jobs=jobs))


def test_metric_repositories() -> None:
    assert metric_repositories(TNQ, REPO) == ("acme/app",)
    assert metric_repositories(TNQ_ORG, ORG) == ("acme/app", "acme/lib")


def test_default_labels_count_for_queued_jobs() -> None:
    o = obs(target=ORG, jobs={"acme/app": [job("queued", "self-hosted", "linux", "gpu")], "acme/lib": []})
    assert suggest_by_queued_jobs(TNQ_ORG, o).suggested == 0
    assert suggest_by_queued_jobs(TNQ_ORG, o, default_labels=("linux",)).suggested == 1


def test_queued_jobs_reason() -> None:
    o = obs(jobs={"acme/app": [job("queued", "gpu"), job("in_progress", "gpu"), job("queued", "cpu")]})
    s = suggest_by_queued_jobs(TNQ, o)
    assert (s.queued, s.in_progress, s.unmatched) == (1, 1, 1)
    assert "1 queued + 1 in progress" in s.reason


# --- PercentageRunnersBusy ---------------------------------------------------------------------------


def prb(**kw: object) -> MetricSpec:
    return MetricSpec(type=PERCENTAGE_BUSY, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("metric", "replicas", "runner_list", "suggested", "band"),
    [
        pytest.param(PRB, 4, runners(busy=4), 6, "up", id="all-busy-ceil-4x1.3"),
        pytest.param(PRB, 5, runners(busy=4, idle=1), 7, "up", id="exactly-at-up-threshold"),
        pytest.param(PRB, 10, runners(busy=7, idle=3), 10, "steady", id="between-thresholds"),
        pytest.param(PRB, 100, runners(busy=79, idle=21), 100, "steady", id="just-below-up-threshold"),
        pytest.param(PRB, 10, runners(busy=3, idle=7), 10, "steady", id="exactly-at-down-threshold"),
        pytest.param(PRB, 10, runners(busy=2, idle=8), 7, "down", id="below-down-floor-10x0.7"),
        pytest.param(PRB, 3, runners(idle=3), 2, "down", id="floor-3x0.7"),
        pytest.param(PRB, 10, runners(busy=10), 13, "up", id="exact-decimal-10x1.3-is-13"),
        pytest.param(prb(scale_up_factor="2"), 3, runners(busy=3), 6, "up", id="custom-up-factor"),
        pytest.param(
            prb(scale_down_factor="0.5"), 5, runners(idle=5), 2, "down", id="custom-down-factor-floor"
        ),
        pytest.param(prb(scale_up_adjustment=2), 4, runners(busy=4), 6, "up", id="up-adjustment"),
        pytest.param(prb(scale_down_adjustment=3), 5, runners(idle=5), 2, "down", id="down-adjustment"),
        pytest.param(
            prb(scale_down_adjustment=9), 5, runners(idle=5), -4, "down", id="down-adjustment-below-zero"
        ),
        pytest.param(
            prb(scale_up_threshold="0.5", scale_down_threshold="0.25"),
            4,
            runners(busy=2, idle=2),
            6,
            "up",
            id="custom-up-threshold-boundary",
        ),
        pytest.param(
            prb(scale_up_threshold="0.5", scale_down_threshold="0.25"),
            4,
            runners(busy=1, idle=3),
            4,
            "steady",
            id="custom-down-threshold-boundary",
        ),
        pytest.param(PRB, None, runners(busy=1), 2, "up", id="nil-replicas-is-1-up"),
        pytest.param(PRB, None, runners(idle=1), 0, "down", id="nil-replicas-is-1-down"),
        pytest.param(
            prb(scale_up_threshold="1.5", scale_down_threshold="0.5"),
            None,
            runners(busy=1),
            1,
            "steady",
            id="nil-replicas-steady-no-panic",
        ),
        pytest.param(PRB, 0, [], 0, "steady", id="zero-replicas-nothing-busy"),
        pytest.param(PRB, 0, runners(busy=1), 0, "up", id="zero-replicas-busy-factor-stays-0"),
        pytest.param(
            prb(scale_up_adjustment=2), 0, runners(busy=1), 2, "up", id="zero-replicas-busy-adjustment"
        ),
        pytest.param(PRB, 2, runners(busy=1, terminating=1), 3, "up", id="terminating-busy-counts"),
        pytest.param(
            PRB, 2, runners(idle=2, unregistered_busy=2), 1, "down", id="unregistered-busy-flag-ignored"
        ),
        pytest.param(
            PRB,
            2,
            [RunnerObservation("x", busy=True, terminating_busy=True), RunnerObservation("y")],
            2,
            "steady",
            id="busy-and-terminating-counted-once",
        ),
    ],
)
def test_busy_metric(
    metric: MetricSpec, replicas: int | None, runner_list: list[RunnerObservation], suggested: int, band: str
) -> None:
    s = suggest_by_busy_runners(metric, obs(replicas=replicas, runner_list=runner_list))
    assert (s.suggested, s.band) == (suggested, band)


@pytest.mark.parametrize(
    ("metric", "replicas", "runner_list", "min_replicas", "desired", "metric_used"),
    [
        pytest.param(PRB, 4, runners(busy=4), 1, 6, PERCENTAGE_BUSY, id="positive-suggestion-used"),
        pytest.param(PRB, 1, runners(idle=1), 2, 2, None, id="zero-suggestion-falls-back-to-min"),
        pytest.param(
            prb(scale_down_adjustment=9), 5, runners(idle=5), 0, 0, None, id="negative-falls-back-to-min-0"
        ),
        pytest.param(PRB, 10, runners(idle=10), 8, 8, PERCENTAGE_BUSY, id="suggestion-below-min-raised"),
    ],
)
def test_busy_metric_decision(
    metric: MetricSpec,
    replicas: int,
    runner_list: list[RunnerObservation],
    min_replicas: int,
    desired: int,
    metric_used: str | None,
) -> None:
    d = decide(
        spec(min_replicas=min_replicas, metrics=[metric]), o=obs(replicas=replicas, runner_list=runner_list)
    )
    assert (d.desired_replicas, d.metric) == (desired, metric_used)


@pytest.mark.parametrize(
    ("metric", "runner_list", "message"),
    [
        pytest.param(
            prb(scale_up_adjustment=1, scale_up_factor="2"), [], "cannot be specified together", id="up-both"
        ),
        pytest.param(
            prb(scale_down_adjustment=1, scale_down_factor="0.5"),
            [],
            "cannot be specified together",
            id="down-both",
        ),
        pytest.param(prb(scale_up_adjustment=-1), [], "lower than 0", id="negative-up-adjustment"),
        pytest.param(prb(scale_down_adjustment=-1), [], "lower than 0", id="negative-down-adjustment"),
        pytest.param(prb(scale_up_factor="fast"), [], "cannot be parsed", id="bad-factor"),
        pytest.param(prb(scale_down_threshold="x"), [], "cannot be parsed", id="bad-threshold"),
        pytest.param(PRB, None, "not observed", id="runners-not-gathered"),
    ],
)
def test_busy_metric_errors(
    metric: MetricSpec, runner_list: list[RunnerObservation] | None, message: str
) -> None:
    with pytest.raises(AutoscaleError, match=message):
        decide(spec(metrics=[metric]), o=obs(replicas=2, runner_list=runner_list))


def test_busy_zero_adjustment_means_factor() -> None:
    m = prb(scale_up_adjustment=0, scale_up_factor="2")
    assert suggest_by_busy_runners(m, obs(replicas=2, runner_list=runners(busy=2))).suggested == 4


def test_busy_reason() -> None:
    s = suggest_by_busy_runners(PRB, obs(replicas=4, runner_list=runners(busy=4)))
    assert "busy fraction 1 >= scaleUpThreshold 0.8: 4 x scaleUpFactor 1.3, rounded up = 6" in s.reason


# --- metric combinations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metrics", "o", "reserved", "desired", "metric_used", "evaluated"),
    [
        pytest.param(
            [PRB, TNQ],
            obs(replicas=4, runner_list=runners(busy=4), jobs=None),
            0,
            6,
            PERCENTAGE_BUSY,
            1,
            id="pair-first-positive-second-not-needed",
        ),
        pytest.param(
            [PRB, TNQ],
            obs(replicas=1, runner_list=runners(idle=1), jobs={"acme/app": [job("queued", "gpu")] * 3}),
            0,
            3,
            TOTAL_JOBS,
            2,
            id="pair-first-zero-second-used",
        ),
        pytest.param(
            [PRB, TNQ],
            obs(replicas=1, runner_list=runners(idle=1), jobs={"acme/app": []}),
            1,
            2,
            TOTAL_JOBS,
            2,
            id="pair-second-zero-used-as-is",
        ),
        pytest.param(
            [TNQ],
            obs(jobs={"acme/app": []}),
            1,
            3,
            None,
            1,
            id="single-zero-means-min-plus-reserved",
        ),
    ],
)
def test_metric_pair(
    metrics: list[MetricSpec],
    o: Observations,
    reserved: int,
    desired: int,
    metric_used: str | None,
    evaluated: int,
) -> None:
    # min 2: a single metric suggesting 0 gives min + reserved; the pair's second metric gives 0 + reserved.
    d = decide(spec(min_replicas=2, metrics=metrics, reservations=[res() for _ in range(reserved)]), o=o)
    assert (d.desired_replicas, d.metric, len(d.suggestions)) == (desired, metric_used, evaluated)


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        pytest.param([TNQ, PRB], "the only allowed combination", id="pair-reversed"),
        pytest.param([PRB, PRB], "the only allowed combination", id="busy-twice"),
        pytest.param([TNQ, TNQ], "the only allowed combination", id="jobs-twice"),
        pytest.param([PRB, TNQ, TNQ], "too many", id="three"),
        pytest.param([MetricSpec(type="CPU")], "not supported", id="unknown-type"),
        pytest.param([MetricSpec()], "not supported", id="missing-type"),
    ],
)
def test_disallowed_metric_combinations(metrics: list[MetricSpec], message: str) -> None:
    o = obs(replicas=4, runner_list=runners(busy=4), jobs={"acme/app": [job("queued", "gpu")]})
    with pytest.raises(AutoscaleError, match=message):
        decide(spec(metrics=metrics), o=o)


# --- scale-down delay and lastSuccessfulScaleOutTime -------------------------------------------------

JOBS2 = obs(jobs={"acme/app": [job("queued", "gpu"), job("queued", "gpu")]})


@pytest.mark.parametrize(
    ("s", "st", "kw", "desired", "held_until", "scaled_out"),
    [
        pytest.param(
            spec(metrics=[TNQ]), status(5, -5 * MIN), {}, 5, NOW + 5 * MIN, False, id="held-default-10m"
        ),
        pytest.param(
            spec(metrics=[TNQ]), status(5, -10 * MIN), {}, 2, None, False, id="delay-ends-exactly-now"
        ),
        pytest.param(
            spec(metrics=[TNQ]), status(5, -10 * MIN + SEC), {}, 5, NOW + SEC, False, id="1s-before-end"
        ),
        pytest.param(
            spec(metrics=[TNQ], delay=60), status(5, -61 * SEC), {}, 2, None, False, id="spec-delay-expired"
        ),
        pytest.param(
            spec(metrics=[TNQ], delay=60),
            status(5, -59 * SEC),
            {},
            5,
            NOW + SEC,
            False,
            id="spec-delay-holding",
        ),
        pytest.param(
            spec(metrics=[TNQ], delay=0), status(5, dt.timedelta(0)), {}, 2, None, False, id="delay-0"
        ),
        pytest.param(
            spec(metrics=[TNQ]),
            status(5, -20 * MIN),
            {"default_scale_down_delay": 30 * MIN},
            5,
            NOW + 10 * MIN,
            False,
            id="configured-default-delay",
        ),
        pytest.param(spec(metrics=[TNQ]), status(None, -MIN), {}, 2, None, True, id="no-status-desired"),
        pytest.param(spec(metrics=[TNQ]), status(5, None), {}, 2, None, False, id="never-scaled-out"),
        pytest.param(spec(metrics=[TNQ]), status(1, -MIN), {}, 2, None, True, id="scale-up-not-held"),
        pytest.param(spec(metrics=[TNQ]), status(2, -MIN), {}, 2, None, False, id="steady"),
        pytest.param(
            spec(metrics=[TNQ], max_replicas=4),
            status(8, -MIN),
            {},
            4,
            NOW + 9 * MIN,
            False,
            id="hold-capped-at-max",
        ),
        pytest.param(
            spec(metrics=[TNQ], max_replicas=2), status(8, -MIN), {}, 2, None, False, id="max-equals-computed"
        ),
    ],
)
def test_scale_down_delay(
    s: HorizontalRunnerAutoscalerSpec,
    st: HorizontalRunnerAutoscalerStatus,
    kw: dict[str, object],
    desired: int,
    held_until: dt.datetime | None,
    scaled_out: bool,
) -> None:
    d = decide(s, st, JOBS2, **kw)
    assert (d.desired_replicas, d.scale_down_held_until, d.scaled_out) == (desired, held_until, scaled_out)
    assert d.last_successful_scale_out_time == (NOW if scaled_out else st.last_successful_scale_out_time)
    assert d.computed_replicas == min(2, s.max_replicas or 0)


def test_held_reason_and_requeue() -> None:
    d = decide(spec(metrics=[TNQ]), status(5, -5 * MIN), JOBS2)
    assert d.held
    assert any("scale-down from 5 to 2 held until 2026-11-27 09:05:00 +0000 UTC" in r for r in d.reasons)
    assert d.requeue_after == 5 * MIN


@pytest.mark.parametrize(
    ("before", "desired", "scaled_out"),
    [
        pytest.param(None, 1, False, id="first-at-1"),
        pytest.param(None, 2, True, id="first-above-1"),
        pytest.param(None, 0, False, id="first-at-0"),
        pytest.param(3, 4, True, id="growth"),
        pytest.param(3, 3, False, id="same"),
    ],
)
def test_last_scale_out_time(before: int | None, desired: int, scaled_out: bool) -> None:
    d = decide(spec(min_replicas=desired, max_replicas=10), status(before, -30 * MIN))
    assert (d.desired_replicas, d.scaled_out) == (desired, scaled_out)


# --- schedule integration ----------------------------------------------------------------------------


def window(start: str, end: str, min_replicas: int | None, freq: str | None = None) -> ScheduledOverride:
    rule = None if freq is None else RecurrenceRule(frequency=freq)
    return ScheduledOverride(
        start_time=parse_time(start),
        end_time=parse_time(end),
        min_replicas=min_replicas,
        recurrence_rule=rule,
    )


BUSINESS = window("2026-11-02T08:00:00Z", "2026-11-02T18:00:00Z", 5, "Daily")
LATER = window("2026-11-27T12:00:00Z", "2026-11-27T13:00:00Z", 7)


@pytest.mark.parametrize(
    ("s", "desired", "min_replicas", "summary", "requeue"),
    [
        pytest.param(
            spec(min_replicas=1, overrides=[BUSINESS]),
            5,
            5,
            "min=1 time=2026-11-27 18:00:00 +0000 UTC",
            9 * 60 * MIN,
            id="override-raises-min",
        ),
        pytest.param(
            spec(min_replicas=1, overrides=[LATER]),
            1,
            1,
            "min=7 time=2026-11-27 12:00:00 +0000 UTC",
            3 * 60 * MIN,
            id="upcoming-override",
        ),
        pytest.param(
            spec(min_replicas=1, max_replicas=3, overrides=[BUSINESS]),
            3,
            5,
            "min=1 time=2026-11-27 18:00:00 +0000 UTC",
            9 * 60 * MIN,
            id="override-above-max-capped",
        ),
        pytest.param(
            spec(min_replicas=2, overrides=[window("2026-11-27T08:00:00Z", "2026-11-27T10:00:00Z", 0)]),
            0,
            0,
            "min=2 time=2026-11-27 10:00:00 +0000 UTC",
            60 * MIN,
            id="override-to-zero",
        ),
        pytest.param(
            spec(min_replicas=1, overrides=[BUSINESS], reservations=[res(exp=30 * MIN)]),
            6,
            5,
            "min=1 time=2026-11-27 18:00:00 +0000 UTC",
            30 * MIN,
            id="reservation-expiry-earlier-than-schedule",
        ),
        pytest.param(spec(min_replicas=1), 1, 1, None, None, id="nothing-to-wait-for"),
    ],
)
def test_schedule(
    s: HorizontalRunnerAutoscalerSpec,
    desired: int,
    min_replicas: int,
    summary: str | None,
    requeue: dt.timedelta | None,
) -> None:
    d = decide(s)
    assert (d.desired_replicas, d.min_replicas, d.scheduled_overrides_summary, d.requeue_after) == (
        desired,
        min_replicas,
        summary,
        requeue,
    )


def test_schedule_error_is_autoscale_error() -> None:
    bad = window("2026-11-27T08:00:00Z", "2026-11-29T08:00:00Z", 3, "Daily")
    with pytest.raises(AutoscaleError, match="longer than"):
        decide(spec(overrides=[bad]))


def test_min_above_max_reason() -> None:
    d = decide(spec(min_replicas=1, max_replicas=3, overrides=[BUSINESS]))
    assert any("maxReplicas wins" in r for r in d.reasons)


# --- effectiveTime ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "reservations", "effective"),
    [
        pytest.param(REPO, [], None, id="no-reservations"),
        pytest.param(REPO, [res(eff=-3 * MIN), res(eff=-MIN), res(eff=-2 * MIN)], NOW - MIN, id="latest"),
        pytest.param(
            REPO, [res(eff=-3 * MIN), res(exp=-MIN, eff=-MIN)], NOW - MIN, id="expired-counts-as-arc"
        ),
        pytest.param(
            REPO, [res(eff=-3 * MIN), res(replicas=0, eff=-MIN, name="job-1")], NOW - 3 * MIN, id="marker-not"
        ),
        pytest.param(PERSISTENT, [res(eff=-MIN)], None, id="not-ephemeral"),
    ],
)
def test_effective_time(
    target: RunnerConfig, reservations: list[CapacityReservation], effective: dt.datetime | None
) -> None:
    assert decide(spec(reservations=reservations), o=obs(target=target)).effective_time == effective
