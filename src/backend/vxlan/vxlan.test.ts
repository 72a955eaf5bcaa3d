import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIPv4, parseIPv4, parseIPv4Net, parseIPv6, parseIPv6Net } from '../../lease/ip.js';
import type { NetlinkEvent } from '../../netlink/subscriber.js';
import type { Lease } from '../../lease/lease.js';
import { MemoryLogger } from '../../testing/memory-logger.js';
import { parseNetworkConfig } from '../../subnet/config.js';
import { FakeKernel } from '../../testing/fake-kernel.js';
import type { Link } from '../../kernel/types.js';
import { ConfigError } from '../../subnet/config.js';
import { parseVxlanOptions, normaliseMac } from './options.js';
import { VxlanBackend } from './vxlan.js';
import { ReconcileError } from '../backend.js';
import type { NetlinkError } from '../../netlink/errors.js';
import { ReconcileQueue } from '../../daemon/reconcile.js';
import { ManualClock } from '../../testing/manual-clock.js';
import * as C from '../../netlink/constants.js';

const peer = (n: number, mac = `0a:00:00:00:00:0${n}`, type = 'vxlan'): Lease => ({
  subnet: parseIPv4Net(`10.244.${n}.0/24`),
  subnet6: null,
  attrs: { publicIP: parseIPv4(`192.0.2.${10 + n}`), publicIPv6: null, backendType: type, backendData: { VNI: 1, VtepMAC: mac } },
  expiration: null,
});

/** A backend on a fake host (eth0 192.0.2.11), prepared and active; `before` sets up what an earlier run left. */
async function setup(backend = '{"Type":"vxlan"}', before?: (k: FakeKernel, eth0: Link) => Promise<void>) {
  const k = new FakeKernel();
  const eth0 = k.addLink({ name: 'eth0', mtu: 1500 });
  k.addrs.push({ family: 2, index: eth0.index, prefixLen: 24, flags: 0, scope: 0, local: '192.0.2.11', address: '192.0.2.11', cidr: '192.0.2.11/24' });
  await before?.(k, eth0);
  const log = new MemoryLogger();
  const b = new VxlanBackend(
    { config: parseNetworkConfig(`{"Network":"10.244.0.0/16","Backend":${backend}}`), extIface: { name: 'eth0', index: eth0.index, mtu: 1500, ifaceAddr: parseIPv4('192.0.2.11'), publicIP: parseIPv4('192.0.2.11') }, log },
    { kernel: k },
  );
  const attrs = await b.prepare();
  const own = { ...peer(1), attrs: { publicIP: parseIPv4('192.0.2.11'), publicIPv6: null, ...attrs } };
  const { mtu } = await b.activate(own);
  return { k, b, log, mtu, attrs, eth0 };
}

test('options: defaults, case-insensitive keys, errors name the field', () => {
  assert.deepEqual(parseVxlanOptions({ Type: 'vxlan' }), { vni: 1, port: 0, mtu: null, gbp: false, learning: false, directRouting: false });
  assert.equal(parseVxlanOptions({ vni: 7, port: 4789, directRouting: true }).vni, 7);
  assert.throws(() => parseVxlanOptions({ VNI: -1 }), (e: unknown) => e instanceof ConfigError && /^Backend\.VNI: .* got -1/.test(e.message));
  assert.throws(() => parseVxlanOptions({ VNI: 1 << 24 }), /Backend\.VNI/);
  assert.throws(() => parseVxlanOptions({ Port: 'x' }), /Backend\.Port/);
  assert.throws(() => parseVxlanOptions({ GBP: 1 }), /Backend\.GBP: expected true or false/);
  assert.equal(normaliseMac('0A-00-00-00-00-01'), '0a:00:00:00:00:01');
  assert.equal(normaliseMac('0a00.0000.0001'), '0a:00:00:00:00:01');
  assert.equal(normaliseMac('zz'), null);
});

test('prepare creates flannel.1 with a locally administered unicast MAC; lease data is flannel\'s', async () => {
  const { k, attrs, mtu } = await setup();
  const dev = (await k.getLinkByName('flannel.1'))!;
  assert.equal(dev.kind, 'vxlan');
  assert.equal(dev.mtu, 1450);
  assert.equal(mtu, 1450);
  const first = parseInt(dev.mac!.slice(0, 2), 16);
  assert.equal(first & 1, 0, 'unicast');
  assert.equal(first & 2, 2, 'locally administered');
  assert.deepEqual(attrs, { backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: dev.mac } });
  assert.deepEqual((await k.listAddrs(dev.index)).map((a) => a.cidr), ['10.244.1.0/32']);
  assert.equal(dev.up, true);
});

