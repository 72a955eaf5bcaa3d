// Property-based fuzzing (issue 9) of net-conf.json (parseNetworkConfig) and
// the VXLAN options inside its Backend object: any text yields either a
// ConfigError naming the field, or a config whose invariants hold.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FuzzTally, fc, anyCase, deepJson, deepJsonText, describeThrown, fieldValueText, jsonValue, mutateObject, mutateText, objectText, toJson } from '../testing/fuzz.js';
import { ipv4NetAligned, ipv4NetContains, ipv6NetAligned, ipv6NetContains, mask6Of, maskOf } from '../lease/ip.js';
import { ConfigError, describeConfig, parseNetworkConfig, type NetworkConfig } from './config.js';
import { parseVxlanOptions } from '../backend/vxlan/options.js';

const tally = new FuzzTally();

const FIELDS = ['Network', 'IPv6Network', 'EnableIPv4', 'EnableIPv6', 'EnableNFTables', 'SubnetLen', 'SubnetMin', 'SubnetMax', 'IPv6SubnetLen', 'IPv6SubnetMin', 'IPv6SubnetMax', 'Backend'];
const FIELD_RE = new RegExp(`^(${FIELDS.join('|')}|Backend\\.Type|network config|EnableIPv4 and EnableIPv6)\\b`);

/** Plausible values per field, so the generator gets past the type checks and into the range checks. */
const plausible: Record<string, fc.Arbitrary<unknown>> = {
  Network: fc.oneof(fc.constantFrom('10.244.0.0/16', '10.1.2.3/16', '10.0.0.0/8', '10.0.0.0/0', '10.0.0.0/28', '10.0.0.0/29', '10.0.0.0/32', '10.0.0.0/08', 'fd00::/48'), fc.tuple(fc.ipV4(), fc.nat(34)).map(([ip, p]) => `${ip}/${p}`)),
  IPv6Network: fc.oneof(fc.constantFrom('fd00::/48', 'fc00::/7', '::/0', 'fd00::/124', 'fd00::/125', 'fd00::/128', '10.0.0.0/8'), fc.tuple(fc.ipV6(), fc.nat(130)).map(([ip, p]) => `${ip}/${p}`)),
  EnableIPv4: fc.boolean(),
  EnableIPv6: fc.boolean(),
  EnableNFTables: fc.boolean(),
  SubnetLen: fc.oneof(fc.nat(40), fc.constantFrom(-1, 0.5, 1e300, 2 ** 53)),
  IPv6SubnetLen: fc.oneof(fc.nat(130), fc.constantFrom(-1, 1.5, 1e300)),
  SubnetMin: fc.oneof(fc.ipV4(), fc.constantFrom('10.244.1.0', '10.244.255.0', '10.244.1.1', '0.0.0.0', '10.245.0.0')),
  SubnetMax: fc.oneof(fc.ipV4(), fc.constantFrom('10.244.1.0', '10.244.255.0', '10.244.0.0', '0.0.0.0', '10.243.255.0')),
  IPv6SubnetMin: fc.oneof(fc.ipV6(), fc.constantFrom('fd00:0:0:1::', 'fd00:0:0:ffff::', '::', 'fd00::1')),
  IPv6SubnetMax: fc.oneof(fc.ipV6(), fc.constantFrom('fd00:0:0:1::', 'fd00:0:0:ffff::', '::', 'fd00::')),
  Backend: fc.oneof(
    fc.constantFrom({ Type: 'vxlan' }, { type: 'VXLAN', VNI: 4096 }, { Type: 'host-gw' }, { Type: 'udp', Port: 7890 }, {}, { Type: '' }, { Type: 3 }),
    fc.record({ Type: fc.constantFrom('vxlan', 'udp'), VNI: jsonValue(1), Port: jsonValue(1), MTU: jsonValue(1), GBP: jsonValue(1), DirectRouting: jsonValue(1) }, { requiredKeys: ['Type'] }),
  ),
};

