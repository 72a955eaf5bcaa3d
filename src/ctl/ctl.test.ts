// Unit tests for status/diagnose/trace analysis on synthetic kernel
// snapshots (no root, no namespaces). The end-to-end tests with real
// namespaces are in test/e2e/diagnose.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as C from '../netlink/constants.js';
import type { FdbEntry, Link, Neigh, Route } from '../kernel/types.js';
import { MemoryStore } from '../testing/memory-store.js';
import { readCluster, StoreUnreachable, type ClusterView } from './cluster.js';
import { analyse, type DiagnoseInputs } from './diagnose.js';
import { kernelHasVxlanCsumBug, parseIptablesSave, parseNftRuleset, rulesDroppingUdpPort, type Firewall } from './host.js';
import type { KernelSnapshot } from './kernel-view.js';
import { lookupRoute } from './kernel-view.js';
import { parseMetrics } from './status.js';
import { trace, TraceRefused, type NodeSnapshot } from './trace.js';
import { privilegedSkip } from '../testing/privileged.js';
import { pingAll } from './probe.js';

const CONFIG = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}';
const NODES = [
  { ip: '192.0.2.11', subnet: '10.244.1.0', mac: '02:00:00:00:00:01' },
  { ip: '192.0.2.12', subnet: '10.244.2.0', mac: '02:00:00:00:00:02' },
  { ip: '192.0.2.13', subnet: '10.244.3.0', mac: '02:00:00:00:00:03' },
];

function lease(n: (typeof NODES)[number]): string {
  return `{"PublicIP":"${n.ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${n.mac}"}}`;
}

async function cluster(extra: Array<[string, string]> = [], nodes = NODES): Promise<ClusterView> {
  const s = new MemoryStore(CONFIG);
  for (const n of nodes) await s.putSubnet(`${n.subnet}-24`, lease(n), 3600);
  for (const [k, v] of extra) await s.putSubnet(k, v, 3600);
  return readCluster(s, 1000);
}

function link(index: number, name: string, o: Partial<Link> = {}): Link {
  return { family: 0, index, name, type: 1, flags: 0, up: true, lowerUp: true, mtu: 1500, mac: `0e:00:00:00:00:${String(index).padStart(2, '0')}`, operState: 'up', ...o } as Link;
}

function route(dst: string, o: Partial<Route> = {}): Route {
  return { family: C.AF_INET, dst, dstLen: Number(dst.split('/')[1]), table: C.RT_TABLE_MAIN, protocol: C.RTPROT_STATIC, scope: 0, type: C.RTN_UNICAST, flags: 0, onlink: false, ...o };
}

function neigh(ifindex: number, ip: string, mac: string, permanent = true): Neigh {
  return { family: C.AF_INET, ifindex, ip, mac, state: permanent ? C.NUD_PERMANENT : C.NUD_REACHABLE, flags: 0, permanent };
}

function fdb(ifindex: number, mac: string, dst: string): FdbEntry {
  return { family: C.AF_BRIDGE, ifindex, mac, dst, state: C.NUD_PERMANENT, flags: 0, self: true, master: false, permanent: true };
}

