// Where the topology page's data comes from.
//
// The lab: hosts come from the lab's state, leases from the lab's store, the
// tunnels are probed with ping between the hosts' first pods (or, on a host
// without pods, from the host to the peer's flannel address), and a host's
// kernel tables are read inside its namespace by `flannelctl
// kernel-snapshot` (rtnetlink, through kernel-view.ts).
//
// Any store: hosts are the leases. Nothing is probed (the page says "no probe
// data" rather than guess), and only this machine's own kernel can be read.

import { execFile } from 'node:child_process';
import path from 'node:path';
import { bridgeToUnixSocket } from '../lab/kubeapi.js';
import { FLANNELCTL, UNDERLAY_IP, flanneldStatus, labEtcdSocket, type LabState } from '../lab/lab.js';
import { mapLimit, run } from '../lab/sh.js';
import { RtNetlink } from '../kernel/rtnetlink.js';
import { localIPs as snapshotIPs, readKernel, type KernelSnapshot } from '../ctl/kernel-view.js';
import type { Logger } from '../log/log.js';
import { openStore, type StoreFlags } from '../store/open.js';
import { DEFAULT_ETCD_PREFIX } from '../store/etcd/defaults.js';
import { kernelTables, type KernelTables, type KnownHost, type ProbeResult, type UiHost } from './model.js';
import type { UiSource } from './server.js';

export async function labSource(s: LabState, log: Logger): Promise<UiSource> {
  const short = (n: string) => (n.startsWith(s.prefix) ? n.slice(s.prefix.length) : n);
  let bridge: { port: number; close(): void } | null = null;
  let flags: StoreFlags;
  const base = { etcdPrefix: DEFAULT_ETCD_PREFIX, etcdKeyfile: '', etcdCertfile: '', etcdCafile: '', etcdUsername: '', etcdPassword: '' };
  let label: string;
  if (s.store === 'local') {
    const db = path.join(s.dir, 'leases.db');
    flags = { ...base, store: `local:${db}`, etcdEndpoints: '' };
    label = `local:${db}`;
  } else if (s.store === 'etcd') {
    // etcd listens in the underlay namespace; the lab relays it to a Unix
    // socket, and this process serves that on a loopback port of its own.
    bridge = await bridgeToUnixSocket(labEtcdSocket(s.dir));
    flags = { ...base, store: 'etcd', etcdEndpoints: `http://127.0.0.1:${bridge.port}` };
    label = `etcd http://${UNDERLAY_IP}:2379 (in ${s.prefix}ul)`;
  } else {
    throw new Error('the topology page reads etcd or local stores; a --store kube lab has none (its leases are Node objects)');
  }
  const store = await openStore(flags, log);
  const byId = new Map(s.hosts.map((h) => [short(h.name), h]));
  return {
    mode: 'lab',
    title: `lab ${s.prefix}*`,
    store,
    storeLabel: label,
    probeNote: `Tunnel colours: the last ping between each pair of hosts (first pod to first pod, over IPv4 and, in a dual-stack lab, IPv6; host to the peer's flannel address when a host has no pods), every few seconds, both ways.`,
    known(): KnownHost[] {
      return s.hosts.map((h) => ({
        id: short(h.name),
        name: short(h.name),
        publicIP: h.ip,
        pods: h.pods.map((p) => ({ name: short(p.name), ip: p.ip })),
        flanneld: flanneldStatus(s, h),
        kernel: true,
      }));
    },
    async probe(hosts: readonly UiHost[], backend: string | null): Promise<ProbeResult[]> {
      const pairs = hosts.flatMap((a) => hosts.filter((b) => b !== a).map((b) => ({ a, b })));
      const out = await mapLimit(pairs, 6, async ({ a, b }) => {
        const ha = byId.get(a.id);
        const hb = byId.get(b.id);
        if (!ha || !hb) return null;
        const src = ha.pods.find((p) => p.ip);
        const dst = hb.pods.find((p) => p.ip);
        let ns: string;
        let target: string;
        let what: string;
        if (src && dst) {
          ns = src.name;
          target = dst.ip!;
          what = `${short(src.name)} → ${target} (${short(dst.name)})`;
        } else if (b.subnet && backend !== 'host-gw') {
          // vxlan and udp put the subnet's network address on the peer's flannel device.
          ns = ha.name;
          target = b.subnet.split('/')[0]!;
          what = `${a.id} → ${target} (${b.id}'s flannel address)`;
        } else return null;
        const ping = (t: string) => run(['ip', 'netns', 'exec', ns, 'ping', '-c', '1', '-W', '1', '-q', t], { timeoutMs: 5000 });
        const r = await ping(target);
        const rtt = /= [\d.]+\/([\d.]+)\//.exec(r.stdout)?.[1];
        let ok = r.code === 0;
        // A dual-stack lab (--ipv6): the pods' IPv6 addresses are probed too; a
        // direction is green only when both families get through.
        const src6 = src?.ip6;
        const dst6 = dst?.ip6;
        if (src && dst && src6 && dst6) {
          const ok6 = (await ping(dst6)).code === 0;
          what += ` and → ${dst6}`;
          if (ok !== ok6) what += ` (IPv${ok ? 6 : 4} fails)`;
          ok &&= ok6;
        }
        return { from: a.id, to: b.id, what, ok, rttMs: rtt ? Number(rtt) : null, at: new Date().toISOString() } satisfies ProbeResult;
      });
      return out.filter((x): x is ProbeResult => x !== null);
    },
    async kernel(host: UiHost, backend: string | null, peerIPs: ReadonlySet<string>): Promise<KernelTables> {
      const h = byId.get(host.id);
      if (!h) throw new Error(`no lab host "${host.id}"`);
      const snap = await snapshotIn(h.name);
      return kernelTables(host.id, `netns ${h.name}`, snap, backend, peerIPs);
    },
    async close() {
      await store.close();
      bridge?.close();
    },
  };
}

/** Runs `flannelctl kernel-snapshot` inside a network namespace. */
function snapshotIn(ns: string): Promise<KernelSnapshot> {
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', ns, process.execPath, FLANNELCTL, 'kernel-snapshot'], { timeout: 10_000, maxBuffer: 64 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`reading the kernel of ${ns}: ${(stderr || err.message).trim()}`));
      try {
        resolve(JSON.parse(stdout) as KernelSnapshot);
      } catch (e) {
        reject(new Error(`reading the kernel of ${ns}: ${(e as Error).message}`));
      }
    });
  });
}

/** Any etcd or local store: hosts are the leases; this machine's own kernel is readable. */
export async function storeSource(flags: StoreFlags, log: Logger): Promise<UiSource> {
  const store = await openStore(flags, log);
  let local = new Set<string>();
  try {
    const k = RtNetlink.open({ timeoutMs: 3000 });
    try {
      local = snapshotIPs(await readKernel(k));
    } finally {
      k.close();
    }
  } catch {
    /* not root, or no netlink: no kernel tables */
  }
  return {
    mode: 'store',
    title: 'flannel network',
    store,
    storeLabel: store.description,
    probeNote: 'No probe data: outside the lab this page shows the leases only (run "flannelctl diagnose" on a node to probe its peers).',
    localIPs: local,
    known: () => [],
    async kernel(host: UiHost, backend: string | null, peerIPs: ReadonlySet<string>): Promise<KernelTables> {
      const k = RtNetlink.open({ timeoutMs: 3000 });
      try {
        return kernelTables(host.id, 'this machine (rtnetlink)', await readKernel(k), backend, peerIPs);
      } finally {
        k.close();
      }
    },
    async close() {
      await store.close();
    },
  };
}
