// The edge gateway (issue 12; the article's §7): an existing L2 segment, the
// "office LAN", reached from the pods through edge nodes.
//
//   ul (192.0.2.1, etcd) ── h1, h2, h3 (flannel-ts), h4 (real flanneld v0.28)
//   lan (a switch: bridge "sw") ── lan1 192.168.50.10, lan2 192.168.50.11
//                                ── h1: br-lan 192.168.50.1 (holds its NIC lan0)
//                                ── h2: br-lan 192.168.50.2 (a second edge node)
//
// h1 and h2 run flanneld --edge-network 192.168.50.0/24 --edge-iface br-lan;
// h3 is a plain node. Checked: the exact lease bytes (EdgeNetworks after
// flannel's fields), the exact route on h3 (via the lower-subnet edge's
// flannel.1 address, onlink, proto 222), pods on h3 <-> LAN hosts without
// --edge-masq (LAN hosts route the pod Network via h1; they see the pod's
// address) and with it (no route back needed; they see the edge's LAN
// address), real flanneld on h4 decoding our edge leases and still
// programming our nodes, refusals, --edge-allow (FLANNEL-EDGE), and failover: the chosen edge node dies
// (NIC down, flanneld SIGKILLed, its lease deleted) and h3 switches to the
// other; the route-switch time and the pod -> LAN ping gap are measured.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { isRoot, Topology, type BgProc, type Host, type Pod } from '../helpers/netns.js';
import { FlanneldProc } from '../helpers/flanneld.js';
import { realFlanneldBinary } from '../helpers/kube.js';

const flannelBin = isRoot() ? await realFlanneldBinary() : null;
const skip = isRoot() ? false : 'needs root (network namespaces)';
const N = '10.244.0.0/16';
const LAN = '192.168.50.0/24';
const LAN1 = '192.168.50.10';
const LAN2 = '192.168.50.11';
const EDGE_IP: Record<number, string> = { 1: '192.168.50.1', 2: '192.168.50.2' };
const EDGE_ARGS = ['--edge-network', LAN, '--edge-iface', 'br-lan'];

