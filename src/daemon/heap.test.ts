import { test } from 'node:test';
import { getHeapSpaceStatistics } from 'node:v8';
import assert from 'node:assert/strict';
import { HeapTrimmer, heapCompactor } from './heap.js';
import { ManualClock } from '../testing/manual-clock.js';

function trimmer(extra: { afterLeases?: number; quietMs?: number } = {}) {
  const clock = new ManualClock();
  const trims: number[] = [];
  const t = new HeapTrimmer({ clock, collect: () => trims.push(clock.now()), afterLeases: 1000, quietMs: 1000, onTrim: () => undefined, ...extra });
  return { clock, trims, t };
}

test('a burst of at least afterLeases changes: one trim, quietMs after the last work', async () => {
  const { clock, trims, t } = trimmer();
  const t0 = clock.now();
  t.handled(600);
  await clock.advance(5000);
  assert.deepEqual(trims, [], 'under the threshold: nothing');
  t.handled(400);
  await clock.advance(500);
  t.busy(); // a reconcile ran: wait again
  await clock.advance(999);
  assert.deepEqual(trims, []);
  await clock.advance(1);
  assert.deepEqual(trims, [t0 + 5000 + 500 + 1000]);
  await clock.advance(60_000);
  assert.equal(trims.length, 1, 'once per burst');
  t.busy();
  await clock.advance(5000);
  assert.equal(trims.length, 1, 'work alone, with nothing handled, does not trim');
});

test('a steady trickle that never goes quiet does not trim; soon() trims once quiet whatever was handled; close() cancels', async () => {
  const { clock, trims, t } = trimmer();
  for (let i = 0; i < 30; i++) {
    t.handled(100);
    t.busy();
    await clock.advance(900);
  }
  assert.deepEqual(trims, []);
  await clock.advance(1000);
  assert.equal(trims.length, 1, 'the trickle stopped: the 3000 changes are collected');

  t.soon();
  await clock.advance(1000);
  assert.equal(trims.length, 2);

  t.handled(5000);
  t.close();
  await clock.advance(10_000);
  assert.equal(trims.length, 2);
  t.soon();
  t.handled(5000);
  assert.equal(clock.pending, 0);
});

test('heapCompactor (real V8): after garbage with scattered survivors, the heap shrinks to about what is live', () => {
  const compact = heapCompactor();
  assert.ok(compact, 'this Node allows a collection');
  let keep: object[] = [];
  let garbage: object[] | null = [];
  for (let i = 0; i < 300_000; i++) {
    const o = { s: `x${i}`, a: [i, i + 1] };
    garbage.push(o);
    if (i % 20 === 0) keep.push(o);
  }
  garbage = null;
  const old = () => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!;
  const before = old();
  compact();
  const after = old();
  assert.ok(after.space_used_size < before.space_used_size / 2, `old space used ${before.space_used_size} -> ${after.space_used_size}`);
  // the pages the garbage took are given back: the old space's size follows what it uses
  assert.ok(after.space_size < 2 * after.space_used_size + 4 * 1048576, `old space ${after.space_size} for ${after.space_used_size} used (was ${before.space_size})`);
  assert.equal(keep.length, 15_000);
  keep = [];
});

test('mallocTrim: not with onlyIfLoaded before koffi is; then glibc has it (the product runs on glibc: Debian, the image); calling it twice is harmless', async () => {
  const { mallocTrim } = await import('../netlink/libc.js');
  assert.equal(mallocTrim({ onlyIfLoaded: true }), false, 'nothing in this test file has loaded koffi yet');
  assert.equal(mallocTrim(), true);
  assert.equal(mallocTrim({ onlyIfLoaded: true }), true);
  assert.equal(mallocTrim(), true);
});
