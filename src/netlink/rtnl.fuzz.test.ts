// Property-based fuzzing (issue 9) of the netlink decoders: message
// splitting (parseMessages), attribute parsing, NLMSG_ERROR / NLMSG_DONE,
// and the rtnetlink decoders (link, addr, route, neigh/fdb), on random bytes
// and on valid messages that are corrupted: bytes flipped, cut short,
// extended, length fields set to edge values (0..4 for attributes: the
// classic zero-length-attribute infinite loop). Every input must decode or be
// refused with NetlinkDecodeError; no RangeError from reading past a Buffer,
// no other exception, and no loop without progress (each input is timed).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FuzzTally, fc, describeThrown } from '../testing/fuzz.js';
import * as C from './constants.js';
import { attr, decodeDone, decodeNlMsgErr, encodeMessage, parseAttrs, parseMessages, type NlMessage } from './codec.js';
import { NetlinkDecodeError } from './errors.js';
import { decodeAddr, decodeLink, decodeNeighOrFdb, decodeRoute, decodeRtnlMessage, encodeIfInfoMsg } from './rtnl.js';
import { delNeighRequest, getLinkRequest, newAddrRequest, newFdbRequest, newNeighRequest, newRouteRequest, newVxlanRequest, serializeRequest, setLinkRequest } from './requests.js';

const tally = new FuzzTally();

// ------------------------------------------------------------ seeds

/** A kernel-style RTM_NEWLINK for a vxlan device (what a dump returns). */
function vxlanLinkReply(): Buffer {
  return encodeMessage(C.RTM_NEWLINK, C.NLM_F_MULTI, 7, 0, [
    encodeIfInfoMsg({ family: C.AF_UNSPEC, type: 1, index: 5, flags: C.IFF_UP | C.IFF_LOWER_UP }),
    attr.string(C.IFLA_IFNAME, 'flannel.1'),
    attr.u32(C.IFLA_MTU, 1450),
    attr.mac(C.IFLA_ADDRESS, '02:00:00:00:00:01'),
    attr.mac(C.IFLA_BROADCAST, 'ff:ff:ff:ff:ff:ff'),
    attr.u8(C.IFLA_OPERSTATE, 6),
    attr.i32(C.IFLA_LINK, 2),
    attr.u32(C.IFLA_MASTER, 9),
    attr.nested(C.IFLA_LINKINFO, [
      attr.stringNoNul(C.IFLA_INFO_KIND, 'vxlan'),
      attr.nested(C.IFLA_INFO_DATA, [
        attr.u32(C.IFLA_VXLAN_ID, 1),
        attr.ipv4(C.IFLA_VXLAN_LOCAL, '192.0.2.1'),
        attr.u32(C.IFLA_VXLAN_LINK, 2),
        attr.u8(C.IFLA_VXLAN_TTL, 0),
        attr.u8(C.IFLA_VXLAN_LEARNING, 0),
        attr.be16(C.IFLA_VXLAN_PORT, 8472),
        attr.u32(C.IFLA_VXLAN_AGEING, 300),
        attr.flag(C.IFLA_VXLAN_GBP),
      ]),
    ]),
  ]);
}

/** NLMSG_ERROR with the request echoed and extended-ack TLVs. */
function errorReply(capped: boolean): Buffer {
  const req = serializeRequest(newNeighRequest({ ifindex: 5, ip: '10.244.2.0', mac: '02:00:00:00:00:02' }), 9);
  const echoed = capped ? req.subarray(0, C.NLMSG_HDRLEN) : req;
  const errno = Buffer.alloc(4);
  errno.writeInt32LE(-22, 0);
  return encodeMessage(C.NLMSG_ERROR, C.NLM_F_ACK_TLVS | (capped ? C.NLM_F_CAPPED : 0), 9, 0, [
    errno,
    echoed,
    attr.string(C.NLMSGERR_ATTR_MSG, 'Invalid argument, really'),
    attr.u32(C.NLMSGERR_ATTR_OFFS, 32),
    attr.u32(C.NLMSGERR_ATTR_MISS_TYPE, 3),
  ]);
}

function doneReply(): Buffer {
  return encodeMessage(C.NLMSG_DONE, C.NLM_F_MULTI | C.NLM_F_ACK_TLVS, 7, 0, [Buffer.alloc(4), attr.string(C.NLMSGERR_ATTR_MSG, 'done')]);
}

