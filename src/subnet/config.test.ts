import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIPv4, formatIPv4Net, formatIPv6 } from '../lease/ip.js';
import { ConfigError, parseNetworkConfig } from './config.js';

test('defaults from flannel config_test: /16 gives /24 from .1 to .255', () => {
  const c = parseNetworkConfig('{"network":"10.3.0.0/16"}');
  assert.equal(formatIPv4Net(c.network!), '10.3.0.0/16');
  assert.equal(c.subnetLen, 24);
  assert.equal(formatIPv4(c.subnetMin), '10.3.1.0');
  assert.equal(formatIPv4(c.subnetMax), '10.3.255.0');
  assert.equal(c.enableIPv4, true);
  assert.equal(c.enableIPv6, false);
});

test('CIDR is masked to the network address and keys match case-insensitively', () => {
  const c = parseNetworkConfig('{"NETWORK":"10.1.2.3/16","subnetlen":20,"BACKEND":{"type":"VXLAN","vni":4}}');
  assert.equal(formatIPv4Net(c.network!), '10.1.0.0/16');
  assert.equal(c.subnetLen, 20);
  assert.equal(formatIPv4(c.subnetMin), '10.1.16.0');
  assert.equal(formatIPv4(c.subnetMax), '10.1.240.0');
  assert.equal(c.backend.type, 'vxlan');
  assert.equal(c.backend.raw.vni, 4);
});

test('small networks default to prefix + 2', () => {
  const c = parseNetworkConfig('{"Network":"10.0.0.0/26","Backend":{"Type":"alloc"}}');
  assert.equal(c.subnetLen, 28);
  assert.equal(formatIPv4(c.subnetMin), '10.0.0.16');
  assert.equal(formatIPv4(c.subnetMax), '10.0.0.48');
});

test('overrides from the docs example', () => {
  const c = parseNetworkConfig('{"Network":"10.0.0.0/8","SubnetLen":20,"SubnetMin":"10.10.0.0","SubnetMax":"10.99.0.0","Backend":{"Type":"udp","Port":7890}}');
  assert.equal(c.subnetLen, 20);
  assert.equal(formatIPv4(c.subnetMin), '10.10.0.0');
  assert.equal(formatIPv4(c.subnetMax), '10.99.0.0');
  assert.equal(c.backend.type, 'udp');
  assert.equal(c.backend.raw.Port, 7890);
});

test('IPv6 defaults: fc00::/48 gives /64 from fc00:0:0:1:: to fc00:0:0:ffff::', () => {
  const c = parseNetworkConfig('{"Network":"10.3.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48"}');
  assert.equal(c.ipv6SubnetLen, 64);
  assert.equal(formatIPv6(c.ipv6SubnetMin), 'fc00:0:0:1::');
  assert.equal(formatIPv6(c.ipv6SubnetMax), 'fc00:0:0:ffff::');
});

test('absent Backend defaults to vxlan (the documented default) and is marked defaulted', () => {
  const c = parseNetworkConfig('{"Network":"10.244.0.0/16"}');
  assert.equal(c.backend.type, 'vxlan');
  assert.equal(c.backend.defaulted, true);
});

