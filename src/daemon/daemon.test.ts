import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { leaseId } from '../lease/lease.js';
import { MemoryLogger } from '../testing/memory-logger.js';
import { BackendRegistry } from '../backend/backend.js';
import { MemoryStore } from '../testing/memory-store.js';
import { RecordingBackend } from '../testing/recording-backend.js';
import { Daemon, type DaemonOptions } from './daemon.js';
import type { HostView } from './iface.js';

const host: HostView = {
  interfaces: () => [{ name: 'eth0', index: 2, mtu: 1500, ipv4: ['192.0.2.11'], ipv6: [] }],
  defaultRouteInterface: () => 'eth0',
};

async function start(store: MemoryStore, extra: Partial<DaemonOptions> = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-daemon-'));
  const log = new MemoryLogger();
  const d = new Daemon({
    store,
    backends: new BackendRegistry().register('alloc', (ctx) => new RecordingBackend(ctx)),
    log,
    host,
    iface: { iface: [], ifaceRegex: [] },
    subnetFile: path.join(dir, 'subnet.env'),
    ipMasq: false,
    renewMarginMinutes: 60,
    ...extra,
  });
  const ac = new AbortController();
  const exit = d.run(ac.signal);
  for (let i = 0; !d.ready; i++) {
    if (i > 200) throw new Error(JSON.stringify(log.lines));
    await new Promise((r) => setTimeout(r, 10));
  }
  return { d, log, dir, exit, stop: async () => (ac.abort(), await exit), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

const CFG = '{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}';

test('renews at expiry minus the margin, with a fresh TTL each time', async () => {
  const store = new MemoryStore(CFG);
  // margin just under 24 h: the first renewal falls ~0.3 s after acquisition
  const t = await start(store, { renewMarginMinutes: 1440 - 0.005 });
  try {
    const id = leaseId(t.d.lease!);
    await store.putSubnet(id, (await store.getSubnet(id))!.value, 30);
    for (let i = 0; (await store.getSubnet(id))!.ttlSeconds! < 80000; i++) {
      assert.ok(i < 200, 'renewed');
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(t.log.lines.some((l) => /renewed lease/.test(l.msg)));
    const m = await t.d.metrics.registry.getSingleMetricAsString('flannel_lease_renewals_total');
    assert.match(m, /flannel_lease_renewals_total\{result="ok"\} [1-9]/);
  } finally {
    assert.equal((await t.stop()).code, 0);
    t.cleanup();
  }
});

test('an own lease that expired (missed renewals) is taken again, same subnet, without stopping', async () => {
  const store = new MemoryStore(CFG);
  const t = await start(store);
  try {
    const id = leaseId(t.d.lease!);
    // pretend renewals failed for 24 h: the lease is past its expiration and etcd dropped the key
    t.d.lease = { ...t.d.lease!, expiration: new Date(Date.now() - 1000) };
    await store.deleteSubnet(id);
    for (let i = 0; !(await store.getSubnet(id)); i++) {
      assert.ok(i < 200, 're-acquired');
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(leaseId(t.d.lease!), id);
    assert.equal(t.d.state, 'ready');
    assert.ok(t.log.lines.some((l) => /expired before it could be renewed/.test(l.msg)));
  } finally {
    assert.equal((await t.stop()).code, 0);
    t.cleanup();
  }
});

test('a revoked lease (deleted while valid) stops the daemon with exit 0; subnet.env stays', async () => {
  const store = new MemoryStore(CFG);
  const t = await start(store);
  try {
    await store.deleteSubnet(leaseId(t.d.lease!));
    const exit = await t.exit;
    assert.deepEqual(exit, { code: 0, reason: 'lease revoked' });
    assert.match(readFileSync(path.join(t.dir, 'subnet.env'), 'utf8'), /^FLANNEL_NETWORK=10\.244\.0\.0\/16\n/);
  } finally {
    t.cleanup();
  }
});

test('a burst of lease events is coalesced into few reconciles with the final desired set', async () => {
  const store = new MemoryStore(CFG);
  const t = await start(store);
  try {
    const mine = leaseId(t.d.lease!);
    const names = Array.from({ length: 201 }, (_, i) => `10.244.${i + 2}.0-24`).filter((n) => n !== mine).slice(0, 200);
    await Promise.all(names.map((n, i) => store.putSubnet(n, `{"PublicIP":"198.18.0.${i + 1}","PublicIPv6":null}`, 60)));
    await new Promise((r) => setTimeout(r, 50));
    await t.d.settled();
    const b = (t.d as unknown as { backend: RecordingBackend }).backend;
    const own = leaseId(t.d.lease!);
    const expected = (await store.listSubnets()).entries.map((e) => e.name).filter((n) => n !== own).sort();
    assert.deepEqual(b.last.map(leaseId).sort(), expected);
    assert.ok(b.calls.length < 50, `coalesced: ${b.calls.length} reconciles`);
  } finally {
    await t.stop();
    t.cleanup();
  }
});
