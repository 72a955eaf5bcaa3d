// Netlink framing: nlmsghdr, rtattr/nlattr TLVs, multipart buffers and the
// NLMSG_ERROR / NLMSG_DONE control payloads. Pure functions over Buffers; no
// I/O. All multi-byte netlink header fields are host byte order, which on
// every platform this project runs on (x86_64, arm64) is little-endian.

import {
  NLA_F_NESTED,
  NLA_F_NET_BYTEORDER,
  NLA_HDRLEN,
  NLA_TYPE_MASK,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_HDRLEN,
  NLMSGERR_ATTR_MISS_TYPE,
  NLMSGERR_ATTR_MSG,
  NLMSGERR_ATTR_OFFS,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  msgTypeName,
} from './constants.js';
import { NetlinkDecodeError } from './errors.js';
import { formatIP, formatMac, ipToBytes, ipv4ToBytes, macToBytes } from './addr.js';

export const nlmsgAlign = (len: number): number => (len + 3) & ~3;

/**
 * A zero-filled buffer for a request field. Small ones come from Node's
 * shared pool (allocUnsafe, then zeroed): Buffer.alloc gives each its own
 * ArrayBuffer, and a 5000-peer burst builds ~75000 of them (issue 11).
 */
export function zeroed(n: number): Buffer {
  return Buffer.allocUnsafe(n).fill(0);
}
export const rtaAlign = nlmsgAlign;

export interface NlMsgHdr {
  /** Total length including this 16-byte header, without trailing padding. */
  len: number;
  type: number;
  flags: number;
  seq: number;
  pid: number;
}

export interface NlMessage {
  header: NlMsgHdr;
  /** Bytes after the header, `header.len - 16` long. */
  payload: Buffer;
}

export function encodeNlMsgHdr(h: NlMsgHdr): Buffer {
  const b = zeroed(NLMSG_HDRLEN);
  b.writeUInt32LE(h.len >>> 0, 0);
  b.writeUInt16LE(h.type, 4);
  b.writeUInt16LE(h.flags, 6);
  b.writeUInt32LE(h.seq >>> 0, 8);
  b.writeUInt32LE(h.pid >>> 0, 12);
  return b;
}

/** Reads the 16-byte header at `offset` (TRUNCATED_HEADER if fewer bytes remain). */
export function decodeNlMsgHdr(buf: Buffer, offset = 0): NlMsgHdr {
  if (buf.length - offset < NLMSG_HDRLEN) {
    throw new NetlinkDecodeError(
      'TRUNCATED_HEADER',
      'nlmsghdr',
      offset,
      `need ${NLMSG_HDRLEN} bytes, have ${buf.length - offset}`,
    );
  }
  return {
    len: buf.readUInt32LE(offset),
    type: buf.readUInt16LE(offset + 4),
    flags: buf.readUInt16LE(offset + 6),
    seq: buf.readUInt32LE(offset + 8),
    pid: buf.readUInt32LE(offset + 12),
  };
}

/**
 * One complete message: header + fixed body + attributes, with `len` computed.
 * Parts are expected to be already padded (attributes from encodeAttr are),
 * so len covers the padding exactly as iproute2 does.
 */
export function encodeMessage(
  type: number,
  flags: number,
  seq: number,
  pid: number,
  parts: readonly Buffer[],
): Buffer {
  const body = Buffer.concat(parts as Buffer[]);
  const hdr = encodeNlMsgHdr({ len: NLMSG_HDRLEN + body.length, type, flags, seq, pid });
  return Buffer.concat([hdr, body]);
}

/**
 * Splits a datagram (or any concatenation of messages) into messages.
 * Strict: a short header, a length < 16 or a length running past the end is a
 * NetlinkDecodeError, so a corrupt buffer can neither loop nor over-read.
 * Up to 3 bytes of alignment padding after the last message are tolerated.
 */
