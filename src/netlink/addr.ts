// Address text <-> bytes. Decoded objects carry IPv4 as dotted quads, IPv6 in
// RFC 5952 form and MACs as lower-case colon hex; encoders accept exactly
// those forms and reject anything else with a TypeError (a caller bug, not a
// kernel condition).

import { isIPv6 as isIP6 } from 'node:net';
import { parseQuad } from '../lease/ip.js';

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

export function isIPv4(text: string): boolean {
  return parseQuad(text) >= 0;
}

/** Dotted quad -> 4 bytes in network order. */
export function ipv4ToBytes(text: string): Buffer {
  const v = parseQuad(text);
  if (v < 0) throw new TypeError(`not an IPv4 address: ${JSON.stringify(text)}`);
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(v, 0);
  return b;
}

/** IPv6 text (any form node:net accepts, no zone) -> 16 bytes in network order. */
export function ipv6ToBytes(text: string): Buffer {
  if (typeof text !== 'string' || !isIP6(text) || text.includes('%')) throw new TypeError(`not an IPv6 address: ${JSON.stringify(text)}`);
  let str = text;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(str);
  if (v4) {
    const b = ipv4ToBytes(v4[1]!);
    str = `${str.slice(0, -v4[1]!.length)}${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = str.includes('::') ? str.split('::') : [str, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** An IPv4 or IPv6 address as bytes (4 or 16), chosen by its text. */
export function ipToBytes(text: string): Buffer {
  return isIPv4(text) ? ipv4ToBytes(text) : ipv6ToBytes(text);
}

/** true for IPv6 text (the family an address-carrying request must use). */
export function isIPv6(text: string): boolean {
  return typeof text === 'string' && isIP6(text) && !text.includes('%');
}

export function formatIPv4(bytes: Uint8Array): string {
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

export function formatIPv6(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  // IPv4-mapped ::ffff:a.b.c.d is conventionally shown with a dotted tail.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${formatIPv4(bytes.subarray(12, 16))}`;
  }
  // Longest run (>= 2) of zero groups becomes '::' (first one on ties).
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  const head = hex.slice(0, bestStart).join(':');
  const tail = hex.slice(bestStart + bestLen).join(':');
  return `${head}::${tail}`;
}

/** 4 bytes -> IPv4 text, 16 bytes -> IPv6 text; anything else is undefined. */
export function formatIP(bytes: Uint8Array): string | undefined {
  if (bytes.length === 4) return formatIPv4(bytes);
  if (bytes.length === 16) return formatIPv6(bytes);
  return undefined;
}

export function isMac(text: string): boolean {
  return MAC_RE.test(text);
}

export function macToBytes(text: string): Buffer {
  if (!isMac(text)) throw new TypeError(`not a MAC address: ${JSON.stringify(text)}`);
  return Buffer.from(text.replaceAll(':', ''), 'hex');
}

/** Any length of link-layer address (6 for Ethernet) as lower-case colon hex. */
export function formatMac(bytes: Uint8Array): string {
  const parts: string[] = [];
  for (const b of bytes) parts.push(b.toString(16).padStart(2, '0'));
  return parts.join(':');
}

export interface Cidr {
  ip: string;
  prefixLen: number;
}

/** 'a.b.c.d/n' or 'v6addr/n' (host bits allowed, as `ip addr add` allows them). */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  if (slash < 0) throw new TypeError(`not a CIDR (missing /len): ${JSON.stringify(text)}`);
  const ip = text.slice(0, slash);
  const lenText = text.slice(slash + 1);
  const v4 = isIPv4(ip);
  if (!v4 && isIPv6(ip) && /^\d{1,3}$/.test(lenText) && Number(lenText) <= 128) return { ip, prefixLen: Number(lenText) };
  if (!v4 || !/^\d{1,2}$/.test(lenText) || Number(lenText) > 32) {
    throw new TypeError(`not an IPv4 or IPv6 CIDR: ${JSON.stringify(text)}`);
  }
  return { ip, prefixLen: Number(lenText) };
}

/** Zero the host bits: ('10.244.2.7', 24) -> '10.244.2.0'. */
export function networkAddress(ip: string, prefixLen: number): string {
  const b = ipv4ToBytes(ip);
  const value = b.readUInt32BE(0);
  const mask = prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
  const out = Buffer.alloc(4);
  out.writeUInt32BE((value & mask) >>> 0, 0);
  return formatIPv4(out);
}
