#!/bin/sh
# ACTIONS_RUNNER_HOOK_JOB_STARTED: mark the runner busy. The runner container's readiness probe
# (test ! -e /runner/.runnerd-job) then fails, and the controller never scales this runner down.
: > "${RUNNER_HOME:-/runner}/.runnerd-job"
