// Request encodings checked against known byte sequences. The expected bytes
// were captured from iproute2 (`strace -e trace=sendmsg -xx ip ...`) on Linux
// 6.x, with only the sequence number and interface indexes normalised. Any
// difference means the kernel would see a different request than `ip` sends.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as C from './constants.js';
import {
  delAddrRequest,
  delFdbRequest,
  delLinkRequest,
  delNeighRequest,
  delRouteRequest,
  dumpFdbRequest,
  dumpLinksRequest,
  dumpNeighsRequest,
  dumpRoutesRequest,
  getLinkRequest,
  isDumpRequest,
  newAddrRequest,
  newFdbRequest,
  newNeighRequest,
  newRouteRequest,
  newVxlanRequest,
  serializeRequest,
  setLinkRequest,
} from './requests.js';

/** Hex fixture: whitespace and '|' are separators, '//' starts a comment. */
function hex(s: string): Buffer {
  const text = s.replace(/\/\/.*$/gm, '').replace(/[\s|]/g, '');
  assert.match(text, /^([0-9a-f]{2})*$/i, 'malformed hex fixture');
  return Buffer.from(text, 'hex');
}

/** Compares as hex text so a mismatch shows up as a readable diff. */
function assertBytes(actual: Buffer, expected: Buffer): void {
  assert.equal(actual.toString('hex'), expected.toString('hex'));
}

test('neighbour replace = `ip neigh replace 10.244.2.0 lladdr 6e:5a:1c:01:02:03 dev #5 nud permanent`', () => {
  const req = newNeighRequest({ ifindex: 5, ip: '10.244.2.0', mac: '6e:5a:1c:01:02:03' });
  const expected = hex(`
    30000000 1c00 0505 01000000 00000000  // nlmsghdr len 48 RTM_NEWNEIGH REQUEST|ACK|REPLACE|CREATE seq 1
    02 00 0000 05000000 8000 00 00  // ndmsg AF_INET ifindex 5 NUD_PERMANENT
    0800 0100 0af40200  // NDA_DST 10.244.2.0
    0a00 0200 6e5a1c010203 0000  // NDA_LLADDR + 2 pad
  `);
  assertBytes(serializeRequest(req, 1), expected);
  assert.equal(req.flags, C.NLM_F_REQUEST | C.NLM_F_ACK | C.NLM_F_CREATE | C.NLM_F_REPLACE);
});

test('fdb append = `bridge fdb append 6e:5a:1c:01:02:03 dev #5 dst 192.0.2.2 self permanent`', () => {
  // `bridge` sends NUD_NOARP|NUD_PERMANENT; pass that state to compare exactly.
  const req = newFdbRequest(
    { ifindex: 5, mac: '6e:5a:1c:01:02:03', dst: '192.0.2.2', state: C.NUD_NOARP | C.NUD_PERMANENT },
    'append',
  );
  const expected = hex(`
    30000000 1c00 050c 02000000 00000000  // len 48 RTM_NEWNEIGH REQUEST|ACK|CREATE|APPEND seq 2
    07 00 0000 05000000 c000 02 00  // ndmsg AF_BRIDGE ifindex 5 NOARP|PERMANENT NTF_SELF
    0a00 0200 6e5a1c010203 0000  // NDA_LLADDR
    0800 0100 c0000202  // NDA_DST 192.0.2.2
  `);
  assertBytes(serializeRequest(req, 2), expected);
});

test('fdb replace defaults: NTF_SELF, NUD_PERMANENT, CREATE|REPLACE (flannel NeighSet)', () => {
  const req = newFdbRequest({ ifindex: 7, mac: 'aa:bb:cc:dd:ee:ff', dst: '198.51.100.9' });
  const expected = hex(`
    30000000 1c00 0505 09000000 00000000
    07 00 0000 07000000 8000 02 00
    0a00 0200 aabbccddeeff 0000
    0800 0100 c6336409
  `);
  assertBytes(serializeRequest(req, 9), expected);
});

