// Property-based fuzzing (issue 9) of the UDP backend's packet code: IPv4
// header validation, the per-direction verdicts, TTL decrement with the
// incremental checksum, the ICMP error it synthesises, TSO segmentation,
// checksum completion, GRO eligibility and the route table. Inputs are
// random bytes and valid IPv4/TCP/UDP/ICMP packets corrupted byte-wise, cut
// short or given edge-value length fields, placed at a random offset with
// poison bytes around them and read through a DataView that throws on any
// access outside the packet. Properties: nothing throws; malformed packets
// get the verdict an independent classifier gives them; what is produced
// (decremented headers, ICMP errors, TSO segments) carries valid checksums.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FuzzTally, fc, describeThrown } from '../../testing/fuzz.js';
import * as P from './packet.js';
import { guarded, packArena, place, refSum } from './packet-fixtures.js';

const tally = new FuzzTally();

// ------------------------------------------------------------ references

/** What ipv4Check must say, computed independently. */
function refVerdict(u8: Uint8Array, off: number, len: number): number {
  if (len < 20) return P.SHORT;
  if (u8[off]! >> 4 !== 4) return P.NOT_IPV4;
  const hlen = (u8[off]! & 15) * 4;
  if (hlen < 20 || hlen > len) return P.BAD_HEADER_LEN;
  const total = (u8[off + 2]! << 8) | u8[off + 3]!;
  if (total < hlen || total > len) return P.BAD_TOTAL_LEN;
  return P.OK;
}

function headerChecksumOk(u8: Uint8Array, off: number): boolean {
  const hlen = (u8[off]! & 15) * 4;
  return refSum(u8, off, hlen) === 0xffff;
}

/** TCP/UDP/ICMP-style verification of [off, off+len) with an optional IPv4 pseudo-header. */
function l4ChecksumOk(u8: Uint8Array, ipOff: number, l4Off: number, l4Len: number, proto: number): boolean {
  const pseudo = new Uint8Array(12 + l4Len);
  pseudo.set(u8.subarray(ipOff + 12, ipOff + 20), 0);
  pseudo[9] = proto;
  pseudo[10] = l4Len >> 8;
  pseudo[11] = l4Len & 255;
  pseudo.set(u8.subarray(l4Off, l4Off + l4Len), 12);
  return refSum(pseudo, 0, pseudo.length) === 0xffff;
}

// ------------------------------------------------------------ generators

function checksumInto(u8: Uint8Array, at: number, off: number, len: number): void {
  u8[at] = 0;
  u8[at + 1] = 0;
  const c = ~refSum(u8, off, len) & 0xffff;
  u8[at] = c >> 8;
  u8[at + 1] = c & 255;
}

/** A valid IPv4 packet: header (with options), L4 header with correct checksum, payload. */
const validPacket: fc.Arbitrary<Uint8Array> = fc
  .record({
    ihl: fc.integer({ min: 5, max: 15 }),
    proto: fc.constantFrom(P.PROTO_TCP, P.PROTO_UDP, P.PROTO_ICMP, 47),
    ttl: fc.constantFrom(0, 1, 2, 64, 255),
    frag: fc.constantFrom(0, 0x4000, 0x2000, 0x0003),
    src: fc.oneof(fc.nat(0xffffffff), fc.constantFrom(0, 0xe0000001, 0xffffffff)),
    dst: fc.oneof(fc.nat(0xffffffff), fc.constantFrom(0x0af40205, 0x0af40105, 0x0af50001)),
    icmpType: fc.constantFrom(0, 3, 8, 11, 13),
    tcpFlags: fc.constantFrom(P.TCP_FLAGS.ACK, P.TCP_FLAGS.ACK | P.TCP_FLAGS.PSH, P.TCP_FLAGS.SYN, 0xff),
    tcpOpts: fc.constantFrom(0, 12, 40),
    payload: fc.uint8Array({ maxLength: 300 }),
  })
  .map((o) => {
    const hlen = o.ihl * 4;
    const l4h = o.proto === P.PROTO_TCP ? 20 + o.tcpOpts : o.proto === P.PROTO_UDP || o.proto === P.PROTO_ICMP ? 8 : 0;
    const total = hlen + l4h + o.payload.length;
    const u8 = new Uint8Array(total);
    const dv = new DataView(u8.buffer);
    u8[0] = 0x40 | o.ihl;
    dv.setUint16(2, total);
    dv.setUint16(4, 0x1234);
    dv.setUint16(6, o.frag);
    u8[8] = o.ttl;
    u8[9] = o.proto;
    dv.setUint32(12, o.src >>> 0);
    dv.setUint32(16, o.dst >>> 0);
    for (let i = 20; i < hlen; i++) u8[i] = 1; // NOP options
    checksumInto(u8, 10, 0, hlen);
    u8.set(o.payload, hlen + l4h);
    const l4 = hlen;
    if (o.proto === P.PROTO_TCP) {
      dv.setUint32(l4, 0x1f90c350);
      dv.setUint32(l4 + 4, 1000);
      dv.setUint32(l4 + 8, 2000);
      u8[l4 + 12] = (l4h / 4) << 4;
      u8[l4 + 13] = o.tcpFlags;
      dv.setUint16(l4 + 14, 512);
      for (let i = 20; i < l4h; i++) u8[l4 + i] = 1;
    } else if (o.proto === P.PROTO_UDP) {
      dv.setUint32(l4, 0x1f90c350);
      dv.setUint16(l4 + 4, total - hlen);
    } else if (o.proto === P.PROTO_ICMP) {
      u8[l4] = o.icmpType;
      checksumInto(u8, l4 + 2, l4, total - hlen);
    }
    if (o.proto === P.PROTO_TCP || o.proto === P.PROTO_UDP) {
      // L4 checksum over the pseudo-header.
      const at = l4 + (o.proto === P.PROTO_TCP ? 16 : 6);
      u8[at] = 0;
      u8[at + 1] = 0;
      const pseudo = new Uint8Array(12 + total - hlen);
      pseudo.set(u8.subarray(12, 20), 0);
      pseudo[9] = o.proto;
      pseudo[10] = (total - hlen) >> 8;
      pseudo[11] = (total - hlen) & 255;
      pseudo.set(u8.subarray(hlen), 12);
      const c = ~refSum(pseudo, 0, pseudo.length) & 0xffff;
      u8[at] = c >> 8;
      u8[at + 1] = c & 255;
    }
    return u8;
  });

