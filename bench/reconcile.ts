// What the periodic VXLAN self-check costs on a busy host, with the old
// unfiltered dumps and with kernel-filtered ones (NETLINK_GET_STRICT_CHK).
//
// In a private network namespace (`ftsbr-<pid>-<hex>`, deleted at the end,
// also on Ctrl-C) it builds: an underlay, a "noise" device carrying 2000
// permanent neighbours and 5000 routes in table 100 (as a busy host has, e.g.
// a BGP daemon's or another CNI's), and flannel.1 with 1000 peers' worth of
// state (a permanent neighbour, a `self` FDB entry and an onlink route each).
// For each mode (unfiltered / filtered) and transport (worker thread; async:
// on this thread with the kernel waits on the libuv pool, as the daemon runs
// it; inline) it recreates flannel.1, times the initial
// 1000-lease reconcile with the event loop's worst delay
// (perf_hooks.monitorEventLoopDelay), then times no-change reconcile passes
// (the periodic check path: read kernel state, diff, send nothing).
//
//   npm run bench:reconcile [-- --peers 1000 --passes 20]
//
// Needs root and iproute2.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { RtNetlink } from '../src/kernel/rtnetlink.js';
import { reconcileVxlan, type ReconcileTarget } from '../src/backend/vxlan/reconciler.js';
import type { PeerEntries } from '../src/backend/vxlan/desired.js';
import { parseIPv4Net } from '../src/lease/ip.js';
import { addUnderlayAndNoise, ipBatch, sh } from '../test/helpers/netns-sync.js';

const ENV = 'FTS_BENCH_RECONCILE_NS';
const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const PEERS = arg('peers', 1000);
const PASSES = arg('passes', 20);
const NOISE_NEIGHS = arg('noise-neighs', 2000);
const NOISE_ROUTES = arg('noise-routes', 5000);

const hex2 = (n: number) => (n & 255).toString(16).padStart(2, '0');

// ------------------------------------------------------------------ outer

function outer(): void {
  if (process.getuid?.() !== 0) {
    console.error('bench:reconcile needs root (it creates a network namespace)');
    process.exit(1);
  }
  const ns = `ftsbr-${process.pid}-${randomBytes(3).toString('hex')}`;
  const cleanup = () => spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      cleanup();
      process.exit(130);
    });
  }
  sh('ip', ['netns', 'add', ns]);
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, [ENV]: ns };
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { env, stdio: 'inherit' });
    process.exitCode = r.status ?? 1;
  } finally {
    cleanup();
  }
}

// ------------------------------------------------------------------ inner

interface Row {
  dumps: 'unfiltered' | 'filtered';
  transport: 'worker' | 'async' | 'inline';
  initialMs: number;
  initialMaxDelayMs: number;
  passMedianMs: number;
  passMeanMs: number;
  passMaxDelayMs: number;
  kernelMsgsPerPass: number;
}

