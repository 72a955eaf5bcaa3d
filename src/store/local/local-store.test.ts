import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { exitedAndDrained } from '../../testing/exited.js';
import { MemoryLogger } from '../../testing/memory-logger.js';
import { storeContract } from '../../testing/store-contract.js';
import { openStore } from '../open.js';
import { StoreError, type StoreEvent } from '../store.js';
import { LocalStore } from './local-store.js';

const dir = mkdtempSync(path.join(tmpdir(), 'flannel-local-store-'));
let seq = 0;
const fresh = (name = 'leases') => path.join(dir, `${name}-${++seq}`, 'leases.db');
after(() => rmSync(dir, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await sleep(5);
}
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const fmt = (x: number) => x.toFixed(2);

storeContract('local', async () => LocalStore.open(fresh('contract')), { ttlWaitMs: 5000 });

test('local: opens a new file (creating directories), WAL mode, etcd-like key layout', async () => {
  const file = fresh();
  const s = LocalStore.open(file);
  try {
    assert.ok(existsSync(file));
    assert.equal(s.description, `local ${file} prefix /coreos.com/network`);
    await s.setNetworkConfig('{"Network":"10.244.0.0/16"}');
    await s.putSubnet('10.244.1.0-24', 'v', 60);
    assert.equal(await s.getNetworkConfig(), '{"Network":"10.244.0.0/16"}');
    const e = await s.getSubnet('10.244.1.0-24');
    assert.equal(e!.key, '/coreos.com/network/subnets/10.244.1.0-24');
    assert.ok(e!.ttlSeconds! > 58 && e!.ttlSeconds! <= 60);
    const { revision, entries } = await s.listSubnets();
    assert.equal(revision, 2); // config put, subnet put
    assert.equal(entries[0]!.ttlSeconds, null); // not asked for
  } finally {
    await s.close();
  }
  const raw = new Database(file, { readonly: true });
  try {
    assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
    const kv = raw.prepare('SELECT key, mod_rev, expires_at IS NULL AS perm FROM kv ORDER BY key').all();
    assert.deepEqual(kv, [
      { key: '/coreos.com/network/config', mod_rev: 1, perm: 1 },
      { key: '/coreos.com/network/subnets/10.244.1.0-24', mod_rev: 2, perm: 0 },
    ]);
  } finally {
    raw.close();
  }
});

test('local: one file, several networks: prefixes are isolated (and openStore local: uses --etcd-prefix)', async () => {
  const file = fresh();
  const flags = { store: 'local:' + file, etcdEndpoints: '', etcdKeyfile: '', etcdCertfile: '', etcdCafile: '', etcdUsername: '', etcdPassword: '' };
  const a = await openStore({ ...flags, etcdPrefix: '/coreos.com/network' }, new MemoryLogger());
  const b = await openStore({ ...flags, etcdPrefix: '/other//network/' }, new MemoryLogger());
  try {
    assert.ok(a instanceof LocalStore && b instanceof LocalStore);
    assert.equal(b.description, `local ${file} prefix /other/network`);
    await (a as LocalStore).setNetworkConfig('A');
    await a.putSubnet('10.244.1.0-24', 'a', null);
    await b.putSubnet('10.9.1.0-24', 'b', null);
    const seenB: StoreEvent[] = [];
    const { revision } = await b.listSubnets();
    const h = b.watchSubnets(revision + 1, { onEvents: (evs) => seenB.push(...evs), onError: (e) => assert.fail(e) });
    await a.putSubnet('10.244.2.0-24', 'a2', null);
    await b.putSubnet('10.9.2.0-24', 'b2', null);
    await until(() => seenB.length >= 1);
    await sleep(60);
    await h.cancel();
    assert.deepEqual(seenB.map((e) => e.name), ['10.9.2.0-24']);
    assert.deepEqual((await a.listSubnets()).entries.map((e) => e.name), ['10.244.1.0-24', '10.244.2.0-24']);
    assert.deepEqual((await b.listSubnets()).entries.map((e) => e.name), ['10.9.1.0-24', '10.9.2.0-24']);
    assert.equal(await a.getNetworkConfig(), 'A');
    assert.equal(await b.getNetworkConfig(), null);
    // one global revision counter, as in etcd
    assert.equal((await a.listSubnets()).revision, (await b.listSubnets()).revision);
    await assert.rejects(openStore({ ...flags, store: 'local:', etcdPrefix: '/x' }, new MemoryLogger()), /needs a database path/);
  } finally {
    await a.close();
    await b.close();
  }
});

test('local: two instances on one file see each other through watch; a create race has one winner', async (t) => {
  const file = fresh();
  const a = LocalStore.open(file);
  const b = LocalStore.open(file, { pollMs: 50 });
  try {
    const { revision } = await b.listSubnets();
    const seen: { ev: StoreEvent; at: number }[] = [];
    const h = b.watchSubnets(revision + 1, {
      onEvents: (evs) => seen.push(...evs.map((ev) => ({ ev, at: performance.now() }))),
      onError: (e) => assert.fail(e),
    });
    await a.putSubnet('10.244.1.0-24', 'from-a', 60);
    await a.deleteSubnet('10.244.1.0-24');
    await a.deleteSubnet('10.244.1.0-24'); // absent: no event, as in etcd
    await until(() => seen.length >= 2);
    assert.deepEqual(
      seen.map(({ ev }) => [ev.type, ev.name, ev.revision]),
      [
        ['put', '10.244.1.0-24', revision + 1],
        ['delete', '10.244.1.0-24', revision + 2],
      ],
    );

    // watch latency: write on a, event on b (writes at a random phase of b's poll tick)
    const lat: number[] = [];
    for (let i = 0; i < 25; i++) {
      await sleep(Math.random() * 50);
      const n = seen.length;
      const t0 = performance.now();
      await a.putSubnet(`10.244.${10 + i}.0-24`, 'x', 60);
      await until(() => seen.length > n);
      lat.push(seen[n]!.at - t0);
    }
    await h.cancel();
    t.diagnostic(`watch latency write->event across instances (pollMs 50): p50 ${fmt(pct(lat, 50))} ms, p90 ${fmt(pct(lat, 90))} ms, max ${fmt(Math.max(...lat))} ms`);
    assert.ok(pct(lat, 50) < 200);

    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).createSubnet('10.244.99.0-24', `{"n":${i}}`, 60)));
    assert.equal(results.filter(Boolean).length, 1);
    assert.equal((await a.getSubnet('10.244.99.0-24'))!.value, `{"n":${results.indexOf(true)}}`);
    assert.equal((await b.getSubnet('10.244.99.0-24'))!.value, `{"n":${results.indexOf(true)}}`);
  } finally {
    await a.close();
    await b.close();
  }
});

