// WorkerTransport against the real kernel, read-only (dumps and a lookup of
// an interface index that does not exist), so it needs no privileges and
// changes nothing: the worker must return what the inline socket returns,
// and errors must keep their identity (errno, code, op) across the thread.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { NetlinkError } from './errors.js';
import * as R from './requests.js';
import { decodeLink } from './rtnl.js';
import { NetlinkSocket } from './socket.js';
import { InlineTransport, WorkerTransport } from './transport.js';

test('the worker transport returns what the inline socket returns', async () => {
  const inline = new InlineTransport(NetlinkSocket.open());
  const worker = WorkerTransport.open();
  try {
    const a = (await inline.dump(R.dumpLinksRequest())).map(decodeLink).map((l) => `${l.index}:${l.name}`);
    const b = (await worker.dump(R.dumpLinksRequest())).map(decodeLink).map((l) => `${l.index}:${l.name}`);
    assert.deepEqual(b, a);
    assert.ok(a.length >= 1);
    assert.ok(worker.portId() > 0, 'the worker reported its socket\'s port id');
    assert.notEqual(worker.portId(), inline.portId());
    const got = await worker.request(R.getLinkRequest({ index: 1 }));
    assert.equal(decodeLink(got.find((m) => m.header.type === 16 /* RTM_NEWLINK */)!).index, 1);
  } finally {
    inline.close();
    worker.close();
  }
});

test('errors cross the thread with their identity', async () => {
  const worker = WorkerTransport.open();
  try {
    await assert.rejects(worker.request(R.getLinkRequest({ index: 0x7ffffff0 })), (e: unknown) => {
      assert.ok(e instanceof NetlinkError, String(e));
      assert.equal(e.code, 'ENODEV');
      assert.equal(e.errno, 19);
      assert.match(e.op, /link/);
      return true;
    });
    const replies = await worker.batch([R.getLinkRequest({ index: 1 }), R.getLinkRequest({ index: 0x7ffffff1 })]);
    assert.equal(replies[0]!.ok, true);
    assert.equal(replies[1]!.ok, false);
    if (!replies[1]!.ok) assert.equal(replies[1]!.error.code, 'ENODEV');
  } finally {
    worker.close();
  }
});

test('many concurrent requests stay in order and the event loop keeps turning', async () => {
  const worker = WorkerTransport.open();
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  try {
    const rs = await Promise.all(Array.from({ length: 200 }, () => worker.dump(R.dumpLinksRequest())));
    assert.equal(new Set(rs.map((r) => r.length)).size, 1);
    assert.equal(worker.inFlight, 0);
  } finally {
    h.disable();
    worker.close();
  }
  assert.ok(h.max / 1e6 < 250, `event loop blocked for ${(h.max / 1e6).toFixed(1)} ms`);
});

test('a closed transport refuses new requests with a clear error', async () => {
  const worker = WorkerTransport.open();
  worker.close();
  await assert.rejects(worker.dump(R.dumpLinksRequest()), /netlink transport is closed/);
});
