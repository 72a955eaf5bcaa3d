#!/usr/bin/env bash
# Builds a real kube-apiserver from the Go module proxy, for the Kubernetes-mode
# tests and `flannelctl lab up --store kube`. It is a test dependency only: no Go
# is part of flannel-ts itself. The binary is cached outside the repository,
# keyed by version, so a machine builds it once.
#
#   bash scripts/build-kube-apiserver.sh          # prints the binary's path
#
# Env: KUBE_VERSION (default v1.37.2), FLANNEL_TS_CACHE (default ~/.cache/flannel-ts).
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces the staging
# modules (k8s.io/api, client-go, ...) with ./staging paths. A throwaway module
# that requires it and replaces each staging module with the published v0.X.Y
# of the same name builds fine.
set -euo pipefail
KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"
CACHE="${FLANNEL_TS_CACHE:-$HOME/.cache/flannel-ts}"
OUT="$CACHE/kube-apiserver-$KUBE_VERSION"
if [ -x "$OUT" ]; then echo "$OUT"; exit 0; fi
if ! command -v go >/dev/null 2>&1; then
  echo "build-kube-apiserver: 'go' is not installed; cannot build kube-apiserver $KUBE_VERSION" >&2
  exit 3
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.kube-apiserver.lock"
flock 9
if [ -x "$OUT" ]; then echo "$OUT"; exit 0; fi
work="$(mktemp -d "$CACHE/build-kube-apiserver.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"
log() { echo "build-kube-apiserver: $*" >&2; }
log "building kube-apiserver $KUBE_VERSION (first time on this machine: ~0.5 GB of modules, ~10 min on 2 cores)"
export GOFLAGS=-mod=mod
go mod init flannel-ts-kube-apiserver-build >/dev/null 2>&1
gomod="$(go list -m -f '{{.GoMod}}' "k8s.io/kubernetes@$KUBE_VERSION")"
{
  echo "require k8s.io/kubernetes $KUBE_VERSION"
  echo "replace ("
  sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"$STAGING_VERSION"'#p' "$gomod"
  echo ")"
} >> go.mod
cat > main.go <<'GO'
package main

import _ "k8s.io/kubernetes/cmd/kube-apiserver/app"

func main() {}
GO
log "resolving modules"
go mod tidy >&2
log "compiling (this is the long part)"
go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION" \
  -o "$work/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
mv "$work/kube-apiserver" "$OUT"
log "built $OUT"
echo "$OUT"
