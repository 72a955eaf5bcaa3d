import { test } from 'node:test';
import assert from 'node:assert/strict';
import { leaseId } from '../lease/lease.js';
import { MemoryLogger } from '../testing/memory-logger.js';
import { MemoryStore } from '../testing/memory-store.js';
import { parseNetworkConfig } from './config.js';
import { LeaseWatch, WATCH_SLICE, type LeaseUpdate } from './watch.js';
import type { StoreEvent, WatchHandle, WatchHandlers } from '../store/store.js';

const CFG = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}';
const V = (ip: string) => `{"PublicIP":"${ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:01"}}`;

async function until(what: string, cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('watch: a key with host bits set is never delivered, and is warned about once, not on every re-list', async () => {
  const store = new MemoryStore(CFG);
  await store.putSubnet('10.244.42.128-24', V('192.0.2.9'), 600);
  await store.putSubnet('10.244.3.0-24', V('192.0.2.3'), 600);
  const log = new MemoryLogger();
  const updates: LeaseUpdate[] = [];
  const w = new LeaseWatch(store, parseNetworkConfig(CFG), log, (u) => updates.push(u), { backoffMinMs: 5 });
  w.start();
  try {
    await until('first snapshot', () => updates.length > 0);
    for (let i = 0; i < 3; i++) {
      const n = w.relists;
      store.breakWatches();
      await until('re-listed', () => w.relists > n);
    }
    await store.putSubnet('10.244.42.128-24', V('192.0.2.9'), 600); // the same bytes again, through the watch
    await store.putSubnet('10.244.4.0-24', V('192.0.2.4'), 600);
    await until('later lease', () => w.leases().some((l) => leaseId(l) === '10.244.4.0-24'));
    assert.deepEqual(w.leases().map(leaseId).sort(), ['10.244.3.0-24', '10.244.4.0-24']);
    assert.ok(!updates.some((u) => u.leases.some((l) => leaseId(l) === '10.244.42.128-24')));
    const warns = log.lines.filter((l) => l.level === 'warn' && /10\.244\.42\.128-24/.test(l.msg));
    assert.deepEqual(
      warns.map((l) => l.msg),
      ['ignoring lease /memory/subnets/10.244.42.128-24: subnet 10.244.42.128/24 has host bits set (a /24 starts at 10.244.42.0)'],
    );
  } finally {
    await w.stop();
    await store.close();
  }
});

test('watch: a store that went back in time (wiped) is noticed at the re-list and flagged on that snapshot', async () => {
  const store = new MemoryStore(CFG);
  for (let i = 1; i <= 5; i++) await store.putSubnet(`10.244.${i}.0-24`, V(`192.0.2.${i}`), 600);
  const updates: LeaseUpdate[] = [];
  const w = new LeaseWatch(store, parseNetworkConfig(CFG), new MemoryLogger(), (u) => updates.push(u), { backoffMinMs: 5 });
  w.start();
  try {
    await until('first snapshot', () => updates.length > 0);
    assert.equal(updates[0]!.storeReset, undefined);
    // an ordinary re-list is not a reset
    store.breakWatches();
    await until('re-listed', () => w.relists === 2);
    assert.ok(updates.filter((u) => u.snapshot).every((u) => u.storeReset === undefined));

    store.wipe();
    await store.putSubnet('10.244.9.0-24', V('192.0.2.9'), 600);
    await until('reset snapshot', () => updates.some((u) => u.storeReset !== undefined));
    const reset = updates.find((u) => u.storeReset !== undefined)!;
    assert.match(reset.storeReset!, /^its revision went back from \d+ to \d+$/);
    assert.deepEqual(reset.leases.map(leaseId), ['10.244.9.0-24']);
    assert.equal(reset.events.filter((e) => e.type === 'removed').length, 5);
    // and it keeps watching the new store
    await store.putSubnet('10.244.10.0-24', V('192.0.2.10'), 600);
    await until('watching again', () => w.leases().some((l) => leaseId(l) === '10.244.10.0-24'));
    assert.equal(updates.filter((u) => u.storeReset !== undefined).length, 1, 'flagged once');
  } finally {
    await w.stop();
    await store.close();
  }
});

const CFG8 = '{"Network":"10.0.0.0/8","Backend":{"Type":"vxlan"}}';

/** A store whose watch the test drives: one listing (empty), then whatever onEvents the test sends. */
class DrivenStore extends MemoryStore {
  handlers: WatchHandlers | null = null;
  override watchSubnets(_from: number, h: WatchHandlers): WatchHandle {
    this.handlers = h;
    return { cancel: async () => void (this.handlers = null) };
  }
}

/** A started LeaseWatch on a DrivenStore, once the store is being watched; its updates are collected. */
async function drivenWatch() {
  const store = new DrivenStore(CFG8);
  const updates: LeaseUpdate[] = [];
  const w = new LeaseWatch(store, parseNetworkConfig(CFG8), new MemoryLogger(), (u) => updates.push(u), { backoffMinMs: 5 });
  w.start();
  try {
    await until('watching', () => store.handlers !== null);
  } catch (e) {
    await w.stop();
    throw e;
  }
  return { store, updates, w };
}

/** the i-th /24 of 10.100.0.0/14 */
const name8 = (i: number) => `10.${100 + (i >> 8)}.${i & 255}.0-24`;

test('watch: a message of thousands of events (one etcd transaction) is applied in slices, in order, none lost', async () => {
  const { store, updates, w } = await drivenWatch();
  try {
    const n = 5 * WATCH_SLICE + 17;
    const events: StoreEvent[] = Array.from({ length: n }, (_, i) => ({ type: 'put', name: name8(i), key: `/k/${name8(i)}`, value: V(`192.0.2.${(i % 200) + 1}`), revision: 10 }));
    updates.length = 0;
    store.handlers!.onEvents(events, 10);
    // the first slice is applied right away, the rest after other work had its turn
    assert.equal(updates.length, 1);
    assert.equal(updates[0]!.events.length, WATCH_SLICE);
    // a message arriving meanwhile queues behind the backlog: its delete comes after the put it undoes
    store.handlers!.onEvents([{ type: 'delete', name: name8(0), key: `/k/${name8(0)}`, revision: 11 }], 11);
    assert.equal(updates.length, 1);
    await until('all applied', () => updates.reduce((a, u) => a + u.events.length, 0) === n + 1);
    assert.ok(updates.every((u) => u.events.length <= WATCH_SLICE && !u.snapshot));
    const all = updates.flatMap((u) => u.events.map((e) => `${e.type} ${leaseId(e.lease)}`));
    assert.deepEqual(all, [...events.map((e) => `added ${e.name}`), `removed ${name8(0)}`]);
    assert.equal(w.leases().length, n - 1);
  } finally {
    await w.stop();
  }
});

test('watch: a backlog not yet applied when the watch ends is dropped; the re-list diffs it in', async () => {
  const { store, updates, w } = await drivenWatch();
  try {
    const n = 3 * WATCH_SLICE;
    // the store holds them too, as etcd would after the transaction
    for (let i = 0; i < n; i++) await store.putSubnet(name8(i), V('192.0.2.7'), 600);
    const h = store.handlers!;
    h.onEvents(Array.from({ length: n }, (_, i) => ({ type: 'put' as const, name: name8(i), key: `/k/${name8(i)}`, value: V('192.0.2.7'), revision: 5 })), 5);
    const relists = w.relists;
    h.onError(new Error('watch broken by test'));
    await until('re-listed', () => w.relists > relists);
    await until('everything known', () => w.leases().length === n);
    const added = updates.flatMap((u) => u.events).filter((e) => e.type === 'added').map((e) => leaseId(e.lease));
    assert.equal(new Set(added).size, n, 'each lease once: from the first slice or from the re-list, never twice');
    assert.equal(added.length, n);
  } finally {
    await w.stop();
  }
});