test('vxlan create = `ip link add flannel.1 type vxlan id 1 local 192.0.2.1 dev #3 nolearning dstport 8472`', () => {
  const req = newVxlanRequest({
    name: 'flannel.1',
    vni: 1,
    local: '192.0.2.1',
    linkIndex: 3,
    learning: false,
    port: 8472,
  });
  const expected = hex(`
    6c000000 1000 0506 03000000 00000000  // len 108 RTM_NEWLINK REQUEST|ACK|EXCL|CREATE seq 3
    00 00 0000 00000000 00000000 00000000  // ifinfomsg
    0e00 0300 666c616e6e656c2e3100 0000  // IFLA_IFNAME "flannel.1\\0"
    3c00 1200  // IFLA_LINKINFO (60)
      0900 0100 7678 6c61 6e 000000  //   IFLA_INFO_KIND "vxlan"
      2c00 0200  //   IFLA_INFO_DATA (44)
        0800 0300 03000000  //     IFLA_VXLAN_LINK 3
        0800 0100 01000000  //     IFLA_VXLAN_ID 1
        0800 0400 c0000201  //     IFLA_VXLAN_LOCAL 192.0.2.1
        0500 0700 00 000000  //     IFLA_VXLAN_LEARNING 0
        0600 0f00 2118 0000  //     IFLA_VXLAN_PORT 8472 (big-endian)
  `);
  assertBytes(serializeRequest(req, 3), expected);
});

test('vxlan create: port 0 omits IFLA_VXLAN_PORT; gbp, mtu, mac, up are encoded', () => {
  const req = newVxlanRequest({
    name: 'vx0',
    vni: 4096,
    port: 0,
    gbp: true,
    mtu: 1450,
    mac: '02:00:00:00:00:01',
    up: true,
  });
  const expected = hex(`
    5c000000 1000 0506 04000000 00000000  // len 92
    00 00 0000 00000000 01000000 01000000  // ifinfomsg flags IFF_UP change IFF_UP
    0800 0300 76783000  // IFLA_IFNAME "vx0\\0"
    0a00 0100 020000000001 0000  // IFLA_ADDRESS
    0800 0400 aa050000  // IFLA_MTU 1450
    2000 1200  // IFLA_LINKINFO (32)
      0900 0100 7678 6c61 6e 000000  //   IFLA_INFO_KIND "vxlan"
      1000 0200  //   IFLA_INFO_DATA (16)
        0800 0100 00100000  //     IFLA_VXLAN_ID 4096
        0400 1700  //     IFLA_VXLAN_GBP (flag)
  `);
  assertBytes(serializeRequest(req, 4), expected);
});

test('set link up = `ip link set dev #5 up`; set mtu; set address', () => {
  assertBytes(
    serializeRequest(setLinkRequest({ index: 5, up: true }), 5),
    hex(`20000000 1000 0500 05000000 00000000 | 00 00 0000 05000000 01000000 01000000`),
  );
  assertBytes(
    serializeRequest(setLinkRequest({ index: 5, mtu: 1400 }), 6),
    hex(`28000000 1000 0500 06000000 00000000 | 00 00 0000 05000000 00000000 00000000 | 0800 0400 78050000`),
  );
  assertBytes(
    serializeRequest(setLinkRequest({ index: 5, mac: '6E:5A:1C:00:00:01' }), 7),
    hex(`2c000000 1000 0500 07000000 00000000 | 00 00 0000 05000000 00000000 00000000 | 0a00 0100 6e5a1c000001 0000`),
  );
});

test('route replace = `ip route replace 10.244.2.0/24 via 10.244.2.0 dev #5 onlink`', () => {
  const req = newRouteRequest({ dst: '10.244.2.0/24', gw: '10.244.2.0', oif: 5, onlink: true });
  const expected = hex(`
    34000000 1800 0505 0a000000 00000000  // len 52 RTM_NEWROUTE REQUEST|ACK|REPLACE|CREATE
    02 18 00 00 fe 03 00 01 04000000  // rtmsg inet /24 main boot universe unicast RTNH_F_ONLINK
    0800 0100 0af40200  // RTA_DST
    0800 0500 0af40200  // RTA_GATEWAY
    0800 0400 05000000  // RTA_OIF 5
  `);
  assertBytes(serializeRequest(req, 10), expected);
});

