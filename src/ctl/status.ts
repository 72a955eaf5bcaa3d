// `flannelctl status`: the one screen an operator wants. The network config,
// every lease (and which one is this node), whether this node's kernel has
// the entries for each peer, and, when asked (--healthz-port), what the
// local flanneld reports about itself on its health port. Read-only; every
// remote call has a deadline.

import http from 'node:http';
import type { KernelNet } from '../kernel/types.js';
import type { LeaseStore } from '../store/store.js';
import { describeConfig } from '../subnet/config.js';
import { StoreUnreachable, findSelf, readCluster, readSubnetFile, vxlanSettings, type ClusterView, type SubnetFile } from './cluster.js';
import { analyse } from './diagnose.js';
import { addrIP, addrsOf, linkByName, localIPs, readKernel, type KernelSnapshot } from './kernel-view.js';
import { renderTable } from './leases.js';

export interface StatusLease {
  readonly subnet: string;
  readonly publicIP: string;
  readonly backend: string;
  readonly vtepMac: string | null;
  /** segments this node serves as an edge gateway; [] for none */
  readonly edgeNetworks: string[];
  readonly permanent: boolean;
  readonly ttlSeconds: number | null;
  readonly expires: string;
  readonly thisNode: boolean;
  /** this node's kernel entries for the peer: "ok", or the missing/wrong ones; absent when not checked */
  readonly kernel?: string;
}

export interface DaemonStatus {
  readonly endpoint: string;
  readonly reachable: boolean;
  readonly healthy: boolean;
  readonly ready: boolean;
  readonly error?: string;
  /** flannel_* samples from /metrics, "name{labels}" -> value */
  readonly metrics: Record<string, number>;
}

export interface StatusReport {
  readonly apiVersion: 'flannel-ts/v1';
  readonly kind: 'StatusReport';
  readonly store: { readonly description: string; readonly ok: boolean; readonly elapsedMs: number; readonly error?: string };
  readonly config: { readonly summary: string; readonly backend: string; readonly vni?: number; readonly port?: number; readonly error?: string } | null;
  readonly node: { readonly subnet: string; readonly publicIP: string; readonly recognisedBy: string } | null;
  readonly leases: StatusLease[];
  readonly invalid: Array<{ key: string; reason: string }>;
  readonly daemon?: DaemonStatus;
}

