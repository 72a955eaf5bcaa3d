import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIPv4, formatIPv6 } from '../lease/ip.js';
import { FakeKernel } from '../testing/fake-kernel.js';
import type { Addr, Route } from '../kernel/types.js';
import { defaultRouteIndex, IfaceError, kernelHostView, selectExternalInterface, type HostView } from './iface.js';

const host: HostView = {
  interfaces: () => [
    { name: 'lo', index: 1, mtu: 65536, ipv4: ['127.0.0.1'], ipv6: [] },
    { name: 'eth0', index: 2, mtu: 1500, ipv4: ['10.0.2.15'], ipv6: [] },
    { name: 'eth1', index: 3, mtu: 9000, ipv4: ['192.168.56.11', '169.254.1.1'], ipv6: [] },
  ],
  defaultRouteInterface: () => 'eth0',
};

test('default route interface when nothing is given', async () => {
  const e = await selectExternalInterface(host, { iface: [], ifaceRegex: [] });
  assert.equal(e.name, 'eth0');
  assert.equal(formatIPv4(e.publicIP), '10.0.2.15');
  assert.equal(e.mtu, 1500);
});

test('--iface by name or IP, first match wins; --iface-regex on IPs then names', async () => {
  assert.equal((await selectExternalInterface(host, { iface: ['nope', 'eth1'], ifaceRegex: [] })).name, 'eth1');
  assert.equal(formatIPv4((await selectExternalInterface(host, { iface: ['192.168.56.11'], ifaceRegex: [] })).ifaceAddr), '192.168.56.11');
  assert.equal((await selectExternalInterface(host, { iface: [], ifaceRegex: ['^192\\.168\\.'] })).name, 'eth1');
  assert.equal((await selectExternalInterface(host, { iface: [], ifaceRegex: ['^eth1$'] })).name, 'eth1');
  await assert.rejects(selectExternalInterface(host, { iface: ['wlan0'], ifaceRegex: [] }), IfaceError);
  await assert.rejects(selectExternalInterface(host, { iface: [], ifaceRegex: ['('] }), /not a valid regular expression/);
});

test('--public-ip picks its interface, or overrides the advertised address behind NAT', async () => {
  assert.equal((await selectExternalInterface(host, { iface: [], ifaceRegex: [], publicIP: '192.168.56.11' })).name, 'eth1');
  const nat = await selectExternalInterface(host, { iface: [], ifaceRegex: [], publicIP: '203.0.113.7' });
  assert.equal(nat.name, 'eth0');
  assert.equal(formatIPv4(nat.publicIP), '203.0.113.7');
  assert.equal(formatIPv4(nat.ifaceAddr), '10.0.2.15');
});

test('interfaces that are down are never chosen', async () => {
  const h: HostView = {
    interfaces: () => [
      { name: 'eth0', index: 2, mtu: 1500, up: true, ipv4: ['10.0.2.15'], ipv6: [] },
      { name: 'eth1', index: 3, mtu: 1500, up: false, ipv4: ['192.168.56.11'], ipv6: [] },
    ],
    defaultRouteInterface: () => 'eth0',
  };
  await assert.rejects(selectExternalInterface(h, { iface: ['eth1'], ifaceRegex: [] }), IfaceError);
  assert.equal((await selectExternalInterface(h, { iface: ['eth1', 'eth0'], ifaceRegex: [] })).name, 'eth0');
});

// ------------------------------------------------ kernelHostView on FakeKernel

function addr(index: number, ip: string, prefixLen: number, extra: Partial<Addr> = {}): Addr {
  const family = ip.includes(':') ? 10 : 2;
  return { family, index, prefixLen, flags: 0x80, scope: 0, address: ip, cidr: `${ip}/${prefixLen}`, ...(family === 2 ? { local: ip } : {}), ...extra };
}

function route(dst: string, oif: number | undefined, extra: Partial<Route> = {}): Route {
  const r: Route = { family: 2, dst, dstLen: Number(dst.split('/')[1]), table: 254, protocol: 3, scope: 0, type: 1, flags: 0, onlink: false, ...extra };
  if (oif !== undefined) r.oif = oif;
  return r;
}

