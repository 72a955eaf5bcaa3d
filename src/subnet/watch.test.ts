import { test } from 'node:test';
import assert from 'node:assert/strict';
import { leaseId } from '../lease/lease.js';
import { MemoryLogger } from '../testing/memory-logger.js';
import { MemoryStore } from '../testing/memory-store.js';
import { parseNetworkConfig } from './config.js';
import { LeaseWatch, type LeaseUpdate } from './watch.js';

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