const corruption = fc.oneof(
  fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), v: fc.nat(255) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), v: fc.nat() }),
  fc.record({ kind: fc.constant('total' as const), at: fc.nat(), v: fc.constantFrom(0, 1, 19, 20, 21, 40, 0xffff, -1, 1) }),
  fc.record({ kind: fc.constant('vihl' as const), at: fc.nat(), v: fc.constantFrom(0x40, 0x44, 0x45, 0x46, 0x4f, 0x50, 0x60, 0x00, 0xff) }),
  fc.record({ kind: fc.constant('thl' as const), at: fc.nat(), v: fc.constantFrom(0, 0x10, 0x40, 0x50, 0xf0) }),
);

/** A packet: random bytes, or a valid one corrupted. */
const packet: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 80 }) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 80 }).map((u) => ((u[0] = 0x40 | (u[0]! & 15)), u)) },
  { weight: 2, arbitrary: validPacket },
  {
    weight: 5,
    arbitrary: fc.tuple(validPacket, fc.array(corruption, { minLength: 1, maxLength: 4 })).map(([p, cs]) => {
      let u8 = p.slice();
      for (const c of cs) {
        if (u8.length === 0) break;
        const at = c.at % u8.length;
        if (c.kind === 'byte') u8[at] = c.v;
        else if (c.kind === 'cut') u8 = u8.slice(0, at);
        else if (c.kind === 'total' && u8.length >= 4) {
          const v = c.v === -1 ? u8.length + 1 : c.v;
          u8[2] = (v >> 8) & 255;
          u8[3] = v & 255;
        } else if (c.kind === 'vihl') u8[0] = c.v;
        else if (c.kind === 'thl') {
          const hlen = (u8[0]! & 15) * 4;
          if (hlen + 12 < u8.length) u8[hlen + 12] = c.v;
        }
      }
      return u8;
    }),
  },
);

const ROUTES = new P.RouteTable(
  P.encodeRoutes([
    { net: 0x0af40200, prefix: 24, peer: 0xc0000202 },
    { net: 0x0af40000, prefix: 16, peer: 0xc0000209 },
  ]),
);
const TUN_IP = 0x0af40100;

// ------------------------------------------------------------ properties

