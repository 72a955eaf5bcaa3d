// Shared pieces of the fault tests (test/faults, test/e2e/faults.test.ts):
// their common setup, continuous pod pings that count every lost packet, the
// leases as etcd holds them, and the VXLAN kernel entries a host should have
// for them.

import type { FlanneldProc } from './flanneld.js';
import type { BgProc, Host, Pod, Topology } from './netns.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls cond every 100 ms; resolves with the ms it took, throws after timeoutMs. */
export async function waitUntil(what: string, cond: () => Promise<boolean>, timeoutMs: number, everyMs = 100): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------
// Setup

/**
 * etcd (one member) up with `config` as the network config, flanneld started
 * and ready on the first two hosts of `topo` (recorded in `flanneld`) and
 * their pods wired. The other hosts are left for the test to start.
 */
export async function startEtcdAndTwoDaemons(topo: Topology, config: string, flanneld: Map<Host, FlanneldProc>): Promise<void> {
  await topo.startEtcd();
  await topo.etcdctl('put', '/coreos.com/network/config', config);
  const first = topo.hosts.slice(0, 2);
  for (const h of first) flanneld.set(h, topo.startFlanneld(h));
  await Promise.all([...flanneld.values()].map((f) => f.waitReady()));
  for (const h of first) await topo.wirePods(h);
}

// ---------------------------------------------------------------------------
// Continuous pings

export interface PingTally {
  from: string;
  to: string;
  transmitted: number;
  received: number;
  /** sequence numbers without a reply from the first reply on (the last one sent is left out: it may still be in flight) */
  lost: number[];
  /** longest run of consecutive lost sequence numbers */
  worstGap: number;
}

/**
 * `ping -i <interval>` from a pod to an address, running until stop(). Every
 * reply's icmp_seq is recorded, so a loss anywhere in the run shows up.
 */
export class Pinger {
  private readonly bg: BgProc;

  constructor(
    topo: Topology,
    readonly from: Pod,
    readonly to: string,
    intervalS = 0.1,
  ) {
    this.bg = topo.spawn(from.name, ['ping', '-n', '-i', String(intervalS), '-W', '2', to], { label: `ping ${from.name} -> ${to}` });
  }

  /** Replies seen so far. */
  get replies(): number {
    return (this.bg.stdout.match(/icmp_seq=/g) ?? []).length;
  }

  /** Waits until at least n replies arrived (the path works before the fault starts). */
  async waitReplies(n: number, timeoutMs = 10_000): Promise<void> {
    await waitUntil(`${n} ping replies ${this.from.name} -> ${this.to}`, async () => this.replies >= n, timeoutMs, 50);
  }

  /** SIGINT (ping prints its summary) and tally. */
  async stop(): Promise<PingTally> {
    if (!this.bg.done) {
      this.bg.proc.kill('SIGINT');
      const t = setTimeout(() => this.bg.proc.kill('SIGKILL'), 3000);
      await this.bg.exited;
      clearTimeout(t);
    }
    const out = this.bg.stdout;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
    if (!m) throw new Error(`no ping summary from ${this.bg.label}:\n${out.slice(-2000)}\n${this.bg.stderr}`);
    const transmitted = Number(m[1]);
    const received = Number(m[2]);
    const got = new Set([...out.matchAll(/icmp_seq=(\d+)/g)].map((x) => Number(x[1])));
    const lost: number[] = [];
    let worstGap = 0;
    let gap = 0;
    // Counted from the first reply: pings before it went out while the path
    // was still being set up (neighbour resolution under load), and every
    // test waits for replies before it starts its fault.
    const first = got.size ? Math.min(...got) : transmitted;
    for (let s = first; s < transmitted; s++) {
      if (got.has(s)) {
        gap = 0;
        continue;
      }
      lost.push(s);
      worstGap = Math.max(worstGap, ++gap);
    }
    return { from: this.from.name, to: this.to, transmitted, received, lost, worstGap };
  }
}

/** One pinger per ordered pair of the given pods. */
export function pingAll(topo: Topology, pods: readonly Pod[], intervalS = 0.1): Pinger[] {
  return pods.flatMap((a) => pods.filter((b) => b !== a).map((b) => new Pinger(topo, a, b.ip, intervalS)));
}

export function describeTallies(ts: readonly PingTally[]): string {
  return ts.map((t) => `${t.from}->${t.to} sent ${t.transmitted} lost ${t.lost.length}${t.lost.length ? ` (seq ${t.lost.slice(0, 10).join(',')}${t.lost.length > 10 ? ',…' : ''})` : ''}`).join('; ');
}

// ---------------------------------------------------------------------------
// Leases as etcd holds them

