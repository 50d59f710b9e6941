#!/usr/bin/env bash
# runnerd-dockerd start|stop: dockerd inside the runner container (dockerdWithinRunnerContainer:
# true). Run as root (the entrypoint calls it with sudo). `start` returns once `docker info` answers.
#
# Env from the pod builder: MTU, DOCKER_REGISTRY_MIRROR (passed as --mtu / --registry-mirror, so a
# daemon.json you mount must not set them too), RUNNERD_GPU=1 (the container holds GPUs: run
# runnerd-gpu-setup first, which writes /etc/cdi/nvidia.yaml and prints any extra dockerd arguments
# CDI needs). Overridable for tests: DOCKERD (dockerd), RUNNERD_GPU_SETUP, RUNNERD_DOCKERD_LOG
# (/proc/1/fd/1: the container log), RUNNERD_DOCKERD_PIDFILE, RUNNERD_DOCKERD_TIMEOUT (60 s),
# RUNNERD_CGROUP_ROOT (/sys/fs/cgroup), RUNNERD_DOCKER_GROUP (docker).
#
# Docker's data: Kubernetes ignores an image's VOLUME, so /var/lib/docker is on the container's
# overlay filesystem, where dockerd's overlay2 driver cannot work. When it is, dockerd keeps its
# data under $RUNNER_HOME/.docker (the runner emptyDir, on the node's disk) instead;
# DOCKER_DATA_ROOT sets the directory explicitly.
set -Eeuo pipefail

DOCKERD="${DOCKERD:-dockerd}"
GPU_SETUP="${RUNNERD_GPU_SETUP:-/usr/local/bin/runnerd-gpu-setup}"
LOG="${RUNNERD_DOCKERD_LOG:-/proc/1/fd/1}"
PIDFILE="${RUNNERD_DOCKERD_PIDFILE:-/run/runnerd-dockerd.pid}"
TIMEOUT="${RUNNERD_DOCKERD_TIMEOUT:-60}"
CGROUP_ROOT="${RUNNERD_CGROUP_ROOT:-/sys/fs/cgroup}"
SOCKET_GROUP="${RUNNERD_DOCKER_GROUP:-docker}"

log() { printf '%s runnerd-dockerd: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

# cgroup v2: a nested dockerd can only enable controllers for its containers once no process sits
# in the root cgroup of this container; move them to a child group first (what docker:dind does).
nest_cgroups() {
  [ -f "$CGROUP_ROOT/cgroup.controllers" ] || return 0
  mkdir -p "$CGROUP_ROOT/runnerd-init"
  local pid
  while read -r pid; do
    echo "$pid" >"$CGROUP_ROOT/runnerd-init/cgroup.procs" 2>/dev/null || true
  done <"$CGROUP_ROOT/cgroup.procs"
  local controllers
  controllers="$(sed -e 's/ / +/g' -e 's/^/+/' <"$CGROUP_ROOT/cgroup.controllers")"
  [ "$controllers" = "+" ] || echo "$controllers" >"$CGROUP_ROOT/cgroup.subtree_control" ||
    log "could not enable cgroup controllers ($controllers); containers may lack resource limits"
}

# Some kernels have no nf_tables for containers: fall back to iptables-legacy when nft fails.
pick_iptables() {
  command -v iptables >/dev/null 2>&1 || return 0
  iptables -nL >/dev/null 2>&1 && return 0
  if command -v iptables-legacy >/dev/null 2>&1 && iptables-legacy -nL >/dev/null 2>&1; then
    log "iptables (nf_tables) does not work here; using iptables-legacy"
    update-alternatives --set iptables /usr/sbin/iptables-legacy >/dev/null
    update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy >/dev/null || true
  fi
}

fs_type() {
  local d="$1"
  while [ ! -e "$d" ] && [ "$d" != / ]; do d="$(dirname "$d")"; done
  stat -f -c %T "$d" 2>/dev/null || echo unknown
}

start() {
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    log "dockerd is already running"
    return 0
  fi
  nest_cgroups
  pick_iptables
  local args=(--host=unix:///var/run/docker.sock "--group=$SOCKET_GROUP")
  local data_root="${DOCKER_DATA_ROOT:-}"
  if [ -z "$data_root" ] && [ "$(fs_type "${RUNNERD_VAR_LIB_DOCKER:-/var/lib/docker}")" = overlayfs ] &&
    [ "$(fs_type "${RUNNER_HOME:-/runner}")" != overlayfs ]; then
    data_root="${RUNNER_HOME:-/runner}/.docker"
  fi
  [ -z "$data_root" ] || args+=("--data-root=$data_root")
  [ -z "${MTU:-}" ] || args+=("--mtu=$MTU")
  [ -z "${DOCKER_REGISTRY_MIRROR:-}" ] || args+=("--registry-mirror=$DOCKER_REGISTRY_MIRROR")
  if [ "${RUNNERD_GPU:-}" = 1 ]; then
    local extra=""
    if [ ! -x "$GPU_SETUP" ]; then
      log "runnerd-gpu-setup is not in this image; job containers will not get GPUs"
    elif extra="$("$GPU_SETUP")"; then
      # shellcheck disable=SC2206 # the helper prints whitespace-separated dockerd arguments
      args+=($extra)
    else
      log "runnerd-gpu-setup failed; job containers will not get GPUs (run runnerd-gpu-setup --check)"
    fi
  fi
  log "starting dockerd ${args[*]}"
  setsid "$DOCKERD" "${args[@]}" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local n=0 pid
  pid="$(cat "$PIDFILE")"
  until docker info >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { log "dockerd exited; see its log"; return 1; }
    n=$((n + 1))
    [ "$n" -le "$((TIMEOUT * 5))" ] || { log "dockerd did not answer within ${TIMEOUT}s"; return 1; }
    sleep 0.2
  done
  log "dockerd is up"
}

stop() {
  [ -f "$PIDFILE" ] || return 0
  local pid n=0
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping dockerd"
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null && [ "$n" -lt 100 ]; do sleep 0.2; n=$((n + 1)); done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" || true; fi
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
  echo "usage: runnerd-dockerd start|stop" >&2
  exit 2
  ;;
esac
