// Privileged integration test: programs a real kernel through RtNetlink and
// checks the result with iproute2, as a user would.
//
// Isolation: everything happens in a fresh network namespace named
// `ftsnl-<pid>-<random>`. The kernel calls run in an agent process started
// with `ip netns exec`, so its sockets can only see that namespace; the test
// itself only runs `ip -n <ns>` / `bridge -n <ns>`. The namespace is deleted
// in `after`, which node:test runs even when setup or a test fails. No
// traffic is sent: the namespace has no route to anywhere.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { AgentError, EventPattern } from './netns-agent.js';
import type { BatchResult, FdbEntry, KernelOp, Link, Neigh, Route } from '../../src/kernel/types.js';
import { hasCommand, privilegedSkip } from '../../src/testing/privileged.js';
import { reapStaleNamespaces, sh, shOk } from '../helpers/netns-sync.js';

const NS_TAG = 'ftsnl-';
const NS_PREFIX = `${NS_TAG}${process.pid}-`;

const skipReason = (): string | false => privilegedSkip('creates a network namespace', ['ip', 'bridge']);
const which = hasCommand;

class Agent {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly ready: Promise<void>;

  constructor(private readonly child: ChildProcessByStdio<Writable, Readable, null>) {
    let markReady!: () => void;
    let failReady!: (e: Error) => void;
    this.ready = new Promise((res, rej) => {
      markReady = res;
      failReady = rej;
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const msg = JSON.parse(line) as { id: number; result?: unknown; error?: AgentError };
      if (msg.id === 0) return markReady();
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error) p.reject(Object.assign(new Error(msg.error.message), msg.error));
      else p.resolve(msg.result);
    });
    child.on('exit', (code) => {
      const err = new Error(`agent exited (${code})`);
      failReady(err);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    });
  }

  call<T>(method: string, ...params: unknown[]): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.stdin.write(JSON.stringify({ id, method, params }) + '\n');
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.stdin.write(JSON.stringify({ id: this.nextId++, method: 'exit', params: [] }) + '\n');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<AgentError> {
  try {
    await p;
  } catch (err) {
    const e = err as AgentError;
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}`);
}

const VTEP_MAC = '6e:5a:1c:00:00:01';
const PEER_MAC = '6e:5a:1c:01:02:03';

// Every case runs twice: with the socket on the calling thread, and in the
// worker thread the daemon uses (same results, same errors).
for (const mode of ['inline', 'worker', 'async'] as const) describe(`RtNetlink against a real kernel (private netns, ${mode} socket)`, { skip: skipReason() }, () => {
  const ns = NS_PREFIX + randomBytes(3).toString('hex');
  let agent: Agent | undefined;
  let underlay: Link;
  let vx: Link;
  const ipn = (...args: string[]) => sh('ip', ['-n', ns, ...args]);
  const bridgeN = (...args: string[]) => sh('bridge', ['-n', ns, ...args]);
  const k = <T>(method: string, ...params: unknown[]) => agent!.call<T>(method, ...params);

  before(async () => {
    reapStaleNamespaces(NS_TAG);
    sh('ip', ['netns', 'add', ns]);
    ipn('link', 'set', 'lo', 'up');
    // Underlay: a dummy device where the kernel has the module, else a veth pair.
    if (!shOk('ip', ['-n', ns, 'link', 'add', 'ul0', 'type', 'dummy'])) {
      ipn('link', 'add', 'ul0', 'type', 'veth', 'peer', 'name', 'ul0p');
      ipn('link', 'set', 'ul0p', 'up');
    }
    ipn('addr', 'add', '192.0.2.1/24', 'dev', 'ul0');
    ipn('link', 'set', 'ul0', 'up');

    const agentPath = fileURLToPath(new URL('./netns-agent.js', import.meta.url));
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, agentPath, ...(mode === 'inline' ? [] : [`--${mode}`])], { stdio: ['pipe', 'pipe', 'inherit'] });
    agent = new Agent(child);
    await agent.ready;
    const ul = await k<Link | null>('getLinkByName', 'ul0');
    assert.ok(ul, 'agent must see the underlay, i.e. run inside the namespace');
    underlay = ul;
  });

  after(async () => {
    try {
      await agent?.close();
    } finally {
      shOk('ip', ['netns', 'del', ns]);
    }
    assert.ok(!sh('ip', ['netns', 'list']).includes(ns), `namespace ${ns} must be gone`);
  });

  test('createVxlan builds the device flannel would (checked with ip -d link show)', async () => {
    vx = await k<Link>('createVxlan', {
      name: 'flannel.1',
      vni: 1,
      port: 0,
      local: '192.0.2.1',
      linkIndex: underlay.index,
      learning: false,
      gbp: false,
      mtu: 1450,
      mac: VTEP_MAC,
    });
    assert.equal(vx.kind, 'vxlan');
    assert.deepEqual(
      { ...vx.vxlan, ttl: undefined, tos: undefined, ageing: undefined },
      {
        vni: 1,
        port: 8472,
        local: '192.0.2.1',
        linkIndex: underlay.index,
        learning: false,
        gbp: false,
        l2miss: false,
        l3miss: false,
        ttl: undefined,
        tos: undefined,
        ageing: undefined,
      },
    );
    const shown = ipn('-d', 'link', 'show', 'flannel.1');
    assert.match(shown, /mtu 1450 /);
    assert.match(shown, new RegExp(`link/ether ${VTEP_MAC} `));
    assert.match(shown, /vxlan id 1 local 192\.0\.2\.1 dev ul0 srcport 0 0 dstport 8472 nolearning /);
  });

  test('createVxlan again: identical is reused, different is EEXIST, bad VNI carries the kernel text', async () => {
    const again = await k<Link>('createVxlan', {
      name: 'flannel.1',
      vni: 1,
      local: '192.0.2.1',
      linkIndex: underlay.index,
      mtu: 1450,
    });
    assert.equal(again.index, vx.index);
    const conflict = await rejectsWith(
      k('createVxlan', { name: 'flannel.1', vni: 2, local: '192.0.2.1', linkIndex: underlay.index }),
      'EEXIST',
    );
    assert.match(conflict.message, /differs: vni 1 != 2/);
    const range = await rejectsWith(k('createVxlan', { name: 'vxbad', vni: 1 << 25 }), 'ERANGE');
    assert.equal(range.errno, 34);
    assert.match(range.extAck ?? '', /VXLAN ID/i);
    assert.match(range.message, /kernel says/);
  });

  test('link up, address (idempotent add)', async () => {
    await k('setLinkUp', vx.index);
    await k('addAddr', vx.index, '10.244.1.0/32');
    await k('addAddr', vx.index, '10.244.1.0/32'); // EEXIST of the identical address is success
    assert.match(ipn('link', 'show', 'flannel.1'), /<[^>]*\bUP\b[^>]*>/);
    assert.match(ipn('-4', 'addr', 'show', 'dev', 'flannel.1'), /inet 10\.244\.1\.0\/32 /);
    const addrs = await k<{ cidr: string }[]>('listAddrs', vx.index);
    assert.deepEqual(
      addrs.map((a) => a.cidr),
      ['10.244.1.0/32'],
    );
  });

  test('neighbour, FDB entry and onlink route look exactly like flannel programs them', async () => {
    await k('replaceNeigh', { ifindex: vx.index, ip: '10.244.2.0', mac: PEER_MAC, permanent: true });
    await k('replaceFdb', { ifindex: vx.index, mac: PEER_MAC, dst: '192.0.2.2', self: true, permanent: true });
    await k('replaceRoute', { dst: '10.244.2.0/24', gw: '10.244.2.0', oif: vx.index, onlink: true });

    assert.equal(ipn('neigh', 'show', 'dev', 'flannel.1').trim(), `10.244.2.0 lladdr ${PEER_MAC} PERMANENT`);
    const fdb = bridgeN('fdb', 'show', 'dev', 'flannel.1').split('\n').map((l) => l.trim());
    assert.ok(fdb.includes(`${PEER_MAC} dst 192.0.2.2 self permanent`), fdb.join('\n'));
    const routes = ipn('route').split('\n').map((l) => l.trim());
    assert.ok(routes.includes('10.244.2.0/24 via 10.244.2.0 dev flannel.1 proto 222 onlink'), routes.join('\n'));

    // The same state read back through the codec.
    const neighs = await k<Neigh[]>('listNeighs', vx.index);
    assert.deepEqual(neighs, [
      { family: 2, ifindex: vx.index, ip: '10.244.2.0', mac: PEER_MAC, state: 0x80, flags: 0, permanent: true },
    ]);
    const entries = (await k<FdbEntry[]>('listFdb', vx.index)).filter((f) => f.dst !== undefined);
    assert.deepEqual(entries, [
      {
        family: 7,
        ifindex: vx.index,
        mac: PEER_MAC,
        dst: '192.0.2.2',
        state: 0x80,
        flags: 2,
        self: true,
        master: false,
        permanent: true,
      },
    ]);
    const rts = await k<Route[]>('listRoutes', { oif: vx.index });
    assert.equal(rts.length, 1);
    assert.equal(rts[0]!.dst, '10.244.2.0/24');
    assert.equal(rts[0]!.gateway, '10.244.2.0');
    assert.equal(rts[0]!.onlink, true);
  });

  test('a second identical replace is a no-op success', async () => {
    const before = [ipn('neigh', 'show', 'dev', 'flannel.1'), bridgeN('fdb', 'show', 'dev', 'flannel.1'), ipn('route')];
    await k('replaceNeigh', { ifindex: vx.index, ip: '10.244.2.0', mac: PEER_MAC });
    await k('replaceFdb', { ifindex: vx.index, mac: PEER_MAC, dst: '192.0.2.2' });
    await k('replaceRoute', { dst: '10.244.2.0/24', gw: '10.244.2.0', oif: vx.index, onlink: true });
    await k('appendFdb', { ifindex: vx.index, mac: PEER_MAC, dst: '192.0.2.2' });
    const afterState = [ipn('neigh', 'show', 'dev', 'flannel.1'), bridgeN('fdb', 'show', 'dev', 'flannel.1'), ipn('route')];
    assert.deepEqual(afterState, before);
  });

  test('deleting what is absent succeeds; real errors keep errno and code', async () => {
    await k('delNeigh', { ifindex: vx.index, ip: '10.9.9.9' });
    await k('delFdb', { ifindex: vx.index, mac: '02:00:00:00:09:09', dst: '192.0.2.9' });
    await k('delRoute', { dst: '10.9.9.0/24' });
    await k('delAddr', vx.index, '10.9.9.9/32');
    await k('deleteLink', 99999);
    const e = await rejectsWith(k('replaceNeigh', { ifindex: 99999, ip: '10.9.9.9', mac: PEER_MAC }), 'ENODEV');
    assert.equal(e.errno, 19);
    assert.match(e.op ?? '', /replace neigh 10\.9\.9\.9/);
  });

  test('batch: 1000 remote nodes (3000 requests), re-apply, one bad entry, delete, delete again', async (t) => {
    const N = 1000;
    const peer = (i: number) => ({
      subnet: `10.${100 + (i >> 8)}.${i & 255}.0`,
      vtep: `198.18.${i >> 8}.${i & 255}`,
      mac: `02:42:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
    });
    const add: KernelOp[] = [];
    const del: KernelOp[] = [];
    for (let i = 0; i < N; i++) {
      const p = peer(i);
      add.push(
        { op: 'replaceNeigh', neigh: { ifindex: vx.index, ip: p.subnet, mac: p.mac } },
        { op: 'replaceFdb', fdb: { ifindex: vx.index, mac: p.mac, dst: p.vtep } },
        { op: 'replaceRoute', route: { dst: `${p.subnet}/24`, gw: p.subnet, oif: vx.index, onlink: true } },
      );
      del.push(
        { op: 'delRoute', route: { dst: `${p.subnet}/24`, gw: p.subnet, oif: vx.index } },
        { op: 'delFdb', fdb: { ifindex: vx.index, mac: p.mac, dst: p.vtep } },
        { op: 'delNeigh', neigh: { ifindex: vx.index, ip: p.subnet } },
      );
    }
    const first = await k<BatchResult>('applyBatch', add);
    const report = (label: string, r: BatchResult) => {
      const line = `${label}: ${r.total} requests in ${r.durationMs.toFixed(1)} ms (${r.failures.length} failed)`;
      t.diagnostic(line);
    };
    report('batch add, 1000 peers', first);
    assert.deepEqual(first.failures, []);
    assert.equal(ipn('neigh', 'show', 'dev', 'flannel.1').trim().split('\n').length, N + 1);
    assert.equal(bridgeN('fdb', 'show', 'dev', 'flannel.1').split('\n').filter((l) => l.includes(' dst ')).length, N + 1);
    assert.equal(ipn('route', 'show', 'dev', 'flannel.1').trim().split('\n').length, N + 1);
    const sample = peer(777);
    assert.ok(
      ipn('route').includes(`${sample.subnet}/24 via ${sample.subnet} dev flannel.1 proto 222 onlink`),
      'sample route present',
    );

    const again = await k<BatchResult>('applyBatch', add);
    report('batch re-apply (no-op)', again);
    assert.deepEqual(again.failures, []);
    assert.equal(ipn('neigh', 'show', 'dev', 'flannel.1').trim().split('\n').length, N + 1);

    const mixed: KernelOp[] = [add[0]!, { op: 'replaceNeigh', neigh: { ifindex: 99999, ip: '10.9.9.9', mac: PEER_MAC } }, add[1]!];
    const m = await k<BatchResult>('applyBatch', mixed);
    assert.equal(m.succeeded, 2);
    assert.equal(m.failures.length, 1);
    assert.equal(m.failures[0]!.index, 1);
    assert.equal((m.failures[0]!.error as unknown as AgentError).code, 'ENODEV');

    const removed = await k<BatchResult>('applyBatch', del);
    report('batch delete', removed);
    assert.deepEqual(removed.failures, []);
    assert.equal(ipn('neigh', 'show', 'dev', 'flannel.1').trim().split('\n').length, 1);
    assert.equal(ipn('route', 'show', 'dev', 'flannel.1').trim().split('\n').length, 1);

    const removedAgain = await k<BatchResult>('applyBatch', del);
    report('batch delete again (all absent)', removedAgain);
    assert.deepEqual(removedAgain.failures, []);
  });

  test('subscriber sees a neighbour deletion done with `ip neigh del`, and stops promptly', async () => {
    await k('subscribe');
    try {
      ipn('neigh', 'del', '10.244.2.0', 'dev', 'flannel.1');
      const pattern: EventPattern = { kind: 'neigh', action: 'del', match: { ip: '10.244.2.0', ifindex: vx.index } };
      const ev = await k<{ kind: string; pid: number }>('waitEvent', pattern, 5000);
      assert.equal(ev.kind, 'neigh');
      // The deletion came from iproute2's socket, not ours.
      assert.notEqual(ev.pid, await k<number>('portId'));

      // FDB and link notifications arrive on the same subscription.
      await k('replaceFdb', { ifindex: vx.index, mac: '02:00:00:00:aa:aa', dst: '192.0.2.3' });
      await k('waitEvent', { kind: 'fdb', action: 'new', match: { mac: '02:00:00:00:aa:aa', dst: '192.0.2.3' } }, 5000);
      await k('setMtu', vx.index, 1400);
      await k('waitEvent', { kind: 'link', action: 'new', match: { index: vx.index, mtu: 1400 } }, 5000);
    } finally {
      const stopped = await k<{ stopMs: number; overruns: number }>('unsubscribe');
      assert.ok(stopped.stopMs < 1500, `stop took ${stopped.stopMs} ms`);
    }
  });

  test('a listener that falls behind gets an overrun result, not a crash', async () => {
    const r = await k<{ sawOverrun: boolean }>('overrunProbe', vx.index, 1000);
    assert.equal(r.sawOverrun, true);
  });

  test('deleteLink removes the device', async () => {
    await k('deleteLink', vx.index);
    assert.equal(await k('getLinkByName', 'flannel.1'), null);
    assert.ok(!shOk('ip', ['-n', ns, 'link', 'show', 'flannel.1']));
  });
});