test('IPv4 verdicts: every packet is classified exactly as an independent check says; only OK packets are changed', (t) => {
  tally.check(
    t,
    'ipv4Check/tunVerdict/udpVerdict',
    0xbad1,
    6000,
    fc.property(packet, fc.nat(7), (pkt, pad) => {
      const p = place(pkt, pad);
      const want = refVerdict(p.buf, p.off, p.len);
      try {
        assert.equal(P.ipv4Check(p.dv, p.off, p.len), want, 'ipv4Check');
        const before = p.buf.slice();
        const checksumWasOk = want === P.OK && headerChecksumOk(p.buf, p.off);
        const ttl = p.buf[p.off + 8]!;
        const u = P.udpVerdict(p.dv, p.off, p.len);
        if (want !== P.OK) {
          assert.equal(u, want, 'malformed packets keep their verdict');
          assert.deepEqual(p.buf, before, 'a dropped packet is not modified');
        } else if (ttl <= 1) {
          assert.equal(u, P.TTL_EXPIRED);
          assert.deepEqual(p.buf, before);
        } else {
          assert.equal(u, P.OK);
          assert.equal(p.buf[p.off + 8], ttl - 1, 'TTL decremented');
          if (checksumWasOk) assert.ok(headerChecksumOk(p.buf, p.off), 'incremental checksum update keeps the header valid');
        }
        p.buf.set(before);
        const hop = { peer: 0 };
        const v = P.tunVerdict(p.dv, p.off, p.len, ROUTES, hop);
        assert.ok(v >= 0 && v < P.VERDICT_NAMES.length);
        if (want !== P.OK) assert.equal(v, want);
        if (v === P.OK) assert.ok(hop.peer === 0xc0000202 || hop.peer === 0xc0000209);
        else assert.deepEqual(p.buf, before);
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        assert.fail(`packet ${Buffer.from(pkt).toString('hex')} (pad ${pad}) threw ${describeThrown(e)}`);
      }
    }),
  );
});

test('ICMP net-unreachable: built only for well-formed, answerable packets, with valid checksums, inside its buffer', (t) => {
  const out = new DataView(new ArrayBuffer(P.ICMP_UNREACH_MAX + 8));
  const outU8 = new Uint8Array(out.buffer);
  tally.check(
    t,
    'buildNetUnreachable',
    0x1c3b,
    5000,
    fc.property(packet, fc.nat(7), (pkt, pad) => {
      const p = place(pkt, pad);
      outU8.fill(0xee);
      let n: number;
      try {
        n = P.buildNetUnreachable(p.dv, p.off, p.len, guarded(out, 0, P.ICMP_UNREACH_MAX), 0, TUN_IP);
      } catch (e) {
        assert.fail(`packet ${Buffer.from(pkt).toString('hex')} threw ${describeThrown(e)}`);
      }
      if (n === 0) return;
      assert.equal(refVerdict(p.buf, p.off, p.len), P.OK, 'only for well-formed packets');
      assert.ok(n >= 28 && n <= P.ICMP_UNREACH_MAX);
      assert.equal(refSum(outU8, 0, 20), 0xffff, 'IP header checksum');
      assert.equal(refSum(outU8, 20, n - 20), 0xffff, 'ICMP checksum');
      assert.equal(out.getUint32(16), p.raw.getUint32(p.off + 12), 'sent back to the source');
      const src = p.raw.getUint32(p.off + 12);
      assert.ok(src !== 0 && src >>> 28 !== 0xe && src !== 0xffffffff, 'never to an address an error cannot go to');
      if (p.buf[p.off + 9] === P.PROTO_ICMP) {
        const hlen = (p.buf[p.off]! & 15) * 4;
        assert.ok([8, 13, 15, 17].includes(p.buf[p.off + hlen]!), 'ICMP: only requests are answered');
      }
    }),
  );
});

test('checksums: sum16 equals a byte-by-byte reference at any offset/length; completeChecksum stays in the packet', (t) => {
  tally.check(
    t,
    'sum16/completeChecksum',
    0xc5c5,
    5000,
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(7), fc.nat(400), fc.nat(60), (bytes, pad, start, field) => {
      const p = place(bytes, pad);
      assert.equal(P.sum16(p.dv, p.off, p.len), refSum(p.buf, p.off, p.len));
      const fieldAt = p.off + start + field;
      const pseudo = start < p.len && start + field + 2 <= p.len ? p.raw.getUint16(fieldAt) : 0;
      const ok = P.completeChecksum(p.dv, p.off, p.len, start, field);
      assert.equal(ok, start < p.len && start + field + 2 <= p.len);
      if (ok && field % 2 === 0) {
        // The field held the pseudo-header sum; the completed range plus that
        // sum verifies (csum_offset is always even in practice: 16 TCP, 6 UDP).
        let s = refSum(p.buf, p.off + start, p.len - start) + pseudo;
        while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
        assert.equal(s, 0xffff, `sum ${s.toString(16)}`);
      }
    }),
  );
});

