// Self-test of the netns topology harness (no flanneld involved). Needs root;
// skipped otherwise. Every test destroys its topology in a finally block and
// sweeps its prefix as a last resort.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Topology, isRoot, listNamespaces, parseCidr, parseSubnetEnv, sh } from './netns.js';
import { iperf3, programVxlanByHand } from '../../bench/vxlan-handprogrammed.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function withTopology(o: { hosts: number; podsPerHost: number }, fn: (t: Topology) => Promise<void>): Promise<void> {
  const t = await Topology.create(o);
  try {
    await fn(t);
  } finally {
    await t.destroy().catch(() => undefined);
    await Topology.sweep(t.prefix, { killProcesses: true });
  }
}

test('pure helpers: parseCidr, parseSubnetEnv, sh errors', { skip: false }, async () => {
  assert.deepEqual(parseCidr('10.244.5.1/24'), { addr: '10.244.5.1', len: 24, base: '10.244.5.0' });
  assert.deepEqual(parseCidr('10.244.128.1/17'), { addr: '10.244.128.1', len: 17, base: '10.244.128.0' });
  const env = parseSubnetEnv('FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
  assert.equal(env.FLANNEL_SUBNET, '10.244.5.1/24');
  assert.equal(env.FLANNEL_MTU, 1450);
  assert.equal(env.FLANNEL_IPMASQ, true);
  assert.throws(() => parseSubnetEnv('FLANNEL_SUBNET=10.0.0.1/24\n'), /lacks FLANNEL_NETWORK/);
  assert.equal(await sh(['echo', 'hi']), 'hi\n');
  await assert.rejects(sh(['sh', '-c', 'echo boom >&2; exit 3']), (e: Error) => /exit 3/.test(e.message) && /boom/.test(e.message) && /sh -c/.test(e.message));
});

test('topology: underlay, etcd, pod wiring, capture, destroy', { skip, timeout: 60_000 }, async () => {
  const t0 = Date.now();
  const t = await Topology.create({ hosts: 2, podsPerHost: 1 });
  let etcdPid = -1;
  try {
    const [h1, h2] = t.hosts as [(typeof t.hosts)[0], (typeof t.hosts)[0]];
    assert.equal(h1.name, `${t.prefix}h1`);
    assert.equal(h2.ip, '192.0.2.12');
    assert.match(t.prefix, /^fts[0-9a-f]{4}-$/);
    const names = await listNamespaces();
    for (const n of [`${t.prefix}ul`, `${t.prefix}h1`, `${t.prefix}h2`]) assert.ok(names.includes(n), `${n} exists`);

    // Underlay: host1 -> host2, host -> gateway; default route on eth0.
    assert.equal((await t.ping(h1.name, h2.ip)).ok, true, 'h1 pings h2 over br0');
    const p = await t.ping(h2.name, '192.0.2.1');
    assert.equal(p.ok, true);
    assert.ok(p.rttMs !== null && p.rttMs >= 0);
    assert.match(await t.ip(h1.name, 'route', 'show', 'default'), /default via 192\.0\.2\.1 dev eth0/);
    assert.equal((await t.exec(h1.name, ['sysctl', '-n', 'net.ipv4.ip_forward'])).trim(), '1');
    assert.equal((await t.ping(h1.name, '192.0.2.99', { timeoutS: 1 })).ok, false, 'unknown address fails');

    // capture: sees the ICMP echo on host1's eth0, hex dump included.
    const cap = await t.capture(h1.name, 'eth0', 'icmp', async () => {
      await t.ping(h1.name, h2.ip);
    });
    assert.match(cap, /192\.0\.2\.11 > 192\.0\.2\.12: ICMP echo request/);
    assert.match(cap, /0x0000:/);

    // etcd in the underlay.
    const etcd = await t.startEtcd();
    etcdPid = etcd.pid;
    assert.ok(pidAlive(etcdPid));
    await t.etcdctl('endpoint', 'health');
    await t.etcdctl('put', '/fts/selftest', 'hello');
    assert.equal((await t.etcdctl('get', '/fts/selftest', '--print-value-only')).trim(), 'hello');
    // ...reachable from a host namespace over the underlay too (as flanneld will).
    assert.match(await t.exec(h2.name, ['etcdctl', '--endpoints', t.etcdEndpoint, 'get', '/fts/selftest'], { env: { ETCDCTL_API: '3' } }), /hello/);

    // Pod wiring by hand (host1) and from a subnet.env file (host2).
    const [pod1] = await t.wirePodsWith(h1, { subnet: '10.244.1.1/24', mtu: 1450 });
    assert.ok(pod1);
    assert.equal(pod1.name, `${t.prefix}h1p1`);
    assert.equal(pod1.ip, '10.244.1.11');
    assert.equal((await t.ping(pod1.name, '10.244.1.1')).ok, true, 'pod pings its cni0');
    assert.match(await t.ip(pod1.name, 'link', 'show', 'eth0'), /mtu 1450/);
    assert.match(await t.ip(h1.name, 'link', 'show', 'veth1'), /mtu 1450 .*master cni0/);

    mkdirSync(path.dirname(t.subnetFile(h2)), { recursive: true });
    writeFileSync(t.subnetFile(h2), 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.2.1/24\nFLANNEL_MTU=1400\nFLANNEL_IPMASQ=false\n');
    assert.equal(t.subnetEnv(h2).FLANNEL_MTU, 1400);
    const [pod2] = await t.wirePods(h2);
    assert.equal(pod2?.ip, '10.244.2.11');
    assert.equal((await t.ping(pod2!.name, '10.244.2.1')).ok, true);
    assert.match(await t.ip(pod2!.name, 'link', 'show', 'eth0'), /mtu 1400/);

    // Without an overlay, cross-host pod traffic has no route: mesh = 2 failing pairs.
    const mesh = await t.pingMesh({ timeoutS: 1 });
    assert.equal(mesh.length, 2);
    assert.ok(mesh.every((m) => !m.ok));
  } finally {
    await t.destroy();
    await t.destroy(); // idempotent
  }
  const left = (await listNamespaces()).filter((n) => n.startsWith(t.prefix));
  assert.deepEqual(left, [], 'no namespaces of this run remain');
  assert.ok(etcdPid > 0 && !pidAlive(etcdPid), 'etcd process is gone');
  assert.deepEqual(t.livePids, []);
  assert.throws(() => t.spawn(`${t.prefix}h1`, ['true']), /destroyed/);
  console.log(`# topology selftest took ${Date.now() - t0} ms`);
});

test('create() failing halfway cleans up what it created', { skip, timeout: 30_000 }, async () => {
  const prefix = `ftsz${Math.floor(Math.random() * 0xfff).toString(16).padStart(3, '0')}-`;
  await sh(['ip', 'netns', 'add', `${prefix}h2`]); // collides with host 2
  try {
    await assert.rejects(Topology.create({ hosts: 3, podsPerHost: 1, prefix }), /netns add .*h2/);
    const left = (await listNamespaces()).filter((n) => n.startsWith(prefix));
    assert.deepEqual(left, [`${prefix}h2`], 'only the foreign namespace survives');
  } finally {
    assert.deepEqual(await Topology.sweep(prefix), [`${prefix}h2`]);
  }
  assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(prefix)), []);
});

