import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIPv4, parseIPv4Net } from '../lease/ip.js';
import type { Lease } from '../lease/lease.js';
import type { LeaseEvent } from '../lease/tracker.js';
import { MemoryLogger } from '../testing/memory-logger.js';
import { ManualClock } from '../testing/manual-clock.js';
import { ReconcileQueue, type RunResult } from './reconcile.js';

const lease = (n: number): Lease => ({ subnet: parseIPv4Net(`10.244.${n}.0/24`), subnet6: null, attrs: { publicIP: parseIPv4(`192.0.2.${n}`), publicIPv6: null, backendType: 'vxlan' }, expiration: null });
const added = (n: number): LeaseEvent => ({ type: 'added', lease: lease(n) });

function queue(result: () => RunResult = () => ({ errors: [], changes: 0 })) {
  const clock = new ManualClock();
  const log = new MemoryLogger();
  const runs: Array<readonly LeaseEvent[]> = [];
  let release: (() => void) | null = null;
  let hold = false;
  const q = new ReconcileQueue({
    clock,
    log,
    run: async (events) => {
      runs.push(events);
      if (hold) await new Promise<void>((r) => (release = r));
      return result();
    },
  });
  return {
    q,
    clock,
    log,
    runs,
    hold: () => (hold = true),
    release: () => {
      hold = false;
      release?.();
    },
  };
}

test('a burst of lease events while a run is in progress is merged into one more run', async () => {
  const t = queue();
  t.hold();
  t.q.push([added(1)]);
  await new Promise((r) => setImmediate(r));
  for (let i = 2; i <= 100; i++) t.q.push([added(i)]);
  t.release();
  await t.q.settled();
  assert.equal(t.runs.length, 2);
  assert.equal(t.runs[0]!.length, 1);
  assert.equal(t.runs[1]!.length, 99, 'every event reaches the backend, in one run');
});

test('an empty push (a re-list) or a kick makes the run a full pass; kicks are debounced', async () => {
  const t = queue();
  t.q.push([added(1)]);
  t.q.push([]);
  await t.q.settled();
  assert.deepEqual(t.runs, [[]]);
  t.q.kick('neigh deleted');
  t.q.kick('route deleted');
  t.q.kick('neigh deleted');
  await t.q.settled();
  assert.equal(t.runs.length, 1, 'not before the debounce');
  await t.clock.advance(5);
  await t.q.settled();
  assert.equal(t.runs.length, 2, 'three kicks, one run');
});

test('a kicked run that changed something is a heal (once, by its first trigger); not when lease events were merged in', async () => {
  const t = queue(() => ({ errors: [], changes: 3 }));
  t.q.kick('device deleted');
  t.q.kick('route deleted');
  await t.clock.advance(5);
  await t.q.settled();
  assert.deepEqual(t.q.heals, { 'device deleted': 1 });
  assert.deepEqual(t.log.lines.map((l) => l.msg), ['restored 3 kernel entries (device deleted, route deleted)']);
  t.q.push([added(7)]);
  t.q.kick('periodic check');
  await t.clock.advance(5);
  await t.q.settled();
  assert.deepEqual(t.q.heals, { 'device deleted': 1 }, 'the changes may be the new lease\'s');
  t.q.push([added(8)]);
  await t.q.settled();
  assert.deepEqual(t.q.heals, { 'device deleted': 1 }, 'a lease run is never a heal');
});

test('an error is logged when it first shows, again only after it went away; a throwing run is logged and the queue goes on', async () => {
  let errors: Error[] = [new Error('peer 10.244.3.0/24: EINVAL')];
  let fail = false;
  const t = queue(() => {
    if (fail) throw new Error('kernel port closed');
    return { errors, changes: 0 };
  });
  for (let i = 0; i < 5; i++) {
    t.q.push([]);
    await t.q.settled();
  }
  errors = [];
  t.q.push([]);
  await t.q.settled();
  errors = [new Error('peer 10.244.3.0/24: EINVAL')];
  t.q.push([]);
  await t.q.settled();
  fail = true;
  t.q.push([]);
  await t.q.settled();
  fail = false;
  t.q.push([]);
  await t.q.settled();
  assert.deepEqual(t.log.lines.map((l) => `${l.level} ${l.msg}`), ['warn reconcile: peer 10.244.3.0/24: EINVAL', 'warn reconcile: peer 10.244.3.0/24: EINVAL', 'error reconcile failed: kernel port closed']);
  assert.equal(t.runs.length, 9);
  await t.q.close();
  t.q.push([]);
  t.q.kick('late');
  await t.clock.advance(10);
  assert.equal(t.runs.length, 9, 'nothing runs after close');
});
