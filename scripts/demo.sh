#!/usr/bin/env bash
# A throwaway demo of the flanneld core: a private etcd on loopback, three
# flanneld (alloc backend) sharing one network, and `flannelctl leases`.
# Everything it starts is stopped (by pid) and removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/flannel-ts-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
peer=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
ep="http://127.0.0.1:$port"
etcd --name demo --data-dir "$work/etcd" --listen-client-urls "$ep" --advertise-client-urls "$ep" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "demo=http://127.0.0.1:$peer" --log-level error --logger zap 2>"$work/etcd.log" &
pids+=($!)
for _ in $(seq 50); do ETCDCTL_API=3 etcdctl --endpoints "$ep" endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
ETCDCTL_API=3 etcdctl --endpoints "$ep" put /coreos.com/network/config '{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}' >/dev/null
for i in 1 2 3; do
  node dist/src/cmd/flanneld/main.js --etcd-endpoints "$ep" --iface lo --public-ip "192.0.2.$i" \
    --subnet-file "$work/node$i/subnet.env" 2>"$work/flanneld$i.log" &
  pids+=($!)
done
for i in 1 2 3; do for _ in $(seq 50); do [ -s "$work/node$i/subnet.env" ] && break; sleep 0.1; done; done
for i in 1 2 3; do echo "== node$i subnet.env"; cat "$work/node$i/subnet.env"; done
echo "== flannelctl leases"
node dist/src/cmd/flannelctl/main.js leases --etcd-endpoints "$ep"
echo "== raw etcd keys"
ETCDCTL_API=3 etcdctl --endpoints "$ep" get --prefix /coreos.com/network/subnets
