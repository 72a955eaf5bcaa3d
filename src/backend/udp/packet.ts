// Pure packet code of the UDP backend's data path: IPv4 header checks, TTL
// decrement with an incremental checksum update (RFC 1624), Internet
// checksums, the ICMP "net unreachable" flannel synthesises, the route table,
// the per-direction forwarding decisions, and the segmentation (TSO -> one
// packet per datagram) and coalescing (datagrams -> one TSO write) helpers the
// offloaded data path uses. No I/O, no allocation on the per-packet paths.
//
// Everything works on a DataView plus an offset and a length, and never
// touches a byte outside [off, off + len) of the packet it was given (the fuzz
// test enforces this). DataView is used rather than Uint8Array because it is
// as fast for single bytes, reads 16/32-bit big-endian words at any alignment
// in one call (the checksum loop does ~8 GB/s), and throws on out-of-range
// reads instead of returning undefined.
//
// Wire format (spec §6): the UDP payload is the bare inner IPv4 packet, one per
// datagram, exactly as flannel's C proxy sends it.

// ------------------------------------------------------------ verdicts

/** Forward the packet. */
export const OK = 0;
/** Shorter than a minimal IPv4 header. */
export const SHORT = 1;
/** IP version is not 4. */
export const NOT_IPV4 = 2;
/** IHL < 5 or the header does not fit in the packet. */
export const BAD_HEADER_LEN = 3;
/** Total Length smaller than the header or larger than the packet/datagram. */
export const BAD_TOTAL_LEN = 4;
/** TTL would reach 0. */
export const TTL_EXPIRED = 5;
/** No route for the destination (TUN side only). */
export const NO_ROUTE = 6;
/** A segmentation-offload packet we cannot split (TUN side only). */
export const BAD_GSO = 7;

export const VERDICT_NAMES = ['ok', 'short', 'notIPv4', 'badHeaderLen', 'badTotalLen', 'ttlExpired', 'noRoute', 'badGso'] as const;

export const IPV4_MIN_HEADER = 20;
export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;

const TCP_FIN = 0x01;
const TCP_SYN = 0x02;
const TCP_RST = 0x04;
const TCP_PSH = 0x08;
const TCP_ACK = 0x10;
const TCP_URG = 0x20;
const TCP_CWR = 0x80;

// ------------------------------------------------------------ checksums

/** Folds a non-negative sum (< 2^53) of 16-bit words to 16 bits with end-around carry. */
export function fold16(s: number): number {
  // Two steps bring anything below 2^53 under 2^17, two more under 2^16.
  s = (s % 65536) + Math.floor(s / 65536);
  s = (s % 65536) + Math.floor(s / 65536);
  s = (s & 0xffff) + (s >>> 16);
  return (s & 0xffff) + (s >>> 16);
}

/**
 * Ones'-complement sum of `len` bytes as big-endian 16-bit words (a trailing
 * odd byte is padded with zero), folded to 16 bits, not complemented.
 */
export function sum16(dv: DataView, off: number, len: number): number {
  let s = 0;
  let i = off;
  const end16 = off + len - (len % 16);
  // 32-bit words: the sum of two 16-bit halves and of the 32-bit value agree
  // after folding (2^16 ≡ 1 mod 0xffff). 4 words per round; s stays < 2^53.
  for (; i < end16; i += 16) s += dv.getUint32(i) + dv.getUint32(i + 4) + dv.getUint32(i + 8) + dv.getUint32(i + 12);
  const end4 = off + len - (len % 4);
  for (; i < end4; i += 4) s += dv.getUint32(i);
  const end2 = off + len - (len % 2);
  for (; i < end2; i += 2) s += dv.getUint16(i);
  if (i < off + len) s += dv.getUint8(i) << 8;
  return fold16(s);
}

/** Internet checksum (RFC 1071) of a byte range: ~sum16. */
export function internetChecksum(dv: DataView, off: number, len: number): number {
  return ~sum16(dv, off, len) & 0xffff;
}

