// The VXLAN overlay end to end: three hosts as network namespaces on an
// underlay bridge, one real etcd, one flanneld per host, two pods per host.
// Asserts what the article shows: pods talk across hosts, and flannel.1, its
// PERMANENT neighbours, its `self permanent` FDB entries and the onlink routes
// look exactly as flannel leaves them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { isRoot, Topology, type Host } from '../helpers/netns.js';
import type { FlanneldProc } from '../helpers/flanneld.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';
let topo: Topology;
const flanneld = new Map<Host, FlanneldProc>();

interface HostLease {
  subnet: string; // 10.244.5.0/24
  gw: string; // 10.244.5.0
  mac: string;
  ip: string;
}

async function leases(): Promise<Map<string, HostLease>> {
  const out = await topo.etcdctl('get', '--prefix', '/coreos.com/network/subnets/');
  const lines = out.trim().split('\n');
  const m = new Map<string, HostLease>();
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const key = lines[i]!.split('/').pop()!;
    const v = JSON.parse(lines[i + 1]!) as { PublicIP: string; BackendData: { VtepMAC: string } };
    const [net, len] = key.split('-');
    m.set(v.PublicIP, { subnet: `${net}/${len}`, gw: net!, mac: v.BackendData.VtepMAC, ip: v.PublicIP });
  }
  return m;
}