const SEEDS: readonly Buffer[] = [
  vxlanLinkReply(),
  errorReply(false),
  errorReply(true),
  doneReply(),
  serializeRequest(newVxlanRequest({ name: 'flannel.1', vni: 1, port: 8472, local: '192.0.2.1', linkIndex: 2, learning: false, gbp: true, ttl: 8, mtu: 1450, mac: '02:00:00:00:00:01', up: true }), 1),
  serializeRequest(setLinkRequest({ index: 5, up: true, mtu: 1450, mac: '02:00:00:00:00:01' }), 2),
  serializeRequest(getLinkRequest({ name: 'eth0' }), 3),
  serializeRequest(newAddrRequest({ index: 5, cidr: '10.244.1.0/32' }), 4),
  serializeRequest(newRouteRequest({ dst: '10.244.2.0/24', gw: '10.244.2.0', oif: 5, onlink: true, table: 1000, priority: 10, prefsrc: '10.244.1.0' }), 5),
  serializeRequest(newNeighRequest({ ifindex: 5, ip: '10.244.2.0', mac: '02:00:00:00:00:02' }), 6),
  serializeRequest(delNeighRequest({ ifindex: 5, ip: '10.244.2.0' }), 7),
  serializeRequest(newFdbRequest({ ifindex: 5, mac: '02:00:00:00:00:02', dst: '192.0.2.2', vni: 1, port: 8472 }), 8),
];

/** Offsets of the TLV headers inside a message (best effort: top level and one level of nesting). */
function attrOffsets(msg: Buffer): number[] {
  const out: number[] = [];
  const bodyLen: Record<number, number> = { [C.RTM_NEWLINK]: C.IFINFOMSG_LEN, [C.RTM_GETLINK]: C.IFINFOMSG_LEN, [C.RTM_NEWADDR]: C.IFADDRMSG_LEN, [C.RTM_NEWROUTE]: C.RTMSG_LEN, [C.RTM_NEWNEIGH]: C.NDMSG_LEN, [C.RTM_DELNEIGH]: C.NDMSG_LEN };
  if (msg.length < C.NLMSG_HDRLEN) return out;
  const type = msg.readUInt16LE(4);
  const walk = (start: number, end: number, depth: number): void => {
    let off = start;
    while (off + 4 <= end) {
      const len = msg.readUInt16LE(off);
      if (len < 4 || off + len > end) return;
      out.push(off);
      if (depth < 2 && len > 8) walk(off + 4, off + len, depth + 1);
      off += (len + 3) & ~3;
    }
  };
  const fixed = bodyLen[type];
  if (fixed !== undefined) walk(C.NLMSG_HDRLEN + fixed, msg.length, 0);
  return out;
}

const edit = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), v: fc.nat(255) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), v: fc.nat() }),
  fc.record({ kind: fc.constant('extend' as const), at: fc.nat(), v: fc.nat(255) }),
  fc.record({ kind: fc.constant('nlmsgLen' as const), at: fc.nat(), v: fc.constantFrom(0, 1, 4, 15, 16, 17, 20, 0xffff, 0xffffffff, -1) }),
  fc.record({ kind: fc.constant('rtaLen' as const), at: fc.nat(), v: fc.constantFrom(0, 1, 2, 3, 4, 5, 8, 0xffff, -1) }),
  fc.record({ kind: fc.constant('flags' as const), at: fc.nat(), v: fc.constantFrom(C.NLM_F_ACK_TLVS, C.NLM_F_CAPPED, C.NLM_F_ACK_TLVS | C.NLM_F_CAPPED, C.NLM_F_MULTI, 0xffff) }),
  fc.record({ kind: fc.constant('type' as const), at: fc.nat(), v: fc.constantFrom(C.RTM_NEWLINK, C.RTM_DELLINK, C.RTM_NEWADDR, C.RTM_NEWROUTE, C.RTM_NEWNEIGH, C.RTM_DELNEIGH, C.NLMSG_ERROR, C.NLMSG_DONE, 0, 0xffff) }),
  fc.record({ kind: fc.constant('family' as const), at: fc.nat(), v: fc.constantFrom(C.AF_INET, C.AF_INET6, C.AF_BRIDGE, C.AF_UNSPEC, 28, 255) }),
);

/** A valid message, corrupted by a few edits (length fields fixed up or not). */
const mutatedMessage: fc.Arbitrary<Buffer> = fc
  .tuple(fc.constantFrom(...SEEDS), fc.array(edit, { minLength: 1, maxLength: 4 }), fc.boolean(), fc.uint8Array({ maxLength: 24 }))
  .map(([seed, edits, fixLen, tail]) => {
    let b = Buffer.from(seed);
    for (const e of edits) {
      if (b.length === 0) break;
      const at = e.at % b.length;
      switch (e.kind) {
        case 'flip':
          b[at] = e.v;
          break;
        case 'cut':
          b = b.subarray(0, at);
          break;
        case 'extend':
          b = Buffer.concat([b, Buffer.from(tail)]);
          break;
        case 'nlmsgLen':
          if (b.length >= 4) b.writeUInt32LE(e.v >>> 0, 0);
          break;
        case 'rtaLen': {
          const offs = attrOffsets(b);
          if (offs.length > 0) b.writeUInt16LE(e.v & 0xffff, offs[e.at % offs.length]!);
          break;
        }
        case 'flags':
          if (b.length >= 8) b.writeUInt16LE(e.v, 6);
          break;
        case 'type':
          if (b.length >= 6) b.writeUInt16LE(e.v, 4);
          break;
        case 'family':
          if (b.length > C.NLMSG_HDRLEN) b[C.NLMSG_HDRLEN] = e.v;
          break;
      }
    }
    // Often keep nlmsg_len consistent, so the corruption reaches the payload decoders.
    if (fixLen && b.length >= 4) b.writeUInt32LE(b.length, 0);
    return b;
  });

