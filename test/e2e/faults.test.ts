// Faults flannel does not survive, in namespaces with the real etcd and the
// real flanneld: etcd wiped and restarted empty. The daemons must notice the
// store went back in time, write their leases again, and a node started
// afterwards must reach the old ones.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { isRoot, Topology, type Host } from '../helpers/netns.js';
import type { FlanneldProc } from '../helpers/flanneld.js';
import { startEtcdAndTwoDaemons, waitUntil } from '../helpers/faults.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';
const CONFIG = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}';
let topo: Topology;
const flanneld = new Map<Host, FlanneldProc>();

async function leaseKeys(): Promise<string[]> {
  const out = await topo.etcdctl('get', '--prefix', '--keys-only', '/coreos.com/network/subnets/');
  return out.split('\n').map((l) => l.trim()).filter(Boolean).sort();
}

before(async () => {
  if (skip) return;
  topo = await Topology.create({ hosts: 3, podsPerHost: 1 });
  await startEtcdAndTwoDaemons(topo, CONFIG, flanneld);
});

after(async () => {
  await topo?.destroy();
});

test('etcd wiped and restarted empty: the daemons re-register their leases, and a node started afterwards reaches them', { skip }, async () => {
  const [h1, h2, h3] = topo.hosts as [Host, Host, Host];
  const before = await leaseKeys();
  assert.equal(before.length, 2);
  // A cluster that has been up a while has a revision far above what a fresh
  // store reaches in the seconds the daemons take to reconnect; a few writes
  // (and one event under subnets/, so every watch sees the revision) stand in for that.
  for (let i = 0; i < 30; i++) await topo.etcdctl('put', '/fts-test/churn', String(i));
  await topo.etcdctl('put', '/coreos.com/network/subnets/churn', 'x');
  await topo.etcdctl('del', '/coreos.com/network/subnets/churn');

  await topo.stopEtcd({ wipe: true });
  await topo.startEtcd();
  // No check that it came back empty here: the daemons may already have put
  // their leases back by the time we could look (that the store was wiped is
  // what their "went back in time" line below says).
  await topo.etcdctl('put', '/coreos.com/network/config', CONFIG);

  const ms = await waitUntil('both leases back', async () => JSON.stringify(await leaseKeys()) === JSON.stringify(before), 45_000);
  console.log(`# leases re-registered ${ms} ms after the config was put back`);
  for (const h of [h1, h2]) {
    const f = flanneld.get(h)!;
    assert.equal(f.proc.exitCode, null, `${h.name} still running`);
    const said = f.lines.filter((l) => /went back in time/.test(l.msg));
    assert.equal(said.length, 1, f.raw.join('\n'));
    assert.match(said[0]!.msg, /^etcd http:\/\/192\.0\.2\.1:2379 prefix \/coreos\.com\/network went back in time \(its revision went back from \d+ to \d+\): it was wiped or restored from an older snapshot; registering our lease 10\.244\.\d+\.0-24 again$/);
    assert.ok(!f.lines.some((l) => /revoked/.test(l.msg)), f.raw.join('\n'));
  }
  // The values are flannel's bytes again (with the VTEP MAC of the running device).
  for (const k of before) assert.match(await topo.etcdctl('get', k, '--print-value-only'), /^\{"PublicIP":"192\.0\.2\.1[12]","PublicIPv6":null,"BackendType":"vxlan","BackendData":\{"VNI":1,"VtepMAC":"[0-9a-f:]{17}"\}\}\n$/);

  // A node started now finds the old ones, and they see it.
  const f3 = topo.startFlanneld(h3);
  flanneld.set(h3, f3);
  await f3.waitReady();
  await topo.wirePods(h3);
  const pods = [h1, h2, h3].map((h) => h.pods[0]!);
  const pairs = pods.flatMap((a) => pods.filter((b) => b !== a).map((b) => [a, b] as const));
  await waitUntil(
    'every pod reaches every other',
    async () => (await Promise.all(pairs.map(([a, b]) => topo.ping(a.name, b.ip, { timeoutS: 1 })))).every((r) => r.ok),
    10_000,
  );
});