/** A net-conf as text: known keys (any case) with plausible or junk values, or junk text. */
const confText: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .array(
        fc.constantFrom(...FIELDS).chain((k) =>
          fc.tuple(anyCase(k), fc.oneof({ weight: 3, arbitrary: plausible[k]!.map(toJson) }, { weight: 1, arbitrary: fieldValueText })),
        ),
        { maxLength: 8 },
      )
      .map((pairs) => objectText(pairs)),
  },
  { weight: 3, arbitrary: mutateObject({ Network: '10.244.0.0/16', SubnetLen: 24, SubnetMin: '10.244.1.0', SubnetMax: '10.244.200.0', Backend: { Type: 'vxlan', VNI: 1 } }, fieldValueText) },
  { weight: 2, arbitrary: mutateObject({ EnableIPv6: true, Network: '10.244.0.0/16', IPv6Network: 'fd00::/48', IPv6SubnetLen: 64, IPv6SubnetMin: 'fd00:0:0:1::', IPv6SubnetMax: 'fd00:0:0:ff::', Backend: { Type: 'vxlan' } }, fieldValueText) },
  {
    // Ranges: only the bounds vary, so the range checks themselves get exercised.
    weight: 2,
    arbitrary: fc
      .record({ min: plausible.SubnetMin!, max: plausible.SubnetMax!, min6: plausible.IPv6SubnetMin!, max6: plausible.IPv6SubnetMax!, v6: fc.boolean() }, { requiredKeys: ['v6'] })
      .map((r) =>
        JSON.stringify({ Network: '10.244.0.0/16', SubnetMin: r.min, SubnetMax: r.max, EnableIPv6: r.v6, IPv6Network: 'fd00::/48', IPv6SubnetMin: r.min6, IPv6SubnetMax: r.max6 }),
      ),
  },
  { weight: 2, arbitrary: mutateText(fc.constant('{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1}}')) },
  { weight: 1, arbitrary: fc.oneof(fc.string({ maxLength: 30 }), fc.json({ maxDepth: 2 }), deepJson) },
  { weight: 1, arbitrary: deepJson.map((d) => objectText([['Network', '"10.244.0.0/16"'], ['Backend', d]])) },
);

/** The invariants a parsed config promises to the subnet manager and backends. */
function assertInvariants(c: NetworkConfig): void {
  assert.ok(c.enableIPv4 || c.enableIPv6);
  if (c.enableIPv4) {
    const n = c.network;
    assert.ok(n, 'Network set');
    assert.ok(ipv4NetAligned(n), 'Network masked');
    assert.ok(Number.isInteger(c.subnetLen) && c.subnetLen >= 1 && c.subnetLen <= 30, `SubnetLen ${c.subnetLen}`);
    assert.ok(c.subnetLen >= n.prefix + 2, 'room for four subnets');
    for (const v of [c.subnetMin, c.subnetMax]) {
      assert.ok(Number.isInteger(v) && v >= 0 && v <= 0xffffffff);
      assert.ok(ipv4NetContains(n, v), 'inside Network');
      assert.equal((v & ~maskOf(c.subnetLen)) >>> 0, 0, 'on a SubnetLen boundary');
    }
    assert.ok(c.subnetMin <= c.subnetMax, 'SubnetMin <= SubnetMax');
  } else {
    assert.equal(c.network, null);
  }
  if (c.enableIPv6) {
    const n = c.ipv6Network;
    assert.ok(n, 'IPv6Network set');
    assert.ok(ipv6NetAligned(n));
    assert.ok(Number.isInteger(c.ipv6SubnetLen) && c.ipv6SubnetLen >= 1 && c.ipv6SubnetLen <= 126, `IPv6SubnetLen ${c.ipv6SubnetLen}`);
    assert.ok(c.ipv6SubnetLen >= n.prefix + 2);
    for (const v of [c.ipv6SubnetMin, c.ipv6SubnetMax]) {
      assert.ok(v >= 0n && v < 1n << 128n);
      assert.ok(ipv6NetContains(n, v));
      assert.equal(v & ~mask6Of(c.ipv6SubnetLen) & ((1n << 128n) - 1n), 0n);
    }
    assert.ok(c.ipv6SubnetMin <= c.ipv6SubnetMax, 'IPv6SubnetMin <= IPv6SubnetMax');
  }
  assert.ok(typeof c.backend.type === 'string' && c.backend.type !== '' && c.backend.type === c.backend.type.toLowerCase());
  assert.ok(c.backend.raw && typeof c.backend.raw === 'object');
  describeConfig(c);
}