export function humanTTL(s: number): string {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

// ----------------------------------------------------------------- daemon

function get(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** Parses Prometheus text exposition into "name{labels}" -> value, keeping flannel_* samples. */
export function parseMetrics(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('flannel_')) continue;
    const m = /^(\S+?(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

export async function readDaemon(host: string, port: number, timeoutMs = 2000): Promise<DaemonStatus> {
  const base = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  try {
    const [h, r, m] = await Promise.all([
      get(`${base}/healthz`, timeoutMs),
      get(`${base}/readyz`, timeoutMs),
      get(`${base}/metrics`, timeoutMs).catch(() => ({ status: 0, body: '' })),
    ]);
    return { endpoint: base, reachable: true, healthy: h.status === 200, ready: r.status === 200, metrics: m.status === 200 ? parseMetrics(m.body) : {} };
  } catch (e) {
    return { endpoint: base, reachable: false, healthy: false, ready: false, error: (e as Error).message, metrics: {} };
  }
}

function metric(m: Record<string, number>, name: string, labels?: string): number | undefined {
  if (labels !== undefined) return m[`${name}{${labels}}`];
  if (m[name] !== undefined) return m[name];
  // sum over labels
  const vals = Object.entries(m).filter(([k]) => k.startsWith(`${name}{`));
  return vals.length ? vals.reduce((a, [, v]) => a + v, 0) : undefined;
}

function describeDaemon(d: DaemonStatus): string {
  if (!d.reachable) return `not reachable on ${d.endpoint} (${d.error})`;
  const m = d.metrics;
  const parts: string[] = [];
  const add = (label: string, v: number | undefined) => v !== undefined && parts.push(`${label} ${v}`);
  add('remote leases', metric(m, 'flannel_remote_leases'));
  add('reconciles', metric(m, 'flannel_reconcile_seconds_count'));
  add('reconcile errors', metric(m, 'flannel_reconcile_errors_total'));
  add('self-heals', metric(m, 'flannel_self_heals_total') ?? metric(m, 'flannel_heals_total'));
  add('re-lists', metric(m, 'flannel_watch_relists_total'));
  const ok = metric(m, 'flannel_lease_renewals_total', 'result="ok"');
  const bad = metric(m, 'flannel_lease_renewals_total', 'result="error"');
  if (ok !== undefined || bad !== undefined) parts.push(`renewals ${ok ?? 0} ok/${bad ?? 0} failed`);
  return `${d.ready ? 'ready' : d.healthy ? 'running, NOT ready' : 'unhealthy'} (${d.endpoint})${parts.length ? `: ${parts.join(', ')}` : ''}`;
}

// ----------------------------------------------------------------- status

export interface StatusOptions {
  store: LeaseStore | StoreUnreachable;
  storeTimeoutMs?: number;
  subnetFile: string;
  /** read this namespace's kernel to mark this node and check peers' entries; null when not available */
  kernel: KernelNet | null;
  daemon?: { host: string; port: number };
}

export async function status(o: StatusOptions): Promise<StatusReport> {
  const daemonP = o.daemon ? readDaemon(o.daemon.host, o.daemon.port) : Promise.resolve(undefined);
  let cluster: ClusterView | StoreUnreachable;
  if (o.store instanceof StoreUnreachable) cluster = o.store;
  else {
    try {
      cluster = await readCluster(o.store, o.storeTimeoutMs ?? 5000);
    } catch (e) {
      if (!(e instanceof StoreUnreachable)) throw e;
      cluster = e;
    }
  }
  let kernel: KernelSnapshot | null = null;
  try {
    kernel = o.kernel ? await readKernel(o.kernel) : null;
  } catch {
    kernel = null;
  }
  let subnetFile: SubnetFile | null = null;
  try {
    subnetFile = readSubnetFile(o.subnetFile);
  } catch {
    subnetFile = null;
  }
  const daemon = await daemonP;
  if (cluster instanceof StoreUnreachable) {
    return {
      apiVersion: 'flannel-ts/v1',
      kind: 'StatusReport',
      store: { description: cluster.store, ok: false, elapsedMs: cluster.elapsedMs, error: cluster.reason },
      config: null,
      node: null,
      leases: [],
      invalid: [],
      ...(daemon ? { daemon } : {}),
    };
  }
  const c = cluster;
  const vx = c.config ? vxlanSettings(c.config) : null;
  const vtep = kernel && vx ? linkByName(kernel, vx.device) : undefined;
  const self = kernel
    ? findSelf(c.leases, { subnetFile, localIPs: localIPs(kernel), vtepIPs: new Set(vtep ? addrsOf(kernel, vtep.index).map(addrIP) : []) })
    : subnetFile
      ? findSelf(c.leases, { subnetFile, localIPs: new Set() })
      : null;
  // This node's kernel entries per peer, with diagnose's own rules.
  const perPeer = new Map<string, string[]>();
  const checkKernel = kernel !== null && self !== null && (vx === null || vtep !== undefined);
  if (checkKernel) {
    const { findings } = analyse({
      cluster: c,
      subnetFilePath: o.subnetFile,
      subnetFile,
      kernel: kernel!,
      sysctls: { ipForward: null, rpFilter: new Map() },
      firewall: { rules: [], policies: [], notes: [] },
      offload: null,
      kernelRelease: '99',
      probes: { skipped: 'status does not probe' },
    });
    for (const f of findings) {
      if (!f.peer || !/^(ROUTE|NEIGH|FDB|UNDERLAY)_/.test(f.code)) continue;
      perPeer.set(f.peer, [...(perPeer.get(f.peer) ?? []), f.code.toLowerCase().replace(/_/g, ' ')]);
    }
  }
  const leases = c.leases.map((l): StatusLease => {
    const thisNode = l === self?.lease;
    const expires = l.permanent ? 'never (reservation)' : l.ttlSeconds === null ? '?' : `in ${humanTTL(l.ttlSeconds)}`;
    const row: StatusLease = { subnet: l.subnet, publicIP: l.publicIP, backend: l.backend, vtepMac: l.vtepMac, edgeNetworks: l.edgeNetworks, permanent: l.permanent, ttlSeconds: l.ttlSeconds, expires, thisNode };
    if (!checkKernel || thisNode) return row;
    const bad = perPeer.get(l.publicIP);
    return { ...row, kernel: bad ? bad.join(', ') : 'ok' };
  });
  const cfg = c.config;
  return {
    apiVersion: 'flannel-ts/v1',
    kind: 'StatusReport',
    store: { description: c.store, ok: true, elapsedMs: c.elapsedMs },
    config: cfg
      ? { summary: describeConfig(cfg), backend: cfg.backend.type, ...(vx ? { vni: vx.vni, port: vx.udpPort } : {}) }
      : { summary: '', backend: '', error: c.configError ?? 'no config' },
    node: self ? { subnet: self.lease.subnet, publicIP: self.lease.publicIP, recognisedBy: self.by } : null,
    leases,
    invalid: c.invalid,
    ...(daemon ? { daemon } : {}),
  };
}

/** 0 when the store answered with a valid config and (if asked) flanneld is ready; 1 otherwise. */
export function statusExitCode(r: StatusReport): number {
  if (!r.store.ok || r.config?.error) return 1;
  if (r.daemon && !r.daemon.ready) return 1;
  return 0;
}

export function renderStatus(r: StatusReport): string {
  const out: string[] = [];
  const field = (k: string, v: string) => out.push(`${(k + ':').padEnd(11)}${v}`);
  field('Store', r.store.ok ? `${r.store.description} (${r.leases.length} lease${r.leases.length === 1 ? '' : 's'}, read in ${r.store.elapsedMs} ms)` : `UNREACHABLE ${r.store.description}: ${r.store.error}`);
  if (r.config) {
    field('Network', r.config.error ? `PROBLEM: ${r.config.error}` : `${r.config.summary}${r.config.vni !== undefined ? ` VNI=${r.config.vni} Port=${r.config.port}` : ''}`);
  }
  if (r.store.ok) field('This node', r.node ? `${r.node.subnet}, public IP ${r.node.publicIP} (${r.node.recognisedBy})` : 'not a node of this network (no lease matches its addresses or subnet file)');
  if (r.daemon) field('flanneld', describeDaemon(r.daemon));
  if (r.store.ok) {
    out.push('');
    const withKernel = r.leases.some((l) => l.kernel !== undefined);
    // the EDGE column only in a cluster with an edge gateway (issue 12), so other tables stay as they were
    const withEdge = r.leases.some((l) => l.edgeNetworks.length > 0);
    const header = ['SUBNET', 'PUBLIC IP', 'BACKEND', 'VTEP MAC', 'EXPIRES', 'NODE', ...(withEdge ? ['EDGE'] : []), ...(withKernel ? ['KERNEL ENTRIES'] : [])];
    const rows = r.leases.map((l) => [
      l.subnet, l.publicIP, l.backend || '(none: udp/alloc)', l.vtepMac ?? '-', l.expires, l.thisNode ? 'this' : '',
      ...(withEdge ? [l.edgeNetworks.join(',') || '-'] : []),
      ...(withKernel ? [l.kernel ?? '-'] : []),
    ]);
    out.push(renderTable(header, rows).trimEnd());
    if (r.leases.length === 0) out.push('(no leases)');
    for (const bad of r.invalid) out.push(`!! ${bad.key}: ${bad.reason}`);
  }
  return out.join('\n') + '\n';
}