async function waitUntil(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

before(async () => {
  if (skip) return;
  topo = await Topology.create({ hosts: 3, podsPerHost: 2 });
  await topo.startEtcd();
  await topo.etcdctl('put', '/coreos.com/network/config', '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
  for (const h of topo.hosts) flanneld.set(h, topo.startFlanneld(h));
  await Promise.all([...flanneld.values()].map((f) => f.waitReady()));
  for (const h of topo.hosts) await topo.wirePods(h);
});

after(async () => {
  await topo?.destroy();
});

test('full pod mesh across hosts', { skip }, async () => {
  // the last lease to appear may still be programming on the others: allow a moment
  await waitUntil('mesh', async () => (await topo.pingMesh({ timeoutS: 1 })).every((r) => r.ok), 5000);
  const mesh = await topo.pingMesh();
  const bad = mesh.filter((r) => !r.ok).map((r) => `${r.from.name}->${r.to.name}`);
  assert.deepEqual(bad, []);
  assert.equal(mesh.length, 6 * 5);
});

test('kernel state on every host matches the article, entry for entry', { skip }, async () => {
  const all = await leases();
  assert.equal(all.size, 3);
  // the published lease, byte for byte as flannel writes it
  for (const l of all.values()) {
    const v = await topo.etcdctl('get', `/coreos.com/network/subnets/${l.subnet.replace('/', '-')}`, '--print-value-only');
    assert.equal(v.trim(), `{"PublicIP":"${l.ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${l.mac}"}}`);
  }
  for (const h of topo.hosts) {
    const me = all.get(h.ip)!;
    const env = topo.subnetEnv(h);
    assert.equal(env.FLANNEL_MTU, 1450);
    assert.equal(env.FLANNEL_SUBNET, me.subnet.replace('.0/', '.1/'));
    const link = await topo.ip(h.name, '-d', 'link', 'show', 'flannel.1');
    assert.match(link, /mtu 1450 /);
    assert.match(link, new RegExp(`link/ether ${me.mac} `));
    assert.match(link, new RegExp(`vxlan id 1 local ${h.ip.replace(/\./g, '\\.')} dev eth0 srcport 0 0 dstport 8472 nolearning `));
    assert.match(await topo.ip(h.name, '-4', 'addr', 'show', 'flannel.1'), new RegExp(`inet ${me.gw.replace(/\./g, '\\.')}/32 `));

    const peers = [...all.values()].filter((l) => l.ip !== h.ip).sort((a, b) => a.gw.localeCompare(b.gw));
    const neigh = (await topo.ip(h.name, 'neigh', 'show', 'dev', 'flannel.1')).trim().split('\n').map((s) => s.trim()).sort();
    assert.deepEqual(neigh, peers.map((p) => `${p.gw} lladdr ${p.mac} PERMANENT`).sort());
    const fdb = (await topo.exec(h.name, ['bridge', 'fdb', 'show', 'dev', 'flannel.1'])).trim().split('\n').map((s) => s.trim()).sort();
    assert.deepEqual(fdb, peers.map((p) => `${p.mac} dst ${p.ip} self permanent`).sort());
    const routes = (await topo.ip(h.name, 'route', 'show', 'dev', 'flannel.1')).trim().split('\n').map((s) => s.trim()).sort();
    // proto 222: flannel-ts marks its routes (RTPROT_FLANNEL)
    assert.deepEqual(routes, peers.map((p) => `${p.subnet} via ${p.gw} proto 222 onlink`).sort());
  }
});

test('self-healing: a deleted neighbour, FDB entry, route or the whole device is restored within 1 s', { skip }, async () => {
  const h = topo.hosts[0]!;
  const all = await leases();
  const peer = [...all.values()].find((l) => l.ip !== h.ip)!;
  const show = async (...a: string[]) => topo.ip(h.name, ...a);

  await show('neigh', 'del', peer.gw, 'dev', 'flannel.1');
  const tN = await waitUntil('neighbour restored', async () => (await show('neigh', 'show', 'dev', 'flannel.1')).includes(`${peer.gw} lladdr ${peer.mac} PERMANENT`), 1000);

  await topo.exec(h.name, ['bridge', 'fdb', 'del', peer.mac, 'dev', 'flannel.1', 'self', 'dst', peer.ip]);
  const tF = await waitUntil('fdb restored', async () => (await topo.exec(h.name, ['bridge', 'fdb', 'show', 'dev', 'flannel.1'])).includes(`${peer.mac} dst ${peer.ip} self permanent`), 1000);

  await show('route', 'del', peer.subnet);
  const tR = await waitUntil('route restored', async () => (await show('route', 'show', 'dev', 'flannel.1')).includes(`${peer.subnet} via ${peer.gw} proto 222 onlink`), 1000);

  const mac = (await show('link', 'show', 'flannel.1')).match(/link\/ether (\S+)/)![1];
  const index = Number((await show('link', 'show', 'flannel.1')).split(':')[0]);
  await show('link', 'del', 'flannel.1');
  const tD = await waitUntil(
    'device and entries restored',
    async () => {
      const r = await topo.run(h.name, ['ip', 'route', 'show', 'dev', 'flannel.1']);
      return r.code === 0 && r.stdout.trim().split('\n').length === 2;
    },
    1000,
  );
  assert.equal((await show('link', 'show', 'flannel.1')).match(/link\/ether (\S+)/)![1], mac, 'same VTEP MAC after recreation');
  assert.notEqual(Number((await show('link', 'show', 'flannel.1')).split(':')[0]), index, 'a new device');
  console.log(`# restored: neighbour ${tN} ms, fdb ${tF} ms, route ${tR} ms, whole device ${tD} ms`);
  const p = topo.hosts[1]!.pods[0]!;
  assert.ok((await topo.ping(h.pods[0]!.name, p.ip)).ok);
});

test('encapsulation on the wire: UDP 8472, VNI 1, inner pod addresses', { skip }, async () => {
  const [a, b] = [topo.hosts[0]!.pods[0]!, topo.hosts[1]!.pods[0]!];
  const text = await topo.capture(topo.underlay, 'br0', ['-v', '-T', 'vxlan', 'udp', 'port', '8472'], async () => {
    await topo.ping(a.name, b.ip, { count: 2 });
  }, { count: 2 });
  const outer = new RegExp(`${topo.hosts[0]!.ip.replace(/\./g, '\\.')}\\.\\d+ > ${topo.hosts[1]!.ip.replace(/\./g, '\\.')}\\.8472: VXLAN, flags \\[I\\] \\(0x08\\), vni 1`);
  assert.match(text, outer, text);
  assert.match(text, new RegExp(`${a.ip.replace(/\./g, '\\.')} > ${b.ip.replace(/\./g, '\\.')}: ICMP echo request`), text);
});

test('restart keeps the subnet and VTEP MAC, and a ping across the restart loses nothing', { skip }, async () => {
  const h = topo.hosts[1]!;
  const before = (await leases()).get(h.ip)!;
  const src = topo.hosts[0]!.pods[0]!;
  const dst = h.pods[0]!;
  const pinger = topo.spawn(src.name, ['ping', '-i', '0.05', '-c', '80', '-W', '1', dst.ip], { label: 'ping across restart' });
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await flanneld.get(h)!.stop(), 0);
  const again = topo.startFlanneld(h);
  flanneld.set(h, again);
  const acquired = await again.waitFor((l) => /acquired lease/.test(l.msg));
  assert.match(acquired.msg, /reused-by-public-ip/);
  await again.waitReady();
  await pinger.exited;
  const after = (await leases()).get(h.ip)!;
  assert.equal(after.subnet, before.subnet);
  assert.equal(after.mac, before.mac);
  const m = /(\d+) packets transmitted, (\d+) received/.exec(pinger.stdout)!;
  assert.ok(m, pinger.stdout);
  assert.equal(m[2], m[1], `no loss across restart: ${m[0]}`);
});

test('node departure: stop flanneld, delete its lease; peers drop its entries within 1 s; the rest keep talking', { skip }, async () => {
  const gone = topo.hosts[2]!;
  const all = await leases();
  const lease = all.get(gone.ip)!;
  assert.equal(await flanneld.get(gone)!.stop(), 0);
  await topo.etcdctl('del', `/coreos.com/network/subnets/${lease.subnet.replace('/', '-')}`);
  for (const h of topo.hosts.slice(0, 2)) {
    const t = await waitUntil(
      `${h.name} forgets ${lease.subnet}`,
      async () => {
        const [n, f, r] = await Promise.all([
          topo.ip(h.name, 'neigh', 'show', 'dev', 'flannel.1'),
          topo.exec(h.name, ['bridge', 'fdb', 'show', 'dev', 'flannel.1']),
          topo.ip(h.name, 'route', 'show', 'dev', 'flannel.1'),
        ]);
        return !n.includes(lease.gw + ' ') && !f.includes(lease.mac) && !r.includes(lease.subnet);
      },
      1000,
    );
    console.log(`# ${h.name} removed the departed node's entries in ${t} ms`);
  }
  const [a, b] = [topo.hosts[0]!.pods[1]!, topo.hosts[1]!.pods[1]!];
  assert.ok((await topo.ping(a.name, b.ip)).ok);
  assert.ok((await topo.ping(b.name, a.ip)).ok);
});

test('a lease key with host bits set (10.244.42.128-24) never gets a neighbour or FDB entry; each daemon says so once', { skip }, async () => {
  const running = topo.hosts.filter((h) => flanneld.get(h)!.proc.exitCode === null);
  assert.ok(running.length >= 2);
  const key = '/coreos.com/network/subnets/10.244.42.128-24';
  const seen = new Map(running.map((h) => [h, flanneld.get(h)!.lines.length]));
  await topo.etcdctl('put', key, '{"PublicIP":"192.0.2.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:42:42:42:42:42"}}');
  try {
    // Every daemon has seen the key once it said so; give it the same time either way, then look at the kernel first.
    const said = await Promise.allSettled(
      running.map((h) => flanneld.get(h)!.waitFor((l) => l.msg.includes(`ignoring lease ${key}: subnet 10.244.42.128/24 has host bits set`), 3000, `${h.name} refusing the key`)),
    );
    await new Promise((r) => setTimeout(r, 300));
    for (const h of running) {
      const [n, f, r] = await Promise.all([
        topo.ip(h.name, 'neigh', 'show', 'dev', 'flannel.1'),
        topo.exec(h.name, ['bridge', 'fdb', 'show', 'dev', 'flannel.1']),
        topo.ip(h.name, 'route', 'show', 'dev', 'flannel.1'),
      ]);
      assert.doesNotMatch(n, /10\.244\.42\./, `${h.name} neighbours`);
      assert.doesNotMatch(f, /0a:42:42:42:42:42|192\.0\.2\.99/, `${h.name} fdb`);
      assert.doesNotMatch(r, /10\.244\.42\./, `${h.name} routes`);
      const lines = flanneld.get(h)!.lines.slice(seen.get(h)).map((l) => l.msg);
      assert.equal(lines.filter((m) => m.includes('10.244.42.128')).length, 1, lines.join('\n'));
      assert.ok(!lines.some((m) => /^restored |^reconcile: /.test(m)), lines.join('\n'));
    }
    for (const r of said) assert.equal(r.status, 'fulfilled', r.status === 'rejected' ? String(r.reason) : '');
  } finally {
    await topo.etcdctl('del', key);
  }
});

test('flannel.1 keeps exactly one IPv4 address: stale /32s (an old subnet, an old Network) are removed at start', { skip }, async () => {
  const h = topo.hosts[0]!;
  const want = (await leases()).get(h.ip)!;
  await topo.ip(h.name, 'addr', 'add', '10.244.250.0/32', 'dev', 'flannel.1');
  await topo.ip(h.name, 'addr', 'add', '10.50.3.0/32', 'dev', 'flannel.1');
  assert.equal(await flanneld.get(h)!.stop(), 0);
  const again = topo.startFlanneld(h);
  flanneld.set(h, again);
  await again.waitReady();
  const inet = (await topo.ip(h.name, '-4', '-o', 'addr', 'show', 'dev', 'flannel.1')).trim().split('\n').map((l) => /inet (\S+)/.exec(l)![1]);
  assert.deepEqual(inet, [`${want.gw}/32`]);
  const p = topo.hosts[1]!.pods[0]!;
  assert.ok((await topo.ping(h.pods[0]!.name, p.ip)).ok);
});
