#!/usr/bin/env bash
# Builds the real Kubernetes control-plane binaries (and etcd, kwok, helm) from Go modules,
# pinned, into a cache outside the repository. A warm cache means no rebuild.
#
#   hack/build-binaries.sh            # build what is missing, print the bin directory
#   RUNNERD_CACHE=/path hack/build-binaries.sh
#
# Every step names itself; on failure the last line says which module/step failed and what to try.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.36.3}
ETCD_VERSION=${ETCD_VERSION:-3.6.16}
KWOK_VERSION=${KWOK_VERSION:-0.8.0}
HELM_VERSION=${HELM_VERSION:-3.22.0}

CACHE=${RUNNERD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runnerd}
BIN="$CACHE/k8s/v$K8S_VERSION-etcd$ETCD_VERSION-kwok$KWOK_VERSION-helm$HELM_VERSION/bin"
SRC="$CACHE/k8s/src"
mkdir -p "$BIN" "$SRC"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
MINOR=${K8S_VERSION#1.}; MINOR=${MINOR%%.*}
STEP=""
fail() {
  echo "build-binaries: FAILED at step: $STEP" >&2
  echo "build-binaries: the Go module proxy or the Go toolchain ($(go version 2>/dev/null || echo 'go: not found')) could not complete it." >&2
  echo "build-binaries: look at the output above; retry (network hiccups are common), or pin another version with K8S_VERSION/ETCD_VERSION/KWOK_VERSION/HELM_VERSION." >&2
}
trap fail ERR
log() { printf '[build-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

have() { [ -x "$BIN/$1" ]; }

# --- kube-apiserver, kube-scheduler, kube-controller-manager -------------------------------
if ! have kube-apiserver || ! have kube-scheduler || ! have kube-controller-manager; then
  D="$SRC/k8s-$K8S_VERSION"; mkdir -p "$D"; cd "$D"
  STEP="k8s: go mod init"
  [ -f go.mod ] || go mod init local/k8sbuild >/dev/null 2>&1
  STEP="k8s: download k8s.io/kubernetes@v$K8S_VERSION go.mod from the module proxy"
  log "$STEP"
  KMOD=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  STEP="k8s: replace staging modules with published v0.$MINOR.x"
  for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => \./staging/.*#\1#p' "$KMOD"); do
    go mod edit -replace="$m=$m@v0.${K8S_VERSION#1.}"
  done
  gd=$(sed -n 's/^godebug \(.*\)$/\1/p' "$KMOD" | head -1)
  [ -n "$gd" ] && go mod edit -godebug="$gd" 2>/dev/null || true
  STEP="k8s: go get k8s.io/kubernetes@v$K8S_VERSION (and its ~150 dependency modules)"
  log "$STEP"
  go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" "k8s.io/kubernetes/cmd/kube-scheduler@v$K8S_VERSION" \
         "k8s.io/kubernetes/cmd/kube-controller-manager@v$K8S_VERSION"
  LD="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    LD="$LD -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean -X $p.buildDate=2026-01-01T00:00:00Z"
  done
  STEP="k8s: go build kube-apiserver kube-scheduler kube-controller-manager"
  log "$STEP (cold: 10-30 min on 2 cores)"
  go build -trimpath -pgo=off -tags selinux,notest -ldflags "$LD" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-controller-manager
fi

# --- etcd ------------------------------------------------------------------------------------
if ! have etcd; then
  D="$SRC/etcd-$ETCD_VERSION"; mkdir -p "$D"; cd "$D"
  STEP="etcd: go get go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  log "$STEP"
  [ -f go.mod ] || go mod init local/etcdbuild >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  STEP="etcd: go build go.etcd.io/etcd/server/v3"
  log "$STEP"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
fi

# --- kwok (and its stage definitions) ---------------------------------------------------------
if ! have kwok || [ ! -f "$BIN/../kwok-stages.yaml" ]; then
  STEP="kwok: go install sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
  log "$STEP"
  GOBIN="$BIN" GOFLAGS= go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
  STEP="kwok: copy stage definitions from the module cache"
  K="$(go env GOMODCACHE)/sigs.k8s.io/kwok@v$KWOK_VERSION/kustomize/stage"
  {
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      cat "$K/$f"; echo '---'
    done
  } > "$BIN/../kwok-stages.yaml"
fi

# --- helm --------------------------------------------------------------------------------------
if ! have helm; then
  STEP="helm: go install helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  log "$STEP"
  GOBIN="$BIN" GOFLAGS= go install -trimpath -ldflags "-s -w \
    -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$MINOR \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$MINOR" \
    "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
fi

# --- kubelet (the devcluster's real node: devcluster/realnode.py) --------------------------------
# Same module setup as the control plane above (its go.mod, staging replaces and ldflags).
if ! have kubelet; then
  D="$SRC/k8s-$K8S_VERSION"; cd "$D"
  STEP="kubelet: go get k8s.io/kubernetes/cmd/kubelet@v$K8S_VERSION"
  log "$STEP"
  go get "k8s.io/kubernetes/cmd/kubelet@v$K8S_VERSION"
  LD="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    LD="$LD -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean -X $p.buildDate=2026-01-01T00:00:00Z"
  done
  STEP="kubelet: go build k8s.io/kubernetes/cmd/kubelet"
  log "$STEP (cold: 5-15 min on 2 cores; shares most packages with the control plane)"
  go build -trimpath -pgo=off -tags selinux,notest -ldflags "$LD" -o "$BIN/" k8s.io/kubernetes/cmd/kubelet
fi

trap - ERR
"$BIN/kube-apiserver" --version >&2
echo "$BIN"