test('reconcile programs neighbour, FDB and onlink route per peer; a repeat makes zero changes', async () => {
  const { k, b } = await setup();
  const dev = (await k.getLinkByName('flannel.1'))!;
  assert.deepEqual(await b.reconcile([peer(2), peer(3)]), []);
  assert.deepEqual(k.neighs.map((n) => [n.ip, n.mac, n.permanent]).sort(), [['10.244.2.0', '0a:00:00:00:00:02', true], ['10.244.3.0', '0a:00:00:00:00:03', true]]);
  assert.deepEqual(k.fdb.map((f) => [f.mac, f.dst, f.self, f.permanent]).sort(), [['0a:00:00:00:00:02', '192.0.2.12', true, true], ['0a:00:00:00:00:03', '192.0.2.13', true, true]]);
  assert.deepEqual(k.routes.map((r) => [r.dst, r.gateway, r.oif, r.onlink]).sort(), [['10.244.2.0/24', '10.244.2.0', dev.index, true], ['10.244.3.0/24', '10.244.3.0', dev.index, true]]);
  const before = k.mutations;
  assert.deepEqual(await b.reconcile([peer(2), peer(3)]), []);
  assert.equal(k.mutations, before, 'second run: zero kernel changes');
  assert.equal(b.last.changes, 0);
});

test('a peer leaving removes its entries; a changed MAC is replaced; adds happen before deletes', async () => {
  const { k, b } = await setup();
  await b.reconcile([peer(2), peer(3)]);
  const order: string[] = [];
  const orig = k.applyBatch.bind(k);
  k.applyBatch = async (ops) => {
    order.push(...ops.map((o) => o.op));
    return orig(ops);
  };
  await b.reconcile([peer(3, '0a:00:00:00:00:33'), peer(4)]);
  assert.deepEqual(k.neighs.map((n) => `${n.ip} ${n.mac}`).sort(), ['10.244.3.0 0a:00:00:00:00:33', '10.244.4.0 0a:00:00:00:00:04']);
  assert.deepEqual(k.fdb.map((f) => `${f.mac} ${f.dst}`).sort(), ['0a:00:00:00:00:04 192.0.2.14', '0a:00:00:00:00:33 192.0.2.13']);
  assert.deepEqual(k.routes.map((r) => r.dst).sort(), ['10.244.3.0/24', '10.244.4.0/24']);
  const firstDelete = order.findIndex((o) => o.startsWith('del'));
  assert.ok(firstDelete > order.lastIndexOf('replaceRoute'), `adds before deletes: ${order.join(',')}`);
});

test('one failing peer does not stop the others; all errors are returned; its route waits', async () => {
  const { k, b } = await setup();
  k.failWhen = (op) => (op.op === 'replaceFdb' && op.fdb.dst === '192.0.2.13' ? 105 : null);
  const errs = await b.reconcile([peer(2), peer(3), peer(4)]);
  assert.equal(errs.length, 1);
  assert.match(errs[0]!.message, /fdb 0a:00:00:00:00:03 dst 192\.0\.2\.13.*ENOBUFS/);
  // the kernel's errno survives: code, errno and the NetlinkError as cause
  const e = errs[0] as ReconcileError;
  assert.ok(e instanceof ReconcileError);
  assert.deepEqual([e.code, e.errno, e.retryable, (e.cause as NetlinkError).code], ['ENOBUFS', 105, true, 'ENOBUFS']);
  assert.deepEqual(k.routes.map((r) => r.dst).sort(), ['10.244.2.0/24', '10.244.4.0/24']);
  k.failWhen = null;
  assert.deepEqual(await b.reconcile([peer(2), peer(3), peer(4)]), []);
  assert.deepEqual(k.routes.map((r) => r.dst).sort(), ['10.244.2.0/24', '10.244.3.0/24', '10.244.4.0/24']);
});

test('leases of another backend or with a bad VtepMAC never reach the kernel', async () => {
  const { k, b, log } = await setup();
  await b.reconcile([peer(2, 'x', 'vxlan'), peer(3, '0a:00:00:00:00:03', 'host-gw'), peer(4, '01:00:5e:00:00:01'), peer(5)]);
  assert.deepEqual(k.routes.map((r) => r.dst), ['10.244.5.0/24']);
  const warns = log.lines.filter((l) => l.level === 'warn').map((l) => l.msg).join('\n');
  assert.match(warns, /10\.244\.2\.0-24: BackendData\.VtepMAC .* is not a MAC address/);
  assert.match(warns, /10\.244\.3\.0-24: backend type "host-gw" is not vxlan/);
  assert.match(warns, /10\.244\.4\.0-24: BackendData\.VtepMAC 01:00:5e:00:00:01 is not a unicast address/);
});

