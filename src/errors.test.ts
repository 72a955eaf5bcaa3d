import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FlannelError, causeChain, findCause, hasCode, isRetryable, rootCode } from './errors.js';
import { NetlinkError } from './netlink/errors.js';
import { StoreError } from './store/store.js';
import { KubeApiError } from './store/kube/kube-api.js';
import { ConfigError, parseNetworkConfig } from './subnet/config.js';
import { IfaceError } from './daemon/iface.js';
import { BackendError, ReconcileError } from './backend/backend.js';
import { SubnetManager } from './subnet/manager.js';
import { MemoryStore } from './testing/memory-store.js';
import { FakeKernel } from './testing/fake-kernel.js';
import { MemoryLogger } from './testing/memory-logger.js';
import { HostGwBackend } from './backend/hostgw/hostgw.js';
import { parseIPv4, parseIPv4Net } from './lease/ip.js';

test('FlannelError: code, retryable and the standard cause', () => {
  const inner = new Error('socket closed');
  const e = new FlannelError('outer', { code: 'X', retryable: true, cause: inner });
  assert.ok(e instanceof Error);
  assert.equal(e.code, 'X');
  assert.equal(e.retryable, true);
  assert.equal(e.cause, inner);
  assert.equal(e.message, 'outer');
  const d = new FlannelError('plain');
  assert.equal(d.code, 'FLANNEL_ERROR');
  assert.equal(d.retryable, false);
  assert.equal('cause' in d, false, 'no cause property when none is given');
});

test('every project error class has the same shape and its own default code', () => {
  const cases: Array<[FlannelError, string, string, boolean]> = [
    [new ConfigError('bad'), 'ConfigError', 'CONFIG_INVALID', false],
    [new IfaceError('none'), 'IfaceError', 'IFACE', false],
    [new BackendError('x'), 'BackendError', 'BACKEND', false],
    [new StoreError('away', true), 'StoreError', 'STORE_UNAVAILABLE', true],
    [new StoreError('broken', false), 'StoreError', 'STORE_ERROR', false],
    [new KubeApiError('forbidden', 403), 'KubeApiError', 'HTTP_403', false],
    [new KubeApiError('down', 0), 'KubeApiError', 'KUBE_UNREACHABLE', true],
    [new KubeApiError('overloaded', 503), 'KubeApiError', 'HTTP_503', true],
    [new NetlinkError({ errno: 17, op: 'RTM_NEWROUTE' }), 'NetlinkError', 'EEXIST', false],
    [new NetlinkError({ errno: 105, op: 'recv' }), 'NetlinkError', 'ENOBUFS', true],
  ];
  for (const [e, name, code, retryable] of cases) {
    assert.ok(e instanceof FlannelError, name);
    assert.equal(e.name, name);
    assert.equal(e.code, code, name);
    assert.equal(e.retryable, retryable, name);
    assert.equal(isRetryable(e), retryable, name);
  }
  assert.equal(isRetryable(new Error('x')), false);
  assert.equal(new ConfigError('none yet', { code: 'CONFIG_MISSING', retryable: true }).code, 'CONFIG_MISSING');
  assert.equal(new StoreError('x', false, { code: 'STORE_RESET' }).code, 'STORE_RESET');
});

test('a reconcile error wrapping a NetlinkError keeps its errno and code, through any number of layers', () => {
  const nl = new NetlinkError({ errno: 101, op: 'RTM_NEWROUTE 10.244.2.0/24' });
  const r = new ReconcileError(`replaceRoute 10.244.2.0/24: ${nl.message}`, { cause: nl });
  assert.equal(r.code, 'ENETUNREACH');
  assert.equal(r.errno, 101);
  assert.equal(r.cause, nl);
  const outer = new FlannelError('reconcile failed', { code: 'RECONCILE', cause: r });
  assert.deepEqual([...causeChain(outer)], [outer, r, nl]);
  assert.equal(rootCode(outer), 'ENETUNREACH');
  assert.equal(findCause(outer, NetlinkError), nl);
  assert.ok(hasCode(outer, 'ENETUNREACH'));
  assert.equal(new ReconcileError('no cause').code, 'RECONCILE');
  assert.equal(new ReconcileError('no cause').errno, undefined);
  // a cycle does not hang
  const a = new FlannelError('a');
  const b = new FlannelError('b', { cause: a });
  (a as { cause?: unknown }).cause = b;
  assert.equal([...causeChain(a)].length, 2);
});

test('host-gw reconcile errors carry the kernel errno (EEXIST) as their cause', async () => {
  const k = new FakeKernel();
  const eth0 = k.addLink({ name: 'eth0', mtu: 1500 });
  k.addrs.push({ family: 2, index: eth0.index, prefixLen: 24, flags: 0, scope: 0, local: '192.0.2.11', address: '192.0.2.11', cidr: '192.0.2.11/24' });
  const b = new HostGwBackend(
    {
      config: parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}'),
      extIface: { name: 'eth0', index: eth0.index, mtu: 1500, ifaceAddr: parseIPv4('192.0.2.11'), publicIP: parseIPv4('192.0.2.11') },
      log: new MemoryLogger(),
    },
    { kernel: k },
  );
  await b.prepare();
  await b.activate();
  k.failWhen = (op) => (op.op === 'replaceRoute' ? 17 : null);
  const peer = { subnet: parseIPv4Net('10.244.2.0/24'), subnet6: null, attrs: { publicIP: parseIPv4('192.0.2.12'), publicIPv6: null, backendType: 'host-gw' }, expiration: null };
  const errs = await b.reconcile([peer]);
  await b.close();
  assert.equal(errs.length, 1);
  const e = errs[0]!;
  assert.ok(e instanceof ReconcileError);
  assert.equal(e.code, 'EEXIST');
  assert.equal(e.errno, 17);
  assert.ok(e.cause instanceof NetlinkError);
});

test('a missing network config is CONFIG_MISSING (retryable); an invalid one is CONFIG_INVALID', async () => {
  const store = new MemoryStore(null);
  const m = new SubnetManager(store, { log: new MemoryLogger() });
  await assert.rejects(m.getNetworkConfig(), (e: unknown) => e instanceof ConfigError && e.code === 'CONFIG_MISSING' && e.retryable);
  store.config = '{"Network":"nonsense"}';
  await assert.rejects(m.getNetworkConfig(), (e: unknown) => e instanceof ConfigError && e.code === 'CONFIG_INVALID' && !e.retryable);
});
