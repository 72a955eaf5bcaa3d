// The topology page's HTTP server (`flannelctl ui`, and the page `lab up`
// starts).
//
//   GET /                        the page: one self-contained HTML document
//   GET /api/state               the current UiState (JSON)
//   GET /api/events              server-sent events: `state` with the whole
//                                UiState, sent at once and on every change
//   GET /api/hosts/<id>/kernel   one host's flannel device, neighbours, FDB
//                                and routes, read when asked
//
// Live updates: the server watches the store with LeaseWatch (list, then
// watch; re-list when a watch ends), and every probe interval it refreshes
// what it knows about the hosts (in the lab: is each flanneld running) and
// runs the probes. Whenever the document changes, its version goes up and it
// is pushed to every open event stream. The page never polls.
//
// It listens on loopback by default and then only answers requests whose Host
// header names a loopback address (a web page elsewhere cannot read it
// through DNS rebinding). The page itself loads nothing from anywhere else,
// and the Content-Security-Policy says so.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { withTimeout } from '../ctl/cluster.js';
import { formatIPv4Net } from '../lease/ip.js';
import type { Logger } from '../log/log.js';
import type { LeaseStore } from '../store/store.js';
import { ConfigError, parseNetworkConfig, type NetworkConfig } from '../subnet/config.js';
import { LeaseWatch } from '../subnet/watch.js';
import {
  buildState,
  summariseLease,
  type KernelTables,
  type KernelUnavailable,
  type KnownHost,
  type LeaseSummary,
  type ProbeResult,
  type UiHost,
  type UiState,
} from './model.js';
import { PAGE_HTML } from './page.js';

/** Where the page's data comes from: the lab, or any store. */
export interface UiSource {
  readonly mode: 'lab' | 'store';
  readonly title: string;
  readonly store: LeaseStore;
  /** how the store is shown on the page */
  readonly storeLabel: string;
  readonly probeNote: string;
  /** hosts known besides the leases (the lab's), refreshed every interval */
  known(): KnownHost[] | Promise<KnownHost[]>;
  /** one probe round over the hosts that hold a lease; absent: no probe data */
  probe?(hosts: readonly UiHost[], backend: string | null): Promise<ProbeResult[]>;
  kernel(host: UiHost, backend: string | null, peerIPs: ReadonlySet<string>): Promise<KernelTables | KernelUnavailable>;
  /** this machine's addresses (outside the lab: which host's kernel is readable) */
  readonly localIPs?: ReadonlySet<string>;
  close(): Promise<void>;
}

export interface UiServerOptions {
  host: string;
  port: number;
  source: UiSource;
  log: Logger;
  /** probes and host checks; default 2000 ms */
  intervalMs?: number;
  /** retry a missing or invalid network config this often; default 2000 ms */
  configRetryMs?: number;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\]|::1)$/i;

export class UiServer {
  private readonly server: http.Server;
  private readonly clients = new Set<http.ServerResponse>();
  private readonly lastSeen = new Map<string, LeaseSummary>();
  private readonly probes = new Map<string, ProbeResult>();
  private leases: LeaseSummary[] = [];
  private known: KnownHost[] = [];
  private config: NetworkConfig | null = null;
  private storeError: string | null = null;
  private watch: LeaseWatch | null = null;
  private current: UiState;
  private lastBody = '';
  private stopped = false;
  private timers: NodeJS.Timeout[] = [];
  private ticking = false;
  private broadcastTimer: NodeJS.Timeout | null = null;
  url = '';