/** Node 1's kernel as flanneld leaves it: eth0 (2), flannel.1 (3), cni0 (4), two pod veths. */
function healthyKernel(me = 0, nodes = NODES): KernelSnapshot {
  const self = nodes[me]!;
  const peers = nodes.filter((n) => n !== self);
  return {
    links: [
      link(1, 'lo', { mtu: 65536 }),
      link(2, 'eth0'),
      link(3, 'flannel.1', { kind: 'vxlan', mtu: 1450, mac: self.mac, vxlan: { vni: 1, port: 8472, local: self.ip, linkIndex: 2, learning: false, gbp: false, l2miss: false, l3miss: false } }),
      link(4, 'cni0', { kind: 'bridge', mtu: 1450 }),
      link(5, 'veth1', { kind: 'veth', mtu: 1450, masterIndex: 4 }),
      link(6, 'veth2', { kind: 'veth', mtu: 1450, masterIndex: 4 }),
    ],
    addrs: [
      { family: C.AF_INET, index: 1, prefixLen: 8, flags: 0, scope: 254, local: '127.0.0.1', cidr: '127.0.0.1/8' },
      { family: C.AF_INET, index: 2, prefixLen: 24, flags: 0, scope: 0, local: self.ip, cidr: `${self.ip}/24` },
      { family: C.AF_INET, index: 3, prefixLen: 32, flags: 0, scope: 0, local: self.subnet, cidr: `${self.subnet}/32` },
      { family: C.AF_INET, index: 4, prefixLen: 24, flags: 0, scope: 0, local: self.subnet.replace(/0$/, '1'), cidr: `${self.subnet.replace(/0$/, '1')}/24` },
    ],
    routes: [
      route('0.0.0.0/0', { gateway: '192.0.2.1', oif: 2 }),
      route('192.0.2.0/24', { oif: 2, protocol: C.RTPROT_KERNEL, scope: C.RT_SCOPE_LINK }),
      route(`${self.subnet}/24`, { oif: 4, protocol: C.RTPROT_KERNEL, scope: C.RT_SCOPE_LINK }),
      ...peers.map((p) => route(`${p.subnet}/24`, { gateway: p.subnet, oif: 3, onlink: true })),
    ],
    neighs: [...peers.map((p) => neigh(3, p.subnet, p.mac)), neigh(2, '192.0.2.12', '0e:11:11:11:11:12', false)],
    fdb: peers.map((p) => fdb(3, p.mac, p.ip)),
  };
}

const noFirewall: Firewall = { rules: [], policies: [], notes: [] };

async function inputs(o: Partial<DiagnoseInputs> & { kernel?: KernelSnapshot } = {}): Promise<DiagnoseInputs> {
  return {
    cluster: o.cluster ?? (await cluster()),
    subnetFilePath: '/run/flannel/subnet.env',
    subnetFile: o.subnetFile !== undefined ? o.subnetFile : { path: '/run/flannel/subnet.env', network: { ip: 0x0af40000, prefix: 16 }, subnetRaw: '10.244.1.1/24', subnet: { ip: 0x0af40100, prefix: 24 }, mtu: 1450 },
    kernel: o.kernel ?? healthyKernel(),
    sysctls: o.sysctls ?? { ipForward: '1', rpFilter: new Map([['flannel.1', 0], ['cni0', 0], ['eth0', 0]]) },
    firewall: o.firewall ?? noFirewall,
    offload: o.offload ?? { txChecksumIpGeneric: 'on' },
    kernelRelease: o.kernelRelease ?? '6.1.0',
    probes: o.probes ?? { skipped: 'unit test' },
  };
}

const codes = (i: DiagnoseInputs) => analyse(i).findings.map((f) => f.code);

test('diagnose: a healthy node has no findings', async () => {
  const r = analyse(await inputs());
  assert.deepEqual(r.findings, []);
  assert.ok(r.checks.every((c) => c.status === 'ok' || c.status === 'skipped'), JSON.stringify(r.checks));
});

