#!/usr/bin/env bash
# Builds the operations-kit checkers from Go modules, pinned, into a cache outside the repository:
# promtool (alert rules and their unit tests), actionlint (.github/workflows) and kubeconform
# (rendered chart manifests against the Kubernetes JSON schemas). A warm cache means no rebuild.
#
#   hack/build-tools.sh            # build what is missing, print the bin directory
#   RUNNERD_CACHE=/path hack/build-tools.sh
#
# Every step names itself; on failure the last line says which module/step failed and what to try.
set -euo pipefail

PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-0.316.0}   # the Go module version of Prometheus 3.16.0
ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-1.7.12}
KUBECONFORM_VERSION=${KUBECONFORM_VERSION:-0.8.0}

CACHE=${RUNNERD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runnerd}
BIN="$CACHE/tools/prometheus$PROMETHEUS_VERSION-actionlint$ACTIONLINT_VERSION-kubeconform$KUBECONFORM_VERSION/bin"
mkdir -p "$BIN"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=
STEP=""
fail() {
  echo "build-tools: FAILED at step: $STEP" >&2
  echo "build-tools: the Go module proxy or the Go toolchain ($(go version 2>/dev/null || echo 'go: not found')) could not complete it." >&2
  echo "build-tools: look at the output above; retry (network hiccups are common), or pin another version with PROMETHEUS_VERSION/ACTIONLINT_VERSION/KUBECONFORM_VERSION." >&2
}
trap fail ERR
log() { printf '[build-tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

have() { [ -x "$BIN/$1" ]; }

# --- promtool ----------------------------------------------------------------------------------
# remove_all_sd: no cloud service-discovery plugins (promtool's rule checks and tests need none).
if ! have promtool; then
  M=${PROMETHEUS_VERSION#0.}; M=${M%%.*}; P="$((M / 100)).$((M % 100)).${PROMETHEUS_VERSION##*.}"  # 0.316.0 -> 3.16.0
  STEP="promtool: go install github.com/prometheus/prometheus/cmd/promtool@v$PROMETHEUS_VERSION"
  log "$STEP (cold: a few minutes)"
  GOBIN="$BIN" go install -trimpath -tags remove_all_sd -ldflags "-s -w \
    -X github.com/prometheus/common/version.Version=$P -X github.com/prometheus/common/version.Branch=HEAD" \
    "github.com/prometheus/prometheus/cmd/promtool@v$PROMETHEUS_VERSION"
fi

# --- actionlint ----------------------------------------------------------------------------------
if ! have actionlint; then
  STEP="actionlint: go install github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION"
  log "$STEP"
  GOBIN="$BIN" go install -trimpath -ldflags "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" \
    "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION"
fi

# --- kubeconform ---------------------------------------------------------------------------------
if ! have kubeconform; then
  STEP="kubeconform: go install github.com/yannh/kubeconform/cmd/kubeconform@v$KUBECONFORM_VERSION"
  log "$STEP"
  GOBIN="$BIN" go install -trimpath -ldflags "-s -w" \
    "github.com/yannh/kubeconform/cmd/kubeconform@v$KUBECONFORM_VERSION"
fi

trap - ERR
"$BIN/promtool" --version 2>&1 | head -1 >&2
echo "$BIN"