export function parseMessages(buf: Buffer): NlMessage[] {
  const out: NlMessage[] = [];
  let off = 0;
  while (off < buf.length) {
    const remaining = buf.length - off;
    if (remaining < NLMSG_HDRLEN) {
      if (remaining < 4 && buf.subarray(off).every((b) => b === 0)) break;
      throw new NetlinkDecodeError(
        'TRUNCATED_HEADER',
        'nlmsghdr',
        off,
        `${remaining} trailing bytes cannot hold a ${NLMSG_HDRLEN}-byte header`,
      );
    }
    const header = decodeNlMsgHdr(buf, off);
    if (header.len < NLMSG_HDRLEN) {
      throw new NetlinkDecodeError(
        'BAD_MESSAGE_LENGTH',
        `nlmsghdr (${msgTypeName(header.type)})`,
        off,
        `nlmsg_len ${header.len} is smaller than the header`,
      );
    }
    if (header.len > remaining) {
      throw new NetlinkDecodeError(
        'TRUNCATED_MESSAGE',
        `message ${msgTypeName(header.type)} seq ${header.seq}`,
        off,
        `nlmsg_len ${header.len} but only ${remaining} bytes left`,
      );
    }
    out.push({ header, payload: buf.subarray(off + NLMSG_HDRLEN, off + header.len) });
    off += nlmsgAlign(header.len);
  }
  return out;
}

// ---------------------------------------------------------------- attributes

export interface Attr {
  /** Type with NLA_F_NESTED / NLA_F_NET_BYTEORDER masked off. */
  type: number;
  nested: boolean;
  netByteOrder: boolean;
  /** Value bytes (rta_len - 4), without padding. */
  value: Buffer;
}

const EMPTY = new Uint8Array(0);

/** One TLV, padded to 4 bytes; rta_len itself excludes the padding. */
export function encodeAttr(type: number, value: Uint8Array = EMPTY): Buffer {
  const len = NLA_HDRLEN + value.length;
  if (len > 0xffff) throw new RangeError(`attribute ${type} too long (${len} bytes)`);
  const b = zeroed(rtaAlign(len));
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  b.set(value, NLA_HDRLEN);
  return b;
}

/** Attribute value builders; each returns a padded TLV. */
export const attr = {
  u8(type: number, v: number): Buffer {
    return encodeAttr(type, Buffer.of(v & 0xff));
  },
  u16(type: number, v: number): Buffer {
    const b = zeroed(2);
    b.writeUInt16LE(v, 0);
    return encodeAttr(type, b);
  },
  /** u16 in network byte order (e.g. IFLA_VXLAN_PORT). */
  be16(type: number, v: number): Buffer {
    const b = zeroed(2);
    b.writeUInt16BE(v, 0);
    return encodeAttr(type, b);
  },
  u32(type: number, v: number): Buffer {
    const b = zeroed(4);
    b.writeUInt32LE(v >>> 0, 0);
    return encodeAttr(type, b);
  },
  i32(type: number, v: number): Buffer {
    const b = zeroed(4);
    b.writeInt32LE(v, 0);
    return encodeAttr(type, b);
  },
  /** NUL-terminated string (IFLA_IFNAME, IFLA_INFO_KIND). */
  string(type: number, s: string): Buffer {
    return encodeAttr(type, Buffer.concat([Buffer.from(s, 'utf8'), Buffer.of(0)]));
  },
  /** Unterminated string, as iproute2 sends IFLA_INFO_KIND. */
  stringNoNul(type: number, s: string): Buffer {
    return encodeAttr(type, Buffer.from(s, 'utf8'));
  },
  bytes(type: number, v: Uint8Array): Buffer {
    return encodeAttr(type, v);
  },
  /** NLA_FLAG: presence is the value. */
  flag(type: number): Buffer {
    return encodeAttr(type);
  },
  ipv4(type: number, ip: string): Buffer {
    return encodeAttr(type, ipv4ToBytes(ip));
  },
  /** IPv4 (4 bytes) or IPv6 (16 bytes), by the address text. */
  ip(type: number, ip: string): Buffer {
    return encodeAttr(type, ipToBytes(ip));
  },
  mac(type: number, mac: string): Buffer {
    return encodeAttr(type, macToBytes(mac));
  },
  /**
   * A container. `flagNested` sets NLA_F_NESTED; rtnetlink's own containers
   * (IFLA_LINKINFO, IFLA_INFO_DATA) are sent without it, like iproute2 does.
   */
  nested(type: number, children: readonly Buffer[], flagNested = false): Buffer {
    return encodeAttr(flagNested ? type | NLA_F_NESTED : type, Buffer.concat(children as Buffer[]));
  },
};

/**
 * Parses a run of TLVs. `what` names the container for error messages.
 * Trailing bytes shorter than a TLV header are rejected unless they are the
 * alignment padding of the previous attribute.
 */
