// npm run bench:control — not a test. The control plane of flannel-ts next to
// the real flanneld (v0.28.9, built by scripts/build-flanneld.sh), in one run,
// on one machine, interleaved, medians reported:
//
//   start → subnet.env, `--version`, RSS idle / after 1000 / after 5000 peers,
//   N leases in one etcd txn → all N routes on flannel.1 (N = 1000, 5000),
//   the raw rtnetlink batch for the same 3N entries (the physical floor),
//   one lease put → programmed and deleted → removed (p50/p99, 1000 stable
//   peers), CNI ADD+DEL against the `bridge` plugin called directly,
//   and with --churn[=SECONDS] 50 leases joining and leaving every second.
//
// Layout (all in network namespaces with a per-run prefix, see Topology):
//   <p>ul  underlay bridge, our own etcd (--max-txn-ops 20000, data in
//          /dev/shm), and bench/control-etcd-driver.js, which the bench
//          talks to over a unix socket (it cannot reach 192.0.2.1 itself)
//   <p>h1  flannel-ts's flanneld runs here, <p>h2 the real flanneld; each has
//          bench/control-route-watch.js, which timestamps every route change
//          on flannel.1 from rtnetlink notifications
//   <p>cnih / <p>cnip  host and pod namespaces for the CNI measurement
//
// Env: BENCH_ROUNDS (default 3; rounds per size), BENCH_SIZES ("1000,5000"),
// BENCH_PUTS (200), BENCH_ONLY (comma list of version,bulk,latency,cni,churn),
// BENCH_TS_FLAGS (extra flags for flannel-ts's flanneld only, e.g. "-v=1"),
// BENCH_LOG_DIR (save every daemon's stderr there), BENCH_TS_ENTRY (node flags and
// flannel-ts's flanneld entry, default "--max-semi-space-size=1
// dist/bundle/flanneld.cjs" as deployed; e.g. dist/src/cmd/flanneld/main.js),
// BENCH_TS_BEFORE (another flannel-ts entry, e.g. an older build's main.js: it
// runs in the start-up/--version/bulk phases as a third side, "before", on
// flannel-ts's host, interleaved with the others, and gets its own column).
// Args: --churn[=SECONDS] adds the churn run (default 600 s; it is not part of
// the ~3 minute default run).

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, watch as fsWatch, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { ETCD_CLIENT_URL, ETCD_PEER_URL, Topology, isRoot, type BgProc, type Host } from '../test/helpers/netns.js';
import { ROOT } from '../test/helpers/flanneld.js';
import { realFlanneldBinary } from '../test/helpers/kube.js';
import { buildDelegateConf, parseFlannelSubnetEnv, parseNetConf } from '../src/cni/config.js';
import { stableStringify } from '../src/cni/json.js';
import { peer, wallNow } from './control-peers.js';

/** node flags (if any) and the entry script, e.g. "--max-semi-space-size=1 dist/bundle/flanneld.cjs" */
const entryArgv = (spec: string) => spec.split(' ').filter(Boolean).map((a) => (a.startsWith('-') ? a : path.resolve(a)));
// Default: as the image's /opt/bin/flanneld and the systemd unit run it.
const FLANNELD = process.env.BENCH_TS_ENTRY ? entryArgv(process.env.BENCH_TS_ENTRY) : ['--max-semi-space-size=1', path.join(ROOT, 'dist/bundle/flanneld.cjs')];
const BEFORE = process.env.BENCH_TS_BEFORE ? entryArgv(process.env.BENCH_TS_BEFORE) : undefined;
const CNI_MAIN = path.join(ROOT, 'dist/src/cmd/cni/main.js');
const CNI_SEA = path.join(ROOT, 'dist/cni-plugin/flannel');
const CNI_BIN = '/usr/lib/cni';
const BENCH = path.join(ROOT, 'dist/bench');
const PROBE = path.join(BENCH, 'control-mem-probe.cjs');
/** When set, every daemon's stderr is saved there (one file per run). */
const LOG_DIR = process.env.BENCH_LOG_DIR;
let logSeq = 0;
function saveLog(what: string, proc: BgProc): void {
  if (!LOG_DIR) return;
  mkdirSync(LOG_DIR, { recursive: true });
  writeFileSync(path.join(LOG_DIR, `${String(++logSeq).padStart(2, '0')}-${what.replace(/[^\w.-]+/g, '_')}.log`), proc.stderr);
}
/** Extra flags for flannel-ts's flanneld only (e.g. -v=1 to see its 'reconciled' lines); default none. */
const TS_FLAGS = (process.env.BENCH_TS_FLAGS ?? '').split(' ').filter(Boolean);

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SIZES = (process.env.BENCH_SIZES ?? '1000,5000').split(',').map(Number);
const PUTS = Number(process.env.BENCH_PUTS ?? 200);
const CHUNK = 50;
const IDLE_PEERS = 3;
const IDLE_SETTLE_MS = 4000;
const AFTER_BULK_SETTLE_MS = 3000;
const STABLE = 1000;
const churnArg = process.argv.slice(2).find((a) => /^--churn(=\d+)?$/.test(a));
const CHURN_SECONDS = churnArg ? Number(churnArg.split('=')[1] ?? 600) : 0;
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : null;
const phase = (name: string) => (ONLY ? ONLY.has(name) : name !== 'churn' || CHURN_SECONDS > 0);

// ---------------------------------------------------------------------------
// small helpers

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = sorted(xs);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
/** Nearest-rank percentile. */
function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = sorted(xs);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
const ms = (x: number) => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) + ' ms' : 'n/a');
const mb = (kb: number) => (Number.isFinite(kb) ? (kb / 1024).toFixed(1) + ' MB' : 'n/a');
const list = (xs: number[], f: (x: number) => string = (x) => x.toFixed(0)) => xs.map(f).join(', ');
const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');
const log = (s: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);

function rssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}
const TICK_MS = 1000 / 100; // USER_HZ is 100 on Linux
/** utime + stime of the whole process (all threads), in ms. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_MS;
}
function threads(pid: number): number {
  return Number(/^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
}

interface Timed {
  code: number | null;
  ms: number;
  stdout: string;
  stderr: string;
}
/** Runs argv to completion with optional stdin/env; ms = spawn → exit. */
function timed(argv: string[], o: { env?: NodeJS.ProcessEnv; stdin?: string } = {}): Promise<Timed> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const p = spawn(argv[0]!, argv.slice(1), { env: o.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.stdin.on('error', () => undefined);
    p.on('error', (e) => (stderr += String(e)));
    p.on('exit', (code) => {
      const t = performance.now() - t0;
      p.on('close', () => resolve({ code, ms: t, stdout, stderr }));
    });
    p.stdin.end(o.stdin ?? '');
  });
}

// ---------------------------------------------------------------------------
// the etcd driver (in the underlay namespace, reached over a unix socket)

class Driver {
  constructor(readonly socket: string) {}
  call<T = Record<string, unknown>>(cmd: string, body: Record<string, unknown> = {}): Promise<T> {
    return new Promise((resolve, reject) => {
      const data = JSON.stringify(body);
      const req = http.request({ socketPath: this.socket, path: `/${cmd}`, method: 'POST', headers: { 'content-length': Buffer.byteLength(data) } }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => (text += d));
        res.on('end', () => {
          const obj = JSON.parse(text) as T & { error?: string };
          if (res.statusCode !== 200) reject(new Error(`driver ${cmd}: ${obj.error}`));
          else resolve(obj);
        });
      });
      req.on('error', reject);
      req.end(data);
    });
  }
  txn(from: number, count: number) {
    return this.call<{ t0: number; t1: number; indices: number[]; delivered: number | null; deliveredGateway: number | null }>('txn', { from, count });
  }
  put(index: number) {
    return this.call<{ t0: number; t1: number }>('put', { index });
  }
  del(index: number) {
    return this.call<{ t0: number; t1: number; deleted: number }>('del', { index });
  }
}

// ---------------------------------------------------------------------------
// route notifications from a host namespace (bench/control-route-watch.js)

interface RouteEv {
  t: number;
  add: boolean;
}