test('local: an expiry is recorded exactly once though two pollers sweep; an expired lease counts as absent', async () => {
  const file = fresh();
  const a = LocalStore.open(file, { pollMs: 20 });
  const b = LocalStore.open(file, { pollMs: 20 });
  try {
    const { revision } = await a.listSubnets();
    const seenA: StoreEvent[] = [];
    const seenB: StoreEvent[] = [];
    const ha = a.watchSubnets(revision + 1, { onEvents: (evs) => seenA.push(...evs), onError: (e) => assert.fail(e) });
    const hb = b.watchSubnets(revision + 1, { onEvents: (evs) => seenB.push(...evs), onError: (e) => assert.fail(e) });
    assert.equal(await a.createSubnet('10.244.5.0-24', 'first', 0.3), true);
    assert.equal(await b.createSubnet('10.244.5.0-24', 'second', 60), false);
    await until(() => seenA.length >= 2 && seenB.length >= 2, 3000);
    await sleep(100);
    await ha.cancel();
    await hb.cancel();
    const expect = [
      ['put', '10.244.5.0-24'],
      ['delete', '10.244.5.0-24'],
    ];
    assert.deepEqual(seenA.map((e) => [e.type, e.name]), expect);
    assert.deepEqual(seenB.map((e) => [e.type, e.name]), expect);
    assert.equal(await b.getSubnet('10.244.5.0-24'), null);
    // now free again
    assert.equal(await b.createSubnet('10.244.5.0-24', 'second', 60), true);

    // No poller running: a lease past its deadline is invisible at once and
    // createSubnet sweeps it (delete event, then the new put).
    await a.createSubnet('10.244.6.0-24', 'old', 0.05);
    await sleep(80);
    assert.equal(await a.getSubnet('10.244.6.0-24'), null);
    assert.deepEqual((await a.listSubnets()).entries.map((e) => e.name), ['10.244.5.0-24']);
    const before = a.revision();
    assert.equal(await b.createSubnet('10.244.6.0-24', 'new', 60), true);
    const evs: StoreEvent[] = [];
    const h = a.watchSubnets(before + 1, { onEvents: (e) => evs.push(...e), onError: (e) => assert.fail(e) });
    await until(() => evs.length >= 2);
    await h.cancel();
    assert.deepEqual(evs.map((e) => [e.type, e.name]), [
      ['delete', '10.244.6.0-24'],
      ['put', '10.244.6.0-24'],
    ]);
  } finally {
    await a.close();
    await b.close();
  }
  const raw = new Database(file, { readonly: true });
  try {
    const n = raw.prepare(`SELECT count(*) FROM events WHERE type = 'delete' AND key LIKE '%/10.244.5.0-24'`).pluck().get();
    assert.equal(n, 1);
  } finally {
    raw.close();
  }
});

