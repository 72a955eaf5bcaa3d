// A read-only snapshot of one network namespace's IPv4 kernel state (links,
// addresses, main-table routes, neighbours, FDB), taken over rtnetlink with
// the KernelNet port, plus the lookups `diagnose` and `trace` need on it.
// Plain data, so it serialises to JSON: `trace --dst-netns` reads another
// namespace's snapshot that way (see src/cmd/flannelctl).
//
// Nothing here changes the kernel.

import * as C from '../netlink/constants.js';
import { nudStateNames } from '../netlink/rtnl.js';
import { ipv4NetContains, parseIPv4, parseIPv4Net } from '../lease/ip.js';
import type { Addr, FdbEntry, KernelNet, Link, Neigh, Route } from '../kernel/types.js';

export interface KernelSnapshot {
  readonly links: Link[];
  readonly addrs: Addr[];
  /** main table only */
  readonly routes: Route[];
  readonly neighs: Neigh[];
  readonly fdb: FdbEntry[];
}

export async function readKernel(k: KernelNet): Promise<KernelSnapshot> {
  const [links, addrs, routes, neighs, fdb] = await Promise.all([k.listLinks(), k.listAddrs(), k.listRoutes(), k.listNeighs(), k.listFdb()]);
  return { links, addrs, routes, neighs, fdb };
}

export function linkByName(s: KernelSnapshot, name: string): Link | undefined {
  return s.links.find((l) => l.name === name);
}

export function linkByIndex(s: KernelSnapshot, index: number | undefined): Link | undefined {
  return index === undefined ? undefined : s.links.find((l) => l.index === index);
}

export function linkName(s: KernelSnapshot, index: number | undefined): string {
  return linkByIndex(s, index)?.name ?? (index === undefined ? '?' : `#${index}`);
}

/** Addresses of one link ("a.b.c.d/len"). */
export function addrsOf(s: KernelSnapshot, index: number): Addr[] {
  return s.addrs.filter((a) => a.index === index);
}

export function localIPs(s: KernelSnapshot): Set<string> {
  return new Set(s.addrs.map((a) => a.local ?? a.address ?? a.cidr.split('/')[0]!));
}

export function addrIP(a: Addr): string {
  return a.local ?? a.address ?? a.cidr.split('/')[0]!;
}

/** Routes that can carry a packet (unicast, blackhole, unreachable, prohibit); not multicast/broadcast. */
function usable(r: Route): boolean {
  return r.type === C.RTN_UNICAST || r.type === C.RTN_BLACKHOLE || r.type === C.RTN_UNREACHABLE || r.type === C.RTN_PROHIBIT;
}

/**
 * Longest-prefix match in the main table (lowest metric among equals), as
 * the kernel does without policy rules. Addresses of this host are 'local'.
 */
export function lookupRoute(s: KernelSnapshot, ip: string): Route | 'local' | undefined {
  if (localIPs(s).has(ip)) return 'local';
  const n = parseIPv4(ip);
  let best: Route | undefined;
  for (const r of s.routes) {
    if (r.family !== C.AF_INET || !usable(r)) continue;
    const net = parseIPv4Net(r.dst);
    if (!ipv4NetContains(net, n)) continue;
    if (!best || r.dstLen > best.dstLen || (r.dstLen === best.dstLen && (r.priority ?? 0) < (best.priority ?? 0))) best = r;
  }
  return best;
}

/** A route as `ip route` prints it, e.g. "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink". */
export function describeRoute(s: KernelSnapshot, r: Route): string {
  const parts: string[] = [];
  if (r.type === C.RTN_BLACKHOLE) parts.push('blackhole');
  else if (r.type === C.RTN_UNREACHABLE) parts.push('unreachable');
  else if (r.type === C.RTN_PROHIBIT) parts.push('prohibit');
  parts.push(r.dst === '0.0.0.0/0' ? 'default' : r.dst);
  if (r.gateway) parts.push('via', r.gateway);
  if (r.oif !== undefined) parts.push('dev', linkName(s, r.oif));
  if (r.protocol === C.RTPROT_KERNEL) parts.push('proto kernel');
  if (r.scope === C.RT_SCOPE_LINK) parts.push('scope link');
  if (r.prefsrc) parts.push('src', r.prefsrc);
  if (r.priority) parts.push('metric', String(r.priority));
  if (r.onlink) parts.push('onlink');
  return parts.join(' ');
}

export function neighState(n: Neigh): string {
  return nudStateNames(n.state).join(',');
}

/** A neighbour that can actually be used to send (has a MAC and is not FAILED/INCOMPLETE). */
export function neighUsable(n: Neigh): boolean {
  return n.mac !== undefined && n.mac !== '00:00:00:00:00:00' && (n.state & (C.NUD_FAILED | C.NUD_INCOMPLETE)) === 0;
}

export function isUp(l: Link): boolean {
  return l.up;
}
