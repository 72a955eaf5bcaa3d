// `flannelctl lab up --ipv6`: the dual-stack parts of the lab.
//
// The underlay gets 2001:db8::/64 (documentation prefix) next to
// 192.0.2.0/24: br0 2001:db8::1, host i 2001:db8::(10+i) on eth0 (`nodad`,
// so the addresses are usable at once), a v6 default route via br0 and IPv6
// forwarding on. The net-conf adds EnableIPv6 and IPv6Network
// fd00:10:244::/56 (flannel's example, observed-flannel.md); with --store
// kube each Node gets spec.podCIDRs [10.244.<i>.0/24, fd00:10:244:<i>::/64].
// The CNI plugin then hands every pod an address of each family (host-local
// with two ranges).
//
// The report adds, per host, flannel-v6.1 and its neighbours, FDB entries and
// the v6 routes, and a second ping matrix (ping -6) after the IPv4 one.

import path from 'node:path';
import { readFileSync } from 'node:fs';
import { parseEnvText } from '../subnet/subnet-env.js';
import { mapLimit, run } from './sh.js';
import { renderReachMatrix } from './matrix.js';

export const UNDERLAY_IP6 = '2001:db8::1';
export const IPV6_NETWORK = 'fd00:10:244::/56';

export const hostIp6 = (index: number) => `2001:db8::${10 + index}`;
/** --store kube: host i's IPv6 podCIDR (inside IPV6_NETWORK) */
export const podCidr6 = (index: number) => `fd00:10:244:${index.toString(16)}::/64`;

/** The net-conf fields dual-stack adds. */
export const netConfIPv6 = { EnableIPv6: true, IPv6Network: IPV6_NETWORK } as const;

type Exec = (argv: string[]) => Promise<unknown>;

/** br0's IPv6 address in the underlay namespace. */
export async function underlayIPv6(x: Exec, ul: string): Promise<void> {
  await x(['ip', '-n', ul, 'addr', 'add', `${UNDERLAY_IP6}/64`, 'dev', 'br0', 'nodad']);
}

