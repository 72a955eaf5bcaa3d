// Framing, attributes, control messages and malformed input.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as C from './constants.js';
import {
  AttrSet,
  attr,
  decodeDone,
  decodeNlMsgErr,
  encodeAttr,
  encodeMessage,
  nlmsgAlign,
  parseAttrs,
  parseMessages,
} from './codec.js';
import { decodeLink, decodeNeighOrFdb } from './rtnl.js';
import { NetlinkDecodeError, NetlinkError, type DecodeErrorReason } from './errors.js';

/** Hex fixture: whitespace and '|' are separators, '//' starts a comment. */
function hex(s: string): Buffer {
  const text = s.replace(/\/\/.*$/gm, '').replace(/[\s|]/g, '');
  assert.match(text, /^([0-9a-f]{2})*$/i, 'malformed hex fixture');
  return Buffer.from(text, 'hex');
}

function assertDecodeError(fn: () => unknown, reason: DecodeErrorReason, what?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof NetlinkDecodeError, `expected NetlinkDecodeError, got ${String(err)}`);
    assert.equal(err.reason, reason);
    if (what) assert.match(err.message, what);
    return true;
  });
}

test('alignment', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 8, 9].map(nlmsgAlign), [0, 4, 4, 4, 4, 8, 8, 12]);
});

test('attributes: padding, nesting flag, round trip', () => {
  assert.deepEqual(attr.u8(7, 0), hex('0500 0700 00 000000'));
  assert.deepEqual(attr.be16(15, 4789), hex('0600 0f00 12b5 0000'));
  assert.deepEqual(attr.flag(23), hex('0400 1700'));
  assert.deepEqual(attr.string(3, 'eth0'), hex('0900 0300 65746830 00 000000'));
  const nested = attr.nested(1, [attr.u32(2, 0xdeadbeef), attr.u8(3, 1)], true);
  assert.deepEqual(nested, hex('1400 0180 | 0800 0200 efbeadde | 0500 0300 01 000000'));

  const [outer] = parseAttrs(nested);
  assert.ok(outer);
  assert.equal(outer.type, 1);
  assert.equal(outer.nested, true);
  const inner = AttrSet.parse(outer.value, 'inner');
  assert.equal(inner.u32(2), 0xdeadbeef);
  assert.equal(inner.u8(3), 1);
  assert.equal(inner.u8(9), undefined);
  assert.equal(inner.flag(9), false);
});

test('AttrSet: last occurrence wins, strings stop at NUL, wrong sizes are typed errors', () => {
  const set = AttrSet.parse(
    Buffer.concat([attr.u32(4, 1), attr.u32(4, 2), attr.stringNoNul(1, 'vxlan'), attr.u16(5, 9)]),
    'test',
    (t) => `T${t}`,
  );
  assert.equal(set.u32(4), 2);
  assert.equal(set.string(1), 'vxlan');
  assertDecodeError(() => set.u32(5), 'BAD_VALUE_LENGTH', /T5/);
  assertDecodeError(() => set.ip(5), 'BAD_VALUE_LENGTH', /4 or 16 bytes/);
});

test('encodeMessage computes nlmsg_len over padded parts', () => {
  const m = encodeMessage(C.RTM_GETLINK, C.NLM_F_REQUEST, 7, 0, [Buffer.alloc(16), attr.string(3, 'a')]);
  assert.equal(m.length, 16 + 16 + 8);
  assert.equal(m.readUInt32LE(0), 40);
  const [parsed] = parseMessages(m);
  assert.equal(parsed!.header.seq, 7);
  assert.equal(parsed!.payload.length, 24);
});

test('NLMSG_ERROR: ACK (errno 0, capped)', () => {
  const ack = hex(`
    24000000 0200 0001 2a000000 39300000  // len 36 NLMSG_ERROR CAPPED seq 42 pid 12345
    00000000  // error 0
    30000000 1c00 0505 2a000000 00000000  // the request's header
  `);
  const [msg] = parseMessages(ack);
  const e = decodeNlMsgErr(msg!);
  assert.equal(e.errno, 0);
  assert.equal(e.request.type, C.RTM_NEWNEIGH);
  assert.equal(e.request.seq, 42);
  assert.equal(e.extAck, undefined);
});