test('diagnose: missing, wrong and non-permanent entries for a peer', async () => {
  let k = healthyKernel();
  k = { ...k, neighs: k.neighs.filter((n) => n.ip !== '10.244.2.0') };
  const f = analyse(await inputs({ kernel: k })).findings;
  assert.deepEqual(f.map((x) => x.code), ['NEIGH_MISSING']);
  assert.equal(f[0]!.peer, '192.0.2.12');
  assert.deepEqual(f[0]!.commands, ['ip neigh replace 10.244.2.0 lladdr 02:00:00:00:00:02 dev flannel.1 nud permanent']);

  k = healthyKernel();
  k = { ...k, neighs: k.neighs.map((n) => (n.ip === '10.244.3.0' ? neigh(3, n.ip, '02:de:ad:be:ef:00') : n)) };
  assert.deepEqual(codes(await inputs({ kernel: k })), ['NEIGH_WRONG_MAC']);

  k = healthyKernel();
  k = { ...k, neighs: k.neighs.map((n) => (n.ip === '10.244.3.0' ? neigh(3, n.ip, n.mac!, false) : n)) };
  const w = analyse(await inputs({ kernel: k })).findings;
  assert.deepEqual(w.map((x) => [x.code, x.severity]), [['NEIGH_NOT_PERMANENT', 'warning']]);

  k = healthyKernel();
  k = { ...k, fdb: k.fdb.map((x) => (x.mac === '02:00:00:00:00:03' ? fdb(3, x.mac, '192.0.2.99') : x)) };
  const wrong = analyse(await inputs({ kernel: k })).findings;
  assert.deepEqual(wrong.map((x) => x.code), ['FDB_WRONG_DST']);
  assert.deepEqual(wrong[0]!.commands, ['bridge fdb del 02:00:00:00:00:03 dev flannel.1 dst 192.0.2.99 self', 'bridge fdb append 02:00:00:00:00:03 dev flannel.1 dst 192.0.2.13 self permanent']);

  k = healthyKernel();
  k = { ...k, routes: k.routes.map((r) => (r.dst === '10.244.2.0/24' ? route(r.dst, { gateway: '192.0.2.12', oif: 2 }) : r)) };
  assert.deepEqual(codes(await inputs({ kernel: k })), ['ROUTE_WRONG']);
});

test('diagnose: entries for peers that no longer exist', async () => {
  const k = healthyKernel();
  const stale: KernelSnapshot = {
    ...k,
    routes: [...k.routes, route('10.244.9.0/24', { gateway: '10.244.9.0', oif: 3, onlink: true })],
    neighs: [...k.neighs, neigh(3, '10.244.9.0', '02:00:00:00:00:09')],
    fdb: [...k.fdb, fdb(3, '02:00:00:00:00:09', '192.0.2.19')],
  };
  const f = analyse(await inputs({ kernel: stale })).findings;
  assert.deepEqual(f.map((x) => x.code), ['STALE_ROUTE', 'STALE_NEIGH', 'STALE_FDB']);
  assert.deepEqual(f.map((x) => x.commands), [['ip route del 10.244.9.0/24 dev flannel.1'], ['ip neigh del 10.244.9.0 dev flannel.1'], ['bridge fdb del 02:00:00:00:00:09 dev flannel.1 dst 192.0.2.19 self']]);
});

test('diagnose: the VTEP itself', async () => {
  const base = healthyKernel();
  const withVtep = (o: Partial<Link>) => ({ ...base, links: base.links.map((l) => (l.name === 'flannel.1' ? { ...l, ...o } : l)) });
  assert.deepEqual(codes(await inputs({ kernel: { ...base, links: base.links.filter((l) => l.name !== 'flannel.1') } })).slice(0, 1), ['VTEP_MISSING']);
  assert.deepEqual(codes(await inputs({ kernel: withVtep({ up: false }) })), ['VTEP_DOWN']);
  assert.deepEqual(codes(await inputs({ kernel: withVtep({ mac: '02:99:99:99:99:99' }) })), ['VTEP_MAC_MISMATCH']);
  const vx = base.links.find((l) => l.name === 'flannel.1')!.vxlan!;
  assert.deepEqual(codes(await inputs({ kernel: withVtep({ vxlan: { ...vx, vni: 7 } }) })), ['VTEP_VNI_MISMATCH']);
  assert.deepEqual(codes(await inputs({ kernel: withVtep({ vxlan: { ...vx, port: 4789 } }) })), ['VTEP_PORT_MISMATCH']);
  assert.deepEqual(codes(await inputs({ kernel: { ...base, addrs: base.addrs.filter((a) => a.index !== 3) } })), ['VTEP_ADDRESS']);
});

