import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIPv4, parseIPv4Net } from './ip.js';
import { leaseId, type Lease } from './lease.js';
import { LeaseTracker } from './tracker.js';

const L = (s: string, ip: string, mac = 'aa:aa:aa:aa:aa:aa'): Lease => ({
  subnet: parseIPv4Net(s),
  subnet6: null,
  attrs: { publicIP: parseIPv4(ip), publicIPv6: null, backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: mac } },
  expiration: null,
});

test('snapshot diff: added, removed (with stored attrs), changed attrs re-added, unchanged silent', () => {
  const t = new LeaseTracker();
  assert.deepEqual(t.snapshot([L('10.0.1.0/24', '192.0.2.1'), L('10.0.2.0/24', '192.0.2.2')]).map((e) => [e.type, leaseId(e.lease)]), [
    ['added', '10.0.1.0-24'],
    ['added', '10.0.2.0-24'],
  ]);
  const ev = t.snapshot([L('10.0.2.0/24', '192.0.2.2', 'bb:bb:bb:bb:bb:bb'), L('10.0.3.0/24', '192.0.2.3')]);
  assert.deepEqual(ev.map((e) => [e.type, leaseId(e.lease)]), [
    ['removed', '10.0.1.0-24'],
    ['added', '10.0.2.0-24'],
    ['added', '10.0.3.0-24'],
  ]);
  assert.equal(ev[0]!.lease.attrs.publicIP, parseIPv4('192.0.2.1'));
  assert.deepEqual(t.snapshot(t.all()), []);
  assert.deepEqual(t.put(L('10.0.3.0/24', '192.0.2.3')), []);
  assert.equal(t.remove('10.0.3.0-24')[0]!.type, 'removed');
  assert.deepEqual(t.remove('10.0.3.0-24'), []);
});