function parseOrRefuse(text: string): NetworkConfig | null {
  try {
    const c = parseNetworkConfig(text);
    assertInvariants(c);
    return c;
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    if (!(e instanceof ConfigError)) assert.fail(`parseNetworkConfig(${JSON.stringify(text.slice(0, 300))}) threw ${describeThrown(e)}`);
    assert.match(e.message, FIELD_RE, `message names the field: ${e.message}`);
    assert.ok(e.message.length < 1000, `one bounded line: ${e.message.length} chars`);
    return null;
  }
}

test('net-conf: random configs give a ConfigError naming the field, or a config whose invariants hold', (t) => {
  let accepted = 0;
  tally.check(
    t,
    'parseNetworkConfig',
    0xc0f1,
    5000,
    fc.property(confText, (text) => {
      if (parseOrRefuse(text)) accepted++;
    }),
  );
  t.diagnostic(`${accepted} of them accepted`);
  assert.ok(accepted > 200, 'the generator reaches valid configs too');
});

test('net-conf Backend of a vxlan config: parseVxlanOptions gives options in range or a ConfigError naming Backend.<option>', (t) => {
  const backend = fc.oneof(
    fc.dictionary(fc.oneof(...['VNI', 'Port', 'MTU', 'GBP', 'Learning', 'DirectRouting', 'Type'].map(anyCase), fc.constantFrom('__proto__', 'constructor')), jsonValue(2), { maxKeys: 6 }),
    fc.constantFrom(JSON.parse(deepJsonText(12_000, 'object')) as Record<string, unknown>, { VNI: JSON.parse(deepJsonText(12_000, 'array')) as unknown }),
  );
  tally.check(
    t,
    'parseVxlanOptions',
    0x7e1,
    4000,
    fc.property(backend, (raw) => {
      try {
        const o = parseVxlanOptions(raw);
        assert.ok(Number.isInteger(o.vni) && o.vni >= 0 && o.vni <= 0xffffff, `VNI ${o.vni}`);
        assert.ok(Number.isInteger(o.port) && o.port >= 0 && o.port <= 65535);
        assert.ok(o.mtu === null || (Number.isInteger(o.mtu) && o.mtu >= 118 && o.mtu <= 65535));
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        assert.ok(e instanceof ConfigError, describeThrown(e));
        assert.match(e.message, /^Backend\.(VNI|Port|MTU|GBP|Learning|DirectRouting)\b/);
        assert.ok(e.message.length < 1000);
      }
    }),
  );
});

test('regression inputs found by the fuzzer stay fixed', () => {
  // Deep nesting in a field made the error message's JSON.stringify throw RangeError.
  for (const k of ['Network', 'SubnetLen', 'EnableIPv4', 'Backend']) {
    const text = objectText([['Network', '"10.244.0.0/16"'], [k, deepJsonText(12_000, 'array')]]);
    assert.throws(() => parseNetworkConfig(text), (e: unknown) => e instanceof ConfigError && e.message.startsWith(k), k);
  }
  assert.throws(() => parseNetworkConfig(objectText([['Network', '"10.244.0.0/16"'], ['Backend', deepJsonText(12_000, 'object')]])), /ConfigError: Backend: nested more than 64 levels/);
  assert.equal(parseOrRefuse(deepJsonText(12_000, 'array')), null);
  // An inverted IPv6 range is refused up front, as the IPv4 one is (the
  // fuzzer's shrunk counterexample: IPv6SubnetMax = the network address).
  assert.throws(() => parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetMax":"fd00::"}'), /IPv6SubnetMin: fd00:0:0:1:: is greater than IPv6SubnetMax fd00::/);
  assert.throws(
    () => parseNetworkConfig('{"EnableIPv6":true,"Network":"10.244.0.0/16","IPv6Network":"fd00::/48","IPv6SubnetMin":"fd00:0:0:ff::","IPv6SubnetMax":"fd00:0:0:1::"}'),
    /ConfigError: IPv6SubnetMin: fd00:0:0:ff:: is greater than IPv6SubnetMax fd00:0:0:1::/,
  );
  // A huge string value is quoted short.
  assert.throws(() => parseNetworkConfig(`{"Network":"${'x'.repeat(5000)}"}`), (e: unknown) => e instanceof ConfigError && e.message.length < 300);
  // The VXLAN options with deep values: a ConfigError, not a RangeError.
  assert.throws(() => parseVxlanOptions({ VNI: JSON.parse(deepJsonText(12_000, 'array')) as unknown }), (e: unknown) => e instanceof ConfigError && /^Backend\.VNI/.test(e.message));
});

tally.reportTotal('net-conf');
