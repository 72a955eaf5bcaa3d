#!/usr/bin/env bash
# Builds the flannel-ts container image without any container registry: a
# Debian rootfs from Debian's own mirror (debootstrap), this machine's Node 20,
# flanneld's esbuild bundle (dist/bundle, rebuilt here), production
# node_modules and the standalone CNI plugin, turned into an OCI image with
# umoci. Same contents and paths as ./Dockerfile.
#
#   bash scripts/build-image.sh                 build (or reuse) the image
#   bash scripts/build-image.sh --check         build (or reuse), then test it
#   bash scripts/build-image.sh --check-only    test the image already built
#   bash scripts/build-image.sh --refresh-base  rebuild the cached Debian rootfs
#                                               (picks up Debian security fixes)
#
# The check unpacks the OCI image (umoci unpack) and, chrooted in private
# mount/pid/network namespaces, runs flanneld --version, install-cni-plugin
# and install-conf against temp dirs, loads the native addons, and runs the
# daemon (VXLAN, local store, --ip-masq, /metrics) until SIGTERM. Nothing
# touches the host's network.
#
# Needs root (debootstrap, chroot, unshare) and `npm run build` done first.
# Installs debootstrap, umoci, binutils and iproute2 with apt-get if missing.
#
# Outputs, under ${FLANNEL_TS_CACHE:-~/.cache/flannel-ts}/image/:
#   oci/                          OCI image layout, tag <version> (0.1.0)
#   flannel-ts-<version>.oci.tar  the same as an oci-archive. Its index names
#                                 the image docker.io/library/flannel-ts:<version>
#                                 (io.containerd.image.name), so it loads with
#                                 `ctr -n k8s.io images import`, `kind load
#                                 image-archive`, `podman load` or `docker load`
#                                 (Docker >= 25).
# Caches, same place: the debootstrapped rootfs (keyed by suite, arch and the
# package recipe), its OCI base layer, and production node_modules (keyed by
# package-lock.json and the Node version).
#
# Environment: FLANNEL_TS_CACHE, FLANNEL_IMAGE_SUITE (default: bookworm),
# FLANNEL_IMAGE_MIRROR / FLANNEL_IMAGE_SECURITY_MIRROR (default: the ones in
# this machine's apt sources, else deb.debian.org), NODE_BIN (default:
# `command -v node`).
set -euo pipefail
script=$(readlink -f "$0")
repo=$(dirname "$(dirname "$script")")
cd "$repo"

mode=build
refresh_base=0
for arg in "$@"; do
  case $arg in
    --check) mode=check ;;
    --check-only) mode=check-only ;;
    --refresh-base) refresh_base=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$script" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image: unknown argument $arg" >&2; exit 2 ;;
  esac
done

log() { echo "build-image: $*" >&2; }
die() { log "$*"; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
t_start=$(now_ms)

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, unshare)"
[ -f dist/src/version.js ] && [ -f dist/src/cmd/cni/main.js ] \
  || die "dist/ is not built; run 'npm run build' first"

suite=${FLANNEL_IMAGE_SUITE:-bookworm}
arch=$(dpkg --print-architecture)
cache=${FLANNEL_TS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flannel-ts}
img=$cache/image
node_bin=$(readlink -f "${NODE_BIN:-$(command -v node)}")
version=$(node --input-type=module -e "import('$repo/dist/src/version.js').then((m) => console.log(m.VERSION))")
# v0.1.0-flannel-ts -> 0.1.0; an image tag cannot start with "v" by convention here.
tag=$(echo "$version" | sed -E 's/^v//; s/-flannel-ts$//')
image_name=docker.io/library/flannel-ts:$tag
mkdir -p "$img"

# Only one build at a time per cache (the CI test and a developer may race).
exec 9>"$img/.lock"
flock 9

ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
ensure_packages debootstrap umoci debian-archive-keyring util-linux binutils iproute2

