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
import { StoreError, type LeaseStore } from '../store/store.js';
import { LocalStore } from '../store/local/local-store.js';
import type { LeaseUpdate } from '../subnet/watch.js';
import { Daemon, KERNEL_NOTIFICATIONS_DOWN, type DaemonOptions } from './daemon.js';
import { startHealthServer } from './healthz.js';
import { FakeChangeFeed } from '../testing/fake-feed.js';
import type { NetlinkEvent } from '../netlink/subscriber.js';
import type { LeaseEvent } from '../lease/tracker.js';
import type { HostView } from './iface.js';
import { ManualClock } from '../testing/manual-clock.js';

/** A memory store whose next `failPuts` unconditional writes (renewals) fail as an unreachable etcd's would. */
class RenewFailingStore extends MemoryStore {
  failPuts = 0;
  override async putSubnet(name: string, value: string, ttlSeconds: number | null): Promise<void> {
    if (this.failPuts > 0) {
      this.failPuts--;
      throw new StoreError('etcd: no answer', true);
    }
    return super.putSubnet(name, value, ttlSeconds);
  }
}

const host: HostView = {
  interfaces: () => [{ name: 'eth0', index: 2, mtu: 1500, ipv4: ['192.0.2.11'], ipv6: [] }],
  defaultRouteInterface: () => 'eth0',
};

/** A daemon on `store` with the alloc backend recorded, writing subnet.env in `dir`. */
function options(store: LeaseStore, dir: string, log: MemoryLogger, extra: Partial<DaemonOptions> = {}, backends?: RecordingBackend[]): DaemonOptions {
  return {
    store,
    backends: new BackendRegistry().register('alloc', (ctx) => {
      const b = new RecordingBackend(ctx);
      backends?.push(b);
      return b;
    }),
    log,
    host,
    iface: { iface: [], ifaceRegex: [] },
    subnetFile: path.join(dir, 'subnet.env'),
    ipMasq: false,
    renewMarginMinutes: 60,
    ...extra,
  };
}

