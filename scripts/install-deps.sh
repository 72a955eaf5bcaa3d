#!/usr/bin/env bash
# Installs what flannel-ts's tests and lab need on a fresh Debian machine
# (run as root). Safe to run again. It checks, first, what it cannot install
# for you (Node's version) and says exactly what is missing.
set -euo pipefail

# Node 20 or newer: Debian 12's own nodejs package is 18, which is too old.
if ! command -v node >/dev/null 2>&1; then
  echo "install-deps: node is not installed; flannel-ts needs Node.js 20 or newer (e.g. from nodejs.org or NodeSource)" >&2
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "install-deps: node $(node --version) is too old; flannel-ts needs Node.js 20 or newer (Debian 12's nodejs package is 18)" >&2
  exit 1
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "install-deps: npm is not installed (it comes with Node.js 20 from nodejs.org or NodeSource)" >&2
  exit 1
fi

# Runtime and test tools, plus g++/make/python3: `npm ci` compiles
# better-sqlite3 from source (about 2 minutes, with no output). chromium is
# the headless browser test/e2e/ui.test.ts drives through puppeteer-core
# (which never downloads a browser of its own).
pkgs=(openssl etcd-server etcd-client containernetworking-plugins iptables nftables iproute2 iperf3 iputils-ping tcpdump g++ make python3 chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v go >/dev/null 2>&1; then
  echo "install-deps: note: go is not installed; the Kubernetes tests and 'lab up --store kube' need it to build kube-apiserver (scripts/build-kube-apiserver.sh)" >&2
fi
