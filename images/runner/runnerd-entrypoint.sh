#!/usr/bin/env bash
# runnerd runner entrypoint: register (or use a JIT config), run the actions/runner, and on SIGTERM
# let a running job finish before deregistering. The env contract is the one runnerd's pod builder
# sets (docs/runner-pods.md), which is ARC's legacy one:
#
#   RUNNER_NAME, RUNNER_ORG / RUNNER_REPO / RUNNER_ENTERPRISE (one is set), RUNNER_LABELS (comma
#   list), RUNNER_GROUP, RUNNER_EPHEMERAL (true|false), RUNNER_WORKDIR, GITHUB_URL,
#   RUNNER_TOKEN (registration token)  or  ACTIONS_RUNNER_INPUT_JITCONFIG (JIT config),
#   DOCKER_ENABLED, DOCKERD_IN_RUNNER, DOCKER_HOST, RUNNER_GRACEFUL_STOP_TIMEOUT (default 15).
#
# Optional knobs (ARC's names where ARC has them): STARTUP_DELAY_IN_SECONDS, DISABLE_RUNNER_UPDATE,
# WAIT_FOR_DOCKER_SECONDS (120), DISABLE_WAIT_FOR_DOCKER, RUNNER_CONFIG_ATTEMPTS (10),
# RUNNER_CONFIG_RETRY_DELAY (5 s). Paths, overridable for tests: RUNNER_HOME (/runner, the pod's
# emptyDir), RUNNER_ASSETS_DIR (/runnertmp, the runner as installed in the image), RUNNERD_DOCKERD
# (the dind control script), RUNNERD_JOB_PROCESS (Runner.Worker: a job is running while a process
# of that name exists).
#
# SIGTERM (pod deletion): a job that is running may finish, for at most RUNNER_GRACEFUL_STOP_TIMEOUT
# seconds; an idle runner is deregistered at once (`config.sh remove`, token mode: it also refuses
# while a job runs, so no new job can slip in once it succeeded); then the runner is stopped. With a
# JIT config there is no token to deregister with: the controller deletes the runner by id. Give the
# pod a terminationGracePeriodSeconds longer than RUNNER_GRACEFUL_STOP_TIMEOUT.
set -Eeuo pipefail

RUNNER_HOME="${RUNNER_HOME:-/runner}"
RUNNER_ASSETS_DIR="${RUNNER_ASSETS_DIR:-/runnertmp}"
RUNNERD_DOCKERD="${RUNNERD_DOCKERD:-/usr/local/bin/runnerd-dockerd}"
RUNNERD_JOB_PROCESS="${RUNNERD_JOB_PROCESS:-Runner.Worker}"
GRACEFUL_STOP_TIMEOUT="${RUNNER_GRACEFUL_STOP_TIMEOUT:-15}"
CONFIG_ATTEMPTS="${RUNNER_CONFIG_ATTEMPTS:-10}"
CONFIG_RETRY_DELAY="${RUNNER_CONFIG_RETRY_DELAY:-5}"

log() { printf '%s runnerd-entrypoint: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
truthy() { case "${1:-}" in true | True | TRUE | 1 | yes) return 0 ;; *) return 1 ;; esac; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n -E "$@"; fi
}

# The scope URL: GITHUB_URL + enterprises/<e> | <org> | <owner/repo>.
runner_url() {
  local base="${GITHUB_URL:-https://github.com/}"
  base="${base%/}/"
  if [ -n "${RUNNER_ENTERPRISE:-}" ]; then
    printf '%senterprises/%s' "$base" "$RUNNER_ENTERPRISE"
  elif [ -n "${RUNNER_ORG:-}" ]; then
    printf '%s%s' "$base" "$RUNNER_ORG"
  elif [ -n "${RUNNER_REPO:-}" ]; then
    printf '%s%s' "$base" "$RUNNER_REPO"
  else
    return 1
  fi
}