test('a deleted device is recreated with the same MAC and every entry re-added (⚠ App. A.7)', async () => {
  const { k, b } = await setup();
  await b.reconcile([peer(2)]);
  const mac = b.vtepMac;
  await k.deleteLink((await k.getLinkByName('flannel.1'))!.index);
  assert.deepEqual(await b.reconcile([peer(2)]), []);
  const dev = (await k.getLinkByName('flannel.1'))!;
  assert.equal(dev.mac, mac);
  assert.deepEqual((await k.listAddrs(dev.index)).map((a) => a.cidr), ['10.244.1.0/32']);
  assert.equal(k.routes.length, 1);
  assert.equal(k.neighs.length, 1);
  assert.equal(k.fdb.length, 1);
});

test('an existing compatible device is reused (MAC kept); an incompatible one is recreated', async () => {
  const k = new FakeKernel();
  const eth0 = k.addLink({ name: 'eth0', mtu: 1500 });
  const old = await k.createVxlan({ name: 'flannel.1', vni: 1, local: '192.0.2.11', linkIndex: eth0.index, mac: '0e:11:22:33:44:55' });
  const mk = () =>
    new VxlanBackend(
      { config: parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}'), extIface: { name: 'eth0', index: eth0.index, mtu: 1500, ifaceAddr: parseIPv4('192.0.2.11'), publicIP: parseIPv4('192.0.2.11') }, log: new MemoryLogger() },
      { kernel: k },
    );
  assert.deepEqual(await mk().prepare(), { backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: '0e:11:22:33:44:55' } });
  assert.equal((await k.getLinkByName('flannel.1'))!.index, old.index);
  k.links.set(old.index, { ...old, vxlan: { ...old.vxlan!, vni: 9 } });
  const again = await mk().prepare();
  assert.notEqual((await k.getLinkByName('flannel.1'))!.index, old.index, 'recreated');
  assert.equal((again.backendData as { VtepMAC: string }).VtepMAC, '0e:11:22:33:44:55', 'MAC carried over');
});

test('DirectRouting: a peer on our L2 subnet gets a plain route via its public IP, no tunnel entries', async () => {
  const { k, b, eth0 } = await setup('{"Type":"vxlan","DirectRouting":true}');
  const far = { ...peer(3), attrs: { ...peer(3).attrs, publicIP: parseIPv4('198.51.100.7') } };
  await b.reconcile([peer(2), far]);
  const dev = (await k.getLinkByName('flannel.1'))!;
  assert.deepEqual(k.routes.map((r) => [r.dst, r.gateway, r.oif]).sort(), [['10.244.2.0/24', '192.0.2.12', eth0.index], ['10.244.3.0/24', '10.244.3.0', dev.index]]);
  assert.deepEqual(k.neighs.map((n) => n.ip), ['10.244.3.0']);
});

test('a lease key with host bits set (10.244.42.128-24) gets no neighbour, FDB entry or route', async () => {
  const { k, b, log } = await setup();
  const bad: Lease = { ...peer(7), subnet: { ip: parseIPv4('10.244.42.128'), prefix: 24 } };
  assert.deepEqual(await b.reconcile([bad, peer(2)]), []);
  assert.deepEqual(k.neighs.map((n) => n.ip), ['10.244.2.0']);
  assert.deepEqual(k.fdb.map((f) => f.dst), ['192.0.2.12']);
  assert.deepEqual(k.routes.map((r) => r.dst), ['10.244.2.0/24']);
  await b.reconcile([bad, peer(2)]);
  const warns = log.lines.filter((l) => l.level === 'warn').map((l) => l.msg);
  assert.deepEqual(warns, ['ignoring lease 10.244.42.128-24: subnet 10.244.42.128/24 has host bits set'], 'warned once');
});