/** A running daemon, resolved once it is ready (onReady), with the backend it made. */
async function start(store: LeaseStore, extra: Partial<DaemonOptions> = {}, registry?: BackendRegistry) {
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-daemon-'));
  const log = new MemoryLogger();
  const made: RecordingBackend[] = [];
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  const d = new Daemon({ ...options(store, dir, log, extra, made), ...(registry ? { backends: registry } : {}), onReady: () => ready() });
  const ac = new AbortController();
  const exit = d.run(ac.signal);
  const first = await Promise.race([isReady.then(() => null), exit]);
  if (first) throw new Error(`daemon exited before ready: ${JSON.stringify(first)} ${JSON.stringify(log.lines)}`);
  return {
    d,
    log,
    dir,
    exit,
    get backend(): RecordingBackend {
      return made[0]!;
    },
    stop: async () => (ac.abort(), await exit),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Polls `cond` on the real clock (for stores whose I/O runs on real timers). */
async function until(what: string, cond: () => boolean | Promise<boolean>, log?: MemoryLogger): Promise<void> {
  for (let i = 0; !(await cond()); i++) {
    assert.ok(i < 500, `${what}${log ? `: ${JSON.stringify(log.lines)}` : ''}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const CFG = '{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}';

test('renews at expiry minus the margin, with a fresh TTL each time; a failed renewal is retried after renewRetryMs', async () => {
  const store = new RenewFailingStore(CFG);
  const clock = new ManualClock(Date.now());
  const t = await start(store, { clock, renewRetryMs: 60_000 });
  try {
    const id = leaseId(t.d.lease!);
    const exp0 = t.d.lease!.expiration!.getTime();
    assert.equal(exp0, clock.now() + 24 * 3600_000, 'a 24 h lease on the daemon\'s clock');
    await store.putSubnet(id, (await store.getSubnet(id))!.value, 30);
    // nothing happens until 60 min (the margin) before expiry
    await clock.advance(23 * 3600_000 - 1000);
    assert.equal((await store.getSubnet(id))!.ttlSeconds! <= 30, true, 'not renewed yet');
    await clock.advance(1000);
    assert.ok((await store.getSubnet(id))!.ttlSeconds! > 80000, 'renewed with a fresh TTL');
    assert.equal(t.d.lease!.expiration!.getTime(), clock.now() + 24 * 3600_000);
    assert.ok(t.log.lines.some((l) => /renewed lease/.test(l.msg)));
    // the next renewal fails twice, then goes through: retried every renewRetryMs
    store.failPuts = 2;
    await clock.advance(23 * 3600_000);
    assert.equal(store.failPuts, 1, 'first attempt failed');
    await clock.advance(60_000);
    assert.equal(store.failPuts, 0, 'retried after 60 s, failed again');
    await clock.advance(60_000);
    assert.equal(t.d.lease!.expiration!.getTime(), clock.now() + 24 * 3600_000, 'renewed on the third try');
    const m = await t.d.metrics.registry.getSingleMetricAsString('flannel_lease_renewals_total');
    assert.match(m, /flannel_lease_renewals_total\{result="ok"\} 2/);
    assert.match(m, /flannel_lease_renewals_total\{result="error"\} 2/);
    assert.equal(t.log.lines.filter((l) => /lease renewal failed/.test(l.msg)).length, 2, 'two failures 60 s apart: each is logged (at most one line per 10 s)');
  } finally {
    assert.equal((await t.stop()).code, 0);
    t.cleanup();
  }
});

test('an own lease that expired (missed renewals) is taken again, same subnet, without stopping', async () => {
  const store = new RenewFailingStore(CFG);
  const clock = new ManualClock(Date.now());
  const t = await start(store, { clock });
  try {
    const id = leaseId(t.d.lease!);
    // etcd is unreachable for renewals for a whole day: every renewal fails
    store.failPuts = Infinity;
    await clock.advance(24 * 3600_000);
    assert.ok(t.log.lines.some((l) => /lease renewal failed/.test(l.msg)));
    // ... and etcd drops the key when its TTL runs out; the daemon takes it again
    store.failPuts = 0;
    await store.deleteSubnet(id);
    await until('re-acquired', async () => (await store.getSubnet(id)) !== null, t.log);
    assert.equal(leaseId(t.d.lease!), id);
    assert.equal(t.d.state, 'ready');
    assert.ok(t.log.lines.some((l) => /expired before it could be renewed/.test(l.msg)));
    assert.equal(t.d.lease!.expiration!.getTime(), clock.now() + 24 * 3600_000);
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

test('our lease deleted before the watch first lists it is still noticed: the daemon stops as for any revocation', async () => {
  // The first listing diffs against nothing, so a key gone by then produces
  // no "removed" event; the snapshot itself has to say that ours is missing.
  const store = new MemoryStore(CFG);
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-daemon-'));
  const log = new MemoryLogger();
  let d!: Daemon;
  const deleted: Promise<void>[] = [];
  d = new Daemon({ ...options(store, dir, log), onReady: () => void deleted.push(store.deleteSubnet(leaseId(d.lease!))) });
  const ac = new AbortController();
  const run = d.run(ac.signal);
  try {
    const exit = await Promise.race([run, new Promise((r) => setTimeout(() => r('still running'), 3000))]);
    await Promise.all(deleted);
    assert.deepEqual(exit, { code: 0, reason: 'lease revoked' }, JSON.stringify(log.lines));
  } finally {
    ac.abort();
    await run;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a burst of lease events is coalesced into few reconciles with the final desired set', async () => {
  const store = new MemoryStore(CFG);
  const t = await start(store);
  try {
    const mine = leaseId(t.d.lease!);
    const names = Array.from({ length: 201 }, (_, i) => `10.244.${i + 2}.0-24`).filter((n) => n !== mine).slice(0, 200);
    await Promise.all(names.map((n, i) => store.putSubnet(n, `{"PublicIP":"198.18.0.${i + 1}","PublicIPv6":null}`, 60)));
    const b = t.backend;
    await b.waitFor((r) => r.length === 200);
    await t.d.settled();
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

test('EnableIPv6 with EnableNFTables runs: the traffic rules get IPv6Network and our v6 subnet', { timeout: 10_000 }, async () => {
  const cfg = DUAL.replace('"EnableIPv6"', '"EnableNFTables":true,"EnableIPv6"');
  const published = { backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: '02:00:00:00:00:01' }, backendV6Data: { VNI: 1, VtepMAC: '02:00:00:00:00:06' } };
  const backends = new BackendRegistry().register('alloc', (ctx) => new RecordingBackend(ctx, published));
  const seen: string[] = [];
  const traffic = { setup: async (c: { enableNFTables: boolean; ipv6Network: unknown }, own: Lease) => void seen.push(`${c.enableNFTables} ${c.ipv6Network !== null} ${own.subnet6 !== null}`), close: () => undefined };
  const t = await start(new MemoryStore(cfg), { host: host6, backends, traffic });
  try {
    assert.deepEqual(seen, ['true true true']);
    assert.deepEqual(t.log.lines.filter((l) => l.level === 'error'), []);
  } finally {
    await t.stop();
    t.cleanup();
  }
});

test('a store wiped under a running daemon: it says so once, writes its lease again and keeps running; a node started later sees it', async () => {
  const store = new MemoryStore(CFG);
  const t = await start(store);
  let t2: Awaited<ReturnType<typeof start>> | null = null;
  try {
    const id = leaseId(t.d.lease!);
    store.wipe();
    await until('lease re-registered', async () => (await store.getSubnet(id)) !== null, t.log);
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
    await t2.backend.waitFor((r) => r.some((l) => leaseId(l) === id));
    await t.backend.waitFor((r) => r.some((l) => leaseId(l) === id2));
  } finally {
    assert.equal((await t.stop()).code, 0);
    if (t2) assert.equal((await t2.stop()).code, 0);
    t.cleanup();
    t2?.cleanup();
  }
});

/** A daemon whose lease source is driven by the test: `push` delivers a watch update; the alloc backend records what it gets. */
async function pushDaemon() {
  const own: Lease = { subnet: parseIPv4Net('10.244.1.0/24'), subnet6: null, attrs: { publicIP: parseIPv4('192.0.2.11'), publicIPv6: null, backendType: 'vxlan' }, expiration: null };
  let onUpdate: ((u: LeaseUpdate) => void) | null = null;
  const source: LeaseSource = {
    description: 'fake',
    ownLoss: 'ignored',
    getNetworkConfig: async () => parseNetworkConfig(CFG),
    storedNodeInfo: async () => ({ publicIP: null, publicIPv6: null, vtepMac: null }),
    acquire: async () => ({ ...own, how: 'node-pod-cidr' }),
    renew: async (l) => l,
    storedExpiration: async () => null,
    complete: async () => undefined,
    watch: (_cfg, _log, f) => ({ start: () => void (onUpdate = f), stop: async () => undefined }),
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
  await until('watching', () => onUpdate !== null, log);
  return {
    d,
    log,
    own,
    get backend(): RecordingBackend {
      return backend!;
    },
    push: (u: LeaseUpdate) => onUpdate!(u),
    async stop(): Promise<void> {
      ac.abort();
      assert.equal((await exit).code, 0);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const peerLease = (cidr: string, ip: string): Lease => ({ subnet: parseIPv4Net(cidr), subnet6: null, attrs: { publicIP: parseIPv4(ip), publicIPv6: null, backendType: 'vxlan' }, expiration: null });

test('remote leases whose subnet overlaps ours or a peer in use never reach the backend; each is warned about once', async () => {
  const a = peerLease('10.244.2.0/24', '192.0.2.12');
  const ownish = peerLease('10.244.1.0/25', '192.0.2.13'); // inside our subnet
  const wide = peerLease('10.244.2.0/23', '192.0.2.14'); // over a, which is in use
  const t = await pushDaemon();
  try {
    const send = (leases: Lease[]) => t.push({ events: [], snapshot: true, leases: [t.own, ...leases] });
    send([a]);
    await t.backend.waitFor((r) => r.length === 1);
    for (let i = 0; i < 3; i++) send([wide, ownish, a]);
    await t.d.settled();
    assert.deepEqual(t.backend.last.map(leaseId), ['10.244.2.0-24']);
    const warns = t.log.lines.filter((l) => l.level === 'warn').map((l) => l.msg).sort();
    assert.deepEqual(warns, [
      'ignoring lease 10.244.1.0-25: its subnet overlaps our own lease 10.244.1.0-24',
      'ignoring lease 10.244.2.0-23: its subnet overlaps lease 10.244.2.0-24',
    ]);
  } finally {
    await t.stop();
  }
});

test('watch events reach the backend as what changed among the peers in use: an overlapping newcomer waits until the peer in use leaves', async () => {
  const a = peerLease('10.244.2.0/24', '192.0.2.12');
  const wide = peerLease('10.244.2.0/23', '192.0.2.14');
  const d = peerLease('10.244.4.0/24', '192.0.2.15');
  const shown = (evs: readonly LeaseEvent[]) => evs.map((e) => `${e.type} ${leaseId(e.lease)}`);
  const t = await pushDaemon();
  try {
    t.push({ events: [], snapshot: true, leases: [t.own, a] });
    await t.backend.waitFor((r) => r.length === 1);
    await t.d.settled();
    const calls = () => t.backend.calls.length;
    let n = calls();
    // wide overlaps a, which is in use: nothing for the backend, one warning
    t.push({ events: [{ type: 'added', lease: wide }], snapshot: false, leases: [] });
    await t.d.settled();
    assert.equal(calls(), n, 'no reconcile for a lease left out');
    // an unrelated peer: its event alone
    t.push({ events: [{ type: 'added', lease: d }], snapshot: false, leases: [] });
    await t.d.settled();
    assert.deepEqual(shown(t.backend.calls.at(-1)!.events), ['added 10.244.4.0-24']);
    assert.deepEqual(t.backend.last.map(leaseId), ['10.244.2.0-24', '10.244.4.0-24']);
    n = calls();
    // a leaves: wide comes in, in the same run
    t.push({ events: [{ type: 'removed', lease: a }], snapshot: false, leases: [] });
    await t.d.settled();
    assert.equal(calls(), n + 1);
    assert.deepEqual(shown(t.backend.calls.at(-1)!.events), ['removed 10.244.2.0-24', 'added 10.244.2.0-23']);
    assert.deepEqual(t.backend.last.map(leaseId).sort(), ['10.244.2.0-23', '10.244.4.0-24']);
    assert.deepEqual(
      t.log.lines.filter((l) => l.level === 'warn').map((l) => l.msg),
      ['ignoring lease 10.244.2.0-23: its subnet overlaps lease 10.244.2.0-24'],
    );
    assert.equal(t.d.remote.length, 2);
  } finally {
    await t.stop();
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
      await until('leases re-registered in the new file', async () => JSON.stringify((await fresh.listSubnets()).entries.map((e) => e.name).sort()) === JSON.stringify(ids));
    } finally {
      await fresh.close();
    }
    for (const t of [t1, t2]) {
      assert.equal(t.d.state, 'ready');
      assert.equal(t.log.lines.filter((l) => /went back in time/.test(l.msg)).length, 1, JSON.stringify(t.log.lines));
    }
    await t1.backend.waitFor((r) => r.some((l) => leaseId(l) === leaseId(t2.d.lease!)));
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

test('a missing network config is waited for (CONFIG_MISSING); an invalid one stops the daemon at once', async () => {
  const store = new MemoryStore(null);
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-daemon-'));
  const log = new MemoryLogger();
  const d = new Daemon(options(store, dir, log, { configRetryMs: 5 }));
  const ac = new AbortController();
  const exit = d.run(ac.signal);
  try {
    await until('config asked for', () => log.lines.some((l) => /couldn't fetch network config: no network config/.test(l.msg)), log);
    assert.equal(d.state, 'starting');
    store.config = CFG;
    await until('ready', () => d.ready, log);
  } finally {
    ac.abort();
    assert.equal((await exit).code, 0);
  }
  const bad = new MemoryStore('{"Network":"nonsense"}');
  const d2 = new Daemon(options(bad, dir, new MemoryLogger(), { configRetryMs: 5 }));
  const exit2 = await d2.run(new AbortController().signal);
  assert.equal(exit2.code, 1);
  rmSync(dir, { recursive: true, force: true });
});

/** A recorded backend that takes kernel notifications: a deleted route is damage, and each run "restores" `repair` entries. */
class SelfHealingBackend extends RecordingBackend {
  repair = 0;
  lastChanges = 0;
  damage(e: NetlinkEvent): string | null {
    return e.kind === 'route' && e.action === 'del' ? 'route deleted' : null;
  }
  override async reconcile(remote: readonly Lease[], events: readonly LeaseEvent[]): Promise<Error[]> {
    this.lastChanges = this.repair;
    this.repair = 0;
    return super.reconcile(remote, events);
  }
}

const routeDeleted = { kind: 'route', action: 'del', route: { dst: '10.244.2.0/24' }, pid: 0 } as unknown as NetlinkEvent;

async function startHealing(extra: Partial<DaemonOptions>) {
  const made: SelfHealingBackend[] = [];
  const registry = new BackendRegistry().register('alloc', (ctx) => {
    const b = new SelfHealingBackend(ctx);
    made.push(b);
    return b;
  });
  const t = await start(new MemoryStore(CFG), extra, registry);
  await made[0]!.waitFor(() => true);
  await t.d.settled();
  return { t, b: made[0]! };
}

test('kernel damage, the periodic check and the backend all kick the one queue; a run that restored something is a self-heal by trigger', async () => {
  const feed = new FakeChangeFeed();
  const clock = new ManualClock(Date.now());
  const { t, b } = await startHealing({ feed, clock, resyncMs: 10_000 });
  try {
    assert.equal(feed.starts, 1, 'subscribed: the backend takes notifications');
    const runs = b.calls.length;
    // a burst of damage: one run after the debounce
    b.repair = 2;
    for (let i = 0; i < 5; i++) feed.emit(routeDeleted);
    feed.emit({ ...routeDeleted, action: 'new' } as NetlinkEvent);
    await clock.advance(5);
    await t.d.settled();
    assert.equal(b.calls.length, runs + 1);
    assert.deepEqual(b.calls.at(-1)!.events, [], 'a kicked run is a full pass');
    assert.ok(t.log.lines.some((l) => l.msg === 'restored 2 kernel entries (route deleted)'));
    // the periodic check: the daemon's one timer
    await clock.advance(10_000);
    await t.d.settled();
    assert.equal(b.calls.length, runs + 2, 'one periodic run');
    // a backend asking for a run (its data path broke)
    b.repair = 1;
    b.ctx.kick!('data path stopped');
    await clock.advance(5);
    await t.d.settled();
    assert.deepEqual(t.d.heals, { 'route deleted': 1, 'data path stopped': 1 });
    const m = await t.d.metrics.registry.getSingleMetricAsString('flannel_self_heals_total');
    assert.match(m, /flannel_self_heals_total\{trigger="route deleted"\} 1/);
    assert.match(m, /flannel_self_heals_total\{trigger="data path stopped"\} 1/);
    assert.deepEqual(t.d.conditions(), []);
  } finally {
    assert.equal((await t.stop()).code, 0);
    assert.equal(feed.subscribed, false, 'unsubscribed at stop');
    t.cleanup();
  }
});

test('a notification subscriber that dies is a condition on /healthz and /metrics until a periodic check subscribes again', async () => {
  const feed = new FakeChangeFeed();
  const clock = new ManualClock(Date.now());
  const { t, b } = await startHealing({ feed, clock, resyncMs: 10_000 });
  const health = await startHealthServer('127.0.0.1', 0, () => t.d.ready, t.d.metrics.registry, () => t.d.conditions());
  const get = async (p: string) => (await fetch(`http://127.0.0.1:${health.port}${p}`)).text();
  try {
    assert.equal(await get('/healthz'), 'flanneld is running');
    assert.match(await get('/metrics'), /^flannel_kernel_subscriber_up 1$/m);
    const runs = b.calls.length;
    feed.failStart = new Error('socket: EPERM');
    feed.die(new Error('subscriber worker: exited unexpectedly (1)'));
    assert.deepEqual(t.d.conditions().map((c) => c.name), [KERNEL_NOTIFICATIONS_DOWN]);
    const res = await fetch(`http://127.0.0.1:${health.port}/healthz`);
    assert.equal(res.status, 200, 'liveness: still 200');
    assert.equal(
      await res.text(),
      'flanneld is running\ndegraded: KernelNotificationsDown: the kernel notification subscriber died: subscriber worker: exited unexpectedly (1); damage to the data path is repaired by the periodic check only (every 10 s)',
    );
    const m = await get('/metrics');
    assert.match(m, /^flannel_kernel_subscriber_up 0$/m);
    assert.match(m, /^flannel_condition\{name="KernelNotificationsDown"\} 1$/m);
    assert.equal(t.log.lines.filter((l) => l.level === 'warn' && /subscriber died/.test(l.msg)).length, 1);
    // notifications may have been lost: a full pass right away
    await clock.advance(5);
    await t.d.settled();
    assert.equal(b.calls.length, runs + 1);
    // the next check cannot subscribe either: still down, still running
    await clock.advance(10_000);
    await t.d.settled();
    assert.equal(feed.starts, 2);
    assert.match(t.d.conditions()[0]!.message, /^cannot subscribe to kernel notifications: socket: EPERM; /);
    assert.equal(t.d.state, 'ready');
    await clock.advance(10_000);
    assert.equal(feed.starts, 3);
    assert.equal(t.log.lines.filter((l) => l.level === 'warn' && /cannot subscribe/.test(l.msg)).length, 1, 'the same trouble is logged once');
    // the one after can
    feed.failStart = null;
    await clock.advance(10_000);
    await t.d.settled();
    assert.equal(feed.starts, 4);
    assert.deepEqual(t.d.conditions(), []);
    assert.equal(await get('/healthz'), 'flanneld is running');
    const m2 = await get('/metrics');
    assert.match(m2, /^flannel_kernel_subscriber_up 1$/m);
    assert.match(m2, /^flannel_condition\{name="KernelNotificationsDown"\} 0$/m);
    assert.ok(t.log.lines.some((l) => l.msg === 'kernel notifications are back'));
  } finally {
    await health.close();
    assert.equal((await t.stop()).code, 0);
    t.cleanup();
  }
});

test('a subscriber that cannot start is not fatal; a backend without damage() gets no subscription', async () => {
  const feed = new FakeChangeFeed();
  feed.failStart = new Error('socket: EPERM');
  const { t } = await startHealing({ feed });
  try {
    assert.equal(t.d.state, 'ready');
    assert.deepEqual(t.d.conditions().map((c) => c.name), [KERNEL_NOTIFICATIONS_DOWN]);
  } finally {
    assert.equal((await t.stop()).code, 0);
    t.cleanup();
  }
  const plain = new FakeChangeFeed();
  const t2 = await start(new MemoryStore(CFG), { feed: plain });
  try {
    assert.equal(plain.starts, 0);
    assert.doesNotMatch(await t2.d.metrics.registry.metrics(), /flannel_kernel_subscriber_up/);
  } finally {
    assert.equal((await t2.stop()).code, 0);
    t2.cleanup();
  }
});

test('a single new lease reaches the backend as its event (the backend may patch just that peer); a re-list is a full pass', async () => {
  const store = new MemoryStore(CFG);
  const t = await start(store);
  try {
    await t.backend.waitFor(() => true);
    await t.d.settled();
    const n = t.backend.calls.length;
    await store.putSubnet('10.244.200.0-24', '{"PublicIP":"198.18.1.1","PublicIPv6":null}', 60);
    await t.backend.waitFor((r) => r.length === 1);
    await t.d.settled();
    assert.equal(t.backend.calls.length, n + 1);
    assert.deepEqual(
      t.backend.calls.at(-1)!.events.map((e) => [e.type, leaseId(e.lease)]),
      [['added', '10.244.200.0-24']],
    );
  } finally {
    assert.equal((await t.stop()).code, 0);
    t.cleanup();
  }
});

test('collectGarbage: once after start-up, once after a burst of 1000 lease changes has gone quiet, never for a few', async () => {
  const store = new MemoryStore('{"Network":"10.0.0.0/8","Backend":{"Type":"alloc"}}');
  const clock = new ManualClock(Date.now());
  let collected = 0;
  const t = await start(store, { clock, resyncMs: 0, collectGarbage: () => void collected++ });
  try {
    await t.d.settled();
    await clock.advance(999);
    assert.equal(collected, 0);
    await clock.advance(1);
    assert.equal(collected, 1, 'after start-up');
    const mine = leaseId(t.d.lease!);
    const names = Array.from({ length: 1010 }, (_, i) => `10.${200 + (i >> 8)}.${i & 255}.0-24`).filter((n) => n !== mine).slice(0, 1005);
    for (let i = 0; i < 5; i++) await store.putSubnet(names[i]!, `{"PublicIP":"198.18.1.${i + 1}","PublicIPv6":null}`, 60);
    await t.backend.waitFor((r) => r.length === 5);
    await t.d.settled();
    await clock.advance(10_000);
    assert.equal(collected, 1, 'five changes: not worth a collection');
    await Promise.all(names.slice(5).map((n, i) => store.putSubnet(n, `{"PublicIP":"198.19.${i >> 8}.${i & 255}","PublicIPv6":null}`, 60)));
    await t.backend.waitFor((r) => r.length === 1005);
    await t.d.settled();
    assert.equal(collected, 1, 'not while busy');
    await clock.advance(1000);
    assert.equal(collected, 2, 'after the burst');
  } finally {
    assert.equal((await t.stop()).code, 0);
    t.cleanup();
  }
});