copy_runner() {
  if [ ! -x "$RUNNER_HOME/config.sh" ] && [ -d "$RUNNER_ASSETS_DIR" ]; then
    log "copying the runner from $RUNNER_ASSETS_DIR to $RUNNER_HOME"
    mkdir -p "$RUNNER_HOME"
    cp -a "$RUNNER_ASSETS_DIR/." "$RUNNER_HOME/"
  fi
  if [ ! -x "$RUNNER_HOME/config.sh" ] || [ ! -x "$RUNNER_HOME/run.sh" ]; then
    die "no actions/runner in $RUNNER_HOME (config.sh, run.sh)"
  fi
}

wait_for_docker() {
  truthy "${DOCKER_ENABLED:-false}" || return 0
  truthy "${DISABLE_WAIT_FOR_DOCKER:-false}" && return 0
  local limit="${WAIT_FOR_DOCKER_SECONDS:-120}" n=0
  until docker info >/dev/null 2>&1; do
    [ "$term" -eq 0 ] || { log "SIGTERM while waiting for Docker"; exit 0; }
    n=$((n + 1))
    [ "$n" -le "$limit" ] || die "Docker did not answer within ${limit}s (DOCKER_HOST=${DOCKER_HOST:-default})"
    sleep 1
  done
  log "Docker is up"
}

configure() {
  local url="$1" attempt=1
  local args=(--unattended --replace --name "$RUNNER_NAME" --url "$url" --token "$token" --work "${RUNNER_WORKDIR:-_work}")
  [ -n "${RUNNER_LABELS:-}" ] && args+=(--labels "$RUNNER_LABELS")
  # Runner groups exist for organisations and enterprises only (ARC passes the group likewise).
  [ -n "${RUNNER_GROUP:-}" ] && [ -z "${RUNNER_REPO:-}" ] && args+=(--runnergroup "$RUNNER_GROUP")
  truthy "${RUNNER_EPHEMERAL:-true}" && args+=(--ephemeral)
  truthy "${DISABLE_RUNNER_UPDATE:-false}" && args+=(--disableupdate)
  while :; do
    log "configuring runner $RUNNER_NAME for $url (attempt $attempt of $CONFIG_ATTEMPTS)"
    if (cd "$RUNNER_HOME" && ./config.sh "${args[@]}") && [ -f "$RUNNER_HOME/.runner" ]; then
      return 0
    fi
    [ "$attempt" -lt "$CONFIG_ATTEMPTS" ] || die "config.sh failed $CONFIG_ATTEMPTS times"
    [ "$term" -eq 0 ] || { log "SIGTERM while registering"; exit 0; }
    attempt=$((attempt + 1))
    sleep "$CONFIG_RETRY_DELAY"
  done
}

job_running() { pgrep -f -- "$RUNNERD_JOB_PROCESS" >/dev/null 2>&1; }
runner_alive() { [ -n "${runner_pid:-}" ] && kill -0 "$runner_pid" 2>/dev/null; }

deregister() {
  [ "$mode" = token ] || return 1
  [ -f "$RUNNER_HOME/.runner" ] || return 0
  (cd "$RUNNER_HOME" && ./config.sh remove --token "$token") >&2
}

stop_runner() {
  runner_alive || return 0
  log "stopping the runner"
  kill -TERM "$runner_pid" 2>/dev/null || true
  local n=0
  while runner_alive && [ "$n" -lt 20 ]; do sleep 0.5; n=$((n + 1)); done
  if runner_alive; then kill -KILL "$runner_pid" 2>/dev/null || true; fi
  wait "$runner_pid" 2>/dev/null || true
}