test('an entry the kernel keeps refusing is not "restored" on every periodic check, and is warned about once', async () => {
  const { k, b, log } = await setup();
  // the daemon's queue, driven as its periodic check would
  const clock = new ManualClock();
  const q = new ReconcileQueue({ clock, log, run: async (events) => ({ errors: await b.reconcile([peer(2), peer(3)], events), changes: b.lastChanges }) });
  const check = async () => {
    q.kick('periodic check');
    await clock.advance(10_000);
    await q.settled();
  };
  try {
    q.push([]);
    await q.settled();
    assert.equal(b.lastChanges, 6, 'neighbour, fdb and route for two peers');
    // Someone deletes a route, and from now on the kernel refuses to put it back.
    k.failWhen = (op) => (op.op === 'replaceRoute' && op.route.dst === '10.244.3.0/24' ? 22 : null);
    k.routes = k.routes.filter((r) => r.dst !== '10.244.3.0/24');
    for (let i = 0; i < 8; i++) await check();
    const msgs = log.lines.map((l) => l.msg);
    assert.deepEqual(msgs.filter((m) => /restored/.test(m)), [], 'nothing was restored');
    const warned = msgs.filter((m) => /^reconcile: route 10\.244\.3\.0\/24 via 10\.244\.3\.0 .*EINVAL/.test(m));
    assert.equal(warned.length, 1, msgs.join('\n'));
    // once the kernel takes it again, it is restored (and said so)
    k.failWhen = null;
    await check();
    assert.ok(k.routes.some((r) => r.dst === '10.244.3.0/24'));
    assert.deepEqual(log.lines.filter((l) => /^restored/.test(l.msg)).map((l) => l.msg), ['restored 1 kernel entry (periodic check)']);
    assert.deepEqual(q.heals, { 'periodic check': 1 });
  } finally {
    await q.close();
    await b.close();
  }
});

test('flannel.1 keeps exactly one IPv4 address: a stale /32 from an old subnet (inside or outside Network) goes; link-local stays', async () => {
  let dev!: Link;
  const { k, b, log } = await setup(undefined, async (k, eth0) => {
    dev = await k.createVxlan({ name: 'flannel.1', vni: 1, local: '192.0.2.11', linkIndex: eth0.index, mac: '0e:11:22:33:44:55' });
    // left by earlier runs: a subnet of the current Network, one of a Network since changed, a link-local one
    for (const a of ['10.244.9.0/32', '10.50.3.0/32', '169.254.1.1/16']) await k.addAddr(dev.index, a);
  });
  assert.deepEqual((await k.listAddrs(dev.index)).map((a) => a.cidr).sort(), ['10.244.1.0/32', '169.254.1.1/16']);
  assert.ok(log.lines.some((l) => l.msg === 'removing stale address 10.50.3.0/32 from flannel.1'));
  await b.close();
});

test('a few lease events are applied as a targeted patch: no kernel dumps, 3 requests per new peer, deletes spare shared entries', async () => {
  const { k, b } = await setup();
  const dev = (await k.getLinkByName('flannel.1'))!;
  await b.reconcile([peer(2), peer(3)]);
  let dumps = 0;
  for (const m of ['listNeighs', 'listFdb', 'listRoutes'] as const) {
    const orig = (k[m] as (...a: unknown[]) => Promise<unknown>).bind(k);
    (k as unknown as Record<string, unknown>)[m] = async (...a: unknown[]) => (dumps++, orig(...a));
  }
  const before = k.mutations;
  // a new peer
  assert.deepEqual(await b.reconcile([peer(2), peer(3), peer(4)], [{ type: 'added', lease: peer(4) }]), []);
  assert.equal(dumps, 0, 'no dumps for one new peer');
  assert.equal(k.mutations - before, 3, 'neighbour, FDB entry, route');
  assert.equal(b.patches, 1);
  assert.ok(k.routes.some((r) => r.dst === '10.244.4.0/24' && r.gateway === '10.244.4.0' && r.oif === dev.index && r.onlink));
  assert.ok(k.neighs.some((n) => n.ip === '10.244.4.0' && n.mac === '0a:00:00:00:00:04' && n.permanent));
  assert.ok(k.fdb.some((f) => f.mac === '0a:00:00:00:00:04' && f.dst === '192.0.2.14'));
  // a peer leaving: its route, FDB entry and neighbour go; the others stay
  assert.deepEqual(await b.reconcile([peer(2), peer(4)], [{ type: 'removed', lease: peer(3) }]), []);
  assert.equal(dumps, 0);
  assert.deepEqual(k.routes.map((r) => r.dst).sort(), ['10.244.2.0/24', '10.244.4.0/24']);
  assert.deepEqual(k.neighs.map((n) => n.ip).sort(), ['10.244.2.0', '10.244.4.0']);
  assert.deepEqual(k.fdb.map((f) => f.mac).sort(), ['0a:00:00:00:00:02', '0a:00:00:00:00:04']);
  // a peer whose lease was already known (its MAC changed) is patched too: its neighbour and
  // FDB entry are rewritten and the old FDB entry goes; its route (same next hop) is left alone
  const m0 = k.mutations;
  await b.reconcile([peer(2, '0a:00:00:00:00:22'), peer(4)], [{ type: 'added', lease: peer(2, '0a:00:00:00:00:22') }]);
  assert.equal(dumps, 0, 'a changed peer is a patch');
  assert.equal(k.mutations - m0, 3, 'neighbour and FDB entry replaced, old FDB entry deleted');
  assert.deepEqual(k.fdb.map((f) => f.mac).sort(), ['0a:00:00:00:00:04', '0a:00:00:00:00:22']);
  assert.ok(k.neighs.some((n) => n.ip === '10.244.2.0' && n.mac === '0a:00:00:00:00:22'));
  // a burst (more than any fixed limit) is one patch: 3 requests per new peer, no dumps
  const many = Array.from({ length: 100 }, (_, i) => peer(10 + i, `0a:00:00:00:01:${(10 + i).toString(16).padStart(2, '0')}`));
  const m1 = k.mutations;
  await b.reconcile([peer(2, '0a:00:00:00:00:22'), peer(4), ...many], many.map((lease) => ({ type: 'added' as const, lease })));
  assert.equal(dumps, 0, 'a burst is a patch');
  assert.equal(k.mutations - m1, 300);
  // ... and so is its departure, in the same run as another arrival
  const m2 = k.mutations;
  await b.reconcile([peer(2, '0a:00:00:00:00:22'), peer(4), peer(5)], [...many.map((lease) => ({ type: 'removed' as const, lease })), { type: 'added', lease: peer(5) }]);
  assert.equal(dumps, 0);
  assert.equal(k.mutations - m2, 303);
  assert.deepEqual(k.routes.map((r) => r.dst).sort(), ['10.244.2.0/24', '10.244.4.0/24', '10.244.5.0/24']);
  // the state after patches is exactly what a full reconcile wants: a full run changes nothing
  const m = k.mutations;
  await b.reconcile([peer(2, '0a:00:00:00:00:22'), peer(4), peer(5)]);
  assert.equal(k.mutations, m);
});