export interface StoredLease {
  /** '10.244.5.0-24' */
  name: string;
  /** '10.244.5.0' */
  base: string;
  /** '10.244.5.0/24' */
  cidr: string;
  publicIP: string;
  mac: string;
  raw: string;
}

export const SUBNETS = '/coreos.com/network/subnets/';

/** Parses `etcdctl get --prefix <SUBNETS>` output (key and value lines). */
export function parseLeases(out: string): StoredLease[] {
  const lines = out.split('\n').filter((l) => l !== '');
  const leases: StoredLease[] = [];
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const key = lines[i]!;
    const raw = lines[i + 1]!;
    const name = key.slice(SUBNETS.length);
    const m = /^(\d+\.\d+\.\d+\.\d+)-(\d+)$/.exec(name);
    if (!key.startsWith(SUBNETS) || !m) throw new Error(`unexpected key ${key}`);
    const v = JSON.parse(raw) as { PublicIP: string; BackendData?: { VtepMAC?: string } };
    leases.push({ name, base: m[1]!, cidr: `${m[1]}/${m[2]}`, publicIP: v.PublicIP, mac: v.BackendData?.VtepMAC ?? '', raw });
  }
  return leases.sort((a, b) => a.name.localeCompare(b.name));
}

/** A vxlan lease value exactly as flannel writes it. */
export function leaseValue(publicIP: string, mac: string): string {
  return JSON.stringify({ PublicIP: publicIP, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });
}

/** Subnet names held by more than one key, or overlapping another (0 when all is well). */
export function duplicateSubnets(leases: readonly StoredLease[]): string[] {
  const seen = new Map<string, number>();
  for (const l of leases) seen.set(l.cidr, (seen.get(l.cidr) ?? 0) + 1);
  return [...seen].filter(([, n]) => n > 1).map(([c]) => c);
}

// ---------------------------------------------------------------------------
// VXLAN kernel state

export interface KernelEntries {
  routes: string[];
  neigh: string[];
  fdb: string[];
}

/** flannel.1's routes, neighbours and FDB entries on a host, one normalised line each, sorted. */
export async function kernelEntries(topo: Topology, host: Host): Promise<KernelEntries> {
  const lines = (s: string) => s.split('\n').map((l) => l.trim().replace(/\s+/g, ' ')).filter(Boolean).sort();
  const [routes, neigh, fdb] = await Promise.all([
    topo.ip(host.name, 'route', 'show', 'dev', 'flannel.1'),
    topo.ip(host.name, 'neigh', 'show', 'dev', 'flannel.1'),
    topo.exec(host.name, ['bridge', 'fdb', 'show', 'dev', 'flannel.1']),
  ]);
  return {
    // the device's own address has no route line here (it is a /32 on the device)
    routes: lines(routes),
    neigh: lines(neigh),
    // the device's own MAC shows up as a "permanent" bridge entry on some kernels; only peers' "dst" entries count
    fdb: lines(fdb).filter((l) => / dst /.test(l)),
  };
}

/** What a host's flannel.1 must hold for these leases (its own left out). */
export function expectedEntries(leases: readonly StoredLease[], ownPublicIP: string): KernelEntries {
  const peers = leases.filter((l) => l.publicIP !== ownPublicIP);
  return {
    routes: peers.map((p) => `${p.cidr} via ${p.base} proto 222 onlink`).sort(),
    neigh: peers.map((p) => `${p.base} lladdr ${p.mac} PERMANENT`).sort(),
    fdb: peers.map((p) => `${p.mac} dst ${p.publicIP} self permanent`).sort(),
  };
}

/** A short account of how two entry sets differ ('' when they are equal). */
export function entriesDiff(want: KernelEntries, got: KernelEntries): string {
  const out: string[] = [];
  for (const k of ['routes', 'neigh', 'fdb'] as const) {
    const w = new Set(want[k]);
    const g = new Set(got[k]);
    const missing = [...w].filter((x) => !g.has(x));
    const extra = [...g].filter((x) => !w.has(x));
    if (missing.length || extra.length) out.push(`${k}: ${missing.length} missing (${missing.slice(0, 3).join(' | ')}), ${extra.length} extra (${extra.slice(0, 3).join(' | ')})`);
  }
  return out.join('; ');
}

/** flannel.1's MAC on a host, from `ip -d link show`. */
export async function vtepMac(topo: Topology, host: Host): Promise<string> {
  const out = await topo.ip(host.name, '-d', 'link', 'show', 'flannel.1');
  const m = /link\/ether ([0-9a-f:]{17})/.exec(out);
  if (!m) throw new Error(`no MAC in:\n${out}`);
  return m[1]!;
}
