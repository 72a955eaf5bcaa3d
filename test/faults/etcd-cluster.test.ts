// Fault: the leader of a 3-member etcd cluster is killed (SIGKILL) while pods
// on two hosts ping each other. The daemons know all three endpoints. The
// leader is first moved to a member that serves a daemon's lease watch, so
// the kill also breaks that watch. Expected: 0 pings lost, a new leader, no
// subnet held twice, and the watches carry on: a host started after the kill
// is programmed on the others (and they on it).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { isRoot, Topology, type Host } from '../helpers/netns.js';
import type { FlanneldProc } from '../helpers/flanneld.js';
import { EtcdCluster, type EtcdMember } from '../helpers/etcd-cluster.js';
import { describeTallies, duplicateSubnets, entriesDiff, expectedEntries, kernelEntries, parseLeases, pingAll, SUBNETS, waitUntil } from '../helpers/faults.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';
const CONFIG = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}';
let topo: Topology;
let etcd: EtcdCluster;
const flanneld = new Map<Host, FlanneldProc>();

function start(h: Host): FlanneldProc {
  const f = topo.startFlanneld(h, [`--etcd-endpoints=${etcd.endpoints}`]);
  flanneld.set(h, f);
  return f;
}

/** Watchers each running member serves (the daemons' lease watches; the test itself watches nothing). */
async function watchersByMember(): Promise<Map<EtcdMember, number>> {
  return new Map(await Promise.all(etcd.alive.map(async (m) => [m, await etcd.watchers(m)] as const)));
}

const total = (w: Map<EtcdMember, number>) => [...w.values()].reduce((a, b) => a + b, 0);
const show = (w: Map<EtcdMember, number>) => [...w].map(([m, n]) => `${m.name}:${n}`).join(' ');

before(async () => {
  if (skip) return;
  topo = await Topology.create({ hosts: 3, podsPerHost: 1 });
  etcd = await EtcdCluster.start(topo, { size: 3 });
  await etcd.etcdctl(['put', '/coreos.com/network/config', CONFIG]);
  for (const h of topo.hosts.slice(0, 2)) start(h);
  await Promise.all([...flanneld.values()].map((f) => f.waitReady()));
  for (const h of topo.hosts.slice(0, 2)) await topo.wirePods(h);
});

after(async () => {
  await topo?.destroy();
});

test('3-member etcd, leader killed with pings running: 0 loss, no duplicate subnets, watches continue', { skip, timeout: 120_000 }, async (t) => {
  const [h1, h2, h3] = topo.hosts as [Host, Host, Host];
  const pingers = pingAll(topo, [h1.pods[0]!, h2.pods[0]!], 0.1);
  await Promise.all(pingers.map((p) => p.waitReplies(5)));

  // Make the leader a member that serves a daemon's watch, so the kill breaks that watch too.
  // (A daemon says "ready" just before it starts its watch: wait for both.)
  let w0 = new Map<EtcdMember, number>();
  await waitUntil('one watch per daemon', async () => total((w0 = await watchersByMember())) === 2, 10_000).catch((e: Error) => {
    throw new Error(`${e.message}: ${show(w0)}`);
  });
  const old = [...w0].find(([, n]) => n > 0)![0];
  await etcd.moveLeader(old);
  await waitUntil('leadership moved', async () => (await etcd.leader()) === old, 10_000);

  const tKill = Date.now();
  await etcd.kill(old);
  let next: EtcdMember | null = null;
  const electMs = await waitUntil('a new leader', async () => (next = await etcd.leader()) !== null && next !== old, 20_000, 50);

  const f3 = start(h3);
  await f3.waitReady(30_000);
  const leases = parseLeases(await etcd.etcdctl(['get', '--prefix', SUBNETS]));
  assert.equal(leases.length, 3, leases.map((l) => `${l.name}=${l.publicIP}`).join(' '));
  assert.deepEqual(duplicateSubnets(leases), []);
  assert.deepEqual(leases.map((l) => l.publicIP).sort(), [h1.ip, h2.ip, h3.ip].sort());
  const convergeMs = await waitUntil(
    'h3 programmed on h1 and h2, and every kernel matches the leases',
    async () => {
      for (const h of [h1, h2, h3]) if (entriesDiff(expectedEntries(leases, h.ip), await kernelEntries(topo, h)) !== '') return false;
      return true;
    },
    30_000,
  );
  const sinceKill = Date.now() - tKill;
  await topo.wirePods(h3);
  const all = [h1, h2, h3].map((h) => h.pods[0]!);
  const pairs = all.flatMap((a) => all.filter((b) => b !== a).map((b) => [a, b] as const));
  await waitUntil('every pod reaches every other', async () => (await Promise.all(pairs.map(([a, b]) => topo.ping(a.name, b.ip, { timeoutS: 1 })))).every((r) => r.ok), 10_000);

  const tallies = await Promise.all(pingers.map((p) => p.stop()));
  const lost = tallies.reduce((n, x) => n + x.lost.length, 0);
  let w1 = new Map<EtcdMember, number>();
  await waitUntil('one watch per daemon after the kill', async () => total((w1 = await watchersByMember())) === 3, 10_000).catch((e: Error) => {
    throw new Error(`${e.message}: ${show(w1)}`);
  });
  t.diagnostic(`killed leader ${old.name} (watchers per member before: ${show(w0)}); new leader ${(next as EtcdMember | null)?.name} after ${electMs} ms; watchers now: ${show(w1)}`);
  t.diagnostic(`h3 ready, then programmed everywhere within ${convergeMs} ms (${sinceKill} ms after the kill)`);
  t.diagnostic(`pod pings: ${describeTallies(tallies)}`);
  for (const [h, f] of flanneld) assert.equal(f.proc.exitCode, null, `${h.name}'s flanneld still running:\n${f.raw.join('\n')}`);
  assert.equal(lost, 0, `pod pings lost: ${describeTallies(tallies)}`);
});
