// Property-based fuzzing (issue 9) of what the store hands us: lease values
// (flannel's LeaseAttrs JSON) and subnet keys, through the same path the lease
// watcher uses (entryToLease -> validateLease -> the VXLAN backend's desired
// kernel entries). Lease data must either come out valid or be refused with
// a LeaseDataError / reason that names the field; no other exception may
// escape and nothing invalid may reach the kernel entries.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIPv4 } from 'node:net';
import { FuzzTally, fc, fieldValueText, jsonValue, mutateObject, mutateText, objectText, toJson, deepJson, deepJsonText, describeThrown, NASTY_STRINGS } from '../testing/fuzz.js';
import { AddrError, formatIPv4, formatIPv6, ipv4NetAligned, ipv4NetContains, ipv6NetAligned, parseIPv4, parseIPv4Net, parseIPv6, parseIPv6Net, unusablePublicIPv4, type IPv6Net } from './ip.js';
import { decodeLeaseAttrs, encodeLeaseAttrs, leaseId, LeaseDataError, parseSubnetKey, sameAttrs, subnetKey, validateLease, vtepMac, withoutConflicts, type Lease, type LeaseAttrs, type LeaseNetwork } from './lease.js';
import { entryToLease } from '../subnet/manager.js';
import { desiredEntries } from '../backend/vxlan/desired.js';

const tally = new FuzzTally();

const NET: LeaseNetwork = {
  network: parseIPv4Net('10.244.0.0/16'),
  subnetLen: 24,
  ipv6Network: parseIPv6Net('fd00:10:244::/56'),
  ipv6SubnetLen: 64,
};

const VALID_LEASE = {
  PublicIP: '192.168.64.3',
  PublicIPv6: null,
  BackendType: 'vxlan',
  BackendData: { VNI: 1, VtepMAC: 'c6:d2:32:6f:8f:44' },
};
const VALID_TEXT = JSON.stringify(VALID_LEASE);
const VALID_DUAL = '{"PublicIP":"10.0.0.1","PublicIPv6":"2001:db8::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"},"BackendV6Data":{"VNI":1,"VtepMAC":"12:22:33:44:55:66"}}';

/** Every shape of lease value text we could be handed. */
const leaseText: fc.Arbitrary<string> = fc.oneof(
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 2, arbitrary: fc.json({ maxDepth: 3 }) },
  { weight: 2, arbitrary: jsonValue(3).map(toJson) },
  { weight: 6, arbitrary: mutateObject(VALID_LEASE, fieldValueText) },
  { weight: 3, arbitrary: mutateText(fc.constantFrom(VALID_TEXT, VALID_DUAL)) },
  { weight: 1, arbitrary: deepJson },
  {
    weight: 2,
    arbitrary: fc.constantFrom('BackendData', 'BackendV6Data', 'PublicIP', 'PublicIPv6', 'BackendType').chain((k) =>
      deepJson.map((d) => objectText([['PublicIP', '"10.0.0.1"'], [k, d]])),
    ),
  },
);

const FIELD_RE = /^(PublicIP|PublicIPv6|BackendType|BackendData|BackendV6Data|lease value)\b/;

/** Invariants of a decoded LeaseAttrs. */
function assertValidAttrs(a: LeaseAttrs): void {
  assert.ok(Number.isInteger(a.publicIP) && a.publicIP >= 0 && a.publicIP <= 0xffffffff, `publicIP ${a.publicIP}`);
  assert.ok(a.publicIPv6 === null || (typeof a.publicIPv6 === 'bigint' && a.publicIPv6 >= 0n && a.publicIPv6 < 1n << 128n));
  assert.equal(typeof a.backendType, 'string');
  // What we decoded we can write back, and it decodes to the same thing.
  const text = encodeLeaseAttrs(a);
  assert.ok(sameAttrs(decodeLeaseAttrs(text), a), `round trip of ${text}`);
  vtepMac(a);
}

