import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIPv6, parseIPv4, parseIPv4Net, parseIPv6, parseIPv6Net } from './ip.js';
import { decodeLeaseAttrs, encodeLeaseAttrs, leaseId, LeaseDataError, parseSubnetKey, subnetKey, validateLease, vtepMac, withoutConflicts, type Lease } from './lease.js';

test('subnet keys round-trip (spec §3.3 valid examples)', () => {
  for (const k of ['10.244.1.0-24', '10.12.13.0-24&fd00:12:13::-56', '10.5.52.0-24', '0.0.0.0-0', '10.0.0.0-31']) {
    const p = parseSubnetKey(k);
    assert.ok(p, k);
    assert.equal(subnetKey(p.subnet, p.subnet6), k);
  }
  const p = parseSubnetKey('/coreos.com/network/subnets/10.12.13.0-24&fd00:12:13::-56')!;
  assert.equal(p.subnet.prefix, 24);
  assert.equal(formatIPv6(p.subnet6!.ip), 'fd00:12:13::');
  assert.equal(p.subnet6!.prefix, 56);
});

test('invalid subnet keys are rejected (spec §3.3 invalid examples)', () => {
  for (const k of ['10', '10.12.13.0', '10.12.13-24', '10.12.13.300-24', '10.12.13.0-24hi', '&2001::-56', '10.12.13.0-24&2001::', '10.12.13.0-32', '10.12.13.0-24&2001::-128', '', 'garbage', '10.12.13.0-024x']) {
    assert.equal(parseSubnetKey(k), null, k);
  }
});

test('lease JSON is byte-identical to flannel (vxlan, host-gw, udp)', () => {
  assert.equal(
    encodeLeaseAttrs({ publicIP: parseIPv4('192.168.64.3'), publicIPv6: null, backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: 'c6:d2:32:6f:8f:44' } }),
    '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}',
  );
  assert.equal(encodeLeaseAttrs({ publicIP: parseIPv4('10.0.0.1'), publicIPv6: null, backendType: 'host-gw' }), '{"PublicIP":"10.0.0.1","PublicIPv6":null,"BackendType":"host-gw"}');
  assert.equal(encodeLeaseAttrs({ publicIP: parseIPv4('10.0.0.1'), publicIPv6: null, backendType: '' }), '{"PublicIP":"10.0.0.1","PublicIPv6":null}');
  assert.equal(
    encodeLeaseAttrs({ publicIP: parseIPv4('10.0.0.1'), publicIPv6: parseIPv6('2001:db8::1'), backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: 'aa:bb:cc:dd:ee:ff' }, backendV6Data: { VNI: 1, VtepMAC: '11:22:33:44:55:66' } }),
    '{"PublicIP":"10.0.0.1","PublicIPv6":"2001:db8::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"},"BackendV6Data":{"VNI":1,"VtepMAC":"11:22:33:44:55:66"}}',
  );
});

test('decoding accepts what flannel writes and round-trips it exactly', () => {
  const text = '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}';
  const a = decodeLeaseAttrs(text);
  assert.equal(encodeLeaseAttrs(a), text);
  assert.equal(vtepMac(a), 'c6:d2:32:6f:8f:44');
  // Go decodes keys case-insensitively
  assert.equal(decodeLeaseAttrs('{"publicip":"10.1.1.1","backendtype":"host-gw"}').backendType, 'host-gw');
});

test('lease JSON written by others that does not fit gets a clear error naming the field', () => {
  const cases: Array<[string, RegExp]> = [
    ['not json', /not valid JSON/],
    ['"str"', /must be a JSON object/],
    ['{"PublicIP":5}', /^PublicIP: expected a string, got 5/],
    ['{"PublicIP":"1.2.3"}', /^PublicIP: "1\.2\.3" is not an IPv4 address/],
    ['{"PublicIP":"1.2.3.4","PublicIPv6":"zz"}', /^PublicIPv6: "zz"/],
    ['{"PublicIP":"1.2.3.4","BackendType":7}', /^BackendType: expected a string/],
  ];
  for (const [t, re] of cases) assert.throws(() => decodeLeaseAttrs(t), (e: unknown) => e instanceof LeaseDataError && re.test(e.message), t);
});

test('validateLease: subnet inside Network with SubnetLen; public IP usable', () => {
  const net = { network: parseIPv4Net('10.244.0.0/16'), subnetLen: 24, ipv6Network: null, ipv6SubnetLen: 0 };
  const mk = (subnet: string, ip: string) => ({ subnet: parseIPv4Net(subnet), subnet6: null, attrs: { publicIP: parseIPv4(ip), publicIPv6: null, backendType: 'vxlan' }, expiration: null });
  assert.equal(validateLease(mk('10.244.3.0/24', '192.0.2.1'), net), null);
  assert.match(validateLease(mk('10.245.3.0/24', '192.0.2.1'), net)!, /outside Network/);
  assert.match(validateLease(mk('10.244.3.0/25', '192.0.2.1'), net)!, /expected SubnetLen \/24/);
  assert.match(validateLease(mk('10.244.3.0/24', '0.0.0.0'), net)!, /unspecified/);
  assert.match(validateLease(mk('10.244.3.0/24', '127.0.0.1'), net)!, /loopback/);
  assert.match(validateLease(mk('10.244.3.0/24', '224.0.0.5'), net)!, /multicast/);
  const v6 = { subnet: parseIPv4Net('10.244.3.0/24'), subnet6: parseIPv6Net('fd00::/64'), attrs: { publicIP: parseIPv4('192.0.2.1'), publicIPv6: null, backendType: 'vxlan' }, expiration: null };
  // a dual-stack peer seen from a v4-only node: usable for IPv4 (flannel programs its v4 part)
  assert.equal(validateLease(v6, net), null);
});

