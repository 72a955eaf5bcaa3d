// Decoding rtnetlink objects from hand-written, kernel-shaped messages.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as C from './constants.js';
import { parseMessages } from './codec.js';
import { decodeAddr, decodeLink, decodeRoute, decodeRtnlMessage, nudStateNames } from './rtnl.js';
import { formatIPv6, formatMac, ipv4ToBytes, isIPv4, macToBytes, networkAddress, parseCidr } from './addr.js';

/** Hex fixture: whitespace and '|' are separators, '//' starts a comment. */
function hex(s: string): Buffer {
  const text = s.replace(/\/\/.*$/gm, '').replace(/[\s|]/g, '');
  assert.match(text, /^([0-9a-f]{2})*$/i, 'malformed hex fixture');
  return Buffer.from(text, 'hex');
}

function one(s: string) {
  const msgs = parseMessages(hex(s));
  assert.equal(msgs.length, 1);
  return msgs[0]!;
}

test('vxlan link: kind and vxlan info', () => {
  const msg = one(`
    9c000000 1000 0200 01000000 00000000  // RTM_NEWLINK len 156 MULTI
    00 00 0100 04000000 43100100 00000000  // ARPHRD_ETHER #4 UP|BROADCAST|RUNNING|MULTICAST|LOWER_UP
    0e00 0300 666c616e6e656c2e3100 0000  // IFLA_IFNAME flannel.1
    0800 0400 aa050000  // IFLA_MTU 1450
    0500 1000 00 000000  // IFLA_OPERSTATE unknown
    0a00 0100 6e5a1c000001 0000  // IFLA_ADDRESS
    5000 1200  // IFLA_LINKINFO
      0a00 0100 76786c616e00 0000  //   IFLA_INFO_KIND "vxlan\\0"
      4000 0200  //   IFLA_INFO_DATA
        0800 0100 01000000  //     ID 1
        0800 0300 03000000  //     LINK 3
        0800 0400 c0000201  //     LOCAL 192.0.2.1
        0500 0700 00 000000  //     LEARNING 0
        0600 0f00 2118 0000  //     PORT 8472 (network order)
        0400 1700  //     GBP
        0500 0500 00 000000  //     TTL 0
        0500 0d00 01 000000  //     L2MISS 1
  `);
  assert.deepEqual(decodeLink(msg), {
    family: 0,
    index: 4,
    name: 'flannel.1',
    type: 1,
    flags: 0x11043,
    up: true,
    lowerUp: true,
    operState: 'unknown',
    mtu: 1450,
    mac: '6e:5a:1c:00:00:01',
    kind: 'vxlan',
    vxlan: {
      vni: 1,
      port: 8472,
      learning: false,
      gbp: true,
      l2miss: true,
      l3miss: false,
      local: '192.0.2.1',
      linkIndex: 3,
      ttl: 0,
    },
  });
  const ev = decodeRtnlMessage(msg);
  assert.equal(ev?.kind, 'link');
  assert.equal(ev?.action, 'new');
});

test('bridge and veth links: kinds are plain strings; IFLA_LINK, IFLA_MASTER, slave kind', () => {
  const bridge = decodeLink(
    one(`
      44000000 1000 0000 01000000 00000000
      00 00 0100 05000000 03100000 00000000  // #5 UP|BROADCAST|MULTICAST
      0900 0300 636e693000 000000  // IFLA_IFNAME cni0
      0500 1000 06 000000  // IFLA_OPERSTATE up
      0f00 1200 0b00 0100 62726964676500 00  // IFLA_LINKINFO { KIND "bridge\\0" }
    `),
  );
  assert.equal(bridge.kind, 'bridge');
  assert.equal(bridge.operState, 'up');
  assert.equal(bridge.up, true);
  assert.equal(bridge.lowerUp, false);
  assert.equal(bridge.vxlan, undefined);

  const veth = decodeLink(
    one(`
      58000000 1100 0000 02000000 00000000  // RTM_DELLINK
      00 00 0100 06000000 02100000 00000000
      0c00 0300 7665746831323300  // IFLA_IFNAME veth123 (exactly 8 bytes, no padding)
      0800 0500 07000000  // IFLA_LINK 7
      0800 0a00 05000000  // IFLA_MASTER 5
      1c00 1200 0900 0100 7665746800 000000 0b00 0400 62726964676500 00  // KIND veth, SLAVE_KIND bridge
    `),
  );
  assert.deepEqual(
    { name: veth.name, kind: veth.kind, slaveKind: veth.slaveKind, linkIndex: veth.linkIndex, master: veth.masterIndex },
    { name: 'veth123', kind: 'veth', slaveKind: 'bridge', linkIndex: 7, master: 5 },
  );
});

test('address decode', () => {
  const msg = one(`
    3c000000 1400 0200 01000000 00000000  // RTM_NEWADDR
    02 18 80 00 04000000  // AF_INET /24 flags PERMANENT scope universe #4
    0800 0100 c0000201  // IFA_ADDRESS
    0800 0200 c0000201  // IFA_LOCAL
    0900 0300 6574683000 000000  // IFA_LABEL eth0
    0800 0800 80000000  // IFA_FLAGS
  `);
  assert.deepEqual(decodeAddr(msg), {
    family: C.AF_INET,
    index: 4,
    prefixLen: 24,
    flags: 0x80,
    scope: 0,
    address: '192.0.2.1',
    local: '192.0.2.1',
    label: 'eth0',
    cidr: '192.0.2.1/24',
  });
});

