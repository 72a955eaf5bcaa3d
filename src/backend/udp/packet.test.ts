import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as P from './packet.js';
import { guarded, packArena, place, refSum } from './packet-fixtures.js';

// ------------------------------------------------------------ helpers

function hex(s: string): Uint8Array {
  const clean = s.replace(/\/\/.*$/gm, '').replace(/\s+/g, '');
  return Uint8Array.from(clean.match(/../g)!.map((b) => parseInt(b, 16)));
}

function dvOf(u8: Uint8Array): DataView {
  return new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
}

function refChecksum(u8: Uint8Array, off = 0, len = u8.length - off): number {
  return ~refSum(u8, off, len) & 0xffff;
}

/** Full recomputation of an IPv4 header checksum (field zeroed). */
function fullIpChecksum(u8: Uint8Array, off = 0): number {
  const hlen = (u8[off]! & 15) * 4;
  const h = u8.slice(off, off + hlen);
  h[10] = 0;
  h[11] = 0;
  return refChecksum(h);
}

function ipv4(a: string): number {
  const p = a.split('.').map(Number);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

/** Full TCP/UDP checksum of an IPv4 packet's L4 part (the field taken as zero). */
function fullL4Checksum(u8: Uint8Array, proto: number, fieldAt: number): number {
  const hlen = (u8[0]! & 15) * 4;
  const total = (u8[2]! << 8) | u8[3]!;
  const l4 = u8.slice(hlen, total);
  l4[fieldAt] = 0;
  l4[fieldAt + 1] = 0;
  const pseudo = new Uint8Array(12 + l4.length);
  pseudo.set(u8.subarray(12, 20), 0);
  pseudo[9] = proto;
  pseudo[10] = l4.length >> 8;
  pseudo[11] = l4.length & 255;
  pseudo.set(l4, 12);
  return refChecksum(pseudo);
}

interface PktOpts {
  src?: string;
  dst?: string;
  ttl?: number | undefined;
  proto?: number;
  id?: number | undefined;
  frag?: number;
  payload?: Uint8Array;
  ihl?: number;
}

/** A valid IPv4 packet with a correct header checksum. */
function ipPacket(o: PktOpts = {}): Uint8Array {
  const ihl = o.ihl ?? 5;
  const payload = o.payload ?? new Uint8Array(16).map((_, i) => i);
  const total = ihl * 4 + payload.length;
  const u8 = new Uint8Array(total);
  const dv = dvOf(u8);
  u8[0] = 0x40 | ihl;
  dv.setUint16(2, total);
  dv.setUint16(4, o.id ?? 0x1234);
  dv.setUint16(6, o.frag ?? 0x4000);
  u8[8] = o.ttl ?? 64;
  u8[9] = o.proto ?? P.PROTO_UDP;
  dv.setUint32(12, ipv4(o.src ?? '10.244.1.5'));
  dv.setUint32(16, ipv4(o.dst ?? '10.244.2.7'));
  for (let i = 20; i < ihl * 4; i++) u8[i] = 1; // NOP options
  u8.set(payload, ihl * 4);
  dv.setUint16(10, fullIpChecksum(u8));
  return u8;
}

interface TcpOpts {
  seq?: number;
  ack?: number;
  flags?: number;
  win?: number;
  sport?: number;
  dport?: number;
  options?: Uint8Array | undefined;
  payload: Uint8Array;
  id?: number;
  ttl?: number;
}

/** A TCP/IPv4 packet with correct checksums. */
function tcpPacket(o: TcpOpts): Uint8Array {
  const opt = o.options ?? new Uint8Array(0);
  const thl = 20 + opt.length;
  const tcp = new Uint8Array(thl + o.payload.length);
  const t = dvOf(tcp);
  t.setUint16(0, o.sport ?? 40000);
  t.setUint16(2, o.dport ?? 5201);
  t.setUint32(4, o.seq ?? 1000);
  t.setUint32(8, o.ack ?? 77);
  tcp[12] = (thl / 4) << 4;
  tcp[13] = o.flags ?? P.TCP_FLAGS.ACK;
  t.setUint16(14, o.win ?? 502);
  tcp.set(opt, 20);
  tcp.set(o.payload, thl);
  const pkt = ipPacket({ proto: P.PROTO_TCP, payload: tcp, id: o.id, ttl: o.ttl });
  dvOf(pkt).setUint16(20 + 16, fullL4Checksum(pkt, P.PROTO_TCP, 16));
  return pkt;
}

const TS_OPTS = hex('0101080a 0001e240 0000d431'); // NOP NOP timestamps

function routes(list: [string, number, string][]): P.RouteTable {
  return new P.RouteTable(P.encodeRoutes(list.map(([n, p, peer]) => ({ net: ipv4(n), prefix: p, peer: ipv4(peer) }))));
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

// ------------------------------------------------------------ checksums

describe('checksums', () => {
  test('RFC 1071 header example: 4500 0073 ... checksum b861', () => {
    const h = hex('4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7');
    assert.equal(P.ipv4HeaderChecksum(dvOf(h), 0, 20), 0xb861);
    assert.equal(P.sum16(dvOf(h), 0, 20), 0xffff, 'a correct header sums to 0xffff');
    assert.equal(P.internetChecksum(dvOf(h), 0, 20), 0);
  });

  test('sum16 matches a byte-wise reference for every length and alignment', () => {
    const r = rng(1);
    const buf = new Uint8Array(300).map(() => Math.floor(r() * 256));
    for (let off = 0; off < 5; off++) {
      for (let len = 0; len <= 290; len++) assert.equal(P.sum16(dvOf(buf), off, len), refSum(buf, off, len), `off ${off} len ${len}`);
    }
    const ones = new Uint8Array(70000).fill(0xff);
    assert.equal(P.sum16(dvOf(ones), 0, ones.length), 0xffff);
    assert.equal(P.sum16(dvOf(new Uint8Array(64)), 0, 64), 0);
  });

  test('fold16 folds large sums', () => {
    assert.equal(P.fold16(0), 0);
    assert.equal(P.fold16(0x1fffe), 0xffff);
    assert.equal(P.fold16(0xffff), 0xffff);
    assert.equal(P.fold16(2 ** 40 + 5), P.fold16((2 ** 40) % 65535 + 5));
  });

  test('RFC 1624 incremental update equals full recomputation', () => {
    const r = rng(7);
    for (let i = 0; i < 20000; i++) {
      const h = new Uint8Array(20).map(() => Math.floor(r() * 256));
      h[0] = 0x45;
      h[10] = 0;
      h[11] = 0;
      const dv = dvOf(h);
      dv.setUint16(10, fullIpChecksum(h));
      const oldWord = dv.getUint16(8);
      const newWord = Math.floor(r() * 65536);
      const patched = P.csumReplace16(dv.getUint16(10), oldWord, newWord);
      dv.setUint16(8, newWord);
      assert.equal(patched, fullIpChecksum(h));
    }
  });
});

// ------------------------------------------------------------ IPv4 + TTL

describe('IPv4 header checks and TTL', () => {
  test('decrementTtl on the RFC example: TTL 0x40 -> 0x3f, checksum b861 -> b961', () => {
    const h = hex('4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7');
    assert.equal(P.decrementTtl(dvOf(h), 0), true);
    assert.equal(h[8], 0x3f);
    assert.equal(dvOf(h).getUint16(10), 0xb961);
    assert.equal(dvOf(h).getUint16(10), fullIpChecksum(h));
  });

  test('decrementTtl matches full recomputation for every TTL and many headers', () => {
    const r = rng(3);
    for (let ttl = 0; ttl < 256; ttl++) {
      for (let k = 0; k < 60; k++) {
        const pkt = ipPacket({ ttl, proto: Math.floor(r() * 256), id: Math.floor(r() * 65536), src: `10.${k}.${ttl}.1`, dst: `192.168.${k}.${ttl}` });
        const before = pkt.slice();
        const ok = P.decrementTtl(dvOf(pkt), 0);
        if (ttl <= 1) {
          assert.equal(ok, false);
          assert.deepEqual(pkt, before, 'unchanged when dropped');
        } else {
          assert.equal(ok, true);
          assert.equal(pkt[8], ttl - 1);
          assert.equal(dvOf(pkt).getUint16(10), fullIpChecksum(pkt), `ttl ${ttl}`);
        }
      }
    }
  });

  test('checksum wrap-around cases of the incremental update', () => {
    // Find headers whose checksum is 0x0000 / 0xfeff-ish before or after the update.
    const r = rng(11);
    let hits = 0;
    for (let i = 0; i < 400000 && hits < 50; i++) {
      const pkt = ipPacket({ ttl: 2 + Math.floor(r() * 254), id: Math.floor(r() * 65536), proto: Math.floor(r() * 256) });
      const c = dvOf(pkt).getUint16(10);
      if (c > 0x0100 && c < 0xfe00) continue;
      hits++;
      P.decrementTtl(dvOf(pkt), 0);
      assert.equal(dvOf(pkt).getUint16(10), fullIpChecksum(pkt));
    }
    assert.ok(hits > 10);
  });

  test('ipv4Check verdicts', () => {
    const good = ipPacket();
    const dv = dvOf(good);
    assert.equal(P.ipv4Check(dv, 0, good.length), P.OK);
    assert.equal(P.ipv4Check(dv, 0, 19), P.SHORT);
    assert.equal(P.ipv4Check(dv, 0, 0), P.SHORT);
    const v6 = good.slice();
    v6[0] = 0x60;
    assert.equal(P.ipv4Check(dvOf(v6), 0, v6.length), P.NOT_IPV4);
    const ihl4 = good.slice();
    ihl4[0] = 0x44;
    assert.equal(P.ipv4Check(dvOf(ihl4), 0, ihl4.length), P.BAD_HEADER_LEN);
    const ihl15 = good.slice(0, 24);
    ihl15[0] = 0x4f;
    assert.equal(P.ipv4Check(dvOf(ihl15), 0, ihl15.length), P.BAD_HEADER_LEN);
    const long = good.slice();
    dvOf(long).setUint16(2, good.length + 1);
    assert.equal(P.ipv4Check(dvOf(long), 0, long.length), P.BAD_TOTAL_LEN);
    const tiny = good.slice();
    dvOf(tiny).setUint16(2, 19);
    assert.equal(P.ipv4Check(dvOf(tiny), 0, tiny.length), P.BAD_TOTAL_LEN);
    // Padding after Total Length is fine (Ethernet minimum frames, etc.).
    const padded = new Uint8Array(good.length + 10);
    padded.set(good);
    assert.equal(P.ipv4Check(dvOf(padded), 0, padded.length), P.OK);
  });
});

// ------------------------------------------------------------ ICMP

describe('ICMP net unreachable', () => {
  const tunAddr = ipv4('10.244.1.0');

  function build(pkt: Uint8Array): Uint8Array | null {
    const out = new Uint8Array(P.ICMP_UNREACH_MAX);
    const n = P.buildNetUnreachable(dvOf(pkt), 0, pkt.length, dvOf(out), 0, tunAddr);
    return n === 0 ? null : out.slice(0, n);
  }

  test('for a UDP packet: exact bytes', () => {
    const pkt = ipPacket({ src: '10.244.1.5', dst: '10.244.99.1', ttl: 64, proto: P.PROTO_UDP });
    const icmp = build(pkt)!;
    assert.equal(icmp.length, 20 + 8 + 28);
    const dv = dvOf(icmp);
    // IP header
    assert.deepEqual([...icmp.subarray(0, 10)], [0x45, 0, 0, 56, 0, 0, 0, 0, 8, 1]);
    assert.equal(dv.getUint32(12), tunAddr);
    assert.equal(dv.getUint32(16), ipv4('10.244.1.5'));
    assert.equal(dv.getUint16(10), fullIpChecksum(icmp));
    // ICMP header: type 3 code 0, checksum over ICMP part verifies
    assert.equal(icmp[20], 3);
    assert.equal(icmp[21], 0);
    assert.equal(dv.getUint32(24), 0);
    assert.equal(refSum(icmp, 20), 0xffff);
    // quoted: offending header + first 8 bytes
    assert.deepEqual([...icmp.subarray(28)], [...pkt.subarray(0, 28)]);
  });

  test('known byte sequence', () => {
    const pkt = hex(`
      4500 002c 1234 4000 4011 0000 0af4 0105 0af4 6301
      9c40 1451 0018 0000 0001 0203 0405 0607 0809 0a0b 0c0d 0e0f`);
    dvOf(pkt).setUint16(10, fullIpChecksum(pkt));
    const icmp = build(pkt)!;
    const expected = hex(`
      4500 0038 0000 0000 0801 xxxx 0af4 0100 0af4 0105
      0300 yyyy 0000 0000
      4500 002c 1234 4000 4011 zzzz 0af4 0105 0af4 6301 9c40 1451 0018 0000`
      .replace('xxxx', fullIpChecksum(icmp).toString(16).padStart(4, '0'))
      .replace('yyyy', dvOf(icmp).getUint16(22).toString(16).padStart(4, '0'))
      .replace('zzzz', dvOf(pkt).getUint16(10).toString(16).padStart(4, '0')));
    assert.deepEqual([...icmp], [...expected]);
    assert.equal(refSum(icmp, 20), 0xffff);
  });

  test('quotes IP options, and only what the packet has', () => {
    const withOpts = ipPacket({ ihl: 7, payload: new Uint8Array(30).fill(9) });
    const icmp = build(withOpts)!;
    assert.equal(icmp.length, 28 + 28 + 8);
    assert.deepEqual([...icmp.subarray(28)], [...withOpts.subarray(0, 36)]);
    const short = ipPacket({ payload: new Uint8Array(3).fill(5) });
    const i2 = build(short)!;
    assert.equal(i2.length, 28 + 23);
    assert.equal(refSum(i2, 20), 0xffff);
  });

  test('not for ICMP errors/replies, later fragments, bad sources, malformed packets', () => {
    const echo = ipPacket({ proto: P.PROTO_ICMP, payload: hex('0800 0000 0001 0001') });
    assert.notEqual(build(echo), null, 'echo request: answered (RFC 1122; flannel stays silent)');
    const reply = ipPacket({ proto: P.PROTO_ICMP, payload: hex('0000 0000 0001 0001') });
    assert.equal(build(reply), null);
    const err = ipPacket({ proto: P.PROTO_ICMP, payload: hex('0300 0000 0000 0000') });
    assert.equal(build(err), null, 'never an error about an error');
    const emptyIcmp = ipPacket({ proto: P.PROTO_ICMP, payload: new Uint8Array(0) });
    assert.equal(build(emptyIcmp), null);
    assert.equal(build(ipPacket({ frag: 0x2000 | 185 })), null, 'non-first fragment');
    assert.notEqual(build(ipPacket({ frag: 0x2000 })), null, 'first fragment (MF, offset 0) is answered');
    assert.equal(build(ipPacket({ src: '0.0.0.0' })), null);
    assert.equal(build(ipPacket({ src: '224.0.0.5' })), null);
    assert.equal(build(ipPacket({ src: '255.255.255.255' })), null);
    assert.equal(build(ipPacket().slice(0, 19)), null);
  });
});

// ------------------------------------------------------------ routes

describe('RouteTable', () => {
  test('exact subnet match, no route, longest prefix wins', () => {
    const t = routes([
      ['10.244.2.0', 24, '192.0.2.2'],
      ['10.244.3.0', 24, '192.0.2.3'],
      ['10.244.0.0', 16, '192.0.2.9'],
      ['10.244.3.128', 25, '192.0.2.4'],
    ]);
    assert.equal(t.size, 4);
    assert.equal(t.lookup(ipv4('10.244.2.1')), ipv4('192.0.2.2'));
    assert.equal(t.lookup(ipv4('10.244.2.255')), ipv4('192.0.2.2'));
    assert.equal(t.lookup(ipv4('10.244.3.1')), ipv4('192.0.2.3'));
    assert.equal(t.lookup(ipv4('10.244.3.200')), ipv4('192.0.2.4'));
    assert.equal(t.lookup(ipv4('10.244.3.1')), ipv4('192.0.2.3'), 'cache does not hide the /24 after a /25 hit');
    assert.equal(t.lookup(ipv4('10.244.99.1')), ipv4('192.0.2.9'));
    assert.equal(t.lookup(ipv4('10.245.0.1')), 0);
  });

  test('the one-entry cache follows alternating destinations', () => {
    const t = routes([
      ['10.244.2.0', 24, '192.0.2.2'],
      ['10.244.3.0', 24, '192.0.2.3'],
    ]);
    for (let i = 0; i < 10; i++) {
      assert.equal(t.lookup(ipv4('10.244.2.9')), ipv4('192.0.2.2'));
      assert.equal(t.lookup(ipv4('10.244.3.9')), ipv4('192.0.2.3'));
      assert.equal(t.lookup(ipv4('10.244.4.9')), 0);
    }
  });

  test('empty table, unmasked input, unusable entries', () => {
    assert.equal(new P.RouteTable().lookup(ipv4('10.0.0.1')), 0);
    const t = new P.RouteTable(P.encodeRoutes([
      { net: ipv4('10.244.2.77'), prefix: 24, peer: ipv4('192.0.2.2') },
      { net: ipv4('10.244.5.0'), prefix: 24, peer: 0 },
      { net: ipv4('10.244.6.0'), prefix: 40, peer: ipv4('192.0.2.6') },
    ]));
    assert.equal(t.size, 1);
    assert.equal(t.lookup(ipv4('10.244.2.1')), ipv4('192.0.2.2'));
    assert.equal(t.lookup(ipv4('10.244.5.1')), 0);
  });

  test('many subnets', () => {
    const list: [string, number, string][] = [];
    for (let i = 0; i < 256; i++) list.push([`10.244.${i}.0`, 24, `192.0.${i >> 4}.${(i & 15) + 1}`]);
    const t = routes(list);
    for (let i = 0; i < 256; i++) assert.equal(t.lookup(ipv4(`10.244.${i}.42`)), ipv4(`192.0.${i >> 4}.${(i & 15) + 1}`));
  });
});

// ------------------------------------------------------------ verdicts

describe('forwarding decisions', () => {
  const table = routes([['10.244.2.0', 24, '192.0.2.2']]);

  test('tunVerdict: forward decrements the TTL and names the peer', () => {
    const pkt = ipPacket({ dst: '10.244.2.7', ttl: 64 });
    const hop = { peer: 0 };
    assert.equal(P.tunVerdict(dvOf(pkt), 0, pkt.length, table, hop), P.OK);
    assert.equal(hop.peer, ipv4('192.0.2.2'));
    assert.equal(pkt[8], 63);
    assert.equal(dvOf(pkt).getUint16(10), fullIpChecksum(pkt));
  });

  test('tunVerdict: no route leaves the packet untouched; TTL 1 expires', () => {
    const pkt = ipPacket({ dst: '10.244.99.1' });
    const before = pkt.slice();
    assert.equal(P.tunVerdict(dvOf(pkt), 0, pkt.length, table, { peer: 0 }), P.NO_ROUTE);
    assert.deepEqual(pkt, before);
    const dying = ipPacket({ dst: '10.244.2.1', ttl: 1 });
    assert.equal(P.tunVerdict(dvOf(dying), 0, dying.length, table, { peer: 0 }), P.TTL_EXPIRED);
    // no route is decided before the TTL (as flannel: the ICMP goes out even for TTL 1)
    const dyingNoRoute = ipPacket({ dst: '10.244.99.1', ttl: 1 });
    assert.equal(P.tunVerdict(dvOf(dyingNoRoute), 0, dyingNoRoute.length, table, { peer: 0 }), P.NO_ROUTE);
  });

  test('udpVerdict: every drop reason', () => {
    const good = ipPacket({ ttl: 5 });
    assert.equal(P.udpVerdict(dvOf(good), 0, good.length), P.OK);
    assert.equal(good[8], 4);
    assert.equal(P.udpVerdict(dvOf(good), 0, 10), P.SHORT);
    const v6 = ipPacket();
    v6[0] = 0x60;
    assert.equal(P.udpVerdict(dvOf(v6), 0, v6.length), P.NOT_IPV4);
    const badIhl = ipPacket();
    badIhl[0] = 0x43;
    assert.equal(P.udpVerdict(dvOf(badIhl), 0, badIhl.length), P.BAD_HEADER_LEN);
    const cut = ipPacket({ payload: new Uint8Array(100) });
    assert.equal(P.udpVerdict(dvOf(cut), 0, 60), P.BAD_TOTAL_LEN, 'total length larger than the datagram');
    for (const ttl of [0, 1]) {
      const p = ipPacket({ ttl });
      assert.equal(P.udpVerdict(dvOf(p), 0, p.length), P.TTL_EXPIRED);
    }
  });
});

// ------------------------------------------------------------ checksum offload

describe('completeChecksum (NEEDS_CSUM from the TUN)', () => {
  test('UDP and TCP partial checksums are completed to the full value', () => {
    for (const proto of [P.PROTO_UDP, P.PROTO_TCP]) {
      for (const size of [0, 1, 2, 3, 100, 1401]) {
        const payload = new Uint8Array(size).map((_, i) => (i * 31 + size) & 255);
        const pkt = proto === P.PROTO_TCP ? tcpPacket({ payload }) : ipPacket({ payload: udpSegment(payload) });
        const fieldAt = proto === P.PROTO_TCP ? 16 : 6;
        const full = fullL4Checksum(pkt, proto, fieldAt);
        // what the kernel hands over: the pseudo-header sum in the field
        const l4len = pkt.length - 20;
        const pseudo = P.fold16(((pkt[12]! << 8) | pkt[13]!) + ((pkt[14]! << 8) | pkt[15]!) + ((pkt[16]! << 8) | pkt[17]!) + ((pkt[18]! << 8) | pkt[19]!) + proto + l4len);
        dvOf(pkt).setUint16(20 + fieldAt, pseudo);
        assert.equal(P.completeChecksum(dvOf(pkt), 0, pkt.length, 20, fieldAt), true);
        const got = dvOf(pkt).getUint16(20 + fieldAt);
        assert.ok(got === full || (full === 0 && got === 0xffff), `proto ${proto} size ${size}: ${got} vs ${full}`);
      }
    }
  });

  test('offsets outside the packet are refused', () => {
    const pkt = ipPacket();
    assert.equal(P.completeChecksum(dvOf(pkt), 0, pkt.length, pkt.length, 0), false);
    assert.equal(P.completeChecksum(dvOf(pkt), 0, pkt.length, 20, pkt.length - 21), false);
  });

  function udpSegment(payload: Uint8Array): Uint8Array {
    const u = new Uint8Array(8 + payload.length);
    dvOf(u).setUint16(0, 5000);
    dvOf(u).setUint16(2, 8285);
    dvOf(u).setUint16(4, u.length);
    u.set(payload, 8);
    return u;
  }
});

// ------------------------------------------------------------ TSO and GRO

describe('TSO segmentation and TCP coalescing', () => {
  const payload = new Uint8Array(3500).map((_, i) => (i * 7 + (i >> 8)) & 255);

  function superPacket(flags = P.TCP_FLAGS.ACK | P.TCP_FLAGS.PSH): Uint8Array {
    // As the kernel hands it over: Total Length = whole, checksums don't matter.
    return tcpPacket({ payload, seq: 0xfffff000, flags, options: TS_OPTS, id: 0xfffe });
  }

  function segment(sp: Uint8Array, mss: number): { info: P.TsoInfo; segs: Uint8Array[] } {
    const info = P.newTsoInfo();
    assert.equal(P.parseTso(dvOf(sp), 0, sp.length, mss, info), P.OK);
    const segs: Uint8Array[] = [];
    for (let i = 0; i < info.segs; i++) {
      const len = i === info.segs - 1 ? info.lastLen : mss;
      const out = new Uint8Array(info.hdrLen + len);
      P.writeTsoSegmentHeader(dvOf(sp), 0, info, i, dvOf(out), 0);
      // Same result when the caller supplies the payload sum.
      const out2 = new Uint8Array(info.hdrLen);
      P.writeTsoSegmentHeader(dvOf(sp), 0, info, i, dvOf(out2), 0, P.sum16(dvOf(sp), P.tsoPayloadOff(info, i), P.tsoPayloadLen(info, i)));
      assert.deepEqual(out2, out.subarray(0, info.hdrLen));
      out.set(sp.subarray(info.hdrLen + i * mss, info.hdrLen + i * mss + len), info.hdrLen);
      segs.push(out);
    }
    return { info, segs };
  }

  test('segments are complete packets with correct checksums, sequence, IDs and flags', () => {
    const sp = superPacket(P.TCP_FLAGS.ACK | P.TCP_FLAGS.PSH | P.TCP_FLAGS.FIN | P.TCP_FLAGS.CWR);
    const { info, segs } = segment(sp, 1000);
    assert.deepEqual({ hdrLen: info.hdrLen, segs: info.segs, lastLen: info.lastLen }, { hdrLen: 52, segs: 4, lastLen: 500 });
    segs.forEach((s, i) => {
      const dv = dvOf(s);
      assert.equal(dv.getUint16(2), s.length);
      assert.equal(dv.getUint16(4), (0xfffe + i) & 0xffff, 'IP ID increments (and wraps)');
      assert.equal(dv.getUint16(10), fullIpChecksum(s));
      assert.equal(dv.getUint32(24), (0xfffff000 + i * 1000) >>> 0, 'sequence advances (and wraps)');
      const flags = s[33]!;
      const last = i === segs.length - 1;
      assert.equal(!!(flags & P.TCP_FLAGS.PSH), last);
      assert.equal(!!(flags & P.TCP_FLAGS.FIN), last);
      assert.equal(!!(flags & P.TCP_FLAGS.CWR), i === 0);
      assert.equal(dv.getUint16(36), fullL4Checksum(s, P.PROTO_TCP, 16), `TCP checksum of segment ${i}`);
      assert.deepEqual([...s.subarray(40, 52)], [...TS_OPTS]);
    });
    const joined = new Uint8Array(segs.reduce((n, s) => n + s.length - 52, 0));
    let at = 0;
    for (const s of segs) {
      joined.set(s.subarray(52), at);
      at += s.length - 52;
    }
    assert.deepEqual(joined, payload);
  });

  test('parseTso refuses what it cannot split', () => {
    const info = P.newTsoInfo();
    const sp = superPacket();
    const dv = dvOf(sp);
    assert.equal(P.parseTso(dv, 0, sp.length, 0, info), P.BAD_GSO);
    assert.equal(P.parseTso(dv, 0, sp.length - 1, 1000, info), P.BAD_TOTAL_LEN);
    const padded = new Uint8Array(sp.length + 1);
    padded.set(sp);
    assert.equal(P.parseTso(dvOf(padded), 0, padded.length, 1000, info), P.BAD_GSO, 'Total Length must match the read');
    const udp = ipPacket({ payload: new Uint8Array(3000) });
    assert.equal(P.parseTso(dvOf(udp), 0, udp.length, 1000, info), P.BAD_GSO);
    const frag = sp.slice();
    frag[6] |= 0x20;
    assert.equal(P.parseTso(dvOf(frag), 0, frag.length, 1000, info), P.BAD_GSO);
    const badThl = sp.slice();
    badThl[32] = 0x40;
    assert.equal(P.parseTso(dvOf(badThl), 0, badThl.length, 1000, info), P.BAD_GSO);
    const headerOnly = tcpPacket({ payload: new Uint8Array(0) });
    assert.equal(P.parseTso(dvOf(headerOnly), 0, headerOnly.length, 1000, info), P.BAD_GSO);
  });

  /** Packs packets into one arena, as the receive buffers are. */
  function arena(pkts: Uint8Array[]): { dv: DataView; offs: number[] } {
    const { u8, offs } = packArena(pkts, 8);
    return { dv: dvOf(u8), offs };
  }

  test('coalescing the segments gives back the super-packet (virtio header, lengths, partial checksum)', () => {
    const sp = superPacket();
    const { segs } = segment(sp, 1000);
    const { dv, offs } = arena(segs);
    const co = new P.TcpCoalescer(dv);
    assert.equal(P.TcpCoalescer.eligible(dv, offs[0]!, segs[0]!.length), true);
    co.start(offs[0]!);
    for (let i = 1; i < segs.length; i++) assert.equal(co.append(offs[i]!), true, `segment ${i}`);
    assert.equal(co.count, 4);
    const out = new Uint8Array(200);
    const n = co.writeHeader(dvOf(out), 0);
    assert.equal(n, 10 + 52);
    const o = dvOf(out);
    assert.deepEqual([out[0], out[1], o.getUint16(2, true), o.getUint16(4, true), o.getUint16(6, true), o.getUint16(8, true)], [1, 1, 52, 1000, 20, 16]);
    // The merged packet = header + payloads in order.
    const merged = new Uint8Array(52 + payload.length);
    merged.set(out.subarray(10, 62));
    let at = 52;
    for (let i = 0; i < co.count; i++) {
      merged.set(new Uint8Array(dv.buffer, co.payloadOff(i), co.payloadLen(i)), at);
      at += co.payloadLen(i);
    }
    assert.deepEqual(merged.subarray(52), payload);
    const m = dvOf(merged);
    assert.equal(m.getUint16(2), merged.length);
    assert.equal(m.getUint16(4), 0xfffe, 'first segment IP ID');
    assert.equal(m.getUint16(10), fullIpChecksum(merged));
    assert.equal(m.getUint32(24), 0xfffff000);
    assert.equal(merged[33], P.TCP_FLAGS.ACK | P.TCP_FLAGS.PSH, 'PSH of the last segment carried over');
    // NEEDS_CSUM: completing the checksum yields the correct full TCP checksum.
    assert.equal(P.completeChecksum(m, 0, merged.length, 20, 16), true);
    assert.equal(m.getUint16(36), fullL4Checksum(merged, P.PROTO_TCP, 16));
  });

  test('coalescing stops at anything that is not the next segment of the same flow', () => {
    const base = { payload: new Uint8Array(1000).fill(1), options: TS_OPTS };
    const a = tcpPacket({ ...base, seq: 1000 });
    const cases: [string, Uint8Array][] = [
      ['sequence gap', tcpPacket({ ...base, seq: 2001 })],
      ['other port', tcpPacket({ ...base, seq: 2000, sport: 40001 })],
      ['other ack', tcpPacket({ ...base, seq: 2000, ack: 78 })],
      ['other window', tcpPacket({ ...base, seq: 2000, win: 600 })],
      ['other options', tcpPacket({ ...base, seq: 2000, options: hex('0101080a 0001e241 0000d431') })],
      ['bigger than the first', tcpPacket({ ...base, seq: 2000, payload: new Uint8Array(1001) })],
      ['other TTL', tcpPacket({ ...base, seq: 2000, ttl: 63 })],
    ];
    for (const [what, b] of cases) {
      const { dv, offs } = arena([a, b]);
      const co = new P.TcpCoalescer(dv);
      co.start(offs[0]!);
      assert.equal(co.append(offs[1]!), false, what);
    }
    // Not eligible to start or join at all.
    for (const flags of [P.TCP_FLAGS.SYN | P.TCP_FLAGS.ACK, P.TCP_FLAGS.FIN | P.TCP_FLAGS.ACK, P.TCP_FLAGS.RST, P.TCP_FLAGS.ACK | P.TCP_FLAGS.URG, 0]) {
      const p = tcpPacket({ ...base, flags });
      assert.equal(P.TcpCoalescer.eligible(dvOf(p), 0, p.length), false, `flags ${flags}`);
    }
    const pureAck = tcpPacket({ payload: new Uint8Array(0) });
    assert.equal(P.TcpCoalescer.eligible(dvOf(pureAck), 0, pureAck.length), false, 'no payload');
    const udp = ipPacket({ payload: new Uint8Array(100) });
    assert.equal(P.TcpCoalescer.eligible(dvOf(udp), 0, udp.length), false);
  });

  test('only segments whose TCP checksum verifies are merged', () => {
    const good = tcpPacket({ payload: new Uint8Array(300).map((_, i) => i), options: TS_OPTS });
    const l4 = (p: Uint8Array) => P.sum16(dvOf(p), 20, p.length - 20);
    assert.equal(P.TcpCoalescer.checksumOk(dvOf(good), 0, l4(good)), true);
    const corrupt = good.slice();
    corrupt[100] ^= 0x40;
    assert.equal(P.TcpCoalescer.checksumOk(dvOf(corrupt), 0, l4(corrupt)), false);
    // Segments cut from a TSO packet verify.
    const sp = tcpPacket({ payload: new Uint8Array(2500).fill(7), options: TS_OPTS });
    const info = P.newTsoInfo();
    P.parseTso(dvOf(sp), 0, sp.length, 1000, info);
    for (let i = 0; i < info.segs; i++) {
      const seg = new Uint8Array(info.hdrLen + P.tsoPayloadLen(info, i));
      P.writeTsoSegmentHeader(dvOf(sp), 0, info, i, dvOf(seg), 0);
      seg.set(sp.subarray(P.tsoPayloadOff(info, i), P.tsoPayloadOff(info, i) + P.tsoPayloadLen(info, i)), info.hdrLen);
      assert.equal(P.TcpCoalescer.checksumOk(dvOf(seg), 0, l4(seg)), true, `segment ${i}`);
    }
  });

  test('a short segment or PSH closes the group', () => {
    const base = { options: TS_OPTS };
    const p1 = tcpPacket({ ...base, seq: 0, payload: new Uint8Array(1000) });
    const p2 = tcpPacket({ ...base, seq: 1000, payload: new Uint8Array(400) });
    const p3 = tcpPacket({ ...base, seq: 1400, payload: new Uint8Array(400) });
    const { dv, offs } = arena([p1, p2, p3]);
    const co = new P.TcpCoalescer(dv);
    co.start(offs[0]!);
    assert.equal(co.append(offs[1]!), true);
    assert.equal(co.append(offs[2]!), false);
    const q1 = tcpPacket({ ...base, seq: 0, payload: new Uint8Array(1000), flags: P.TCP_FLAGS.ACK | P.TCP_FLAGS.PSH });
    const q2 = tcpPacket({ ...base, seq: 1000, payload: new Uint8Array(1000) });
    const b = arena([q1, q2]);
    const co2 = new P.TcpCoalescer(b.dv);
    co2.start(b.offs[0]!);
    assert.equal(co2.append(b.offs[1]!), false, 'nothing joins after PSH');
  });

  test('the merged packet never exceeds 65535 bytes', () => {
    const pkts: Uint8Array[] = [];
    for (let i = 0; i < 50; i++) pkts.push(tcpPacket({ seq: i * 1448, payload: new Uint8Array(1448), options: TS_OPTS }));
    const { dv, offs } = arena(pkts);
    const co = new P.TcpCoalescer(dv);
    co.start(offs[0]!);
    let i = 1;
    while (i < pkts.length && co.append(offs[i]!)) i++;
    assert.ok(i < pkts.length);
    assert.ok(52 + i * 1448 <= 65535 && 52 + (i + 1) * 1448 > 65535, `stopped at ${i}`);
  });
});

// ------------------------------------------------------------ fuzz

describe('fuzz', () => {
  test('the guard itself catches out-of-packet accesses', () => {
    const g = guarded(new DataView(new ArrayBuffer(16)), 2, 6);
    assert.equal(g.getUint32(2), 0);
    assert.throws(() => g.getUint8(6), RangeError);
    assert.throws(() => g.getUint16(5), RangeError);
    assert.throws(() => g.getUint8(1), RangeError);
    assert.throws(() => g.setUint32(3, 1), RangeError);
    assert.throws(() => P.sum16(guarded(new DataView(new ArrayBuffer(40)), 0, 19), 0, 20), RangeError, "through a function under test");
  });

  const table = routes([
    ['10.244.2.0', 24, '192.0.2.2'],
    ['10.244.0.0', 16, '192.0.2.9'],
  ]);
  const seeds: Uint8Array[] = [
    ipPacket(),
    ipPacket({ ihl: 6, proto: P.PROTO_ICMP, payload: hex('0800 0000 0001 0001') }),
    ipPacket({ proto: P.PROTO_ICMP, payload: hex('0300 0000') }),
    ipPacket({ frag: 0x2000 | 3 }),
    tcpPacket({ payload: new Uint8Array(200).fill(3), options: TS_OPTS }),
    tcpPacket({ payload: new Uint8Array(0) }),
    hex('6000 0000 0008 1140 fe80 0000 0000 0000 0000 0000 0000 0001 ff02 0000 0000 0000 0000 0000 0000 0002'),
  ];

  function mutate(r: () => number): Uint8Array {
    const pick = r();
    let u8: Uint8Array;
    if (pick < 0.2) {
      u8 = new Uint8Array(Math.floor(r() * 80)).map(() => Math.floor(r() * 256));
      if (u8.length > 0 && r() < 0.7) u8[0] = 0x40 | (u8[0]! & 15);
    } else {
      u8 = seeds[Math.floor(r() * seeds.length)]!.slice();
      const flips = Math.floor(r() * 6);
      for (let i = 0; i < flips && u8.length > 0; i++) u8[Math.floor(r() * u8.length)] = Math.floor(r() * 256);
      if (r() < 0.3 && u8.length > 0) u8 = u8.slice(0, Math.floor(r() * u8.length)); // truncate
      if (r() < 0.2 && u8.length >= 4) {
        // extreme lengths
        const v = [0, 1, 19, 20, 21, u8.length - 1, u8.length, u8.length + 1, 0xffff][Math.floor(r() * 9)]!;
        new DataView(u8.buffer).setUint16(2, Math.max(0, Math.min(0xffff, v)));
      }
      if (r() < 0.1 && u8.length >= 1) u8[0] = [0x40, 0x44, 0x45, 0x46, 0x4f, 0x50][Math.floor(r() * 6)]!;
      if (r() < 0.1 && u8.length > 8) u8[8] = Math.floor(r() * 3); // TTL 0..2
    }
    return u8;
  }

  test('100k random and mutated packets through every parser and decision: no throw, no out-of-packet access', () => {
    const r = rng(0xf1a77e1);
    const out = new DataView(new ArrayBuffer(P.ICMP_UNREACH_MAX));
    const hop = { peer: 0 };
    const info = P.newTsoInfo();
    const counts = new Map<string, number>();
    const bump = (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1);
    for (let i = 0; i < 100_000; i++) {
      const pkt = mutate(r);
      // Put the packet at a random offset in a larger buffer with poison around it.
      const pad = Math.floor(r() * 8);
      const { buf, raw, dv, len } = place(pkt, pad);
      try {
        bump(`check:${P.VERDICT_NAMES[P.ipv4Check(dv, pad, len)]}`);
        const c = buf.slice();
        bump(`tun:${P.VERDICT_NAMES[P.tunVerdict(dv, pad, len, table, hop)]}`);
        buf.set(c);
        bump(`udp:${P.VERDICT_NAMES[P.udpVerdict(dv, pad, len)]}`);
        buf.set(c);
        const n = P.buildNetUnreachable(dv, pad, len, guarded(out, 0, P.ICMP_UNREACH_MAX), 0, ipv4('10.244.1.0'));
        if (n > 0) {
          bump('icmp');
          assert.equal(P.sum16(out, 20, n - 20), 0xffff, 'ICMP checksum verifies');
          assert.equal(P.sum16(out, 0, 20), 0xffff, 'IP checksum verifies');
        }
        P.completeChecksum(dv, pad, len, Math.floor(r() * (len + 4)), Math.floor(r() * 40));
        buf.set(c);
        if (P.parseTso(dv, pad, len, 1 + Math.floor(r() * 300), info) === P.OK) {
          bump('tso');
          const segOut = new DataView(new ArrayBuffer(info.hdrLen));
          for (let s = 0; s < info.segs; s++) P.writeTsoSegmentHeader(dv, pad, info, s, guarded(segOut, 0, info.hdrLen), 0);
        }
        if (P.ipv4Check(dv, pad, len) === P.OK) {
          const total = raw.getUint16(pad + 2);
          if (P.TcpCoalescer.eligible(dv, pad, total)) {
            bump('gro');
            if (P.TcpCoalescer.checksumOk(dv, pad, P.sum16(dv, pad + 20, total - 20))) bump('groChecksumOk');
            const co = new P.TcpCoalescer(dv);
            co.start(pad);
            co.append(pad);
            if (co.count > 0) co.writeHeader(new DataView(new ArrayBuffer(200)), 0);
          }
        }
      } catch (e) {
        assert.fail(`input ${Buffer.from(pkt).toString('hex')} (pad ${pad}): ${(e as Error).stack}`);
      }
    }
    // The corpus must reach the interesting branches, not just bounce off the first check.
    for (const k of ['check:ok', 'check:short', 'check:notIPv4', 'check:badHeaderLen', 'check:badTotalLen', 'tun:ok', 'tun:noRoute', 'tun:ttlExpired', 'udp:ok', 'icmp', 'tso', 'gro']) {
      assert.ok((counts.get(k) ?? 0) > 50, `fuzz reached ${k} only ${counts.get(k) ?? 0} times`);
    }
  });

  test('coalescer over random packet sequences in one arena: no throw, no access outside the arena', () => {
    const r = rng(99);
    for (let round = 0; round < 3000; round++) {
      const pkts: Uint8Array[] = [];
      const n = 1 + Math.floor(r() * 8);
      let seq = Math.floor(r() * 2 ** 32);
      for (let i = 0; i < n; i++) {
        const size = r() < 0.8 ? 100 : Math.floor(r() * 120);
        let p = tcpPacket({ seq, payload: new Uint8Array(size), options: r() < 0.5 ? TS_OPTS : undefined, flags: r() < 0.9 ? P.TCP_FLAGS.ACK : Math.floor(r() * 256) });
        seq = (seq + (r() < 0.9 ? size : 1)) >>> 0;
        if (r() < 0.2) {
          p = p.slice();
          p[Math.floor(r() * p.length)] = Math.floor(r() * 256);
        }
        pkts.push(p);
      }
      const { ab, offs, total } = packArena(pkts);
      const dv = guarded(new DataView(ab), 0, total);
      const co = new P.TcpCoalescer(dv, 4);
      const hdr = new DataView(new ArrayBuffer(200));
      pkts.forEach((p, i) => {
        const off = offs[i]!;
        if (P.ipv4Check(dv, off, p.length) !== P.OK) return;
        const plen = new DataView(ab).getUint16(off + 2);
        if (!P.TcpCoalescer.eligible(dv, off, plen)) {
          if (co.count > 1) co.writeHeader(hdr, 0);
          co.reset();
          return;
        }
        if (!co.append(off)) {
          if (co.count > 1) co.writeHeader(hdr, 0);
          co.start(off);
        }
      });
      if (co.count > 1) co.writeHeader(hdr, 0);
    }
  });
});
