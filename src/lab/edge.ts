// `flannelctl lab up --edge` (issue 12): an "office LAN" reached through edge
// nodes, as in the article's §7.
//
//   <prefix>lan   a switch (bridge "sw"), no flannel
//   <prefix>lan1  192.168.50.10   <prefix>lan2  192.168.50.11   plain hosts
//   h1            br-lan 192.168.50.1, holding its NIC lan0 (the edge node)
//   h2            br-lan 192.168.50.2, a second edge node (with --hosts >= 3)
//
// The edge hosts run flanneld --edge-network 192.168.50.0/24 --edge-iface
// br-lan; every other vxlan node routes the segment via the chosen edge
// node's flannel.1 address. No --edge-masq, so the LAN hosts get a route to
// the pod Network via h1 (the article's "routes both ways"). The report shows
// the bridges, the routes on both sides and a ping matrix between the pods
// and the LAN hosts.

import { formatIPv4Net, parseIPv4Net } from '../lease/ip.js';
import { mapLimit, run } from './sh.js';

export const EDGE_LAN = '192.168.50.0/24';
export const EDGE_BRIDGE = 'br-lan';

export interface LabEdge {
  /** the switch namespace */
  switch: string;
  /** plain LAN hosts */
  lanHosts: Array<{ name: string; ip: string }>;
  /** lab hosts that are edge nodes, with their address on br-lan */
  edgeHosts: Array<{ name: string; ip: string }>;
}

/** Which hosts are edge nodes: h1, and h2 as a second one when there are at least 3 hosts. */
export function edgeHostCount(hosts: number): number {
  return hosts >= 3 ? 2 : 1;
}

/** flanneld's extra arguments on an edge host. */
export function edgeFlanneldArgs(): string[] {
  return ['--edge-network', EDGE_LAN, '--edge-iface', EDGE_BRIDGE];
}

/**
 * Builds the LAN: switch, two plain hosts, and br-lan on each edge host.
 * `addNs` creates (and records) a namespace; `ipn` runs `ip -n <ns> ...`.
 * Called before flanneld starts (it checks br-lan's address).
 */