test('NLMSG_ERROR with extended ack text and offset (capped)', () => {
  const reply = hex(`
    58000000 0200 0003 05000000 00000000  // len 88 NLMSG_ERROR CAPPED|ACK_TLVS seq 5
    deffffff  // -ERANGE
    6c000000 1000 0506 05000000 00000000  // request header
    2900 0100  // NLMSGERR_ATTR_MSG (37 bytes)
      5658 4c41 4e20 4944 206d 7573 7420 6265 206c 6f77 6572 2074 6861 6e20 3136 3737 3732 3136 00
      000000
    0800 0200 44000000  // NLMSGERR_ATTR_OFFS 0x44
  `);
  const [msg] = parseMessages(reply);
  const e = decodeNlMsgErr(msg!);
  assert.equal(e.errno, 34);
  assert.equal(e.extAck, 'VXLAN ID must be lower than 16777216');
  assert.equal(e.extAckOffset, 0x44);

  const err = new NetlinkError({ errno: e.errno, op: 'create vxlan vx9 (vni 33554432)', extAck: e.extAck });
  assert.equal(err.code, 'ERANGE');
  assert.equal(err.errno, 34);
  assert.equal(
    err.message,
    'create vxlan vx9 (vni 33554432): ERANGE (Numerical result out of range): kernel says "VXLAN ID must be lower than 16777216"',
  );
});

test('NLMSG_ERROR echoing the full request (not capped), as a kernel without CAP_ACK sends', () => {
  // Bytes of the kernel's answer to `ip neigh del 10.9.9.9 dev #6` (strace capture).
  const reply = hex(`
    38000000 0200 0000 77720b6b 370e0000  // len 56 NLMSG_ERROR
    feffffff  // -ENOENT
    24000000 1d00 0500 77720b6b 00000000  // original request ...
    02000000 06000000 8000 00 00
    0800 0100 0a090909
  `);
  const [msg] = parseMessages(reply);
  const e = decodeNlMsgErr(msg!);
  assert.equal(e.errno, 2);
  assert.equal(e.request.type, C.RTM_DELNEIGH);
  assert.equal(new NetlinkError({ errno: e.errno, op: 'x' }).code, 'ENOENT');
});

test('uncapped NLMSG_ERROR with ACK_TLVS after the echoed request', () => {
  const reply = hex(`
    3c000000 0200 0002 01000000 00000000  // len 60 ACK_TLVS (not capped)
    eaffffff  // -EINVAL
    20000000 1000 0500 01000000 00000000  // original request (32 bytes) ...
    00000000 05000000 00000000 00000000
    0800 0100 62616400  // NLMSGERR_ATTR_MSG "bad"
  `);
  const e = decodeNlMsgErr(parseMessages(reply)[0]!);
  assert.equal(e.errno, 22);
  assert.equal(e.extAck, 'bad');
});