/** decodeLeaseAttrs: a valid LeaseAttrs or a LeaseDataError naming the field. */
function decodeOrRefuse(text: string): LeaseAttrs | null {
  try {
    const a = decodeLeaseAttrs(text);
    assertValidAttrs(a);
    return a;
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    if (!(e instanceof LeaseDataError)) assert.fail(`decodeLeaseAttrs(${JSON.stringify(text.slice(0, 200))}) threw ${describeThrown(e)}`);
    assert.match(e.message, FIELD_RE, `message names the field: ${e.message}`);
    assert.ok(e.message.length < 2000, 'message is one bounded line');
    assert.ok(!e.message.includes('\n    at '), 'no stack in the message');
    return null;
  }
}

test('lease values: arbitrary, mutated and deeply nested JSON decode validly or give LeaseDataError naming the field', (t) => {
  tally.check(t, 'decodeLeaseAttrs', 0x1ea5e, 5000, fc.property(leaseText, (text) => void decodeOrRefuse(text)));
});

// ------------------------------------------------------------ subnet keys

const dotted = fc.oneof(
  fc.ipV4(),
  fc.tuple(fc.nat(300), fc.nat(300), fc.nat(300), fc.nat(300)).map((p) => p.join('.')),
  fc.constantFrom('10.244.1.0', '10.244.1.128', '010.244.1.0', '10.244.1', '1.2.3.4.5', '10.244.1.0 '),
);
const v6 = fc.oneof(fc.ipV6().map((s) => s.toLowerCase()), fc.constantFrom('fd00:12:13::', '::', '::1', 'fd00:12:13::1', '1:2:3:4:5:6:7:8', '1::2::3', ':::', 'fd00:12:13:0:0:0:0:0', 'ffff::'));
const prefixText = fc.oneof(fc.nat(140).map(String), fc.constantFrom('024', '0', '', '-1', '1e1', '99999999999999999999'));

const subnetKeyText: fc.Arbitrary<string> = fc.oneof(
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 5, arbitrary: fc.tuple(dotted, prefixText).map(([ip, p]) => `${ip}-${p}`) },
  { weight: 5, arbitrary: fc.tuple(dotted, prefixText, v6, prefixText).map(([ip, p, ip6, p6]) => `${ip}-${p}&${ip6}-${p6}`) },
  { weight: 3, arbitrary: mutateText(fc.constantFrom('10.244.1.0-24', '10.12.13.0-24&fd00:12:13::-56', '/coreos.com/network/subnets/10.244.1.0-24')) },
  { weight: 1, arbitrary: fc.tuple(fc.string({ maxLength: 12 }), dotted, prefixText).map(([pre, ip, p]) => `${pre}/${ip}-${p}`) },
);

test('subnet keys: arbitrary and mutated keys parse to in-range subnets that round-trip, or to null', (t) => {
  tally.check(
    t,
    'parseSubnetKey',
    0x5e7,
    6000,
    fc.property(subnetKeyText, (key) => {
      let p: ReturnType<typeof parseSubnetKey>;
      try {
        p = parseSubnetKey(key);
      } catch (e) {
        assert.fail(`parseSubnetKey(${JSON.stringify(key)}) threw ${describeThrown(e)}`);
      }
      if (p === null) return;
      assert.ok(Number.isInteger(p.subnet.ip) && p.subnet.ip >= 0 && p.subnet.ip <= 0xffffffff);
      assert.ok(p.subnet.prefix >= 0 && p.subnet.prefix <= 31, `v4 prefix ${p.subnet.prefix}`);
      if (p.subnet6) {
        assert.ok(p.subnet6.ip >= 0n && p.subnet6.ip < 1n << 128n);
        assert.ok(p.subnet6.prefix >= 0 && p.subnet6.prefix <= 127, `v6 prefix ${p.subnet6.prefix}`);
      }
      const again = parseSubnetKey(subnetKey(p.subnet, p.subnet6));
      assert.deepEqual(again, p, 'the canonical key parses back to the same subnets');
    }),
  );
});

