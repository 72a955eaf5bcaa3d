// The lease domain model: subnet keys, lease JSON (byte-compatible with
// flannel's Go json.Marshal of LeaseAttrs) and validation of leases read from
// the store. Pure, no I/O. Spec §3.3, §3.4.

import {
  AddrError,
  formatIPv4,
  formatIPv4Net,
  formatIPv6,
  formatIPv6Net,
  ipv4NetAligned,
  ipv4NetContains,
  ipv4NetsOverlap,
  ipv6NetAligned,
  ipv6NetContains,
  ipv6NetsOverlap,
  mask6Of,
  maskOf,
  parseIPv4,
  parseIPv6,
  unusablePublicIPv4,
  unusablePublicIPv6,
  type IPv4Net,
  type IPv6Net,
} from './ip.js';
import { foldKeys, jsonDepth, MAX_JSON_DEPTH, parseJsonObject, showJson } from './json.js';
import { FlannelError } from '../errors.js';
import { flat } from '../strings.js';

export class LeaseDataError extends FlannelError {
  static override readonly defaultCode: string = 'LEASE_DATA_INVALID';
  override name = 'LeaseDataError';
}

export interface LeaseAttrs {
  /** IPv4 public (tunnel endpoint) address as a uint32; 0 when unset */
  readonly publicIP: number;
  readonly publicIPv6: bigint | null;
  /** "" is omitted from the JSON (udp and alloc leave it empty) */
  readonly backendType: string;
  /** parsed raw JSON; undefined = omitted */
  readonly backendData?: unknown;
  readonly backendV6Data?: unknown;
  /**
   * flannel-ts extension (issue 12, the edge gateway): the L2 segments this
   * node routes to, e.g. ["192.168.50.0/24"], as parsed raw JSON (undefined =
   * omitted). Written after flannel's fields; Go's encoding/json ignores the
   * unknown key, so real flannel reads such a lease as usual. Checked by the
   * vxlan backend (edge.ts) before use, never here: a bad value costs only
   * the edge routes, not the peer.
   */
  readonly edgeNetworks?: unknown;
}

export interface Lease {
  readonly subnet: IPv4Net;
  readonly subnet6: IPv6Net | null;
  readonly attrs: LeaseAttrs;
  /** null for a reservation (a key with no TTL) */
  readonly expiration: Date | null;
}

// ------------------------------------------------------------- subnet keys

/** "10.244.1.0-24" or "10.12.13.0-24&fd00:12:13::-56" */
export function subnetKey(subnet: IPv4Net, subnet6: IPv6Net | null = null): string {
  const v4 = `${formatIPv4(subnet.ip)}-${subnet.prefix}`;
  return flat(subnet6 ? `${v4}&${formatIPv6(subnet6.ip)}-${subnet6.prefix}` : v4);
}

const KEY_RE = /^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})-(\d+)(?:&([a-f0-9:]+)-(\d+))?$/;

/**
 * Parse the last path element of a subnet key. Mirrors flannel's rules: IPv4
 * prefix length 0..31 (flannel parses it as a 5-bit number, so 32 fails),
 * IPv6 prefix length 0..127. Returns null for anything else.
 */
export function parseSubnetKey(key: string): { subnet: IPv4Net; subnet6: IPv6Net | null } | null {
  const last = key.slice(key.lastIndexOf('/') + 1);
  const m = KEY_RE.exec(last);
  if (!m) return null;
  const len = Number(m[2]);
  if (!/^\d{1,2}$/.test(m[2]!) || len > 31) return null;
  let ip: number;
  try {
    ip = parseIPv4(m[1]!);
  } catch {
    return null;
  }
  let subnet6: IPv6Net | null = null;
  if (m[3] !== undefined) {
    const len6 = Number(m[4]);
    if (!/^\d{1,3}$/.test(m[4]!) || len6 > 127) return null;
    try {
      subnet6 = { ip: parseIPv6(m[3]), prefix: len6 };
    } catch {
      return null;
    }
  }
  return { subnet: { ip, prefix: len }, subnet6 };
}

