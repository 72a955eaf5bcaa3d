import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from './memory-store.js';
import { storeContract } from './store-contract.js';

storeContract('memory', async () => new MemoryStore(), { ttlWaitMs: 3000 });

test('memory store: watching from a compacted revision fails, as etcd does', async () => {
  const s = new MemoryStore();
  await s.putSubnet('10.0.1.0-24', 'a', null);
  const { revision } = await s.listSubnets();
  await s.putSubnet('10.0.2.0-24', 'b', null);
  s.compact();
  const err = await new Promise<Error>((resolve) => s.watchSubnets(revision, { onEvents: () => undefined, onError: resolve }));
  assert.match(err.message, /compacted/);
  await s.close();
});