test('TSO: parseTso accepts only consistent TCP super-packets; every segment it writes has valid IP and TCP checksums', (t) => {
  const info = P.newTsoInfo();
  tally.check(
    t,
    'parseTso/writeTsoSegmentHeader',
    0x7c0,
    4000,
    fc.property(packet, fc.nat(7), fc.oneof(fc.integer({ min: -2, max: 400 }), fc.constantFrom(1, 1448, 65535)), (pkt, pad, mss) => {
      const p = place(pkt, pad);
      let v: number;
      try {
        v = P.parseTso(p.dv, p.off, p.len, mss, info);
      } catch (e) {
        assert.fail(`packet ${Buffer.from(pkt).toString('hex')} threw ${describeThrown(e)}`);
      }
      if (v !== P.OK) return;
      assert.equal(refVerdict(p.buf, p.off, p.len), P.OK);
      const payload = p.len - info.hdrLen;
      assert.ok(info.hdrLen >= 40 && info.hdrLen <= p.len && payload > 0);
      assert.ok(info.segs >= 1 && info.lastLen >= 1 && info.lastLen <= info.mss && (info.segs - 1) * info.mss + info.lastLen === payload);
      if (info.segs > 64) return; // enough checked; keeps the run fast
      for (let i = 0; i < info.segs; i++) {
        const segLen = P.tsoPayloadLen(info, i);
        const seg = new Uint8Array(info.hdrLen + segLen);
        const sdv = new DataView(seg.buffer);
        P.writeTsoSegmentHeader(p.dv, p.off, info, i, guarded(sdv, 0, info.hdrLen), 0);
        seg.set(p.buf.subarray(p.off + P.tsoPayloadOff(info, i), p.off + P.tsoPayloadOff(info, i) + segLen), info.hdrLen);
        assert.equal(sdv.getUint16(2), seg.length, 'Total Length');
        assert.ok(headerChecksumOk(seg, 0), `segment ${i} IP checksum`);
        assert.ok(l4ChecksumOk(seg, 0, info.ihl, seg.length - info.ihl, P.PROTO_TCP), `segment ${i} TCP checksum`);
      }
    }),
  );
});

test('GRO: eligibility and the coalescer on any well-formed packet never read outside it', (t) => {
  tally.check(
    t,
    'TcpCoalescer',
    0x6e0,
    4000,
    fc.property(fc.array(packet, { minLength: 1, maxLength: 5 }), (pkts) => {
      const { ab, offs, total } = packArena(pkts);
      const co = new P.TcpCoalescer(guarded(new DataView(ab), 0, total), 4);
      const hdr = new DataView(new ArrayBuffer(200));
      pkts.forEach((q, i) => {
        const off = offs[i]!;
        // Each check reads only its own packet.
        const dv = guarded(new DataView(ab), off, off + q.length);
        if (P.ipv4Check(dv, off, q.length) !== P.OK) return;
        const len = new DataView(ab).getUint16(off + 2);
        if (!P.TcpCoalescer.eligible(dv, off, len)) return;
        P.TcpCoalescer.checksumOk(dv, off, P.sum16(dv, off + 20, len - 20));
        if (!co.append(off)) {
          if (co.count > 1) co.writeHeader(hdr, 0);
          co.start(off);
        }
      });
      if (co.count > 1) co.writeHeader(hdr, 0);
    }),
  );
});

test('routes: RouteTable.lookup is the longest-prefix match over any route set', (t) => {
  const route = fc.record({ net: fc.nat(0xffffffff), prefix: fc.oneof(fc.nat(32), fc.constantFrom(33, 255, 0xffffffff)), peer: fc.oneof(fc.nat(0xffffffff), fc.constant(0)) });
  tally.check(
    t,
    'RouteTable',
    0x12a7,
    3000,
    fc.property(fc.array(route, { maxLength: 12 }), fc.array(fc.nat(0xffffffff), { minLength: 1, maxLength: 8 }), (routes, dsts) => {
      const table = new P.RouteTable(P.encodeRoutes(routes));
      const mask = (p: number): number => (p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0);
      for (const d0 of dsts) {
        // Aim some lookups inside the routes.
        for (const d of [d0, ...routes.slice(0, 2).map((r) => (r.net ^ (d0 & 0xff)) >>> 0)]) {
          let best = -1;
          let want = 0;
          // Later entries of one prefix overwrite earlier ones, as in the table.
          for (const r of routes) {
            if (r.prefix > 32 || r.peer === 0) continue;
            if (((d & mask(r.prefix)) >>> 0) === ((r.net & mask(r.prefix)) >>> 0) && r.prefix >= best) {
              best = r.prefix;
              want = r.peer;
            }
          }
          assert.equal(table.lookup(d), want, `lookup ${d.toString(16)}`);
        }
      }
    }),
  );
});

tally.reportTotal('UDP packets');
