import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIPv4 } from '../lease/ip.js';
import { leaseId, parseSubnetKey, withoutConflicts, type Lease } from '../lease/lease.js';
import type { LeaseEvent } from '../lease/tracker.js';
import { RemotePeers } from './peers.js';

const mk = (key: string, ip = '192.0.2.1'): Lease => ({ ...parseSubnetKey(key)!, attrs: { publicIP: parseIPv4(ip), publicIPv6: null, backendType: 'vxlan' }, expiration: null });
const added = (l: Lease): LeaseEvent => ({ type: 'added', lease: l });
const removed = (l: Lease): LeaseEvent => ({ type: 'removed', lease: l });
const show = (evs: readonly LeaseEvent[]) => evs.map((e) => `${e.type} ${leaseId(e.lease)}`);

function peers() {
  const warned: string[] = [];
  return { p: new RemotePeers((id, reason) => warned.push(`${id}: ${reason}`)), warned };
}

const own = mk('10.244.1.0-24');
const a = mk('10.244.2.0-24');
const b = mk('10.244.2.0-24&fd00::-64'); // a's IPv4 subnet under another key
const c = mk('10.244.1.0-24&fd00:0:0:1::-64'); // our subnet under another key
const d = mk('10.244.3.0-24');
const wide = mk('10.244.0.0-16');

test('RemotePeers: events apply one by one; an overlapping newcomer is held back and said once; the backend hears only about leases in use', () => {
  const { p, warned } = peers();
  assert.deepEqual(show(p.apply([added(a), added(d)], own)), ['added 10.244.2.0-24', 'added 10.244.3.0-24']);
  // b overlaps a (in use), c our own, wide everybody: none reaches the backend
  assert.deepEqual(show(p.apply([added(b), added(c), added(wide)], own)), []);
  assert.deepEqual(warned, [
    '10.244.2.0-24&fd00::-64: its subnet overlaps lease 10.244.2.0-24',
    '10.244.1.0-24&fd00:0:0:1::-64: its subnet overlaps our own lease 10.244.1.0-24',
    '10.244.0.0-16: its subnet overlaps our own lease 10.244.1.0-24',
  ]);
  // held back and rewritten (new attributes): still held back, not said again
  assert.deepEqual(show(p.apply([added(mk('10.244.2.0-24&fd00::-64', '192.0.2.99'))], own)), []);
  assert.equal(warned.length, 3);
  // a changed lease in use passes through
  const a2 = mk('10.244.2.0-24', '192.0.2.42');
  assert.deepEqual(show(p.apply([added(a2)], own)), ['added 10.244.2.0-24']);
  assert.equal(p.get('10.244.2.0-24'), a2);
  assert.deepEqual(p.leases.map(leaseId), ['10.244.2.0-24', '10.244.3.0-24']);
  // a, in use, goes: b (held back behind it) comes in, in the same update, with its latest attributes
  const out = p.apply([removed(a)], own);
  assert.deepEqual(show(out), ['removed 10.244.2.0-24', 'added 10.244.2.0-24&fd00::-64']);
  assert.equal(out[0]!.lease, a2, 'the removal carries the lease the backend knew');
  assert.equal(out[1]!.lease.attrs.publicIP, parseIPv4('192.0.2.99'));
  assert.deepEqual(p.leases.map(leaseId).sort(), ['10.244.2.0-24&fd00::-64', '10.244.3.0-24']);
  // a held-back lease that goes is forgotten silently; coming back, it is said again
  assert.deepEqual(show(p.apply([removed(c)], own)), []);
  assert.deepEqual(show(p.apply([added(c)], own)), []);
  assert.equal(warned.at(-1), '10.244.1.0-24&fd00:0:0:1::-64: its subnet overlaps our own lease 10.244.1.0-24');
  assert.equal(p.size, 2);
});

test('RemotePeers: a held-back lease whose blocker goes but which overlaps another is held back with the new reason', () => {
  const { p, warned } = peers();
  p.apply([added(a), added(d), added(wide)], null); // wide overlaps a (first in use)
  assert.deepEqual(warned, ['10.244.0.0-16: its subnet overlaps lease 10.244.2.0-24']);
  assert.deepEqual(show(p.apply([removed(a)], null)), ['removed 10.244.2.0-24']);
  assert.deepEqual(warned.at(-1), '10.244.0.0-16: its subnet overlaps lease 10.244.3.0-24');
  assert.deepEqual(show(p.apply([removed(d)], null)), ['removed 10.244.3.0-24', 'added 10.244.0.0-16']);
});

test('RemotePeers: a listing is checked whole with the leases in use first, as withoutConflicts; warnings carry over', () => {
  const { p, warned } = peers();
  p.apply([added(a)], own);
  p.reset([b, a, c, d], own);
  const expect = withoutConflicts([b, a, c, d], own, new Set([leaseId(a)]));
  assert.deepEqual(p.leases.map(leaseId), expect.kept.map(leaseId));
  assert.deepEqual(warned.sort(), expect.dropped.map((x) => `${leaseId(x.lease)}: ${x.reason}`).sort());
  const n = warned.length;
  p.reset([b, a, c, d], own);
  assert.equal(warned.length, n, 'the same conflicts are not said again');
  // incremental and whole agree
  const { p: q } = peers();
  q.apply([b, a, c, d].map(added), own);
  assert.deepEqual(q.leases.map(leaseId), withoutConflicts([b, a, c, d], own, new Set()).kept.map(leaseId));
});

test('RemotePeers: 5000 peers and one more cost one lookup each, not a pass over all', () => {
  const { p } = peers();
  const many = Array.from({ length: 5000 }, (_, i) => mk(`10.${100 + (i >> 8)}.${i & 255}.0-24`));
  p.apply(many.map(added), own);
  assert.equal(p.size, 5000);
  // 2000 updates of 1 event each: with a pass over all leases per update this takes seconds
  const extra = Array.from({ length: 1000 }, (_, i) => mk(`10.${200 + (i >> 8)}.${i & 255}.0-24`));
  const t0 = performance.now();
  for (const l of extra) p.apply([added(l)], own);
  for (const l of extra) p.apply([removed(l)], own);
  const ms = performance.now() - t0;
  assert.equal(p.size, 5000);
  assert.ok(ms < 500, `${ms.toFixed(0)} ms for 2000 single-event updates`);
});
