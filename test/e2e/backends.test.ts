// host-gw and udp across three namespace hosts, and switching every host
// between backends: the mesh works each time and no stale device or route is
// left behind.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { isRoot, Topology, type Host } from '../helpers/netns.js';
import type { FlanneldProc } from '../helpers/flanneld.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';
let topo: Topology;
let procs: FlanneldProc[] = [];

async function useBackend(type: string): Promise<void> {
  await Promise.all(procs.map((p) => p.stop()));
  await topo.etcdctl('put', '/coreos.com/network/config', JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: type } }));
  procs = topo.hosts.map((h) => topo.startFlanneld(h));
  await Promise.all(procs.map((p) => p.waitReady()));
}

async function meshOk(): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const bad = (await topo.pingMesh({ timeoutS: 1 })).filter((r) => !r.ok).map((r) => `${r.from.name}->${r.to.name}`);
    if (bad.length === 0) return;
    if (Date.now() > deadline) assert.fail(`unreachable: ${bad.join(', ')}`);
  }
}

const subnets = (): Map<Host, string> => new Map(topo.hosts.map((h) => [h, topo.subnetEnv(h).FLANNEL_SUBNET.replace(/\.1\//, '.0/')]));

before(async () => {
  if (skip) return;
  topo = await Topology.create({ hosts: 3, podsPerHost: 1 });
  await topo.startEtcd();
  await useBackend('host-gw');
  for (const h of topo.hosts) await topo.wirePods(h);
});

after(async () => {
  await topo?.destroy();
});

test('host-gw: mesh, one route per peer via its public IP, MTU = interface MTU, lease JSON', { skip }, async () => {
  await meshOk();
  const sn = subnets();
  for (const h of topo.hosts) {
    assert.equal(topo.subnetEnv(h).FLANNEL_MTU, 1500);
    const routes = (await topo.ip(h.name, 'route', 'show', 'dev', 'eth0')).trim().split('\n').map((l) => l.trim());
    for (const p of topo.hosts.filter((x) => x !== h)) assert.ok(routes.includes(`${sn.get(p)} via ${p.ip} proto 222`), `${h.name}: ${routes.join(' | ')}`);
    assert.equal((await topo.run(h.name, ['ip', 'link', 'show', 'flannel.1'])).code, 1, 'no flannel.1');
  }
  const v = await topo.etcdctl('get', `/coreos.com/network/subnets/${sn.get(topo.hosts[0]!)!.replace('/', '-')}`, '--print-value-only');
  assert.equal(v.trim(), `{"PublicIP":"${topo.hosts[0]!.ip}","PublicIPv6":null,"BackendType":"host-gw"}`);
});

test('host-gw: a deleted route is restored within 1 s', { skip }, async () => {
  const [h, p] = [topo.hosts[0]!, topo.hosts[1]!];
  const dst = subnets().get(p)!;
  await topo.ip(h.name, 'route', 'del', dst);
  const t0 = Date.now();
  while (!(await topo.ip(h.name, 'route', 'show', 'dev', 'eth0')).includes(`${dst} via ${p.ip}`)) {
    assert.ok(Date.now() - t0 < 1000, 'restored within 1 s');
    await new Promise((r) => setTimeout(r, 25));
  }
  console.log(`# host-gw route restored in ${Date.now() - t0} ms`);
});

test('switching host-gw -> vxlan -> host-gw leaves no stale devices or routes', { skip }, async () => {
  await useBackend('host-gw');
  const before = subnets();
  await useBackend('vxlan');
  await meshOk();
  for (const h of topo.hosts) {
    // "ready" (subnet.env written) comes just before the first reconcile, and
    // the mesh can already work over the old routes: give that reconcile a moment.
    let eth0 = '';
    for (const deadline = Date.now() + 2000; ; ) {
      eth0 = await topo.ip(h.name, 'route', 'show', 'dev', 'eth0');
      if (!/10\.244\./.test(eth0) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(!/10\.244\./.test(eth0), `${h.name} kept host-gw routes: ${eth0}`);
    assert.equal((await topo.ip(h.name, 'route', 'show', 'dev', 'flannel.1')).trim().split('\n').length, 2);
  }
  await useBackend('host-gw');
  await meshOk();
  for (const h of topo.hosts) {
    assert.equal((await topo.run(h.name, ['ip', 'link', 'show', 'flannel.1'])).code, 1, `${h.name} kept flannel.1`);
    assert.equal((await topo.ip(h.name, 'route', 'show', 'dev', 'eth0')).match(/10\.244\./g)?.length, 2);
  }
  assert.deepEqual([...subnets().values()], [...before.values()], 'subnets kept across switches');
});

test('udp: mesh, flannel0 as flannel sets it up, flannel\'s lease JSON', { skip }, async () => {
  await useBackend('udp');
  await meshOk();
  const sn = subnets();
  for (const h of topo.hosts) {
    assert.equal(topo.subnetEnv(h).FLANNEL_MTU, 1472);
    const link = await topo.ip(h.name, '-d', 'link', 'show', 'flannel0');
    assert.match(link, /mtu 1472 /);
    assert.match(link, /\btun\b/);
    assert.match(await topo.ip(h.name, '-4', 'addr', 'show', 'flannel0'), new RegExp(`inet ${sn.get(h)!.replace('/24', '/32').replace(/\./g, '\\.')} `));
    assert.match(await topo.ip(h.name, 'route', 'show', 'dev', 'flannel0'), /^10\.244\.0\.0\/16 /m);
    assert.equal((await topo.run(h.name, ['ip', 'link', 'show', 'flannel.1'])).code, 1, 'no stale flannel.1');
    assert.ok(!/10\.244\./.test(await topo.ip(h.name, 'route', 'show', 'dev', 'eth0')), 'no stale host-gw routes');
  }
  const v = await topo.etcdctl('get', `/coreos.com/network/subnets/${sn.get(topo.hosts[0]!)!.replace('/', '-')}`, '--print-value-only');
  assert.equal(v.trim(), `{"PublicIP":"${topo.hosts[0]!.ip}","PublicIPv6":null}`);
});

test('udp on the wire: UDP 8285 carrying the bare inner IPv4 packet', { skip }, async () => {
  const [a, b] = [topo.hosts[0]!.pods[0]!, topo.hosts[1]!.pods[0]!];
  const text = await topo.capture(topo.underlay, 'br0', ['udp', 'port', '8285'], async () => {
    await topo.ping(a.name, b.ip, { count: 1 });
  }, { count: 1 });
  const hex = (ip: string) => ip.split('.').map((x) => Number(x).toString(16).padStart(2, '0')).join('');
  assert.match(text, new RegExp(`${topo.hosts[0]!.ip.replace(/\./g, '\\.')}\\.\\d+ > ${topo.hosts[1]!.ip.replace(/\./g, '\\.')}\\.8285: UDP`), text);
  // -x dump: 20 bytes outer IP + 8 bytes UDP, then the inner packet starts with 0x45 and carries the pod addresses
  const bytes = [...text.matchAll(/0x[0-9a-f]{4}:\s+((?:[0-9a-f]{4}\s?)+)/g)].map((m) => m[1]!.replace(/\s/g, '')).join('');
  const inner = bytes.slice(28 * 2);
  assert.equal(inner.slice(0, 2), '45', `inner packet is IPv4 with a 20-byte header: ${bytes}`);
  assert.equal(inner.slice(24, 32), hex(a.ip));
  assert.equal(inner.slice(32, 40), hex(b.ip));
  assert.equal(inner.slice(18, 20), '01', 'ICMP');
});

test('switching udp -> vxlan removes flannel0 and its route', { skip }, async () => {
  await useBackend('vxlan');
  await meshOk();
  for (const h of topo.hosts) {
    assert.equal((await topo.run(h.name, ['ip', 'link', 'show', 'flannel0'])).code, 1, `${h.name} kept flannel0`);
    assert.ok(!/flannel0/.test(await topo.ip(h.name, 'route')), 'no flannel0 route');
  }
});
