#!/usr/bin/env bash
# Installs Debian's container tools when one is missing: mmdebstrap, buildah, skopeo, podman, umoci
# (hack/build-images.sh and the image tests), containerd, runc and the CNI plugins (the devcluster's
# real node), docker.io (dockerd tests). Needs root (or passwordless sudo) and apt-get; elsewhere it
# names what to install and fails. RUNNERD_SKIP_CONTAINERS=1 skips it (the container tests then skip
# with that reason).
set -euo pipefail
[ "${RUNNERD_SKIP_CONTAINERS:-0}" = 1 ] && { echo "install-containers: skipped (RUNNERD_SKIP_CONTAINERS=1)" >&2; exit 0; }
PKGS=(mmdebstrap buildah skopeo podman umoci containerd runc containernetworking-plugins docker.io uidmap iptables)
TOOLS=(mmdebstrap buildah skopeo podman umoci containerd runc /usr/lib/cni/bridge dockerd)
missing=0
for t in "${TOOLS[@]}"; do
  if [[ $t == /* ]]; then [ -x "$t" ] || missing=1; else command -v "$t" >/dev/null || missing=1; fi
done
[ "$missing" = 0 ] && exit 0
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install-containers: missing container tools; as root: apt-get install ${PKGS[*]} (or set RUNNERD_SKIP_CONTAINERS=1)" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null; then
  echo "install-containers: apt-get is not available; install ${PKGS[*]} by hand (or set RUNNERD_SKIP_CONTAINERS=1)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q --no-install-recommends "${PKGS[@]}" >&2; then
  $SUDO apt-get update -q >&2
  $SUDO apt-get install -y -q --no-install-recommends "${PKGS[@]}" >&2
fi