test('multipart dump: several messages per datagram, split across datagrams, NLMSG_DONE', () => {
  // Real kernel datagrams answering RTM_GETNEIGH AF_BRIDGE (seq 0x1234) in a
  // namespace with one vxlan device (#4) and two veths.
  const first = hex(`
    28000000 1c00 0200 34120000 ca130000 07000000 02000000 8000 02 00 0a00 0200 333300000001 0000
    28000000 1c00 0200 34120000 ca130000 07000000 03000000 8000 02 00 0a00 0200 333300000001 0000
    28000000 1c00 0200 34120000 ca130000 07000000 03000000 8000 02 00 0a00 0200 01005e000001 0000
    44000000 1c00 0200 34120000 ca130000 07000000 04000000 c000 02 01 0a00 0200 6e5a1c010203 0000
      0800 0100 c0000202 1400 0300 00000000 08000000 08000000 00000000
  `);
  const second = hex('14000000 0300 0200 34120000 ca130000 00000000');
  const msgs = parseMessages(first);
  assert.equal(msgs.length, 4);
  assert.ok(msgs.every((m) => m.header.flags & C.NLM_F_MULTI && m.header.seq === 0x1234));
  const entries = msgs.map(decodeNeighOrFdb);
  assert.deepEqual(entries[3], {
    family: C.AF_BRIDGE,
    ifindex: 4,
    mac: '6e:5a:1c:01:02:03',
    dst: '192.0.2.2',
    state: C.NUD_NOARP | C.NUD_PERMANENT,
    flags: C.NTF_SELF,
    self: true,
    master: false,
    permanent: true,
  });
  assert.equal(entries[0]!.ifindex, 2);
  const [done] = parseMessages(second);
  assert.equal(done!.header.type, C.NLMSG_DONE);
  assert.deepEqual(decodeDone(done!), { errno: 0 });
});

test('neighbour dump datagram with the DONE in the same datagram', () => {
  const dg = hex(`
    4c000000 1c00 0200 34120000 ca130000 02000000 04000000 8000 00 01
      0800 0100 0af40200 0a00 0200 6e5a1c010203 0000 0800 0400 00000000
      1400 0300 08000000 08000000 08000000 00000000
    14000000 0300 0200 34120000 ca130000 00000000
  `);
  const msgs = parseMessages(dg);
  assert.equal(msgs.length, 2);
  assert.deepEqual(decodeNeighOrFdb(msgs[0]!), {
    family: C.AF_INET,
    ifindex: 4,
    ip: '10.244.2.0',
    mac: '6e:5a:1c:01:02:03',
    state: C.NUD_PERMANENT,
    flags: 0,
    permanent: true,
  });
  assert.equal(msgs[1]!.header.type, C.NLMSG_DONE);
});

test('NLMSG_DONE carrying a dump error with extended ack', () => {
  const done = hex(`
    24000000 0300 0202 01000000 00000000  // DONE MULTI|ACK_TLVS
    eaffffff  // -EINVAL
    1000 0100 696e76616c696420 6469 6d00  // NLMSGERR_ATTR_MSG "invalid dim"
  `);
  // length: 16 + 4 + 16 = 36
  assert.deepEqual(decodeDone(parseMessages(done)[0]!), { errno: 22, extAck: 'invalid dim' });
});

test('malformed: truncated header', () => {
  assertDecodeError(() => parseMessages(hex('30000000 1c00 0505 01')), 'TRUNCATED_HEADER');
  // A second message cut inside its header.
  const ok = encodeMessage(C.NLMSG_NOOP, 0, 1, 0, []);
  assertDecodeError(() => parseMessages(Buffer.concat([ok, hex('14000000 0300')])), 'TRUNCATED_HEADER');
});

test('malformed: nlmsg_len of 0 (would loop forever) and below the header size', () => {
  assertDecodeError(() => parseMessages(hex('00000000 0300 0200 01000000 00000000')), 'BAD_MESSAGE_LENGTH', /nlmsg_len 0/);
  assertDecodeError(() => parseMessages(hex('0f000000 0300 0200 01000000 00000000')), 'BAD_MESSAGE_LENGTH');
});

test('malformed: nlmsg_len past the end of the buffer', () => {
  assertDecodeError(
    () => parseMessages(hex('30000000 1c00 0200 01000000 00000000 02000000')),
    'TRUNCATED_MESSAGE',
    /RTM_NEWNEIGH.*nlmsg_len 48 but only 20/,
  );
});

test('malformed: attribute length 0, shorter than header, past the end', () => {
  assertDecodeError(() => parseAttrs(hex('0000 0100 0000 0000')), 'BAD_ATTRIBUTE_LENGTH');
  assertDecodeError(() => parseAttrs(hex('0300 0100')), 'BAD_ATTRIBUTE_LENGTH');
  assertDecodeError(() => parseAttrs(hex('0c00 0100 0102')), 'TRUNCATED_ATTRIBUTE');
  assertDecodeError(() => parseAttrs(hex('0500 0700 00 000000 0100')), 'TRUNCATED_ATTRIBUTE');
});