# SIGTERM: wait (bounded) for a running job, deregister, stop the runner. Sets exit_code.
graceful_stop() {
  local deadline=$((SECONDS + GRACEFUL_STOP_TIMEOUT)) said=0 removed=0 exit_wait
  log "SIGTERM: letting a running job finish (up to ${GRACEFUL_STOP_TIMEOUT}s) before deregistering"
  while runner_alive && [ "$SECONDS" -lt "$deadline" ]; do
    if job_running; then
      [ "$said" -eq 1 ] || log "a job is running; waiting for it"
      said=1
    elif [ "$said" -eq 1 ] && truthy "${RUNNER_EPHEMERAL:-true}"; then
      # An ephemeral runner exits by itself after its job (GitHub already removed it): let it.
      exit_wait=$((SECONDS + 5))
      while runner_alive && [ "$SECONDS" -lt "$exit_wait" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
      said=2
    elif [ "$mode" = jit ]; then
      break
    elif deregister; then
      removed=1
      log "deregistered"
      break
    fi
    sleep 1
  done
  if runner_alive && job_running; then
    log "the job is still running after ${GRACEFUL_STOP_TIMEOUT}s; stopping the runner cancels it"
    exit_code=143
  else
    exit_code=0
  fi
  stop_runner
  if [ "$mode" = token ] && [ "$removed" -eq 0 ]; then deregister || log "could not deregister; the controller will"; fi
}

cleanup() {
  # The docker sidecar's preStop hook waits while /runner/.runner exists.
  rm -f "$RUNNER_HOME/.runner" "$RUNNER_HOME/.credentials" "$RUNNER_HOME/.credentials_rsaparams"
  if truthy "${DOCKERD_IN_RUNNER:-false}" && [ -x "$RUNNERD_DOCKERD" ]; then
    as_root "$RUNNERD_DOCKERD" stop || log "stopping dockerd failed"
  fi
}

main() {
  trap 'term=1' TERM INT
  [ -n "${RUNNER_NAME:-}" ] || die "RUNNER_NAME is not set"
  if [ -n "${STARTUP_DELAY_IN_SECONDS:-}" ]; then
    log "waiting ${STARTUP_DELAY_IN_SECONDS}s (STARTUP_DELAY_IN_SECONDS)"
    sleep "$STARTUP_DELAY_IN_SECONDS"
  fi
  copy_runner

  jit="${ACTIONS_RUNNER_INPUT_JITCONFIG:-}"
  token="${RUNNER_TOKEN:-}"
  # Jobs inherit the runner's environment: keep the credentials out of it.
  unset ACTIONS_RUNNER_INPUT_JITCONFIG RUNNER_TOKEN
  local run_args=()
  if [ -n "$jit" ]; then
    mode=jit
    run_args=(--jitconfig "$jit")
  elif [ -n "$token" ]; then
    mode=token
  else
    die "neither ACTIONS_RUNNER_INPUT_JITCONFIG nor RUNNER_TOKEN is set"
  fi

  trap cleanup EXIT
  if truthy "${DOCKERD_IN_RUNNER:-false}"; then
    [ -x "$RUNNERD_DOCKERD" ] || die "DOCKERD_IN_RUNNER=true but $RUNNERD_DOCKERD is missing: use a dind runner image"
    as_root "$RUNNERD_DOCKERD" start || die "dockerd did not start"
  fi
  wait_for_docker
  if [ "$mode" = token ]; then
    local url
    url="$(runner_url)" || die "none of RUNNER_ENTERPRISE, RUNNER_ORG, RUNNER_REPO is set"
    configure "$url"
  fi
  if [ "$term" -eq 1 ]; then
    log "SIGTERM before the runner started"
    deregister || true
    exit 0
  fi

  log "starting the runner ($mode mode)"
  (cd "$RUNNER_HOME" && exec ./run.sh "${run_args[@]}") &
  runner_pid=$!
  local rc
  while :; do
    if [ "$term" -eq 1 ]; then
      graceful_stop
      exit "$exit_code"
    fi
    set +e
    wait "$runner_pid" # returns early when a trapped signal arrives
    rc=$?
    set -e
    if ! runner_alive; then
      log "the runner exited with $rc"
      exit "$rc"
    fi
  done
}

mode=""
token=""
jit=""
runner_pid=""
exit_code=0
term=0
main "$@"