test('local: watching from a compacted or pruned revision fails with "compacted"', async () => {
  const s = LocalStore.open(fresh());
  try {
    await s.putSubnet('10.244.1.0-24', 'a', null);
    const { revision } = await s.listSubnets();
    await s.putSubnet('10.244.2.0-24', 'b', null);
    assert.equal(s.compact(), revision + 1);
    const err = await new Promise<Error>((resolve) => s.watchSubnets(revision, { onEvents: () => assert.fail('no events'), onError: resolve }));
    assert.ok(err instanceof StoreError);
    assert.match(err.message, /compacted/);
    assert.equal(s.watcherCount, 0);
    // from the compaction point on it works
    const seen: StoreEvent[] = [];
    const h = s.watchSubnets(revision + 1, { onEvents: (e) => seen.push(...e), onError: (e) => assert.fail(e) });
    await until(() => seen.length >= 1);
    await h.cancel();
    assert.deepEqual(seen.map((e) => e.name), ['10.244.2.0-24']);
  } finally {
    await s.close();
  }

  // automatic pruning: keep the last 10 events (none is "recent" with retainMs 0)
  const p = LocalStore.open(fresh(), { retainEvents: 10, retainMs: 0 });
  try {
    for (let i = 0; i < 300; i++) await p.putSubnet(`10.244.${i % 200}.0-24`, String(i), 60);
    const { revision } = await p.listSubnets();
    assert.equal(revision, 300);
    const err = await new Promise<Error>((resolve) => p.watchSubnets(1, { onEvents: () => assert.fail('no events'), onError: resolve }));
    assert.match(err.message, /compacted/);
    assert.match(err.message, /from revision 1/);
    // a watch from a retained revision still replays history
    const seen: StoreEvent[] = [];
    const h = p.watchSubnets(revision - 5, { onEvents: (e) => seen.push(...e), onError: (e) => assert.fail(e) });
    await until(() => seen.length >= 6);
    await h.cancel();
    assert.deepEqual(seen.map((e) => e.revision), [295, 296, 297, 298, 299, 300]);
  } finally {
    await p.close();
  }
  // A default-retention store keeps everything from the last hour.
  const k = LocalStore.open(fresh());
  try {
    for (let i = 0; i < 300; i++) await k.putSubnet('10.244.1.0-24', String(i), 60);
    const seen: StoreEvent[] = [];
    const h = k.watchSubnets(1, { onEvents: (e) => seen.push(...e), onError: (e) => assert.fail(e) });
    await until(() => seen.length >= 300);
    await h.cancel();
    assert.equal(seen.length, 300);
  } finally {
    await k.close();
  }
});