test('diagnose: MTU along underlay -> VTEP -> cni0 -> pod veths', async () => {
  const base = healthyKernel();
  const mtu = (name: string, m: number) => ({ ...base, links: base.links.map((l) => (l.name === name ? { ...l, mtu: m } : l)) });
  assert.deepEqual(codes(await inputs({ kernel: mtu('flannel.1', 1400) })), ['MTU_VTEP_TOO_SMALL']);
  assert.deepEqual(codes(await inputs({ kernel: mtu('flannel.1', 1480) })), ['MTU_VTEP_TOO_LARGE']);
  assert.deepEqual(codes(await inputs({ kernel: mtu('veth2', 1500) })), ['MTU_POD_TOO_LARGE']);
  const f = analyse(await inputs({ kernel: mtu('eth0', 1400) })).findings;
  assert.deepEqual(f.map((x) => x.code), ['MTU_VTEP_TOO_LARGE']);
  // lowering flannel.1 alone would leave the pods above it: advice, not commands
  assert.equal(f[0]!.commands, undefined);
  assert.match(f[0]!.fix, /^restore eth0's MTU to at least 1500 \(ip link set eth0 mtu 1500\); or lower the overlay: ip link set flannel.1 mtu 1350/);
});

test('diagnose: sysctls (ip_forward, strict rp_filter only when the route back is elsewhere)', async () => {
  assert.deepEqual(codes(await inputs({ sysctls: { ipForward: '0', rpFilter: new Map() } })), ['IP_FORWARD_DISABLED']);
  const strict = { ipForward: '1', rpFilter: new Map([['flannel.1', 1], ['eth0', 1], ['cni0', 1]]) };
  assert.deepEqual(codes(await inputs({ sysctls: strict })), [], 'strict rp_filter is fine with flannel\u2019s routes');
  const k = healthyKernel();
  const wrong = { ...k, routes: k.routes.map((r) => (r.dst === '10.244.2.0/24' ? route(r.dst, { gateway: '192.0.2.12', oif: 2 }) : r)) };
  assert.deepEqual(codes(await inputs({ kernel: wrong, sysctls: strict })), ['ROUTE_WRONG', 'RP_FILTER_DROPS']);
});

test('diagnose: store-level problems (duplicates, backend mismatch, our lease, subnet.env, cni0)', async () => {
  const dupIP = await cluster([['10.244.9.0-24', lease({ ip: '192.0.2.12', subnet: '10.244.9.0', mac: '02:00:00:00:00:09' })]]);
  assert.ok(codes(await inputs({ cluster: dupIP })).includes('DUPLICATE_PUBLIC_IP'));
  const dupMac = await cluster([['10.244.9.0-24', lease({ ip: '192.0.2.19', subnet: '10.244.9.0', mac: '02:00:00:00:00:02' })]]);
  assert.ok(codes(await inputs({ cluster: dupMac })).includes('DUPLICATE_VTEP_MAC'));
  const hostgw = await cluster([['10.244.9.0-24', '{"PublicIP":"192.0.2.19","PublicIPv6":null,"BackendType":"host-gw"}']]);
  assert.deepEqual(codes(await inputs({ cluster: hostgw })), ['PEER_BACKEND_MISMATCH']);
  const noSelf = await cluster([], NODES.slice(1));
  assert.deepEqual(codes(await inputs({ cluster: noSelf })), ['NO_LEASE']);
  assert.deepEqual(codes(await inputs({ subnetFile: null })), ['SUBNET_ENV_MISSING']);
  const k = healthyKernel();
  const cni = { ...k, addrs: k.addrs.map((a) => (a.index === 4 ? { ...a, local: '10.244.7.1', cidr: '10.244.7.1/24' } : a)) };
  const f = analyse(await inputs({ kernel: cni })).findings;
  assert.deepEqual(f.map((x) => x.code), ['CNI0_ADDRESS_MISMATCH']);
  const moved = { ...k, addrs: k.addrs.map((a) => (a.index === 2 ? { ...a, local: '192.0.2.50', cidr: '192.0.2.50/24' } : a)) };
  assert.ok(codes(await inputs({ kernel: moved })).includes('PUBLIC_IP_NOT_LOCAL'));
});

test('diagnose: an unreachable store is one clear finding; host checks still run', async () => {
  const f = analyse(await inputs({ cluster: new StoreUnreachable('etcd http://192.0.2.1:2379 prefix /coreos.com/network', 'no answer within 1.0 s', 1000), sysctls: { ipForward: '0', rpFilter: new Map() } }));
  assert.deepEqual(f.findings.map((x) => x.code), ['STORE_UNREACHABLE', 'IP_FORWARD_DISABLED']);
  assert.match(f.findings[0]!.fix, /etcdctl --endpoints http:\/\/192\.0\.2\.1:2379 endpoint health/);
  assert.equal(f.checks.find((c) => c.name === 'peers')!.status, 'skipped');
  assert.equal(f.checks.find((c) => c.name === 'vtep')!.status, 'ok', 'the VTEP is found in the kernel without a config');
});

test('diagnose: probes tell a dead host from a broken tunnel', async () => {
  const results = new Map([
    ['10.244.2.0', { target: '10.244.2.0', ok: false, error: 'no reply within 1.0 s' }],
    ['192.0.2.12', { target: '192.0.2.12', ok: true, rttMs: 0.2 }],
    ['10.244.3.0', { target: '10.244.3.0', ok: false, error: 'no reply within 1.0 s' }],
    ['192.0.2.13', { target: '192.0.2.13', ok: false, error: 'no reply within 1.0 s' }],
  ]);
  const f = analyse(await inputs({ probes: { results } })).findings;
  assert.deepEqual(f.map((x) => [x.code, x.peer]), [['OVERLAY_UNREACHABLE', '192.0.2.12'], ['PEER_UNREACHABLE', '192.0.2.13']]);
});

test('diagnose: checksum offload is flagged only on kernels without the fix', async () => {
  assert.deepEqual(codes(await inputs({ kernelRelease: '5.4.30' })), ['VTEP_CSUM_OFFLOAD']);
  assert.deepEqual(codes(await inputs({ kernelRelease: '5.4.30', offload: { txChecksumIpGeneric: 'off' } })), []);
  assert.deepEqual(codes(await inputs({ kernelRelease: '6.1.0' })), []);
  for (const [v, bug] of [['3.10.0-1160.el7', true], ['4.14.180', true], ['4.14.181', false], ['4.19.122', true], ['5.4.41', false], ['5.5.19', true], ['5.6.13', false], ['5.10.0', false]] as const) {
    assert.equal(kernelHasVxlanCsumBug(v), bug, v);
  }
});

test('firewall: iptables-save and nft rules that drop the VXLAN port', async () => {
  const ipt = parseIptablesSave(
    [
      '*filter',
      ':INPUT ACCEPT [0:0]',
      ':FORWARD DROP [0:0]',
      ':OUTPUT ACCEPT [0:0]',
      '-A INPUT -p udp -m multiport --dports 4789,8472 -j REJECT --reject-with icmp-port-unreachable',
      '-A INPUT -p udp -m udp --dport 8000:9000 -j DROP',
      '-A INPUT -p udp -m udp ! --dport 8472 -j DROP',
      '-A INPUT -p tcp -m tcp --dport 8472 -j ACCEPT',
      'COMMIT',
    ].join('\n'),
  );
  const fw: Firewall = { ...ipt, notes: [] };
  assert.deepEqual(rulesDroppingUdpPort(fw, 8472).map((r) => r.text.split(' -j ')[0]), ['-A INPUT -p udp -m multiport --dports 4789,8472', '-A INPUT -p udp -m udp --dport 8000:9000']);
  const f = analyse(await inputs({ firewall: fw })).findings;
  assert.deepEqual(f.map((x) => x.code), ['FIREWALL_DROPS_VXLAN', 'FIREWALL_DROPS_VXLAN', 'FORWARD_POLICY_DROP']);
  assert.deepEqual(f[1]!.commands, ['iptables -t filter -D INPUT -p udp -m udp --dport 8000:9000 -j DROP']);
  // rules for other sources or other interfaces do not hit VXLAN between the nodes
  const narrow = parseIptablesSave(
    ['*filter', '-A INPUT -s 203.0.113.0/24 -p udp -m udp --dport 8472 -j DROP', '-A INPUT -i eth1 -p udp -m udp --dport 8472 -j DROP', '-A INPUT -i eth0 -s 192.0.2.0/24 -p udp -m udp --dport 8472 -j DROP', 'COMMIT'].join('\n'),
  );
  const hits = rulesDroppingUdpPort({ ...narrow, notes: [] }, 8472, { peers: ['192.0.2.12'], self: '192.0.2.11', underlay: 'eth0' });
  assert.deepEqual(hits.map((r) => r.text), ['-A INPUT -i eth0 -s 192.0.2.0/24 -p udp -m udp --dport 8472 -j DROP']);
  const accepted: Firewall = { ...fw, rules: [...fw.rules, ...parseIptablesSave('*filter\n-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT\nCOMMIT').rules] };
  assert.ok(!codes(await inputs({ firewall: accepted })).includes('FORWARD_POLICY_DROP'));

  const nft = parseNftRuleset(
    [
      'table inet fw { # handle 7',
      '\tset allowed { # handle 2',
      '\t\ttype ipv4_addr',
      '\t}',
      '\tchain input { # handle 1',
      '\t\ttype filter hook input priority filter; policy drop;',
      '\t\tudp dport { 4789, 8472 } counter packets 0 bytes 0 drop # handle 3',
      '\t\tudp dport != 8472 drop # handle 4',
      '\t}',
      '}',
    ].join('\n'),
  );
  assert.deepEqual(nft.policies, [{ source: 'nft', table: 'inet fw', chain: 'input', hook: 'input', policy: 'DROP' }]);
  const dropping = rulesDroppingUdpPort({ ...nft, notes: [] }, 8472);
  assert.equal(dropping.length, 1);
  assert.equal(dropping[0]!.handle, 3);
  const nf = analyse(await inputs({ firewall: { ...nft, notes: [] } })).findings;
  assert.deepEqual(nf.map((x) => [x.code, x.severity]), [['FIREWALL_DROPS_VXLAN', 'error'], ['FIREWALL_INPUT_POLICY_DROP', 'warning']]);
  assert.deepEqual(nf[0]!.commands, ['nft delete rule inet fw input handle 3']);
});

test('lookupRoute: longest prefix, then lowest metric; local addresses', () => {
  const k = healthyKernel();
  const r = lookupRoute(k, '10.244.2.7');
  assert.ok(r && r !== 'local');
  assert.equal(r.dst, '10.244.2.0/24');
  assert.equal((lookupRoute(k, '8.8.8.8') as { dst: string }).dst, '0.0.0.0/0');
  assert.equal(lookupRoute(k, '192.0.2.11'), 'local');
});

function snapshot(k: KernelSnapshot): NodeSnapshot {
  return { kernel: k, firewall: noFirewall, ipForward: '1' };
}

test('trace: the full VXLAN path, then stops at the first missing step', async () => {
  const c = await cluster();
  const sf = null;
  const here = snapshot(healthyKernel(0));
  const there = snapshot(healthyKernel(1));
  const ok = trace({ src: '10.244.1.11', dst: '10.244.2.11', cluster: c, here, there, subnetFile: sf });
  assert.equal(ok.phase, 'Delivered', JSON.stringify(ok, null, 1));
  assert.deepEqual(
    ok.steps.map((s) => s.component),
    ['Pod', 'Routing', 'Neighbour', 'FDB', 'Encap', 'Underlay', 'Decap', 'Routing', 'Pod', 'Delivery', 'Reply'],
  );
  assert.deepEqual(ok.headers?.outer, { srcMac: '0e:00:00:00:00:02', dstMac: '0e:11:11:11:11:12', srcIP: '192.0.2.11', dstIP: '192.0.2.12', proto: 'UDP', srcPort: 'hash of the inner flow', dstPort: 8472, vni: 1 });
  assert.deepEqual(ok.headers?.inner, { srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIP: '10.244.1.11', dstIP: '10.244.2.11' });

  const k = healthyKernel(0);
  const noFdb = snapshot({ ...k, fdb: k.fdb.filter((x) => x.dst !== '192.0.2.12') });
  const dropped = trace({ src: '10.244.1.11', dst: '10.244.2.11', cluster: c, here: noFdb, there, subnetFile: sf });
  assert.equal(dropped.phase, 'Dropped');
  assert.equal(dropped.reason, 'NoFdb');
  assert.equal(dropped.steps.at(-1)!.component, 'FDB');
  assert.equal(dropped.fix, 'bridge fdb append 02:00:00:00:00:02 dev flannel.1 dst 192.0.2.12 self permanent');

  const noRoute = snapshot({ ...k, routes: k.routes.filter((r) => r.dst !== '10.244.2.0/24') });
  assert.equal(trace({ src: '10.244.1.11', dst: '10.244.2.11', cluster: c, here: noRoute, there, subnetFile: sf }).reason, 'NoRoute');

  const k2 = healthyKernel(1);
  const noBack = snapshot({ ...k2, routes: k2.routes.filter((r) => r.dst !== '10.244.1.0/24') });
  const reply = trace({ src: '10.244.1.11', dst: '10.244.2.11', cluster: c, here, there: noBack, subnetFile: sf });
  assert.deepEqual([reply.phase, reply.reason], ['ReplyDropped', 'NoRoute']);

  const unverified = trace({ src: '10.244.1.11', dst: '10.244.2.11', cluster: c, here, there: null, subnetFile: sf });
  assert.equal(unverified.phase, 'Delivered');
  assert.equal(unverified.steps.at(-1)!.ok, null);

  assert.throws(() => trace({ src: '10.244.2.11', dst: '10.244.1.11', cluster: c, here, there, subnetFile: sf }), TraceRefused);
  assert.equal(trace({ src: '10.244.1.11', dst: '1.1.1.1', cluster: c, here, there, subnetFile: sf }).phase, 'LeavesOverlay');
  assert.equal(trace({ src: '10.244.1.11', dst: '10.244.77.1', cluster: c, here, there, subnetFile: sf }).reason, 'NoLease');
});

test('diagnose: 100 peers are analysed in well under a second', async () => {
  const many = Array.from({ length: 101 }, (_, i) => ({
    ip: `192.0.2.${i + 11}`,
    subnet: `10.244.${i + 1}.0`,
    mac: `02:00:00:00:01:${(i + 1).toString(16).padStart(2, '0')}`,
  }));
  const c = await cluster([], many);
  const k = healthyKernel(0, many);
  const t0 = performance.now();
  const r = analyse(await inputs({ cluster: c, kernel: k }));
  const ms = performance.now() - t0;
  assert.deepEqual(r.findings, []);
  assert.equal(r.plan.peers.length, 100);
  assert.ok(ms < 1000, `${ms} ms`);
  const broken = { ...k, fdb: k.fdb.filter((_, i) => i % 10 !== 0) };
  assert.equal(analyse(await inputs({ cluster: c, kernel: broken })).findings.filter((f) => f.code === 'FDB_MISSING').length, 10);
});

test('trace: host-gw routes straight to the peer; udp is refused in one line', async () => {
  const hg = new MemoryStore('{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}');
  for (const n of NODES) await hg.putSubnet(`${n.subnet}-24`, `{"PublicIP":"${n.ip}","PublicIPv6":null,"BackendType":"host-gw"}`, 3600);
  const c = await readCluster(hg, 1000);
  const gwKernel = (me: number): KernelSnapshot => {
    const k = healthyKernel(me);
    const self = NODES[me]!;
    return {
      ...k,
      links: k.links.filter((l) => l.name !== 'flannel.1'),
      addrs: k.addrs.filter((a) => a.index !== 3),
      routes: [...k.routes.filter((r) => r.oif !== 3), ...NODES.filter((n) => n !== self).map((n) => route(`${n.subnet}/24`, { gateway: n.ip, oif: 2 }))],
      neighs: [],
      fdb: [],
    };
  };
  const r = trace({ src: '10.244.1.11', dst: '10.244.3.11', cluster: c, here: snapshot(gwKernel(0)), there: snapshot(gwKernel(2)), subnetFile: null });
  assert.equal(r.phase, 'Delivered', JSON.stringify(r, null, 1));
  assert.match(r.steps[1]!.summary, /"10\.244\.3\.0\/24 via 192\.0\.2\.13 dev eth0"/);
  const k = gwKernel(0);
  const missing = trace({ src: '10.244.1.11', dst: '10.244.3.11', cluster: c, here: snapshot({ ...k, routes: k.routes.filter((x) => x.dst !== '10.244.3.0/24') }), there: null, subnetFile: null });
  assert.equal(missing.reason, 'NoRoute');
  assert.equal(missing.fix, 'ip route replace 10.244.3.0/24 via 192.0.2.13');

  const udp = await readCluster(new MemoryStore('{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}'), 1000);
  assert.throws(() => trace({ src: '10.244.1.11', dst: '10.244.3.11', cluster: udp, here: snapshot(k), there: null, subnetFile: null }), /supports the vxlan and host-gw backends; this network uses udp/);
});

test('status: parses flanneld metrics', () => {
  const m = parseMetrics('# HELP flannel_ready x\nflannel_ready 1\nflannel_lease_renewals_total{result="ok"} 3\nprocess_cpu 5\n');
  assert.deepEqual(m, { flannel_ready: 1, 'flannel_lease_renewals_total{result="ok"}': 3 });
});

test('probe: ICMP echo to loopback through a raw socket', { skip: privilegedSkip('an ICMP raw socket', []) }, async () => {
  const r = await pingAll(['127.0.0.1'], 1000);
  assert.equal(r.get('127.0.0.1')?.ok, true, JSON.stringify([...r]));
  // 100 targets cost one round trip, not 100 timeouts
  const targets = Array.from({ length: 100 }, (_, i) => `127.0.0.${i + 1}`);
  const t0 = performance.now();
  const all = await pingAll(targets, 2000);
  assert.equal([...all.values()].filter((x) => x.ok).length, 100, JSON.stringify([...all.values()].filter((x) => !x.ok)));
  assert.ok(performance.now() - t0 < 1500, `${performance.now() - t0} ms`);
});

test('leases and status: an EDGE column appears only when some node is an edge gateway; bad entries are left out', async () => {
  const { leaseRows, renderLeases } = await import('./leases.js');
  const { renderStatus } = await import('./status.js');
  const plain = new MemoryStore(CONFIG);
  for (const n of NODES) await plain.putSubnet(`${n.subnet}-24`, lease(n), 3600);
  assert.equal(renderLeases(await leaseRows(plain)).split('\n')[0], 'SUBNET         PUBLIC IP   BACKEND  VTEP MAC           EXPIRES');
  const edgeLease = lease(NODES[0]!).replace(/}$/, ',"EdgeNetworks":["192.168.50.0/24","not-a-cidr","192.168.60.0/24"]}');
  await plain.putSubnet('10.244.1.0-24', edgeLease, 3600);
  const text = renderLeases(await leaseRows(plain)).split('\n');
  assert.equal(text[0], 'SUBNET         PUBLIC IP   BACKEND  VTEP MAC           EDGE                             EXPIRES');
  assert.match(text[1]!, /^10\.244\.1\.0\/24  192\.0\.2\.11  vxlan    02:00:00:00:00:01  192\.168\.50\.0\/24,192\.168\.60\.0\/24  in /);
  assert.match(text[2]!, /^10\.244\.2\.0\/24  192\.0\.2\.12  vxlan    02:00:00:00:00:02  -  /);
  const c = await readCluster(plain, 1000);
  assert.deepEqual(c.leases.map((l) => l.edgeNetworks), [['192.168.50.0/24', '192.168.60.0/24'], [], []]);
  const status = renderStatus({
    apiVersion: 'flannel-ts/v1', kind: 'StatusReport',
    store: { description: 'memory', ok: true, elapsedMs: 1 }, config: null, node: null, invalid: [],
    leases: c.leases.map((l) => ({ subnet: l.subnet, publicIP: l.publicIP, backend: l.backend, vtepMac: l.vtepMac, edgeNetworks: l.edgeNetworks, permanent: false, ttlSeconds: 60, expires: 'in 1m00s', thisNode: false })),
  });
  assert.match(status, /^SUBNET +PUBLIC IP +BACKEND +VTEP MAC +EXPIRES +NODE +EDGE$/m);
  assert.match(status, /^10\.244\.1\.0\/24 .* 192\.168\.50\.0\/24,192\.168\.60\.0\/24$/m);
});
