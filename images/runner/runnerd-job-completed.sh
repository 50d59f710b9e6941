#!/bin/sh
# ACTIONS_RUNNER_HOOK_JOB_COMPLETED: the job is over; the pod turns Ready (idle) again.
rm -f "${RUNNER_HOME:-/runner}/.runnerd-job"