test('local: a file that is not a lease database gives a clear one-line StoreError', async () => {
  const notDb = path.join(dir, 'not-a-db.txt');
  writeFileSync(notDb, 'this is not a database\n'.repeat(200));
  assert.throws(
    () => LocalStore.open(notDb),
    (e: unknown) => {
      assert.ok(e instanceof StoreError, String(e));
      assert.equal(e.message, `local store ${notDb}: open: the file is not an SQLite database [SQLITE_NOTADB]`);
      assert.equal(e.retryable, false);
      return true;
    },
  );
  // untouched
  assert.equal(readFileSync(notDb, 'utf8'), 'this is not a database\n'.repeat(200));

  const foreign = path.join(dir, 'foreign.db');
  const f = new Database(foreign);
  f.exec('CREATE TABLE kv (k, v)');
  f.close();
  assert.throws(() => LocalStore.open(foreign), (e: unknown) => {
    assert.ok(e instanceof StoreError);
    assert.equal(e.message, `local store ${foreign}: the file is an SQLite database, but not a flannel-ts lease store`);
    return true;
  });

  // a lease store whose pages were overwritten with garbage
  const corrupt = fresh();
  const c = LocalStore.open(corrupt);
  for (let i = 0; i < 50; i++) await c.putSubnet(`10.244.${i}.0-24`, 'x'.repeat(500), null);
  await c.close(); // the last close checkpoints the WAL into the main file
  const buf = readFileSync(corrupt);
  buf.fill(0xa5, 100, buf.length);
  writeFileSync(corrupt, buf);
  assert.throws(() => LocalStore.open(corrupt).close(), (e: unknown) => {
    assert.ok(e instanceof StoreError, String(e));
    assert.match(e.message, new RegExp(`^local store ${corrupt.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: open: .*(corrupt|not an SQLite database)`));
    assert.doesNotMatch(e.message, /\n/);
    return true;
  });

  // a directory where the file should be
  assert.throws(() => LocalStore.open(dir), (e: unknown) => e instanceof StoreError && e.message.startsWith(`local store ${dir}: open: `));

  // an empty file (e.g. made by touch) is a new, empty SQLite database: fine
  const empty = path.join(dir, 'empty.db');
  writeFileSync(empty, '');
  const e = LocalStore.open(empty);
  assert.deepEqual(await e.listSubnets(), { revision: 0, entries: [], epoch: e.storeId });
  await e.close();

  // use after close
  const s = LocalStore.open(fresh());
  await s.close();
  await assert.rejects(s.getSubnet('10.244.1.0-24'), /the store is closed/);
});

test('local: bad TTLs are refused', async () => {
  const s = LocalStore.open(fresh());
  try {
    await assert.rejects(s.createSubnet('10.244.1.0-24', 'v', 0), /TTL must be a positive number/);
    await assert.rejects(s.putSubnet('10.244.1.0-24', 'v', Number.NaN), /TTL must be a positive number/);
    assert.equal(s.revision(), 0);
  } finally {
    await s.close();
  }
});

test('local: create latency (one process, no contention)', async (t) => {
  const s = LocalStore.open(fresh());
  try {
    const lat: number[] = [];
    for (let i = 0; i < 500; i++) {
      const t0 = performance.now();
      assert.equal(await s.createSubnet(`10.${i >> 8}.${i & 255}.0-24`, '{"PublicIP":"192.0.2.1"}', 86400), true);
      lat.push(performance.now() - t0);
    }
    const gl: number[] = [];
    for (let i = 0; i < 500; i++) {
      const t0 = performance.now();
      await s.getSubnet(`10.${i >> 8}.${i & 255}.0-24`);
      gl.push(performance.now() - t0);
    }
    const l0 = performance.now();
    const { entries } = await s.listSubnets({ withTTL: true });
    const listMs = performance.now() - l0;
    assert.equal(entries.length, 500);
    t.diagnostic(`createSubnet: p50 ${fmt(pct(lat, 50))} ms, p99 ${fmt(pct(lat, 99))} ms; getSubnet p50 ${fmt(pct(gl, 50))} ms; listSubnets of 500 ${fmt(listMs)} ms`);
  } finally {
    await s.close();
  }
});