/** A host's IPv6 underlay address, default route and forwarding (eth0 already up). */
export async function hostIPv6(x: Exec, ns: string, ip6: string): Promise<void> {
  await x(['ip', '-n', ns, 'addr', 'add', `${ip6}/64`, 'dev', 'eth0', 'nodad']);
  await x(['ip', '-n', ns, '-6', 'route', 'add', 'default', 'via', UNDERLAY_IP6, 'dev', 'eth0']);
  await x(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
}

/** The pod's IPv6 address from the CNI result (null when it got none). */
export function cniResultIPv6(res: string): string | null {
  try {
    const r = JSON.parse(res) as { ips?: Array<{ address?: string }> };
    const a = (r.ips ?? []).map((i) => i.address ?? '').find((x) => x.includes(':'));
    return a ? a.split('/')[0]! : null;
  } catch {
    return null;
  }
}

export interface HostReport6 {
  subnet6: string;
  /** one line on flannel-v6.1: MAC, address, MTU, VXLAN id and port */
  device6: string;
  neigh6: string[];
  fdb6: string[];
  routes6: string[];
}

const lines = (s: string) => s.trim().split('\n').map((l) => l.trim()).filter(Boolean);

/** The v6 half of a host's report: FLANNEL_IPV6_SUBNET, flannel-v6.1 (vxlan), its entries and the v6 routes. */
export async function hostReport6(ns: string, dir: string, backend: string): Promise<HostReport6> {
  let subnet6 = '?';
  try {
    subnet6 = parseEnvText(readFileSync(path.join(dir, 'subnet.env'), 'utf8')).get('FLANNEL_IPV6_SUBNET') ?? '?';
  } catch {
    /* flanneld not up */
  }
  const dev = 'flannel-v6.1';
  let device6 = '';
  let neigh6: string[] = [];
  let fdb6: string[] = [];
  if (backend === 'vxlan') {
    const link = await run(['ip', '-n', ns, '-d', 'link', 'show', dev]);
    if (link.code === 0) {
      const addr = await run(['ip', '-n', ns, '-6', '-br', 'addr', 'show', dev, 'scope', 'global']);
      const mac = /link\/ether (\S+)/.exec(link.stdout)?.[1] ?? '?';
      const vx = /vxlan id (\d+).*?dstport (\d+)( nolearning)?/.exec(link.stdout);
      const m = /mtu (\d+)/.exec(link.stdout)?.[1] ?? '?';
      const a = addr.stdout.trim().split(/\s+/).slice(2).join(' ') || '(none)';
      device6 = `${dev}  mac ${mac}  addr ${a}  mtu ${m}${vx ? `  vxlan id ${vx[1]} dstport ${vx[2]}${vx[3] ?? ''}` : ''}`;
    } else device6 = `${dev} is missing`;
    neigh6 = lines((await run(['ip', '-n', ns, '-6', 'neigh', 'show', 'dev', dev])).stdout);
    fdb6 = lines((await run(['bridge', '-n', ns, 'fdb', 'show', 'dev', dev])).stdout);
  }
  // link-local (fe80::/64 on every interface) and multicast routes are left out
  const routes6 = lines((await run(['ip', '-n', ns, '-6', 'route'])).stdout).filter((l) => !/^(fe80::|ff00::|multicast )/.test(l));
  return { subnet6, device6, neigh6, fdb6, routes6 };
}

/** The v6 lines of a host's section in the report. */
export function renderHost6(r: HostReport6, backend: string): string[] {
  const out: string[] = [];
  if (backend === 'vxlan') {
    out.push(`  ${r.device6}`);
    out.push('  $ ip -6 neigh show dev flannel-v6.1');
    out.push(...(r.neigh6.length ? r.neigh6 : ['(none)']).map((l) => `    ${l}`));
    out.push('  $ bridge fdb show dev flannel-v6.1');
    out.push(...(r.fdb6.length ? r.fdb6 : ['(none)']).map((l) => `    ${l}`));
  }
  out.push('  $ ip -6 route | grep -v "^fe80::"');
  out.push(...(r.routes6.length ? r.routes6 : ['(none)']).map((l) => `    ${l}`));
  return out;
}

export interface Pod6 {
  name: string;
  ip6?: string | null;
}

export interface Reach6 {
  from: string;
  to: string;
  ok: boolean;
  rttMs: number | null;
}

/** ping -6 between every ordered pair of pods; a pair whose target has no IPv6 address is unreachable. */
export async function reachability6(pods: readonly Pod6[]): Promise<Reach6[]> {
  const pairs = pods.flatMap((a) => pods.filter((b) => b !== a).map((b) => ({ a, b })));
  return mapLimit(pairs, 8, async ({ a, b }) => {
    if (!a.ip6 || !b.ip6) return { from: a.name, to: b.name, ok: false, rttMs: null };
    const r = await run(['ip', 'netns', 'exec', a.name, 'ping', '-6', '-c', '1', '-W', '1', '-q', b.ip6!]);
    const rtt = /= [\d.]+\/([\d.]+)\//.exec(r.stdout)?.[1];
    return { from: a.name, to: b.name, ok: r.code === 0, rttMs: rtt ? Number(rtt) : null };
  });
}

/** The IPv6 ping matrix, shaped like the IPv4 one. */
export function renderMatrix6(prefix: string, pods: readonly Pod6[], reach: readonly Reach6[]): string[] {
  if (pods.length < 2) return [];
  const out: string[] = ['', ...renderReachMatrix(prefix, pods, reach, 'IPv6 reachability (ping -6, RTT in ms)')];
  const missing = pods.filter((p) => !p.ip6).length;
  out.push(`${reach.filter((r) => r.ok).length}/${reach.length} pairs reachable over IPv6${missing ? ` (${missing} pods have no IPv6 address)` : ''}`);
  return out;
}

/**
 * Wait (up to `ms`) until no IPv6 address in these namespaces is still
 * tentative: the bridge plugin's cni0 gateway and the pods' addresses go
 * through duplicate address detection (about 1-2 s) before they carry
 * traffic, so a ping -6 straight after the CNI ADD would fail.
 */
export async function waitIPv6Settled(namespaces: readonly string[], ms = 10_000): Promise<string[]> {
  const deadline = Date.now() + ms;
  let pending = [...namespaces];
  while (pending.length > 0 && Date.now() < deadline) {
    const still = await Promise.all(pending.map(async (ns) => ((await run(['ip', '-n', ns, '-6', 'addr', 'show', 'tentative'])).stdout.trim() ? ns : null)));
    pending = still.filter((n): n is string => n !== null);
    if (pending.length > 0) await new Promise((r) => setTimeout(r, 100));
  }
  return pending;
}