/** A key with host bits set, in IPv4 and/or IPv6. */
const misalignedKey: fc.Arbitrary<{ key: string; v4bad: boolean }> = fc
  .tuple(fc.integer({ min: 1, max: 31 }), fc.nat(0xffffffff), fc.boolean(), fc.integer({ min: 1, max: 127 }), fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }))
  .filter(([p, ip, withV6, p6, ip6]) => ((ip & ~(p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0)) >>> 0) !== 0 || (withV6 && (ip6 & ((1n << BigInt(128 - p6)) - 1n)) !== 0n))
  .map(([p, ip, withV6, p6, ip6]) => ({
    key: `${formatIPv4(ip)}-${p}${withV6 ? `&${formatIPv6(ip6)}-${p6}` : ''}`,
    v4bad: ((ip & ~(p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0)) >>> 0) !== 0,
  }));

test('subnet keys with host bits set never become a valid lease', (t) => {
  tally.check(
    t,
    'misaligned keys',
    0xa119,
    3000,
    fc.property(misalignedKey, ({ key, v4bad }) => {
      const l = entryToLease({ name: key, key: `/coreos.com/network/subnets/${key}`, value: VALID_DUAL, permanent: false, ttlSeconds: 60 });
      assert.notEqual(typeof l, 'string', `${key} is a subnet key`);
      const why = validateLease(l as Lease, NET);
      assert.ok(why !== null, `${key} must be rejected`);
      if (v4bad) assert.match(why, /host bits/);
      // And even without the network check, the VXLAN backend would not program it.
      if (v4bad) assert.equal(desiredEntries([l as Lease], null).peers.length, 0);
    }),
  );
});

// ------------------------------------------------------------ address parsers

test('address parsers: any string is an address/CIDR that round-trips through the canonical form, or an AddrError', (t) => {
  const text = fc.oneof(
    fc.string({ maxLength: 24 }),
    fc.constantFrom(...NASTY_STRINGS),
    fc.ipV4(),
    fc.ipV4Extended(),
    fc.ipV6(),
    fc.tuple(fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended()), fc.oneof(fc.nat(140).map(String), fc.constantFrom('', '08', '-1', '1.5'))).map(([ip, p]) => `${ip}/${p}`),
    mutateText(fc.constantFrom('10.244.1.0/24', 'fd00:12:13::/56', '::ffff:1.2.3.4', '1:2:3:4:5:6:1.2.3.4')),
  );
  const attempt = <T>(fn: () => T): T | null => {
    try {
      return fn();
    } catch (e) {
      if (!(e instanceof AddrError)) assert.fail(`threw ${describeThrown(e)}`);
      return null;
    }
  };
  tally.check(
    t,
    'parseIPv4/IPv6(Net)',
    0xadd7,
    6000,
    fc.property(text, (s) => {
      const v4 = attempt(() => parseIPv4(s));
      if (v4 !== null) assert.equal(parseIPv4(formatIPv4(v4)), v4);
      const v6 = attempt(() => parseIPv6(s));
      if (v6 !== null) {
        assert.ok(v6 >= 0n && v6 < 1n << 128n, `${s} -> ${v6}`);
        assert.equal(parseIPv6(formatIPv6(v6)), v6);
      }
      const n4 = attempt(() => parseIPv4Net(s));
      if (n4 !== null) assert.ok(ipv4NetAligned(n4) && n4.prefix >= 0 && n4.prefix <= 32);
      const n6 = attempt(() => parseIPv6Net(s));
      if (n6 !== null) assert.ok(ipv6NetAligned(n6) && n6.prefix >= 0 && n6.prefix <= 128);
    }),
  );
});

