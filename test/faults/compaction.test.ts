// Fault: etcd compacts away the history a daemon's watch still needs. h2's
// flanneld is frozen (SIGSTOP) and its connections to etcd are cut (ss -K
// inside h2), leases are added, changed and deleted, etcd is compacted to the
// current revision and defragmented, then h2 resumes. Its watch resumes from
// a compacted revision, so etcd cancels it: the daemon must say why
// ("compacted", not an empty reason), list again and converge, so that its
// kernel entries match the leases exactly. Pod pings run throughout (h2's
// data path stays in the kernel while its daemon is frozen).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { isRoot, Topology, type Host } from '../helpers/netns.js';
import type { FlanneldProc } from '../helpers/flanneld.js';
import { describeTallies, entriesDiff, expectedEntries, kernelEntries, leaseValue, parseLeases, pingAll, SUBNETS, waitUntil } from '../helpers/faults.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';
const CONFIG = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}';
let topo: Topology;
const flanneld = new Map<Host, FlanneldProc>();

before(async () => {
  if (skip) return;
  topo = await Topology.create({ hosts: 2, podsPerHost: 1 });
  await topo.startEtcd();
  await topo.etcdctl('put', '/coreos.com/network/config', CONFIG);
  for (const h of topo.hosts) flanneld.set(h, topo.startFlanneld(h));
  await Promise.all([...flanneld.values()].map((f) => f.waitReady()));
  for (const h of topo.hosts) await topo.wirePods(h);
});

after(async () => {
  // A frozen daemon does not act on SIGTERM: thaw it first.
  for (const f of flanneld.values()) if (f.proc.exitCode === null) f.proc.kill('SIGCONT');
  await topo?.destroy();
});

async function revision(): Promise<number> {
  const out = await topo.etcdctl('get', '/coreos.com/network/config', '-w', 'json');
  return Number((JSON.parse(out) as { header: { revision: number } }).header.revision);
}

const fake = (i: number) => ({ key: `${SUBNETS}10.244.${200 + i}.0-24`, value: leaseValue(`198.51.100.${i}`, `0a:fa:00:00:00:${i.toString(16).padStart(2, '0')}`) });

test('a watch resumed from a compacted revision: the daemon says "compacted", lists again and its kernel matches the leases', { skip, timeout: 120_000 }, async (t) => {
  const [h1, h2] = topo.hosts as [Host, Host];
  const f2 = flanneld.get(h2)!;
  // Two peers that h2 knows about before it freezes; one will be deleted, one changed.
  for (const i of [1, 2]) await topo.etcdctl('put', fake(i).key, fake(i).value);
  const before = parseLeases(await topo.etcdctl('get', '--prefix', SUBNETS));
  await waitUntil('h2 programmed the first fakes', async () => entriesDiff(expectedEntries(before, h2.ip), await kernelEntries(topo, h2)) === '', 10_000);

  const pingers = pingAll(topo, [h1.pods[0]!, h2.pods[0]!], 0.1);
  await Promise.all(pingers.map((p) => p.waitReplies(5)));

  f2.proc.kill('SIGSTOP');
  const cut = await topo.run(h2.name, ['ss', '-K', '-t', 'dst', '192.0.2.1', 'dport', '=', ':2379']);
  assert.equal(cut.code, 0, `ss -K failed: ${cut.stderr}`);
  const killed = cut.stdout.split('\n').filter((l) => /192\.0\.2\.1:2379/.test(l)).length;
  assert.ok(killed > 0, `ss -K found no connection from h2 to etcd to cut:\n${cut.stdout}\n${cut.stderr}`);
  const revFrozen = await revision();

  // While h2 is away: one lease deleted, one changed (new MAC and public IP), three added, and churn.
  await topo.etcdctl('del', fake(1).key);
  await topo.etcdctl('put', fake(2).key, leaseValue('198.51.100.102', '0a:fa:00:00:01:02'));
  for (const i of [3, 4, 5]) await topo.etcdctl('put', fake(i).key, fake(i).value);
  for (let i = 0; i < 20; i++) await topo.etcdctl('put', '/fts-test/churn', String(i));
  const rev = await revision();
  await topo.etcdctl('compact', String(rev), '--physical');
  await topo.etcdctl('defrag');
  const leases = parseLeases(await topo.etcdctl('get', '--prefix', SUBNETS));
  assert.equal(leases.length, 2 + 4);

  const tResume = Date.now();
  f2.proc.kill('SIGCONT');
  const convergeMs = await waitUntil(
    'h2 converged on the leases after the compaction',
    async () => entriesDiff(expectedEntries(leases, h2.ip), await kernelEntries(topo, h2)) === '',
    30_000,
  );
  const line = await f2.waitFor((l) => /watch ended/.test(l.msg), 5000, '"watch ended" line');
  const tallies = await Promise.all(pingers.map((p) => p.stop()));
  const lost = tallies.reduce((n, x) => n + x.lost.length, 0);
  t.diagnostic(`cut ${killed} etcd connection(s) of frozen h2 at revision ${revFrozen}; compacted at ${rev}; after SIGCONT h2 converged in ${convergeMs} ms`);
  t.diagnostic(`h2 said: ${line.msg}`);
  t.diagnostic(`pod pings: ${describeTallies(tallies)}`);

  assert.equal(f2.proc.exitCode, null, 'h2 still running');
  // The reason is there and names the compaction, not "Watcher canceled: " with nothing after it.
  assert.match(line.msg, /compacted/, f2.raw.join('\n'));
  assert.doesNotMatch(line.msg, /canceled: \)/);
  assert.ok(f2.lines.some((l) => /listing leases again/.test(l.msg)));
  // h1 followed along live and matches too.
  assert.equal(entriesDiff(expectedEntries(leases, h1.ip), await kernelEntries(topo, h1)), '');
  assert.equal(lost, 0, `pod pings lost: ${describeTallies(tallies)}`);
});
