// Pure: remote leases -> the kernel entries the VXLAN backend wants on
// flannel.<VNI> (spec §5.5). Leases of another backend type, ones whose
// subnet has host bits set, and ones whose VtepMAC is missing, malformed,
// multicast or all-zero, are left out with a reason, so nothing unvalidated
// reaches the kernel.

import { formatIPv4, formatIPv4Net, formatIPv6, formatIPv6Net, ipv4NetAligned, ipv4NetContains, ipv6NetAligned, ipv6NetContains, type IPv4Net, type IPv6Net } from '../../lease/ip.js';
import { leaseId, type Lease } from '../../lease/lease.js';
import { normaliseMac } from './options.js';
import { flat } from '../../strings.js';

export interface PeerEntries {
  readonly id: string;
  /** the onlink next hop and neighbour IP: the remote subnet's network address */
  readonly gw: string;
  readonly dst: string;
  readonly mac: string;
  readonly publicIP: string;
  /** true: a plain route via the peer's public IP, no neighbour/FDB */
  readonly direct: boolean;
}

export interface Desired {
  readonly peers: PeerEntries[];
  readonly skipped: Array<{ id: string; reason: string }>;
}

export function vtepMacOf(l: Lease, family: 4 | 6 = 4): string | null {
  const d = family === 6 ? l.attrs.backendV6Data : l.attrs.backendData;
  if (!d || typeof d !== 'object' || Array.isArray(d)) return null;
  for (const [k, v] of Object.entries(d)) if (k.toLowerCase() === 'vtepmac') return normaliseMac(v);
  return null;
}

export function desiredEntries(remote: readonly Lease[], directNets: readonly IPv4Net[] | null): Desired {
  const peers: PeerEntries[] = [];
  const skipped: Desired['skipped'] = [];
  for (const l of remote) {
    const id = leaseId(l);
    if (l.attrs.backendType !== 'vxlan') {
      skipped.push({ id, reason: `backend type "${l.attrs.backendType || '(none)'}" is not vxlan` });
      continue;
    }
    if (!ipv4NetAligned(l.subnet)) {
      // The route would be refused (EINVAL) after the neighbour and FDB entry went in.
      skipped.push({ id, reason: `subnet ${formatIPv4Net(l.subnet)} has host bits set` });
      continue;
    }
    const publicIP = formatIPv4(l.attrs.publicIP);
    const direct = directNets !== null && directNets.some((n) => ipv4NetContains(n, l.attrs.publicIP));
    const mac = vtepMacOf(l);
    if (!direct) {
      if (!mac) {
        skipped.push({ id, reason: `BackendData.VtepMAC ${JSON.stringify(l.attrs.backendData)} is not a MAC address` });
        continue;
      }
      const first = parseInt(mac.slice(0, 2), 16);
      if (first & 1 || mac === '00:00:00:00:00:00') {
        skipped.push({ id, reason: `BackendData.VtepMAC ${mac} is not a unicast address` });
        continue;
      }
    }
    peers.push({ id, gw: formatIPv4(l.subnet.ip), dst: formatIPv4Net(l.subnet), mac: mac ?? '', publicIP, direct });
  }
  return { peers, skipped };
}

/**
 * The IPv6 half (spec §5.5 "IPv6: same three steps"): entries on
 * flannel-v6.<VNI> for every vxlan peer with an IPv6 subnet: neighbour =
 * the v6 subnet's network address with the peer's v6 VtepMAC, FDB dst = the
 * peer's PublicIPv6. IPv4-only peers simply have none (and are not warned
 * about); a lease of another backend type is already reported by the IPv4
 * half. A dual-stack peer whose v6 half is unusable keeps its IPv4 entries
 * (real flannel drops both halves, observed-flannel.md).
 */
