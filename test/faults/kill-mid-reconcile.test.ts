// Fault: flanneld killed with SIGKILL in the middle of a reconcile, then
// restarted. 2000 fake peer leases land in etcd in one transaction, so h1's
// daemon has 2000 routes, neighbours and FDB entries to program; the test
// follows h1's route notifications and kills the daemon once 300 are in.
// Expected: the pods of h1 and h2 keep pinging each other throughout (the
// kernel state outlives the daemon), the restarted daemon keeps its subnet
// (subnet.env and etcd) and its VTEP MAC, and then h1's kernel entries are
// exactly the leases.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ETCD_CLIENT_URL, isRoot, Topology, type Host } from '../helpers/netns.js';
import type { FlanneldProc } from '../helpers/flanneld.js';
import { describeTallies, entriesDiff, expectedEntries, kernelEntries, leaseValue, parseLeases, pingAll, SUBNETS, vtepMac, waitUntil } from '../helpers/faults.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';
const CONFIG = '{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{"Type":"vxlan"}}';
const FAKES = 2000;
/** new peers' routes in the kernel when the daemon is killed */
const KILL_AT = 300;
let topo: Topology;
const flanneld = new Map<Host, FlanneldProc>();

before(async () => {
  if (skip) return;
  topo = await Topology.create({ hosts: 2, podsPerHost: 1 });
  await topo.startEtcd(20_000, ['--max-txn-ops', String(FAKES + 10)]);
  await topo.etcdctl('put', '/coreos.com/network/config', CONFIG);
  for (const h of topo.hosts) flanneld.set(h, topo.startFlanneld(h));
  await Promise.all([...flanneld.values()].map((f) => f.waitReady()));
  for (const h of topo.hosts) await topo.wirePods(h);
});

after(async () => {
  await topo?.destroy();
});

async function routeCount(h: Host): Promise<number> {
  return (await topo.ip(h.name, 'route', 'show', 'dev', 'flannel.1')).split('\n').filter(Boolean).length;
}

