import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIPv4, parseIPv4Net, parseIPv6, parseIPv6Net } from '../../lease/ip.js';
import type { Lease } from '../../lease/lease.js';
import { MemoryLogger } from '../../testing/memory-logger.js';
import { parseNetworkConfig } from '../../subnet/config.js';
import { FakeKernel } from '../../testing/fake-kernel.js';
import { HostGwBackend } from './hostgw.js';
import * as C from '../../netlink/constants.js';

const peer = (n: number, ip = `192.0.2.${10 + n}`, type = 'host-gw'): Lease => ({
  subnet: parseIPv4Net(`10.244.${n}.0/24`),
  subnet6: null,
  attrs: { publicIP: parseIPv4(ip), publicIPv6: null, backendType: type },
  expiration: null,
});

async function setup(publicIP = '192.0.2.11') {
  const k = new FakeKernel();
  const eth0 = k.addLink({ name: 'eth0', mtu: 1500 });
  k.addrs.push({ family: 2, index: eth0.index, prefixLen: 24, flags: 0, scope: 0, local: '192.0.2.11', address: '192.0.2.11', cidr: '192.0.2.11/24' });
  const stale = await k.createVxlan({ name: 'flannel.1', vni: 1, local: '192.0.2.11', linkIndex: eth0.index });
  const log = new MemoryLogger();
  const b = new HostGwBackend(
    { config: parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}'), extIface: { name: 'eth0', index: eth0.index, mtu: 1500, ifaceAddr: parseIPv4('192.0.2.11'), publicIP: parseIPv4(publicIP) }, log },
    { kernel: k },
  );
  return { k, b, log, eth0, stale };
}

test('host-gw publishes BackendType host-gw, MTU = interface MTU, and removes a stale flannel.1', async () => {
  const { k, b, stale } = await setup();
  assert.deepEqual(await b.prepare(), { backendType: 'host-gw' });
  assert.deepEqual(await b.activate(), { mtu: 1500 });
  assert.equal(k.links.has(stale.index), false);
});

