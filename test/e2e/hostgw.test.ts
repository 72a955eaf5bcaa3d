// host-gw across three namespace hosts, then switching every host to vxlan
// and back: the mesh works each time and no stale device or route is left.
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
    for (const p of topo.hosts.filter((x) => x !== h)) assert.ok(routes.includes(`${sn.get(p)} via ${p.ip}`), `${h.name}: ${routes.join(' | ')}`);
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
  const before = subnets();
  await useBackend('vxlan');
  await meshOk();
  for (const h of topo.hosts) {
    const eth0 = await topo.ip(h.name, 'route', 'show', 'dev', 'eth0');
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