const here = path.dirname(fileURLToPath(import.meta.url));

test('local: 10 processes create concurrently on one file: no SQLITE_BUSY, all names exist, one winner of the shared name', async (t) => {
  const file = fresh('multi'); // not created yet: the children race to create it too
  const PROCS = 10;
  const PER = 10;
  const shared = '10.244.250.0-24';
  const child = path.join(here, 'fixtures', 'create-race-child.js');
  const procs = Array.from({ length: PROCS }, (_, i) => {
    const p = spawn(process.execPath, [child, file, String(i), String(PER), shared], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = exitedAndDrained(p);
    return { p, exited, out: () => out, err: () => err };
  });
  const killAll = () => procs.forEach(({ p }) => p.exitCode === null && p.kill());
  try {
    await until(() => procs.every((c) => c.out().includes('spawned\n') || c.p.exitCode !== null), 10000);
    for (const c of procs) c.p.stdin.write('open\n');
    await until(() => procs.every((c) => c.out().includes('ready\n') || c.p.exitCode !== null), 10000);
    for (const c of procs) assert.ok(c.out().includes('ready\n'), `child did not get ready: ${c.err()}`);
    const t0 = performance.now();
    for (const c of procs) c.p.stdin.end('go\n');
    const codes = await Promise.all(procs.map((c) => c.exited));
    const wall = performance.now() - t0;
    const results = procs.map((c, i) => {
      assert.equal(codes[i], 0, `child ${i} failed: ${c.err()}`);
      const line = c.out().split('\n').find((l) => l.startsWith('{'));
      return JSON.parse(line!) as { idx: number; created: number; wonShared: boolean; errors: string[]; openMs: number; latencies: number[] };
    });
    const errors = results.flatMap((r) => r.errors);
    assert.deepEqual(errors, [], 'no store errors (in particular no SQLITE_BUSY)');
    for (const r of results) assert.equal(r.created, PER, `process ${r.idx} created all its names`);
    assert.equal(results.filter((r) => r.wonShared).length, 1, 'exactly one process won the shared name');

    const s = LocalStore.open(file);
    try {
      const { entries, revision } = await s.listSubnets();
      assert.equal(entries.length, PROCS * PER + 1);
      for (let i = 0; i < PROCS; i++) for (let j = 0; j < PER; j++) assert.ok(entries.some((e) => e.name === `10.${100 + i}.${j}.0-24`));
      const winner = results.find((r) => r.wonShared)!.idx;
      assert.equal(JSON.parse((await s.getSubnet(shared))!.value).proc, winner);
      assert.equal(revision, PROCS * PER + 1, 'one event per successful create, none for the losers');
    } finally {
      await s.close();
    }
    const lat = results.flatMap((r) => r.latencies);
    t.diagnostic(
      `${PROCS} procs x ${PER + 1} creates: wall ${fmt(wall)} ms after "go"; create under contention p50 ${fmt(pct(lat, 50))} ms, p99 ${fmt(pct(lat, 99))} ms, max ${fmt(Math.max(...lat))} ms; concurrent open of a fresh file max ${fmt(Math.max(...results.map((r) => r.openMs)))} ms`,
    );
  } finally {
    killAll();
  }
});

test('local: a cancelled watch and a closed store do not keep the process alive', async () => {
  const mod = path.join(here, 'local-store.js');
  const script = `
    import { LocalStore } from ${JSON.stringify(mod)};
    const s = LocalStore.open(${JSON.stringify(fresh())});
    const h = s.watchSubnets(1, { onEvents() {}, onError(e) { console.error(e.message); process.exit(3); } });
    await s.putSubnet('10.244.1.0-24', 'v', 1);
    await new Promise((r) => setTimeout(r, 120));
    await h.cancel();
    s.watchSubnets(0, { onEvents() {}, onError() {} }); // left open: close() must stop it
    await s.close();
    console.log('done');
  `;
  const p = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const timer = setTimeout(() => p.kill(), 5000);
  const code = await exitedAndDrained(p);
  clearTimeout(timer);
  assert.equal(code, 0, `child hung or failed: ${err}`);
  assert.equal(out.trim(), 'done');
});

test('local: the subnet policy on this store: 50 concurrent acquisitions give 50 distinct subnets', async () => {
  const { SubnetManager } = await import('../../subnet/manager.js');
  const { parseNetworkConfig } = await import('../../subnet/config.js');
  const { leaseId } = await import('../../lease/lease.js');
  const { parseIPv4 } = await import('../../lease/ip.js');
  const cfgText = '{"Network":"10.50.0.0/18","Backend":{"Type":"alloc"}}';
  const file = fresh('policy');
  const stores = Array.from({ length: 5 }, () => LocalStore.open(file));
  try {
    await stores[0]!.setNetworkConfig(cfgText);
    const cfg = parseNetworkConfig(cfgText);
    const leases = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        new SubnetManager(stores[i % 5]!, { log: new MemoryLogger() }).acquireLease(cfg, { attrs: { publicIP: parseIPv4(`198.51.100.${i + 1}`), publicIPv6: null, backendType: '' } }),
      ),
    );
    assert.equal(new Set(leases.map(leaseId)).size, 50);
    assert.equal((await stores[0]!.listSubnets()).entries.length, 50);
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
});