// ------------------------------------------------------------- lease JSON

/**
 * Encode exactly as Go's json.Marshal(LeaseAttrs): compact, fields in order
 * PublicIP, PublicIPv6 (null when absent), then BackendType, BackendData,
 * BackendV6Data only when non-empty; then flannel-ts's EdgeNetworks when set.
 */
export function encodeLeaseAttrs(a: LeaseAttrs): string {
  let s = `{"PublicIP":${JSON.stringify(formatIPv4(a.publicIP))},"PublicIPv6":${a.publicIPv6 === null ? 'null' : JSON.stringify(formatIPv6(a.publicIPv6))}`;
  if (a.backendType !== '') s += `,"BackendType":${JSON.stringify(a.backendType)}`;
  if (a.backendData !== undefined) s += `,"BackendData":${JSON.stringify(a.backendData)}`;
  if (a.backendV6Data !== undefined) s += `,"BackendV6Data":${JSON.stringify(a.backendV6Data)}`;
  if (a.edgeNetworks !== undefined) s += `,"EdgeNetworks":${JSON.stringify(a.edgeNetworks)}`;
  return s + '}';
}

const ATTR_FIELDS = ['PublicIP', 'PublicIPv6', 'BackendType', 'BackendData', 'BackendV6Data', 'EdgeNetworks'] as const;

/** Decode lease JSON written by anyone (Go decodes keys case-insensitively). */
export function decodeLeaseAttrs(text: string): LeaseAttrs {
  const doc = parseJsonObject(text, 'lease value', (m) => new LeaseDataError(m));
  const f = foldKeys(doc, ATTR_FIELDS);
  // Fuzzing (issue 9): a value nested thousands deep parses, but then makes
  // JSON.stringify (messages, sameAttrs, re-encoding) throw a RangeError.
  // Refuse it here, naming the field; error messages show at most a short
  // excerpt of the offending value (showJson never throws).
  for (const k of ATTR_FIELDS) {
    if (jsonDepth(f[k]) > MAX_JSON_DEPTH) throw new LeaseDataError(`${k}: nested more than ${MAX_JSON_DEPTH} levels deep`);
  }
  let publicIP = 0;
  if (f.PublicIP !== undefined && f.PublicIP !== null) {
    if (typeof f.PublicIP !== 'string') throw new LeaseDataError(`PublicIP: expected a string, got ${showJson(f.PublicIP)}`);
    try {
      publicIP = parseIPv4(f.PublicIP);
    } catch (e) {
      throw new LeaseDataError(`PublicIP: ${showJson(f.PublicIP)} is not an IPv4 address`);
    }
  }
  let publicIPv6: bigint | null = null;
  if (f.PublicIPv6 !== undefined && f.PublicIPv6 !== null) {
    if (typeof f.PublicIPv6 !== 'string') throw new LeaseDataError(`PublicIPv6: expected a string or null, got ${showJson(f.PublicIPv6)}`);
    try {
      publicIPv6 = parseIPv6(f.PublicIPv6);
    } catch (e) {
      if (!(e instanceof AddrError)) throw e;
      throw new LeaseDataError(`PublicIPv6: ${showJson(f.PublicIPv6)} is not an IPv6 address`);
    }
  }
  let backendType = '';
  if (f.BackendType !== undefined && f.BackendType !== null) {
    if (typeof f.BackendType !== 'string') throw new LeaseDataError(`BackendType: expected a string, got ${showJson(f.BackendType)}`);
    backendType = f.BackendType;
  }
  const out: { -readonly [K in keyof LeaseAttrs]: LeaseAttrs[K] } = { publicIP, publicIPv6, backendType };
  if (f.BackendData !== undefined) out.backendData = f.BackendData;
  if (f.BackendV6Data !== undefined) out.backendV6Data = f.BackendV6Data;
  if (f.EdgeNetworks !== undefined) out.edgeNetworks = f.EdgeNetworks;
  return out;
}