class RouteWatch {
  private events = new Map<string, RouteEv[]>();
  private listeners = new Set<(dst: string, ev: RouteEv) => void>();
  overruns = 0;
  private buf = '';
  constructor(readonly bg: BgProc) {
    bg.proc.stdout!.on('data', (d: Buffer) => {
      this.buf += d.toString();
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const f = line.split(' ');
        if (f[0] === 'O') this.overruns++;
        if (f[0] !== 'R') continue;
        const ev = { t: Number(f[1]), add: f[2] === '+' };
        const dst = f[3]!;
        let evs = this.events.get(dst);
        if (!evs) this.events.set(dst, (evs = []));
        evs.push(ev);
        for (const l of this.listeners) l(dst, ev);
      }
    });
  }

  static async start(topo: Topology, host: Host): Promise<RouteWatch> {
    const bg = topo.spawn(host.name, [process.execPath, path.join(BENCH, 'control-route-watch.js'), 'flannel.1'], { label: `route watch ${host.name}` });
    const w = new RouteWatch(bg);
    const deadline = Date.now() + 10_000;
    while (!/^ready$/m.test(bg.stdout)) {
      if (bg.done || Date.now() > deadline) throw new Error(`route watcher in ${host.name} did not start:\n${bg.stderr}`);
      await sleep(20);
    }
    return w;
  }

  reset(): void {
    this.events.clear();
    this.overruns = 0;
  }

  /** Waits until every dst has an event of the given kind at or after `since`; first/last such event times. */
  waitAll(dsts: readonly string[], add: boolean, since: number, timeoutMs: number): Promise<{ first: number; last: number }> {
    const remaining = new Set(dsts);
    let first = Infinity;
    let last = -Infinity;
    const consider = (dst: string, ev: RouteEv) => {
      if (ev.add !== add || ev.t < since || !remaining.has(dst)) return;
      remaining.delete(dst);
      first = Math.min(first, ev.t);
      last = Math.max(last, ev.t);
    };
    for (const dst of dsts) for (const ev of this.events.get(dst) ?? []) consider(dst, ev);
    if (remaining.size === 0) return Promise.resolve({ first, last });
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(l);
      };
      const l = (dst: string, ev: RouteEv) => {
        consider(dst, ev);
        if (remaining.size === 0) {
          done();
          resolve({ first, last });
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${remaining.size} of ${dsts.length} routes not ${add ? 'added' : 'removed'} within ${timeoutMs} ms (overruns: ${this.overruns}), e.g. ${[...remaining][0]}`));
      }, timeoutMs);
      this.listeners.add(l);
    });
  }
}

// ---------------------------------------------------------------------------
// the two daemons

type SideName = 'flannel-ts' | 'flanneld';
/** "before": BENCH_TS_BEFORE, start-up and bulk phases only */
type LifeSide = SideName | 'before';
interface Side {
  name: LifeSide;
  host: Host;
  watch: RouteWatch;
  subnetFile: string;
  /** flannel-ts only: where the preloaded probe writes process.memoryUsage() */
  memFile?: string;
  start(): BgProc;
}

interface MemUsage {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** heap used right after a full GC (the probe's own measurement) */
  heapLive?: number;
}

/** Asks flannel-ts's flanneld (through the preloaded probe) for process.memoryUsage(). */
async function heapOf(side: Side, proc: BgProc): Promise<MemUsage | undefined> {
  if (!side.memFile) return undefined;
  rmSync(side.memFile, { force: true });
  process.kill(proc.pid, 'SIGUSR2');
  for (let i = 0; i < 200; i++) {
    if (existsSync(side.memFile)) return JSON.parse(readFileSync(side.memFile, 'utf8')) as MemUsage;
    await sleep(10);
  }
  return undefined;
}

/** Resolves with the wall-clock time at which `file` first holds a FLANNEL_SUBNET line. */
function waitSubnetEnv(file: string, proc: BgProc, timeoutMs = 30_000): Promise<number> {
  return new Promise((resolve, reject) => {
    let finished = false;
    const check = () => {
      if (finished) return;
      const t = wallNow();
      let text = '';
      try {
        text = readFileSync(file, 'utf8');
      } catch {
        /* not yet */
      }
      if (/^FLANNEL_SUBNET=/m.test(text)) end(() => resolve(t));
      else if (proc.done) end(() => reject(new Error(`${proc.label} exited before writing ${file}:\n${proc.stderr.slice(-3000)}`)));
    };
    const w = fsWatch(path.dirname(file), (_ev, name) => {
      if (name === path.basename(file)) check();
    });
    const iv = setInterval(check, 5);
    const timer = setTimeout(() => end(() => reject(new Error(`${file} not written within ${timeoutMs} ms:\n${proc.stderr.slice(-3000)}`))), timeoutMs);
    const end = (f: () => void) => {
      finished = true;
      w.close();
      clearInterval(iv);
      clearTimeout(timer);
      f();
    };
    check();
  });
}

async function resetNode(topo: Topology, side: Side): Promise<void> {
  await topo.run(side.host.name, ['ip', 'link', 'del', 'flannel.1']);
  rmSync(side.subnetFile, { force: true });
  side.watch.reset();
}

async function kernelCounts(topo: Topology, host: Host): Promise<{ routes: number; neigh: number; fdb: number }> {
  const count = (s: string) => s.split('\n').filter((l) => l.trim()).length;
  const [r, n, f] = await Promise.all([
    topo.ip(host.name, 'route', 'show', 'dev', 'flannel.1'),
    topo.ip(host.name, 'neigh', 'show', 'dev', 'flannel.1'),
    topo.exec(host.name, ['bridge', 'fdb', 'show', 'dev', 'flannel.1']),
  ]);
  return { routes: count(r), neigh: count(n), fdb: f.split('\n').filter((l) => /dst /.test(l)).length };
}

// ---------------------------------------------------------------------------
// measurements

interface LifeRun {
  side: LifeSide;
  size: number;
  startupMs: number;
  rssIdleKb: number;
  heapIdle?: MemUsage | undefined;
  txnMs: number;
  /** txn sent → the etcd driver's own gRPC watch had all its events (etcd's share; null if it never did) */
  deliveredMs: number | null;
  /** the same through etcd's JSON gateway (flannel-ts's default client) */
  deliveredGatewayMs: number | null;
  firstRouteMs: number;
  allRoutesMs: number;
  cpuMs: number;
  rssAfterKb: number;
  heapAfter?: MemUsage | undefined;
  threads: number;
  counts: { routes: number; neigh: number; fdb: number };
}

interface RawRun {
  size: number;
  batchMs: number;
  watchedMs: number;
  failures: number;
}

/** One node's life: cold start with 3 peers, idle, then `size` leases in one txn. */
async function lifecycle(topo: Topology, driver: Driver, side: Side, size: number): Promise<LifeRun> {
  await driver.call('wipe');
  await resetNode(topo, side);
  const idle = await driver.txn(0, IDLE_PEERS);
  const t0 = wallNow();
  const proc = side.start();
  try {
    const tEnv = await waitSubnetEnv(side.subnetFile, proc);
    await side.watch.waitAll(idle.indices.map((i) => peer(i).dst), true, t0, 15_000);
    await sleep(IDLE_SETTLE_MS);
    const rssIdleKb = rssKb(proc.pid);
    const heapIdle = await heapOf(side, proc);
    const cpu0 = cpuMs(proc.pid);
    const bulk = await driver.txn(IDLE_PEERS, size);
    const seen = await side.watch.waitAll(bulk.indices.map((i) => peer(i).dst), true, bulk.t0, 120_000);
    const cpu1 = cpuMs(proc.pid);
    await sleep(AFTER_BULK_SETTLE_MS);
    const run: LifeRun = {
      side: side.name,
      size,
      startupMs: tEnv - t0,
      rssIdleKb,
      heapIdle,
      txnMs: bulk.t1 - bulk.t0,
      deliveredMs: bulk.delivered === null ? null : bulk.delivered - bulk.t0,
      deliveredGatewayMs: bulk.deliveredGateway === null ? null : bulk.deliveredGateway - bulk.t0,
      firstRouteMs: seen.first - bulk.t0,
      allRoutesMs: seen.last - bulk.t0,
      cpuMs: cpu1 - cpu0,
      rssAfterKb: rssKb(proc.pid),
      heapAfter: await heapOf(side, proc),
      threads: threads(proc.pid),
      counts: await kernelCounts(topo, side.host),
    };
    const want = size + IDLE_PEERS;
    if (run.counts.routes < want || run.counts.neigh < want || run.counts.fdb < want) {
      throw new Error(`${side.name}: expected ${want} routes/neighbours/fdb entries, found ${JSON.stringify(run.counts)}`);
    }
    return run;
  } finally {
    await proc.stop(5000);
    saveLog(`${side.name}-bulk-${size}`, proc);
  }
}

/** The raw batch for `size` peers in the host namespace, timed in-process and by the route watcher. */
async function rawBatch(topo: Topology, side: Side, size: number): Promise<RawRun> {
  await resetNode(topo, side);
  const out = await topo.exec(side.host.name, [process.execPath, path.join(BENCH, 'control-raw-batch.js'), String(size), 'eth0', side.host.ip, String(IDLE_PEERS)], {
    timeoutMs: 120_000,
  });
  const r = JSON.parse(out.trim().split('\n').pop()!) as { failures: number; firstFailure?: string; batchMs: number; t0: number; routes: number };
  if (r.failures > 0 || r.routes !== size) throw new Error(`raw batch: ${r.failures} failures (${r.firstFailure}), ${r.routes} routes`);
  const dsts = Array.from({ length: size }, (_, i) => peer(IDLE_PEERS + i).dst);
  const seen = await side.watch.waitAll(dsts, true, r.t0, 10_000);
  return { size, batchMs: r.batchMs, watchedMs: seen.last - r.t0, failures: r.failures };
}

async function versions(realBin: string): Promise<{ ours: number[]; real: number[]; node: number[]; before: number[] }> {
  const res = { ours: [] as number[], real: [] as number[], node: [] as number[], before: [] as number[] };
  const one = async (argv: string[], into: number[]) => {
    const r = await timed(argv);
    if (r.code !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr}`);
    into.push(r.ms);
  };
  for (let i = 0; i < 11; i++) {
    const order: Array<[string[], number[]]> = [
      [[process.execPath, ...FLANNELD, '--version'], res.ours],
      [[realBin, '--version'], res.real],
      [[process.execPath, '-e', '0'], res.node],
      ...(BEFORE ? [[[process.execPath, ...BEFORE, '--version'], res.before] as [string[], number[]]] : []),
    ];
    if (i % 2) order.reverse();
    for (const [argv, into] of order) await one(argv, into);
  }
  // the first round warms the page cache; drop it
  for (const xs of Object.values(res)) xs.shift();
  return res;
}