const invalid: Array<[string, string, RegExp]> = [
  ['not JSON', '{"Network":', /not valid JSON/],
  ['not an object', '[1]', /must be a JSON object/],
  ['missing Network', '{"Backend":{"Type":"vxlan"}}', /^Network: missing/],
  ['bad CIDR', '{"Network":"10.300.0.0/16"}', /^Network: "10\.300\.0\.0\/16" is not a valid IPv4 CIDR/],
  ['IPv6 in Network', '{"Network":"fc00::/48"}', /^Network: "fc00::\/48" is not an IPv4 CIDR/],
  ['Network wrong type', '{"Network":1234}', /^Network: expected a string, got 1234/],
  ['SubnetLen too long', '{"Network":"10.0.0.0/16","SubnetLen":31}', /^SubnetLen: 31 .*less than \/31/],
  ['SubnetLen too short', '{"Network":"10.0.0.0/16","SubnetLen":17}', /^SubnetLen: 17 .*at least four subnets/],
  ['SubnetLen not an integer', '{"Network":"10.0.0.0/16","SubnetLen":"24"}', /^SubnetLen: expected a non-negative integer, got "24"/],
  ['network smaller than /28', '{"Network":"10.0.0.0/29"}', /^Network: 10\.0\.0\.0\/29 is too small; minimum useful network prefix is \/28/],
  ['SubnetMin not aligned', '{"Network":"10.0.0.0/16","SubnetMin":"10.0.1.5"}', /^SubnetMin: 10\.0\.1\.5 is not on a SubnetLen boundary/],
  ['SubnetMax outside', '{"Network":"10.0.0.0/16","SubnetMax":"10.1.0.0"}', /^SubnetMax: 10\.1\.0\.0 is not within Network/],
  ['SubnetMin not an IP', '{"Network":"10.0.0.0/16","SubnetMin":"banana"}', /^SubnetMin: "banana" is not a valid IPv4 address/],
  ['SubnetMin above SubnetMax', '{"Network":"10.0.0.0/16","SubnetMin":"10.0.9.0","SubnetMax":"10.0.3.0"}', /^SubnetMin: 10\.0\.9\.0 is greater than SubnetMax/],
  ['Backend without Type', '{"Network":"10.0.0.0/16","Backend":{"VNI":1}}', /^Backend: \{"VNI":1\} has no Type/],
  ['Backend not an object', '{"Network":"10.0.0.0/16","Backend":"vxlan"}', /^Backend: expected an object, got "vxlan"/],
  ['both families off', '{"Network":"10.0.0.0/16","EnableIPv4":false}', /both false/],
  ['EnableIPv6 not bool', '{"Network":"10.0.0.0/16","EnableIPv6":"yes"}', /^EnableIPv6: expected true or false, got "yes"/],
  ['IPv6 missing network', '{"Network":"10.0.0.0/16","EnableIPv6":true}', /^IPv6Network: missing/],
  ['IPv6 too small', '{"Network":"10.0.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/125"}', /^IPv6Network: fc00::\/125 is too small/],
  ['IPv6SubnetLen too long', '{"Network":"10.0.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":127}', /^IPv6SubnetLen: 127/],
  ['IPv6SubnetMin not aligned', '{"Network":"10.0.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetMin":"fc00:0:0:1::5"}', /^IPv6SubnetMin: fc00:0:0:1::5 is not on an IPv6SubnetLen boundary/],
];

for (const [name, text, re] of invalid) {
  test(`invalid config: ${name}`, () => {
    assert.throws(() => parseNetworkConfig(text), (e: unknown) => {
      assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
      assert.match(e.message, re);
      assert.ok(!e.message.includes('\n'), 'one line');
      return true;
    });
  });
}

test('the dual-stack config observed with real flannel: IPv6SubnetLen defaults to 64 for a /56; explicit values between prefix+2 and 126', () => {
  const c = parseNetworkConfig('{"EnableIPv6":true,"Network":"10.244.0.0/16","IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}');
  assert.equal(c.enableIPv4, true);
  assert.equal(c.ipv6SubnetLen, 64);
  assert.equal(formatIPv6(c.ipv6SubnetMin), 'fd00:10:244:1::');
  assert.equal(formatIPv6(c.ipv6SubnetMax), 'fd00:10:244:ff::');
  assert.equal(parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","IPv6SubnetLen":58}').ipv6SubnetLen, 58);
  assert.throws(() => parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","IPv6SubnetLen":57}'), /^ConfigError: IPv6SubnetLen: 57 is invalid for IPv6Network fd00:10:244::\/56/);
  assert.throws(() => parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"10.0.0.0/8"}'), /^ConfigError: IPv6Network: "10.0.0.0\/8" is not a valid IPv6 CIDR/);
});
