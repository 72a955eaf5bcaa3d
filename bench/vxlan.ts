// npm run bench:vxlan — not a test. In one run, on one topology:
//   1. iperf3 pod -> pod over the flannel-ts-programmed VXLAN
//   2. the same over a VXLAN programmed by hand (ip/bridge) in the same hosts
//   3. host -> host on the underlay
// and the time one host takes to program 1000 synthetic remote leases, from
// the first lease written to the kernel fully programmed.
import { Topology, isRoot } from '../test/helpers/netns.js';
import { iperf3, programVxlanByHand } from './vxlan-handprogrammed.js';
import { ROOT } from '../test/helpers/flanneld.js';
import path from 'node:path';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

async function throughput(): Promise<void> {
  const topo = await Topology.create({ hosts: 2, podsPerHost: 1 });
  try {
    await topo.startEtcd();
    await topo.etcdctl('put', '/coreos.com/network/config', '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
    const [h1, h2] = topo.hosts as [typeof topo.hosts[0], typeof topo.hosts[0]];
    const start = async () => {
      const fs = topo.hosts.map((h) => topo.startFlanneld(h));
      await Promise.all(fs.map((f) => f.waitReady()));
      return fs;
    };
    let fl = await start();
    for (const h of topo.hosts) await topo.wirePods(h);
    const [p1, p2] = [h1.pods[0]!, h2.pods[0]!];
    const ok = async () => {
      for (let i = 0; i < 50; i++) if ((await topo.ping(p1.name, p2.ip, { timeoutS: 1 })).ok) return;
      throw new Error('no pod-to-pod connectivity');
    };
    const res = { ts: [] as number[], hand: [] as number[], under: [] as number[] };
    for (let r = 0; r < ROUNDS; r++) {
      await ok();
      res.ts.push(await iperf3(topo, p1.name, p2.name, p2.ip, SECONDS));
      // hand-programmed: flanneld stopped, its device removed, same subnets/MTU
      await Promise.all(fl.map((f) => f.stop()));
      for (const h of topo.hosts) await topo.ip(h.name, 'link', 'del', 'flannel.1');
      await programVxlanByHand(topo);
      await ok();
      res.hand.push(await iperf3(topo, p1.name, p2.name, p2.ip, SECONDS));
      res.under.push(await iperf3(topo, h1.name, h2.name, h2.ip, SECONDS));
      for (const h of topo.hosts) await topo.ip(h.name, 'link', 'del', 'flannel.1');
      fl = await start();
    }
    await Promise.all(fl.map((f) => f.stop()));
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const ts = med(res.ts);
    const hand = med(res.hand);
    const under = med(res.under);
    console.log(`iperf3 TCP, ${SECONDS} s per run, ${ROUNDS} rounds (median):`);
    console.log(`  pod->pod  flannel-ts VXLAN     ${ts.toFixed(2)} Gbit/s   runs ${res.ts.map((x) => x.toFixed(2)).join(', ')}`);
    console.log(`  pod->pod  hand-programmed VXLAN ${hand.toFixed(2)} Gbit/s   runs ${res.hand.map((x) => x.toFixed(2)).join(', ')}`);
    console.log(`  host->host underlay            ${under.toFixed(2)} Gbit/s   runs ${res.under.map((x) => x.toFixed(2)).join(', ')}`);
    console.log(`  ratio flannel-ts / hand = ${(ts / hand).toFixed(3)} (target >= 0.97)`);
    console.log(`  ratio flannel-ts / underlay = ${(ts / under).toFixed(3)}`);
  } finally {
    await topo.destroy();
  }
}

async function program1000(): Promise<void> {
  const N = 1000;
  const topo = await Topology.create({ hosts: 1, podsPerHost: 0 });
  try {
    await topo.startEtcd();
    await topo.etcdctl('put', '/coreos.com/network/config', '{"Network":"10.0.0.0/8","Backend":{"Type":"vxlan"}}');
    const h = topo.hosts[0]!;
    const f = topo.startFlanneld(h, ['-v=1', '--healthz-ip=127.0.0.1', '--healthz-port=9808']);
    await f.waitReady();
    const count = async () => (await topo.ip(h.name, 'route', 'show', 'dev', 'flannel.1')).trim().split('\n').filter(Boolean).length;
    const out = await topo.exec(topo.underlay, [process.execPath, path.join(ROOT, 'dist/bench/put-leases.js'), topo.etcdEndpoint, '/coreos.com/network', String(N)]);
    const { startMs, endMs } = JSON.parse(out.trim().split('\n').pop()!) as { startMs: number; endMs: number };
    let done = 0;
    for (;;) {
      if ((await count()) >= N) {
        done = Date.now();
        break;
      }
      if (Date.now() - startMs > 30_000) throw new Error('1000 leases not programmed within 30 s');
      await new Promise((r) => setTimeout(r, 10));
    }
    const recs = f.lines.filter((l) => l.msg === 'reconciled') as unknown as Array<{ time: number; ms: number; peers: number }>;
    const firstEvent = Math.min(...recs.filter((r) => r.peers > 0).map((r) => r.time - r.ms));
    const lastFull = recs.find((r) => r.peers >= N);
    const [neigh, fdb] = await Promise.all([topo.ip(h.name, 'neigh', 'show', 'dev', 'flannel.1'), topo.exec(h.name, ['bridge', 'fdb', 'show', 'dev', 'flannel.1'])]);
    console.log(`programming ${N} synthetic remote leases on one host:`);
    console.log(`  etcd puts took ${endMs - startMs} ms (concurrent)`);
    console.log(`  first watch event -> kernel fully programmed: ${lastFull ? (lastFull.time - firstEvent).toFixed(0) : '?'} ms (target <= 1000)`);
    console.log(`  first put -> ${N} routes visible to ip(8): ${done - startMs} ms`);
    console.log(`  reconciles: ${recs.length}, durations ms: ${recs.map((r) => r.ms).join(', ')}`);
    console.log(`  kernel: ${await count()} routes, ${neigh.trim().split('\n').length} neighbours, ${fdb.trim().split('\n').length} fdb entries on flannel.1`);
    // flanneld's own measure of how long its event loop was ever blocked (the
    // netlink socket runs in a worker thread, so programming 3000 entries must not show here)
    const metrics = await topo.exec(h.name, [process.execPath, '-e', 'fetch("http://127.0.0.1:9808/metrics").then(r=>r.text()).then(t=>process.stdout.write(t))']);
    const loopMax = /^flannel_event_loop_max_delay_seconds ([\d.e+-]+)$/m.exec(metrics)?.[1];
    console.log(`  longest event-loop block in flanneld since start: ${loopMax ? (Number(loopMax) * 1000).toFixed(1) : '?'} ms`);
    await f.stop();
  } finally {
    await topo.destroy();
  }
}

if (!isRoot()) {
  console.error('bench:vxlan needs root (network namespaces)');
  process.exit(1);
}
await throughput();
await program1000();