test('hand-programmed VXLAN: cross-host pod ping, encapsulation, iperf3', { skip, timeout: 60_000 }, async () => {
  const t0 = Date.now();
  await withTopology({ hosts: 2, podsPerHost: 1 }, async (t) => {
    for (const h of t.hosts) await t.wirePodsWith(h, { subnet: `10.244.${h.index}.1/24`, mtu: 1450 });
    const vteps = await programVxlanByHand(t);
    assert.equal(vteps.length, 2);
    const [h1, h2] = t.hosts as [(typeof t.hosts)[0], (typeof t.hosts)[0]];
    const d = await t.ip(h1.name, '-d', 'link', 'show', 'flannel.1');
    assert.match(d, /vxlan id 1 local 192\.0\.2\.11 dev eth0 .*dstport 8472 nolearning/);
    assert.match(await t.ip(h1.name, 'route', 'show', '10.244.2.0/24'), /via 10\.244\.2\.0 dev flannel\.1 onlink/);

    const mesh = await t.pingMesh();
    assert.equal(mesh.length, 2);
    for (const m of mesh) assert.ok(m.ok, `${m.from.name} -> ${m.to.ip}`);

    const pod1 = h1.pods[0]!;
    const pod2 = h2.pods[0]!;
    const cap = await t.capture(h1.name, 'eth0', 'udp port 8472', async () => {
      await t.ping(pod1.name, pod2.ip);
    }, { count: 2 });
    assert.match(cap, /192\.0\.2\.11\.\d+ > 192\.0\.2\.12\.8472: OTV, flags \[I\] \(0x08\), overlay 0, instance 1/);
    assert.match(cap, /10\.244\.1\.11 > 10\.244\.2\.11: ICMP echo request/);

    const ti = Date.now();
    const gbps = await iperf3(t, pod1.name, pod2.name, pod2.ip, 2);
    assert.ok(gbps > 0, `throughput ${gbps}`);
    console.log(`# hand VXLAN pod->pod iperf3: ${gbps.toFixed(2)} Gbit/s (${Date.now() - ti} ms)`);
  });
  console.log(`# hand VXLAN selftest took ${Date.now() - t0} ms`);
});