// ------------------------------------------------------------ dual-stack

const peer6 = (n: number, mac6: string | null = `0a:00:00:00:06:0${n}`): Lease => ({
  subnet: parseIPv4Net(`10.244.${n}.0/24`),
  subnet6: parseIPv6Net(`fd00:10:244:${n}::/64`),
  attrs: {
    publicIP: parseIPv4(`192.0.2.${10 + n}`),
    publicIPv6: parseIPv6(`2001:db8::${10 + n}`),
    backendType: 'vxlan',
    backendData: { VNI: 1, VtepMAC: `0a:00:00:00:00:0${n}` },
    ...(mac6 ? { backendV6Data: { VNI: 1, VtepMAC: mac6 } } : {}),
  },
  expiration: null,
});

async function setupDual() {
  const k = new FakeKernel();
  const eth0 = k.addLink({ name: 'eth0', mtu: 1500 });
  const log = new MemoryLogger();
  const b = new VxlanBackend(
    {
      config: parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}'),
      extIface: { name: 'eth0', index: eth0.index, mtu: 1500, ifaceAddr: parseIPv4('192.0.2.11'), publicIP: parseIPv4('192.0.2.11'), ifaceAddr6: parseIPv6('2001:db8::11'), publicIPv6: parseIPv6('2001:db8::11') },
      log,
    },
    { kernel: k },
  );
  const attrs = await b.prepare();
  const { mtu } = await b.activate({ ...peer6(1), attrs: { ...peer6(1).attrs, ...attrs } });
  const dev = (await k.getLinkByName('flannel.1'))!;
  const dev6 = (await k.getLinkByName('flannel-v6.1'))!;
  return { k, b, log, mtu, attrs, eth0, dev, dev6 };
}

test('dual-stack: flannel-v6.1 next to flannel.1 (same VNI, local = PublicIPv6, own MAC, /128 address); BackendV6Data published; one MTU that fits both families', async () => {
  const { attrs, mtu, dev, dev6, k, b } = await setupDual();
  assert.equal(dev6.kind, 'vxlan');
  assert.equal(dev6.vxlan!.vni, 1);
  assert.equal(dev6.vxlan!.local, '2001:db8::11');
  assert.equal(dev6.vxlan!.linkIndex, dev.vxlan!.linkIndex);
  assert.equal(dev6.vxlan!.learning, false);
  assert.notEqual(dev6.mac, dev.mac, 'two VTEPs, two MACs');
  assert.deepEqual(attrs, { backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: dev.mac }, backendV6Data: { VNI: 1, VtepMAC: dev6.mac } });
  assert.equal(dev.mtu, 1450, 'IPv4 device: underlay - 50');
  assert.equal(dev6.mtu, 1430, 'IPv6 device: underlay - 70');
  assert.equal(mtu, 1430, 'subnet.env: the smaller, so pods fit both tunnels');
  assert.deepEqual((await k.listAddrs(dev6.index, { family: 6 })).map((a) => a.cidr), ['fd00:10:244:1::/128']);
  assert.deepEqual((await k.listAddrs(dev.index)).map((a) => a.cidr), ['10.244.1.0/32']);
  assert.equal((await k.getLinkByIndex(dev6.index))!.up, true);
  await b.close();
});

