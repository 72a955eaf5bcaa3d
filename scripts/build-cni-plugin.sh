#!/usr/bin/env bash
# Builds the flannel CNI plugin as one self-contained ELF that runs on a host
# with no Node installed: src/cmd/cni/main.ts is bundled by esbuild into one
# CommonJS file, turned into a Node single-executable-application blob, and
# the blob is injected (postject) into a copy of this machine's `node`.
# Like node itself, the result is dynamically linked: the host needs glibc
# >= 2.28 and libstdc++ (any glibc distribution; not musl).
#
#   bash scripts/build-cni-plugin.sh          # -> dist/cni-plugin/flannel
#
# Environment: FLANNEL_CNI_OUT (output path), NODE_BIN (node binary to embed,
# default: `command -v node`), FLANNEL_CNI_STRIP=0 (keep the symbols).
# A rebuild is skipped when the bundle, the embedded node and this script are
# unchanged since the last build (a stamp file sits next to the output).
set -euo pipefail
script=$(readlink -f "$0")
cd "$(dirname "$script")/.."
repo=$PWD

out=${FLANNEL_CNI_OUT:-$repo/dist/cni-plugin/flannel}
node_bin=${NODE_BIN:-$(command -v node)}
node_bin=$(readlink -f "$node_bin")
work=$(dirname "$out")/.build
stamp_file=$out.stamp
mkdir -p "$work"

major=$("$node_bin" -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "build-cni-plugin: $node_bin is Node $major; Node >= 20 is needed for single executable applications" >&2
  exit 1
fi
for tool in esbuild postject; do
  if [ ! -x "node_modules/.bin/$tool" ]; then
    echo "build-cni-plugin: node_modules/.bin/$tool is missing; run npm ci first" >&2
    exit 1
  fi
done

started=$(date +%s%N)

# 1. One CommonJS file. The plugin must not depend on any npm package (and in
#    particular on a native addon such as koffi or better-sqlite3): refuse to
#    build if anything under node_modules ends up in the bundle.
#    --supported:dynamic-import=false: an import() (src/cni/invoke.ts loads
#    node:child_process only when a delegate runs) becomes a require(); a
#    single executable has no ESM loader, and import() there fails with
#    ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING.
node_modules/.bin/esbuild src/cmd/cni/main.ts --bundle --platform=node --target=node20 \
  --format=cjs --supported:dynamic-import=false --outfile="$work/bundle.cjs" --metafile="$work/meta.json" --log-level=warning
"$node_bin" -e '
  const meta = require(process.argv[1]);
  const bad = Object.keys(meta.inputs).filter((p) => p.includes("node_modules/"));
  if (bad.length) {
    console.error("build-cni-plugin: the CNI plugin must not import npm packages, but its bundle holds:\n  " + bad.join("\n  "));
    process.exit(1);
  }' "$work/meta.json"

cat >"$work/sea-config.json" <<EOF
{
  "main": "$work/bundle.cjs",
  "output": "$work/sea-prep.blob",
  "disableExperimentalSEAWarning": true,
  "useCodeCache": true
}
EOF

# 2. Skip the injection when nothing that goes into the binary changed.
node_id=$(stat -c '%s %Y %i' "$node_bin")
stamp=$(cat "$work/bundle.cjs" "$work/sea-config.json" "$script" <(echo "$node_bin $node_id") \
  node_modules/postject/package.json | sha256sum | cut -d' ' -f1)
if [ -x "$out" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
  echo "build-cni-plugin: $out is up to date ($(stat -c %s "$out") bytes)"
  exit 0
fi

# 3. The blob, injected into a (stripped) copy of node.
if ! log=$("$node_bin" --experimental-sea-config "$work/sea-config.json" 2>&1); then
  echo "$log" >&2
  echo "build-cni-plugin: node --experimental-sea-config failed" >&2
  exit 1
fi
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cp "$node_bin" "$tmp"
if [ "${FLANNEL_CNI_STRIP:-1}" != 0 ] && command -v strip >/dev/null; then
  strip --strip-all "$tmp"
fi
if ! log=$(node_modules/.bin/postject "$tmp" NODE_SEA_BLOB "$work/sea-prep.blob" \
  --sentinel-fuse NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2 2>&1); then
  echo "$log" >&2
  echo "build-cni-plugin: postject failed" >&2
  exit 1
fi
chmod 0755 "$tmp"

# 4. Smoke test with no node reachable, then publish atomically.
got=$(env -i PATH=/nonexistent CNI_COMMAND=VERSION "$tmp" </dev/null)
case $got in
  *'"supportedVersions"'*) ;;
  *) echo "build-cni-plugin: the built binary answered VERSION with: $got" >&2; exit 1 ;;
esac
mv -f "$tmp" "$out"
trap - EXIT
echo "$stamp" >"$stamp_file"
ms=$(( ($(date +%s%N) - started) / 1000000 ))
echo "build-cni-plugin: built $out ($(stat -c %s "$out") bytes, node $("$node_bin" -v), ${ms} ms)"
