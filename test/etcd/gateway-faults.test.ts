// The gateway adapter when etcd misbehaves: a dead endpoint in the list,
// etcd stopped and started again (the watch resumes), compacted while the
// watch was away (it ends: "compacted up to revision N"), and wiped (the
// revision went back). One single-member etcd on fixed ports, restarted here.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GatewayEtcdStore, type GatewayStoreOptions } from '../../src/store/etcd/gateway-store.js';
import { StoreError, type StoreEvent } from '../../src/store/store.js';
import { freePort } from '../helpers/etcd.js';

let dir: string;
let endpoint: string;
let peer: string;
let proc: ChildProcess | null = null;
let n = 0;

async function startEtcd(): Promise<void> {
  const p = spawn('etcd', [
    '--name', 'gwf', '--data-dir', path.join(dir, 'data'),
    '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
    '--initial-cluster', `gwf=${peer}`, '--log-level', 'error', '--logger', 'zap',
  ], { stdio: 'ignore' });
  proc = p;
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const r = await fetch(`${endpoint}/v3/kv/range`, { method: 'POST', body: '{"key":"eA=="}' });
      if (r.ok) return;
    } catch {
      /* not yet */
    }
    if (p.exitCode !== null || Date.now() > deadline) throw new Error('etcd did not start');
    await sleep(100);
  }
}

async function stopEtcd(): Promise<void> {
  const p = proc;
  proc = null;
  if (!p || p.exitCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await exited;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, pred: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'fts-gwf-'));
  endpoint = `http://127.0.0.1:${await freePort()}`;
  peer = `http://127.0.0.1:${await freePort()}`;
  await startEtcd();
});

after(async () => {
  await stopEtcd();
  rmSync(dir, { recursive: true, force: true });
});

const open = (o: Partial<GatewayStoreOptions> = {}) =>
  new GatewayEtcdStore({ endpoints: [endpoint], prefix: `/gwf${++n}`, callTimeoutMs: 3000, watchBackoffMinMs: 100, watchBackoffMaxMs: 500, ...o });

test('a dead endpoint first in the list: calls and the watch go to the live one', async () => {
  const dead = `http://127.0.0.1:${await freePort()}`;
  const s = open({ endpoints: [dead, endpoint] });
  try {
    await s.putSubnet('10.244.1.0-24', 'a', 60);
    const { revision, entries } = await s.listSubnets();
    assert.deepEqual(entries.map((e) => e.name), ['10.244.1.0-24']);
    const seen: StoreEvent[] = [];
    const h = s.watchSubnets(revision + 1, { onEvents: (e) => seen.push(...e), onError: (e) => assert.fail(e) });
    await sleep(100);
    await s.putSubnet('10.244.2.0-24', 'b', 60);
    await waitFor('the put', () => seen.length === 1);
    await h.cancel();
  } finally {
    await s.close();
  }
});

test('etcd stopped and started again: calls fail retryably meanwhile, the watch resumes and misses nothing', async () => {
  const s = open();
  try {
    await s.putSubnet('10.244.1.0-24', 'a', 600);
    const { revision } = await s.listSubnets();
    const seen: StoreEvent[] = [];
    const errors: Error[] = [];
    const h = s.watchSubnets(revision + 1, { onEvents: (e) => seen.push(...e), onError: (e) => errors.push(e) });
    await sleep(100);
    await s.putSubnet('10.244.2.0-24', 'b', 600);
    await waitFor('the first put', () => seen.length === 1);
    await stopEtcd();
    await assert.rejects(s.getSubnet('10.244.2.0-24'), (e: unknown) => e instanceof StoreError && e.retryable && /^etcd: get \/gwf\d+\/subnets\/10\.244\.2\.0-24: /.test(e.message));
    await sleep(1000);
    await startEtcd();
    // a second client writes right away: the watch may still be reconnecting
    const other = new GatewayEtcdStore({ endpoints: [endpoint], prefix: `/gwf${n}` });
    await other.putSubnet('10.244.3.0-24', 'c', 600);
    await other.deleteSubnet('10.244.1.0-24');
    await other.close();
    await waitFor('the events after the restart', () => seen.length === 3);
    assert.deepEqual(seen.map((e) => `${e.type} ${e.name}`), ['put 10.244.2.0-24', 'put 10.244.3.0-24', 'delete 10.244.1.0-24']);
    assert.deepEqual(errors, []);
    await h.cancel();
  } finally {
    await s.close();
  }
});

test('compacted while the watch was away: the watch ends with a retryable "compacted up to revision N"', async () => {
  const s = open({ watchBackoffMinMs: 3000, watchBackoffMaxMs: 3000 });
  try {
    const { revision } = await s.listSubnets();
    const errors: Error[] = [];
    const h = s.watchSubnets(revision + 1, { onEvents: () => undefined, onError: (e) => errors.push(e) });
    await sleep(200);
    await stopEtcd();
    await startEtcd();
    await s.putSubnet('10.244.1.0-24', 'a', 600);
    const put = await fetch(`${endpoint}/v3/kv/put`, { method: 'POST', body: JSON.stringify({ key: Buffer.from('/other').toString('base64'), value: 'eA==' }) });
    const rev = ((await put.json()) as { header: { revision: string } }).header.revision;
    await fetch(`${endpoint}/v3/kv/compaction`, { method: 'POST', body: JSON.stringify({ revision: rev, physical: true }) });
    await waitFor('the watch error', () => errors.length > 0, 10_000);
    assert.ok(errors[0] instanceof StoreError && errors[0].retryable);
    assert.match(errors[0].message, new RegExp(`compacted up to revision ${rev}`));
    await h.cancel();
  } finally {
    await s.close();
  }
});

test('etcd wiped and started again: the watch ends (the revision went back)', async () => {
  const s = open();
  try {
    for (let i = 1; i <= 5; i++) await s.putSubnet(`10.244.${i}.0-24`, 'x', 600);
    const { revision } = await s.listSubnets();
    const errors: Error[] = [];
    const h = s.watchSubnets(revision + 1, { onEvents: () => undefined, onError: (e) => errors.push(e) });
    await sleep(200);
    await stopEtcd();
    rmSync(path.join(dir, 'data'), { recursive: true, force: true });
    await startEtcd();
    await waitFor('the watch error', () => errors.length > 0);
    assert.match(errors[0]!.message, /revision went back from \d+ to \d+/);
    assert.ok((errors[0] as StoreError).retryable);
    await h.cancel();
  } finally {
    await s.close();
  }
});
