// Fault: 100 contenders race for the subnets of a network that has room for
// 63 (10.244.0.0/22 in /28s; SubnetMin defaults to the second /28). 10 are
// real flanneld processes, one per host namespace; 90 run the daemon's real
// lease code (StoreLeaseSource over EtcdStore) in 3 processes in the underlay,
// all against the real etcd. Expected: exactly 63 winners, every subnet held
// by one of them only (etcd agrees with what each winner believes), no crash,
// and every loser fails with "out of subnets" naming the Network (as does
// an 11th daemon started after the race).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ETCD_CLIENT_URL, isRoot, parseCidr, Topology, type BgProc, type Host } from '../helpers/netns.js';
import type { FlanneldProc } from '../helpers/flanneld.js';
import type { RacerResult, RacerSpec } from '../helpers/lease-racer.js';
import { duplicateSubnets, parseLeases, SUBNETS, waitUntil } from '../helpers/faults.js';

const skip = isRoot() ? false : 'needs root (network namespaces)';
const CONFIG = '{"Network":"10.244.0.0/22","SubnetLen":28,"Backend":{"Type":"vxlan"}}';
const CAPACITY = 63;
const DAEMONS = 10;
const RACER_PROCS = 3;
const PER_PROC = 30;
const CONTENDERS = DAEMONS + RACER_PROCS * PER_PROC;
const OUT_OF_SUBNETS = /^out of subnets in Network 10\.244\.0\.0\/22: no free \/28 between SubnetMin 10\.244\.0\.16 and SubnetMax 10\.244\.3\.240 \(\d+ leases\)$/;
const RACER = fileURLToPath(new URL('../helpers/lease-racer.js', import.meta.url));
let topo: Topology;
let contenders: Host[];
let late: Host;

/** The one error a daemon that gave up reported (as its JSON error line and as the plain "flanneld: …" exit line). */
function theError(f: FlanneldProc): string {
  const msgs = new Set(f.lines.filter((l) => l.level >= 50).map((l) => l.msg.replace(/^flanneld: /, '')));
  assert.equal(msgs.size, 1, `one error, said once or twice:\n${f.raw.join('\n')}`);
  return [...msgs][0]!;
}

before(async () => {
  if (skip) return;
  topo = await Topology.create({ hosts: DAEMONS + 1, podsPerHost: 0 });
  await topo.startEtcd();
  await topo.etcdctl('put', '/coreos.com/network/config', CONFIG);
  contenders = topo.hosts.slice(0, DAEMONS);
  late = topo.hosts[DAEMONS]!;
});

after(async () => {
  await topo?.destroy();
});

