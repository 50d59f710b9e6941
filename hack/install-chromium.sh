#!/usr/bin/env bash
# Installs Debian's chromium (the dashboard test drives it headless) when /usr/bin/chromium is absent.
# Needs root or passwordless sudo and apt; elsewhere it says what to install and fails.
set -euo pipefail
CHROMIUM=${RUNNERD_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install-chromium: $CHROMIUM is missing; install Debian's chromium package (apt-get install chromium)" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null; then
  echo "install-chromium: $CHROMIUM is missing and apt-get is not available; install chromium by hand" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q chromium >&2; then
  $SUDO apt-get update -q >&2
  $SUDO apt-get install -y -q chromium >&2
fi
test -x "$CHROMIUM"