export function parseAttrs(buf: Buffer, what = 'attributes'): Attr[] {
  const out: Attr[] = [];
  let off = 0;
  while (off < buf.length) {
    const remaining = buf.length - off;
    if (remaining < NLA_HDRLEN) {
      throw new NetlinkDecodeError(
        'TRUNCATED_ATTRIBUTE',
        what,
        off,
        `${remaining} trailing bytes cannot hold an attribute header`,
      );
    }
    const len = buf.readUInt16LE(off);
    const rawType = buf.readUInt16LE(off + 2);
    if (len < NLA_HDRLEN) {
      throw new NetlinkDecodeError(
        'BAD_ATTRIBUTE_LENGTH',
        `${what} type ${rawType & NLA_TYPE_MASK}`,
        off,
        `rta_len ${len} is smaller than the attribute header`,
      );
    }
    if (len > remaining) {
      throw new NetlinkDecodeError(
        'TRUNCATED_ATTRIBUTE',
        `${what} type ${rawType & NLA_TYPE_MASK}`,
        off,
        `rta_len ${len} but only ${remaining} bytes left`,
      );
    }
    out.push({
      type: rawType & NLA_TYPE_MASK,
      nested: (rawType & NLA_F_NESTED) !== 0,
      netByteOrder: (rawType & NLA_F_NET_BYTEORDER) !== 0,
      value: buf.subarray(off + NLA_HDRLEN, off + len),
    });
    off += rtaAlign(len);
  }
  return out;
}

/**
 * Attributes indexed by type (last occurrence wins, as in the kernel's
 * nla_parse) with length-checked readers. Readers return undefined when the
 * attribute is absent and throw NetlinkDecodeError when it is present but has
 * the wrong size, so a malformed reply cannot become a silently wrong value.
 */
export class AttrSet {
  private readonly byType = new Map<number, Attr>();

  constructor(
    readonly list: readonly Attr[],
    /** Maps type numbers to names for error messages. */
    private readonly names: (type: number) => string = (t) => `attribute ${t}`,
  ) {
    for (const a of list) this.byType.set(a.type, a);
  }

  static parse(buf: Buffer, what: string, names?: (type: number) => string): AttrSet {
    return new AttrSet(parseAttrs(buf, what), names);
  }

  has(type: number): boolean {
    return this.byType.has(type);
  }

  raw(type: number): Buffer | undefined {
    return this.byType.get(type)?.value;
  }

  private sized(type: number, size: number, exact: boolean): Buffer | undefined {
    const v = this.byType.get(type)?.value;
    if (v === undefined) return undefined;
    if (exact ? v.length !== size : v.length < size) {
      throw new NetlinkDecodeError(
        'BAD_VALUE_LENGTH',
        this.names(type),
        0,
        `expected ${exact ? '' : 'at least '}${size} bytes, got ${v.length}`,
      );
    }
    return v;
  }

  u8(type: number): number | undefined {
    return this.sized(type, 1, false)?.readUInt8(0);
  }
  u16(type: number): number | undefined {
    return this.sized(type, 2, false)?.readUInt16LE(0);
  }
  be16(type: number): number | undefined {
    return this.sized(type, 2, false)?.readUInt16BE(0);
  }
  u32(type: number): number | undefined {
    return this.sized(type, 4, false)?.readUInt32LE(0);
  }
  i32(type: number): number | undefined {
    return this.sized(type, 4, false)?.readInt32LE(0);
  }
  flag(type: number): boolean {
    return this.byType.has(type);
  }
  /** String up to the first NUL (or the whole value if unterminated). */
  string(type: number): string | undefined {
    const v = this.byType.get(type)?.value;
    if (v === undefined) return undefined;
    const nul = v.indexOf(0);
    return v.toString('utf8', 0, nul < 0 ? v.length : nul);
  }
  /** 4 bytes -> IPv4 text, 16 -> IPv6 text, otherwise a decode error. */
  ip(type: number): string | undefined {
    const v = this.byType.get(type)?.value;
    if (v === undefined) return undefined;
    const text = formatIP(v);
    if (text === undefined) {
      throw new NetlinkDecodeError(
        'BAD_VALUE_LENGTH',
        this.names(type),
        0,
        `an IP address must be 4 or 16 bytes, got ${v.length}`,
      );
    }
    return text;
  }
  mac(type: number): string | undefined {
    const v = this.byType.get(type)?.value;
    return v === undefined ? undefined : formatMac(v);
  }
  nested(type: number, names?: (type: number) => string): AttrSet | undefined {
    const v = this.byType.get(type)?.value;
    return v === undefined ? undefined : AttrSet.parse(v, this.names(type), names);
  }
}

