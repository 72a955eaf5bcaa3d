#!/usr/bin/env bash
# Installs what flannel-ts's tests and lab need on a fresh Debian machine
# (run as root). Safe to run again.
set -euo pipefail
pkgs=(openssl etcd-server etcd-client containernetworking-plugins iptables nftables iproute2 iperf3 iputils-ping tcpdump)
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
