#!/usr/bin/env bash
# Builds the real flanneld (Go) from the Go module proxy, for the interop test
# that runs a real flannel node next to flannel-ts nodes. A test dependency
# only: no Go is part of flannel-ts. Cached outside the repository by version.
#
#   bash scripts/build-flanneld.sh      # prints the binary's path
#
# Env: FLANNEL_VERSION (default v0.28.9, the version flannel-spec.md describes),
#      FLANNEL_TS_CACHE (default ~/.cache/flannel-ts). Exit 3 when go is missing.
set -euo pipefail
FLANNEL_VERSION="${FLANNEL_VERSION:-v0.28.9}"
CACHE="${FLANNEL_TS_CACHE:-$HOME/.cache/flannel-ts}"
OUT="$CACHE/flanneld-$FLANNEL_VERSION"
if [ -x "$OUT" ]; then echo "$OUT"; exit 0; fi
if ! command -v go >/dev/null 2>&1; then
  echo "build-flanneld: 'go' is not installed; cannot build flanneld $FLANNEL_VERSION" >&2
  exit 3
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.flanneld.lock"
flock 9
if [ -x "$OUT" ]; then echo "$OUT"; exit 0; fi
work="$(mktemp -d "$CACHE/build-flanneld.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "build-flanneld: building flanneld $FLANNEL_VERSION (first time on this machine: a few minutes)" >&2
export GOFLAGS=-mod=mod
# One of flannel's cloud backends (tencent-vpc) needs an SDK version the module
# proxy no longer serves, so `go install` of the module fails. We build from the
# module's own source (fetched by go) without that backend's import; every
# other backend, and the daemon, are untouched.
src="$(cd "$work" && go mod download -json "github.com/flannel-io/flannel@$FLANNEL_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
cp -r "$src" "$work/flannel-src"
chmod -R u+w "$work/flannel-src"
cd "$work/flannel-src"
sed -i '/pkg\/backend\/tencentvpc"/d' main.go
rm -rf pkg/backend/tencentvpc
go mod edit -droprequire github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc -droprequire github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common
CGO_ENABLED=1 go build -trimpath \
  -ldflags "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$FLANNEL_VERSION" \
  -o "$work/flanneld" . >&2
mv "$work/flanneld" "$OUT"
echo "build-flanneld: built $OUT" >&2
echo "$OUT"