test('dual-stack reconcile: per peer a permanent v6 neighbour, a self FDB entry to its PublicIPv6 and an onlink route on flannel-v6.1; v4-only peers get v4 entries only; a repeat makes zero changes', async () => {
  const { k, b, log, dev, dev6 } = await setupDual();
  const v4only = peer(3);
  const noV6Data = peer6(4, null);
  assert.deepEqual(await b.reconcile([peer6(2), v4only, noV6Data]), []);
  const on = (i: number) => ({
    neigh: k.neighs.filter((n) => n.ifindex === i).map((n) => [n.ip, n.mac, n.permanent]).sort(),
    fdb: k.fdb.filter((f) => f.ifindex === i).map((f) => [f.mac, f.dst, f.self, f.permanent]).sort(),
    routes: k.routes.filter((r) => r.oif === i).map((r) => [r.dst, r.gateway, r.onlink]).sort(),
  });
  assert.deepEqual(on(dev6.index), {
    neigh: [['fd00:10:244:2::', '0a:00:00:00:06:02', true]],
    fdb: [['0a:00:00:00:06:02', '2001:db8::12', true, true]],
    routes: [['fd00:10:244:2::/64', 'fd00:10:244:2::', true]],
  });
  // every peer keeps its IPv4 entries, the one without BackendV6Data included
  assert.deepEqual(on(dev.index).routes.map((r) => r[0]), ['10.244.2.0/24', '10.244.3.0/24', '10.244.4.0/24']);
  assert.ok(log.lines.some((l) => l.level === 'warn' && l.msg === 'ignoring lease 10.244.4.0-24&fd00:10:244:4::-64: BackendV6Data.VtepMAC undefined is not a MAC address; no IPv6 entries'));
  const m = k.mutations;
  assert.deepEqual(await b.reconcile([peer6(2), v4only, noV6Data]), []);
  assert.equal(k.mutations, m, 'converged: no changes');
  // a new dual-stack peer as one event: a targeted patch (3 + 3 requests), and its departure removes both halves
  const before = k.mutations;
  assert.deepEqual(await b.reconcile([peer6(2), v4only, noV6Data, peer6(5)], [{ type: 'added', lease: peer6(5) }]), []);
  assert.equal(k.mutations - before, 6);
  assert.equal(b.patches, 1);
  assert.ok(on(dev6.index).routes.some((r) => r[0] === 'fd00:10:244:5::/64' && r[1] === 'fd00:10:244:5::'));
  await b.reconcile([peer6(2), v4only, noV6Data], [{ type: 'removed', lease: peer6(5) }]);
  assert.deepEqual(on(dev6.index).routes.map((r) => r[0]), ['fd00:10:244:2::/64']);
  assert.deepEqual(on(dev6.index).neigh.map((n) => n[0]), ['fd00:10:244:2::']);
  // a peer gone from the desired set on a full run: its v6 entries go too
  await b.reconcile([v4only]);
  assert.deepEqual(on(dev6.index), { neigh: [], fdb: [], routes: [] });
  await b.close();
});

test('dual-stack: flannel-v6.1 deleted by someone is recreated with the same MAC and its entries restored', async () => {
  const { k, b, dev6 } = await setupDual();
  await b.reconcile([peer6(2)]);
  await k.deleteLink(dev6.index);
  await b.reconcile([peer6(2)]);
  const again = (await k.getLinkByName('flannel-v6.1'))!;
  assert.equal(again.mac, dev6.mac);
  assert.deepEqual((await k.listAddrs(again.index, { family: 6 })).map((a) => a.cidr), ['fd00:10:244:1::/128']);
  assert.deepEqual(k.routes.filter((r) => r.oif === again.index).map((r) => r.dst), ['fd00:10:244:2::/64']);
  await b.close();
});