test('blackhole route, table > 255, priority; delete uses kernel wildcards', () => {
  const bh = newRouteRequest({ dst: '10.244.0.0/16', type: 'blackhole', table: 1000, priority: 7 });
  assertBytes(
    serializeRequest(bh, 11),
    hex(`
      34000000 1800 0505 0b000000 00000000
      02 10 00 00 00 03 00 06 00000000  // table UNSPEC (RTA_TABLE carries it), RTN_BLACKHOLE, scope universe
      0800 0f00 e8030000  // RTA_TABLE 1000
      0800 0100 0af40000  // RTA_DST
      0800 0600 07000000  // RTA_PRIORITY 7
    `),
  );
  const del = delRouteRequest({ dst: '10.244.2.0/24' });
  assertBytes(
    serializeRequest(del, 12),
    hex(`
      24000000 1900 0500 0c000000 00000000  // RTM_DELROUTE REQUEST|ACK
      02 18 00 00 fe 00 ff 00 00000000  // main, protocol 0, scope NOWHERE, type 0
      0800 0100 0af40200
    `),
  );
  // A gateway-less unicast route defaults to link scope, like iproute2.
  const direct = newRouteRequest({ dst: '10.0.0.0/8', oif: 2 });
  assert.equal(direct.body[6], C.RT_SCOPE_LINK);
});

test('address add/del, neighbour/fdb/link delete', () => {
  assertBytes(
    serializeRequest(newAddrRequest({ index: 5, cidr: '10.244.1.0/32' }), 13),
    hex(`
      28000000 1400 0506 0d000000 00000000  // RTM_NEWADDR REQUEST|ACK|EXCL|CREATE
      02 20 00 00 05000000  // ifaddrmsg inet /32 ifindex 5
      0800 0200 0af40100  // IFA_LOCAL
      0800 0100 0af40100  // IFA_ADDRESS
    `),
  );
  assert.equal(delAddrRequest({ index: 5, cidr: '10.244.1.0/32' }).type, C.RTM_DELADDR);
  assertBytes(
    serializeRequest(delNeighRequest({ ifindex: 5, ip: '10.244.2.0' }), 14),
    hex(`24000000 1d00 0500 0e000000 00000000 | 02 00 0000 05000000 0000 00 00 | 0800 0100 0af40200`),
  );
  assertBytes(
    serializeRequest(delFdbRequest({ ifindex: 5, mac: '6e:5a:1c:01:02:03', dst: '192.0.2.2' }), 15),
    hex(`30000000 1d00 0500 0f000000 00000000 | 07 00 0000 05000000 0000 02 00 | 0a00 0200 6e5a1c010203 0000 | 0800 0100 c0000202`),
  );
  assertBytes(
    serializeRequest(delLinkRequest(5), 16),
    hex(`20000000 1100 0500 10000000 00000000 | 00 00 0000 05000000 00000000 00000000`),
  );
});

test('get/dump requests', () => {
  assertBytes(
    serializeRequest(getLinkRequest({ name: 'flannel.1' }), 17),
    hex(`
      38000000 1200 0500 11000000 00000000
      00 00 0000 00000000 00000000 00000000
      0800 1d00 08000000  // IFLA_EXT_MASK RTEXT_FILTER_SKIP_STATS
      0e00 0300 666c616e6e656c2e3100 0000  // IFLA_IFNAME
    `),
  );
  assertBytes(
    serializeRequest(dumpLinksRequest(), 18),
    hex(`28000000 1200 0103 12000000 00000000 | 00 00 0000 00000000 00000000 00000000 | 0800 1d00 08000000`),
  );
  assertBytes(
    serializeRequest(dumpNeighsRequest(), 19),
    hex(`1c000000 1e00 0103 13000000 00000000 | 02 00 0000 00000000 0000 00 00`),
  );
  assertBytes(
    serializeRequest(dumpFdbRequest(), 20),
    hex(`1c000000 1e00 0103 14000000 00000000 | 07 00 0000 00000000 0000 00 00`),
  );
  assert.ok(isDumpRequest(dumpFdbRequest()));
  // NEW requests reuse the 0x300 bits for REPLACE|EXCL; they are not dumps.
  assert.ok(!isDumpRequest(newNeighRequest({ ifindex: 1, ip: '10.0.0.1', mac: '02:00:00:00:00:01' }, 'create')));
});