test('host-gw refuses to run behind NAT (public IP differs from the interface address)', async () => {
  const { b } = await setup('203.0.113.9');
  await assert.rejects(b.prepare(), /probably you're on a NAT/);
});

test('routes via peer public IPs; repeat is a no-op; removed peers lose their route; off-L2 peers are refused', async () => {
  const { k, b, eth0, log } = await setup();
  await b.prepare();
  await b.activate();
  const errs = await b.reconcile([peer(2), peer(3), peer(4, '198.51.100.4'), peer(5, '192.0.2.15', 'vxlan')]);
  assert.equal(errs.length, 1);
  assert.match(errs[0]!.message, /refusing lease 10\.244\.4\.0-24: its public IP 198\.51\.100\.4 is not on eth0's L2 subnet/);
  assert.match(log.lines.map((l) => l.msg).join('\n'), /10\.244\.5\.0-24: backend type "vxlan" is not host-gw/);
  assert.deepEqual(k.routes.map((r) => [r.dst, r.gateway, r.oif]).sort(), [['10.244.2.0/24', '192.0.2.12', eth0.index], ['10.244.3.0/24', '192.0.2.13', eth0.index]]);
  const m = k.mutations;
  await b.reconcile([peer(2), peer(3)]);
  assert.equal(k.mutations, m, 'no changes on repeat');
  await b.reconcile([peer(3)]);
  assert.deepEqual(k.routes.map((r) => r.dst), ['10.244.3.0/24']);
});

test('dual-stack host-gw: a route to each peer\'s v6 subnet via its PublicIPv6 on eth0; v4-only peers get v4 only; off-L2 v6 peers refused; repeat is a no-op', async () => {
  const k = new FakeKernel();
  const eth0 = k.addLink({ name: 'eth0', mtu: 1500 });
  await k.addAddr(eth0.index, '192.0.2.11/24');
  await k.addAddr(eth0.index, '2001:db8::11/64');
  await k.addAddr(eth0.index, 'fe80::11/64');
  const ext = { name: 'eth0', index: eth0.index, mtu: 1500, ifaceAddr: parseIPv4('192.0.2.11'), publicIP: parseIPv4('192.0.2.11'), ifaceAddr6: parseIPv6('2001:db8::11'), publicIPv6: parseIPv6('2001:db8::11') };
  const config = parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"host-gw"}}');
  const b = new HostGwBackend({ config, extIface: ext, log: new MemoryLogger() }, { kernel: k });
  assert.deepEqual(await b.prepare(), { backendType: 'host-gw' });
  await b.activate();
  const dual = (n: number, ip6 = `2001:db8::${10 + n}`): Lease => ({ ...peer(n), subnet6: parseIPv6Net(`fd00:10:244:${n}::/64`), attrs: { ...peer(n).attrs, publicIPv6: parseIPv6(ip6) } });
  const errs = await b.reconcile([dual(2), peer(3), dual(4, '2001:db8:1::14')]);
  assert.equal(errs.length, 1);
  assert.match(errs[0]!.message, /^refusing the IPv6 half of lease 10\.244\.4\.0-24&fd00:10:244:4::-64: its public IPv6 2001:db8:1::14 is not on eth0's L2 subnet/);
  assert.deepEqual(k.routes.filter((r) => r.family === 10).map((r) => [r.dst, r.gateway, r.oif]), [['fd00:10:244:2::/64', '2001:db8::12', eth0.index]]);
  assert.deepEqual(k.routes.filter((r) => r.family === 2).map((r) => r.dst).sort(), ['10.244.2.0/24', '10.244.3.0/24', '10.244.4.0/24']);
  const m = k.mutations;
  await b.reconcile([dual(2), peer(3), dual(4, '2001:db8:1::14')]);
  assert.equal(k.mutations, m, 'no changes on repeat');
  await b.reconcile([peer(3)]);
  assert.deepEqual(k.routes.map((r) => r.dst), ['10.244.3.0/24']);
  // NAT for IPv6 is refused like NAT for IPv4
  const nat = new HostGwBackend({ config, extIface: { ...ext, publicIPv6: parseIPv6('2001:db8:ffff::1') }, log: new MemoryLogger() }, { kernel: k });
  await assert.rejects(nat.prepare(), /^BackendError: host-gw: the public IPv6 2001:db8:ffff::1 is not eth0's IPv6 address 2001:db8::11/);
});

test('ownership: our routes carry RTPROT_FLANNEL; a proto-boot route matching a lease is adopted, any other unmarked route is left alone', async () => {
  const { k, b, eth0 } = await setup();
  await b.prepare();
  await b.activate();
  // real flannel's route for peer 2 (proto boot), and an operator's gateway route into the Network
  await k.replaceRoute({ dst: '10.244.2.0/24', gw: '192.0.2.12', oif: eth0.index, protocol: C.RTPROT_BOOT });
  await k.replaceRoute({ dst: '10.244.77.0/24', gw: '192.0.2.77', oif: eth0.index, protocol: C.RTPROT_BOOT });
  await k.replaceRoute({ dst: '10.244.78.0/24', gw: '192.0.2.78', oif: eth0.index, protocol: C.RTPROT_STATIC });
  assert.deepEqual(await b.reconcile([peer(2), peer(3)]), []);
  const show = () => k.routes.map((r) => `${r.dst} ${r.gateway} ${r.protocol}`).sort();
  assert.deepEqual(show(), ['10.244.2.0/24 192.0.2.12 222', '10.244.3.0/24 192.0.2.13 222', '10.244.77.0/24 192.0.2.77 3', '10.244.78.0/24 192.0.2.78 4']);
  // peer 2 leaves: its (now ours) route goes, the foreign ones stay
  assert.deepEqual(await b.reconcile([peer(3)]), []);
  assert.deepEqual(show(), ['10.244.3.0/24 192.0.2.13 222', '10.244.77.0/24 192.0.2.77 3', '10.244.78.0/24 192.0.2.78 4']);
  const m = k.mutations;
  await b.reconcile([peer(3)]);
  assert.equal(k.mutations, m, 'foreign routes are not fought over');
});
