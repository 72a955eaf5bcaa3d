import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseIPv4, parseIPv4Net } from '../lease/ip.js';
import { leaseId, type Lease } from '../lease/lease.js';
import { MemoryLogger } from '../testing/memory-logger.js';
import { BackendRegistry } from '../backend/backend.js';
import { MemoryStore } from '../testing/memory-store.js';
import { RecordingBackend } from '../testing/recording-backend.js';
import { parseNetworkConfig } from '../subnet/config.js';
import type { LeaseSource } from '../subnet/source.js';
import type { LeaseStore } from '../store/store.js';
import { LocalStore } from '../store/local/local-store.js';
import type { LeaseUpdate } from '../subnet/watch.js';
import { Daemon, type DaemonOptions } from './daemon.js';
import type { HostView } from './iface.js';

const host: HostView = {
  interfaces: () => [{ name: 'eth0', index: 2, mtu: 1500, ipv4: ['192.0.2.11'], ipv6: [] }],
  defaultRouteInterface: () => 'eth0',
};

/** A daemon on `store` with the alloc backend recorded, writing subnet.env in `dir`. */
function options(store: LeaseStore, dir: string, log: MemoryLogger, extra: Partial<DaemonOptions> = {}): DaemonOptions {
  return {
    store,
    backends: new BackendRegistry().register('alloc', (ctx) => new RecordingBackend(ctx)),
    log,
    host,
    iface: { iface: [], ifaceRegex: [] },
    subnetFile: path.join(dir, 'subnet.env'),
    ipMasq: false,
    renewMarginMinutes: 60,
    ...extra,
  };
}

async function start(store: LeaseStore, extra: Partial<DaemonOptions> = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-daemon-'));
  const log = new MemoryLogger();
  const d = new Daemon(options(store, dir, log, extra));
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

const DUAL = '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"alloc"}}';
const host6: HostView = {
  interfaces: () => [{ name: 'eth0', index: 2, mtu: 1500, ipv4: ['192.0.2.11'], ipv6: ['fe80::1', '2001:db8::11'] }],
  defaultRouteInterface: () => 'eth0',
};

test('EnableIPv6 (store or net-conf file): a dual-stack lease keyed as flannel keys it, PublicIPv6 from the interface (not link-local), v6 lines in subnet.env', { timeout: 10_000 }, async () => {
  for (const mode of ['store', 'file'] as const) {
    const store = new MemoryStore(mode === 'store' ? DUAL : null);
    const published = { backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: '02:00:00:00:00:01' }, backendV6Data: { VNI: 1, VtepMAC: '02:00:00:00:00:06' } };
    const backends = new BackendRegistry().register('alloc', (ctx) => new RecordingBackend(ctx, published));
    const t = await start(store, { host: host6, backends, ...(mode === 'file' ? { configText: DUAL } : {}) });
    try {
      const l = t.d.lease!;
      assert.match(leaseId(l), /^10\.244\.\d+\.0-24&fd00:10:244:[0-9a-f]+::-64$/, mode);
      const e = await store.getSubnet(leaseId(l));
      // the shape observed from real flannel (observed-flannel.md, dual-stack)
      assert.equal(e!.value, '{"PublicIP":"192.0.2.11","PublicIPv6":"2001:db8::11","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:01"},"BackendV6Data":{"VNI":1,"VtepMAC":"02:00:00:00:00:06"}}');
      const env = readFileSync(path.join(t.dir, 'subnet.env'), 'utf8');
      const v6 = leaseId(l).split('&')[1]!.replace(/-64$/, '');
      assert.match(env, new RegExp(`^FLANNEL_NETWORK=10\\.244\\.0\\.0/16\nFLANNEL_SUBNET=10\\.244\\.\\d+\\.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=${v6}1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n$`));
    } finally {
      await t.stop();
      t.cleanup();
    }
  }
});