function fakeHost(): { k: FakeKernel; eth0: number; eth1: number; lo: number } {
  const k = new FakeKernel();
  const lo = k.addLink({ name: 'lo', mtu: 65536 }).index;
  const eth0 = k.addLink({ name: 'eth0', mtu: 1500 }).index;
  const eth1 = k.addLink({ name: 'eth1', mtu: 9000 }).index;
  k.addLink({ name: 'down0', mtu: 1500, up: false });
  k.addrs.push(
    addr(lo, '127.0.0.1', 8, { scope: 254 }),
    addr(lo, '::1', 128, { scope: 254 }),
    addr(eth0, 'fe80::1', 64, { scope: 253 }),
    addr(eth0, '10.0.2.15', 24),
    addr(eth0, '2001:db8::15', 64, { flags: 0x01 }), // temporary
    addr(eth0, '2001:db8::1', 64, { flags: 0x80 }), // permanent
    addr(eth0, '2001:db8::dead', 64, { flags: 0x80 | 0x20 }), // deprecated
    addr(eth1, '169.254.3.3', 16, { scope: 253 }),
    addr(eth1, '192.168.56.11', 24),
  );
  k.routes.push(
    route('10.0.2.0/24', eth0, { scope: 253, protocol: 2 }),
    route('0.0.0.0/0', eth1, { priority: 200 }),
    route('0.0.0.0/0', eth0, { priority: 100 }),
    route('0.0.0.0/0', eth1, { table: 100 }),
  );
  return { k, eth0, eth1, lo };
}

describe('kernelHostView (interface discovery over the kernel port)', () => {
  test('links with their index, MTU, up flag and addresses; link-local and deprecated IPv6 left out', async () => {
    const { k, eth0, eth1 } = fakeHost();
    const ifs = await kernelHostView(k).interfaces();
    assert.deepEqual(
      ifs.map((i) => i.name),
      ['lo', 'eth0', 'eth1', 'down0'],
    );
    const e0 = ifs.find((i) => i.name === 'eth0')!;
    assert.deepEqual(e0, { name: 'eth0', index: eth0, mtu: 1500, up: true, ipv4: ['10.0.2.15'], ipv6: ['2001:db8::1', '2001:db8::15'] });
    const e1 = ifs.find((i) => i.name === 'eth1')!;
    assert.equal(e1.index, eth1);
    assert.deepEqual(e1.ipv4, ['192.168.56.11', '169.254.3.3'], 'universe scope first');
    assert.deepEqual(ifs.find((i) => i.name === 'lo')!.ipv6, ['::1']);
    assert.equal(ifs.find((i) => i.name === 'down0')!.up, false);
  });

  test('the default route interface is the lowest-metric IPv4 default in the main table', async () => {
    const { k } = fakeHost();
    assert.equal(await kernelHostView(k).defaultRouteInterface(), 'eth0');
    const e = await selectExternalInterface(kernelHostView(k), { iface: [], ifaceRegex: [] });
    assert.equal(e.name, 'eth0');
    assert.equal(formatIPv4(e.ifaceAddr), '10.0.2.15');
    assert.equal(e.mtu, 1500);
  });

  test('no default route: null, and selection says so', async () => {
    const { k } = fakeHost();
    k.routes = k.routes.filter((r) => r.dstLen !== 0 || r.table !== 254);
    assert.equal(await kernelHostView(k).defaultRouteInterface(), null);
    await assert.rejects(selectExternalInterface(kernelHostView(k), { iface: [], ifaceRegex: [] }), /no default route found/);
  });

  test('defaultRouteIndex ignores other tables, non-unicast and multipath (no oif) defaults', () => {
    assert.equal(defaultRouteIndex([route('0.0.0.0/0', 5, { table: 100 })]), null);
    assert.equal(defaultRouteIndex([route('0.0.0.0/0', 5, { type: 6 })]), null);
    assert.equal(defaultRouteIndex([route('0.0.0.0/0', undefined)]), null);
    assert.equal(defaultRouteIndex([route('0.0.0.0/0', 7, { priority: 5 }), route('0.0.0.0/0', 6, { priority: 1 })]), 6);
  });

  test('listAddrs stays IPv4 by default; family 6 and all are opt-in', async () => {
    const { k, eth0 } = fakeHost();
    assert.deepEqual(
      (await k.listAddrs(eth0)).map((a) => a.cidr),
      ['10.0.2.15/24'],
    );
    assert.equal((await k.listAddrs(eth0, { family: 6 })).length, 4);
    assert.equal((await k.listAddrs(eth0, { family: 'all' })).length, 5);
  });
});