test('ownership: an operator\'s FDB entries and foreign routes on flannel.1 survive; real flannel\'s proto-boot routes are adopted', async () => {
  const { k, b } = await setup();
  const dev = (await k.getLinkByName('flannel.1'))!;
  await k.replaceRoute({ dst: '10.244.2.0/24', gw: '10.244.2.0', oif: dev.index, onlink: true, protocol: C.RTPROT_BOOT }); // old flannel, wanted
  await k.replaceRoute({ dst: '10.244.9.0/24', gw: '10.244.9.0', oif: dev.index, onlink: true, protocol: C.RTPROT_BOOT }); // old flannel, stale
  await k.replaceRoute({ dst: '10.244.200.0/24', gw: '10.244.200.0', oif: dev.index, onlink: true, protocol: C.RTPROT_STATIC });
  await k.appendFdb({ ifindex: dev.index, mac: '00:00:00:00:00:00', dst: '192.0.2.77' });
  await k.replaceFdb({ ifindex: dev.index, mac: '02:aa:bb:cc:dd:ee', dst: '192.0.2.78' });
  await k.replaceNeigh({ ifindex: dev.index, ip: '172.31.5.9', mac: '02:aa:bb:cc:dd:ef' });
  assert.deepEqual(await b.reconcile([peer(2), peer(3)]), []);
  assert.deepEqual(
    k.routes.map((r) => `${r.dst} ${r.protocol}`).sort(),
    ['10.244.2.0/24 222', '10.244.200.0/24 4', '10.244.3.0/24 222'],
  );
  assert.deepEqual(k.fdb.map((f) => `${f.mac} ${f.dst}`).sort(), ['00:00:00:00:00:00 192.0.2.77', '02:aa:bb:cc:dd:ee 192.0.2.78', '0a:00:00:00:00:02 192.0.2.12', '0a:00:00:00:00:03 192.0.2.13']);
  assert.ok(k.neighs.some((n) => n.ip === '172.31.5.9'));
  // a departed peer's FDB entry is ours even after its neighbour vanished (we wrote it in this run)
  k.neighs = k.neighs.filter((n) => n.ip !== '10.244.3.0');
  assert.deepEqual(await b.reconcile([peer(2)]), []);
  assert.deepEqual(k.fdb.map((f) => `${f.mac} ${f.dst}`).sort(), ['00:00:00:00:00:00 192.0.2.77', '02:aa:bb:cc:dd:ee 192.0.2.78', '0a:00:00:00:00:02 192.0.2.12']);
  const m = k.mutations;
  await b.reconcile([peer(2)]);
  assert.equal(k.mutations, m);
});

// ------------------------------------------------------------ patches at scale (issue 11)

test('a patch of many peers goes in pipelined steps; a peer whose L2 entry fails gets no route, in any step, and the rest all do', async () => {
  const { k, b } = await setup('{"Type":"vxlan"}');
  await b.reconcile([peer(2)]);
  // 600 peers: more than two steps of the add pipeline
  const many = Array.from({ length: 600 }, (_, i): Lease => ({
    subnet: parseIPv4Net(`10.244.${10 + (i >> 8)}.${i & 255}/32`),
    subnet6: null,
    attrs: { publicIP: parseIPv4(`198.18.${i >> 8}.${(i & 255) + 0}`), publicIPv6: null, backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: `0a:00:00:01:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` } },
    expiration: null,
  }));
  const bad = new Set(['198.18.0.7', '198.18.1.44', '198.18.2.80']); // one in each step
  k.failWhen = (op) => (op.op === 'replaceFdb' && bad.has(op.fdb.dst) ? 105 : null);
  let batches = 0;
  const orig = k.applyBatch.bind(k);
  k.applyBatch = async (ops) => (batches++, orig(ops));
  const errs = await b.reconcile([peer(2), ...many], many.map((lease) => ({ type: 'added' as const, lease })));
  assert.equal(errs.length, 3);
  assert.ok(batches >= 6, `${batches} batches: L2 and routes per step`);
  const routes = new Set(k.routes.map((r) => r.dst));
  for (const [i, l] of many.entries()) {
    const dst = `10.244.${10 + (i >> 8)}.${i & 255}/32`;
    assert.equal(routes.has(dst), !bad.has(formatIPv4(l.attrs.publicIP)), dst);
  }
  assert.equal(b.patches, 1);
  // the periodic check puts the missing routes in once the kernel takes the FDB entries
  k.failWhen = null;
  assert.deepEqual(await b.reconcile([peer(2), ...many]), []);
  assert.equal(k.routes.length, 601);
});