test(`${CONTENDERS} contenders (${DAEMONS} flanneld + ${RACER_PROCS * PER_PROC} lease-manager racers) for ${CAPACITY} subnets: exactly ${CAPACITY} winners, no duplicates, clear errors`, { skip, timeout: 120_000 }, async (t) => {
  const t0 = Date.now();
  // The racers connect and read the config, say "ready" and wait for the go
  // file. The daemons start alongside; the go file appears once every racer
  // is ready and the first daemon has its VTEP (its next step is the lease),
  // so the daemons and the racers ask at about the same time.
  const goFile = path.join(topo.tmpDir, 'go');
  const racers: BgProc[] = [];
  for (let p = 0; p < RACER_PROCS; p++) {
    const spec: RacerSpec = { endpoints: [ETCD_CLIENT_URL], count: PER_PROC, firstIndex: 1 + p * PER_PROC, goFile };
    racers.push(topo.spawn(topo.underlay, [process.execPath, RACER], { env: { FTS_LEASE_RACER: JSON.stringify(spec) }, label: `lease racer ${p}` }));
  }
  const daemons = new Map<Host, FlanneldProc>();
  for (const h of contenders) daemons.set(h, topo.startFlanneld(h));
  await waitUntil(
    'racers ready and a daemon about to ask',
    async () => racers.every((r) => /^ready$/m.test(r.stderr)) && [...daemons.values()].some((f) => f.lines.some((l) => /^using flannel\.1/.test(l.msg))),
    60_000,
    20,
  );
  writeFileSync(goFile, '');
  const startAt = Date.now();

  const codes = await Promise.all(racers.map((r) => r.exited));
  const results: RacerResult[] = racers.flatMap((r) => r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as RacerResult));
  // Each daemon either becomes ready or exits (a loser exits 1 with one line).
  await waitUntil(
    'every flanneld ready or exited',
    async () => [...daemons.values()].every((f) => f.proc.exitCode !== null || f.lines.some((l) => /; ready$/.test(l.msg))),
    60_000,
  );
  const raceMs = Date.now() - startAt;
  const leases = parseLeases(await topo.etcdctl('get', '--prefix', SUBNETS));

  const racerWins = results.filter((r) => r.subnet !== undefined);
  const racerLosses = results.filter((r) => r.error !== undefined);
  const daemonWins = [...daemons].filter(([, f]) => f.proc.exitCode === null);
  const daemonLosses = [...daemons].filter(([, f]) => f.proc.exitCode !== null);
  const lostRaces = results.reduce((n, r) => n + r.lostRaces, 0);
  const slowest = Math.max(...results.map((r) => r.ms));
  // When each daemon got its answer, relative to the racers' start signal (from its log's time field).
  const daemonAt = [...daemons.values()].map((f) => {
    const l = f.lines.find((x) => /^acquired lease|^out of subnets/.test(x.msg));
    return typeof l?.time === 'number' ? l.time - startAt : NaN;
  });
  const rel = (xs: number[]) => xs.sort((a, b) => a - b).map((x) => x - startAt);
  const every10 = (xs: number[]) => xs.filter((_, i) => i % 10 === 0 || i === xs.length - 1).join(', ');
  t.diagnostic(`relative to the start signal (ms): flanneld answers ${daemonAt.sort((a, b) => a - b).join(', ')}; racers asked ${every10(rel(results.map((r) => r.askedAt)))}, answered ${every10(rel(results.map((r) => r.doneAt)))} (every 10th)`);
  t.diagnostic(
    `${CONTENDERS} contenders: ${racerWins.length + daemonWins.length} won (${daemonWins.length} flanneld, ${racerWins.length} racers), ` +
      `${racerLosses.length + daemonLosses.length} lost (${daemonLosses.length} flanneld, ${racerLosses.length} racers); ` +
      `${leases.length} leases in etcd, ${duplicateSubnets(leases).length} duplicates; ${lostRaces} creation races lost and retried by racers; ` +
      `slowest racer ${slowest} ms; all settled ${raceMs} ms after the start signal (${Date.now() - t0} ms in all)`,
  );

  // No crash: racer processes exit 0 with one result per contender; daemons exit 0 (running) or 1 (out of subnets), nothing else.
  assert.deepEqual(codes, racers.map(() => 0), racers.map((r) => r.stderr).join('\n'));
  assert.equal(results.length, RACER_PROCS * PER_PROC);
  for (const r of racerLosses) assert.match(r.error!, OUT_OF_SUBNETS, `racer ${r.index} (${r.errorName})`);
  for (const [h, f] of daemonLosses) {
    assert.equal(f.proc.exitCode, 1, `${h.name}:\n${f.raw.join('\n')}`);
    assert.match(theError(f), OUT_OF_SUBNETS);
  }
  assert.ok(![...daemons.values()].some((f) => f.raw.some((l) => /\bat .*\.js:\d+|Uncaught|unhandled/i.test(l))), 'a stack trace in a daemon log');

  // A daemon that comes after the race finds the network full: one line, exit 1.
  const f = topo.startFlanneld(late);
  assert.equal(await f.exited, 1, f.raw.join('\n'));
  assert.equal(theError(f), `out of subnets in Network 10.244.0.0/22: no free /28 between SubnetMin 10.244.0.16 and SubnetMax 10.244.3.240 (${CAPACITY} leases)`);
  t.diagnostic(`a daemon started after the race said: ${theError(f)}`);

  // Exactly min(N, capacity) winners; every winner's subnet is in etcd under its own public IP, held by nobody else.
  assert.equal(racerWins.length + daemonWins.length, Math.min(CONTENDERS, CAPACITY));
  assert.equal(leases.length, CAPACITY);
  assert.deepEqual(duplicateSubnets(leases), []);
  const byCidr = new Map(leases.map((l) => [l.cidr, l]));
  const claimed = [...racerWins.map((r) => [r.subnet!, r.publicIP] as const), ...daemonWins.map(([h]) => [`${parseCidr(topo.subnetEnv(h).FLANNEL_SUBNET).base}/28`, h.ip] as const)];
  assert.equal(new Set(claimed.map(([c]) => c)).size, claimed.length, 'two winners believe they hold the same subnet');
  for (const [cidr, ip] of claimed) assert.equal(byCidr.get(cidr)?.publicIP, ip, `${cidr} in etcd belongs to ${ip}`);
});