/** The network a lease must fit; the subset of NetworkConfig validation needs. */
export interface LeaseNetwork {
  readonly network: IPv4Net | null;
  readonly subnetLen: number;
  readonly ipv6Network: IPv6Net | null;
  readonly ipv6SubnetLen: number;
}

/**
 * Check a lease read from the store before anybody (a backend, the kernel)
 * uses it. Returns a one-line reason, or null when it is fine.
 */
export function validateLease(l: Lease, net: LeaseNetwork): string | null {
  // flannel parses keys without masking: "10.244.42.128-24" would reach the
  // kernel as a neighbour 10.244.42.128 and a route the kernel refuses.
  if (!ipv4NetAligned(l.subnet)) {
    return `subnet ${formatIPv4Net(l.subnet)} has host bits set (a /${l.subnet.prefix} starts at ${formatIPv4((l.subnet.ip & maskOf(l.subnet.prefix)) >>> 0)})`;
  }
  if (l.subnet6 && !ipv6NetAligned(l.subnet6)) return `IPv6 subnet ${formatIPv6Net(l.subnet6)} has host bits set`;
  if (net.network) {
    if (!ipv4NetContains(net.network, l.subnet.ip) || l.subnet.prefix < net.network.prefix) {
      return `subnet ${formatIPv4Net(l.subnet)} is outside Network ${formatIPv4Net(net.network)}`;
    }
    if (l.subnet.prefix !== net.subnetLen) {
      return `subnet ${formatIPv4Net(l.subnet)} has prefix /${l.subnet.prefix}, expected SubnetLen /${net.subnetLen}`;
    }
    const why = unusablePublicIPv4(l.attrs.publicIP);
    if (why) return `PublicIP ${formatIPv4(l.attrs.publicIP)} is ${why}`;
  }
  // A dual-stack peer's lease on a node without IPv6: its IPv4 half is used
  // and the IPv6 half ignored, as real flannel does (its v4 VXLAN network
  // programs the v4 part; there is no v6 device to use the rest).
  if (l.subnet6 && net.ipv6Network) {
    if (!ipv6NetContains(net.ipv6Network, l.subnet6.ip) || l.subnet6.prefix !== net.ipv6SubnetLen) {
      return `IPv6 subnet ${formatIPv6Net(l.subnet6)} is not a /${net.ipv6SubnetLen} inside ${formatIPv6Net(net.ipv6Network)}`;
    }
    if (l.attrs.publicIPv6 !== null) {
      const why6 = unusablePublicIPv6(l.attrs.publicIPv6);
      if (why6) return `PublicIPv6 ${formatIPv6(l.attrs.publicIPv6)} is ${why6}`;
    }
  }
  return null;
}

/** Do two leases claim any address in common (IPv4, or IPv6 when both have it)? */
export function leasesOverlap(a: Pick<Lease, 'subnet' | 'subnet6'>, b: Pick<Lease, 'subnet' | 'subnet6'>): boolean {
  if (ipv4NetsOverlap(a.subnet, b.subnet)) return true;
  return a.subnet6 !== null && b.subnet6 !== null && ipv6NetsOverlap(a.subnet6, b.subnet6);
}

/**
 * Leave out remote leases whose subnet overlaps our own or another kept
 * lease's. Leases in `incumbents` (the ones in use so far) are considered
 * first, so a stray key can never push a working peer out of the kernel.
 * Returns the kept leases in their original order and a reason per lease
 * left out.
 */
