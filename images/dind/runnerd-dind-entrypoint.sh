#!/bin/sh
# The dind image's entrypoint (what docker:dind's dockerd-entrypoint.sh does, for Debian's dockerd):
# arguments that start with "-" are dockerd's; as root, with cgroup v2 at /sys/fs/cgroup, move this
# container's processes into a child group first so dockerd can delegate controllers (cgroup v1,
# as on hybrid hosts, needs nothing); then exec the command.
set -eu
case "${1:-}" in -*) set -- dockerd "$@" ;; esac
if [ "${1:-}" = dockerd ] && [ "$(id -u)" = 0 ] && [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
  sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || :
fi
exec "$@"
