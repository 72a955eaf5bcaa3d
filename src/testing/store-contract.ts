// The LeaseStore contract, as a suite any adapter runs (memory here, etcd in
// test/etcd, sqlite later). Each case gets a fresh, empty store.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LeaseStore, StoreEvent } from '../store/store.js';

export function storeContract(name: string, make: () => Promise<LeaseStore>, opts: { ttlWaitMs?: number } = {}): void {
  const withStore = (title: string, fn: (s: LeaseStore) => Promise<void>): void =>
    void test(`${name} contract: ${title}`, async () => {
      const s = await make();
      try {
        await fn(s);
      } finally {
        await s.close();
      }
    });

  withStore('put/get keeps the exact bytes; TTL and permanent entries', async (s) => {
    const v = '{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}';
    await s.putSubnet('10.244.1.0-24', v, 3600);
    await s.putSubnet('10.244.2.0-24', v, null);
    const a = await s.getSubnet('10.244.1.0-24');
    assert.equal(a!.value, v);
    assert.equal(a!.permanent, false);
    assert.ok(a!.ttlSeconds! > 3500 && a!.ttlSeconds! <= 3600);
    const b = await s.getSubnet('10.244.2.0-24');
    assert.equal(b!.permanent, true);
    assert.equal(await s.getSubnet('10.244.3.0-24'), null);
    const { entries } = await s.listSubnets({ withTTL: true });
    assert.deepEqual(entries.map((e) => e.name).sort(), ['10.244.1.0-24', '10.244.2.0-24']);
  });

  withStore('createSubnet is create-if-absent: one of 20 racers wins', async (s) => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => s.createSubnet('10.244.9.0-24', `{"n":${i}}`, 60)));
    assert.equal(results.filter(Boolean).length, 1);
    const winner = results.indexOf(true);
    assert.equal((await s.getSubnet('10.244.9.0-24'))!.value, `{"n":${winner}}`);
  });

  withStore('watch from list revision + 1 sees later puts and deletes in order', async (s) => {
    await s.putSubnet('10.244.1.0-24', 'a', 60);
    const { revision } = await s.listSubnets();
    const seen: StoreEvent[] = [];
    const h = s.watchSubnets(revision + 1, { onEvents: (evs) => seen.push(...evs), onError: (e) => assert.fail(e) });
    try {
      await new Promise((r) => setTimeout(r, 100));
      await s.putSubnet('10.244.2.0-24', 'b', 60);
      await s.deleteSubnet('10.244.1.0-24');
      const deadline = Date.now() + 5000;
      while (seen.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(seen.map((e) => [e.type, e.name]), [['put', '10.244.2.0-24'], ['delete', '10.244.1.0-24']]);
      assert.equal((seen[0] as { value: string }).value, 'b');
    } finally {
      await h.cancel();
    }
  });

  withStore('an entry whose TTL runs out is deleted and watchers see it', async (s) => {
    const { revision } = await s.listSubnets();
    const seen: StoreEvent[] = [];
    const h = s.watchSubnets(revision + 1, { onEvents: (evs) => seen.push(...evs), onError: () => undefined });
    try {
      await s.createSubnet('10.244.4.0-24', 'x', 1);
      const deadline = Date.now() + (opts.ttlWaitMs ?? 8000);
      while (!seen.some((e) => e.type === 'delete') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(seen.map((e) => e.type), ['put', 'delete']);
      assert.equal(await s.getSubnet('10.244.4.0-24'), null);
    } finally {
      await h.cancel();
    }
  });
}