test('route decode: onlink unicast, default route, blackhole, RTA_TABLE', () => {
  const onlink = decodeRoute(
    one(`
      3c000000 1800 0200 01000000 00000000
      02 18 00 00 fe 03 00 01 04000000  // /24 main boot universe unicast ONLINK
      0800 0f00 fe000000  // RTA_TABLE 254
      0800 0100 0af40200  // RTA_DST
      0800 0500 0af40200  // RTA_GATEWAY
      0800 0400 05000000  // RTA_OIF
    `),
  );
  assert.deepEqual(onlink, {
    family: C.AF_INET,
    dst: '10.244.2.0/24',
    dstLen: 24,
    table: 254,
    protocol: C.RTPROT_BOOT,
    scope: 0,
    type: C.RTN_UNICAST,
    flags: C.RTNH_F_ONLINK,
    onlink: true,
    gateway: '10.244.2.0',
    oif: 5,
  });
  const dflt = decodeRoute(
    one(`
      2c000000 1800 0200 01000000 00000000
      02 00 00 00 fe 03 00 01 00000000
      0800 0500 c0000201  // RTA_GATEWAY
      0800 0400 02000000  // RTA_OIF
    `),
  );
  assert.equal(dflt.dst, '0.0.0.0/0');
  assert.equal(dflt.gateway, '192.0.2.1');
  const bh = decodeRoute(
    one(`
      2c000000 1800 0200 01000000 00000000
      02 10 00 00 00 03 00 06 00000000
      0800 0f00 e8030000  // RTA_TABLE 1000 (rtm_table is 0 for tables > 255)
      0800 0100 0af40000
    `),
  );
  assert.equal(bh.type, C.RTN_BLACKHOLE);
  assert.equal(bh.table, 1000);
  assert.equal(bh.dst, '10.244.0.0/16');
});

test('decodeRtnlMessage: FDB vs neighbour by family, unknown types skipped', () => {
  const fdb = decodeRtnlMessage(
    one(`
      30000000 1d00 0000 00000000 00000000  // RTM_DELNEIGH
      07 00 0000 04000000 8000 02 00
      0a00 0200 6e5a1c010203 0000
      0800 0100 c0000202
    `),
  );
  assert.equal(fdb?.kind, 'fdb');
  assert.equal(fdb?.action, 'del');
  const neigh = decodeRtnlMessage(
    one(`
      24000000 1c00 0000 00000000 00000000
      02 00 0000 04000000 2000 00 00  // NUD_FAILED, no lladdr
      0800 0100 0af40200
    `),
  );
  assert.ok(neigh?.kind === 'neigh');
  assert.equal(neigh.neigh.mac, undefined);
  assert.equal(neigh.neigh.permanent, false);
  assert.deepEqual(nudStateNames(neigh.neigh.state), ['FAILED']);
  assert.deepEqual(nudStateNames(C.NUD_NOARP | C.NUD_PERMANENT), ['NOARP', 'PERMANENT']);
  assert.equal(decodeRtnlMessage(one('14000000 0300 0200 01000000 00000000 00000000')), undefined);
  // An AF_MPLS (28) neighbour is skipped rather than rejected.
  assert.equal(decodeRtnlMessage(one('1c000000 1c00 0000 00000000 00000000 1c 00 0000 04000000 8000 00 00')), undefined);
});

test('address helpers', () => {
  assert.ok(isIPv4('10.244.0.1'));
  for (const bad of ['10.244.0', '256.1.1.1', '01.2.3.4', '1.2.3.4 ', 'a.b.c.d', '']) assert.ok(!isIPv4(bad), bad);
  assert.deepEqual([...ipv4ToBytes('192.0.2.255')], [192, 0, 2, 255]);
  assert.deepEqual(parseCidr('10.244.1.7/24'), { ip: '10.244.1.7', prefixLen: 24 });
  assert.throws(() => parseCidr('10.244.1.7'), TypeError);
  assert.equal(networkAddress('10.244.1.7', 24), '10.244.1.0');
  assert.equal(networkAddress('10.244.1.7', 0), '0.0.0.0');
  assert.equal(formatMac(macToBytes('AA:BB:cc:00:01:ff')), 'aa:bb:cc:00:01:ff');
  const v6 = (s: string) => formatIPv6(Buffer.from(s.replace(/ /g, ''), 'hex'));
  assert.equal(v6('0000 0000 0000 0000 0000 0000 0000 0001'), '::1');
  assert.equal(v6('0000 0000 0000 0000 0000 0000 0000 0000'), '::');
  assert.equal(v6('2001 0db8 0000 0000 0000 0000 0000 0001'), '2001:db8::1');
  assert.equal(v6('0001 0000 0000 0001 0000 0000 0000 0001'), '1:0:0:1::1');
  assert.equal(v6('fe80 0000 0000 0000 0001 0002 0003 0004'), 'fe80::1:2:3:4');
  assert.equal(v6('2001 0db8 0000 0001 0001 0001 0001 0001'), '2001:db8:0:1:1:1:1:1');
  assert.equal(v6('0000 0000 0000 0000 0000 ffff c000 0201'), '::ffff:192.0.2.1');
});