/** Checksum of an IPv4 header of `hlen` bytes computed with its checksum field taken as zero. */
export function ipv4HeaderChecksum(dv: DataView, off: number, hlen: number): number {
  const s = sum16(dv, off, hlen) + 0xffff - dv.getUint16(off + 10); // subtract the stored field
  return ~fold16(s) & 0xffff;
}

/**
 * RFC 1624 eqn. 3: the new checksum after one 16-bit word of the covered data
 * changes from `oldWord` to `newWord`: HC' = ~(~HC + ~m + m').
 */
export function csumReplace16(check: number, oldWord: number, newWord: number): number {
  return ~fold16((~check & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff)) & 0xffff;
}

/** TCP/UDP pseudo-header sum (not complemented) for IPv4 addresses at `ipOff`. */
function pseudoSum(dv: DataView, ipOff: number, proto: number, l4len: number): number {
  return dv.getUint16(ipOff + 12) + dv.getUint16(ipOff + 14) + dv.getUint16(ipOff + 16) + dv.getUint16(ipOff + 18) + proto + l4len;
}

// ------------------------------------------------------------ IPv4 header

/** Validates the IPv4 header of a packet of `len` bytes; OK or a verdict code. */
export function ipv4Check(dv: DataView, off: number, len: number): number {
  if (len < IPV4_MIN_HEADER) return SHORT;
  const vihl = dv.getUint8(off);
  if (vihl >>> 4 !== 4) return NOT_IPV4;
  const hlen = (vihl & 0x0f) * 4;
  if (hlen < IPV4_MIN_HEADER || hlen > len) return BAD_HEADER_LEN;
  const total = dv.getUint16(off + 2);
  if (total < hlen || total > len) return BAD_TOTAL_LEN;
  return OK;
}

/** Header length in bytes (valid after ipv4Check). */
export function ipv4HeaderLen(dv: DataView, off: number): number {
  return (dv.getUint8(off) & 0x0f) * 4;
}

/** Total Length field. */
export function ipv4TotalLen(dv: DataView, off: number): number {
  return dv.getUint16(off + 2);
}

export function ipv4Dst(dv: DataView, off: number): number {
  return dv.getUint32(off + 16);
}

export function ipv4Src(dv: DataView, off: number): number {
  return dv.getUint32(off + 12);
}

/** True when the fragment offset is non-zero (not the first fragment). */
export function isLaterFragment(dv: DataView, off: number): boolean {
  return (dv.getUint16(off + 6) & 0x1fff) !== 0;
}

/**
 * Decrements the TTL in place and patches the header checksum incrementally.
 * Returns false (and changes nothing) when the TTL would reach 0 — flannel
 * drops such packets; a TTL already 0 is dropped too rather than wrapped.
 */
export function decrementTtl(dv: DataView, off: number): boolean {
  const ttl = dv.getUint8(off + 8);
  if (ttl <= 1) return false;
  const proto = dv.getUint8(off + 9);
  const oldWord = (ttl << 8) | proto;
  dv.setUint8(off + 8, ttl - 1);
  dv.setUint16(off + 10, csumReplace16(dv.getUint16(off + 10), oldWord, oldWord - 0x100));
  return true;
}

// ------------------------------------------------------------ ICMP

export const ICMP_UNREACH_MAX = 20 + 8 + 60 + 8;

/** ICMP request types (echo, timestamp, information, address mask): the only ICMP we answer with an error. */
function isIcmpRequest(pkt: DataView, off: number, hlen: number): boolean {
  if (pkt.getUint16(off + 2) <= hlen) return false;
  const type = pkt.getUint8(off + hlen);
  return type === 8 || type === 13 || type === 15 || type === 17;
}