test('malformed: rtnetlink bodies', () => {
  // RTM_NEWLINK shorter than ifinfomsg.
  const shortLink = parseMessages(hex('18000000 1000 0000 01000000 00000000 00000000 01000000'))[0]!;
  assertDecodeError(() => decodeLink(shortLink), 'TRUNCATED_BODY', /ifinfomsg/);
  // IFLA_MTU with a 2-byte value.
  const badMtu = parseMessages(
    hex('26000000 1000 0000 01000000 00000000 | 00000000 02000000 00000000 00000000 | 0600 0400 dc05 0000'),
  )[0]!;
  // nlmsg_len 0x26 = 38 leaves the padding outside the message; the attribute itself is intact.
  assertDecodeError(() => decodeLink(badMtu), 'BAD_VALUE_LENGTH', /IFLA_MTU/);
  // Nested IFLA_LINKINFO whose inner attribute overruns it.
  const badNest = parseMessages(
    hex('2c000000 1000 0000 01000000 00000000 | 00000000 02000000 00000000 00000000 | 0c00 1200 | 0c00 0100 76786c61'),
  )[0]!;
  assertDecodeError(() => decodeLink(badNest), 'TRUNCATED_ATTRIBUTE', /IFLA_LINKINFO/);
  // NLMSG_ERROR too short to hold errno + header.
  const shortErr = parseMessages(hex('18000000 0200 0000 01000000 00000000 feffffff 00000000'))[0]!;
  assertDecodeError(() => decodeNlMsgErr(shortErr), 'TRUNCATED_BODY');
  // ACK_TLVS with an embedded request length that runs past the payload.
  const lyingErr = parseMessages(
    hex('24000000 0200 0002 01000000 00000000 feffffff ff000000 1c00 0500 01000000 00000000'),
  )[0]!;
  assertDecodeError(() => decodeNlMsgErr(lyingErr), 'TRUNCATED_BODY');
});

test('fuzz: truncations and random corruption only ever raise NetlinkDecodeError', () => {
  const valid = hex(`
    44000000 1c00 0200 34120000 ca130000 07000000 04000000 c000 02 01 0a00 0200 6e5a1c010203 0000
      0800 0100 c0000202 1400 0300 00000000 08000000 08000000 00000000
    14000000 0300 0200 34120000 ca130000 00000000
  `);
  const decodeAll = (buf: Buffer): void => {
    for (const m of parseMessages(buf)) {
      if (m.header.type === C.RTM_NEWNEIGH) decodeNeighOrFdb(m);
      else if (m.header.type === C.RTM_NEWLINK) decodeLink(m);
      else if (m.header.type === C.NLMSG_ERROR) decodeNlMsgErr(m);
      else if (m.header.type === C.NLMSG_DONE) decodeDone(m);
    }
  };
  const check = (buf: Buffer): void => {
    try {
      decodeAll(buf);
    } catch (err) {
      if (!(err instanceof NetlinkDecodeError)) throw err;
    }
  };
  for (let cut = 0; cut <= valid.length; cut++) check(valid.subarray(0, cut));
  // Deterministic PRNG so failures reproduce.
  let s = 0x9e3779b9;
  const rnd = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x100000000;
  };
  const types = [C.RTM_NEWNEIGH, C.RTM_NEWLINK, C.NLMSG_ERROR, C.NLMSG_DONE];
  for (let i = 0; i < 5000; i++) {
    const buf = Buffer.from(valid);
    const flips = 1 + Math.floor(rnd() * 4);
    for (let j = 0; j < flips; j++) buf[Math.floor(rnd() * buf.length)] = Math.floor(rnd() * 256);
    buf.writeUInt16LE(types[i % types.length]!, 4);
    check(buf);
  }
});