test('filtered dumps: the fields strict checking honours, with the bare form as fallback', () => {
  // neighbours of one device: ndm_ifindex must stay 0 under strict checking
  // (EINVAL otherwise); the device goes in NDA_IFINDEX, as `ip neigh show dev` sends it
  const neigh = dumpNeighsRequest(C.AF_INET, 5);
  assertBytes(
    serializeRequest(neigh, 21),
    hex(`24000000 1e00 0103 15000000 00000000 | 02 00 0000 00000000 0000 00 00 | 0800 0800 05000000  // NDA_IFINDEX 5`),
  );
  assertBytes(neigh.unfilteredBody!, hex(`02 00 0000 00000000 0000 00 00`));
  assert.equal(neigh.op, 'dump neighbours dev #5');
  // FDB of one device: the kernel takes the bridge port from ndm_ifindex
  const fdb = dumpFdbRequest(5);
  assertBytes(serializeRequest(fdb, 22), hex(`1c000000 1e00 0103 16000000 00000000 | 07 00 0000 05000000 0000 00 00`));
  assertBytes(fdb.unfilteredBody!, hex(`07 00 0000 00000000 0000 00 00`));
  // routes: table, protocol (and type) in the rtmsg header, the device as RTA_OIF; scope stays 0
  const rt = dumpRoutesRequest(C.AF_INET, { table: C.RT_TABLE_MAIN, oif: 5, protocol: C.RTPROT_FLANNEL });
  assertBytes(
    serializeRequest(rt, 23),
    hex(`
      24000000 1a00 0103 17000000 00000000
      02 00 00 00 fe de 00 00 00000000  // family, dst/src len, tos, table main, proto 222, scope, type, flags
      0800 0400 05000000                // RTA_OIF 5
    `),
  );
  assertBytes(rt.unfilteredBody!, hex(`02 00 00 00 00 00 00 00 00000000`));
  assert.equal(rt.op, 'dump routes table 254 dev #5 proto 222');
  // a table id above 255 travels as RTA_TABLE with rtm_table = 0
  assertBytes(
    serializeRequest(dumpRoutesRequest(C.AF_INET, { table: 1000, type: 'unicast' }), 24),
    hex(`24000000 1a00 0103 18000000 00000000 | 02 00 00 00 00 00 00 01 00000000 | 0800 0f00 e8030000`),
  );
  // without a filter: exactly the old unfiltered requests, no fallback needed
  for (const r of [dumpRoutesRequest(), dumpNeighsRequest(), dumpFdbRequest()]) assert.equal(r.unfilteredBody, undefined);
  assertBytes(serializeRequest(dumpRoutesRequest(), 25), hex(`1c000000 1a00 0103 19000000 00000000 | 02 00 00 00 00 00 00 00 00000000`));
  assert.throws(() => dumpNeighsRequest(C.AF_INET, 0), RangeError);
  assert.throws(() => dumpRoutesRequest(C.AF_INET, { protocol: 256 }), RangeError);
});

