// IPv4/IPv6 address and prefix helpers. Pure, no I/O.
//
// IPv4 addresses travel as unsigned 32-bit numbers internally and as dotted
// strings at the edges; IPv6 addresses as bigint internally and as Go's
// canonical compressed form at the edges (flannel prints IPv6 with Go's
// net.IP.String(), and keys/subnet.env must match it byte for byte).

import { isIPv6 } from 'node:net';
import { FlannelError } from '../errors.js';
import { flat } from '../strings.js';

export class AddrError extends FlannelError {
  static override readonly defaultCode: string = 'ADDR_INVALID';
  override name = 'AddrError';
}

/**
 * A dotted quad (four decimal parts 0..255, no leading zeros: what
 * node:net's isIPv4 accepts) as a uint32, or -1. One pass over the
 * characters, no regex: a burst of thousands of leases parses every address
 * several times (issue 11).
 */
export function parseQuad(text: string): number {
  if (typeof text !== 'string' || text.length < 7 || text.length > 15) return -1;
  let value = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46; // a final '.' closes the last part
    if (c === 46) {
      if (digits === 0 || part > 255 || ++parts > 4) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && part === 0) return -1; // a leading zero
      if (++digits > 3) return -1;
      part = part * 10 + (c - 48);
    } else return -1;
  }
  return parts === 4 ? value : -1;
}

export function parseIPv4(s: string): number {
  const v = parseQuad(s);
  if (v < 0) throw new AddrError(`invalid IPv4 address "${s}"`);
  return v;
}

export function formatIPv4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export interface IPv4Net {
  /** network address (masked) */
  readonly ip: number;
  readonly prefix: number;
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parse "a.b.c.d/len" and mask to the network address, as Go's ParseCIDR does. */
export function parseIPv4Net(s: string): IPv4Net {
  if (typeof s !== 'string') throw new AddrError(`invalid IPv4 CIDR "${String(s)}"`);
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s);
  if (!m) throw new AddrError(`invalid IPv4 CIDR "${s}"`);
  const prefix = Number(m[2]);
  if (prefix > 32) throw new AddrError(`invalid IPv4 CIDR "${s}": prefix length ${prefix} > 32`);
  const ip = parseIPv4(m[1]!);
  return { ip: (ip & maskOf(prefix)) >>> 0, prefix };
}

export function formatIPv4Net(n: IPv4Net): string {
  return flat(`${formatIPv4(n.ip)}/${n.prefix}`);
}

export function ipv4NetSize(prefix: number): number {
  return 2 ** (32 - prefix);
}

export function ipv4NetContains(net: IPv4Net, ip: number): boolean {
  return ((ip & maskOf(net.prefix)) >>> 0) === net.ip;
}

export function ipv4NetsOverlap(a: IPv4Net, b: IPv4Net): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return ((a.ip & maskOf(p)) >>> 0) === ((b.ip & maskOf(p)) >>> 0);
}

/** true when ip is the network address of its prefix (no host bits set) */
export function ipv4NetAligned(n: IPv4Net): boolean {
  return ((n.ip & ~maskOf(n.prefix)) >>> 0) === 0;
}

export function ipv4NetEqual(a: IPv4Net, b: IPv4Net): boolean {
  return a.ip === b.ip && a.prefix === b.prefix;
}

/** Addresses a peer must never advertise as its public (tunnel endpoint) IP. */
export function unusablePublicIPv4(ip: number): string | null {
  if (ip === 0) return 'unspecified';
  if (ip >>> 24 === 127) return 'loopback';
  if (ip >>> 28 === 0xe) return 'multicast';
  if (ip === 0xffffffff) return 'broadcast';
  return null;
}

// ---------------------------------------------------------------- IPv6

export interface IPv6Net {
  readonly ip: bigint;
  readonly prefix: number;
}

const ALL128 = (1n << 128n) - 1n;

export function parseIPv6(s: string): bigint {
  if (typeof s !== 'string' || !isIPv6(s) || s.includes('%')) throw new AddrError(`invalid IPv6 address "${s}"`);
  let str = s;
  // Embedded IPv4 tail (::ffff:1.2.3.4)
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(str);
  if (v4) {
    const n = parseIPv4(v4[1]!);
    str = str.slice(0, -v4[1]!.length) + `${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const [head, tail] = str.includes('::') ? str.split('::') : [str, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(parseInt(g, 16));
  return v;
}

/** Go's net.IP.String() for IPv6: RFC 5952 compression (longest zero run ≥ 2, first on tie). */
export function formatIPv6(v: bigint): string {
  const g: number[] = [];
  for (let i = 7; i >= 0; i--) g.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestLen < 2) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export function mask6Of(prefix: number): bigint {
  return prefix === 0 ? 0n : (ALL128 << BigInt(128 - prefix)) & ALL128;
}

export function parseIPv6Net(s: string): IPv6Net {
  if (typeof s !== 'string') throw new AddrError(`invalid IPv6 CIDR "${String(s)}"`);
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (!m) throw new AddrError(`invalid IPv6 CIDR "${s}"`);
  const prefix = Number(m[2]);
  if (prefix > 128) throw new AddrError(`invalid IPv6 CIDR "${s}": prefix length ${prefix} > 128`);
  const ip = parseIPv6(m[1]!);
  return { ip: ip & mask6Of(prefix), prefix };
}

export function formatIPv6Net(n: IPv6Net): string {
  return `${formatIPv6(n.ip)}/${n.prefix}`;
}

export function ipv6NetContains(net: IPv6Net, ip: bigint): boolean {
  return (ip & mask6Of(net.prefix)) === net.ip;
}

export function ipv6NetsOverlap(a: IPv6Net, b: IPv6Net): boolean {
  const m = mask6Of(Math.min(a.prefix, b.prefix));
  return (a.ip & m) === (b.ip & m);
}

export function ipv6NetAligned(n: IPv6Net): boolean {
  return (n.ip & ~mask6Of(n.prefix) & ALL128) === 0n;
}

export function unusablePublicIPv6(ip: bigint): string | null {
  if (ip === 0n) return 'unspecified';
  if (ip === 1n) return 'loopback';
  if (ip >> 120n === 0xffn) return 'multicast';
  return null;
}