# ---------------------------------------------------------------------------
# The image check: unpack the OCI image and run its entry points chrooted, in
# private mount, pid and network namespaces, with temp dirs bound in place of
# the host's /opt/cni/bin, /etc/cni/net.d, /run/flannel and the ConfigMap at
# /etc/kube-flannel; then run the daemon itself from the image for a moment.
# ---------------------------------------------------------------------------
check_image() {
  local t0 tmp rootfs
  t0=$(now_ms)
  [ -f "$img/oci/index.json" ] || die "no image at $img/oci; build it first"
  tmp=$(mktemp -d /tmp/flannel-ts-image-check.XXXXXX)
  # Mounts live only in the namespace below, so a plain rm is safe here.
  trap 'rm -rf "$tmp"' EXIT
  umoci unpack --image "$img/oci:$tag" "$tmp/bundle" >/dev/null
  rootfs=$tmp/bundle/rootfs
  mkdir -p "$tmp/cni-bin" "$tmp/net.d" "$tmp/kube-flannel"
  cat >"$tmp/kube-flannel/cni-conf.json" <<'EOF'
{
  "name": "cbr0",
  "cniVersion": "0.3.1",
  "plugins": [
    { "type": "flannel", "delegate": { "hairpinMode": true, "isDefaultGateway": true } },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
  echo '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}' >"$tmp/kube-flannel/net-conf.json"
  mkdir -p "$tmp/run-flannel" "$rootfs/run/flannel"
  # A stale plugin and conf that the installers must replace.
  echo stale >"$tmp/cni-bin/flannel"
  echo stale >"$tmp/net.d/10-flannel.conflist"

  # Everything inside runs as one script in the namespace; its output is kept.
  cat >"$tmp/in-ns.sh" <<'EOF'
set -eu
rootfs=$1 tmp=$2
# Never touch the host: refuse to run outside private mount and network namespaces.
for ns in mnt net; do
  if [ "$(readlink /proc/self/ns/$ns)" = "$(readlink /proc/1/ns/$ns)" ]; then
    echo "in-ns.sh: not in a private $ns namespace; refusing to run" >&2
    exit 1
  fi
done
mount --make-rprivate /
mount --rbind /dev "$rootfs/dev"
mount -t proc proc "$rootfs/proc"
mount -t sysfs sysfs "$rootfs/sys"   # of this network namespace, as in a container
mount --bind "$tmp/cni-bin" "$rootfs/opt/cni/bin"
mount --bind "$tmp/net.d" "$rootfs/etc/cni/net.d"
mount --bind "$tmp/kube-flannel" "$rootfs/etc/kube-flannel"
image_env=(env -i PATH=/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root NODE_ENV=production)
in_image() { "${image_env[@]}" chroot "$rootfs" "$@"; }
echo "--version: $(in_image /opt/bin/flanneld --version 2>&1)"
in_image /opt/bin/install-cni-plugin
in_image /opt/bin/install-conf
in_image /opt/bin/install-cni-plugin
in_image /opt/bin/install-conf
in_image sh -c 'cd /opt/flannel-ts && node -e "
  const db = require(\"better-sqlite3\")(\":memory:\");
  if (db.prepare(\"select 41 + 1 as x\").get().x !== 42) process.exit(1);
  require(\"koffi\");
  console.log(\"native addons: better-sqlite3 and koffi load\");"'
in_image iptables-restore --version
in_image ip6tables-restore --version
in_image nft --version
test -s "$rootfs/etc/ssl/certs/ca-certificates.crt"
echo "ca-certificates: present"

# The daemon itself, from the image, in this throw-away network namespace:
# VXLAN backend (netlink through koffi, its worker file), the local SQLite
# store (better-sqlite3), --ip-masq (the image's iptables-restore), healthz.
ip link set lo up
ip link add fts0 type veth peer name fts1
ip addr add 192.0.2.10/24 dev fts0
ip link set fts0 up
ip link set fts1 up
mount --bind "$tmp/run-flannel" "$rootfs/run/flannel"
# Every worker thread file the bundle starts (new URL('./x.js', <its own URL>)) is in the image.
for w in $(grep -rhoE 'new URL\("\./[^"]+", *[A-Za-z_.]+\)' "$rootfs"/opt/flannel-ts/dist/bundle | sed -E 's/^new URL\("\.\/([^"]+)".*/\1/' | sort -u); do
  if [ -f "$rootfs/opt/flannel-ts/dist/bundle/$w" ]; then echo "worker file: $w present"; else echo "worker file: $w MISSING"; fi
done
# Not through the in_image function: $! must be the daemon itself (env, chroot
# and /opt/bin/flanneld all exec), so that SIGTERM reaches node.
"${image_env[@]}" chroot "$rootfs" /opt/bin/flanneld --store local:/tmp/leases.db --net-config-path /etc/kube-flannel/net-conf.json \
  --iface fts0 --ip-masq --healthz-port 18081 >"$tmp/flanneld.log" 2>&1 &
daemon=$!
for _ in $(seq 60); do
  if [ -s "$tmp/run-flannel/subnet.env" ] &&
    node -e 'fetch("http://127.0.0.1:18081/readyz").then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))'; then
    break
  fi
  kill -0 "$daemon" 2>/dev/null || break
  sleep 0.5
done
echo "subnet.env: $(tr '\n' ' ' <"$tmp/run-flannel/subnet.env" 2>/dev/null || true)"
# The netlink subscriber worker reports in; /metrics also needs prom-client
# (an external of the bundle, from node_modules).
for _ in $(seq 20); do
  if node -e 'fetch("http://127.0.0.1:18081/metrics").then((r) => r.text()).then((t) => process.exit(/^flannel_kernel_subscriber_up 1$/m.test(t) ? 0 : 1), () => process.exit(1))'; then
    echo "daemon: kernel subscriber worker up (/metrics)"
    break
  fi
  sleep 0.25
done
if ip -d link show flannel.1 2>/dev/null | grep -q 'vxlan id 1 '; then echo "daemon: flannel.1 is up"; fi
if in_image iptables-save -t nat | grep -q -- '-A POSTROUTING .*FLANNEL-POSTRTG'; then echo "daemon: FLANNEL-POSTRTG installed"; fi
kill -TERM "$daemon" 2>/dev/null || true
rc=0
wait "$daemon" || rc=$?
echo "daemon: exit $rc after SIGTERM"
sed 's/^/flanneld log: /' "$tmp/flanneld.log"
EOF
  local out
  if ! out=$(unshare --mount --pid --net --fork bash "$tmp/in-ns.sh" "$rootfs" "$tmp" 2>&1); then
    echo "$out" >&2
    die "check FAILED: running the image's entry points"
  fi
  echo "$out" | sed 's/^/  image: /' >&2

  local fail=0
  # expect WHAT CMD...: one check; the output of the namespace is on stdin.
  expect() {
    local what=$1
    shift
    if "$@"; then log "check ok: $what"; else log "check FAILED: $what"; fail=1; fi
  }
  expect "flanneld --version prints $version" grep -qx -- "--version: $version" <<<"$out"
  expect "install-cni-plugin installed the image's plugin as /opt/cni/bin/flannel" \
    cmp -s "$tmp/cni-bin/flannel" "$rootfs/opt/flannel-ts/cni-plugin/flannel"
  expect "the plugin has mode 0755" test "$(stat -c %a "$tmp/cni-bin/flannel")" = 755
  expect "install-conf installed cni-conf.json as /etc/cni/net.d/10-flannel.conflist" \
    cmp -s "$tmp/net.d/10-flannel.conflist" "$tmp/kube-flannel/cni-conf.json"
  expect "the conflist has mode 0644" test "$(stat -c %a "$tmp/net.d/10-flannel.conflist")" = 644
  expect "no temp files left in /opt/cni/bin or /etc/cni/net.d" \
    test "$(find "$tmp/cni-bin" "$tmp/net.d" -mindepth 1 -printf '%f ')" = "flannel 10-flannel.conflist "
  # The installed plugin runs on this host with no node reachable.
  local v
  v=$(env -i PATH=/nonexistent CNI_COMMAND=VERSION "$tmp/cni-bin/flannel" </dev/null || true)
  expect "the installed plugin answers VERSION with no node on PATH: $v" \
    test "$v" = "$(CNI_COMMAND=VERSION node dist/src/cmd/cni/main.js </dev/null)"
  # Production dependencies only: nothing the lockfile marks dev-only.
  local devs
  # shellcheck disable=SC2016 # JavaScript, not shell
  devs=$(node -e '
    const fs = require("fs");
    const [lock, app] = process.argv.slice(1);
    const pkgs = JSON.parse(fs.readFileSync(lock, "utf8")).packages;
    const found = Object.keys(pkgs).filter((k) => k && pkgs[k].dev && fs.existsSync(`${app}/${k}`));
    console.log(found.join(" "));' package-lock.json "$rootfs/opt/flannel-ts")
  expect "no dev dependencies in node_modules${devs:+ (found: $devs)}" test -z "$devs"
  expect "native addons (better-sqlite3, koffi) load" grep -q '^native addons: better-sqlite3 and koffi load' <<<"$out"
  expect "flanneld (vxlan, local store) wrote subnet.env and became ready" \
    grep -q '^subnet.env: FLANNEL_NETWORK=10.244.0.0/16 FLANNEL_SUBNET=10.244.' <<<"$out"
  expect "flanneld created flannel.1" grep -q '^daemon: flannel.1 is up' <<<"$out"
  expect "the bundle's worker files are in the image" grep -q '^worker file: .* present' <<<"$out"
  expect "no worker file is missing" bash -c '! grep -q "^worker file: .* MISSING" <<<"$1"' _ "$out"
  expect "flanneld's netlink subscriber worker runs and /metrics answers (prom-client loads)" \
    grep -q '^daemon: kernel subscriber worker up' <<<"$out"
  expect "flanneld installed its masquerade rules with the image's iptables" grep -q '^daemon: FLANNEL-POSTRTG installed' <<<"$out"
  expect "flanneld exits 0 on SIGTERM" grep -q '^daemon: exit 0 after SIGTERM' <<<"$out"
  if [ $fail = 0 ]; then
    log "check passed in $(( $(now_ms) - t0 )) ms"
  else
    die "check FAILED"
  fi
  rm -rf "$tmp"
  trap - EXIT
}

if [ "$mode" = check-only ]; then
  check_image
  exit 0
fi

# ---------------------------------------------------------------------------
# 1. Base: a minbase Debian rootfs with iptables, nftables and ca-certificates
#    (and the current security updates), cached with its OCI base layer.
# ---------------------------------------------------------------------------
mirror_for() { # $1: suite to look for in this machine's apt sources
  local want=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v want="$want" '
      function flush() { if (uris != "" && (" " suites " ") ~ (" " want " ")) { split(uris, u, " "); print u[1]; found = 1; exit } uris = ""; suites = "" }
      /^[[:space:]]*$/ { flush(); next }
      /^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); uris = $0 }
      /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
      END { if (!found) flush() }' "$f"
  done
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | awk -v want="$want" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) == want) print $i }'
}
mirror=${FLANNEL_IMAGE_MIRROR:-$(mirror_for "$suite" | grep -m1 . || true)}
mirror=${mirror:-http://deb.debian.org/debian}
security_mirror=${FLANNEL_IMAGE_SECURITY_MIRROR:-$(mirror_for "$suite-security" | grep -m1 . || true)}
security_mirror=${security_mirror:-http://deb.debian.org/debian-security}

base_packages=iptables,nftables,ca-certificates
# Bump the recipe when the way the base is made changes.
recipe="v1 minbase $suite $arch $base_packages security-upgrade slim-docs"
base_key=$suite-$arch-$(echo "$recipe" | sha256sum | cut -c1-12)
base=$img/base/$base_key

if [ "$refresh_base" = 1 ]; then
  rm -rf "$base"
fi

build_base() {
  local t0 work r
  t0=$(now_ms)
  rm -rf "$img/base/$suite-$arch-"* # older recipes for this suite
  work=$img/base/.tmp-$base_key
  rm -rf "$work"
  mkdir -p "$work"
  r=$work/rootfs
  log "debootstrap $suite ($arch, minbase + $base_packages) from $mirror"
  local keyring=()
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
  if ! debootstrap --variant=minbase --arch="$arch" "${keyring[@]}" --include="$base_packages" \
    "$suite" "$r" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -30 "$work/debootstrap.log" >&2
    die "debootstrap failed (log: $work/debootstrap.log)"
  fi

  # Like debian:*-slim: no man pages, docs (but copyrights) or translations.
  mkdir -p "$r/etc/dpkg/dpkg.cfg.d"
  cat >"$r/etc/dpkg/dpkg.cfg.d/flannel-ts-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  rm -f "$r/etc/apt/sources.list"
  cat >"$r/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # Security and point-release updates, in a private mount namespace.
  log "apt-get upgrade in the rootfs ($suite-updates, $suite-security)"
  if ! unshare --mount --fork bash -c '
      set -e
      mount -t proc proc "$1/proc"
      export DEBIAN_FRONTEND=noninteractive LC_ALL=C
      chroot "$1" apt-get update -qq
      chroot "$1" apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade
      chroot "$1" apt-get -y -qq clean' _ "$r" >"$work/upgrade.log" 2>&1; then
    tail -30 "$work/upgrade.log" >&2
    die "apt-get upgrade in the rootfs failed (log: $work/upgrade.log)"
  fi
  find "$r/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$r/usr/share/man/"* "$r/usr/share/info/"* "$r/usr/share/locale/"* "$r/usr/share/lintian"
  rm -rf "$r/var/lib/apt/lists/"* "$r/var/cache/apt/"*.bin "$r/var/cache/apt/archives/"*.deb \
    "$r/var/cache/debconf/"*-old "$r/var/lib/dpkg/"*-old "$r/var/log/"*
  # Host files that debootstrap copied in; the runtime provides its own.
  rm -f "$r/etc/resolv.conf" "$r/etc/hostname"
  : >"$r/etc/machine-id"
  mkdir -p "$r/usr/local/bin" "$r/opt/bin" "$r/opt/cni/bin" "$r/etc/cni/net.d" "$r/etc/kube-flannel"

  # The base layer: the rootfs without device nodes, /proc, /sys, /run, /tmp contents.
  tar --numeric-owner --sort=name -C "$r" -cf "$work/base.tar" \
    --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./tmp/*' --exclude='./run/*' .
  umoci init --layout "$work/layout"
  umoci new --image "$work/layout:base"
  umoci raw add-layer --image "$work/layout:base" \
    --history.created_by "debootstrap --variant=minbase --include=$base_packages $suite; apt-get upgrade" "$work/base.tar"
  stat -c %s "$work/base.tar" >"$work/base.size"
  rm -f "$work/base.tar"
  echo "$(date -u +%FT%TZ) $mirror" >"$work/built"
  mv "$work" "$base"
  log "base rootfs $base_key built in $(( ($(now_ms) - t0) / 1000 )) s"
}
# Built in the background: debootstrap mostly waits on the mirror while the
# next step (npm ci, which compiles better-sqlite3) mostly uses the CPU.
base_pid=
if [ -f "$base/built" ]; then
  log "base rootfs $base_key: cached ($(cut -d' ' -f1 "$base/built"))"
else
  build_base &
  base_pid=$!
fi

# ---------------------------------------------------------------------------
# 2. Production node_modules (npm ci --omit=dev), cached by lockfile + Node.
# ---------------------------------------------------------------------------
node_version=$("$node_bin" -v)
nm_key=$( (cat package-lock.json; node -p 'JSON.stringify(require("./package.json").dependencies)'; echo "$node_version $arch") \
  | sha256sum | cut -c1-12)
nm=$img/node_modules/$nm_key
if [ ! -f "$nm/done" ]; then
  t0=$(now_ms)
  rm -rf "$img/node_modules"
  mkdir -p "$nm.tmp"
  cp package.json package-lock.json "$nm.tmp/"
  log "npm ci --omit=dev (Node $node_version)"
  if ! (cd "$nm.tmp" && PATH="$(dirname "$node_bin"):$PATH" npm ci --omit=dev --no-audit --no-fund) >"$nm.tmp.log" 2>&1; then
    tail -30 "$nm.tmp.log" >&2
    die "npm ci --omit=dev failed (log: $nm.tmp.log)"
  fi
  # Build leftovers of better-sqlite3 (its sources and objects); only the addon is used.
  bsq=$nm.tmp/node_modules/better-sqlite3
  rm -rf "$bsq/deps" "$bsq/src" "$bsq/build/Release/obj" "$bsq/build/Release/obj.target" \
    "$bsq/build/Release/.deps" "$bsq/build/Release/test_extension.node" "$bsq/build/Release/"*.a "$bsq/build/deps"
  mv "$nm.tmp" "$nm"
  rm -f "$nm.tmp.log"
  touch "$nm/done"
  log "production node_modules built in $(( ($(now_ms) - t0) / 1000 )) s"
else
  log "production node_modules $nm_key: cached"
fi

if [ -n "$base_pid" ]; then
  wait "$base_pid" || die "building the base rootfs failed (see above)"
fi

# ---------------------------------------------------------------------------
# 3. flanneld's bundle (dist/bundle) and the standalone CNI plugin.
# ---------------------------------------------------------------------------
"$node_bin" scripts/build-bundle.mjs >&2
NODE_BIN=$node_bin bash scripts/build-cni-plugin.sh >&2

# ---------------------------------------------------------------------------
# 4. The app layer, unless nothing that goes into it changed.
# ---------------------------------------------------------------------------
app_stamp=$(
  {
    echo "$base_key $nm_key $tag $version $node_bin $(stat -c '%s %Y %i' "$node_bin")"
    cat dist/cni-plugin/flannel.stamp package.json "$script"
    find dist/bundle -type f | LC_ALL=C sort | xargs sha256sum
    find deploy/image -type f | LC_ALL=C sort | xargs sha256sum
    stat -c '%a %n' deploy/image/*
  } | sha256sum | cut -d' ' -f1
)
if [ -f "$img/oci/index.json" ] && [ "$(cat "$img/oci.stamp" 2>/dev/null)" = "$app_stamp" ]; then
  log "image flannel-ts:$tag is up to date"
else
  t0=$(now_ms)
  stage=$img/.stage
  rm -rf "$stage" "$img/oci.tmp"
  mkdir -p "$stage/usr/local/bin" "$stage/opt/bin" "$stage/opt/flannel-ts/cni-plugin"
  cp "$node_bin" "$stage/usr/local/bin/node"
  strip --strip-all "$stage/usr/local/bin/node"
  chmod 0755 "$stage/usr/local/bin/node"
  app=$stage/opt/flannel-ts
  cp package.json "$app/"
  mkdir -p "$app/dist"
  cp -a dist/bundle "$app/dist/bundle"
  cp -a "$nm/node_modules" "$app/node_modules"
  cp dist/cni-plugin/flannel "$app/cni-plugin/flannel"
  cp deploy/image/flanneld deploy/image/install-cni-plugin deploy/image/install-conf "$stage/opt/bin/"
  chmod 0755 "$stage/opt/bin/"* "$app/cni-plugin/flannel"

  # Does this Node (and its native addons) run on the base rootfs's libraries?
  if ! out=$(unshare --mount --fork bash -c '
      set -e
      mount --bind "$2" "$1/mnt"
      chroot "$1" /mnt/usr/local/bin/node -e "
        process.chdir(\"/mnt/opt/flannel-ts\");
        require(\"/mnt/opt/flannel-ts/node_modules/better-sqlite3\")(\":memory:\").close();
        require(\"/mnt/opt/flannel-ts/node_modules/koffi\");
        console.log(process.version);"' _ "$base/rootfs" "$stage" 2>&1); then
    echo "$out" >&2
    die "this machine's node ($node_bin) does not run on the $suite rootfs; see above"
  fi

  app_tar=$img/.app.tar
  tar --numeric-owner --owner=0 --group=0 --sort=name -C "$stage" -cf "$app_tar" usr opt
  cp -a "$base/layout" "$img/oci.tmp"
  umoci raw add-layer --image "$img/oci.tmp:base" --tag "$tag" \
    --history.created_by "flannel-ts $version: node $node_version, flanneld bundle, node_modules, CNI plugin, /opt/bin" "$app_tar"
  umoci rm --image "$img/oci.tmp:base"
  umoci config --image "$img/oci.tmp:$tag" \
    --config.env "PATH=/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --config.env "NODE_ENV=production" \
    --config.entrypoint /opt/bin/flanneld \
    --config.workingdir /opt/flannel-ts \
    --config.label "org.opencontainers.image.title=flannel-ts" \
    --config.label "org.opencontainers.image.version=$tag" \
    --config.label "org.opencontainers.image.description=flannel, the container overlay network, in TypeScript on Node.js 20" \
    --config.label "org.opencontainers.image.licenses=Apache-2.0" \
    --history.created_by "config: entrypoint /opt/bin/flanneld"
  umoci gc --layout "$img/oci.tmp"
  # Name the image for containerd/Docker (the OCI ref.name stays the bare tag).
  node -e '
    const fs = require("fs");
    const [file, tag, name] = process.argv.slice(1);
    const index = JSON.parse(fs.readFileSync(file, "utf8"));
    for (const m of index.manifests) {
      if (m.annotations?.["org.opencontainers.image.ref.name"] === tag) m.annotations["io.containerd.image.name"] = name;
    }
    fs.writeFileSync(file, JSON.stringify(index));' "$img/oci.tmp/index.json" "$tag" "$image_name"
  app_size=$(stat -c %s "$app_tar")
  rm -rf "$stage" "$app_tar"
  echo "$app_size" >"$img/app.size.tmp"

  rm -rf "$img/oci.old"
  [ -d "$img/oci" ] && mv "$img/oci" "$img/oci.old"
  mv "$img/oci.tmp" "$img/oci"
  rm -rf "$img/oci.old"
  rm -f "$img"/flannel-ts-*.oci.tar
  chmod -R a+rX "$img/oci" # umoci writes blobs 0600; let any user load the archive
  tar --sort=name -C "$img/oci" -cf "$img/flannel-ts-$tag.oci.tar.tmp" .
  mv "$img/flannel-ts-$tag.oci.tar.tmp" "$img/flannel-ts-$tag.oci.tar"
  mv "$img/app.size.tmp" "$img/app.size"
  echo "$app_stamp" >"$img/oci.stamp"
  log "image layers assembled in $(( ($(now_ms) - t0) / 1000 )) s"
fi

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
compressed=$(stat -c %s "$img/flannel-ts-$tag.oci.tar")
unpacked=$(( $(cat "$base/base.size") + $(cat "$img/app.size") ))
echo "image: $image_name"
echo "  OCI layout:  $img/oci (tag $tag)"
echo "  oci-archive: $img/flannel-ts-$tag.oci.tar"
echo "  size: $(mib "$compressed") compressed (oci-archive), $(mib "$unpacked") unpacked (base $(mib "$(cat "$base/base.size")") + app $(mib "$(cat "$img/app.size")"))"
echo "  built in $(( ($(now_ms) - t_start) / 1000 )) s"

if [ "$mode" = check ]; then
  check_image
fi