test(`SIGKILL mid-reconcile (${FAKES} new peers), then restart: same subnet and VTEP MAC, 0 pings lost, kernel matches the leases`, { skip, timeout: 180_000 }, async (t) => {
  const [h1, h2] = topo.hosts as [Host, Host];
  const before = parseLeases(await topo.etcdctl('get', '--prefix', SUBNETS));
  const own = before.find((l) => l.publicIP === h1.ip)!;
  const envBefore = topo.subnetEnv(h1);
  const macBefore = await vtepMac(topo, h1);
  const ifindexBefore = (await topo.ip(h1.name, '-o', 'link', 'show', 'flannel.1')).split(':')[0];
  assert.equal(own.mac, macBefore);

  const pingers = pingAll(topo, [h1.pods[0]!, h2.pods[0]!], 0.1);
  await Promise.all(pingers.map((p) => p.waitReplies(5)));

  // FAKES peers in 10.100.0.0/16.. (clear of the hosts' random subnets), one txn.
  const taken = new Set(before.map((l) => l.cidr));
  const puts: string[] = [];
  for (let i = 0; puts.length < FAKES; i++) {
    const cidr = `10.${100 + (i >> 8)}.${i & 255}.0/24`;
    if (taken.has(cidr)) continue;
    const n = puts.length;
    const mac = `0a:5e:00:00:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`;
    const ip = `198.18.${Math.floor(n / 250)}.${(n % 250) + 1}`;
    puts.push(`put ${SUBNETS}${cidr.replace('/', '-')} ${JSON.stringify(leaseValue(ip, mac))}`);
  }
  const txnFile = path.join(topo.tmpDir, 'fakes.txn');
  writeFileSync(txnFile, `\n${puts.join('\n')}\n\n\n`);
  const f1 = flanneld.get(h1)!;
  // Kill from the route notifications themselves (no polling lag): once
  // KILL_AT of the new peers' routes are in, SIGKILL, synchronously.
  let seen = 0;
  let killedAt = 0;
  let killTime = 0;
  const mon = topo.spawn(h1.name, ['ip', 'monitor', 'route'], { label: 'ip monitor route in h1' });
  mon.proc.stdout!.on('data', (d: Buffer) => {
    seen += (d.toString().match(/^10\.\d+\.\d+\.0\/24 via .* dev flannel\.1/gm) ?? []).length;
    if (killedAt === 0 && seen >= KILL_AT) {
      killedAt = seen;
      killTime = Date.now();
      f1.proc.kill('SIGKILL');
    }
  });
  await new Promise((r) => setTimeout(r, 500));
  const txn = await topo.exec(topo.underlay, ['sh', '-c', `etcdctl --endpoints ${ETCD_CLIENT_URL} txn < ${txnFile}`], { env: { ETCDCTL_API: '3' } });
  assert.match(txn, /^SUCCESS/, txn.slice(0, 300));
  const tTxn = Date.now();

  await waitUntil('the kill', async () => killedAt > 0, 30_000, 20);
  await f1.exited;
  await mon.stop();
  const killMs = killTime - tTxn;
  const afterKill = await routeCount(h1);
  t.diagnostic(`SIGKILL ${killMs} ms after the txn, once ${killedAt} of ${FAKES} new routes were in (${afterKill - 1} once it was dead)`);
  assert.ok(afterKill < FAKES + 1, `the reconcile had finished before the kill (${afterKill} routes): not a mid-reconcile kill`);

  // The data path between the real pods does not need the daemon.
  await new Promise((r) => setTimeout(r, 2000));
  const tRestart = Date.now();
  const f1b = topo.startFlanneld(h1);
  flanneld.set(h1, f1b);
  await f1b.waitReady(60_000);
  const readyMs = Date.now() - tRestart;
  const leases = parseLeases(await topo.etcdctl('get', '--prefix', SUBNETS));
  assert.equal(leases.length, FAKES + 2);
  let diff = '';
  const convergeMs = await waitUntil(
    'h1 kernel matches the leases',
    async () => (diff = entriesDiff(expectedEntries(leases, h1.ip), await kernelEntries(topo, h1))) === '',
    60_000,
    250,
  ).catch((e: Error) => {
    throw new Error(`${e.message}: ${diff}\n${f1b.raw.slice(-30).join('\n')}`);
  });
  const sinceRestart = Date.now() - tRestart;
  const tallies = await Promise.all(pingers.map((p) => p.stop()));
  const lost = tallies.reduce((n, x) => n + x.lost.length, 0);
  t.diagnostic(`restarted daemon ready in ${readyMs} ms; h1's kernel matched all ${leases.length - 1} peers ${sinceRestart} ms after the restart (${convergeMs} ms after ready)`);
  t.diagnostic(`pod pings across kill and restart: ${describeTallies(tallies)}`);

  // Same subnet: subnet.env and etcd, same value (so same VTEP MAC in the lease), same device.
  assert.equal(topo.subnetEnv(h1).FLANNEL_SUBNET, envBefore.FLANNEL_SUBNET);
  const ownAfter = leases.find((l) => l.publicIP === h1.ip)!;
  assert.equal(ownAfter.name, own.name);
  assert.equal(ownAfter.raw, own.raw);
  assert.equal(await vtepMac(topo, h1), macBefore);
  assert.equal((await topo.ip(h1.name, '-o', 'link', 'show', 'flannel.1')).split(':')[0], ifindexBefore, 'flannel.1 was reused, not recreated');
  assert.ok(f1b.lines.some((l) => l.msg === `found lease ${own.name} for public IP ${h1.ip}, reusing it`), f1b.raw.join('\n'));
  // h2 followed the txn live.
  assert.equal(entriesDiff(expectedEntries(leases, h2.ip), await kernelEntries(topo, h2)), '');
  assert.equal(lost, 0, `pod pings lost: ${describeTallies(tallies)}`);
});
