// The lease domain model: subnet keys, lease JSON (byte-compatible with
// flannel's Go json.Marshal of LeaseAttrs) and validation of leases read from
// the store. Pure, no I/O. Spec §3.3, §3.4.

import {
  AddrError,
  formatIPv4,
  formatIPv4Net,
  formatIPv6,
  formatIPv6Net,
  ipv4NetContains,
  ipv6NetContains,
  parseIPv4,
  parseIPv6,
  unusablePublicIPv4,
  unusablePublicIPv6,
  type IPv4Net,
  type IPv6Net,
} from './ip.js';
import { foldKeys, parseJsonObject } from './json.js';

export class LeaseDataError extends Error {
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
  return subnet6 ? `${v4}&${formatIPv6(subnet6.ip)}-${subnet6.prefix}` : v4;
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
 * BackendV6Data only when non-empty.
 */
export function encodeLeaseAttrs(a: LeaseAttrs): string {
  let s = `{"PublicIP":${JSON.stringify(formatIPv4(a.publicIP))},"PublicIPv6":${a.publicIPv6 === null ? 'null' : JSON.stringify(formatIPv6(a.publicIPv6))}`;
  if (a.backendType !== '') s += `,"BackendType":${JSON.stringify(a.backendType)}`;
  if (a.backendData !== undefined) s += `,"BackendData":${JSON.stringify(a.backendData)}`;
  if (a.backendV6Data !== undefined) s += `,"BackendV6Data":${JSON.stringify(a.backendV6Data)}`;
  return s + '}';
}

const ATTR_FIELDS = ['PublicIP', 'PublicIPv6', 'BackendType', 'BackendData', 'BackendV6Data'] as const;

/** Decode lease JSON written by anyone (Go decodes keys case-insensitively). */
export function decodeLeaseAttrs(text: string): LeaseAttrs {
  const doc = parseJsonObject(text, 'lease value', (m) => new LeaseDataError(m));
  const f = foldKeys(doc, ATTR_FIELDS);
  let publicIP = 0;
  if (f.PublicIP !== undefined && f.PublicIP !== null) {
    if (typeof f.PublicIP !== 'string') throw new LeaseDataError(`PublicIP: expected a string, got ${JSON.stringify(f.PublicIP)}`);
    try {
      publicIP = parseIPv4(f.PublicIP);
    } catch (e) {
      throw new LeaseDataError(`PublicIP: "${f.PublicIP}" is not an IPv4 address`);
    }
  }
  let publicIPv6: bigint | null = null;
  if (f.PublicIPv6 !== undefined && f.PublicIPv6 !== null) {
    if (typeof f.PublicIPv6 !== 'string') throw new LeaseDataError(`PublicIPv6: expected a string or null, got ${JSON.stringify(f.PublicIPv6)}`);
    try {
      publicIPv6 = parseIPv6(f.PublicIPv6);
    } catch (e) {
      if (!(e instanceof AddrError)) throw e;
      throw new LeaseDataError(`PublicIPv6: "${f.PublicIPv6}" is not an IPv6 address`);
    }
  }
  let backendType = '';
  if (f.BackendType !== undefined && f.BackendType !== null) {
    if (typeof f.BackendType !== 'string') throw new LeaseDataError(`BackendType: expected a string, got ${JSON.stringify(f.BackendType)}`);
    backendType = f.BackendType;
  }
  const out: { -readonly [K in keyof LeaseAttrs]: LeaseAttrs[K] } = { publicIP, publicIPv6, backendType };
  if (f.BackendData !== undefined) out.backendData = f.BackendData;
  if (f.BackendV6Data !== undefined) out.backendV6Data = f.BackendV6Data;
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
  if (l.subnet6) {
    if (!net.ipv6Network) return `lease has IPv6 subnet ${formatIPv6Net(l.subnet6)} but IPv6 is not enabled`;
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
