// Dual-stack VXLAN end to end, on a dual-stack underlay (192.0.2.0/24 and
// 2001:db8::/64, inside the test's namespaces only):
//
//   h1, h2  flanneld with the dual-stack config from etcd
//           ({"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56"}, vxlan)
//   h3      flanneld with a v4-only config (--net-config-path), same etcd
//
// One pod per host, attached through the flannel CNI plugin with the real
// bridge + host-local plugins. Asserts: flannel's lease key and value (with
// PublicIPv6 and BackendV6Data) and subnet.env; flannel-v6.1 as flannel makes
// it; the exact v6 neighbour, FDB and route entries; pods with both
// addresses and a v6 default route; pings over v4 and v6 across hosts; the
// v4-only node and the dual-stack nodes reach each other over v4.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { cniInvoke, findPlugin } from '../../src/lab/lab.js';
import { isRoot, Topology, type Host } from '../helpers/netns.js';
import type { FlanneldProc } from '../helpers/flanneld.js';

const cniDir = findPlugin('bridge');
const skip = !isRoot() ? 'needs root (network namespaces)' : !cniDir ? 'needs the CNI bridge and host-local plugins (apt-get install containernetworking-plugins)' : false;

const DUAL = '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}';
const V4ONLY = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}';

let topo: Topology;
const flanneld = new Map<Host, FlanneldProc>();
/** pod addresses per host: v4 and (dual-stack hosts) v6 */
const pods = new Map<Host, { ns: string; ip4: string; ip6: string | null }>();

const h = (i: number) => topo.hosts[i - 1]!;

async function link(host: Host, dev: string): Promise<{ address: string; mtu: number; linkinfo: { info_kind: string; info_data: Record<string, unknown> } }> {
  return (JSON.parse(await topo.ip(host.name, '-d', '-j', 'link', 'show', dev)) as Array<{ address: string; mtu: number; linkinfo: { info_kind: string; info_data: Record<string, unknown> } }>)[0]!;
}

/** lease key (without prefix) -> value, from etcd */
async function leases(): Promise<Map<string, string>> {
  const lines = (await topo.etcdctl('get', '--prefix', '/coreos.com/network/subnets/')).trim().split('\n');
  const out = new Map<string, string>();
  for (let i = 0; i + 1 < lines.length; i += 2) out.set(lines[i]!.replace('/coreos.com/network/subnets/', ''), lines[i + 1]!);
  return out;
}

function subnetEnv(host: Host): Record<string, string> {
  return topo.subnetEnv(host).raw;
}

/** 'fd00:10:244:1c::1/64' -> 'fd00:10:244:1c::' */
const v6Net = (cidr: string) => cidr.replace(/1\/64$/, '');

before(async () => {
  if (skip) return;
  topo = await Topology.create({ hosts: 3, podsPerHost: 0, ipv6: true });
  await topo.startEtcd();
  await topo.etcdctl('put', '/coreos.com/network/config', DUAL);
  const v4conf = path.join(topo.tmpDir, 'net-conf-v4.json');
  writeFileSync(v4conf, V4ONLY);
  for (const host of topo.hosts) {
    flanneld.set(host, topo.startFlanneld(host, ['--iface=eth0', '--ip-masq', ...(host.index === 3 ? [`--net-config-path=${v4conf}`] : [])]));
  }
  await Promise.all([...flanneld.values()].map((f) => f.waitReady(30_000)));
  for (const host of topo.hosts) {
    const ns = await topo.createNamespace(`h${host.index}p1`);
    const res = JSON.parse(await cniInvoke({ name: host.name, dir: path.dirname(topo.subnetFile(host)) }, 'ADD', ns, cniDir!)) as { ips: Array<{ address: string }> };
    const ip4 = res.ips.map((i) => i.address).find((a) => !a.includes(':'));
    const ip6 = res.ips.map((i) => i.address).find((a) => a.includes(':')) ?? null;
    assert.ok(ip4, `pod ${ns} got an IPv4 address: ${JSON.stringify(res)}`);
    pods.set(host, { ns, ip4: ip4.split('/')[0]!, ip6: ip6 ? ip6.split('/')[0]! : null });
  }
});

after(async () => {
  for (const f of flanneld.values()) await f.stop();
  await topo?.destroy();
});

