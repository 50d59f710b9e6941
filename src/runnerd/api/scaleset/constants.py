"""Names of ARC's scale-set API (``actions.github.com/v1alpha1``) and its defaults.

Facts from ARC@0.13.1 ``apis/actions.github.com/v1alpha1`` and the reference
(``scale-set-protocol.md`` §12.5, §13): finalizers, annotation and label keys the controllers and
the charts share. Pure constants, no behaviour.
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "actions.github.com"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

# ARC's defaults, applied by the ``effective_*`` properties (never written back).
DEFAULT_MIN_RUNNERS: Final = 0
DEFAULT_MAX_RUNNERS: Final = 2147483647  # an unset maxRunners is math.MaxInt32 in ARC
DEFAULT_REPLICAS: Final = 0
DEFAULT_PATCH_ID: Final = 0

RUNNER_CONTAINER_NAME: Final = "runner"
LISTENER_CONTAINER_NAME: Final = "listener"

# Secret keys of githubConfigSecret (same names as the legacy controller's credentials Secret).
SECRET_KEY_TOKEN: Final = "github_token"
SECRET_KEY_APP_ID: Final = "github_app_id"
SECRET_KEY_APP_INSTALLATION_ID: Final = "github_app_installation_id"
SECRET_KEY_APP_PRIVATE_KEY: Final = "github_app_private_key"

# Finalizers (the EphemeralRunnerSet reuses the EphemeralRunner's string, as ARC does).
FINALIZER_AUTOSCALING_RUNNER_SET: Final = "autoscalingrunnerset.actions.github.com/finalizer"
FINALIZER_AUTOSCALING_LISTENER: Final = "autoscalinglistener.actions.github.com/finalizer"
FINALIZER_EPHEMERAL_RUNNER: Final = "ephemeralrunner.actions.github.com/finalizer"
FINALIZER_RUNNER_REGISTRATION: Final = "ephemeralrunner.actions.github.com/runner-registration-finalizer"
FINALIZER_CLEANUP_PROTECTION: Final = "actions.github.com/cleanup-protection"

# Annotations.
ANNOTATION_SCALE_SET_ID: Final = "runner-scale-set-id"
ANNOTATION_SCALE_SET_NAME: Final = "actions.github.com/runner-scale-set-name"
ANNOTATION_RUNNER_GROUP_NAME: Final = "actions.github.com/runner-group-name"
ANNOTATION_RUNNER_SPEC_HASH: Final = "actions.github.com/runner-spec-hash"
ANNOTATION_VALUES_HASH: Final = "actions.github.com/values-hash"
ANNOTATION_PATCH_ID: Final = "actions.github.com/patch-id"

# Labels.
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_VERSION: Final = "app.kubernetes.io/version"
LABEL_SCALE_SET_NAME: Final = "actions.github.com/scale-set-name"
LABEL_SCALE_SET_NAMESPACE: Final = "actions.github.com/scale-set-namespace"
COMPONENT_AUTOSCALING_RUNNER_SET: Final = "autoscaling-runner-set"
COMPONENT_RUNNER_SET: Final = "runner-set"
COMPONENT_RUNNER: Final = "runner"
COMPONENT_LISTENER: Final = "runner-scale-set-listener"

# EphemeralRunner status.phase values (a PodPhase in ARC <= 0.13, plus Outdated in 0.14).
PHASE_PENDING: Final = "Pending"
PHASE_RUNNING: Final = "Running"
PHASE_SUCCEEDED: Final = "Succeeded"
PHASE_FAILED: Final = "Failed"
PHASE_OUTDATED: Final = "Outdated"

CONTAINER_MODES: Final = ("dind", "kubernetes", "kubernetes-novolume")
VAULT_TYPES: Final = ("azure_key_vault",)