// ------------------------------------------------------ control messages

export interface NlMsgErr {
  /** 0 for an ACK, otherwise the positive errno. */
  errno: number;
  /** Header of the request this answers (seq identifies it). */
  request: NlMsgHdr;
  /** NLMSGERR_ATTR_MSG: the kernel's human-readable reason. */
  extAck?: string;
  /** NLMSGERR_ATTR_OFFS: offset in the request of the offending attribute. */
  extAckOffset?: number;
  /** NLMSGERR_ATTR_MISS_TYPE: the attribute the kernel wanted but did not get. */
  missingType?: number;
}

function decodeAckTlvs(tlvs: Buffer, into: { extAck?: string; extAckOffset?: number; missingType?: number }): void {
  const set = AttrSet.parse(tlvs, 'extended ack', (t) => `extended ack TLV ${t}`);
  const msg = set.string(NLMSGERR_ATTR_MSG);
  if (msg !== undefined && msg !== '') into.extAck = msg;
  const offs = set.u32(NLMSGERR_ATTR_OFFS);
  if (offs !== undefined) into.extAckOffset = offs;
  const miss = set.u32(NLMSGERR_ATTR_MISS_TYPE);
  if (miss !== undefined) into.missingType = miss;
}

/**
 * NLMSG_ERROR payload: s32 -errno, the request's nlmsghdr, then (unless
 * NLM_F_CAPPED) the rest of the request, then (if NLM_F_ACK_TLVS) the
 * extended-ack attributes.
 */
export function decodeNlMsgErr(msg: NlMessage): NlMsgErr {
  if (msg.header.type !== NLMSG_ERROR) {
    throw new NetlinkDecodeError('UNEXPECTED_TYPE', 'nlmsgerr', 0, `message type is ${msgTypeName(msg.header.type)}`);
  }
  const p = msg.payload;
  if (p.length < 4 + NLMSG_HDRLEN) {
    throw new NetlinkDecodeError(
      'TRUNCATED_BODY',
      'nlmsgerr',
      NLMSG_HDRLEN,
      `need ${4 + NLMSG_HDRLEN} bytes, have ${p.length}`,
    );
  }
  const error = p.readInt32LE(0);
  const request = decodeNlMsgHdr(p, 4);
  const out: NlMsgErr = { errno: error === 0 ? 0 : -error, request };
  if (msg.header.flags & NLM_F_ACK_TLVS) {
    let tlvStart: number;
    if (msg.header.flags & NLM_F_CAPPED) {
      tlvStart = 4 + NLMSG_HDRLEN;
    } else {
      if (request.len < NLMSG_HDRLEN) {
        throw new NetlinkDecodeError(
          'BAD_MESSAGE_LENGTH',
          'nlmsgerr embedded request',
          4,
          `nlmsg_len ${request.len} is smaller than the header`,
        );
      }
      tlvStart = 4 + nlmsgAlign(request.len);
    }
    if (tlvStart > p.length) {
      throw new NetlinkDecodeError(
        'TRUNCATED_BODY',
        'nlmsgerr',
        NLMSG_HDRLEN + 4,
        `embedded request of ${request.len} bytes exceeds the ${p.length}-byte payload`,
      );
    }
    decodeAckTlvs(p.subarray(tlvStart), out);
  }
  return out;
}

export interface NlDone {
  /** 0 for a complete dump, otherwise the positive errno that ended it. */
  errno: number;
  extAck?: string;
  extAckOffset?: number;
  missingType?: number;
}

/** NLMSG_DONE payload: s32 (0 or -errno), then ext-ack TLVs if NLM_F_ACK_TLVS. */
export function decodeDone(msg: NlMessage): NlDone {
  if (msg.header.type !== NLMSG_DONE) {
    throw new NetlinkDecodeError('UNEXPECTED_TYPE', 'NLMSG_DONE', 0, `message type is ${msgTypeName(msg.header.type)}`);
  }
  // Some old kernels / protocols send a bare DONE with no status word.
  if (msg.payload.length < 4) return { errno: 0 };
  const status = msg.payload.readInt32LE(0);
  const out: NlDone = { errno: status === 0 ? 0 : -status };
  if (msg.header.flags & NLM_F_ACK_TLVS) decodeAckTlvs(msg.payload.subarray(4), out);
  return out;
}