let topo: Topology;
let h1: Host, h2: Host, h3: Host, h4: Host;
let p3: Pod;
let lanSw: string, lan1: string, lan2: string;
const procs = new Map<Host, FlanneldProc>();
let real: BgProc | null = null;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const subnetOf = (h: Host) => topo.subnetEnv(h).FLANNEL_SUBNET.replace(/\.1\//, '.0/');
const vtepOf = (h: Host) => subnetOf(h).replace(/\/\d+$/, '');
const keyOf = (h: Host) => `/coreos.com/network/subnets/${subnetOf(h).replace('/', '-')}`;
const octet = (h: Host) => Number(vtepOf(h).split('.')[2]);

async function waitUntil(what: string, pred: () => Promise<boolean> | boolean, timeoutMs = 15_000, stepMs = 50): Promise<void> {
  const t0 = Date.now();
  while (!(await pred())) {
    if (Date.now() - t0 > timeoutMs) assert.fail(`timed out: ${what}`);
    await sleep(stepMs);
  }
}

async function edgeRoute(h: Host): Promise<string> {
  return (await topo.exec(h.name, ['ip', 'route', 'show', LAN])).trim();
}

async function start(h: Host, args: string[]): Promise<FlanneldProc> {
  await procs.get(h)?.stop();
  const p = topo.startFlanneld(h, ['--iface=eth0', ...args]);
  procs.set(h, p);
  await p.waitReady(30_000);
  return p;
}

/** Sources of the echo requests lan1 sees while `from` pings it. */
async function sourcesAtLan1(from: string): Promise<string[]> {
  let ok = false;
  const out = await topo.capture(lan1, 'eth0', 'icmp[icmptype] == icmp-echo', async () => {
    ok = (await topo.ping(from, LAN1, { count: 2, timeoutS: 2 })).ok;
  });
  assert.ok(ok, `${from} -> ${LAN1} not answered\n${out}`);
  return [...new Set([...out.matchAll(/ (\d+\.\d+\.\d+\.\d+) > \d+\.\d+\.\d+\.\d+: ICMP echo request/g)].map((m) => m[1]!))];
}

/** The edge node h3 uses (lower subnet) and the standby. */
function chosen(): { edge: Host; standby: Host } {
  return octet(h1) < octet(h2) ? { edge: h1, standby: h2 } : { edge: h2, standby: h1 };
}

before(async () => {
  if (skip) return;
  topo = await Topology.create({ hosts: 4, podsPerHost: 1 });
  [h1, h2, h3, h4] = topo.hosts as [Host, Host, Host, Host];
  // The office LAN: a switch namespace and two plain hosts, no flannel.
  lanSw = await topo.createNamespace('lan');
  await topo.ip(lanSw, 'link', 'add', 'sw', 'type', 'bridge');
  await topo.ip(lanSw, 'link', 'set', 'sw', 'up');
  for (const [i, ip] of [[1, LAN1], [2, LAN2]] as const) {
    const ns = await topo.createNamespace(`lan${i}`);
    if (i === 1) lan1 = ns;
    else lan2 = ns;
    await topo.ip(lanSw, 'link', 'add', `p-lan${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    await topo.ip(lanSw, 'link', 'set', `p-lan${i}`, 'master', 'sw', 'up');
    await topo.ip(ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0');
    await topo.ip(ns, 'link', 'set', 'eth0', 'up');
  }
  // Edge nodes: the article's bridge holding the NIC to the segment, with an address on the bridge.
  for (const h of [h1, h2]) {
    await topo.ip(lanSw, 'link', 'add', `p-h${h.index}`, 'type', 'veth', 'peer', 'name', 'lan0', 'netns', h.name);
    await topo.ip(lanSw, 'link', 'set', `p-h${h.index}`, 'master', 'sw', 'up');
    await topo.ip(h.name, 'link', 'add', 'br-lan', 'type', 'bridge');
    await topo.ip(h.name, 'link', 'set', 'lan0', 'master', 'br-lan', 'up');
    await topo.ip(h.name, 'addr', 'add', `${EDGE_IP[h.index]!}/24`, 'dev', 'br-lan');
    await topo.ip(h.name, 'link', 'set', 'br-lan', 'up');
  }
  // Without --edge-masq the LAN hosts need a route back to the pod Network through an edge node.
  for (const ns of [lan1, lan2]) await topo.ip(ns, 'route', 'add', N, 'via', EDGE_IP[1]!);
  await topo.startEtcd();
  await topo.etcdctl('put', '/coreos.com/network/config', JSON.stringify({ Network: N, Backend: { Type: 'vxlan' } }));
  await Promise.all([start(h1, EDGE_ARGS), start(h2, EDGE_ARGS), start(h3, [])]);
  if (flannelBin) {
    real = topo.spawn(h4.name, [flannelBin, '--etcd-endpoints=http://192.0.2.1:2379', '--iface=eth0', `--subnet-file=${topo.subnetFile(h4)}`], { label: 'real flanneld' });
    await waitUntil('real flanneld wrote subnet.env', () => existsSync(topo.subnetFile(h4)) || real!.done, 30_000);
    assert.equal(real.done, false, `real flanneld exited:\n${real.stderr.slice(-3000)}`);
  }
  for (const h of flannelBin ? [h1, h2, h3, h4] : [h1, h2, h3]) await topo.wirePods(h);
  p3 = h3.pods[0]!;
});

after(async () => {
  await topo?.destroy();
});

test('the edge lease is flannel\'s lease JSON plus "EdgeNetworks", byte for byte', { skip }, async () => {
  for (const h of [h1, h2]) {
    const mac = (JSON.parse(await topo.exec(h.name, ['ip', '-j', 'link', 'show', 'flannel.1'])) as Array<{ address: string }>)[0]!.address;
    const value = (await topo.etcdctl('get', keyOf(h), '--print-value-only')).trim();
    assert.equal(value, `{"PublicIP":"${h.ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac}"},"EdgeNetworks":["${LAN}"]}`);
  }
  const plain = (await topo.etcdctl('get', keyOf(h3), '--print-value-only')).trim();
  assert.doesNotMatch(plain, /EdgeNetworks/, 'a node without --edge-network publishes flannel\'s bytes');
});

test('h3 routes the segment via the lower-subnet edge node\'s VTEP (restored when deleted); the edge nodes use their bridge', { skip }, async () => {
  const { edge } = chosen();
  const want = `${LAN} via ${vtepOf(edge)} dev flannel.1 proto 222 onlink`;
  await waitUntil(`edge route on h3: ${want}`, async () => (await edgeRoute(h3)) === want);
  for (const h of [h1, h2]) assert.equal(await edgeRoute(h), `${LAN} dev br-lan proto kernel scope link src ${EDGE_IP[h.index]!}`, `${h.name}: its own connected route only`);
  // the last choice logged (an edge node that came up later with a lower subnet takes over: "(was …)")
  const choices = procs.get(h3)!.lines.filter((l) => l.msg.startsWith(`edge network ${LAN}: via `));
  assert.match(choices[choices.length - 1]!.msg, new RegExp(`^edge network ${LAN.replace(/\./g, '\\.')}: via ${subnetOf(edge).replace('/', '-').replace(/\./g, '\\.')}( \\(was \\S+\\))?$`));
  // someone deletes the route: the kernel notification brings it back at once
  const t0 = Date.now();
  await topo.ip(h3.name, 'route', 'del', LAN);
  await waitUntil('edge route restored', async () => (await edgeRoute(h3)) === `${LAN} via ${vtepOf(edge)} dev flannel.1 proto 222 onlink`, 5000, 5);
  console.log(`# deleted edge route restored in ${Date.now() - t0} ms`);
});

test('without --edge-masq: pods on h3 <-> LAN hosts, the LAN sees the pod\'s own address', { skip }, async () => {
  for (const ip of [LAN1, LAN2]) assert.ok((await topo.ping(p3.name, ip, { count: 2 })).ok, `h3 pod -> ${ip}`);
  assert.deepEqual(await sourcesAtLan1(p3.name), [p3.ip]);
  for (const ns of [lan1, lan2]) assert.ok((await topo.ping(ns, p3.ip, { count: 2 })).ok, `${ns} -> h3 pod`);
  // pods on the edge nodes themselves reach the LAN through their own bridge
  assert.ok((await topo.ping(h1.pods[0]!.name, LAN2, { count: 1 })).ok);
});

test('real flanneld (v0.28) decodes our edge leases and still programs our edge node; it just does not route the segment', { skip: skip || (flannelBin ? false : 'SKIPPED: real flanneld unavailable (Go is not installed)') }, async () => {
  const r = real!;
  await waitUntil('real flanneld routes h1', async () => (await topo.exec(h4.name, ['ip', 'route', 'show', subnetOf(h1)])).includes('flannel.1'));
  assert.match(await topo.exec(h4.name, ['ip', 'route', 'show', subnetOf(h1)]), new RegExp(`^${subnetOf(h1).replace(/\./g, '\\.')} via ${vtepOf(h1).replace(/\./g, '\\.')} dev flannel\\.1 onlink`));
  assert.ok((await topo.ping(h4.pods[0]!.name, h1.pods[0]!.ip, { count: 2 })).ok, 'real node pod -> our edge node pod');
  assert.ok((await topo.ping(h1.pods[0]!.name, h4.pods[0]!.ip, { count: 2 })).ok, 'our edge node pod -> real node pod');
  assert.equal(await edgeRoute(h4), '', 'real flannel ignores EdgeNetworks');
  assert.doesNotMatch(r.stderr, /error decoding|failed to unmarshal|invalid character|json:/i);
  assert.equal(r.done, false);
});

test('refusals (exit 1, one line naming the flag): an edge network overlapping the flannel Network, --edge-allow outside it, a non-vxlan backend, --edge-masq alone', { skip }, async () => {
  const runOnce = async (args: string[]) => {
    const f = new FlanneldProc([`--etcd-endpoints=http://192.0.2.1:2379`, '--iface=eth0', `--subnet-file=${topo.tmpDir}/refused.env`, ...args], { prefix: ['ip', 'netns', 'exec', h3.name] });
    const code = await Promise.race([f.exited, sleep(30_000).then(() => 'timeout' as const)]);
    if (code === 'timeout') await f.stop('SIGKILL');
    return { code, text: f.raw.join('\n') };
  };
  const a = await runOnce(['--edge-network', '10.244.200.0/24', '--edge-iface', 'eth0']);
  assert.equal(a.code, 1);
  assert.match(a.text, /--edge-network: 10\.244\.200\.0\/24 overlaps the flannel Network 10\.244\.0\.0\/16/);
  const b = await runOnce([...EDGE_ARGS, '--edge-allow', '10.245.1.0/24']);
  assert.equal(b.code, 1);
  assert.match(b.text, /--edge-allow: 10\.245\.1\.0\/24 is not inside the flannel Network 10\.244\.0\.0\/16/);
  writeFileSync(`${topo.tmpDir}/hostgw.json`, JSON.stringify({ Network: N, Backend: { Type: 'host-gw' } }));
  const c = await runOnce([...EDGE_ARGS, `--net-config-path=${topo.tmpDir}/hostgw.json`]);
  assert.equal(c.code, 1);
  assert.match(c.text, /--edge-network: only the vxlan backend can be an edge gateway \(Backend\.Type is "host-gw"\)/);
  const d = await runOnce(['--edge-masq']);
  assert.equal(d.code, 1);
  assert.match(d.text, /^flanneld: --edge-masq: needs --edge-network and --edge-iface$/m);
  // the JSON log line goes to log shippers; people get one plain line
  assert.equal(c.text.split('\n').filter((l) => /edge/.test(l) && !l.startsWith('{')).length, 1, `one line:\n${c.text}`);
});

test('with --edge-masq: the LAN needs no route back and sees the edge node\'s LAN address', { skip }, async () => {
  await Promise.all([start(h1, [...EDGE_ARGS, '--edge-masq']), start(h2, [...EDGE_ARGS, '--edge-masq'])]);
  for (const h of [h1, h2]) {
    const nat = (await topo.exec(h.name, ['iptables-save', '-t', 'nat'])).split('\n').filter((l) => /EDGE/.test(l) && !l.startsWith(':'));
    assert.deepEqual(nat, [
      '-A POSTROUTING -m comment --comment "flanneld edge masq" -j FLANNEL-EDGE-MASQ',
      `-A FLANNEL-EDGE-MASQ -s ${N} -d ${LAN} -o br-lan -m comment --comment "flanneld edge masq" -j MASQUERADE`,
    ]);
  }
  for (const ns of [lan1, lan2]) await topo.ip(ns, 'route', 'del', N);
  const { edge } = chosen();
  assert.deepEqual(await sourcesAtLan1(p3.name), [EDGE_IP[edge.index]!]);
  assert.ok((await topo.ping(p3.name, LAN2, { count: 2 })).ok);
});

test('--edge-allow: only the allowed pod subnet reaches the LAN; FLANNEL-EDGE goes ahead of FLANNEL-FWD', { skip }, async () => {
  const S3 = subnetOf(h3);
  await Promise.all([start(h1, [...EDGE_ARGS, '--edge-masq', '--edge-allow', S3]), start(h2, [...EDGE_ARGS, '--edge-masq', '--edge-allow', S3])]);
  for (const h of [h1, h2]) {
    const filter = (await topo.exec(h.name, ['iptables-save', '-t', 'filter'])).split('\n').filter((l) => /FLANNEL|flanneld/.test(l) && !l.startsWith(':'));
    assert.deepEqual(filter, [
      '-A FORWARD -m comment --comment "flanneld edge" -j FLANNEL-EDGE',
      '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
      `-A FLANNEL-EDGE -s ${S3} -d ${LAN} -o br-lan -m comment --comment "flanneld edge" -j ACCEPT`,
      `-A FLANNEL-EDGE -s ${N} -d ${LAN} -o br-lan -m comment --comment "flanneld edge" -j DROP`,
      `-A FLANNEL-EDGE -s ${LAN} -d ${S3} -i br-lan -m comment --comment "flanneld edge" -j ACCEPT`,
      `-A FLANNEL-EDGE -s ${LAN} -d ${N} -i br-lan -m comment --comment "flanneld edge" -j DROP`,
      `-A FLANNEL-FWD -s ${N} -m comment --comment "flanneld forward" -j ACCEPT`,
      `-A FLANNEL-FWD -d ${N} -m comment --comment "flanneld forward" -j ACCEPT`,
    ]);
  }
  assert.ok((await topo.ping(p3.name, LAN1, { count: 2 })).ok, 'allowed: h3 pod -> LAN');
  for (const h of [h1, h2]) assert.equal((await topo.ping(h.pods[0]!.name, LAN1, { count: 1, timeoutS: 1 })).ok, false, `not allowed: ${h.name} pod -> LAN`);
});

/** Largest gap between consecutive replies of a `ping -D` run, in ms. */
function pingGap(stdout: string): { gap: number; replies: number[] } {
  const stamps = [...stdout.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from/gm)].map((m) => Number(m[1]) * 1000);
  let gap = 0;
  for (let i = 1; i < stamps.length; i++) gap = Math.max(gap, stamps[i]! - stamps[i - 1]!);
  return { gap, replies: stamps };
}

test('the chosen edge node loses its LAN link while flanneld runs: it withdraws the segment, h3 moves to the standby, and back when the link returns', { skip }, async () => {
  const { edge, standby } = chosen();
  const viaEdge = `${LAN} via ${vtepOf(edge)} dev flannel.1 proto 222 onlink`;
  const viaStandby = `${LAN} via ${vtepOf(standby)} dev flannel.1 proto 222 onlink`;
  assert.equal(await edgeRoute(h3), viaEdge);
  const ping = topo.spawn(p3.name, ['ping', '-n', '-D', '-i', '0.05', '-W', '1', '-w', '8', LAN1], { label: 'link-failure ping' });
  await sleep(1500);
  const t0 = Date.now();
  await topo.ip(edge.name, 'link', 'set', 'lan0', 'down');
  await waitUntil('h3 moved to the standby', async () => (await edgeRoute(h3)) === viaStandby, 10_000, 5);
  const tSwitch = Date.now() - t0;
  assert.match((await topo.etcdctl('get', keyOf(edge), '--print-value-only')).trim(), /,"EdgeNetworks":\[\]\}$/, 'withdrawn from the lease');
  await sleep(1500);
  const t1 = Date.now();
  await topo.ip(edge.name, 'link', 'set', 'lan0', 'up');
  await waitUntil('h3 back on the lower-subnet edge', async () => (await edgeRoute(h3)) === viaEdge, 10_000, 5);
  const tBack = Date.now() - t1;
  await ping.exited;
  const { gap, replies } = pingGap(ping.stdout);
  console.log(`# edge link failure: link down -> h3 switched in ${tSwitch} ms; link up -> back in ${tBack} ms; pod -> LAN ping gap ${gap.toFixed(0)} ms (50 ms interval, ${replies.length} replies)`);
  assert.ok(tSwitch < 3000 && tBack < 3000);
  assert.ok(gap < 3000, `ping gap ${gap} ms`);
  assert.ok(procs.get(edge)!.lines.some((l) => l.msg === `edge network ${LAN}: its interface is down, has no carrier or lost its address; withdrawing it from our lease`));
  assert.ok((await topo.ping(p3.name, LAN1, { count: 1 })).ok);
});

