// --etcd-username/--etcd-password against an etcd with auth enabled (simple
// tokens that expire after 2 s idle), through the JSON-gateway adapter.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { GatewayEtcdStore } from '../../src/store/etcd/gateway-store.js';
import { StoreError } from '../../src/store/store.js';
import { storeContract } from '../../src/testing/store-contract.js';
import { startEtcd, type EtcdServer } from '../helpers/etcd.js';

const run = promisify(execFile);
let etcd: EtcdServer;
let n = 0;

before(async () => {
  etcd = await startEtcd('127.0.0.1', undefined, ['--auth-token', 'simple', '--auth-token-ttl', '2']);
  const ctl = (...args: string[]) => run('etcdctl', ['--endpoints', etcd.endpoint, ...args], { env: { ...process.env, ETCDCTL_API: '3' } });
  await ctl('user', 'add', 'root:rootpw');
  await ctl('user', 'add', 'fl:flpw');
  await ctl('role', 'add', 'flannel');
  await ctl('role', 'grant-permission', 'flannel', '--prefix=true', 'readwrite', '/auth');
  await ctl('user', 'grant-role', 'fl', 'flannel');
  await ctl('auth', 'enable');
});

after(async () => {
  await etcd?.stop();
});

const open = (password = 'flpw') => new GatewayEtcdStore({ endpoints: [etcd.endpoint], prefix: `/auth${++n}`, username: 'fl', password });

storeContract('etcd (gateway, username/password)', async () => open(), { ttlWaitMs: 10_000 });

test('an expired token is renewed: calls and a new watch keep working', async () => {
  const s = open();
  try {
    await s.putSubnet('10.244.1.0-24', 'a', 60);
    await new Promise((r) => setTimeout(r, 3500)); // the token's TTL is 2 s
    assert.equal((await s.getSubnet('10.244.1.0-24'))!.value, 'a');
    const { revision } = await s.listSubnets();
    await new Promise((r) => setTimeout(r, 3500));
    const seen: string[] = [];
    const errors: Error[] = [];
    const h = s.watchSubnets(revision + 1, { onEvents: (evs) => seen.push(...evs.map((e) => e.name)), onError: (e) => errors.push(e) });
    try {
      await new Promise((r) => setTimeout(r, 200));
      await s.putSubnet('10.244.2.0-24', 'b', 60);
      const deadline = Date.now() + 5000;
      while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(seen, ['10.244.2.0-24']);
      assert.deepEqual(errors, []);
    } finally {
      await h.cancel();
    }
  } finally {
    await s.close();
  }
});

test('a wrong password is a StoreError naming the operation, not retryable', async () => {
  const s = open('wrong');
  try {
    await assert.rejects(s.getNetworkConfig(), (e: unknown) => {
      assert.ok(e instanceof StoreError);
      assert.match(e.message, /^etcd: get \/auth\d+\/config: authenticate as "fl": etcdserver: authentication failed/);
      assert.equal(e.retryable, false);
      return true;
    });
  } finally {
    await s.close();
  }
});

test('no permission on the prefix: a StoreError, not retryable', async () => {
  const s = new GatewayEtcdStore({ endpoints: [etcd.endpoint], prefix: '/elsewhere', username: 'fl', password: 'flpw' });
  try {
    await assert.rejects(s.listSubnets(), (e: unknown) => e instanceof StoreError && /permission denied/.test(e.message) && !e.retryable);
  } finally {
    await s.close();
  }
});