  constructor(private readonly o: UiServerOptions) {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        if (!res.headersSent) this.json(res, 500, { error: (e as Error).message });
        else res.end();
      });
    });
    this.current = {
      version: 0,
      mode: o.source.mode,
      title: o.source.title,
      store: o.source.storeLabel,
      backend: null,
      network: null,
      storeError: null,
      probeNote: o.source.probeNote,
      updatedAt: new Date().toISOString(),
      hosts: [],
      tunnels: [],
    };
  }

  state(): UiState {
    return this.current;
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.o.port, this.o.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const a = this.server.address() as AddressInfo;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    this.url = `http://${host}:${a.port}/`;
    this.known = await this.o.source.known();
    this.rebuild();
    void this.startWatch();
    const interval = this.o.intervalMs ?? 2000;
    const t = setInterval(() => void this.tick(), interval);
    this.timers.push(t);
    const hb = setInterval(() => {
      for (const c of this.clients) c.write(': keep-alive\n\n');
    }, 15_000);
    this.timers.push(hb);
    void this.tick();
    return this.url;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    if (this.broadcastTimer) clearTimeout(this.broadcastTimer);
    for (const c of this.clients) c.end();
    this.clients.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    await this.watch?.stop();
    await this.o.source.close();
  }

  // ------------------------------------------------------------ the model

  /** Network config first (LeaseWatch validates leases against it), then list + watch. */
  private async startWatch(): Promise<void> {
    const retry = this.o.configRetryMs ?? 2000;
    while (!this.stopped) {
      try {
        const text = await withTimeout(this.o.source.store.getNetworkConfig(), 5000, 'reading the network config');
        if (text === null) this.setStoreError('no network config in the store (<prefix>/config is missing)');
        else {
          this.config = parseNetworkConfig(text);
          break;
        }
      } catch (e) {
        this.setStoreError(e instanceof ConfigError ? `invalid network config: ${e.message}` : `cannot read the store: ${(e as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, retry));
    }
    if (this.stopped || !this.config) return;
    this.setStoreError(null);
    // A failing store is shown on the page as well as logged.
    this.watch = new LeaseWatch(
      this.o.source.store,
      this.config,
      this.o.log,
      (u) => {
        this.leases = u.leases.map(summariseLease);
        for (const l of this.leases) this.lastSeen.set(l.publicIP, l);
        this.storeError = null;
        this.rebuild();
      },
      { onTrouble: (line) => this.setStoreError(line) },
    );
    this.watch.start();
  }

  private setStoreError(e: string | null): void {
    if (this.storeError === e) return;
    this.storeError = e;
    this.rebuild();
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.stopped) return;
    this.ticking = true;
    try {
      this.known = await this.o.source.known();
      this.rebuild();
      if (this.o.source.probe) {
        const withLease = this.current.hosts.filter((h) => h.lease === 'present');
        const results = await this.o.source.probe(withLease, this.config?.backend.type ?? null);
        if (this.stopped) return;
        for (const r of results) this.probes.set(`${r.from}>${r.to}`, r);
        this.rebuild();
      }
    } catch (e) {
      this.o.log.warn(`page refresh failed: ${(e as Error).message}`);
    } finally {
      this.ticking = false;
    }
  }

  private rebuild(): void {
    const cfg = this.config;
    const body = buildState({
      mode: this.o.source.mode,
      title: this.o.source.title,
      store: this.o.source.storeLabel,
      backend: cfg?.backend.type ?? null,
      network: cfg?.network ? formatIPv4Net(cfg.network) : null,
      storeError: this.storeError,
      probeNote: this.o.source.probeNote,
      leases: this.leases,
      lastSeen: this.lastSeen,
      known: this.known,
      probes: this.probes,
      ...(this.o.source.localIPs ? { localIPs: this.o.source.localIPs } : {}),
    });
    // Probe times change every round; only a change in what is shown makes a new version.
    const text = JSON.stringify(body, (k, v: unknown) => (k === 'at' ? undefined : v));
    if (text === this.lastBody) return;
    this.lastBody = text;
    this.current = { ...body, version: this.current.version + 1, updatedAt: new Date().toISOString() };
    this.scheduleBroadcast();
  }

  private scheduleBroadcast(): void {
    if (this.broadcastTimer) return;
    this.broadcastTimer = setTimeout(() => {
      this.broadcastTimer = null;
      const msg = `event: state\ndata: ${JSON.stringify(this.current)}\n\n`;
      for (const c of this.clients) c.write(msg);
    }, 20);
  }

  // ------------------------------------------------------------ HTTP

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (LOOPBACK.test(this.o.host)) {
      const host = (req.headers.host ?? '').replace(/:\d+$/, '');
      if (!LOOPBACK.test(host)) return this.text(res, 403, 'this page only answers on a loopback address\n');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return this.text(res, 405, 'only GET\n');
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/' || url.pathname === '/index.html') {
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'",
        'x-content-type-options': 'nosniff',
      });
      res.end(PAGE_HTML);
      return;
    }
    if (url.pathname === '/api/state') return this.json(res, 200, this.current);
    if (url.pathname === '/api/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      res.write(`retry: 1000\nevent: state\ndata: ${JSON.stringify(this.current)}\n\n`);
      this.clients.add(res);
      req.on('close', () => this.clients.delete(res));
      return;
    }
    const m = /^\/api\/hosts\/([^/]+)\/kernel$/.exec(url.pathname);
    if (m) {
      const id = decodeURIComponent(m[1]!);
      const host = this.current.hosts.find((h) => h.id === id);
      if (!host) return this.json(res, 404, { host: id, available: false, reason: `no host "${id}"` });
      if (!host.kernel) {
        const why =
          this.o.source.mode === 'lab'
            ? 'this host is not one of the lab\'s'
            : `kernel tables are read only on the machine that runs this page; run "flannelctl status" on ${host.publicIP ?? host.name}`;
        return this.json(res, 200, { host: id, available: false, reason: why } satisfies KernelUnavailable);
      }
      const peers = new Set(this.current.hosts.filter((h) => h.id !== id && h.publicIP).map((h) => h.publicIP!));
      try {
        return this.json(res, 200, await this.o.source.kernel(host, this.config?.backend.type ?? null, peers));
      } catch (e) {
        return this.json(res, 200, { host: id, available: false, reason: (e as Error).message } satisfies KernelUnavailable);
      }
    }
    this.text(res, 404, 'not found\n');
  }

  private json(res: http.ServerResponse, code: number, v: unknown): void {
    res.writeHead(code, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(v));
  }

  private text(res: http.ServerResponse, code: number, v: string): void {
    res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(v);
  }
}

/** "127.0.0.1:8080", "[::1]:8080", "8080" (loopback), ":8080" (every address). */
export function parseListen(v: string): { host: string; port: number } {
  const t = v.trim();
  let host: string;
  let port: string;
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(t);
  if (v6) [host, port] = [v6[1]!, v6[2]!];
  else if (/^\d+$/.test(t)) [host, port] = ['127.0.0.1', t];
  else {
    const m = /^([^:\s]*):(\d+)$/.exec(t);
    if (!m) throw new Error(`--listen: "${v}" is not host:port`);
    [host, port] = [m[1] || '0.0.0.0', m[2]!];
  }
  const n = Number(port);
  if (n > 65535) throw new Error(`--listen: port ${n} is out of range`);
  return { host, port: n };
}

export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host);
}
