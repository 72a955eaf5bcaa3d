import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIPv4, parseIPv4Net } from '../../lease/ip.js';
import { decodeLeaseAttrs, encodeLeaseAttrs, type Lease } from '../../lease/lease.js';
import { MemoryLogger } from '../../testing/memory-logger.js';
import { parseNetworkConfig } from '../../subnet/config.js';
import { FakeKernel } from '../../testing/fake-kernel.js';
import { BackendError } from '../backend.js';
import * as C from '../../netlink/constants.js';
import { VxlanBackend } from './vxlan.js';
import { parseEdgeFlags, publishedEdgeNetworks, selectEdgeRoutes, validateEdge, type EdgeOptions } from './edge.js';
import { desiredEntries } from './desired.js';
import { parseFlanneldFlags } from '../../cmd/flanneld/flags.js';
import type { NetlinkEvent } from '../../netlink/subscriber.js';
import { edgeForwardRules, edgeMasqRules, expectedListing } from '../../kernel/iptables.js';
import { annotationNames } from '../../store/kube/annotations.js';
import { desiredAnnotations, nodeToLease } from '../../store/kube/node-lease.js';

const N = parseIPv4Net('10.244.0.0/16');
const LAN = '192.168.50.0/24';

const peer = (n: number, edge?: unknown): Lease => ({
  subnet: parseIPv4Net(`10.244.${n}.0/24`),
  subnet6: null,
  attrs: {
    publicIP: parseIPv4(`192.0.2.${10 + n}`),
    publicIPv6: null,
    backendType: 'vxlan',
    backendData: { VNI: 1, VtepMAC: `0a:00:00:00:00:0${n}` },
    ...(edge !== undefined ? { edgeNetworks: edge } : {}),
  },
  expiration: null,
});

test('flags: --edge-network/--edge-iface repeatable and comma lists; errors name the flag', () => {
  const r = parseFlanneldFlags(['--edge-network', '192.168.50.0/24,192.168.60.0/24', '--edge-network=10.9.0.0/16', '--edge-iface', 'br0', '--edge-masq'], {});
  assert.equal(r.kind, 'flags');
  const f = (r as Extract<typeof r, { kind: 'flags' }>).flags;
  assert.deepEqual(f.edgeNetwork, ['192.168.50.0/24,192.168.60.0/24', '10.9.0.0/16']);
  const o = parseEdgeFlags(f.edgeNetwork, f.edgeIface, f.edgeMasq)!;
  assert.deepEqual(
    o.segments.map((s) => [s.net, s.iface]),
    [
      [parseIPv4Net('192.168.50.0/24'), 'br0'],
      [parseIPv4Net('192.168.60.0/24'), 'br0'],
      [parseIPv4Net('10.9.0.0/16'), 'br0'],
    ],
  );
  assert.equal(o.masq, true);
  assert.deepEqual(parseEdgeFlags(['192.168.50.0/24', '192.168.60.0/24'], ['br0,br1'], false)!.segments.map((s) => s.iface), ['br0', 'br1']);
  assert.equal(parseEdgeFlags([], [], false), null);
  const bad: Array<[string[], string[], boolean, RegExp]> = [
    [['192.168.50.0/24'], [], false, /^--edge-network: needs --edge-iface/],
    [[], ['br0'], false, /^--edge-iface: needs --edge-network/],
    [[], [], true, /^--edge-masq: needs --edge-network/],
    [['192.168.50.1/24'], ['br0'], false, /^--edge-network: "192\.168\.50\.1\/24" has host bits set \(the network is 192\.168\.50\.0\/24\)/],
    [['192.168.50.0/33'], ['br0'], false, /^--edge-network: invalid IPv4 CIDR/],
    [['lan'], ['br0'], false, /^--edge-network: invalid IPv4 CIDR "lan"/],
    [['0.0.0.0/0'], ['br0'], false, /^--edge-network: 0\.0\.0\.0\/0 is the whole address space/],
    [['192.168.0.0/16', '192.168.50.0/24'], ['br0'], false, /^--edge-network: 192\.168\.50\.0\/24 overlaps 192\.168\.0\.0\/16, also given/],
    [['192.168.50.0/24', '192.168.60.0/24', '192.168.70.0/24'], ['a,b'], false, /^--edge-iface: give one interface, or one per --edge-network \(3\); got 2/],
    [['192.168.50.0/24'], ['a/b'], false, /^--edge-iface: "a\/b" is not an interface name/],
  ];
  assert.deepEqual(parseEdgeFlags([LAN], ['br0'], false, '10.244.3.0/24, 10.244.4.0/24')!.allow, [parseIPv4Net('10.244.3.0/24'), parseIPv4Net('10.244.4.0/24')]);
  assert.equal(parseEdgeFlags([LAN], ['br0'], false)!.allow, null);
  assert.throws(() => parseEdgeFlags([LAN], ['br0'], false, '10.244.3.1/24'), /^BackendError: --edge-allow: "10\.244\.3\.1\/24" has host bits set|--edge-allow: "10\.244\.3\.1\/24" has host bits set/);
  assert.throws(() => parseEdgeFlags([LAN], ['br0'], false, '10.244.3.0/24,'), /--edge-allow: an empty entry in the list/);
  assert.throws(() => parseEdgeFlags([], [], false, '10.244.3.0/24'), /--edge-allow: needs --edge-network/);
  for (const [n, i, m, re] of bad) assert.throws(() => parseEdgeFlags(n, i, m), (e: unknown) => e instanceof BackendError && re.test(e.message), `${n} ${i}`);
});

