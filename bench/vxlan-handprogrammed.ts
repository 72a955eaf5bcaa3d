// Baseline for the VXLAN benchmark: programs the same kernel state flanneld's
// vxlan backend produces, but by hand with `ip`/`bridge`, so throughput and
// latency of flanneld-programmed overlays can be compared with a known-good
// reference. Also hosts the iperf3 runner used by the benchmark.

import { randomBytes } from 'node:crypto';
import type { Host, Topology } from '../test/helpers/netns.js';

export const VXLAN_DEV = 'flannel.1';
export const VXLAN_VNI = 1;
export const VXLAN_PORT = 8472;

/** Random unicast, locally administered MAC (as the kernel/flannel would pick). */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export interface HandVxlanHost {
  host: Host;
  mac: string;
  /** Overlay address of flannel.1 = network base of the host's pod subnet (e.g. 10.244.3.0). */
  vtepIp: string;
  /** Pod subnet routed to this host, e.g. '10.244.3.0/24'. */
  subnet: string;
}

/**
 * Programs a flannel-style VXLAN overlay in every host namespace of an
 * already-wired topology (pods wired with wirePodsWith, e.g. 10.244.<i>.1/24,
 * MTU 1450) on which no flanneld runs:
 *
 *   ip link add flannel.1 type vxlan id 1 local <host ip> dev eth0 dstport 8472 nolearning
 *   ip link set flannel.1 address <random LAA mac> mtu <mtu>
 *   ip addr add <subnet base>/32 dev flannel.1 ; ip link set flannel.1 up
 *   for each remote host j:
 *     ip neigh replace <base j> lladdr <mac j> dev flannel.1 nud permanent
 *     bridge fdb append <mac j> dev flannel.1 self dst <host j ip> permanent
 *     ip route replace <base j>/<len j> via <base j> dev flannel.1 onlink
 *
 * Returns the per-host VTEP data. Throws if a host has no pod wiring.
 */
export async function programVxlanByHand(topo: Topology, o: { mtu?: number } = {}): Promise<HandVxlanHost[]> {
  const mtu = o.mtu ?? 1450;
  const vteps: HandVxlanHost[] = topo.hosts.map((host) => {
    if (!host.cni) throw new Error(`${host.name}: pods not wired (call wirePodsWith first)`);
    return { host, mac: randomMac(), vtepIp: host.cni.base, subnet: `${host.cni.base}/${host.cni.prefixLen}` };
  });
  // Devices first on every host, then the remote entries (order within a host
  // matters: neigh/fdb/route need flannel.1 to exist and be up).
  await Promise.all(
    vteps.map(async ({ host, mac, vtepIp }) => {
      const ns = host.name;
      await topo.ip(ns, 'link', 'add', VXLAN_DEV, 'type', 'vxlan', 'id', String(VXLAN_VNI), 'local', host.ip, 'dev', 'eth0', 'dstport', String(VXLAN_PORT), 'nolearning');
      await topo.ip(ns, 'link', 'set', VXLAN_DEV, 'address', mac, 'mtu', String(mtu));
      await topo.ip(ns, 'addr', 'add', `${vtepIp}/32`, 'dev', VXLAN_DEV);
      await topo.ip(ns, 'link', 'set', VXLAN_DEV, 'up');
    }),
  );
  await Promise.all(
    vteps.map(async ({ host }) => {
      const ns = host.name;
      for (const r of vteps) {
        if (r.host === host) continue;
        await topo.ip(ns, 'neigh', 'replace', r.vtepIp, 'lladdr', r.mac, 'dev', VXLAN_DEV, 'nud', 'permanent');
        await topo.exec(ns, ['bridge', 'fdb', 'append', r.mac, 'dev', VXLAN_DEV, 'self', 'dst', r.host.ip, 'permanent']);
        await topo.ip(ns, 'route', 'replace', r.subnet, 'via', r.vtepIp, 'dev', VXLAN_DEV, 'onlink');
      }
    }),
  );
  return vteps;
}

export interface Iperf3Options {
  /** TCP port for the server (default 5201; each namespace has its own port space). */
  port?: number;
  /** Extra client arguments, e.g. ['-P', '4'] or ['-u', '-b', '1G']. */
  clientArgs?: string[];
}

/**
 * Runs `iperf3 -s -1` in toNs and `iperf3 -c toIp -t seconds -J` in fromNs;
 * returns the receiver-side throughput in Gbit/s
 * (end.sum_received.bits_per_second / 1e9). The server is a tracked topology
 * process and is stopped before returning.
 */
export async function iperf3(topo: Topology, fromNs: string, toNs: string, toIp: string, seconds: number, o: Iperf3Options = {}): Promise<number> {
  const port = String(o.port ?? 5201);
  const server = topo.spawn(toNs, ['iperf3', '-s', '-1', '-p', port], { label: `iperf3 server in ${toNs}` });
  try {
    // iperf3 buffers stdout on a pipe, so poll the listening socket instead.
    const deadline = Date.now() + 5000;
    for (;;) {
      const r = await topo.run(toNs, ['ss', '-Hltn', `sport = :${port}`]);
      if (r.stdout.trim()) break;
      if (server.done) throw new Error(`iperf3 server exited early: ${server.stderr}${server.stdout}`);
      if (Date.now() > deadline) throw new Error(`iperf3 server in ${toNs} not listening on ${port}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const r = await topo.run(fromNs, ['iperf3', '-c', toIp, '-p', port, '-t', String(seconds), '-J', ...(o.clientArgs ?? [])], {
      timeoutMs: (seconds + 20) * 1000,
    });
    let j: { error?: string; end?: { sum_received?: { bits_per_second?: number } } };
    try {
      j = JSON.parse(r.stdout) as typeof j;
    } catch {
      throw new Error(`iperf3 client (exit ${r.code}) gave no JSON: ${r.stderr}${r.stdout.slice(0, 500)}`);
    }
    if (j.error) throw new Error(`iperf3: ${j.error}`);
    const bps = j.end?.sum_received?.bits_per_second;
    if (typeof bps !== 'number') throw new Error(`iperf3 JSON lacks end.sum_received.bits_per_second (exit ${r.code})`);
    return bps / 1e9;
  } finally {
    await Promise.race([server.exited, new Promise((r) => setTimeout(r, 2000))]);
    await server.stop(1000);
  }
}
