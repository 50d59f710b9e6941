"""The GitHub adapter: runner registration (JIT configs, registration tokens), runner listing and
removal, and the autoscaler's polling of workflow runs and jobs, over GitHub's REST API.

Only this package talks to GitHub. It may import the pure layers (:mod:`runnerd.api`,
:mod:`runnerd.reconcile`) but not the Kubernetes side, the runtime, the web server or the controller.
"""

from runnerd.github.budget import CallStats, CallStatsSnapshot, RateLimitGate, RateLimitState
from runnerd.github.client import DEFAULT_RUNNER_GROUP_ID, DEFAULT_RUNNER_GROUP_NAME, GitHubClient
from runnerd.github.config import DEFAULT_API_URL, DEFAULT_GITHUB_URL, GitHubConfig, Scope, ScopeKind
from runnerd.github.credentials import (
    Credentials,
    GitHubAppCredentials,
    PersonalAccessToken,
    load_credentials,
)
from runnerd.github.errors import (
    BadCredentialsError,
    ConflictError,
    CredentialsError,
    GitHubConfigError,
    GitHubConnectionError,
    GitHubError,
    GitHubHTTPError,
    GitHubServerError,
    InvalidCredentialsError,
    MissingCredentialsError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RateLimitWaitExceeded,
    RunnerBusyError,
    RunnerGroupNotFoundError,
    UnexpectedResponseError,
    ValidationFailedError,
)
from runnerd.github.models import (
    InstallationToken,
    JitConfig,
    RegistrationToken,
    Runner,
    RunnerGroup,
    WorkflowJob,
    WorkflowRun,
)
from runnerd.github.sansio import RateLimit
from runnerd.github.transport import RetryPolicy

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_GITHUB_URL",
    "DEFAULT_RUNNER_GROUP_ID",
    "DEFAULT_RUNNER_GROUP_NAME",
    "BadCredentialsError",
    "CallStats",
    "CallStatsSnapshot",
    "ConflictError",
    "Credentials",
    "CredentialsError",
    "GitHubAppCredentials",
    "GitHubClient",
    "GitHubConfig",
    "GitHubConfigError",
    "GitHubConnectionError",
    "GitHubError",
    "GitHubHTTPError",
    "GitHubServerError",
    "InstallationToken",
    "InvalidCredentialsError",
    "JitConfig",
    "MissingCredentialsError",
    "NotFoundError",
    "PermissionDeniedError",
    "PersonalAccessToken",
    "RateLimit",
    "RateLimitGate",
    "RateLimitState",
    "RateLimitWaitExceeded",
    "RateLimitedError",
    "RegistrationToken",
    "RetryPolicy",
    "Runner",
    "RunnerBusyError",
    "RunnerGroup",
    "RunnerGroupNotFoundError",
    "Scope",
    "ScopeKind",
    "UnexpectedResponseError",
    "ValidationFailedError",
    "WorkflowJob",
    "WorkflowRun",
    "load_credentials",
]