test('lease key, lease value and subnet.env are flannel\'s dual-stack ones; the v4-only node keeps a v4-only lease', { skip }, async () => {
  const all = await leases();
  for (const host of [h(1), h(2)]) {
    const env = subnetEnv(host);
    assert.deepEqual(Object.keys(env), ['FLANNEL_NETWORK', 'FLANNEL_SUBNET', 'FLANNEL_IPV6_NETWORK', 'FLANNEL_IPV6_SUBNET', 'FLANNEL_MTU', 'FLANNEL_IPMASQ']);
    assert.equal(env.FLANNEL_NETWORK, '10.244.0.0/16');
    assert.equal(env.FLANNEL_IPV6_NETWORK, 'fd00:10:244::/56');
    assert.match(env.FLANNEL_IPV6_SUBNET!, /^fd00:10:244:[0-9a-f]{1,2}::1\/64$/);
    // underlay 1500 - 70: an IPv6-encapsulated packet of that size fits (flannel writes 1450 here)
    assert.equal(env.FLANNEL_MTU, '1430');
    const key = `${env.FLANNEL_SUBNET!.replace(/1\/24$/, '0-24')}&${v6Net(env.FLANNEL_IPV6_SUBNET!)}-64`;
    const mac4 = (await link(host, 'flannel.1')).address;
    const mac6 = (await link(host, 'flannel-v6.1')).address;
    assert.notEqual(mac4, mac6);
    assert.equal(
      all.get(key),
      `{"PublicIP":"${host.ip}","PublicIPv6":"${host.ip6}","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac4}"},"BackendV6Data":{"VNI":1,"VtepMAC":"${mac6}"}}`,
      `lease ${key} in ${JSON.stringify([...all])}`,
    );
  }
  const env3 = subnetEnv(h(3));
  assert.deepEqual(Object.keys(env3), ['FLANNEL_NETWORK', 'FLANNEL_SUBNET', 'FLANNEL_MTU', 'FLANNEL_IPMASQ']);
  assert.equal(env3.FLANNEL_MTU, '1450');
  const mac3 = (await link(h(3), 'flannel.1')).address;
  assert.equal(all.get(env3.FLANNEL_SUBNET!.replace(/1\/24$/, '0-24')), `{"PublicIP":"${h(3).ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac3}"}}`);
  assert.equal((await topo.run(h(3).name, ['ip', 'link', 'show', 'flannel-v6.1'])).code, 1, 'no flannel-v6.1 on the v4-only node');
});

test('flannel-v6.1: VXLAN id 1, port 8472, local = the node\'s v6 underlay address, no learning, MTU 1430, the v6 subnet network address /128', { skip }, async () => {
  for (const host of [h(1), h(2)]) {
    const l = await link(host, 'flannel-v6.1');
    assert.equal(l.linkinfo.info_kind, 'vxlan');
    const d = l.linkinfo.info_data;
    assert.equal(d.id, 1);
    assert.equal(d.local6, host.ip6, JSON.stringify(d));
    assert.equal(d.port, 8472);
    assert.equal(d.learning, false);
    assert.equal(l.mtu, 1430);
    assert.equal((await link(host, 'flannel.1')).mtu, 1450);
    const addrs = (await topo.ip(host.name, '-6', '-o', 'addr', 'show', 'dev', 'flannel-v6.1', 'scope', 'global')).trim().split('\n').map((x) => x.split(/\s+/)[3]);
    assert.deepEqual(addrs, [`${v6Net(subnetEnv(host).FLANNEL_IPV6_SUBNET!)}/128`]);
  }
});

test('exact v6 kernel entries on flannel-v6.1: permanent neighbour, self FDB entry to the peer\'s v6 underlay address, onlink route; none for the v4-only peer', { skip }, async () => {
  const peer = h(2);
  const net6 = v6Net(subnetEnv(peer).FLANNEL_IPV6_SUBNET!);
  const mac6 = (await link(peer, 'flannel-v6.1')).address;
  const neigh = (await topo.ip(h(1).name, '-6', 'neigh', 'show', 'dev', 'flannel-v6.1', 'nud', 'permanent')).trim();
  assert.equal(neigh, `${net6} lladdr ${mac6} PERMANENT`);
  const fdb = (await topo.exec(h(1).name, ['bridge', 'fdb', 'show', 'dev', 'flannel-v6.1'])).trim();
  assert.equal(fdb, `${mac6} dst ${peer.ip6} self permanent`);
  const routes = (await topo.ip(h(1).name, '-6', 'route', 'show', 'dev', 'flannel-v6.1')).trim().split('\n').map((x) => x.trim()).filter((r) => r.includes(' via '));
  assert.deepEqual(routes, [`${net6}/64 via ${net6} proto 222 metric 1024 onlink pref medium`]);
  // IPv4 on flannel.1: both peers, the v4-only one included
  const v4routes = (await topo.ip(h(1).name, 'route', 'show', 'dev', 'flannel.1')).trim().split('\n').map((x) => x.trim()).sort();
  const v4 = (x: Host) => subnetEnv(x).FLANNEL_SUBNET!.replace(/1\/24$/, '0');
  assert.deepEqual(v4routes, [h(2), h(3)].map((x) => `${v4(x)}/24 via ${v4(x)} proto 222 onlink`).sort());
  // the v4-only node programs the dual-stack peers' IPv4 halves
  const v4routes3 = (await topo.ip(h(3).name, 'route', 'show', 'dev', 'flannel.1')).trim().split('\n').map((x) => x.trim()).sort();
  assert.deepEqual(v4routes3, [h(1), h(2)].map((x) => `${v4(x)}/24 via ${v4(x)} proto 222 onlink`).sort());
});

