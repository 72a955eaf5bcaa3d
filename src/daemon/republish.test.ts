// The daemon's republish hook (issue 12): a backend whose published
// attributes change at runtime (vxlan: an edge segment's interface failed)
// gets our lease written again with them, same subnet, daemon still running.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BackendRegistry, type PublishedAttrs } from '../backend/backend.js';
import { MemoryLogger } from '../testing/memory-logger.js';
import { MemoryStore } from '../testing/memory-store.js';
import { RecordingBackend } from '../testing/recording-backend.js';
import { Daemon } from './daemon.js';

test('republish: our lease is re-put with the new attributes (same subnet, PublicIP kept); an unchanged republish writes nothing', async () => {
  const store = new MemoryStore('{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}');
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-republish-'));
  const log = new MemoryLogger();
  const base: PublishedAttrs = { backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: '02:00:00:00:00:01' }, edgeNetworks: ['192.168.50.0/24'] };
  let backend!: RecordingBackend;
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  const d = new Daemon({
    store,
    backends: new BackendRegistry().register('alloc', (ctx) => (backend = new RecordingBackend(ctx, base))),
    log,
    host: { interfaces: () => [{ name: 'eth0', index: 2, mtu: 1500, ipv4: ['192.0.2.11'], ipv6: [] }], defaultRouteInterface: () => 'eth0' },
    iface: { iface: [], ifaceRegex: [] },
    subnetFile: path.join(dir, 'subnet.env'),
    ipMasq: false,
    renewMarginMinutes: 60,
    onReady: () => ready(),
  });
  const ac = new AbortController();
  const exit = d.run(ac.signal);
  try {
    await isReady;
    const { entries } = await store.listSubnets();
    assert.equal(entries.length, 1);
    const key = entries[0]!.name;
    const before = entries[0]!.value;
    assert.match(before, /,"EdgeNetworks":\["192\.168\.50\.0\/24"\]\}$/);
    backend.ctx.republish!({ ...base, edgeNetworks: [] });
    for (let i = 0; i < 100 && (await store.getSubnet(key))!.value === before; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal((await store.getSubnet(key))!.value, '{"PublicIP":"192.0.2.11","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:01"},"EdgeNetworks":[]}');
    assert.equal((await store.listSubnets()).entries.length, 1, 'same subnet');
    assert.deepEqual(d.lease!.attrs.edgeNetworks, [], 'renewals carry the new attributes');
    const lines = log.lines.length;
    backend.ctx.republish!({ ...base, edgeNetworks: [] });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(log.lines.slice(lines).filter((l) => /publishing changed attributes/.test(l.msg)).length, 0, 'nothing changed: nothing written');
    assert.equal(d.state, 'ready');
  } finally {
    ac.abort();
    await exit;
    rmSync(dir, { recursive: true, force: true });
  }
});
