// npm run bench:startup — not a test. flanneld start-up, variants side by
// side: each variant is a command line that starts flanneld (tsc output, the
// esbuild bundle, a saved older build...). Interleaved round by round (the
// order rotates), medians reported. Alloc backend on lo against a real etcd
// on loopback: no namespaces, no root, so this isolates the process itself
// (module loading, store calls) from netlink/VXLAN work.
//   spawn → subnet.env holding FLANNEL_SUBNET; RSS 3 s later; `--version`.
// Env: BENCH_ROUNDS (default 9); BENCH_VARIANTS: "name=cmd args;name2=cmd args"
// (default: tsc output vs dist/bundle/flanneld.cjs when built, plus node -e 0);
// BENCH_RSS_WAIT_MS (3000).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FLANNELD, ROOT } from '../test/helpers/flanneld.js';
import { startEtcd, type EtcdServer } from '../test/helpers/etcd.js';
import { allocStart, rssKbOf } from './alloc-start.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9);
const RSS_WAIT_MS = Number(process.env.BENCH_RSS_WAIT_MS ?? 3000);
const BUNDLE = path.join(ROOT, 'dist/bundle/flanneld.cjs');

function variants(): Array<{ name: string; argv: string[] }> {
  const spec = process.env.BENCH_VARIANTS;
  if (spec) {
    return spec.split(';').filter(Boolean).map((v) => {
      const i = v.indexOf('=');
      return { name: v.slice(0, i), argv: v.slice(i + 1).split(' ').filter(Boolean) };
    });
  }
  const out = [{ name: 'tsc', argv: [process.execPath, FLANNELD] }];
  if (existsSync(BUNDLE)) out.push({ name: 'bundle', argv: [process.execPath, BUNDLE] });
  return out;
}

const median = (xs: number[]) => {
  const s = [...xs].filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function timed(argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore', env: { PATH: process.env.PATH ?? '' } });
    p.on('exit', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${argv.join(' ')} exited ${code}`))));
  });
}

let seq = 0;
async function daemonOnce(etcd: EtcdServer, argv: string[], dir: string): Promise<{ ms: number; rssKb: number }> {
  const i = ++seq;
  const prefix = `/bench-s${i}/network`;
  for (let k = 1; k <= 3; k++) await etcd.client.put(`${prefix}/subnets/10.244.${k}.0-24`).value(`{"PublicIP":"198.51.100.${k}","PublicIPv6":null}`);
  return allocStart({ etcd, argv, prefix, subnetFile: path.join(dir, `${i}.env`), index: i, rssWaitMs: RSS_WAIT_MS });
}

async function main(): Promise<void> {
  const vs = variants();
  const etcd = await startEtcd();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fts-bench-startup-'));
  try {
    console.log(`# bench:startup — ${os.cpus().length} CPUs, node ${process.version}, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}, ${ROUNDS} rounds`);
    const res = new Map(vs.map((v) => [v.name, { start: [] as number[], rss: [] as number[], version: [] as number[] }]));
    const floor: number[] = [];
    // one unmeasured warm-up each (page cache)
    for (const v of vs) await daemonOnce(etcd, v.argv, dir);
    for (let r = 0; r < ROUNDS; r++) {
      const order = vs.map((_, i) => vs[(i + r) % vs.length]!);
      for (const v of order) {
        const x = res.get(v.name)!;
        const d = await daemonOnce(etcd, v.argv, dir);
        x.start.push(d.ms);
        x.rss.push(d.rssKb);
        x.version.push(await timed([...v.argv, '--version']));
      }
      floor.push(await timed([process.execPath, '-e', '0']));
    }
    console.log(`\n| variant | spawn → subnet.env (ms, median) | RSS ${RSS_WAIT_MS / 1000} s later (MB) | --version (ms) | start runs (ms) |`);
    console.log('|---|---|---|---|---|');
    for (const v of vs) {
      const x = res.get(v.name)!;
      console.log(`| ${v.name} | ${median(x.start).toFixed(0)} | ${(median(x.rss) / 1024).toFixed(1)} | ${median(x.version).toFixed(0)} | ${x.start.map((t) => t.toFixed(0)).join(', ')} |`);
    }
    console.log(`\n# node -e 0: ${median(floor).toFixed(0)} ms; load at end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; alloc backend on lo, 3 peers`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await etcd.stop();
  }
}

await main();