test('local: the file removed or replaced under an open store: it follows the path, ends its watches, and lists the new store (new ID, lower revision)', async () => {
  const file = fresh();
  const s = LocalStore.open(file, { pollMs: 10 });
  try {
    for (let i = 1; i <= 5; i++) await s.putSubnet(`10.244.${i}.0-24`, 'x', 60);
    const first = await s.listSubnets();
    assert.equal(first.epoch, s.storeId);
    const errors: Error[] = [];
    s.watchSubnets(first.revision + 1, { onEvents: () => undefined, onError: (e) => errors.push(e) });

    // wiped: the file and its WAL removed, then created afresh by someone else
    for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true });
    const other = LocalStore.open(file);
    await other.putSubnet('10.244.9.0-24', 'y', 60);
    await until(() => errors.length > 0);
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof StoreError && errors[0].retryable);
    assert.match(errors[0].message, /: the file was (removed|replaced) \(store ID \d+ -> \d+\); watch of \/coreos\.com\/network\/subnets\/ ended$/);
    const after = await s.listSubnets();
    assert.deepEqual(after.entries.map((e) => e.name), ['10.244.9.0-24']);
    assert.equal(after.epoch, other.storeId);
    assert.notEqual(after.epoch, first.epoch);
    assert.ok(after.revision < first.revision, `${after.revision} < ${first.revision}`);
    // writes go to the new file too
    await s.putSubnet('10.244.10.0-24', 'z', 60);
    assert.equal((await other.getSubnet('10.244.10.0-24'))!.value, 'z');

    // an older copy moved over it (a restore from backup): followed as well
    const backup = path.join(path.dirname(file), 'backup.db');
    const old = LocalStore.open(backup);
    await old.putSubnet('10.244.20.0-24', 'old', 60);
    await old.close();
    renameSync(backup, file);
    rmSync(`${file}-wal`, { force: true });
    rmSync(`${file}-shm`, { force: true });
    assert.deepEqual((await s.listSubnets()).entries.map((e) => e.name), ['10.244.20.0-24']);
    await other.close();
  } finally {
    await s.close();
  }
});