test('failover: the chosen edge node dies and its lease is deleted; h3 switches to the standby (times measured)', { skip }, async () => {
  const { edge, standby } = chosen();
  assert.equal(await edgeRoute(h3), `${LAN} via ${vtepOf(edge)} dev flannel.1 proto 222 onlink`);
  const key = keyOf(edge);
  // 20 pings a second from the h3 pod to lan1, with receive timestamps
  const ping = topo.spawn(p3.name, ['ping', '-n', '-D', '-i', '0.05', '-W', '1', '-w', '10', LAN1], { label: 'failover ping' });
  await sleep(2000);
  // the edge node fails: its LAN side goes dark, its flanneld dies; then its lease is removed
  const tFail = Date.now();
  await topo.ip(edge.name, 'link', 'set', 'lan0', 'down');
  await procs.get(edge)!.stop('SIGKILL');
  const tDel = Date.now();
  await topo.etcdctl('del', key);
  const tDelDone = Date.now();
  let tSwitch = 0;
  const want = `${LAN} via ${vtepOf(standby)} dev flannel.1 proto 222 onlink`;
  await waitUntil('h3 switched to the standby edge', async () => {
    if ((await edgeRoute(h3)) !== want) return false;
    tSwitch = Date.now();
    return true;
  }, 10_000, 5);
  await ping.exited;
  const { gap, replies: stamps } = pingGap(ping.stdout);
  assert.ok(stamps.length > 20, `ping replies:\n${ping.stdout}`);
  const lastReply = stamps[stamps.length - 1]!;
  console.log(`# edge failover: lease deleted -> route switched on h3 in ${tSwitch - tDel} ms (etcdctl del took ${tDelDone - tDel} ms); failure -> switched ${tSwitch - tFail} ms; pod -> LAN ping gap ${gap.toFixed(0)} ms (50 ms interval)`);
  assert.ok(tSwitch - tDel < 2000, `route switched ${tSwitch - tDel} ms after the lease delete`);
  assert.ok(gap < 3000, `ping gap ${gap} ms`);
  assert.ok(lastReply > tSwitch, 'replies continue after the switch');
  assert.ok(procs.get(h3)!.lines.some((l) => l.msg === `edge network ${LAN}: via ${subnetOf(standby).replace('/', '-')} (was ${subnetOf(edge).replace('/', '-')})`));
  // the LAN now sees the standby's address
  assert.deepEqual(await sourcesAtLan1(p3.name), [EDGE_IP[standby.index]!]);
});