export function desiredEntries6(remote: readonly Lease[], directNets: readonly IPv6Net[] | null): Desired {
  const peers: PeerEntries[] = [];
  const skipped: Desired['skipped'] = [];
  for (const l of remote) {
    const s6 = l.subnet6;
    if (!s6 || l.attrs.backendType !== 'vxlan') continue;
    const id = leaseId(l);
    if (!ipv6NetAligned(s6)) {
      skipped.push({ id, reason: `IPv6 subnet ${formatIPv6Net(s6)} has host bits set` });
      continue;
    }
    const pub = l.attrs.publicIPv6;
    if (pub === null) {
      skipped.push({ id, reason: 'its key has an IPv6 subnet but PublicIPv6 is null; no IPv6 entries' });
      continue;
    }
    const direct = directNets !== null && directNets.some((n) => ipv6NetContains(n, pub));
    const mac = vtepMacOf(l, 6);
    if (!direct) {
      if (!mac) {
        skipped.push({ id, reason: `BackendV6Data.VtepMAC ${JSON.stringify(l.attrs.backendV6Data) ?? 'undefined'} is not a MAC address; no IPv6 entries` });
        continue;
      }
      if (parseInt(mac.slice(0, 2), 16) & 1 || mac === '00:00:00:00:00:00') {
        skipped.push({ id, reason: `BackendV6Data.VtepMAC ${mac} is not a unicast address; no IPv6 entries` });
        continue;
      }
    }
    peers.push({ id, gw: formatIPv6(s6.ip), dst: formatIPv6Net(s6), mac: mac ?? '', publicIP: formatIPv6(pub), direct });
  }
  return { peers, skipped };
}

/**
 * The entries the current peers want, by lease id, with counts by key, so
 * that "does any peer still want this neighbour / FDB entry / route?" is one
 * lookup instead of a pass over every peer (issue 11). Only tunnelled peers
 * count for neighbours and FDB entries; every peer counts for its route dst.
 */
export class WantedEntries {
  private readonly byId = new Map<string, PeerEntries>();
  private readonly gws = new Map<string, number>();
  private readonly fdbs = new Map<string, number>();
  private readonly dsts = new Map<string, number>();

  get size(): number {
    return this.byId.size;
  }

  get(id: string): PeerEntries | undefined {
    return this.byId.get(id);
  }

  values(): IterableIterator<PeerEntries> {
    return this.byId.values();
  }

  /** The peer's entries now (null or undefined: it wants none). */
  set(id: string, p: PeerEntries | null | undefined): void {
    this.delete(id);
    if (!p) return;
    this.byId.set(id, p);
    count(this.dsts, p.dst, 1);
    if (!p.direct) {
      count(this.gws, p.gw, 1);
      count(this.fdbs, fdbKey(p.mac, p.publicIP), 1);
    }
  }

  delete(id: string): void {
    const p = this.byId.get(id);
    if (!p) return;
    this.byId.delete(id);
    count(this.dsts, p.dst, -1);
    if (!p.direct) {
      count(this.gws, p.gw, -1);
      count(this.fdbs, fdbKey(p.mac, p.publicIP), -1);
    }
  }

  /** Everything afresh (a full run). */
  reset(peers: readonly PeerEntries[]): void {
    this.byId.clear();
    this.gws.clear();
    this.fdbs.clear();
    this.dsts.clear();
    for (const p of peers) this.set(p.id, p);
  }

  /** a tunnelled peer's neighbour IP */
  hasGw(gw: string): boolean {
    return this.gws.has(gw);
  }

  /** a tunnelled peer's FDB entry */
  hasFdb(mac: string, dst: string): boolean {
    return this.fdbs.has(fdbKey(mac, dst));
  }

  /** any peer's route */
  hasDst(dst: string): boolean {
    return this.dsts.has(dst);
  }
}

const fdbKey = (mac: string, dst: string) => flat(`${mac}|${dst}`);

function count(m: Map<string, number>, k: string, d: 1 | -1): void {
  const n = (m.get(k) ?? 0) + d;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}