test('pods get both addresses from host-local (two ranges) and a v6 default route; the v4-only node\'s pod gets IPv4 only', { skip }, async () => {
  for (const host of [h(1), h(2)]) {
    const p = pods.get(host)!;
    const env = subnetEnv(host);
    assert.ok(p.ip6, `pod on ${host.name} has an IPv6 address`);
    assert.ok(p.ip6.startsWith(v6Net(env.FLANNEL_IPV6_SUBNET!)), `${p.ip6} in ${env.FLANNEL_IPV6_SUBNET}`);
    const def6 = (await topo.ip(p.ns, '-6', 'route', 'show', 'default')).trim();
    assert.match(def6, new RegExp(`^default via ${v6Net(env.FLANNEL_IPV6_SUBNET!).replace(/\./g, '\\.')}1 dev eth0`));
    const net6 = (await topo.ip(p.ns, '-6', 'route', 'show', 'fd00:10:244::/56')).trim();
    assert.match(net6, /^fd00:10:244::\/56 via /);
  }
  assert.equal(pods.get(h(3))!.ip6, null);
});

test('pings across hosts over IPv4 and IPv6 (ping -6); the v4-only node and the dual-stack ones reach each other over IPv4', { skip }, async () => {
  const p1 = pods.get(h(1))!;
  const p2 = pods.get(h(2))!;
  const p3 = pods.get(h(3))!;
  const cases: Array<[string, string, string]> = [
    ['h1p1 -> h2p1 v4', p1.ns, p2.ip4],
    ['h2p1 -> h1p1 v4', p2.ns, p1.ip4],
    ['h1p1 -> h2p1 v6', p1.ns, p2.ip6!],
    ['h2p1 -> h1p1 v6', p2.ns, p1.ip6!],
    ['h3p1 -> h1p1 v4', p3.ns, p1.ip4],
    ['h2p1 -> h3p1 v4', p2.ns, p3.ip4],
  ];
  const failed: string[] = [];
  for (const [name, from, to] of cases) {
    const args = ['ping', ...(to.includes(':') ? ['-6'] : []), '-n', '-q', '-c', '3', '-i', '0.2', '-W', '2', to];
    const r = await topo.run(from, args);
    if (r.code !== 0) failed.push(`${name} (${to}): ${r.stdout.trim()} ${r.stderr.trim()}`);
  }
  assert.deepEqual(failed, []);
  // a full-size v6 packet for the pods' MTU (1430) goes through without fragmenting: 1430 - 40 - 8
  const big = await topo.run(p1.ns, ['ping', '-6', '-n', '-q', '-c', '2', '-i', '0.2', '-W', '2', '-M', 'do', '-s', '1382', p2.ip6!]);
  assert.equal(big.code, 0, `${big.stdout}${big.stderr}`);
});

test('self-healing: a v6 route deleted on flannel-v6.1 is put back', { skip }, async () => {
  const net6 = v6Net(subnetEnv(h(2)).FLANNEL_IPV6_SUBNET!);
  await topo.ip(h(1).name, '-6', 'route', 'del', `${net6}/64`, 'dev', 'flannel-v6.1');
  const t0 = Date.now();
  for (;;) {
    const r = await topo.ip(h(1).name, '-6', 'route', 'show', `${net6}/64`, 'dev', 'flannel-v6.1');
    if (r.includes('onlink')) break;
    assert.ok(Date.now() - t0 < 5000, 'route restored within 5 s');
    await new Promise((res) => setTimeout(res, 50));
  }
  const r = await topo.run(pods.get(h(1))!.ns, ['ping', '-6', '-n', '-q', '-c', '1', '-W', '2', pods.get(h(2))!.ip6!]);
  assert.equal(r.code, 0);
});

