// npm run bench:etcd-client — not a test. How much each etcd client costs a
// fresh flanneld: process start → first successful range of a prefix against
// a real etcd on loopback, and RSS right after it. Each candidate runs in its
// own fresh node process (bench/etcd-client-probe.js), interleaved round by
// round, medians reported.
//   (a) etcd3, as the etcd3 adapter uses it (grpc-js + proto-loader parsing .proto at load)
//   (b) gateway: etcd's JSON gateway over node:http keep-alive (src/store/etcd/gateway-client.ts)
//   (c) grpc-static: @grpc/grpc-js with no .proto parsing (request encoded by hand),
//       the lower bound of "a leaner gRPC setup with a precompiled descriptor"
//   floor: `node` running the probe with no client and no request
// Then the whole daemon, interleaved: flanneld (alloc backend on lo, no
// namespaces, no root needed) with FLANNEL_ETCD_CLIENT=etcd3 and =gateway,
// spawn → subnet.env holding FLANNEL_SUBNET, and RSS 3 s later.
// Env: BENCH_ROUNDS (default 9), BENCH_FLANNELD=0 skips the daemon part.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FLANNELD, ROOT } from '../test/helpers/flanneld.js';
import { startEtcd, type EtcdServer } from '../test/helpers/etcd.js';
import { allocStart } from './alloc-start.js';

const PROBE = path.join(ROOT, 'dist/bench/etcd-client-probe.js');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9);
const CANDIDATES = ['floor', 'etcd3', 'gateway', 'grpc-static'];

interface Run {
  wallMs: number;
  inProcMs: number;
  rssKb: number;
}

function once(candidate: string, endpoint: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, [PROBE, candidate, endpoint], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '' } });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('\n')) {
        const wallMs = performance.now() - t0;
        const r = JSON.parse(out) as { ms: number; rss: number; keys: number };
        if (candidate !== 'floor' && r.keys !== 3) reject(new Error(`${candidate}: expected 3 keys, got ${r.keys}`));
        resolve({ wallMs, inProcMs: r.ms, rssKb: r.rss / 1024 });
      }
    });
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    p.on('exit', (code) => {
      if (code !== 0) reject(new Error(`${candidate} exited ${code}: ${err}`));
    });
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One flanneld start with this etcd client: spawn → subnet.env, RSS 3 s later. */
async function daemonOnce(etcd: EtcdServer, client: string, i: number, dir: string): Promise<Run> {
  const r = await allocStart({ etcd, argv: [process.execPath, FLANNELD], prefix: `/bench-d${i}-${client}/network`, subnetFile: path.join(dir, `${i}-${client}.env`), index: i, env: { FLANNEL_ETCD_CLIENT: client }, rssWaitMs: 3000 });
  return { wallMs: r.ms, inProcMs: NaN, rssKb: r.rssKb };
}

async function main(): Promise<void> {
  const etcd = await startEtcd();
  try {
    for (let i = 1; i <= 3; i++) await etcd.client.put(`/bench/network/subnets/10.244.${i}.0-24`).value(`{"PublicIP":"192.0.2.${i}","PublicIPv6":null}`);
    console.log(`# bench:etcd-client — ${os.cpus().length} CPUs, node ${process.version}, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}, ${ROUNDS} rounds`);
    // warm the page cache once per candidate
    for (const c of CANDIDATES) await once(c, etcd.endpoint);
    const runs = new Map<string, Run[]>(CANDIDATES.map((c) => [c, []]));
    for (let r = 0; r < ROUNDS; r++) {
      // rotate the order each round so no candidate always runs first
      const order = CANDIDATES.map((_, i) => CANDIDATES[(i + r) % CANDIDATES.length]!);
      for (const c of order) runs.get(c)!.push(await once(c, etcd.endpoint));
    }
    console.log('\n| candidate | spawn → first range (ms, median) | in-process start → first range (ms) | RSS after (MB) | runs (spawn → range, ms) |');
    console.log('|---|---|---|---|---|');
    for (const c of CANDIDATES) {
      const rs = runs.get(c)!;
      console.log(`| ${c} | ${median(rs.map((x) => x.wallMs)).toFixed(0)} | ${median(rs.map((x) => x.inProcMs)).toFixed(0)} | ${(median(rs.map((x) => x.rssKb)) / 1024).toFixed(1)} | ${rs.map((x) => x.wallMs.toFixed(0)).join(', ')} |`);
    }
    console.log(`\n# load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; floor = node running the probe script with no client (no request)`);
    if (process.env.BENCH_FLANNELD !== '0') {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'fts-bench-etcd-client-'));
      try {
        const clients = ['etcd3', 'gateway'];
        const druns = new Map<string, Run[]>(clients.map((c) => [c, []]));
        for (let r = 0; r < ROUNDS; r++) {
          for (const c of r % 2 ? [...clients].reverse() : clients) druns.get(c)!.push(await daemonOnce(etcd, c, r, dir));
        }
        console.log('\n| flanneld with FLANNEL_ETCD_CLIENT= | spawn → subnet.env (ms, median) | RSS 3 s later (MB, median) | runs (ms) |');
        console.log('|---|---|---|---|');
        for (const c of clients) {
          const rs = druns.get(c)!;
          console.log(`| ${c} | ${median(rs.map((x) => x.wallMs)).toFixed(0)} | ${(median(rs.map((x) => x.rssKb)) / 1024).toFixed(1)} | ${rs.map((x) => x.wallMs.toFixed(0)).join(', ')} |`);
        }
        console.log(`\n# load at end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; flanneld: alloc backend on lo, no namespaces`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    await etcd.stop();
  }
}

await main();