export function withoutConflicts(
  remote: readonly Lease[],
  own: Lease | null,
  incumbents: ReadonlySet<string>,
): { kept: Lease[]; dropped: Array<{ lease: Lease; reason: string }> } {
  const ownId = own ? leaseId(own) : null;
  const ids = new Map(remote.map((l) => [l, leaseId(l)]));
  const order = [...remote.filter((l) => incumbents.has(ids.get(l)!)), ...remote.filter((l) => !incumbents.has(ids.get(l)!))];
  const keep = new Set<Lease>();
  const index = new SubnetIndex();
  const dropped: Array<{ lease: Lease; reason: string }> = [];
  for (const l of order) {
    if (own && ids.get(l) !== ownId && leasesOverlap(l, own)) {
      dropped.push({ lease: l, reason: `its subnet overlaps our own lease ${ownId}` });
      continue;
    }
    const other = index.find(l);
    if (other) {
      dropped.push({ lease: l, reason: `its subnet overlaps lease ${leaseId(other)}` });
      continue;
    }
    keep.add(l);
    index.add(l);
  }
  return { kept: remote.filter((l) => keep.has(l)), dropped };
}

/**
 * Leases by subnet, to find an overlapping one without comparing every pair
 * (5000 leases, each watch event). Leases normally share one prefix length,
 * so a lookup is one map access per prefix length present.
 */
export class SubnetIndex {
  private readonly v4 = new Map<number, Map<number, Lease>>();
  private readonly v6 = new Map<number, Map<bigint, Lease>>();

  add(l: Lease): void {
    const m4 = this.v4.get(l.subnet.prefix) ?? new Map<number, Lease>();
    this.v4.set(l.subnet.prefix, m4);
    m4.set((l.subnet.ip & maskOf(l.subnet.prefix)) >>> 0, l);
    if (l.subnet6) {
      const m6 = this.v6.get(l.subnet6.prefix) ?? new Map<bigint, Lease>();
      this.v6.set(l.subnet6.prefix, m6);
      m6.set(l.subnet6.ip & mask6Of(l.subnet6.prefix), l);
    }
  }

  /** Takes out the lease with `l`'s subnets (an indexed lease never overlaps another, so that is at most one). */
  remove(l: Lease): void {
    const m4 = this.v4.get(l.subnet.prefix);
    if (m4?.delete((l.subnet.ip & maskOf(l.subnet.prefix)) >>> 0) && m4.size === 0) this.v4.delete(l.subnet.prefix);
    if (l.subnet6) {
      const m6 = this.v6.get(l.subnet6.prefix);
      if (m6?.delete(l.subnet6.ip & mask6Of(l.subnet6.prefix)) && m6.size === 0) this.v6.delete(l.subnet6.prefix);
    }
  }

  clear(): void {
    this.v4.clear();
    this.v6.clear();
  }

  find(l: Lease): Lease | undefined {
    for (const [prefix, m] of this.v4) {
      // An indexed subnet at least as large as ours: one lookup. A smaller one
      // (a different prefix length, unusual): compare each.
      const hit = prefix <= l.subnet.prefix ? m.get((l.subnet.ip & maskOf(prefix)) >>> 0) : [...m.values()].find((k) => ipv4NetsOverlap(k.subnet, l.subnet));
      if (hit) return hit;
    }
    const s6 = l.subnet6;
    if (!s6) return undefined;
    for (const [prefix, m] of this.v6) {
      const hit = prefix <= s6.prefix ? m.get(s6.ip & mask6Of(prefix)) : [...m.values()].find((k) => k.subnet6 !== null && ipv6NetsOverlap(k.subnet6, s6));
      if (hit) return hit;
    }
    return undefined;
  }
}

export function leaseId(l: { subnet: IPv4Net; subnet6: IPv6Net | null }): string {
  return subnetKey(l.subnet, l.subnet6);
}

export function sameAttrs(a: LeaseAttrs, b: LeaseAttrs): boolean {
  return encodeLeaseAttrs(a) === encodeLeaseAttrs(b);
}

/** Convenience for display: the VtepMAC in a vxlan lease's BackendData, if any. */
export function vtepMac(a: LeaseAttrs): string | null {
  const d = a.backendData;
  if (d && typeof d === 'object' && !Array.isArray(d)) {
    for (const [k, v] of Object.entries(d)) if (k.toLowerCase() === 'vtepmac' && typeof v === 'string') return v;
  }
  return null;
}