/** A datagram: several messages back to back, possibly with trailing junk. */
const datagram: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)) },
  {
    weight: 2,
    // Random bytes behind a plausible header, so the payload decoders see junk.
    arbitrary: fc
      .tuple(fc.constantFrom(C.RTM_NEWLINK, C.RTM_NEWADDR, C.RTM_NEWROUTE, C.RTM_NEWNEIGH, C.NLMSG_ERROR, C.NLMSG_DONE), fc.nat(0xffff), fc.uint8Array({ maxLength: 160 }))
      .map(([type, flags, body]) => encodeMessage(type, flags, 1, 0, [Buffer.from(body)])),
  },
  { weight: 6, arbitrary: mutatedMessage },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.array(fc.oneof(mutatedMessage, fc.constantFrom(...SEEDS)), { minLength: 2, maxLength: 4 }), fc.uint8Array({ maxLength: 5 }))
      .map(([ms, junk]) => Buffer.concat([...ms.map((m) => Buffer.concat([m, Buffer.alloc(((m.length + 3) & ~3) - m.length)])), Buffer.from(junk)])),
  },
);

// ------------------------------------------------------------ property

/** Every decoder on every message; returns how many decoded. */
function decodeEverything(buf: Buffer): number {
  let ok = 0;
  const attempt = (fn: () => unknown): void => {
    try {
      fn();
      ok++;
    } catch (e) {
      if (!(e instanceof NetlinkDecodeError)) throw e;
      assert.ok(e.message.length < 500 && !e.message.includes('\n'), 'one bounded line');
    }
  };
  let msgs: NlMessage[] = [];
  attempt(() => (msgs = parseMessages(buf)));
  assert.ok(msgs.length <= buf.length / C.NLMSG_HDRLEN, 'no message is shorter than its header');
  // Each decoder on each message, whatever its type, as a confused caller might.
  for (const m of msgs) {
    attempt(() => decodeRtnlMessage(m));
    attempt(() => decodeLink(m));
    attempt(() => decodeAddr(m));
    attempt(() => decodeRoute(m));
    attempt(() => decodeNeighOrFdb(m));
    attempt(() => decodeNlMsgErr(m));
    attempt(() => decodeDone(m));
    attempt(() => parseAttrs(m.payload.subarray(Math.min(m.payload.length, 16))));
  }
  return ok;
}

test('netlink: random and corrupted datagrams decode or raise NetlinkDecodeError, never anything else, never hang', { timeout: 120_000 }, (t) => {
  let decoded = 0;
  let slowest = 0;
  tally.check(
    t,
    'netlink decoders',
    0x4e71,
    15_000,
    fc.property(datagram, (buf) => {
      const t0 = performance.now();
      try {
        decoded += decodeEverything(buf);
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        assert.fail(`input ${buf.toString('hex')} threw ${describeThrown(e)}`);
      }
      const ms = performance.now() - t0;
      if (ms > slowest) slowest = ms;
      assert.ok(ms < 1000, `decoding ${buf.length} bytes took ${ms.toFixed(1)} ms`);
    }),
  );
  t.diagnostic(`${decoded} successful decoder calls; slowest input ${slowest.toFixed(2)} ms`);
  assert.ok(decoded > 10_000, 'the corpus reaches the decoders, not only the splitter');
});

test('netlink: every valid seed still decodes (the fuzz corpus starts from real messages)', () => {
  for (const s of SEEDS) {
    const [m] = parseMessages(s);
    assert.ok(m);
    if (m.header.type === C.NLMSG_ERROR) assert.equal(decodeNlMsgErr(m).errno, 22);
    else if (m.header.type === C.NLMSG_DONE) assert.equal(decodeDone(m).extAck, 'done');
    else if (m.header.type !== C.RTM_GETLINK) assert.ok(decodeRtnlMessage(m));
  }
  const link = decodeLink(parseMessages(vxlanLinkReply())[0]!);
  assert.equal(link.vxlan?.port, 8472);
});

tally.reportTotal('netlink');