// ------------------------------------------------------------ the watcher's path

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** What validateLease promises, checked independently. */
function assertLeaseFits(l: Lease, net: LeaseNetwork): void {
  assert.ok(ipv4NetAligned(l.subnet), 'aligned');
  assert.ok(net.network && ipv4NetContains(net.network, l.subnet.ip) && l.subnet.prefix === net.subnetLen, 'inside Network with SubnetLen');
  assert.equal(unusablePublicIPv4(l.attrs.publicIP), null, 'usable PublicIP');
  if (l.subnet6) {
    const s6: IPv6Net = l.subnet6;
    assert.ok(ipv6NetAligned(s6) && s6.prefix === net.ipv6SubnetLen, 'IPv6 aligned with IPv6SubnetLen');
  }
}

const entryArb = fc.record({
  name: fc.oneof({ weight: 4, arbitrary: fc.constantFrom('10.244.1.0-24', '10.244.7.0-24', '10.244.1.0-24&fd00:10:244:1::-64', '10.244.1.128-24', '10.245.0.0-24', '10.244.0.0-16') }, { weight: 1, arbitrary: subnetKeyText }),
  value: leaseText,
  permanent: fc.boolean(),
  ttlSeconds: fc.oneof(fc.constant(null), fc.integer({ min: -1, max: 86400 }), fc.constantFrom(1e308, -1e308)),
});

test('stored entries: entryToLease -> validateLease -> VXLAN desired entries never throw, and only valid data gets through', (t) => {
  tally.check(
    t,
    'entry pipeline',
    0xe17e,
    2500,
    fc.property(fc.array(entryArb, { minLength: 1, maxLength: 4 }), (entries) => {
      const good: Lease[] = [];
      for (const e of entries) {
        let l: Lease | string;
        try {
          l = entryToLease({ ...e, key: `/coreos.com/network/subnets/${e.name}` });
        } catch (err) {
          assert.fail(`entryToLease(${JSON.stringify(e).slice(0, 300)}) threw ${describeThrown(err)}`);
        }
        if (typeof l === 'string') {
          assert.match(l, /^key "/, 'reason names the key');
          continue;
        }
        const why = validateLease(l, NET);
        if (why !== null) continue;
        assertLeaseFits(l, NET);
        good.push(l);
      }
      const { kept } = withoutConflicts(good, null, new Set(good.slice(0, 1).map(leaseId)));
      const { peers, skipped } = desiredEntries(kept, null);
      assert.equal(peers.length + skipped.length, kept.length);
      for (const p of peers) {
        assert.match(p.mac, MAC_RE, 'MAC valid');
        assert.equal(parseInt(p.mac.slice(0, 2), 16) & 1, 0, 'unicast MAC');
        assert.notEqual(p.mac, '00:00:00:00:00:00');
        assert.ok(isIPv4(p.gw) && isIPv4(p.publicIP), 'IPs valid');
        parseIPv4Net(p.dst);
      }
      for (const l of kept) assertValidAttrs(l.attrs);
    }),
  );
});

test('regression inputs found by the fuzzer stay fixed', () => {
  // Deep nesting: JSON.parse copes, but JSON.stringify (error messages,
  // sameAttrs, re-encoding) overflows the stack with a RangeError.
  for (const k of ['PublicIP', 'PublicIPv6', 'BackendType', 'BackendData', 'BackendV6Data']) {
    for (const kind of ['array', 'object'] as const) {
      const text = objectText([['PublicIP', '"10.0.0.1"'], [k, deepJsonText(20_000, kind)]]);
      assert.throws(() => decodeLeaseAttrs(text), (e: unknown) => e instanceof LeaseDataError && e.message.startsWith(k), `${k} ${kind}`);
    }
  }
  assert.equal(decodeOrRefuse(deepJsonText(20_000, 'array')), null);
  // Moderate nesting is still data we keep.
  const ok = decodeLeaseAttrs(objectText([['PublicIP', '"10.0.0.1"'], ['BackendData', deepJsonText(20, 'object')]]));
  assert.ok(ok.backendData);
  for (const s of NASTY_STRINGS) decodeOrRefuse(objectText([['PublicIP', JSON.stringify(s)]]));
});

tally.reportTotal('lease values and subnet keys');
