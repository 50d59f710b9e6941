"""Names of the ``actions.summerwind.dev/v1alpha1`` API (ARC legacy mode) and ARC's defaults."""

from __future__ import annotations

from typing import Final

GROUP: Final = "actions.summerwind.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

# Kubernetes version whose OpenAPI documents describe the embedded pod/statefulset fields.
K8S_OPENAPI_MODULE: Final = "k8s.io/kubernetes"
K8S_OPENAPI_VERSION: Final = "v1.36.3"

# ARC's defaults (legacy controllers), applied by the ``effective_*`` properties of the API types.
DEFAULT_EPHEMERAL: Final = True
DEFAULT_DOCKER_ENABLED: Final = True
DEFAULT_DOCKERD_WITHIN_RUNNER_CONTAINER: Final = False
DEFAULT_WORK_DIR: Final = "/runner/_work"
DEFAULT_DOCKER_VAR_RUN_VOLUME_SIZE_LIMIT: Final = "1M"
DEFAULT_IMAGE_PULL_POLICY: Final = "Always"
DEFAULT_REPLICAS: Final = 1
DEFAULT_SCALE_TARGET_KIND: Final = "RunnerDeployment"
DEFAULT_MIN_REPLICAS: Final = 1
DEFAULT_SCALE_UP_TRIGGER_DURATION_SECONDS: Final = 600
DEFAULT_SCALE_UP_THRESHOLD: Final = 0.8
DEFAULT_SCALE_DOWN_THRESHOLD: Final = 0.3
DEFAULT_SCALE_UP_FACTOR: Final = 1.3
DEFAULT_SCALE_DOWN_FACTOR: Final = 0.7

CONTAINER_MODE_KUBERNETES: Final = "kubernetes"

METRIC_TOTAL_NUMBER_OF_QUEUED_AND_IN_PROGRESS_WORKFLOW_RUNS: Final = (
    "TotalNumberOfQueuedAndInProgressWorkflowRuns"
)
METRIC_PERCENTAGE_RUNNERS_BUSY: Final = "PercentageRunnersBusy"
METRIC_TYPES: Final = (
    METRIC_TOTAL_NUMBER_OF_QUEUED_AND_IN_PROGRESS_WORKFLOW_RUNS,
    METRIC_PERCENTAGE_RUNNERS_BUSY,
)
SCALE_TARGET_KINDS: Final = ("RunnerDeployment", "RunnerSet")
RECURRENCE_FREQUENCIES: Final = ("Daily", "Weekly", "Monthly", "Yearly")
WORK_VOLUME_ACCESS_MODES: Final = ("ReadWriteOnce", "ReadWriteMany")