test('validateEdge: overlap with the flannel Network or the underlay is refused, naming --edge-network', () => {
  const o = (c: string): EdgeOptions => ({ segments: [{ net: parseIPv4Net(c), iface: 'br0' }], masq: false, allow: null });
  validateEdge(o(LAN), N, parseIPv4('192.0.2.11'));
  assert.throws(() => validateEdge(o('10.244.200.0/24'), N, parseIPv4('192.0.2.11')), /^BackendError: --edge-network: 10\.244\.200\.0\/24 overlaps the flannel Network 10\.244\.0\.0\/16$|--edge-network: 10\.244\.200\.0\/24 overlaps the flannel Network 10\.244\.0\.0\/16/);
  assert.throws(() => validateEdge(o('10.0.0.0/8'), N, parseIPv4('192.0.2.11')), /--edge-network: 10\.0\.0\.0\/8 overlaps the flannel Network/);
  assert.throws(() => validateEdge({ ...o(LAN), allow: [parseIPv4Net('10.245.0.0/24')] }, N, parseIPv4('192.0.2.11')), /--edge-allow: 10\.245\.0\.0\/24 is not inside the flannel Network 10\.244\.0\.0\/16/);
  assert.throws(() => validateEdge({ ...o(LAN), allow: [parseIPv4Net('10.0.0.0/8')] }, N, parseIPv4('192.0.2.11')), /--edge-allow: 10\.0\.0\.0\/8 is not inside/);
  assert.throws(() => validateEdge(o('192.0.2.0/24'), N, parseIPv4('192.0.2.11')), /--edge-network: 192\.0\.2\.0\/24 contains this node's public IP 192\.0\.2\.11/);
});

test('lease bytes: EdgeNetworks goes after flannel\'s fields; decoding round-trips and matches keys case-insensitively', () => {
  const a = peer(1, [LAN]).attrs;
  const text = '{"PublicIP":"192.0.2.11","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:01"},"EdgeNetworks":["192.168.50.0/24"]}';
  assert.equal(encodeLeaseAttrs(a), text);
  assert.equal(encodeLeaseAttrs(decodeLeaseAttrs(text)), text);
  assert.deepEqual(decodeLeaseAttrs(text.replace('EdgeNetworks', 'edgenetworks')).edgeNetworks, [LAN]);
  // without the field, the bytes are exactly flannel's
  assert.equal(encodeLeaseAttrs(peer(1).attrs), '{"PublicIP":"192.0.2.11","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:01"}}');
  // a malformed value does not make the lease undecodable: it is checked where it is used
  const odd = decodeLeaseAttrs('{"PublicIP":"192.0.2.11","PublicIPv6":null,"BackendType":"vxlan","EdgeNetworks":"192.168.50.0/24"}');
  assert.deepEqual(publishedEdgeNetworks({ ...peer(1), attrs: odd }).bad, ['EdgeNetworks: expected a list of CIDRs, got "192.168.50.0/24"']);
  assert.deepEqual(publishedEdgeNetworks(peer(1, [LAN, 7, '192.168.60.1/24', '0.0.0.0/0'])), {
    nets: [parseIPv4Net(LAN)],
    bad: ['EdgeNetworks: 7 is not a CIDR string', 'EdgeNetworks: "192.168.60.1/24" has host bits set (the network is 192.168.60.0/24)', 'EdgeNetworks: 0.0.0.0/0 is the whole address space'],
  });
});

test('selection: the lowest subnet among a segment\'s publishers wins; bad segments are skipped with a reason', () => {
  const ctx = { network: N, own: [parseIPv4Net('192.168.70.0/24')], publicIPs: [parseIPv4('192.0.2.11')] };
  const remote = [peer(5, [LAN]), peer(3, [LAN, '10.244.99.0/24']), peer(4), peer(6, ['192.168.70.0/25', '192.0.2.0/24', '192.168.70.0/24'])];
  const { peers } = desiredEntries(remote, null);
  const r = selectEdgeRoutes(remote, peers, ctx);
  assert.deepEqual(r.routes.map((x) => [x.dst, x.via.gw, x.candidates]), [[LAN, '10.244.3.0', ['10.244.3.0-24', '10.244.5.0-24']]]);
  assert.deepEqual(r.skipped, [
    { id: '10.244.3.0-24', reason: 'edge network 10.244.99.0/24 overlaps the flannel Network 10.244.0.0/16' },
    { id: '10.244.6.0-24', reason: 'edge network 192.168.70.0/25 overlaps our own edge network 192.168.70.0/24' },
    { id: '10.244.6.0-24', reason: 'edge network 192.0.2.0/24 contains the public IP 192.0.2.11' },
  ]);
  // failover: the chosen one's lease is gone -> the next lowest
  const after = remote.filter((l) => l.subnet.ip !== parseIPv4('10.244.3.0'));
  assert.deepEqual(selectEdgeRoutes(after, desiredEntries(after, null).peers, ctx).routes.map((x) => [x.dst, x.via.gw]), [[LAN, '10.244.5.0']]);
  // a publisher whose VXLAN entries are left out (bad MAC) cannot carry the segment
  const badMac: Lease = { ...peer(2, [LAN]), attrs: { ...peer(2, [LAN]).attrs, backendData: { VNI: 1, VtepMAC: 'zz' } } };
  const withBad = [badMac, ...remote];
  assert.equal(selectEdgeRoutes(withBad, desiredEntries(withBad, null).peers, ctx).routes[0]!.via.gw, '10.244.3.0');
});

async function backend(edge: EdgeOptions | null = null, withBr0 = true, backendConf = '{"Type":"vxlan"}') {
  const k = new FakeKernel();
  const eth0 = k.addLink({ name: 'eth0', mtu: 1500 });
  k.addrs.push({ family: 2, index: eth0.index, prefixLen: 24, flags: 0, scope: 0, local: '192.0.2.11', address: '192.0.2.11', cidr: '192.0.2.11/24' });
  if (withBr0) {
    const br0 = k.addLink({ name: 'br0', mtu: 1500 });
    k.addrs.push({ family: 2, index: br0.index, prefixLen: 24, flags: 0, scope: 0, local: '192.168.70.1', address: '192.168.70.1', cidr: '192.168.70.1/24' });
  }
  const log = new MemoryLogger();
  const b = new VxlanBackend(
    { config: parseNetworkConfig(`{"Network":"10.244.0.0/16","Backend":${backendConf}}`), extIface: { name: 'eth0', index: eth0.index, mtu: 1500, ifaceAddr: parseIPv4('192.0.2.11'), publicIP: parseIPv4('192.0.2.11') }, log },
    { kernel: k, edge },
  );
  const attrs = await b.prepare();
  const own = { ...peer(1), attrs: { publicIP: parseIPv4('192.0.2.11'), publicIPv6: null, ...attrs } };
  await b.activate(own);
  return { k, b, log, attrs, dev: (await k.getLinkByName('flannel.1'))! };
}

const edgeRoutes = (k: FakeKernel) => k.routes.filter((r) => !r.dst.startsWith('10.244.')).map((r) => `${r.dst} via ${r.gateway} oif ${r.oif}${r.onlink ? ' onlink' : ''} proto ${r.protocol}`);

test('edge node: publishes its segments; a missing interface or one without an address in the segment is refused naming the flag', async () => {
  const o: EdgeOptions = { segments: [{ net: parseIPv4Net('192.168.70.0/24'), iface: 'br0' }], masq: true, allow: null };
  const { attrs } = await backend(o);
  assert.deepEqual(attrs.edgeNetworks, ['192.168.70.0/24']);
  await assert.rejects(backend(o, false), /^BackendError: --edge-iface: no interface "br0" \(for --edge-network 192\.168\.70\.0\/24\)$|--edge-iface: no interface "br0" \(for --edge-network 192\.168\.70\.0\/24\)/);
  await assert.rejects(backend({ segments: [{ net: parseIPv4Net(LAN), iface: 'br0' }], masq: false, allow: null }), /--edge-iface: br0 has no IPv4 address in --edge-network 192\.168\.50\.0\/24/);
  // without --edge-network nothing new is published
  assert.equal((await backend()).attrs.edgeNetworks, undefined);
});

test('every node routes a published segment via the chosen edge VTEP; failover in the same (patch) reconcile; idempotent; removal', async () => {
  const { k, b, dev, log } = await backend();
  const h3 = peer(3, [LAN]);
  const h5 = peer(5, [LAN]);
  assert.deepEqual(await b.reconcile([h5, h3, peer(4)], []), []);
  assert.deepEqual(edgeRoutes(k), [`${LAN} via 10.244.3.0 oif ${dev.index} onlink proto ${C.RTPROT_FLANNEL}`]);
  const m = k.mutations;
  assert.deepEqual(await b.reconcile([h5, h3, peer(4)], []), []);
  assert.equal(k.mutations, m, 'a repeat changes nothing');
  // h3's lease goes away: one lease event -> the targeted patch path, which also switches the segment
  const patches = b.patches;
  assert.deepEqual(await b.reconcile([h5, peer(4)], [{ type: 'removed', lease: h3 }]), []);
  assert.equal(b.patches, patches + 1, 'switched by the patch for the departure');
  assert.deepEqual(edgeRoutes(k), [`${LAN} via 10.244.5.0 oif ${dev.index} onlink proto ${C.RTPROT_FLANNEL}`]);
  assert.ok(log.lines.some((l) => l.msg === `edge network ${LAN}: via 10.244.5.0-24 (was 10.244.3.0-24)`));
  assert.equal(b.edgeVia.get(LAN), '10.244.5.0-24');
  // a full run agrees with the patch
  const m2 = k.mutations;
  await b.reconcile([h5, peer(4)], []);
  assert.equal(k.mutations, m2);
  // the last edge node leaves: the route goes, peers' routes stay
  assert.deepEqual(await b.reconcile([peer(4)], [{ type: 'removed', lease: h5 }]), []);
  assert.deepEqual(edgeRoutes(k), []);
  assert.deepEqual(k.routes.map((r) => r.dst), ['10.244.4.0/24']);
  assert.ok(log.lines.some((l) => l.msg === `edge network ${LAN}: no edge node left (was 10.244.5.0-24); route removed`));
});

test('foreign routes to an edge segment are never touched; a bad segment is warned about once', async () => {
  const { k, b, dev, log } = await backend();
  // an operator's static route (proto static) to another LAN on flannel.1
  k.routes.push({ family: C.AF_INET, dst: '172.16.0.0/24', dstLen: 24, gateway: '10.244.9.0', oif: dev.index, table: C.RT_TABLE_MAIN, protocol: C.RTPROT_STATIC, scope: 0, type: C.RTN_UNICAST, flags: 0, onlink: true });
  const bad = peer(3, ['10.244.0.0/8']);
  await b.reconcile([bad], []);
  await b.reconcile([bad], []);
  assert.deepEqual(edgeRoutes(k), [`172.16.0.0/24 via 10.244.9.0 oif ${dev.index} onlink proto ${C.RTPROT_STATIC}`]);
  assert.equal(log.lines.filter((l) => /ignoring lease 10\.244\.3\.0-24: EdgeNetworks: "10\.244\.0\.0\/8" has host bits set/.test(l.msg)).length, 1);
});

test('iptables: --edge-masq and --edge-allow rule sets, in iptables -S form', () => {
  const segs = [{ net: parseIPv4Net(LAN), iface: 'br-lan' }];
  assert.deepEqual(expectedListing(edgeMasqRules(N, segs)), ['-N FLANNEL-EDGE-MASQ', '-A FLANNEL-EDGE-MASQ -s 10.244.0.0/16 -d 192.168.50.0/24 -o br-lan -m comment --comment "flanneld edge masq" -j MASQUERADE']);
  const fwd = edgeForwardRules(N, segs, [parseIPv4Net('10.244.3.0/24')]);
  assert.equal(fwd.first, true, 'jump inserted ahead of FLANNEL-FWD');
  assert.deepEqual(expectedListing(fwd), [
    '-N FLANNEL-EDGE',
    '-A FLANNEL-EDGE -s 10.244.3.0/24 -d 192.168.50.0/24 -o br-lan -m comment --comment "flanneld edge" -j ACCEPT',
    '-A FLANNEL-EDGE -s 10.244.0.0/16 -d 192.168.50.0/24 -o br-lan -m comment --comment "flanneld edge" -j DROP',
    '-A FLANNEL-EDGE -s 192.168.50.0/24 -d 10.244.3.0/24 -i br-lan -m comment --comment "flanneld edge" -j ACCEPT',
    '-A FLANNEL-EDGE -s 192.168.50.0/24 -d 10.244.0.0/16 -i br-lan -m comment --comment "flanneld edge" -j DROP',
  ]);
});

test('kube mode: <prefix>/edge-networks carries the segments; "[]" withdraws them; a bad value reaches the backend as a reason', () => {
  const A = annotationNames('flannel.alpha.coreos.com');
  const attrs = { ...peer(1, [LAN]).attrs };
  const want = desiredAnnotations(A, attrs, {});
  assert.equal(A.edgeNetworks, 'flannel.alpha.coreos.com/edge-networks');
  assert.equal(want[A.edgeNetworks], '["192.168.50.0/24"]');
  const { edgeNetworks: _drop, ...plain } = attrs;
  assert.equal(desiredAnnotations(A, plain, {})[A.edgeNetworks], undefined, 'a plain node writes nothing new');
  assert.equal(desiredAnnotations(A, plain, { [A.edgeNetworks]: '["192.168.50.0/24"]' })[A.edgeNetworks], '[]', 'no longer an edge node: withdrawn');
  const cfg = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
  const node = (edge: string) => nodeToLease({ name: 'n2', podCIDR: '10.244.2.0/24', annotations: { ...want, [A.edgeNetworks]: edge } }, A, cfg);
  const ok = node('["192.168.50.0/24"]');
  assert.ok(ok.kind === 'lease');
  assert.deepEqual(publishedEdgeNetworks(ok.lease).nets, [parseIPv4Net(LAN)]);
  const bad = node('192.168.50.0/24');
  assert.ok(bad.kind === 'lease', 'the peer itself stays usable');
  assert.deepEqual(publishedEdgeNetworks(bad.lease).bad, ['EdgeNetworks: expected a list of CIDRs, got "192.168.50.0/24"']);
});

test('DirectRouting: a segment whose edge node is on our underlay subnet is routed via its public IP on the external interface', async () => {
  const { k, b, dev } = await backend(null, true, '{"Type":"vxlan","DirectRouting":true}');
  const eth0 = (await k.getLinkByName('eth0'))!;
  const far: Lease = { ...peer(3, [LAN]), attrs: { ...peer(3, [LAN]).attrs, publicIP: parseIPv4('198.51.100.3') } };
  await b.reconcile([peer(5, [LAN]), far], []);
  // 10.244.3.0/24 (lowest) is not direct: via its VTEP
  assert.deepEqual(edgeRoutes(k), [`${LAN} via 10.244.3.0 oif ${dev.index} onlink proto ${C.RTPROT_FLANNEL}`]);
  // it leaves: the direct peer takes the segment, via its public IP on eth0, and the tunnelled route goes
  await b.reconcile([peer(5, [LAN])], [{ type: 'removed', lease: far }]);
  assert.deepEqual(edgeRoutes(k).filter((r) => r.startsWith(LAN)), [`${LAN} via 192.0.2.15 oif ${eth0.index} proto ${C.RTPROT_FLANNEL}`]);
  const m = k.mutations;
  await b.reconcile([peer(5, [LAN])], []);
  assert.equal(k.mutations, m, 'converged');
  await b.reconcile([], [{ type: 'removed', lease: peer(5, [LAN]) }]);
  assert.deepEqual(edgeRoutes(k).filter((r) => r.startsWith(LAN)), []);
});

test('edge node: a segment whose interface loses carrier is withdrawn from the lease (republish), and published again when it is back', async () => {
  const k = new FakeKernel();
  const eth0 = k.addLink({ name: 'eth0', mtu: 1500 });
  k.addrs.push({ family: 2, index: eth0.index, prefixLen: 24, flags: 0, scope: 0, local: '192.0.2.11', address: '192.0.2.11', cidr: '192.0.2.11/24' });
  const br0 = k.addLink({ name: 'br0', mtu: 1500 });
  k.addrs.push({ family: 2, index: br0.index, prefixLen: 24, flags: 0, scope: 0, local: '192.168.70.1', address: '192.168.70.1', cidr: '192.168.70.1/24' });
  const published: Array<readonly string[] | undefined> = [];
  const kicks: string[] = [];
  const log = new MemoryLogger();
  const b = new VxlanBackend(
    {
      config: parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}'),
      extIface: { name: 'eth0', index: eth0.index, mtu: 1500, ifaceAddr: parseIPv4('192.0.2.11'), publicIP: parseIPv4('192.0.2.11') },
      log,
      kick: (why) => kicks.push(why),
      republish: (a) => published.push(a.edgeNetworks),
    },
    { kernel: k, edge: { segments: [{ net: parseIPv4Net('192.168.70.0/24'), iface: 'br0' }], masq: false, allow: null } },
  );
  const attrs = await b.prepare();
  assert.deepEqual(attrs.edgeNetworks, ['192.168.70.0/24']);
  await b.activate({ ...peer(1), attrs: { publicIP: parseIPv4('192.0.2.11'), publicIPv6: null, ...attrs } });
  await b.reconcile([], []);
  assert.deepEqual(published, [], 'nothing changed: no republish');
  // the LAN side loses carrier: the link notification is damage -> a full run withdraws the segment
  const down = { ...k.links.get(br0.index)!, lowerUp: false };
  k.links.set(br0.index, down);
  assert.equal(b.damage({ kind: 'link', action: 'new', link: down, pid: 0 } as NetlinkEvent), 'edge interface br0 down');
  assert.equal(b.damage({ kind: 'link', action: 'new', link: down, pid: 0 } as NetlinkEvent), null, 'the same state again is no news');
  await b.reconcile([], []);
  assert.deepEqual(published, [[]]);
  assert.ok(log.lines.some((l) => l.msg === 'edge network 192.168.70.0/24: its interface is down, has no carrier or lost its address; withdrawing it from our lease'));
  await b.reconcile([], []);
  assert.equal(published.length, 1, 'withdrawn once');
  // carrier back
  const up = { ...down, lowerUp: true };
  k.links.set(br0.index, up);
  assert.equal(b.damage({ kind: 'link', action: 'new', link: up, pid: 0 } as NetlinkEvent), 'edge interface br0 up');
  await b.reconcile([], []);
  assert.deepEqual(published, [[], ['192.168.70.0/24']]);
  // the address goes (no link event; the periodic full run sees it)
  k.addrs = k.addrs.filter((a) => a.index !== br0.index);
  await b.reconcile([], []);
  assert.deepEqual(published.at(-1), []);
});