test('IPv6 (EnableIPv6): the chosen interface\'s first global address, never link-local; --public-ipv6 overrides and can pick the interface; bad input names the flag', async () => {
  const h6: HostView = {
    interfaces: () => [
      { name: 'lo', index: 1, mtu: 65536, ipv4: ['127.0.0.1'], ipv6: ['::1'] },
      { name: 'eth0', index: 2, mtu: 1500, ipv4: ['10.0.2.15'], ipv6: ['fe80::5054:ff:fe12:3456%eth0', '2001:db8::15'] },
      { name: 'eth1', index: 3, mtu: 9000, ipv4: ['192.168.56.11'], ipv6: ['fe80::1%eth1', 'fd00:56::11'] },
    ],
    defaultRouteInterface: () => 'eth0',
  };
  const e = await selectExternalInterface(h6, { iface: [], ifaceRegex: [], ipv6: true });
  assert.equal(formatIPv6(e.publicIPv6!), '2001:db8::15');
  assert.equal(formatIPv6(e.ifaceAddr6!), '2001:db8::15');
  // without EnableIPv6 nothing about v6 is reported
  assert.equal((await selectExternalInterface(h6, { iface: [], ifaceRegex: [] })).publicIPv6, undefined);
  // --iface with an IPv6 address picks the interface owning it, and that address
  const byAddr = await selectExternalInterface(h6, { iface: ['fd00:56::11'], ifaceRegex: [], ipv6: true });
  assert.equal(byAddr.name, 'eth1');
  assert.equal(formatIPv6(byAddr.ifaceAddr6!), 'fd00:56::11');
  // --public-ipv6 alone: the interface owning it (flannel's order: --public-ip, then --public-ipv6, then the default route)
  const byPub = await selectExternalInterface(h6, { iface: [], ifaceRegex: [], publicIPv6: 'fd00:56::11', ipv6: true });
  assert.equal(byPub.name, 'eth1');
  // behind NAT: a --public-ipv6 nobody owns is published as given
  const nat = await selectExternalInterface(h6, { iface: [], ifaceRegex: [], publicIPv6: '2001:db8:ffff::1', ipv6: true });
  assert.equal(nat.name, 'eth0');
  assert.equal(formatIPv6(nat.publicIPv6!), '2001:db8:ffff::1');
  assert.equal(formatIPv6(nat.ifaceAddr6!), '2001:db8::15');
  await assert.rejects(selectExternalInterface(h6, { iface: [], ifaceRegex: [], publicIPv6: 'fe80::1', ipv6: true }), (err: unknown) => err instanceof IfaceError && /^--public-ipv6: "fe80::1" is not a global IPv6 address$/.test(err.message));
  await assert.rejects(selectExternalInterface(h6, { iface: [], ifaceRegex: [], publicIPv6: '10.0.0.1', ipv6: true }), /^IfaceError: --public-ipv6: "10.0.0.1"/);
  const onlyLinkLocal: HostView = { interfaces: () => [{ name: 'eth0', index: 2, mtu: 1500, ipv4: ['10.0.2.15'], ipv6: ['fe80::1'] }], defaultRouteInterface: () => 'eth0' };
  await assert.rejects(selectExternalInterface(onlyLinkLocal, { iface: [], ifaceRegex: [], ipv6: true }), /interface eth0 has no global IPv6 address/);
});