test('validateLease: a key with host bits set (10.244.42.128-24) is refused before it reaches the kernel', () => {
  const net = { network: parseIPv4Net('10.244.0.0/16'), subnetLen: 24, ipv6Network: parseIPv6Net('fd00::/56'), ipv6SubnetLen: 64 };
  const key = parseSubnetKey('/coreos.com/network/subnets/10.244.42.128-24')!;
  assert.ok(key, 'the key itself parses, as in flannel');
  const l = { ...key, attrs: { publicIP: parseIPv4('192.0.2.9'), publicIPv6: null, backendType: 'vxlan' }, expiration: null };
  assert.equal(validateLease(l, net), 'subnet 10.244.42.128/24 has host bits set (a /24 starts at 10.244.42.0)');
  const v6 = { ...parseSubnetKey('10.244.42.0-24&fd00:0:0:1::1-64')!, attrs: l.attrs, expiration: null };
  assert.match(validateLease(v6, net)!, /^IPv6 subnet fd00:0:0:1::1\/64 has host bits set/);
  assert.equal(validateLease({ ...parseSubnetKey('10.244.42.0-24')!, attrs: l.attrs, expiration: null }, net), null);
});

test('withoutConflicts: a lease overlapping our own or a peer in use is left out; the peer in use keeps its place', () => {
  const mk = (key: string, ip = '192.0.2.1'): Lease => ({ ...parseSubnetKey(key)!, attrs: { publicIP: parseIPv4(ip), publicIPv6: null, backendType: 'vxlan' }, expiration: null });
  const own = mk('10.244.1.0-24');
  const a = mk('10.244.2.0-24');
  const b = mk('10.244.2.0-24&fd00::-64'); // same IPv4 subnet as a, under another key
  const c = mk('10.244.1.0-24&fd00:0:0:1::-64'); // our subnet under another key
  const d = mk('10.244.3.0-24');
  const wide = mk('10.244.0.0-16'); // covers everybody
  const r1 = withoutConflicts([b, a, c, d], own, new Set());
  assert.deepEqual(r1.kept.map(leaseId), ['10.244.2.0-24&fd00::-64', '10.244.3.0-24']);
  assert.deepEqual(
    r1.dropped.map((x) => `${leaseId(x.lease)}: ${x.reason}`).sort(),
    ['10.244.1.0-24&fd00:0:0:1::-64: its subnet overlaps our own lease 10.244.1.0-24', '10.244.2.0-24: its subnet overlaps lease 10.244.2.0-24&fd00::-64'],
  );
  // a in use, b arriving later: a stays
  const r2 = withoutConflicts([b, a, d], own, new Set([leaseId(a), leaseId(d)]));
  assert.deepEqual(r2.kept.map(leaseId), ['10.244.2.0-24', '10.244.3.0-24']);
  assert.deepEqual(r2.dropped.map((x) => leaseId(x.lease)), ['10.244.2.0-24&fd00::-64']);
  // different prefix lengths
  assert.deepEqual(withoutConflicts([d, wide], null, new Set([leaseId(d)])).kept.map(leaseId), ['10.244.3.0-24']);
  assert.deepEqual(withoutConflicts([wide, d], null, new Set([leaseId(wide)])).kept.map(leaseId), ['10.244.0.0-16']);
  // 5000 distinct peers: no conflict, and fast
  const many = Array.from({ length: 5000 }, (_, i) => mk(`10.${100 + (i >> 8)}.${i & 255}.0-24`));
  const t0 = performance.now();
  assert.equal(withoutConflicts(many, own, new Set(many.slice(0, 2500).map(leaseId))).kept.length, 5000);
  assert.ok(performance.now() - t0 < 500, `${(performance.now() - t0).toFixed(0)} ms`);
});

test('IPv6 formatting follows Go (RFC 5952)', () => {
  for (const [i, o] of [['fd00:12:13::', 'fd00:12:13::'], ['fc00:0:0:1::', 'fc00:0:0:1::'], ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], ['::1', '::1'], ['::', '::'], ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1']]) {
    assert.equal(formatIPv6(parseIPv6(i!)), o);
  }
});

test('dual-stack lease as real flannel writes it (observed-flannel.md): key and value round-trip byte for byte', () => {
  const key = '/coreos.com/network/subnets/10.244.37.0-24&fd00:10:244:1c::-64';
  const value =
    '{"PublicIP":"192.0.2.1","PublicIPv6":"fd00:192:0:2::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:4b:7c:2a:91:10"},"BackendV6Data":{"VNI":1,"VtepMAC":"6a:1f:03:c4:5d:e2"}}';
  const k = parseSubnetKey(key)!;
  assert.equal(subnetKey(k.subnet, k.subnet6), '10.244.37.0-24&fd00:10:244:1c::-64');
  assert.equal(formatIPv6(k.subnet6!.ip), 'fd00:10:244:1c::');
  const a = decodeLeaseAttrs(value);
  assert.equal(formatIPv6(a.publicIPv6!), 'fd00:192:0:2::1');
  assert.deepEqual(a.backendV6Data, { VNI: 1, VtepMAC: '6a:1f:03:c4:5d:e2' });
  assert.equal(encodeLeaseAttrs(a), value);
  const net = { network: parseIPv4Net('10.244.0.0/16'), subnetLen: 24, ipv6Network: parseIPv6Net('fd00:10:244::/56'), ipv6SubnetLen: 64 };
  assert.equal(validateLease({ ...k, attrs: a, expiration: null }, net), null);
});
