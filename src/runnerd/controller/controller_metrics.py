"""The scale-set controller's own metrics under ARC's names (reference §15.2), read at scrape time.

``gha_controller_pending_ephemeral_runners``, ``gha_controller_running_ephemeral_runners`` and
``gha_controller_failed_ephemeral_runners`` are, per scale set, the counts the EphemeralRunnerSet
controller last wrote into its sets' status (summed over the sets of one scale set while a template
roll runs); ``gha_controller_running_listeners`` is 1 per scale set whose listener runs in this
process. All are gauges with ARC's labels ``name``, ``namespace`` (the AutoscalingRunnerSet's),
``repository``, ``organization``, ``enterprise`` (from ``githubConfigUrl``); a scale set's series
vanish with its objects. Nothing here does I/O: :class:`ControllerCollector` reads informer stores.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runnerd.api.scaleset import constants as c
from runnerd.github.actions.config import ConfigURL
from runnerd.github.errors import GitHubConfigError

LABELS: Final = ("name", "namespace", "repository", "organization", "enterprise")
RUNNER_GAUGES: Final = (
    ("gha_controller_pending_ephemeral_runners", "pendingEphemeralRunners", "pending"),
    ("gha_controller_running_ephemeral_runners", "runningEphemeralRunners", "running"),
    ("gha_controller_failed_ephemeral_runners", "failedEphemeralRunners", "failed"),
)
RUNNING_LISTENERS: Final = "gha_controller_running_listeners"

LabelValues = tuple[str, ...]


def label_values(name: str, namespace: str, config_url: str) -> LabelValues:
    """ARC's label values, in :data:`LABELS` order (an unparsable URL leaves its three empty)."""
    try:
        scope = ConfigURL.parse(config_url).labels
    except GitHubConfigError:
        scope = {}
    return (name, namespace, *(scope.get(k, "") for k in LABELS[2:]))


def runner_set_labels(ers: Mapping[str, Any]) -> LabelValues:
    meta = ers.get("metadata") or {}
    labels = meta.get("labels") or {}
    runner_spec = (ers.get("spec") or {}).get("ephemeralRunnerSpec") or {}
    return label_values(
        str(labels.get(c.LABEL_SCALE_SET_NAME) or ""),
        str(labels.get(c.LABEL_SCALE_SET_NAMESPACE) or meta.get("namespace") or ""),
        str(runner_spec.get("githubConfigUrl") or ""),
    )


class ControllerCollector(Collector):
    """See the module docstring. ``runner_sets``: the EphemeralRunnerSets (an informer's objects);
    ``listeners``: ARC's scale-set labels of each listener running in this process."""

    def __init__(
        self,
        runner_sets: Callable[[], Iterable[Mapping[str, Any]]],
        listeners: Callable[[], Iterable[Mapping[str, str]]] = lambda: (),
    ) -> None:
        self.runner_sets = runner_sets
        self.listeners = listeners

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        counts: dict[str, Counter[LabelValues]] = {name: Counter() for name, _, _ in RUNNER_GAUGES}
        for ers in self.runner_sets():
            if (ers.get("metadata") or {}).get("deletionTimestamp"):
                continue
            status, labels = ers.get("status") or {}, runner_set_labels(ers)
            for name, field, _ in RUNNER_GAUGES:
                counts[name][labels] += int(status.get(field) or 0)
        for name, _, what in RUNNER_GAUGES:
            yield _gauge(name, f"Number of {what} ephemeral runners", counts[name])
        running = Counter(tuple(labels.get(k, "") for k in LABELS) for labels in self.listeners())
        yield _gauge(RUNNING_LISTENERS, "Number of listeners running", running)


def _gauge(name: str, text: str, values: Counter[LabelValues]) -> Metric:
    family = GaugeMetricFamily(name, text, labels=list(LABELS))
    for labels, value in sorted(values.items()):
        family.add_metric(list(labels), float(value))
    return family