export async function buildEdgeLan(
  prefix: string,
  edgeHostNames: readonly string[],
  addNs: (name: string) => Promise<void>,
  ipn: (ns: string, ...a: string[]) => Promise<unknown>,
  network: string,
): Promise<LabEdge> {
  const base = parseIPv4Net(EDGE_LAN);
  const at = (n: number) => formatIPv4Net({ ip: base.ip + n, prefix: 32 }).replace(/\/32$/, '');
  const sw = `${prefix}lan`;
  await addNs(sw);
  await ipn(sw, 'link', 'add', 'sw', 'type', 'bridge');
  await ipn(sw, 'link', 'set', 'sw', 'up');
  const e: LabEdge = { switch: sw, lanHosts: [], edgeHosts: [] };
  for (let i = 1; i <= 2; i++) {
    const ns = `${prefix}lan${i}`;
    const ip = at(9 + i);
    await addNs(ns);
    await ipn(sw, 'link', 'add', `p-lan${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    await ipn(sw, 'link', 'set', `p-lan${i}`, 'master', 'sw', 'up');
    await ipn(ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0');
    await ipn(ns, 'link', 'set', 'eth0', 'up');
    e.lanHosts.push({ name: ns, ip });
  }
  for (const [i, h] of edgeHostNames.entries()) {
    const ip = at(1 + i);
    await ipn(sw, 'link', 'add', `p-e${i + 1}`, 'type', 'veth', 'peer', 'name', 'lan0', 'netns', h);
    await ipn(sw, 'link', 'set', `p-e${i + 1}`, 'master', 'sw', 'up');
    await ipn(h, 'link', 'add', EDGE_BRIDGE, 'type', 'bridge');
    await ipn(h, 'link', 'set', 'lan0', 'master', EDGE_BRIDGE, 'up');
    await ipn(h, 'addr', 'add', `${ip}/24`, 'dev', EDGE_BRIDGE);
    await ipn(h, 'link', 'set', EDGE_BRIDGE, 'up');
    e.edgeHosts.push({ name: h, ip });
  }
  // no --edge-masq in the lab: the LAN routes the pod Network back via the first edge node
  for (const l of e.lanHosts) await ipn(l.name, 'route', 'add', network, 'via', e.edgeHosts[0]!.ip);
  return e;
}

const lines = (s: string) => s.split('\n').map((l) => l.trimEnd()).filter(Boolean);

/** The edge part of the lab report: bridges, routes on both sides, pods <-> LAN ping matrix; and the pings not answered. */
export async function edgeReport(
  prefix: string,
  e: LabEdge,
  hosts: ReadonlyArray<{ name: string; pods: ReadonlyArray<{ name: string; ip: string | null }> }>,
): Promise<{ text: string; failed: Array<{ from: string; to: string }> }> {
  const short = (n: string) => n.slice(prefix.length);
  const failed: Array<{ from: string; to: string }> = [];
  const out: string[] = ['', `office LAN ${EDGE_LAN} (switch ${short(e.switch)}; hosts ${e.lanHosts.map((l) => `${short(l.name)}=${l.ip}`).join('  ')})`];
  for (const h of e.edgeHosts) {
    out.push(`  edge node ${short(h.name)}  ${EDGE_BRIDGE} ${h.ip}  (flanneld ${edgeFlanneldArgs().join(' ')})`);
    out.push(`    $ ip -br addr show ${EDGE_BRIDGE}; ip -br link show master ${EDGE_BRIDGE}`);
    out.push(...lines((await run(['ip', '-n', h.name, '-br', 'addr', 'show', EDGE_BRIDGE])).stdout).map((l) => `      ${l}`));
    out.push(...lines((await run(['ip', '-n', h.name, '-br', 'link', 'show', 'master', EDGE_BRIDGE])).stdout).map((l) => `      ${l}  (the NIC on the LAN)`));
  }
  out.push(`  routes to ${EDGE_LAN} on the flannel hosts ($ ip route show ${EDGE_LAN})`);
  for (const h of hosts) {
    const r = lines((await run(['ip', '-n', h.name, 'route', 'show', EDGE_LAN])).stdout);
    out.push(`    ${short(h.name).padEnd(6)} ${r.join(' | ') || '(none)'}`);
  }
  out.push('  routes on the LAN hosts ($ ip route)');
  for (const l of e.lanHosts) out.push(...lines((await run(['ip', '-n', l.name, 'route'])).stdout).map((r) => `    ${short(l.name).padEnd(6)} ${r}`));
  const pods = hosts.flatMap((h) => h.pods).filter((p) => p.ip);
  if (pods.length > 0) {
    const pairs = pods.flatMap((p) => e.lanHosts.flatMap((l) => [{ from: p.name, to: l.ip, key: `${p.name}>${l.name}` }, { from: l.name, to: p.ip!, key: `${l.name}>${p.name}` }]));
    const res = new Map(
      await mapLimit(pairs, 8, async (q) => {
        const r = await run(['ip', 'netns', 'exec', q.from, 'ping', '-c', '1', '-W', '1', '-q', q.to]);
        const rtt = /= [\d.]+\/([\d.]+)\//.exec(r.stdout)?.[1];
        return [q.key, r.code === 0 ? `✓ ${rtt ? Number(rtt).toFixed(2) : ''}` : '✗'] as const;
      }),
    );
    const w = Math.max(...pods.map((p) => short(p.name).length), 9);
    out.push('');
    out.push('pods <-> office LAN (ping, RTT in ms; pod -> LAN host | LAN host -> pod)');
    out.push(`${'pod'.padEnd(w)}  ${e.lanHosts.map((l) => `${short(l.name)} (${l.ip})`.padStart(26)).join('')}`);
    for (const p of pods) {
      out.push(`${short(p.name).padEnd(w)}  ${e.lanHosts.map((l) => `${res.get(`${p.name}>${l.name}`)} | ${res.get(`${l.name}>${p.name}`)}`.padStart(26)).join('')}`);
    }
    const ok = [...res.values()].filter((v) => v.startsWith('✓')).length;
    out.push(`${ok}/${res.size} pod <-> LAN pings answered`);
    failed.push(...pairs.filter((q) => !res.get(q.key)!.startsWith('✓')).map((q) => ({ from: q.from, to: q.to })));
  }
  return { text: out.join('\n') + '\n', failed };
}