interface LatencyResult {
  add: number[];
  del: number[];
  putAck: number[];
}

/** Single puts/deletes with STABLE stable peers; chunks of CHUNK, sides alternated ABBA. */
async function latency(topo: Topology, driver: Driver, sides: [Side, Side]): Promise<Record<SideName, LatencyResult>> {
  await driver.call('wipe');
  for (const s of sides) await resetNode(topo, s);
  const stable = await driver.txn(0, STABLE);
  const stableDsts = stable.indices.map((i) => peer(i).dst);
  const res: Record<SideName, LatencyResult> = {
    'flannel-ts': { add: [], del: [], putAck: [] },
    flanneld: { add: [], del: [], putAck: [] },
  };
  const chunks = Math.ceil(PUTS / CHUNK);
  const pattern = [0, 1, 1, 0]; // ABBA, repeated
  let next = 20_000;
  for (let c = 0; c < chunks * 2; c++) {
    const side = sides[pattern[c % 4]!]!;
    const r = res[side.name as SideName];
    const proc = side.start();
    try {
      const t0 = wallNow();
      await waitSubnetEnv(side.subnetFile, proc);
      // All stable routes present (a restart finds them already there), then let the initial sync settle.
      for (;;) {
        const n = (await topo.ip(side.host.name, 'route', 'show', 'dev', 'flannel.1')).split('\n').filter((l) => l.trim()).length;
        if (n >= stableDsts.length) break;
        if (wallNow() - t0 > 60_000) throw new Error(`${side.name}: stable peers not programmed within 60 s (${n} routes)`);
        await sleep(100);
      }
      await sleep(1500);
      const todo = Math.min(CHUNK, PUTS - r.add.length);
      for (let k = 0; k < todo; k++) {
        const idx = next++;
        const dst = peer(idx).dst;
        const p = await driver.put(idx);
        const a = await side.watch.waitAll([dst], true, p.t0, 10_000);
        r.add.push(a.last - p.t0);
        r.putAck.push(p.t1 - p.t0);
        await sleep(10);
        const d = await driver.del(idx);
        const g = await side.watch.waitAll([dst], false, d.t0, 10_000);
        r.del.push(g.last - d.t0);
        await sleep(10);
      }
    } finally {
      await proc.stop(5000);
      saveLog(`${side.name}-latency-${c + 1}`, proc);
    }
    log(`latency chunk ${c + 1}/${chunks * 2} (${side.name}) done`);
  }
  return res;
}

interface CniResult {
  node: number[];
  sea: number[];
  bridge: number[];
  versionNode: number[];
  versionSea: number[];
  nodeFloor: number[];
}