/**
 * Builds flannel's ICMP Destination Unreachable / Net Unreachable (type 3,
 * code 0) for the offending packet at (pkt, off, len) into `out` at `outOff`
 * (room for ICMP_UNREACH_MAX bytes): IP TTL 8, source `srcIp` (the TUN
 * address), destination the offender's source, payload the offender's IP
 * header plus the first 8 bytes after it (or what there is). Returns the
 * length written, or 0 when no error may be sent: a non-first fragment, a
 * malformed packet, a source an error cannot go to (0.0.0.0, multicast,
 * broadcast), or ICMP other than a request.
 *
 * ⚠ Deviation: flannel's C proxy never answers any ICMP packet. RFC 1122
 * §3.2.2 only forbids errors about ICMP *errors*, so we do answer ICMP
 * requests (echo, timestamp, ...): `ping` to a subnet nobody leases says
 * "Destination Net Unreachable" instead of timing out. ICMP errors, replies
 * and unknown types still get nothing, so no error loops are possible.
 */
export function buildNetUnreachable(pkt: DataView, off: number, len: number, out: DataView, outOff: number, srcIp: number): number {
  if (ipv4Check(pkt, off, len) !== OK) return 0;
  if (isLaterFragment(pkt, off)) return 0;
  const hlen = ipv4HeaderLen(pkt, off);
  if (pkt.getUint8(off + 9) === PROTO_ICMP && !isIcmpRequest(pkt, off, hlen)) return 0;
  const src = pkt.getUint32(off + 12);
  if (src === 0 || src >>> 28 === 0xe || src === 0xffffffff) return 0;
  const quoted = Math.min(hlen + 8, pkt.getUint16(off + 2));
  const total = 20 + 8 + quoted;
  // IP header
  out.setUint8(outOff, 0x45);
  out.setUint8(outOff + 1, 0);
  out.setUint16(outOff + 2, total);
  out.setUint32(outOff + 4, 0); // id 0, no flags, offset 0
  out.setUint8(outOff + 8, 8); // TTL 8, as flannel
  out.setUint8(outOff + 9, PROTO_ICMP);
  out.setUint16(outOff + 10, 0);
  out.setUint32(outOff + 12, srcIp >>> 0);
  out.setUint32(outOff + 16, src);
  out.setUint16(outOff + 10, internetChecksum(out, outOff, 20));
  // ICMP header: type 3 code 0, checksum, 4 unused bytes
  const icmp = outOff + 20;
  out.setUint8(icmp, 3);
  out.setUint8(icmp + 1, 0);
  out.setUint16(icmp + 2, 0);
  out.setUint32(icmp + 4, 0);
  for (let i = 0; i < quoted; i++) out.setUint8(icmp + 8 + i, pkt.getUint8(off + i));
  out.setUint16(icmp + 2, internetChecksum(out, icmp, 8 + quoted));
  return total;
}

// ------------------------------------------------------------ routes

export interface RouteEntry {
  /** network address, uint32 host order */
  readonly net: number;
  readonly prefix: number;
  /** next hop (the peer's public IPv4), uint32 */
  readonly peer: number;
}