/** A few ms of idle loop: the delay histogram's probe timer fires and records the last block. */
const settle = () => new Promise<void>((r) => setTimeout(r, 5));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function inner(ns: string): Promise<void> {
  // Only ever inside the namespace the outer process made.
  if (statSync('/proc/self/ns/net').ino !== statSync(`/run/netns/${ns}`).ino) throw new Error(`not inside ${ns}`);
  sh('ip', ['link', 'set', 'lo', 'up']);
  addUnderlayAndNoise('198.18.0.1/15', '100.64.0.1/10');
  const noise: string[] = [];
  for (let i = 0; i < NOISE_NEIGHS; i++) noise.push(`neigh add 100.65.${i >> 8}.${i & 255} lladdr 02:00:00:01:${hex2(i >> 8)}:${hex2(i)} dev noise0 nud permanent`);
  for (let i = 0; i < NOISE_ROUTES; i++) noise.push(`route add 172.${16 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32 via 100.64.0.2 dev noise0 table 100`);
  ipBatch(noise);

  const peers: PeerEntries[] = [];
  for (let i = 0; i < PEERS; i++) {
    const base = `10.${1 + (i >> 8)}.${i & 255}.0`;
    peers.push({ id: `p${i}`, gw: base, dst: `${base}/24`, mac: `0a:00:00:00:${hex2(i >> 8)}:${hex2(i)}`, publicIP: `198.19.${i >> 8}.${i & 255}`, direct: false });
  }
  const network = parseIPv4Net('10.0.0.0/8');

  const rows: Row[] = [];
  for (const transport of ['worker', 'async', 'inline'] as const) {
    for (const dumps of ['unfiltered', 'filtered'] as const) {
      const opts = { strictCheck: dumps === 'filtered', rcvbuf: 32 << 20 };
      const k = transport === 'worker' ? RtNetlink.openInWorker(opts) : transport === 'async' ? RtNetlink.openAsync(opts) : RtNetlink.open(opts);
      try {
        const ul = await k.getLinkByName('ul0');
        const old = await k.getLinkByName('flannel.1');
        if (old) await k.deleteLink(old.index);
        const vx = await k.createVxlan({ name: 'flannel.1', vni: 1, local: '198.18.0.1', linkIndex: ul!.index, mtu: 1450, mac: '0e:00:00:00:00:01' });
        await k.setLinkUp(vx.index);
        await k.addAddr(vx.index, '10.0.0.0/32');
        const t: ReconcileTarget = { dev: vx.index, extDev: ul!.index, network, written: new Set() };

        const eld = monitorEventLoopDelay({ resolution: 1 });
        eld.enable();
        await settle(); // the probe needs one tick as a baseline before it can measure a block
        const t0 = performance.now();
        const first = await reconcileVxlan(k, t, peers);
        const initialMs = performance.now() - t0;
        await settle(); // let the delayed probe timer fire, so a fully blocked loop is recorded too
        eld.disable();
        if (first.errors.length) throw new Error(`initial reconcile: ${first.errors[0]!.message}`);
        if (first.changes !== 3 * PEERS) throw new Error(`initial reconcile made ${first.changes} changes, expected ${3 * PEERS}`);

        await reconcileVxlan(k, t, peers); // warm-up
        const passEld = monitorEventLoopDelay({ resolution: 1 });
        const times: number[] = [];
        const recv0 = k.dumpStats.received;
        passEld.enable();
        await settle();
        for (let i = 0; i < PASSES; i++) {
          const s = performance.now();
          const r = await reconcileVxlan(k, t, peers);
          times.push(performance.now() - s);
          if (r.changes !== 0 || r.errors.length) throw new Error(`pass ${i} was not a no-op: ${r.changes} changes, ${r.errors.length} errors`);
          await settle();
        }
        passEld.disable();
        rows.push({
          dumps,
          transport,
          initialMs,
          initialMaxDelayMs: eld.max / 1e6,
          passMedianMs: median(times),
          passMeanMs: times.reduce((a, b) => a + b, 0) / times.length,
          passMaxDelayMs: passEld.max / 1e6,
          kernelMsgsPerPass: (k.dumpStats.received - recv0) / PASSES,
        });
        await k.deleteLink(vx.index);
      } finally {
        k.close();
      }
    }
  }

  const f = (x: number) => x.toFixed(1);
  console.log(`\n${PEERS} peers on flannel.1; noise: ${NOISE_NEIGHS} neighbours on another device, ${NOISE_ROUTES} routes in table 100; ${PASSES} no-change passes each`);
  console.log('');
  const head = ['transport', 'dumps', 'initial ms', 'initial max loop delay ms', 'pass ms (median)', 'pass ms (mean)', 'pass max loop delay ms', 'kernel msgs/pass'];
  const table = rows.map((r) => [r.transport, r.dumps, f(r.initialMs), f(r.initialMaxDelayMs), f(r.passMedianMs), f(r.passMeanMs), f(r.passMaxDelayMs), String(Math.round(r.kernelMsgsPerPass))]);
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |';
  console.log(line(head));
  console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
  for (const row of table) console.log(line(row));
  console.log('');
  for (const transport of ['worker', 'async', 'inline'] as const) {
    const u = rows.find((r) => r.transport === transport && r.dumps === 'unfiltered')!;
    const fl = rows.find((r) => r.transport === transport && r.dumps === 'filtered')!;
    console.log(`${transport}: no-change pass unfiltered/filtered = ${(u.passMedianMs / fl.passMedianMs).toFixed(2)}x (median ${f(u.passMedianMs)} ms vs ${f(fl.passMedianMs)} ms)`);
  }
}

const ns = process.env[ENV];
if (ns) await inner(ns);
else outer();
