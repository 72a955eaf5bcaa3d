// The shared netlink worker (thread.ts): request sockets in one thread,
// read-only against the real kernel (no privileges).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as R from './requests.js';
import { NetlinkThread } from './thread.js';
import { WorkerTransport } from './transport.js';
import { exitDelay } from '../testing/exit-timer.js';

const exited = async (): Promise<void> => {
  for (let i = 0; i < 200 && NetlinkThread.threadId !== null; i++) await new Promise((r) => setTimeout(r, 5));
};

test('transports share one worker, which exits when the last closes', async () => {
  assert.equal(NetlinkThread.threadId, null);
  const t = WorkerTransport.open();
  const id = NetlinkThread.threadId;
  assert.ok(id !== null);
  const t2 = WorkerTransport.open();
  assert.equal(NetlinkThread.threadId, id, 'one worker for all of them');
  assert.ok((await t.dump(R.dumpLinksRequest())).length >= 1);
  t.close();
  assert.equal(NetlinkThread.threadId, id);
  // t2 outlives t
  assert.ok((await t2.dump(R.dumpLinksRequest())).length >= 1);
  assert.ok(t2.portId() > 0);
  t2.close();
  assert.equal(NetlinkThread.threadId, null, 'the worker is told to exit when nothing uses it');
  // the next open starts a new one
  const t4 = WorkerTransport.open();
  try {
    assert.ok(NetlinkThread.threadId !== null && NetlinkThread.threadId !== id);
    assert.ok((await t4.dump(R.dumpLinksRequest())).length >= 1);
  } finally {
    t4.close();
  }
  await exited();
});

test('one request after another: each wakes the worker from poll() at once', async () => {
  const t = WorkerTransport.open();
  try {
    // a lost wake-up would cost a whole poll interval (1 s) per request
    await t.dump(R.dumpLinksRequest());
    const t0 = performance.now();
    for (let i = 0; i < 50; i++) {
      await t.request(R.getLinkRequest({ index: 1 }));
      // let the worker fall asleep in between
      await new Promise((r) => setTimeout(r, 2));
    }
    const ms = performance.now() - t0;
    assert.ok(ms < 1000, `50 sequential requests took ${ms.toFixed(0)} ms`);
  } finally {
    t.close();
  }
  await exited();
});

test('process.exit() does not wait for the worker\'s poll timeout', () => {
  const r = exitDelay(
    { T: new URL('./transport.js', import.meta.url), R: new URL('./requests.js', import.meta.url) },
    'const t = T.WorkerTransport.open();\nawait t.dump(R.dumpLinksRequest());',
  );
  assert.equal(r.status, 0, r.stderr);
  // the worker was asleep in poll() for up to 1 s (nothing subscribed)
  assert.ok(r.exitMs < 600, `process.exit() took ${r.exitMs} ms`);
});