test('IPv6 modes that do not work are refused at start-up with one line naming the field, before any lease is taken', { timeout: 10_000 }, async () => {
  const cases: Array<[string, string, HostView, RegExp]> = [
    ['udp', '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"udp"}}', host6, /^EnableIPv6: the udp backend has no IPv6 support \(as in flannel\)/],
    ['v6-only', '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"alloc"}}', host6, /^EnableIPv4: false \(IPv6-only\) is not supported yet/],
    ['nftables', DUAL.replace('"EnableIPv6"', '"EnableNFTables":true,"EnableIPv6"'), host6, /^EnableNFTables: the IPv6 table \(ip6 flannel-ipv6\) is not written by flannel-ts yet/],
    ['vxlan lease without BackendV6Data', DUAL, host6, /^vxlan backend published no BackendV6Data for a dual-stack lease/],
    ['no v6 address', DUAL, { interfaces: () => [{ name: 'eth0', index: 2, mtu: 1500, ipv4: ['192.0.2.11'], ipv6: ['fe80::1'] }], defaultRouteInterface: () => 'eth0' }, /^interface eth0 has no global IPv6 address, which EnableIPv6 needs; add one or give --public-ipv6$/],
  ];
  for (const [name, cfg, h, re] of cases) {
    const dir = mkdtempSync(path.join(tmpdir(), 'fts-daemon-'));
    const store = new MemoryStore(cfg);
    const log = new MemoryLogger();
    try {
      const d = new Daemon(options(store, dir, log, { host: h }));
      const exit = await d.run(new AbortController().signal);
      assert.equal(exit.code, 1, name);
      const errors = log.lines.filter((l) => l.level === 'error');
      assert.equal(errors.length, 1, JSON.stringify(errors));
      assert.match(errors[0]!.msg, re, name);
      assert.deepEqual((await store.listSubnets()).entries, [], 'no lease taken');
      assert.equal(existsSync(path.join(dir, 'subnet.env')), false, 'no subnet.env written');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('a store wiped under a running daemon: it says so once, writes its lease again and keeps running; a node started later sees it', async () => {
  const store = new MemoryStore(CFG);
  const t = await start(store);
  let t2: Awaited<ReturnType<typeof start>> | null = null;
  try {
    const id = leaseId(t.d.lease!);
    store.wipe();
    for (let i = 0; !(await store.getSubnet(id)); i++) {
      assert.ok(i < 300, `lease re-registered: ${JSON.stringify(t.log.lines)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(t.d.state, 'ready', 'not taken for a revocation');
    assert.equal(leaseId(t.d.lease!), id, 'same subnet');
    assert.match((await store.getSubnet(id))!.value, /"PublicIP":"192\.0\.2\.11"/);
    const said = t.log.lines.filter((l) => /went back in time/.test(l.msg));
    assert.equal(said.length, 1, JSON.stringify(t.log.lines));
    assert.match(said[0]!.msg, /^memory went back in time \(its revision went back from \d+ to \d+\): it was wiped or restored from an older snapshot; registering our lease 10\.244\.\d+\.0-24 again$/);
    assert.ok(!t.log.lines.some((l) => /revoked/.test(l.msg)));

    // the operator puts the config back; a node started now finds the old one, and the old one sees it
    store.config = CFG;
    const otherHost: HostView = { interfaces: () => [{ name: 'eth0', index: 2, mtu: 1500, ipv4: ['192.0.2.12'], ipv6: [] }], defaultRouteInterface: () => 'eth0' };
    t2 = await start(store, { host: otherHost });
    const id2 = leaseId(t2.d.lease!);
    assert.notEqual(id2, id);
    const b1 = (t.d as unknown as { backend: RecordingBackend }).backend;
    const b2 = (t2.d as unknown as { backend: RecordingBackend }).backend;
    await b2.waitFor((r) => r.some((l) => leaseId(l) === id));
    await b1.waitFor((r) => r.some((l) => leaseId(l) === id2));
  } finally {
    assert.equal((await t.stop()).code, 0);
    if (t2) assert.equal((await t2.stop()).code, 0);
    t.cleanup();
    t2?.cleanup();
  }
});

test('remote leases whose subnet overlaps ours or a peer in use never reach the backend; each is warned about once', async () => {
  const own: Lease = { subnet: parseIPv4Net('10.244.1.0/24'), subnet6: null, attrs: { publicIP: parseIPv4('192.0.2.11'), publicIPv6: null, backendType: 'vxlan' }, expiration: null };
  const peer = (cidr: string, ip: string): Lease => ({ subnet: parseIPv4Net(cidr), subnet6: null, attrs: { publicIP: parseIPv4(ip), publicIPv6: null, backendType: 'vxlan' }, expiration: null });
  const a = peer('10.244.2.0/24', '192.0.2.12');
  const ownish = peer('10.244.1.0/25', '192.0.2.13'); // inside our subnet
  const wide = peer('10.244.2.0/23', '192.0.2.14'); // over a, which is in use
  let push: ((u: LeaseUpdate) => void) | null = null;
  const source: LeaseSource = {
    description: 'fake',
    ownLoss: 'ignored',
    getNetworkConfig: async () => parseNetworkConfig(CFG),
    storedNodeInfo: async () => ({ publicIP: null, publicIPv6: null, vtepMac: null }),
    acquire: async () => ({ ...own, how: 'node-pod-cidr' }),
    renew: async (l) => l,
    storedExpiration: async () => null,
    complete: async () => undefined,
    watch: (_cfg, _log, onUpdate) => ({ start: () => void (push = onUpdate), stop: async () => undefined }),
    close: async () => undefined,
  };
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-daemon-'));
  const log = new MemoryLogger();
  let backend: RecordingBackend | null = null;
  const d = new Daemon({
    leases: source,
    backends: new BackendRegistry().register('alloc', (ctx) => (backend = new RecordingBackend(ctx))),
    log,
    host,
    iface: { iface: [], ifaceRegex: [] },
    subnetFile: path.join(dir, 'subnet.env'),
    ipMasq: false,
    renewMarginMinutes: 60,
  });
  const ac = new AbortController();
  const exit = d.run(ac.signal);
  try {
    for (let i = 0; !push; i++) {
      assert.ok(i < 200, JSON.stringify(log.lines));
      await new Promise((r) => setTimeout(r, 10));
    }
    const send = (leases: Lease[]) => push!({ events: [], snapshot: true, leases: [own, ...leases] });
    send([a]);
    await backend!.waitFor((r) => r.length === 1);
    for (let i = 0; i < 3; i++) send([wide, ownish, a]);
    await d.settled();
    assert.deepEqual(backend!.last.map(leaseId), ['10.244.2.0-24']);
    const warns = log.lines.filter((l) => l.level === 'warn').map((l) => l.msg).sort();
    assert.deepEqual(warns, [
      'ignoring lease 10.244.1.0-25: its subnet overlaps our own lease 10.244.1.0-24',
      'ignoring lease 10.244.2.0-23: its subnet overlaps lease 10.244.2.0-24',
    ]);
  } finally {
    ac.abort();
    assert.equal((await exit).code, 0);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('local store: the database file removed under running daemons (a wipe): both write their leases into the new file and see each other', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-daemon-local-'));
  const file = path.join(dir, 'leases.db');
  const admin = LocalStore.open(file);
  await admin.setNetworkConfig(CFG);
  await admin.close();
  const s1 = LocalStore.open(file, { pollMs: 10 });
  const s2 = LocalStore.open(file, { pollMs: 10 });
  const hostAt = (ip: string): HostView => ({ interfaces: () => [{ name: 'eth0', index: 2, mtu: 1500, ipv4: [ip], ipv6: [] }], defaultRouteInterface: () => 'eth0' });
  const t1 = await start(s1, { host: hostAt('192.0.2.21') });
  const t2 = await start(s2, { host: hostAt('192.0.2.22') });
  try {
    const ids = [leaseId(t1.d.lease!), leaseId(t2.d.lease!)].sort();
    for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true });
    const fresh = LocalStore.open(file);
    try {
      await fresh.setNetworkConfig(CFG);
      for (let i = 0; ; i++) {
        const names = (await fresh.listSubnets()).entries.map((e) => e.name).sort();
        if (JSON.stringify(names) === JSON.stringify(ids)) break;
        assert.ok(i < 500, `leases re-registered in the new file: ${JSON.stringify(names)}\n${JSON.stringify([...t1.log.lines, ...t2.log.lines])}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    } finally {
      await fresh.close();
    }
    for (const t of [t1, t2]) {
      assert.equal(t.d.state, 'ready');
      assert.equal(t.log.lines.filter((l) => /went back in time/.test(l.msg)).length, 1, JSON.stringify(t.log.lines));
    }
    const b1 = (t1.d as unknown as { backend: RecordingBackend }).backend;
    await b1.waitFor((r) => r.some((l) => leaseId(l) === leaseId(t2.d.lease!)));
  } finally {
    assert.equal((await t1.stop()).code, 0);
    assert.equal((await t2.stop()).code, 0);
    await s1.close();
    await s2.close();
    t1.cleanup();
    t2.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});
