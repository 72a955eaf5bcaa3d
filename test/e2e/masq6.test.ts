// --ip-masq for IPv6 with real traffic, on a dual-stack topology, in iptables
// mode and in nftables mode (EnableNFTables with EnableIPv6), and switching
// between the two.
//
//   inet6 (2001:db8:ff::10) ── ul (router: 2001:db8:ff::1 and br0 2001:db8::1) ── h1, h2
//
// "inet6" stands for the IPv6 internet: it sits beyond the underlay router,
// which the hosts use as their v6 default route, and has no route to the pod
// network (fd00:10:244::/56), so a pod's packet only gets an answer when it
// left its host masqueraded. The router sends traffic for the v6 pod network
// to h1, for the checks from outside into the overlay. Two flanneld (vxlan, dual-stack config from etcd,
// --ip-masq, --iptables-resync=1), one pod per host attached through the
// flannel CNI plugin (bridge + host-local, both families; the bridge plugin's
// own masquerading is off because subnet.env says FLANNEL_IPMASQ=true). In
// each mode, with TCP listeners that print the peer address they see:
//   - pod -> inet6: the listener sees the pod's HOST v6 underlay address;
//   - pod -> pod across hosts over v6: the receiving pod sees the sender pod's
//     own v6 address (not masqueraded);
//   - inet6 -> pod on h1: not masqueraded (rule 4);
//   - inet6 -> pod on h2 (through h1 and the overlay): masqueraded by h1 to
//     its flannel-v6.1 address (rule 6; in nftables mode only because our
//     rule 4 keeps the iptables meaning, see src/kernel/nftables.ts).
// The v6 rules are checked rule by rule (ip6tables-save, nft list), the v6
// table is repaired after deletion, and each mode removes the other's.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { cniInvoke, findPlugin } from '../../src/lab/lab.js';
import { isRoot, Topology, type BgProc, type Host } from '../helpers/netns.js';
import type { FlanneldProc } from '../helpers/flanneld.js';

const cniDir = findPlugin('bridge');
const skip = !isRoot() ? 'needs root (network namespaces)' : !cniDir ? 'needs the CNI bridge and host-local plugins (apt-get install containernetworking-plugins)' : false;

const N = '10.244.0.0/16';
const N6 = 'fd00:10:244::/56';
const INET6 = '2001:db8:ff::10';
const INET6_GW = '2001:db8:ff::1';
const FLANNELD_ARGS = ['--iface=eth0', '--ip-masq', '--iptables-resync=1'];
const PORT = 8080;

interface Pod6 {
  ns: string;
  ip6: string;
  listener: BgProc;
}

let topo: Topology;
let procs: FlanneldProc[] = [];
let inetListener: BgProc;
let inet: string;
const pods = new Map<Host, Pod6>();

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const config = (nftables: boolean, ipv6 = true) =>
  JSON.stringify({ Network: N, ...(ipv6 ? { EnableIPv6: true, IPv6Network: N6 } : {}), EnableNFTables: nftables, Backend: { Type: 'vxlan' } });
