// Fault: etcd stopped for a minute (FTS_ETCD_OUTAGE_S, default 60) while pods
// on two hosts ping each other every 0.1 s. The data path must not depend on
// etcd: not one ping may be lost. When etcd is back, the daemons must
// reconnect their watches: a third host started afterwards must be programmed
// on the first two, and all pods must reach each other.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { isRoot, Topology, type Host } from '../helpers/netns.js';
import type { FlanneldProc } from '../helpers/flanneld.js';
import { describeTallies, entriesDiff, expectedEntries, kernelEntries, parseLeases, pingAll, sleep, startEtcdAndTwoDaemons, SUBNETS, waitUntil } from '../helpers/faults.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';
const CONFIG = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}';
const OUTAGE_S = Number(process.env.FTS_ETCD_OUTAGE_S ?? 60);
let topo: Topology;
const flanneld = new Map<Host, FlanneldProc>();

before(async () => {
  if (skip) return;
  assert.ok(Number.isFinite(OUTAGE_S) && OUTAGE_S > 0, `FTS_ETCD_OUTAGE_S must be a positive number, got ${process.env.FTS_ETCD_OUTAGE_S}`);
  topo = await Topology.create({ hosts: 3, podsPerHost: 1 });
  await startEtcdAndTwoDaemons(topo, CONFIG, flanneld);
});

after(async () => {
  await topo?.destroy();
});

test(`etcd stopped for ${OUTAGE_S} s: 0 pod pings lost; afterwards the daemons resync and a new host is programmed everywhere`, { skip, timeout: (OUTAGE_S + 90) * 1000 }, async (t) => {
  const [h1, h2, h3] = topo.hosts as [Host, Host, Host];
  const pods = [h1.pods[0]!, h2.pods[0]!];
  const pingers = pingAll(topo, pods, 0.1);
  await Promise.all(pingers.map((p) => p.waitReplies(5)));

  const tStop = Date.now();
  await topo.stopEtcd();
  await sleep(OUTAGE_S * 1000 - (Date.now() - tStop));
  // Still no etcd: the daemons are alive and serving.
  for (const [h, f] of flanneld) assert.equal(f.proc.exitCode, null, `${h.name}'s flanneld died during the outage:\n${f.raw.join('\n')}`);
  const outageMs = Date.now() - tStop;
  const tStart = Date.now();
  await topo.startEtcd();
  const etcdUpMs = Date.now() - tStart;

  // A host started now: the others only learn of it through their (reconnected) watches.
  const f3 = topo.startFlanneld(h3);
  flanneld.set(h3, f3);
  await f3.waitReady();
  const leases = parseLeases(await topo.etcdctl('get', '--prefix', SUBNETS));
  assert.equal(leases.length, 3, leases.map((l) => l.name).join(' '));
  const l3 = leases.find((l) => l.publicIP === h3.ip)!;
  const convergeMs = await waitUntil(
    `${l3.name} programmed on h1 and h2, and their kernels match the leases`,
    async () => {
      for (const h of [h1, h2]) if (entriesDiff(expectedEntries(leases, h.ip), await kernelEntries(topo, h)) !== '') return false;
      return true;
    },
    30_000,
  );
  const sinceEtcd = Date.now() - tStart;
  await topo.wirePods(h3);
  const all = [h1, h2, h3].map((h) => h.pods[0]!);
  const pairs = all.flatMap((a) => all.filter((b) => b !== a).map((b) => [a, b] as const));
  const meshMs = await waitUntil(
    'every pod reaches every other',
    async () => (await Promise.all(pairs.map(([a, b]) => topo.ping(a.name, b.ip, { timeoutS: 1 })))).every((r) => r.ok),
    10_000,
  );

  const tallies = await Promise.all(pingers.map((p) => p.stop()));
  const sent = tallies.reduce((n, x) => n + x.transmitted, 0);
  const lost = tallies.reduce((n, x) => n + x.lost.length, 0);
  t.diagnostic(`etcd down ${outageMs} ms (healthy again after ${etcdUpMs} ms); pod pings across the outage: ${sent} sent, ${lost} lost (${describeTallies(tallies)})`);
  t.diagnostic(`new host h3 ready, then programmed on h1+h2 in ${convergeMs} ms (${sinceEtcd} ms after etcd restart); full pod mesh in ${meshMs} ms`);
  for (const [h, f] of flanneld) {
    assert.equal(f.proc.exitCode, null, `${h.name}'s flanneld still running`);
    assert.ok(!f.lines.some((l) => /revoked|went back in time/.test(l.msg)), f.raw.join('\n'));
  }
  assert.ok(tallies.every((x) => x.transmitted >= OUTAGE_S * 5), `pings ran through the whole outage: ${describeTallies(tallies)}`);
  assert.equal(lost, 0, `pod pings lost during the etcd outage: ${describeTallies(tallies)}`);
});
