import { test } from 'node:test';
import assert from 'node:assert/strict';
import { realClock } from '../clock.js';
import { ManualClock } from './manual-clock.js';

test('manual clock: timers fire in time order, each at its own time, only when advanced', async () => {
  const c = new ManualClock(1000);
  const fired: Array<[string, number]> = [];
  c.setTimeout(() => fired.push(['b', c.now()]), 20);
  c.setTimeout(() => fired.push(['a', c.now()]), 10);
  const gone = c.setTimeout(() => fired.push(['cancelled', c.now()]), 15);
  c.setTimeout(() => fired.push(['a2', c.now()]), 10);
  c.clearTimeout(gone);
  assert.equal(c.pending, 3);
  await c.advance(9);
  assert.deepEqual(fired, []);
  assert.equal(c.now(), 1009);
  await c.advance(100);
  assert.deepEqual(fired, [['a', 1010], ['a2', 1010], ['b', 1020]]);
  assert.equal(c.now(), 1109);
  assert.equal(c.pending, 0);
});

test('manual clock: a timer set by a timer (after an await) fires within the same advance', async () => {
  const c = new ManualClock(0);
  const at: number[] = [];
  const tick = (): void => {
    void Promise.resolve().then(() => {
      at.push(c.now());
      if (at.length < 5) c.setTimeout(tick, 60_000);
    });
  };
  c.setTimeout(tick, 60_000);
  await c.advance(10 * 60_000);
  assert.deepEqual(at, [60_000, 120_000, 180_000, 240_000, 300_000]);
});

test('manual clock: sleep resolves on advance or on abort; fireNext jumps to the next timer', async () => {
  const c = new ManualClock(0);
  let slept = false;
  const p = c.sleep(5000).then(() => (slept = true));
  await c.advance(4999);
  assert.equal(slept, false);
  assert.equal(c.nextAt, 5000);
  assert.equal(await c.fireNext(), true);
  await p;
  assert.equal(slept, true);
  const ac = new AbortController();
  const q = c.sleep(1e9, ac.signal);
  ac.abort();
  await q;
  assert.equal(c.pending, 0, 'an aborted sleep leaves no timer behind');
  assert.equal(await c.fireNext(), false);
});

test('real clock: now is Date.now, timers fire and can be cleared, sleep waits', async () => {
  assert.ok(Math.abs(realClock.now() - Date.now()) < 50);
  let fired = false;
  const t = realClock.setTimeout(() => (fired = true), 1);
  realClock.clearTimeout(t);
  const t0 = Date.now();
  await realClock.sleep(20);
  assert.ok(Date.now() - t0 >= 15);
  assert.equal(fired, false);
  const ac = new AbortController();
  ac.abort();
  await realClock.sleep(1e6, ac.signal);
});