/** this host's v6 lease subnet, e.g. fd00:10:244:1c::/64 */
const subnet6Of = (h: Host) => topo.subnetEnv(h).raw.FLANNEL_IPV6_SUBNET!.replace(/::1\/64$/, '::/64');
const subnetOf = (h: Host) => topo.subnetEnv(h).FLANNEL_SUBNET.replace(/\.1\//, '.0/');
const h = (i: number) => topo.hosts[i - 1]!;

/** A TCP server in ns that prints each peer's address and answers `hello`. */
function listen(ns: string, label: string): BgProc {
  return topo.spawn(ns, [
    process.execPath,
    '-e',
    `require('net').createServer((c)=>{console.log(c.remoteAddress);c.end('hello')}).listen(${PORT},'::',()=>console.error('listening'))`,
  ], { label });
}

async function waitListening(p: BgProc): Promise<void> {
  for (let i = 0; !/listening/.test(p.stderr); i++) {
    assert.ok(i < 100 && !p.done, `${p.label} did not start: ${p.stderr}`);
    await sleep(50);
  }
}

/** Connects from `fromNs` to [to]:PORT over TCP and returns the peer address `listener` printed for it. */
async function peerSeen(fromNs: string, to: string, listener: BgProc): Promise<string> {
  const seen = listener.stdout.split('\n').length;
  const client =
    `const c=require('net').connect(${PORT},process.argv[1]);let d='';c.setTimeout(3000,()=>{console.error('timeout');process.exit(2)});` +
    "c.on('data',(x)=>d+=x);c.on('end',()=>{console.log(d);process.exit(0)});c.on('error',(e)=>{console.error(e.message);process.exit(1)});";
  const r = await topo.run(fromNs, [process.execPath, '-e', client, to], { timeoutMs: 10_000 });
  if (r.code !== 0 || r.stdout.trim() !== 'hello') {
    const diag = [];
    for (const host of topo.hosts) {
      for (const cmd of [['ip', '-6', 'route'], ['ip6tables-save'], ['nft', 'list', 'ruleset']]) diag.push(`## ${host.name}: ${cmd.join(' ')}\n${(await topo.run(host.name, cmd)).stdout}`);
    }
    assert.fail(`${fromNs} -> [${to}]:${PORT} failed (code ${r.code}: ${r.stderr.trim()})\n${diag.join('\n')}`);
  }
  for (let i = 0; i < 50 && listener.stdout.split('\n').length === seen; i++) await sleep(20);
  return listener.stdout.split('\n')[seen - 1]!.trim();
}

async function startMode(nftables: boolean, ipv6 = true): Promise<void> {
  await Promise.all(procs.map((p) => p.stop()));
  await topo.etcdctl('put', '/coreos.com/network/config', config(nftables, ipv6));
  procs = topo.hosts.map((host) => topo.startFlanneld(host, FLANNELD_ARGS));
  await Promise.all(procs.map((p) => p.waitReady(30_000)));
}

/** `ip6tables-save -t <table>` without its comment lines (timestamps), chain counters zeroed. */
async function ip6tablesSave(host: Host, table: 'nat' | 'filter'): Promise<string[]> {
  const lines = (await topo.exec(host.name, ['ip6tables-save', '-t', table])).split('\n').filter((l) => l && !l.startsWith('#'));
  return lines.map((l) => l.replace(/ \[\d+:\d+\]$/, ' [0:0]'));
}

async function flannelIptablesLines(host: Host): Promise<string[]> {
  const out: string[] = [];
  for (const bin of ['iptables-save', 'ip6tables-save']) out.push(...(await topo.exec(host.name, [bin])).split('\n').filter((l) => /FLANNEL|flanneld/.test(l)));
  return out;
}

async function nftTables(host: Host): Promise<string[]> {
  return (await topo.exec(host.name, ['nft', 'list', 'tables'])).trim().split('\n').filter((l) => /flannel/.test(l));
}

/** flannel-ipv6 as `nft list` prints it, as flannel's nftables mode writes it (rule 4 with the iptables meaning, see src/kernel/nftables.ts). */
function expectedNftV6(host: Host): string {
  const S = subnet6Of(host);
  return [
    'table ip6 flannel-ipv6 {',
    '\tcomment "rules for flannel-ipv6"',
    '\tchain postrtg {',
    '\t\tcomment "chain to manage traffic masquerading by flannel"',
    '\t\ttype nat hook postrouting priority srcnat; policy accept;',
    '\t\tmeta mark 0x00004000 return',
    `\t\tip6 saddr ${S} ip6 daddr ${N6} return`,
    `\t\tip6 saddr ${N6} ip6 daddr ${S} return`,
    `\t\tip6 saddr != ${N6} ip6 daddr ${S} return`, // flannel: `ip6 saddr != S ip6 daddr N return`
    `\t\tip6 saddr ${N6} ip6 daddr != ff00::/8 masquerade fully-random`,
    `\t\tip6 saddr != ${N6} ip6 daddr ${N6} masquerade fully-random`,
    '\t}',
    '',
    '\tchain forward {',
    '\t\tcomment "chain to accept flannel traffic"',
    '\t\ttype filter hook forward priority filter; policy accept;',
    `\t\tip6 saddr ${N6} accept`,
    `\t\tip6 daddr ${N6} accept`,
    '\t}',
    '}',
    '',
  ].join('\n');
}

async function trafficChecks(): Promise<void> {
  const [p1, p2] = [pods.get(h(1))!, pods.get(h(2))!];
  // pods leaving the overlay over v6: their host's v6 underlay address
  assert.equal(await peerSeen(p1.ns, INET6, inetListener), h(1).ip6, 'pod on h1 -> inet6: source is h1');
  assert.equal(await peerSeen(p2.ns, INET6, inetListener), h(2).ip6, 'pod on h2 -> inet6: source is h2');
  // pod to pod across hosts over v6: never masqueraded
  assert.equal(await peerSeen(p1.ns, p2.ip6, p2.listener), p1.ip6, 'h1 pod -> h2 pod keeps its v6 source');
  assert.equal(await peerSeen(p2.ns, p1.ip6, p1.listener), p2.ip6, 'h2 pod -> h1 pod keeps its v6 source');
  // from outside into the overlay through h1 (the router's route for the v6 pod network)
  assert.equal(await peerSeen(inet, p1.ip6, p1.listener), INET6, 'inet6 -> pod on h1 (rule 4): not masqueraded');
  assert.equal(await peerSeen(inet, p2.ip6, p2.listener), subnet6Of(h(1)).replace(/\/64$/, ''), 'inet6 -> pod on h2 via h1 (rule 6): masqueraded to h1\'s flannel-v6.1 address');
}

before(async () => {
  if (skip) return;
  topo = await Topology.create({ hosts: 2, podsPerHost: 0, ipv6: true });
  const ul = topo.underlay;
  inet = await topo.createNamespace('inet6');
  await topo.ip(ul, 'link', 'add', 'vinet', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', inet);
  await topo.ip(ul, 'addr', 'add', `${INET6_GW}/64`, 'dev', 'vinet', 'nodad');
  await topo.ip(ul, 'link', 'set', 'vinet', 'up');
  await topo.ip(inet, 'addr', 'add', `${INET6}/64`, 'dev', 'eth0', 'nodad');
  await topo.ip(inet, 'link', 'set', 'eth0', 'up');
  await topo.ip(inet, '-6', 'route', 'add', 'default', 'via', INET6_GW);
  await topo.exec(ul, ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
  await topo.ip(ul, '-6', 'route', 'add', N6, 'via', h(1).ip6!);
  inetListener = listen(inet, 'inet6 listener');
  await topo.startEtcd();
  await startMode(false);
  for (const host of topo.hosts) {
    const ns = await topo.createNamespace(`h${host.index}p1`);
    const res = JSON.parse(await cniInvoke({ name: host.name, dir: path.dirname(topo.subnetFile(host)) }, 'ADD', ns, cniDir!)) as { ips: Array<{ address: string }> };
    const ip6 = res.ips.map((i) => i.address).find((a) => a.includes(':'));
    assert.ok(ip6, `pod ${ns} got an IPv6 address: ${JSON.stringify(res)}`);
    pods.set(host, { ns, ip6: ip6.split('/')[0]!, listener: listen(ns, `listener in ${ns}`) });
  }
  await waitListening(inetListener);
  for (const p of pods.values()) await waitListening(p.listener);
});

after(async () => {
  for (const p of procs) await p.stop();
  await topo?.destroy();
});

test('iptables mode, dual-stack: flannel\'s ip6tables FLANNEL-POSTRTG and FLANNEL-FWD rules, rule for rule, and nothing else NATs', { skip }, async () => {
  for (const host of topo.hosts) {
    const S = subnet6Of(host);
    assert.deepEqual(await ip6tablesSave(host, 'nat'), [
      '*nat',
      ':PREROUTING ACCEPT [0:0]',
      ':INPUT ACCEPT [0:0]',
      ':OUTPUT ACCEPT [0:0]',
      ':POSTROUTING ACCEPT [0:0]',
      ':FLANNEL-POSTRTG - [0:0]',
      '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
      '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
      `-A FLANNEL-POSTRTG -s ${S} -d ${N6} -m comment --comment "flanneld masq" -j RETURN`,
      `-A FLANNEL-POSTRTG -s ${N6} -d ${S} -m comment --comment "flanneld masq" -j RETURN`,
      `-A FLANNEL-POSTRTG ! -s ${N6} -d ${S} -m comment --comment "flanneld masq" -j RETURN`,
      `-A FLANNEL-POSTRTG -s ${N6} ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`,
      `-A FLANNEL-POSTRTG ! -s ${N6} -d ${N6} -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`,
      'COMMIT',
    ]);
    assert.ok((await ip6tablesSave(host, 'filter')).includes(`-A FLANNEL-FWD -d ${N6} -m comment --comment "flanneld forward" -j ACCEPT`));
    assert.deepEqual(await nftTables(host), []);
  }
});

test('iptables mode: v6 pods leave as their host, v6 pod-to-pod keeps its source, outside v6 traffic NATed as flannel intends', { skip }, async () => {
  await trafficChecks();
});

test('switch to nftables mode with EnableIPv6: ip(6)tables chains gone, flannel-ipv6 holds flannel\'s rules next to flannel-ipv4', { skip }, async () => {
  const subnets = topo.hosts.map(subnet6Of);
  await startMode(true);
  assert.deepEqual(topo.hosts.map(subnet6Of), subnets, 'same leases');
  for (const host of topo.hosts) {
    assert.deepEqual(await flannelIptablesLines(host), [], `${host.name}: no FLANNEL chain or jump left in iptables or ip6tables`);
    assert.deepEqual(await nftTables(host), ['table ip flannel-ipv4', 'table ip6 flannel-ipv6']);
    assert.equal(await topo.exec(host.name, ['nft', 'list', 'table', 'ip6', 'flannel-ipv6']), expectedNftV6(host));
    assert.match(await topo.exec(host.name, ['nft', 'list', 'table', 'ip', 'flannel-ipv4']), new RegExp(`ip saddr != ${N.replace(/\./g, '\\.')} ip daddr ${subnetOf(host).replace(/\./g, '\\.')} return`));
  }
  assert.ok(procs[0]!.lines.some((l) => /removed flannel iptables rules: .*ip6tables nat FLANNEL-POSTRTG, ip6tables filter FLANNEL-FWD/.test(l.msg)));
});

test('nftables mode: v6 pods leave as their host, v6 pod-to-pod keeps its source, outside v6 traffic NATed as in iptables mode', { skip }, async () => {
  await trafficChecks();
});

test('nftables mode: a deleted v6 masquerade rule and a deleted flannel-ipv6 table are repaired within the 1 s resync', { skip }, async () => {
  const host = h(2);
  const want = expectedNftV6(host);
  const handle = async (i: number) =>
    String((JSON.parse(await topo.exec(host.name, ['nft', '-a', '-j', 'list', 'chain', 'ip6', 'flannel-ipv6', 'postrtg'])) as { nftables: Array<{ rule?: { handle: number } }> }).nftables.filter((x) => x.rule)[i]!.rule!.handle);
  const breakages: Array<[string, () => Promise<unknown>]> = [
    ['deleted v6 rule 5', async () => topo.exec(host.name, ['nft', 'delete', 'rule', 'ip6', 'flannel-ipv6', 'postrtg', 'handle', await handle(4)])],
    ['deleted v6 table', async () => topo.exec(host.name, ['nft', 'delete', 'table', 'ip6', 'flannel-ipv6'])],
  ];
  for (const [what, breakIt] of breakages) {
    await breakIt();
    assert.notEqual((await topo.run(host.name, ['nft', 'list', 'table', 'ip6', 'flannel-ipv6'])).stdout, want, `${what}: broken`);
    const t0 = Date.now();
    while ((await topo.run(host.name, ['nft', 'list', 'table', 'ip6', 'flannel-ipv6'])).stdout !== want) {
      assert.ok(Date.now() - t0 < 2500, `${what}: repaired within the resync period`);
      await sleep(50);
    }
  }
  assert.equal(procs[1]!.lines.filter((l) => /nftables rules of ip6 flannel-ipv6 are missing or changed/.test(l.msg)).length, breakages.length);
  assert.equal(await peerSeen(pods.get(host)!.ns, INET6, inetListener), host.ip6, 'masquerading again');
});

test('switch back to iptables mode: flannel-ipv4 and flannel-ipv6 gone, ip6tables rules back and masquerading', { skip }, async () => {
  await startMode(false);
  for (const host of topo.hosts) {
    assert.deepEqual(await nftTables(host), [], `${host.name}: both flannel tables deleted`);
    assert.equal((await flannelIptablesLines(host)).length, 2 * (2 + 2 + 6 + 2), 'both families: 2 chains, 2 jumps, 6 + 2 rules');
  }
  assert.ok(procs[0]!.lines.some((l) => /removed flannel nftables tables: ip flannel-ipv4, ip6 flannel-ipv6/.test(l.msg)));
  assert.equal(await peerSeen(pods.get(h(1))!.ns, INET6, inetListener), h(1).ip6);
});

test('dropping EnableIPv6 removes the v6 rules an earlier dual-stack run left, in either mode', { skip }, async () => {
  // iptables mode, dual-stack (the previous test) -> iptables mode, v4 only
  await startMode(false, false);
  for (const host of topo.hosts) {
    const lines = await flannelIptablesLines(host);
    assert.equal(lines.length, 2 + 2 + 6 + 2, `${host.name}: only the v4 chains: ${lines.join(' | ')}`);
    assert.ok(lines.every((l) => !l.includes('fd00:')), 'no v6 address in any FLANNEL rule');
    assert.deepEqual((await ip6tablesSave(host, 'nat')).filter((l) => /FLANNEL|flanneld/.test(l)), [], `${host.name}: ip6tables FLANNEL-POSTRTG gone`);
  }
  assert.ok(procs[0]!.lines.some((l) => /removed flannel iptables rules: ip6tables nat FLANNEL-POSTRTG, ip6tables filter FLANNEL-FWD/.test(l.msg)));

  // nftables mode, dual-stack -> nftables mode, v4 only
  await startMode(true);
  for (const host of topo.hosts) assert.deepEqual(await nftTables(host), ['table ip flannel-ipv4', 'table ip6 flannel-ipv6']);
  await startMode(true, false);
  for (const host of topo.hosts) assert.deepEqual(await nftTables(host), ['table ip flannel-ipv4'], `${host.name}: flannel-ipv6 deleted`);
  assert.ok(procs[0]!.lines.some((l) => /removed flannel nftables tables: ip6 flannel-ipv6$/.test(l.msg)));
});