test('builders reject malformed input before anything is encoded', () => {
  assert.throws(() => newNeighRequest({ ifindex: 5, ip: '10.244.2', mac: '6e:5a:1c:01:02:03' }), TypeError);
  assert.throws(() => newNeighRequest({ ifindex: 5, ip: '10.244.2.0', mac: '6e5a1c010203' }), TypeError);
  assert.throws(() => newNeighRequest({ ifindex: 0, ip: '10.244.2.0', mac: '6e:5a:1c:01:02:03' }), RangeError);
  assert.throws(() => newRouteRequest({ dst: '10.244.2.0' }), TypeError);
  assert.throws(() => newRouteRequest({ dst: '10.244.2.0/33' }), TypeError);
  assert.throws(() => newVxlanRequest({ name: 'v', vni: 1, port: 70000 }), RangeError);
  assert.throws(() => newVxlanRequest({ name: 'v', vni: -1 }), RangeError);
});

test('IPv6: neighbour, route, address and FDB requests take AF_INET6 / 16-byte addresses from the address they carry; VXLAN uses IFLA_VXLAN_LOCAL6', () => {
  // RTM_NEWNEIGH: ndmsg (family 10, ifindex 7, NUD_PERMANENT), NDA_DST (len 20) fd00:10:244:2::, NDA_LLADDR
  const n = newNeighRequest({ ifindex: 7, ip: 'fd00:10:244:2::', mac: '0a:00:00:00:06:02' }).body;
  assertBytes(n, hex('0a 000000 07000000 8000 00 00 | 1400 0100 fd000010024400020000000000000000 | 0a00 0200 0a0000000602 0000'));
  assertBytes(delNeighRequest({ ifindex: 7, ip: 'fd00:10:244:2::' }).body.subarray(0, 1), hex('0a'));
  // RTM_NEWROUTE fd00:10:244:2::/64 via fd00:10:244:2:: dev 7 onlink: rtmsg family 10, dst_len 64, RTNH_F_ONLINK
  const r = newRouteRequest({ dst: 'fd00:10:244:2::/64', gw: 'fd00:10:244:2::', oif: 7, onlink: true }).body;
  assertBytes(r.subarray(0, 12), hex('0a 40 00 00 fe 03 00 01 04000000'));
  assertBytes(r.subarray(12), hex('1400 0100 fd000010024400020000000000000000 | 1400 0500 fd000010024400020000000000000000 | 0800 0400 07000000'));
  assertBytes(delRouteRequest({ dst: 'fd00:10:244:2::/64', oif: 7 }).body.subarray(0, 2), hex('0a 40'));
  // default route ::/0: no RTA_DST, as for 0.0.0.0/0
  assert.equal(newRouteRequest({ dst: '::/0', gw: 'fe80::1', oif: 7 }).body.length, 12 + 20 + 8);
  // RTM_NEWADDR fd00:10:244:1::/128: ifaddrmsg family 10, prefix 128; IFA_LOCAL and IFA_ADDRESS 16 bytes each
  const a = newAddrRequest({ index: 7, cidr: 'fd00:10:244:1::/128' }).body;
  assertBytes(a.subarray(0, 2), hex('0a 80'));
  assert.equal(a.length, 8 + 20 + 20);
  // FDB entry towards a v6 VTEP: AF_BRIDGE, NDA_DST 16 bytes
  const f = newFdbRequest({ ifindex: 7, mac: '0a:00:00:00:06:02', dst: '2001:db8::12' }).body;
  assertBytes(f.subarray(0, 1), hex('07'));
  assertBytes(f.subarray(12 + 12), hex('1400 0100 20010db8000000000000000000000012'));
  // VXLAN with a v6 local: IFLA_VXLAN_LOCAL6 (17), 16 bytes
  const v = newVxlanRequest({ name: 'flannel-v6.1', vni: 1, local: '2001:db8::11', linkIndex: 2 }).body;
  assert.ok(v.includes(hex('1400 1100 20010db8000000000000000000000011')), 'IFLA_VXLAN_LOCAL6');
  assert.ok(!v.includes(hex('0800 0400')), 'no IPv4 IFLA_VXLAN_LOCAL');
  assert.throws(() => newNeighRequest({ ifindex: 7, ip: 'fd00::zz', mac: '0a:00:00:00:06:02' }), TypeError);
});