async function cni(topo: Topology): Promise<CniResult> {
  const hostNs = await topo.createNamespace('cnih');
  const podNs = await topo.createNamespace('cnip');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fts-bench-cni-'));
  try {
    const subnetFile = path.join(dir, 'subnet.env');
    // FLANNEL_IPMASQ=true, as kube-flannel runs flanneld (--ip-masq): bridge then adds no NAT rule.
    const envText = 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1410\nFLANNEL_IPMASQ=true\n';
    writeFileSync(subnetFile, envText);
    const conf = {
      cniVersion: '1.0.0',
      name: 'cbr0',
      type: 'flannel',
      subnetFile,
      dataDir: path.join(dir, 'flannel'),
      ipam: { dataDir: path.join(dir, 'ipam') },
      delegate: { hairpinMode: true, isDefaultGateway: true },
    };
    const fconf = JSON.stringify(conf);
    // What flannel hands bridge, called directly: the equivalent work without the flannel plugin.
    const bconf = stableStringify(buildDelegateConf(parseNetConf(fconf), parseFlannelSubnetEnv(envText, subnetFile)));
    const env = (cmd: string, cid: string): NodeJS.ProcessEnv => ({
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      CNI_COMMAND: cmd,
      CNI_CONTAINERID: cid,
      CNI_NETNS: `/var/run/netns/${podNs}`,
      CNI_IFNAME: 'eth0',
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${cid}`,
      CNI_PATH: CNI_BIN,
    });
    const inHost = (argv: string[]) => ['ip', 'netns', 'exec', hostNs, ...argv];
    const cycle = async (argv: string[], conf: string, cid: string): Promise<number> => {
      let total = 0;
      for (const cmd of ['ADD', 'DEL']) {
        const r = await timed(inHost(argv), { env: env(cmd, cid), stdin: conf });
        if (r.code !== 0) throw new Error(`${argv.join(' ')} ${cmd} failed (${r.code}): ${r.stdout} ${r.stderr}`);
        total += r.ms;
      }
      return total;
    };
    const haveSea = existsSync(CNI_SEA);
    const res: CniResult = { node: [], sea: [], bridge: [], versionNode: [], versionSea: [], nodeFloor: [] };
    // one unmeasured warm-up of each (page cache, cni0 creation by the first ADD)
    await cycle([process.execPath, CNI_MAIN], fconf, 'warm-n');
    if (haveSea) await cycle([CNI_SEA], fconf, 'warm-s');
    await cycle([path.join(CNI_BIN, 'bridge')], bconf, 'warm-b');
    for (let i = 0; i < 10; i++) {
      const steps: Array<() => Promise<void>> = [
        async () => void res.node.push(await cycle([process.execPath, CNI_MAIN], fconf, `bench-n-${i}`)),
        async () => void res.bridge.push(await cycle([path.join(CNI_BIN, 'bridge')], bconf, `bench-b-${i}`)),
        async () => void (haveSea && res.sea.push(await cycle([CNI_SEA], fconf, `bench-s-${i}`))),
        async () => void res.nodeFloor.push((await timed(inHost([process.execPath, '-e', '0']))).ms),
        async () => void res.versionNode.push((await timed(inHost([process.execPath, CNI_MAIN]), { env: env('VERSION', 'v'), stdin: fconf })).ms),
        async () => void (haveSea && res.versionSea.push((await timed(inHost([CNI_SEA]), { env: env('VERSION', 'v'), stdin: fconf })).ms)),
      ];
      // rotate the order every round so no variant always runs first
      for (let j = 0; j < steps.length; j++) await steps[(i + j) % steps.length]!();
    }
    return res;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface ChurnSample {
  atS: number;
  heapUsed?: number | undefined;
  rssKb: Record<SideName, number>;
  cpuPct: Record<SideName, number>;
}

/** Both daemons at once (they see the same events): 1000 stable peers, 50 joining and 50 leaving every second. */
async function churn(topo: Topology, driver: Driver, sides: [Side, Side], seconds: number) {
  await driver.call('wipe');
  for (const s of sides) await resetNode(topo, s);
  const stable = await driver.txn(0, STABLE);
  const procs = sides.map((s) => s.start());
  try {
    for (const [i, s] of sides.entries()) await waitSubnetEnv(s.subnetFile, procs[i]!);
    // FLANNEL_SUBNET=10.a.b.1/24 -> the route a peer has for it, 10.a.b.0/24
    const subnets = sides.map((s) => /^FLANNEL_SUBNET=(\d+\.\d+\.\d+)\.\d+\/24$/m.exec(readFileSync(s.subnetFile, 'utf8'))![1] + '.0/24');
    await Promise.all(sides.map((s) => s.watch.waitAll(stable.indices.map((i) => peer(i).dst), true, 0, 60_000)));
    await sleep(3000);
    const samples: ChurnSample[] = [];
    let lastCpu = procs.map((p) => cpuMs(p.pid));
    let lastT = wallNow();
    const sample = async (atS: number) => {
      const now = wallNow();
      const cpu = procs.map((p) => cpuMs(p.pid));
      // RSS first: the probe runs a full GC when it reports the heap
      const rss = { 'flannel-ts': rssKb(procs[0]!.pid), flanneld: rssKb(procs[1]!.pid) };
      samples.push({
        atS,
        heapUsed: (await heapOf(sides[0], procs[0]!))?.heapUsed,
        rssKb: rss,
        cpuPct: { 'flannel-ts': ((cpu[0]! - lastCpu[0]!) / (now - lastT)) * 100, flanneld: ((cpu[1]! - lastCpu[1]!) / (now - lastT)) * 100 },
      });
      lastCpu = cpu;
      lastT = now;
    };
    await sample(0);
    const POOL = 9900; // indices 30000..39899, reused cyclically (a batch is deleted one tick after it joined)
    const batch = (tick: number) => Array.from({ length: 50 }, (_, j) => 30_000 + ((tick * 50 + j) % POOL));
    const start = wallNow();
    let prev: number[] = [];
    let late = 0;
    for (let tick = 0; tick < seconds; tick++) {
      const due = start + tick * 1000;
      const wait = due - wallNow();
      if (wait > 0) await sleep(wait);
      else late++;
      const add = batch(tick);
      await driver.call('churn', { add, del: prev });
      prev = add;
      if ((tick + 1) % 30 === 0) await sample(tick + 1);
      if ((tick + 1) % 60 === 0) log(`churn ${tick + 1}/${seconds} s`);
    }
    await driver.call('churn', { add: [], del: prev });
    await sleep(5000);
    await sample(Math.round((wallNow() - start) / 1000));
    // the kernel must hold exactly the stable peers plus the other daemon's subnet
    const check = await Promise.all(
      sides.map(async (s, i) => {
        const want = new Set([...stable.indices.map((x) => peer(x).dst), subnets[1 - i]!]);
        const routes = (await topo.ip(s.host.name, 'route', 'show', 'dev', 'flannel.1'))
          .split('\n')
          .map((l) => l.trim().split(' ')[0]!)
          .filter(Boolean);
        const have = new Set(routes);
        const counts = await kernelCounts(topo, s.host);
        return {
          side: s.name,
          stale: [...have].filter((d) => !want.has(d)),
          missing: [...want].filter((d) => !have.has(d)),
          counts,
          want: want.size,
        };
      }),
    );
    return { samples, check, late };
  } finally {
    await Promise.all(procs.map((p) => p.stop(5000)));
    procs.forEach((p, i) => saveLog(`${sides[i]!.name}-churn`, p));
  }
}

// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  if (!isRoot()) {
    console.error('bench:control needs root (network namespaces)');
    process.exit(1);
  }
  const loadStart = load();
  const tStart = Date.now();
  console.log(`# bench:control — ${os.cpus().length} CPUs, node ${process.version}, load average at start: ${loadStart}`);
  // Every child inherits this process' environment. A NODE_EXTRA_CA_CERTS
  // (set in some shells) makes each node start read a CA bundle, ~35 ms here;
  // no flanneld or CNI runtime environment has it, so it is removed.
  for (const k of ['NODE_EXTRA_CA_CERTS', 'NODE_OPTIONS']) {
    if (process.env[k] !== undefined) {
      console.log(`# removed ${k} from the environment of every process the bench starts (it was set to ${JSON.stringify(process.env[k])})`);
      delete process.env[k];
    }
  }
  const realBin = await realFlanneldBinary();
  if (!realBin) throw new Error('real flanneld is unavailable (Go missing); see scripts/build-flanneld.sh');

  const topo = await Topology.create({ hosts: 2, podsPerHost: 0 });
  const etcdDir = mkdtempSync('/dev/shm/fts-bench-etcd-');
  const cleanupEtcdDir = () => rmSync(etcdDir, { recursive: true, force: true });
  process.once('exit', cleanupEtcdDir);
  const out: string[] = [];
  try {
    // etcd with room for one 5000-put txn; its data on tmpfs so that fsync
    // latency of a shared, loaded disk stays out of every number.
    const etcd = topo.spawn(topo.underlay, [
      'etcd', '--name', 'fts', '--data-dir', etcdDir,
      '--listen-client-urls', ETCD_CLIENT_URL, '--advertise-client-urls', ETCD_CLIENT_URL,
      '--listen-peer-urls', ETCD_PEER_URL, '--initial-advertise-peer-urls', ETCD_PEER_URL,
      '--initial-cluster', `fts=${ETCD_PEER_URL}`, '--log-level', 'error', '--logger', 'zap',
      '--max-txn-ops', '20000', '--max-request-bytes', String(32 << 20),
    ], { label: 'etcd' });
    for (let i = 0; ; i++) {
      const r = await topo.run(topo.underlay, ['etcdctl', '--endpoints', ETCD_CLIENT_URL, '--dial-timeout=1s', '--command-timeout=2s', 'endpoint', 'health'], { env: { ETCDCTL_API: '3' } });
      if (r.code === 0) break;
      if (etcd.done || i > 100) throw new Error(`etcd did not become healthy:\n${etcd.stderr}`);
      await sleep(150);
    }
    const socket = path.join(topo.tmpDir, 'driver.sock');
    const drv = topo.spawn(topo.underlay, [process.execPath, path.join(BENCH, 'control-etcd-driver.js'), ETCD_CLIENT_URL, socket], { label: 'etcd driver' });
    for (let i = 0; !/^ready$/m.test(drv.stdout); i++) {
      if (drv.done || i > 500) throw new Error(`etcd driver did not start:\n${drv.stderr}`);
      await sleep(20);
    }
    const driver = new Driver(socket);
    await driver.call('config');

    const [h1, h2] = topo.hosts as [Host, Host];
    const flags = (file: string) => [`--etcd-endpoints=${ETCD_CLIENT_URL}`, '--iface=eth0', `--subnet-file=${file}`];
    const mk = async (name: LifeSide, host: Host, watch?: RouteWatch): Promise<Side> => {
      const subnetFile = path.join(topo.tmpDir, host.name, 'subnet.env');
      mkdirSync(path.dirname(subnetFile), { recursive: true });
      watch ??= await RouteWatch.start(topo, host);
      if (name !== 'flanneld') {
        const memFile = path.join(topo.tmpDir, host.name, 'mem.json');
        const entry = name === 'before' ? BEFORE! : FLANNELD;
        return {
          name, host, watch, subnetFile, memFile,
          start: () => topo.spawn(host.name, [process.execPath, '--require', PROBE, ...entry, ...flags(subnetFile), ...TS_FLAGS], { env: { FTS_BENCH_MEM_FILE: memFile }, label: `${name} flanneld` }),
        };
      }
      return { name, host, watch, subnetFile, start: () => topo.spawn(host.name, [realBin, ...flags(subnetFile)], { label: 'real flanneld' }) };
    };
    const ours = await mk('flannel-ts', h1);
    const real = await mk('flanneld', h2);
    const sides: [Side, Side] = [ours, real];
    const before = BEFORE ? await mk('before', h1, ours.watch) : undefined;
    const lifeSides = before ? [ours, real, before] : [ours, real];

    // ---- --version
    let ver: Awaited<ReturnType<typeof versions>> | undefined;
    if (phase('version')) {
      log('--version');
      ver = await versions(realBin);
    }

    // ---- lifecycle + bulk, and the raw batch; ABBA per round
    const life: LifeRun[] = [];
    const raw: RawRun[] = [];
    if (phase('bulk')) {
      for (const size of SIZES) {
        for (let r = 0; r < ROUNDS; r++) {
          raw.push(await rawBatch(topo, ours, size));
          // ABBA for two sides; with "before", the order rotates each round
          const order = lifeSides.length === 2 ? (r % 2 ? [real, ours] : [ours, real]) : lifeSides.map((_, i) => lifeSides[(i + r) % lifeSides.length]!);
          for (const s of order) {
            const run = await lifecycle(topo, driver, s, size);
            life.push(run);
            log(`${size} peers, round ${r + 1}/${ROUNDS}, ${s.name}: start ${ms(run.startupMs)}, all routes ${ms(run.allRoutesMs)}, RSS ${mb(run.rssIdleKb)} -> ${mb(run.rssAfterKb)}`);
          }
        }
      }
    }

    // ---- single put / delete latency
    let lat: Record<SideName, LatencyResult> | undefined;
    if (phase('latency') && PUTS > 0) {
      log(`latency: ${PUTS} puts and deletes per side, ${STABLE} stable peers`);
      lat = await latency(topo, driver, sides);
    }

    // ---- CNI
    let cn: CniResult | undefined;
    if (phase('cni')) {
      log('CNI ADD+DEL');
      cn = await cni(topo);
    }

    // ---- churn (optional)
    let ch: Awaited<ReturnType<typeof churn>> | undefined;
    if (phase('churn') && CHURN_SECONDS > 0) {
      log(`churn: ${CHURN_SECONDS} s`);
      ch = await churn(topo, driver, sides, CHURN_SECONDS);
    }

    // ---- report
    const of = (side: LifeSide, size?: number) => life.filter((x) => x.side === side && (size === undefined || x.size === size));
    const med = (side: LifeSide, f: (x: LifeRun) => number, size?: number) => median(of(side, size).map(f));
    // with BENCH_TS_BEFORE, a "before" column right after the label (empty unless rowB fills it)
    const rowB = (label: string, beforeCell: string, ...cells: string[]) => out.push(`| ${[label, ...(BEFORE ? [beforeCell] : []), ...cells].join(' | ')} |`);
    const row = (label: string, ...cells: string[]) => rowB(label, '', ...cells);
    const ratio = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : 'n/a');
    const verdict = (ok: boolean | undefined) => (ok === undefined ? '' : ok ? ' ✅' : ' ❌');
    out.push('');
    out.push(`| What |${BEFORE ? ' flannel-ts before |' : ''} flannel-ts | real flanneld | ratio (ts / flanneld) | goal |`);
    out.push(`|---|---|---|---|---|${BEFORE ? '---|' : ''}`);
    if (life.length) {
      const a = med('flannel-ts', (x) => x.startupMs);
      const b = med('flanneld', (x) => x.startupMs);
      rowB(`process start → subnet.env written (etcd, VXLAN; median of ${of('flannel-ts').length})`, ms(med('before', (x) => x.startupMs)), ms(a), ms(b), ratio(a, b), `≤ 1.5× flanneld's${verdict(a <= 1.5 * b)}`);
    }
    if (ver) {
      const a = median(ver.ours);
      rowB(`\`flanneld --version\` (median of ${ver.ours.length}; \`node -e 0\`: ${ms(median(ver.node))})`, ms(median(ver.before)), ms(a), ms(median(ver.real)), ratio(a, median(ver.real)), `≤ 100 ms${verdict(a <= 100)}`);
    }
    if (life.length) {
      const a = med('flannel-ts', (x) => x.rssIdleKb);
      const b = med('flanneld', (x) => x.rssIdleKb);
      rowB(`RSS, idle with ${IDLE_PEERS} peers (${IDLE_SETTLE_MS / 1000} s after start)`, mb(med('before', (x) => x.rssIdleKb)), mb(a), mb(b), ratio(a, b), `≤ 1.5×${verdict(a <= 1.5 * b)}`);
      for (const size of SIZES) {
        const a = med('flannel-ts', (x) => x.rssAfterKb, size);
        const b = med('flanneld', (x) => x.rssAfterKb, size);
        rowB(`RSS after ${size} peers`, mb(med('before', (x) => x.rssAfterKb, size)), mb(a), mb(b), ratio(a, b), `≤ 1.5×${verdict(a <= 1.5 * b)}`);
      }
      for (const size of [...SIZES].sort((x, y) => y - x)) {
        const a = med('flannel-ts', (x) => x.allRoutesMs, size);
        const b = med('flanneld', (x) => x.allRoutesMs, size);
        const floor = median(raw.filter((x) => x.size === size).map((x) => x.batchMs));
        const goal = size === Math.max(...SIZES);
        rowB(
          `${size} leases in one etcd txn → all routes on flannel.1 (median of ${of('flannel-ts', size).length})`,
          ms(med('before', (x) => x.allRoutesMs, size)),
          ms(a),
          ms(b),
          `${ratio(a, b)} (flanneld/ts = ${(b / a).toFixed(1)}×; ts/raw = ${(a / floor).toFixed(1)}×)`,
          goal ? `≥ 5× faster than flanneld${verdict(b / a >= 5)}, ≤ 2× raw batch${verdict(a <= 2 * floor)}` : '',
        );
        row(`raw netlink batch, same ${size * 3} entries (RtNetlink.applyBatch, inline)`, ms(floor), '—', '', '(the physical floor)');
        // etcd's share, which every watcher pays before it can program anything
        const deliv = (f: (x: LifeRun) => number | null) => median(life.filter((x) => x.size === size && f(x) !== null).map((x) => f(x)!));
        const grpc = deliv((x) => x.deliveredMs);
        const gw = deliv((x) => x.deliveredGatewayMs);
        if (Number.isFinite(grpc)) {
          row(
            `floor for the whole path: etcd delivery over gRPC (txn → a bare etcd3 watch has all ${size} events) ${ms(grpc)} + the raw batch`,
            ms(grpc + floor),
            '—',
            '',
            `at best flanneld/floor = ${(b / (grpc + floor)).toFixed(1)}×${goal ? `; ts is ${ms(a - grpc - floor)} above it` : ''}`,
          );
        }
        if (Number.isFinite(gw)) {
          row(
            `the same through etcd's JSON gateway (flannel-ts's client; a bare GatewayClient watch) ${ms(gw)} + the raw batch`,
            ms(gw + floor),
            '—',
            '',
            `at best flanneld/floor = ${(b / (gw + floor)).toFixed(1)}×${goal ? `; ts is ${ms(a - gw - floor)} above it` : ''}`,
          );
        }
      }
    }
    if (cn) {
      const b = median(cn.bridge);
      const a = median(cn.node);
      row(`CNI ADD+DEL, median of ${cn.node.length}: our plugin via node  vs  \`bridge\` direct`, ms(a), `bridge: ${ms(b)}`, ratio(a, b), `≤ 1.5× bridge${verdict(a <= 1.5 * b)}`);
      if (cn.sea.length) {
        const s = median(cn.sea);
        row(`CNI ADD+DEL, median of ${cn.sea.length}: SEA binary dist/cni-plugin/flannel  vs  \`bridge\` direct`, ms(s), `bridge: ${ms(b)}`, ratio(s, b), `≤ 1.5× bridge${verdict(s <= 1.5 * b)}`);
      } else {
        row('CNI ADD+DEL, SEA binary', 'not built (npm run build:cni-plugin)', '', '', '');
      }
      // Two plugin starts (ADD, DEL), each at least a bare Node start, plus the bridge plugin it delegates to.
      const nodeFloor = median(cn.nodeFloor);
      row(
        `floor: 2 × a bare Node start (\`ip netns exec … node -e 0\`, ${ms(nodeFloor)}) + \`bridge\` ADD+DEL`,
        ms(2 * nodeFloor + b),
        '—',
        ratio(2 * nodeFloor + b, b),
        `at best ${ratio(2 * nodeFloor + b, b)} bridge for any plugin on Node`,
      );
    }
    if (lat) {
      const a = lat['flannel-ts'];
      const b = lat.flanneld;
      row(`one new lease → route on a peer, p50 / p99 over ${a.add.length} / ${b.add.length} puts (${STABLE} stable peers)`, `${ms(median(a.add))} / ${ms(pct(a.add, 99))}`, `${ms(median(b.add))} / ${ms(pct(b.add, 99))}`, ratio(median(a.add), median(b.add)), '');
      row(`one lease deleted → route removed, p50 / p99`, `${ms(median(a.del))} / ${ms(pct(a.del, 99))}`, `${ms(median(b.del))} / ${ms(pct(b.del, 99))}`, ratio(median(a.del), median(b.del)), '');
    }
    if (life.some((x) => x.heapAfter)) {
      const heapCell = (side: LifeSide) => {
        const h = (size: number, f: (m: MemUsage) => number) => median(of(side, size).map((x) => (x.heapAfter ? f(x.heapAfter) : NaN)));
        const idle = (f: (m: MemUsage) => number) => median(of(side).map((x) => (x.heapIdle ? f(x.heapIdle) : NaN)));
        const live = (m: MemUsage) => m.heapLive ?? NaN;
        return [
          `${mb(idle((m) => m.heapUsed) / 1024)} [${mb(idle(live) / 1024)}]`,
          ...SIZES.map((s) => `${mb(h(s, (m) => m.heapUsed) / 1024)} [${mb(h(s, live) / 1024)}] (${mb(h(s, (m) => m.heapTotal) / 1024)}; ${mb(h(s, (m) => m.external) / 1024)})`),
        ].join(' / ');
      };
      rowB(
        `flannel-ts heap used [live after a full GC], main isolate only: idle / ${SIZES.map((s) => `${s}`).join(' / ')} peers (heap total; external)`,
        heapCell('before'),
        heapCell('flannel-ts'),
        '—',
        '',
        '',
      );
    }

    // details
    out.push('');
    out.push('Details (every run; all times are wall clock between two processes on this machine):');
    if (ver) out.push(`- --version: flannel-ts ${list(ver.ours)} ms; flanneld ${list(ver.real)} ms; node -e 0 ${list(ver.node)} ms${BEFORE ? `; before ${list(ver.before)} ms` : ''}`);
    if (BEFORE) out.push(`- "before" is \`node ${BEFORE.join(' ')}\`; flannel-ts is \`node ${FLANNELD.join(' ')}\``);
    for (const size of SIZES) {
      for (const side of ['flannel-ts', 'flanneld', 'before'] as const) {
        const runs = of(side, size);
        if (!runs.length) continue;
        out.push(
          `- ${size} peers, ${side}: start→subnet.env ${list(runs.map((x) => x.startupMs))} ms; txn acked ${list(runs.map((x) => x.txnMs), (x) => x.toFixed(1))} ms; txn→delivered to a bare watch over gRPC ${list(runs.map((x) => x.deliveredMs ?? NaN))}, over the gateway ${list(runs.map((x) => x.deliveredGatewayMs ?? NaN))} ms; ` +
            `txn→first route ${list(runs.map((x) => x.firstRouteMs))} ms; txn→last route ${list(runs.map((x) => x.allRoutesMs))} ms; ` +
            `CPU used meanwhile ${list(runs.map((x) => x.cpuMs))} ms; RSS idle ${list(runs.map((x) => x.rssIdleKb / 1024), (x) => x.toFixed(1))} MB → ${list(runs.map((x) => x.rssAfterKb / 1024), (x) => x.toFixed(1))} MB; ` +
            `threads ${runs[0]!.threads}; kernel ${JSON.stringify(runs[0]!.counts)}`,
        );
      }
      const rr = raw.filter((x) => x.size === size);
      if (rr.length) out.push(`- ${size} peers, raw batch of ${size * 3}: in-process ${list(rr.map((x) => x.batchMs), (x) => x.toFixed(1))} ms; batch start → last route notification ${list(rr.map((x) => x.watchedMs), (x) => x.toFixed(1))} ms`);
    }
    if (lat) {
      for (const side of ['flannel-ts', 'flanneld'] as const) {
        const r = lat[side];
        out.push(`- single put → route, ${side}: min ${ms(Math.min(...r.add))}, p50 ${ms(median(r.add))}, p90 ${ms(pct(r.add, 90))}, p99 ${ms(pct(r.add, 99))}, max ${ms(Math.max(...r.add))}; delete → gone: min ${ms(Math.min(...r.del))}, p50 ${ms(median(r.del))}, p90 ${ms(pct(r.del, 90))}, p99 ${ms(pct(r.del, 99))}, max ${ms(Math.max(...r.del))}; etcd put acked p50 ${ms(median(r.putAck))}`);
      }
    }
    if (cn) {
      out.push(`- CNI: our plugin (node) ADD+DEL ${list(cn.node)} ms; SEA ${cn.sea.length ? list(cn.sea) : 'n/a'} ms; bridge ${list(cn.bridge)} ms`);
      out.push(`- CNI VERSION alone: node ${ms(median(cn.versionNode))}, SEA ${ms(median(cn.versionSea))}; floor \`ip netns exec … node -e 0\` ${ms(median(cn.nodeFloor))} (ADD+DEL = 2 plugin starts)`);
    }
    if (ch) {
      out.push(`- churn (${CHURN_SECONDS} s, 50 joining + 50 leaving per second, ${STABLE} stable peers, both daemons at once; ${ch.late} ticks late):`);
      for (const s of ch.samples) out.push(`  - t=${s.atS}s RSS flannel-ts ${mb(s.rssKb['flannel-ts'])} (heap used ${mb((s.heapUsed ?? NaN) / 1024)}), flanneld ${mb(s.rssKb.flanneld)}; CPU since last sample flannel-ts ${s.cpuPct['flannel-ts'].toFixed(1)}%, flanneld ${s.cpuPct.flanneld.toFixed(1)}%`);
      for (const c of ch.check) out.push(`  - end state ${c.side}: ${c.stale.length} stale routes, ${c.missing.length} missing (want ${c.want}); kernel ${JSON.stringify(c.counts)}${c.stale.length ? ' e.g. ' + c.stale.slice(0, 3).join(' ') : ''}`);
    }
    out.push('');
    out.push(`Method: flannel-ts runs in ${h1.name}, flanneld in ${h2.name} (identical namespaces); flannel.1 is deleted and every lease wiped before each cold start, sides alternate ABBA. ` +
      `"start" is the spawn of \`ip netns exec … flanneld\` to subnet.env holding FLANNEL_SUBNET (inotify). Routes are timestamped from rtnetlink notifications in the host namespace; ` +
      `etcd times start right before the request leaves the driver, which also watches the lease prefix itself, once over gRPC and once through the JSON gateway, to time etcd's own share of "txn → routes" (both watches run in every bulk run, for both sides alike). flannel-ts runs with a ~20-line --require probe that answers SIGUSR2 with process.memoryUsage() and the heap live after a full GC (RSS is always read before it is signalled). ` +
      `In the latency phase the daemon is restarted per chunk of ${CHUNK} and keeps its flannel.1.`);
    out.push(`Load average at start: ${loadStart}; at end: ${load()}; wall time ${((Date.now() - tStart) / 1000).toFixed(0)} s.`);
  } finally {
    await topo.destroy().catch((e: unknown) => log(`cleanup: ${String(e)}`));
    cleanupEtcdDir();
  }
  console.log(out.join('\n'));
}

await main();