/** Flat [net, prefix, peer]* form, cheap to post to a worker. */
export function encodeRoutes(entries: readonly RouteEntry[]): Uint32Array {
  const out = new Uint32Array(entries.length * 3);
  entries.forEach((e, i) => {
    out[i * 3] = e.net >>> 0;
    out[i * 3 + 1] = e.prefix;
    out[i * 3 + 2] = e.peer >>> 0;
  });
  return out;
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/**
 * Longest-prefix match over the remote subnets. Flannel's leases all share
 * one SubnetLen, so in practice this is one Map lookup, preceded by a check
 * of the last hit (a flow's packets come in runs).
 */
export class RouteTable {
  private readonly masks: number[];
  private readonly maps: Map<number, number>[];
  // One-entry cache of the last hit (valid while lastPeer !== 0).
  private lastNet = 0;
  private lastMask = 0;
  private lastPeer = 0;
  readonly size: number;

  constructor(flat: Uint32Array = new Uint32Array(0)) {
    const byPrefix = new Map<number, Map<number, number>>();
    for (let i = 0; i + 2 < flat.length; i += 3) {
      const prefix = flat[i + 1]!;
      if (prefix > 32) continue;
      const mask = maskOf(prefix);
      const peer = flat[i + 2]!;
      if (peer === 0) continue;
      let m = byPrefix.get(prefix);
      if (!m) byPrefix.set(prefix, (m = new Map()));
      m.set((flat[i]! & mask) >>> 0, peer);
    }
    const prefixes = [...byPrefix.keys()].sort((a, b) => b - a);
    this.masks = prefixes.map(maskOf);
    this.maps = prefixes.map((p) => byPrefix.get(p)!);
    this.size = this.maps.reduce((n, m) => n + m.size, 0);
  }

  /** Next hop for `dst`, or 0 when there is no route. */
  lookup(dst: number): number {
    if (this.lastPeer !== 0 && ((dst & this.lastMask) >>> 0) === this.lastNet) return this.lastPeer;
    for (let i = 0; i < this.masks.length; i++) {
      const mask = this.masks[i]!;
      const peer = this.maps[i]!.get((dst & mask) >>> 0);
      if (peer !== undefined) {
        // Only cache a hit from the longest prefix length: a shorter match
        // might hide a longer one for the next destination.
        if (i === 0) {
          this.lastMask = mask;
          this.lastNet = (dst & mask) >>> 0;
          this.lastPeer = peer;
        }
        return peer;
      }
    }
    return 0;
  }
}

// ------------------------------------------------------------ forwarding decisions

/**
 * TUN -> UDP for one plain packet: validate, look up the next hop (stored in
 * `hop.peer`), decrement the TTL. Returns OK or a verdict; on NO_ROUTE the
 * caller may send buildNetUnreachable(). The packet is only modified on OK.
 */
export function tunVerdict(dv: DataView, off: number, len: number, routes: RouteTable, hop: { peer: number }): number {
  const v = ipv4Check(dv, off, len);
  if (v !== OK) return v;
  const peer = routes.lookup(dv.getUint32(off + 16));
  if (peer === 0) return NO_ROUTE;
  if (!decrementTtl(dv, off)) return TTL_EXPIRED;
  hop.peer = peer;
  return OK;
}

/** UDP -> TUN for one datagram of `len` bytes: validate, decrement the TTL. */
export function udpVerdict(dv: DataView, off: number, len: number): number {
  const v = ipv4Check(dv, off, len);
  if (v !== OK) return v;
  if (!decrementTtl(dv, off)) return TTL_EXPIRED;
  return OK;
}

// ------------------------------------------------------------ checksum offload

/**
 * Completes a partial checksum (virtio NEEDS_CSUM: the field at
 * csumStart + csumOffset holds the pseudo-header sum; the rest is to be summed
 * from csumStart to the end). Returns false when the offsets do not fit.
 */
export function completeChecksum(dv: DataView, off: number, len: number, csumStart: number, csumOffset: number): boolean {
  const field = csumStart + csumOffset;
  if (csumStart >= len || field + 2 > len) return false;
  const c = ~sum16(dv, off + csumStart, len - csumStart) & 0xffff;
  dv.setUint16(off + field, c === 0 ? 0xffff : c);
  return true;
}

// ------------------------------------------------------------ TCP segmentation (TUN TSO -> datagrams)

/** Result of parsing a TCP/IPv4 TSO packet; reused to avoid allocation. */
export interface TsoInfo {
  ihl: number;
  /** IP + TCP header bytes, copied in front of every segment */
  hdrLen: number;
  mss: number;
  /** number of segments */
  segs: number;
  /** payload bytes of the last segment */
  lastLen: number;
}

export function newTsoInfo(): TsoInfo {
  return { ihl: 0, hdrLen: 0, mss: 0, segs: 0, lastLen: 0 };
}

/**
 * Checks a TCP/IPv4 super-packet of `len` bytes read from the TUN with
 * gso_size `mss` and fills `info`. The IP Total Length of a TSO packet is
 * trusted only if it matches `len` (the kernel sets it so).
 */
export function parseTso(dv: DataView, off: number, len: number, mss: number, info: TsoInfo): number {
  const v = ipv4Check(dv, off, len);
  if (v !== OK) return v;
  const ihl = ipv4HeaderLen(dv, off);
  if (dv.getUint8(off + 9) !== PROTO_TCP || dv.getUint16(off + 2) !== len) return BAD_GSO;
  if ((dv.getUint16(off + 6) & 0x3fff) !== 0) return BAD_GSO; // MF or offset: not a whole packet
  if (ihl + 20 > len) return BAD_GSO;
  const thl = (dv.getUint8(off + ihl + 12) >>> 4) * 4;
  if (thl < 20 || ihl + thl > len) return BAD_GSO;
  const payload = len - ihl - thl;
  if (mss <= 0 || payload <= 0) return BAD_GSO;
  info.ihl = ihl;
  info.hdrLen = ihl + thl;
  info.mss = mss;
  info.segs = Math.ceil(payload / mss);
  info.lastLen = payload - (info.segs - 1) * mss;
  return OK;
}

/** Offset (from the super-packet's start) and length of segment i's payload. */
export function tsoPayloadOff(info: TsoInfo, i: number): number {
  return info.hdrLen + i * info.mss;
}

export function tsoPayloadLen(info: TsoInfo, i: number): number {
  return i === info.segs - 1 ? info.lastLen : info.mss;
}

/**
 * Writes the IP + TCP header of segment `i` of the TSO packet at (src, off)
 * into (dst, dstOff) and computes both checksums. The segment's payload stays
 * where it is in the super-packet; its sum16 is passed in as `payloadSum`
 * (the caller may have a faster checksum kernel than sum16), or computed here
 * when omitted. The TTL is taken as is (decrement the super-packet's once,
 * before). Like the kernel's tcp_gso_segment: IP ID + i, sequence + i·mss,
 * FIN and PSH only on the last segment, CWR only on the first.
 */
export function writeTsoSegmentHeader(src: DataView, off: number, info: TsoInfo, i: number, dst: DataView, dstOff: number, payloadSum = -1): void {
  const { ihl, hdrLen, mss } = info;
  const last = i === info.segs - 1;
  const segLen = last ? info.lastLen : mss;
  for (let k = 0; k + 4 <= hdrLen; k += 4) dst.setUint32(dstOff + k, src.getUint32(off + k));
  for (let k = hdrLen - (hdrLen % 4); k < hdrLen; k++) dst.setUint8(dstOff + k, src.getUint8(off + k));
  dst.setUint16(dstOff + 2, hdrLen + segLen);
  dst.setUint16(dstOff + 4, (src.getUint16(off + 4) + i) & 0xffff);
  dst.setUint16(dstOff + 10, 0);
  dst.setUint16(dstOff + 10, internetChecksum(dst, dstOff, ihl));
  const t = dstOff + ihl;
  dst.setUint32(t + 4, (src.getUint32(off + ihl + 4) + i * mss) >>> 0);
  let flags = src.getUint8(off + ihl + 13);
  if (!last) flags &= ~(TCP_FIN | TCP_PSH);
  if (i > 0) flags &= ~TCP_CWR;
  dst.setUint8(t + 13, flags);
  dst.setUint16(t + 16, 0);
  const tcpLen = hdrLen - ihl + segLen;
  const ps = payloadSum >= 0 ? payloadSum : sum16(src, off + hdrLen + i * mss, segLen);
  const s = pseudoSum(dst, dstOff, PROTO_TCP, tcpLen) + sum16(dst, t, hdrLen - ihl) + ps;
  dst.setUint16(t + 16, ~fold16(s) & 0xffff);
}

// ------------------------------------------------------------ TCP coalescing (datagrams -> TUN TSO write)

/**
 * Userspace GRO for the UDP -> TUN direction. Consecutive TCP segments of one
 * flow (same addresses, ports, ACK, window, options, contiguous sequence
 * numbers, equal-size payloads but for a shorter last one) are merged into a
 * single TSO packet written with a virtio-net header, so the kernel's TCP
 * receive path handles one large skb instead of dozens. Everything works on
 * offsets into one DataView (the receive arena): payloads are not copied, the
 * caller writes [header from writeHeader(), payload 0, payload 1, ...] with
 * writev().
 */
export class TcpCoalescer {
  /** packets in the current group (0 = none) */
  count = 0;
  /** offset and length of each member's packet, and its header length */
  readonly offs: Int32Array;
  readonly lens: Int32Array;
  private hdrLen = 0;
  private ihl = 0;
  private mss = 0;
  private payload = 0;
  private nextSeq = 0;
  private closed = false;
  private psh = false;

  constructor(
    private readonly dv: DataView,
    readonly max = 64,
  ) {
    this.offs = new Int32Array(max);
    this.lens = new Int32Array(max);
  }

  /**
   * Can this (already validated, TTL-decremented) packet start a group? TCP,
   * no IP options, not a fragment, ACK with optional PSH only, payload > 0.
   */
  static eligible(dv: DataView, off: number, len: number): boolean {
    if (len < 40 || dv.getUint8(off) !== 0x45 || dv.getUint8(off + 9) !== PROTO_TCP) return false;
    if ((dv.getUint16(off + 6) & 0x3fff) !== 0) return false;
    const total = dv.getUint16(off + 2);
    if (total > len) return false;
    const thl = (dv.getUint8(off + 32) >>> 4) * 4;
    if (thl < 20 || 20 + thl >= total) return false;
    const flags = dv.getUint8(off + 33);
    return (flags & ~TCP_PSH) === TCP_ACK;
  }

  /**
   * Does the TCP checksum of an eligible packet verify? `l4sum` is sum16 of
   * its TCP header and payload (from byte 20 to Total Length). Only verified
   * segments are merged, as the kernel's own GRO does: merging drops the
   * per-segment checksums, so a corrupt segment must instead be written
   * alone, for the kernel to reject.
   */
  static checksumOk(dv: DataView, off: number, l4sum: number): boolean {
    const tcpLen = dv.getUint16(off + 2) - 20;
    return fold16(pseudoSum(dv, off, PROTO_TCP, tcpLen) + l4sum) === 0xffff;
  }

  reset(): void {
    this.count = 0;
  }

  /** Starts a group with an eligible packet. */
  start(off: number): void {
    const dv = this.dv;
    const total = dv.getUint16(off + 2);
    const thl = (dv.getUint8(off + 32) >>> 4) * 4;
    this.ihl = 20;
    this.hdrLen = 20 + thl;
    this.mss = total - this.hdrLen;
    this.payload = this.mss;
    this.nextSeq = (dv.getUint32(off + 24) + this.mss) >>> 0;
    this.psh = (dv.getUint8(off + 33) & TCP_PSH) !== 0;
    this.closed = this.psh; // PSH ends a group
    this.offs[0] = off;
    this.lens[0] = total;
    this.count = 1;
  }

  /** Adds an eligible packet if it continues the group; false = flush first. */
  append(off: number): boolean {
    if (this.count === 0 || this.closed || this.count >= this.max) return false;
    const dv = this.dv;
    const first = this.offs[0]!;
    const total = dv.getUint16(off + 2);
    const seg = total - this.hdrLen;
    if (seg <= 0 || seg > this.mss) return false;
    if (this.hdrLen + this.payload + seg > 65535) return false;
    // Same header length, TOS, DF, TTL, protocol, addresses.
    if (dv.getUint8(off + 32) !== dv.getUint8(first + 32)) return false;
    if (dv.getUint8(off + 1) !== dv.getUint8(first + 1)) return false;
    if (dv.getUint16(off + 6) !== dv.getUint16(first + 6)) return false;
    if (dv.getUint16(off + 8) !== dv.getUint16(first + 8)) return false;
    if (dv.getUint32(off + 12) !== dv.getUint32(first + 12) || dv.getUint32(off + 16) !== dv.getUint32(first + 16)) return false;
    // Ports, contiguous sequence, same ACK number, window, urgent pointer.
    if (dv.getUint32(off + 20) !== dv.getUint32(first + 20)) return false;
    if (dv.getUint32(off + 24) !== this.nextSeq) return false;
    if (dv.getUint32(off + 28) !== dv.getUint32(first + 28)) return false;
    if (dv.getUint16(off + 34) !== dv.getUint16(first + 34)) return false;
    if (dv.getUint16(off + 38) !== dv.getUint16(first + 38)) return false;
    // Identical options (timestamps of one TSO burst are equal).
    for (let k = 40; k < this.hdrLen; k += 4) {
      if (dv.getUint32(off + k) !== dv.getUint32(first + k)) return false;
    }
    const flags = dv.getUint8(off + 33);
    this.offs[this.count] = off;
    this.lens[this.count] = total;
    this.count++;
    this.payload += seg;
    this.nextSeq = (this.nextSeq + seg) >>> 0;
    if (flags & TCP_PSH) this.psh = true;
    // A short segment or PSH must be the last one.
    if (seg < this.mss || this.psh) this.closed = true;
    return true;
  }

  /** Header bytes of the merged packet (virtio-net header + IP + TCP). */
  get headerLen(): number {
    return 10 + this.hdrLen;
  }

  /** Offset and length of member i's payload in the arena. */
  payloadOff(i: number): number {
    return this.offs[i]! + this.hdrLen;
  }

  payloadLen(i: number): number {
    return this.lens[i]! - this.hdrLen;
  }

  /**
   * Writes the virtio-net header and the merged IP/TCP header to (out, at):
   * GSO TCPv4 with gso_size = the first segment's payload, IP Total Length
   * and checksum for the whole, PSH if any member had it, and the TCP
   * checksum field set to the pseudo-header sum (NEEDS_CSUM: the kernel
   * treats the payload as checksummed, as for any locally built TSO packet;
   * the outer UDP checksum covered each datagram). Returns the bytes written.
   */
  writeHeader(out: DataView, at: number): number {
    const dv = this.dv;
    const first = this.offs[0]!;
    const total = this.hdrLen + this.payload;
    // virtio_net_hdr (little-endian)
    out.setUint8(at, 1); // NEEDS_CSUM
    out.setUint8(at + 1, 1); // GSO_TCPV4
    out.setUint16(at + 2, this.hdrLen, true);
    out.setUint16(at + 4, this.mss, true);
    out.setUint16(at + 6, this.ihl, true);
    out.setUint16(at + 8, 16, true);
    const h = at + 10;
    for (let k = 0; k < this.hdrLen; k += 4) out.setUint32(h + k, dv.getUint32(first + k));
    out.setUint16(h + 2, total);
    out.setUint16(h + 10, 0);
    out.setUint16(h + 10, internetChecksum(out, h, 20));
    if (this.psh) out.setUint8(h + 33, out.getUint8(h + 33) | TCP_PSH);
    out.setUint16(h + 36, fold16(pseudoSum(out, h, PROTO_TCP, total - this.ihl)));
    return 10 + this.hdrLen;
  }
}

// Flags referenced only for documentation/tests.
export const TCP_FLAGS = { FIN: TCP_FIN, SYN: TCP_SYN, RST: TCP_RST, PSH: TCP_PSH, ACK: TCP_ACK, URG: TCP_URG, CWR: TCP_CWR } as const;
