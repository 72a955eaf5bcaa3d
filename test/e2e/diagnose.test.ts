// flannelctl status, diagnose and trace against a live 3-host VXLAN cluster
// (network namespaces, a real etcd, one flanneld per host, two pods each).
//
// diagnose: a clean run on every host of the healthy cluster, then one
// failure mode at a time injected into host 1 (whose flanneld is stopped
// first, or it would repair most of them within milliseconds): each must
// give its stable finding code and exit 1, and running the commands the
// findings print must bring the node back to exit 0 with no findings.
// trace: the path it prints is checked against a capture on the underlay,
// and it must stop at a deleted FDB entry. The store going away is last.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { isRoot, Topology, type BgProc, type Host } from '../helpers/netns.js';
import { FLANNELCTL, type FlanneldProc } from '../helpers/flanneld.js';
import type { DiagnoseReport, Finding } from '../../src/ctl/diagnose.js';
import type { StatusReport } from '../../src/ctl/status.js';
import type { TraceReport } from '../../src/ctl/trace.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';
const HEALTHZ_PORT = 9911;
let topo: Topology;
let etcd: BgProc;
const flanneld = new Map<Host, FlanneldProc>();

interface CtlResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

async function ctl(h: Host, ...args: string[]): Promise<CtlResult> {
  const t0 = Date.now();
  const endpoints = args.some((a) => a.startsWith('--etcd-endpoints')) ? [] : [`--etcd-endpoints=${topo.etcdEndpoint}`];
  const r = await topo.run(h.name, [process.execPath, FLANNELCTL, ...args, ...endpoints, `--subnet-file=${topo.subnetFile(h)}`], { timeoutMs: 30_000 });
  return { code: r.code, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
}

async function diagnose(h: Host, ...args: string[]): Promise<{ code: number | null; report: DiagnoseReport; ms: number }> {
  const r = await ctl(h, 'diagnose', '--json', '--probe-timeout=1', ...args);
  let report: DiagnoseReport;
  try {
    report = JSON.parse(r.stdout) as DiagnoseReport;
  } catch {
    throw new Error(`diagnose printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  return { code: r.code, report, ms: r.ms };
}

const show = (fs: readonly Finding[]) => fs.map((f) => `${f.code} ${f.object}: ${f.problem}`).join('\n');

async function waitUntil(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `ip -d link show`-style facts of a host, read with iproute2 in the test (never by the code under test). */
async function hostFacts(h: Host): Promise<{ eth0Mac: string; vtepMac: string; subnet: string; gw: string }> {
  const eth0Mac = /link\/ether (\S+)/.exec(await topo.ip(h.name, 'link', 'show', 'eth0'))![1]!;
  const vtepMac = /link\/ether (\S+)/.exec(await topo.ip(h.name, 'link', 'show', 'flannel.1'))![1]!;
  const env = topo.subnetEnv(h);
  const [a, len] = env.FLANNEL_SUBNET.split('/');
  const gw = a!.replace(/\.1$/, '.0');
  return { eth0Mac, vtepMac, subnet: `${gw}/${len}`, gw };
}

before(async () => {
  if (skip) return;
  topo = await Topology.create({ hosts: 3, podsPerHost: 2 });
  etcd = await topo.startEtcd();
  await topo.etcdctl('put', '/coreos.com/network/config', '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
  for (const h of topo.hosts) flanneld.set(h, topo.startFlanneld(h, [`--healthz-port=${HEALTHZ_PORT}`]));
  await Promise.all([...flanneld.values()].map((f) => f.waitReady()));
  for (const h of topo.hosts) await topo.wirePods(h);
  // every host programs every peer before the checks start
  await waitUntil('pod mesh', async () => (await topo.pingMesh({ timeoutS: 1 })).every((r) => r.ok), 10_000);
});

after(async () => {
  await topo?.destroy();
});

test('status: config, every lease with this node marked, kernel entries per peer, and the local flanneld', { skip }, async () => {
  const h = topo.hosts[0]!;
  const me = await hostFacts(h);
  const r = await ctl(h, 'status', '--json', `--healthz-port=${HEALTHZ_PORT}`);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const s = JSON.parse(r.stdout) as StatusReport;
  assert.equal(s.store.ok, true);
  assert.equal(s.config?.backend, 'vxlan');
  assert.equal(s.config?.vni, 1);
  assert.equal(s.config?.port, 8472);
  assert.equal(s.leases.length, 3);
  const mine = s.leases.filter((l) => l.thisNode);
  assert.deepEqual(mine.map((l) => [l.subnet, l.publicIP, l.vtepMac]), [[me.subnet, h.ip, me.vtepMac]]);
  assert.deepEqual(s.node, { subnet: me.subnet, publicIP: h.ip, recognisedBy: `FLANNEL_SUBNET in ${topo.subnetFile(h)}` });
  for (const l of s.leases.filter((x) => !x.thisNode)) {
    assert.equal(l.kernel, 'ok', `${l.subnet}`);
    assert.match(l.expires, /^in 2[34]h/);
  }
  assert.equal(s.daemon?.ready, true);
  assert.equal(s.daemon?.metrics.flannel_remote_leases, 2);

  const text = await ctl(h, 'status', `--healthz-port=${HEALTHZ_PORT}`);
  assert.equal(text.code, 0);
  assert.match(text.stdout, new RegExp(`${me.subnet.replace(/\./g, '\\.')}\\s+${h.ip.replace(/\./g, '\\.')}\\s+vxlan\\s+${me.vtepMac}\\s+in \\S+\\s+this`));
  assert.match(text.stdout, /flanneld: +ready \(http:\/\/127\.0\.0\.1:9911\): remote leases 2/);
  console.log(`# status took ${r.ms} ms (json), ${text.ms} ms (text)`);

  // without the daemon's port it still works (and does not ask); with a wrong port it says so and exits 1
  const down = await ctl(h, 'status', '--healthz-port=9', '--json');
  assert.equal(down.code, 1);
  assert.equal((JSON.parse(down.stdout) as StatusReport).daemon?.reachable, false);
});

test('diagnose: the healthy cluster gives exit 0 and no findings on every host', { skip }, async () => {
  for (const h of topo.hosts) {
    const { code, report, ms } = await diagnose(h);
    assert.deepEqual(report.findings, [], `${h.name}:\n${show(report.findings)}`);
    assert.equal(code, 0);
    assert.equal(report.summary.peers, 2);
    assert.equal(report.node.publicIP, h.ip);
    const probes = report.checks.find((c) => c.name === 'probes')!;
    assert.match(probes.detail, /^2\/2 peers answer through the tunnel/);
    console.log(`# diagnose on ${h.name}: ${ms} ms`);
  }
  const text = await ctl(topo.hosts[0]!, 'diagnose');
  assert.equal(text.code, 0);
  assert.match(text.stdout, /OK: no problems found/);
  assert.doesNotMatch(text.stdout, /ERROR|WARN/);
});

test('trace: pod to pod across hosts, layer by layer, matching a capture on the wire', { skip }, async () => {
  const [h1, h2] = [topo.hosts[0]!, topo.hosts[1]!];
  const [a, b] = [h1.pods[0]!, h2.pods[0]!];
  const [f1, f2] = [await hostFacts(h1), await hostFacts(h2)];
  const r = await ctl(h1, 'trace', a.ip, b.ip, `--dst-netns=${h2.name}`, '--json');
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const t = JSON.parse(r.stdout) as TraceReport;
  assert.equal(t.phase, 'Delivered');
  assert.equal(t.destinationVerified, true);
  assert.deepEqual(
    t.steps.map((s) => `${s.host} ${s.component} ${s.ok}`),
    ['Pod', 'Routing', 'Neighbour', 'FDB', 'Encap', 'Underlay'].map((c) => `source ${c} true`).concat(['Decap', 'Routing', 'Pod', 'Delivery', 'Reply'].map((c) => `destination ${c} true`)),
  );
  assert.match(t.steps[1]!.summary, new RegExp(`"${f2.subnet.replace(/\./g, '\\.')} via ${f2.gw.replace(/\./g, '\\.')} dev flannel\\.1 onlink"`));
  assert.deepEqual(t.headers, {
    outer: { srcMac: f1.eth0Mac, dstMac: f2.eth0Mac, srcIP: h1.ip, dstIP: h2.ip, proto: 'UDP', srcPort: 'hash of the inner flow', dstPort: 8472, vni: 1 },
    inner: { srcMac: f1.vtepMac, dstMac: f2.vtepMac, srcIP: a.ip, dstIP: b.ip },
  });
  // the same headers on the wire
  const wire = await topo.capture(topo.underlay, 'br0', ['-T', 'vxlan', 'udp', 'dst', 'port', '8472', 'and', 'src', 'host', h1.ip], async () => {
    await topo.ping(a.name, b.ip, { count: 1 });
  }, { count: 1 });
  const h = t.headers!;
  assert.match(wire, new RegExp(`\\S+ ${h.outer.srcMac} > ${h.outer.dstMac}, .*${h1.ip.replace(/\./g, '\\.')}\\.\\d+ > ${h2.ip.replace(/\./g, '\\.')}\\.8472: VXLAN, flags \\[I\\] \\(0x08\\), vni ${h.outer.vni}`), wire);
  assert.match(wire, new RegExp(`${h.inner.srcMac} > ${h.inner.dstMac}, ethertype IPv4 .*${a.ip.replace(/\./g, '\\.')} > ${b.ip.replace(/\./g, '\\.')}: ICMP echo request`), wire);

  const text = await ctl(h1, 'trace', a.ip, b.ip, `--dst-netns=${h2.name}`);
  assert.match(text.stdout, /outer UDP\s+sport <hash of the inner flow> -> dport 8472/);
  assert.match(text.stdout, /result: Delivered: every step is in place/);
  // the same node, outside the overlay, and a pod that is not on this node
  assert.match((await ctl(h1, 'trace', a.ip, h1.pods[1]!.ip)).stdout, /same node/);
  assert.equal((await ctl(h1, 'trace', b.ip, a.ip)).code, 2);
  console.log(`# trace took ${r.ms} ms`);
});

// ------------------------------------------------------------ failure modes

interface Case {
  name: string;
  inject: (h: Host, peer: { ip: string; subnet: string; gw: string; mac: string }) => string;
  code: string;
  object: RegExp | ((peer: { ip: string; subnet: string; gw: string; mac: string }) => string);
  /** undo the injection this way instead of running the findings' commands (when the fix is advice, not commands) */
  restore?: string;
}

const cases: Case[] = [
  { name: 'a deleted neighbour', inject: (_, p) => `ip neigh del ${p.gw} dev flannel.1`, code: 'NEIGH_MISSING', object: (p) => `neighbour ${p.gw} on flannel.1` },
  { name: 'a neighbour with a stale VTEP MAC', inject: (_, p) => `ip neigh replace ${p.gw} lladdr 02:0b:ad:0b:ad:00 dev flannel.1 nud permanent`, code: 'NEIGH_WRONG_MAC', object: (p) => `neighbour ${p.gw} on flannel.1` },
  { name: 'a deleted FDB entry', inject: (_, p) => `bridge fdb del ${p.mac} dev flannel.1 dst ${p.ip} self`, code: 'FDB_MISSING', object: (p) => `fdb ${p.mac} on flannel.1` },
  { name: 'a deleted route', inject: (_, p) => `ip route del ${p.subnet} dev flannel.1`, code: 'ROUTE_MISSING', object: (p) => `route ${p.subnet}` },
  { name: 'a stale route for a node that does not exist', inject: () => `ip route add 10.244.0.128/25 via 10.244.0.128 dev flannel.1 onlink`, code: 'STALE_ROUTE', object: () => 'route 10.244.0.128/25' },
  { name: 'flannel.1 down', inject: () => 'ip link set flannel.1 down', code: 'VTEP_DOWN', object: () => 'device flannel.1' },
  { name: 'flannel.1 MTU below the pods\u2019', inject: () => 'ip link set flannel.1 mtu 1400', code: 'MTU_VTEP_TOO_SMALL', object: () => 'device flannel.1 mtu 1400' },
  // the kernel refuses a VXLAN MTU above its underlay's, but keeps it when the underlay's MTU drops later
  { name: 'the underlay MTU dropping below flannel.1 + 50', inject: () => 'ip link set eth0 mtu 1400', code: 'MTU_VTEP_TOO_LARGE', object: () => 'device flannel.1 mtu 1450', restore: 'ip link set eth0 mtu 1500' },
  { name: 'ip_forward=0', inject: () => 'sysctl -qw net.ipv4.ip_forward=0', code: 'IP_FORWARD_DISABLED', object: () => 'sysctl net.ipv4.ip_forward' },
  { name: 'an iptables DROP on udp 8472', inject: () => 'iptables -A INPUT -p udp --dport 8472 -j DROP', code: 'FIREWALL_DROPS_VXLAN', object: /^iptables filter chain INPUT: -A INPUT -p udp -m udp --dport 8472 -j DROP$/ },
];

let stopped = false;
async function stopFlanneldOnHost1(): Promise<void> {
  if (stopped) return;
  stopped = true;
  assert.equal(await flanneld.get(topo.hosts[0]!)!.stop(), 0);
}

async function peerOf(h: Host): Promise<{ ip: string; subnet: string; gw: string; mac: string }> {
  const p = topo.hosts[1]!;
  const f = await hostFacts(p);
  void h;
  return { ip: p.ip, subnet: f.subnet, gw: f.gw, mac: f.vtepMac };
}

for (const c of cases) {
  test(`diagnose: ${c.name} -> ${c.code}, and ${c.restore ? 'undoing it' : 'its fix commands'} make${c.restore ? 's' : ''} the node healthy again`, { skip }, async () => {
    await stopFlanneldOnHost1();
    const h = topo.hosts[0]!;
    const peer = await peerOf(h);
    await topo.exec(h.name, ['sh', '-c', c.inject(h, peer)]);
    const bad = await diagnose(h);
    assert.equal(bad.code, 1, show(bad.report.findings));
    const hit = bad.report.findings.find((f) => f.code === c.code);
    assert.ok(hit, `expected ${c.code}, got:\n${show(bad.report.findings)}`);
    if (typeof c.object === 'function') assert.equal(hit.object, c.object(peer));
    else assert.match(hit.object, c.object);
    assert.ok(hit.why.length > 10 && hit.fix.length > 5);
    // every finding is about this failure: nothing unrelated is reported
    const unrelated = bad.report.findings.filter((f) => f.code !== c.code && !['OVERLAY_UNREACHABLE', 'ROUTE_MISSING', 'NEIGH_MISSING'].includes(f.code));
    assert.deepEqual(unrelated, [], show(unrelated));
    // apply the fixes the findings print, in order
    if (c.restore) await topo.exec(h.name, ['sh', '-c', c.restore]);
    else for (const f of bad.report.findings) for (const cmd of f.commands ?? []) await topo.exec(h.name, ['sh', '-c', cmd]);
    const good = await diagnose(h);
    assert.deepEqual(good.report.findings, [], show(good.report.findings));
    assert.equal(good.code, 0);
    console.log(`# ${c.code}: found in ${bad.ms} ms; ${bad.report.findings.map((f) => f.code).join(', ')}`);
  });
}

test('trace: stops at a deleted FDB entry and says what is missing', { skip }, async () => {
  await stopFlanneldOnHost1();
  const [h1, h2] = [topo.hosts[0]!, topo.hosts[1]!];
  const peer = await peerOf(h1);
  await topo.exec(h1.name, ['bridge', 'fdb', 'del', peer.mac, 'dev', 'flannel.1', 'dst', peer.ip, 'self']);
  try {
    const r = await ctl(h1, 'trace', h1.pods[0]!.ip, h2.pods[0]!.ip, `--dst-netns=${h2.name}`, '--json');
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const t = JSON.parse(r.stdout) as TraceReport;
    assert.equal(t.phase, 'Dropped');
    assert.equal(t.reason, 'NoFdb');
    assert.deepEqual(t.steps.map((s) => `${s.component} ${s.ok}`), ['Pod true', 'Routing true', 'Neighbour true', 'FDB false']);
    assert.equal(t.missing, `no FDB entry for ${peer.mac} on flannel.1: the kernel does not know which host to send the frame to`);
    assert.equal(t.fix, `bridge fdb append ${peer.mac} dev flannel.1 dst ${peer.ip} self permanent`);
    const text = await ctl(h1, 'trace', h1.pods[0]!.ip, h2.pods[0]!.ip);
    assert.match(text.stdout, /FAIL FDB/);
    assert.match(text.stdout, /result: Dropped \(NoFdb\)/);
    // and the pod really cannot reach the other one
    assert.equal((await topo.ping(h1.pods[0]!.name, h2.pods[0]!.ip, { timeoutS: 1 })).ok, false);
  } finally {
    await topo.exec(h1.name, ['bridge', 'fdb', 'append', peer.mac, 'dev', 'flannel.1', 'dst', peer.ip, 'self', 'permanent']);
  }
  assert.equal((await ctl(h1, 'trace', h1.pods[0]!.ip, h2.pods[0]!.ip)).code, 0);
});

test('the store going away: diagnose reports STORE_UNREACHABLE within its deadline, status exits 1, neither hangs', { skip }, async () => {
  const h = topo.hosts[0]!;
  await etcd.stop();
  const d = await diagnose(h, '--timeout=2');
  assert.equal(d.code, 1);
  assert.deepEqual(d.report.findings.map((f) => f.code), ['STORE_UNREACHABLE'], show(d.report.findings));
  assert.match(d.report.findings[0]!.object, /^store etcd http:\/\/192\.0\.2\.1:2379/);
  assert.ok(d.ms < 8000, `diagnose took ${d.ms} ms`);
  // the kernel-only checks still ran: the VTEP and the probes through it
  assert.equal(d.report.checks.find((c) => c.name === 'vtep')!.status, 'ok');
  assert.match(d.report.checks.find((c) => c.name === 'probes')!.detail, /^2\/2 peers answer/);
  const s = await ctl(h, 'status', '--timeout=2');
  assert.equal(s.code, 1);
  assert.match(s.stdout, /Store: +UNREACHABLE etcd http:\/\/192\.0\.2\.1:2379/);
  assert.ok(s.ms < 8000, `status took ${s.ms} ms`);
  // an endpoint that never answers (no host behind the address): the deadline, not the network, ends the wait
  const blackhole = await diagnose(h, '--timeout=2', '--etcd-endpoints=http://192.0.2.99:2379');
  assert.deepEqual(blackhole.report.findings.map((f) => f.code), ['STORE_UNREACHABLE']);
  assert.match(blackhole.report.findings[0]!.problem, /gave up after 2\.\d s/);
  assert.ok(blackhole.ms < 8000, `diagnose took ${blackhole.ms} ms`);
  const st = await ctl(h, 'status', '--timeout=2', '--etcd-endpoints=http://192.0.2.99:2379', '--json');
  assert.equal(st.code, 1);
  assert.equal((JSON.parse(st.stdout) as StatusReport).store.ok, false);
  assert.ok(st.ms < 8000, `status took ${st.ms} ms`);
  console.log(`# store unreachable: diagnose ${d.ms} ms, status ${s.ms} ms; silent endpoint: diagnose ${blackhole.ms} ms, status ${st.ms} ms`);
});