test('damage: a deleted entry counts while a peer wants it, and stops counting once the peer left through a patch', async () => {
  const { k, b } = await setup();
  await b.reconcile([peer(2)]);
  await b.reconcile([peer(2), peer(3)], [{ type: 'added', lease: peer(3) }]);
  const dev = (await k.getLinkByName('flannel.1'))!.index;
  const route = (dst: string): NetlinkEvent => ({ kind: 'route', action: 'del', pid: 0, route: { family: 2, table: 254, dst, dstLen: 24, gateway: dst.split('/')[0], oif: dev, protocol: 222, scope: 0, type: 1, priority: 0 } }) as unknown as NetlinkEvent;
  const neigh = (ip: string): NetlinkEvent => ({ kind: 'neigh', action: 'del', pid: 0, neigh: { family: 2, ifindex: dev, ip, mac: '0a:00:00:00:00:03', state: 128, flags: 0, permanent: true } }) as unknown as NetlinkEvent;
  const fdb = (mac: string, dst: string): NetlinkEvent => ({ kind: 'fdb', action: 'del', pid: 0, fdb: { family: 7, ifindex: dev, mac, dst, state: 128, flags: 2, self: true, master: false, permanent: true } }) as unknown as NetlinkEvent;
  assert.equal(b.damage(route('10.244.3.0/24')), 'route deleted');
  assert.equal(b.damage(neigh('10.244.3.0')), 'neigh deleted');
  assert.equal(b.damage(fdb('0a:00:00:00:00:03', '192.0.2.13')), 'fdb deleted');
  // a MAC change through a patch: the old FDB entry is no longer wanted, the new one is
  const p3 = peer(3, '0a:00:00:00:00:33');
  await b.reconcile([peer(2), p3], [{ type: 'added', lease: p3 }]);
  assert.equal(b.damage(fdb('0a:00:00:00:00:03', '192.0.2.13')), null);
  assert.equal(b.damage(fdb('0a:00:00:00:00:33', '192.0.2.13')), 'fdb deleted');
  // peer 3 leaves: the deletions of its entries (ours) are not damage
  await b.reconcile([peer(2)], [{ type: 'removed', lease: p3 }]);
  assert.equal(b.damage(route('10.244.3.0/24')), null);
  assert.equal(b.damage(neigh('10.244.3.0')), null);
  assert.equal(b.damage(fdb('0a:00:00:00:00:33', '192.0.2.13')), null);
  assert.equal(b.damage(route('10.244.2.0/24')), 'route deleted');
});

test('a patch whose events do not add up to the peers handed in falls back to a full reconcile', async () => {
  const { k, b } = await setup();
  await b.reconcile([peer(2)]);
  let dumps = 0;
  const orig = k.listNeighs.bind(k);
  k.listNeighs = async (...a) => (dumps++, orig(...a));
  // peer 4 is in the list but no event says so
  await b.reconcile([peer(2), peer(3), peer(4)], [{ type: 'added', lease: peer(3) }]);
  assert.equal(dumps, 1);
  assert.deepEqual(k.routes.map((r) => r.dst).sort(), ['10.244.2.0/24', '10.244.3.0/24', '10.244.4.0/24']);
});

test('a patch whose netlink transport fails mid-way throws once (nothing left unhandled), and the next run is a full one', async () => {
  const { k, b } = await setup();
  await b.reconcile([peer(2)]);
  const many = Array.from({ length: 700 }, (_, i): Lease => ({
    subnet: parseIPv4Net(`10.244.${10 + (i >> 8)}.${i & 255}/32`),
    subnet6: null,
    attrs: { publicIP: parseIPv4(`198.18.${i >> 8}.${i & 255}`), publicIPv6: null, backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: `0a:00:00:02:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` } },
    expiration: null,
  }));
  const orig = k.applyBatch.bind(k);
  let calls = 0;
  // the second batch fails while others are in flight behind it
  k.applyBatch = async (ops) => {
    calls++;
    if (calls === 2) throw new Error('netlink worker exited (code 1)');
    await new Promise((r) => setTimeout(r, 5));
    return orig(ops);
  };
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  try {
    await assert.rejects(b.reconcile([peer(2), ...many], many.map((lease) => ({ type: 'added' as const, lease }))), /netlink worker exited/);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
  k.applyBatch = orig;
  let dumps = 0;
  const list = k.listRoutes.bind(k);
  k.listRoutes = async (...a) => (dumps++, list(...a));
  await b.reconcile([peer(2), peer(3), ...many], [{ type: 'added', lease: peer(3) }]);
  assert.ok(dumps > 0, 'a full run after the failed patch');
  assert.equal(k.routes.length, 702);
});