test('host-gw dual-stack: routes to the peer\'s v4 and v6 subnets via its public addresses on eth0; pods ping over both families', { skip }, async () => {
  const t = await Topology.create({ hosts: 2, podsPerHost: 0, ipv6: true });
  const procs: FlanneldProc[] = [];
  try {
    await t.startEtcd();
    await t.etcdctl('put', '/coreos.com/network/config', DUAL.replace('"vxlan"', '"host-gw"'));
    for (const host of t.hosts) procs.push(t.startFlanneld(host, ['--iface=eth0']));
    await Promise.all(procs.map((p) => p.waitReady(30_000)));
    const ps: Array<{ ns: string; ip4: string; ip6: string }> = [];
    for (const host of t.hosts) {
      const env = t.subnetEnv(host).raw;
      assert.equal(env.FLANNEL_MTU, '1500', 'host-gw: no overhead');
      const ns = await t.createNamespace(`h${host.index}p1`);
      const res = JSON.parse(await cniInvoke({ name: host.name, dir: path.dirname(t.subnetFile(host)) }, 'ADD', ns, cniDir!)) as { ips: Array<{ address: string }> };
      const a = res.ips.map((i) => i.address.split('/')[0]!);
      ps.push({ ns, ip4: a.find((x) => !x.includes(':'))!, ip6: a.find((x) => x.includes(':'))! });
    }
    const [h1, h2] = t.hosts as [Host, Host];
    const net6 = v6Net(t.subnetEnv(h2).raw.FLANNEL_IPV6_SUBNET!);
    const r6 = (await t.ip(h1.name, '-6', 'route', 'show', `${net6}/64`)).trim();
    assert.equal(r6, `${net6}/64 via ${h2.ip6} dev eth0 proto 222 metric 1024 pref medium`);
    const v4 = t.subnetEnv(h2).FLANNEL_SUBNET.replace(/1\/24$/, '0/24');
    assert.equal((await t.ip(h1.name, 'route', 'show', v4)).trim(), `${v4} via ${h2.ip} dev eth0 proto 222`);
    for (const [from, to] of [[ps[0]!.ns, ps[1]!.ip4], [ps[0]!.ns, ps[1]!.ip6], [ps[1]!.ns, ps[0]!.ip6]] as const) {
      const r = await t.run(from, ['ping', ...(to.includes(':') ? ['-6'] : []), '-n', '-q', '-c', '2', '-i', '0.2', '-W', '2', to]);
      assert.equal(r.code, 0, `${from} -> ${to}: ${r.stdout}${r.stderr}`);
    }
  } finally {
    for (const p of procs) await p.stop();
    await t.destroy();
  }
});

test('--ip-masq with EnableIPv6: flannel\'s FLANNEL-POSTRTG and FLANNEL-FWD chains in ip6tables too (IPv6Network, our v6 subnet, ff00::/8)', { skip }, async () => {
  const S6 = `${v6Net(subnetEnv(h(1)).FLANNEL_IPV6_SUBNET!)}/64`;
  const nat = (await topo.exec(h(1).name, ['ip6tables', '-w', '-t', 'nat', '-S', 'FLANNEL-POSTRTG'])).trim().split('\n');
  assert.ok(nat.includes(`-A FLANNEL-POSTRTG -s ${S6} -d fd00:10:244::/56 -m comment --comment "flanneld masq" -j RETURN`), nat.join('\n'));
  assert.ok(nat.some((l) => l.startsWith('-A FLANNEL-POSTRTG -s fd00:10:244::/56 ! -d ff00::/8 ') && l.includes('-j MASQUERADE')), nat.join('\n'));
  const fwd = (await topo.exec(h(1).name, ['ip6tables', '-w', '-t', 'filter', '-S', 'FLANNEL-FWD'])).trim().split('\n');
  assert.ok(fwd.includes('-A FLANNEL-FWD -s fd00:10:244::/56 -m comment --comment "flanneld forward" -j ACCEPT'), fwd.join('\n'));
  // the v4-only node has none
  assert.notEqual((await topo.run(h(3).name, ['ip6tables', '-w', '-t', 'nat', '-S', 'FLANNEL-POSTRTG'])).code, 0);
});
