// Prometheus metrics for flanneld (flannel has none). Served on /metrics next
// to /healthz when --healthz-port is set. One registry per daemon so tests and
// several daemons in one process don't collide.
//
// prom-client (with @opentelemetry/api, ~45 modules, ~25 ms and ~4 MB at
// start-up) is loaded only when the metrics can be read: flanneld hands in the
// module when --healthz-port is set (run.ts) and `null` otherwise, which makes
// every metric a no-op. Without an argument (tests, other embedders) it is
// loaded here, synchronously.
import { createRequire } from 'node:module';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type * as Prom from 'prom-client';
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BackendMetrics } from '../backend/backend.js';
import type { KernelObserver } from '../kernel/rtnetlink.js';

/** Where the scrape-time metrics come from (bound by whoever owns the daemon). */
export interface MetricSources {
  backend(): BackendMetrics | undefined;
  /** our lease's expiry; null when it has none (a reservation, kube mode), undefined before we hold one */
  leaseExpiry(): Date | null | undefined;
}

/** Set a counter to a cumulative value read from elsewhere (prom-client counters only go up by inc()). */
function setCounter(c: Counter<string>, values: Array<[Record<string, string>, number]>): void {
  c.reset();
  for (const [labels, v] of values) if (v > 0) c.inc(labels, v);
}

const camelToSnake = (s: string) => s.replace(/[A-Z]/g, (m) => `_${m.toLowerCase()}`);

/** prom-client, or null for metrics that record nothing */
export type PromClient = Pick<typeof Prom, 'Counter' | 'Gauge' | 'Histogram' | 'Registry'>;

const loadPromClient = (): PromClient => createRequire(import.meta.url)('prom-client') as PromClient;

/** Stands in for every metric and the registry when metrics are off: accepts every call, records nothing. */
const noop: unknown = new Proxy(function noop() {}, { get: (_t, k) => (k === 'then' ? undefined : noop), apply: () => noop, construct: () => noop as object });

/** The metric classes to build with: prom-client's, or ones that make no-ops. */
function metricClasses(prom: PromClient | null): PromClient {
  return prom ?? ({ Counter: noop, Gauge: noop, Histogram: noop, Registry: noop } as PromClient);
}

/** Set by MetricsBase's constructor: the classes DaemonMetrics' field initialisers (which run right after it) use. */
let P: PromClient = metricClasses(null);

class MetricsBase {
  /** false when built with `null`: nothing is recorded and the registry is a no-op */
  readonly enabled: boolean;
  readonly registry: Registry;

  constructor(prom: PromClient | null) {
    P = metricClasses(prom);
    this.enabled = prom !== null;
    this.registry = new P.Registry();
  }
}

export class DaemonMetrics extends MetricsBase {
  constructor(prom: PromClient | null = loadPromClient()) {
    super(prom);
  }

  readonly ready = new P.Gauge({ name: 'flannel_ready', help: '1 once the lease is held and subnet.env written', registers: [this.registry] });
  readonly remoteLeases = new P.Gauge({ name: 'flannel_remote_leases', help: 'valid remote leases handed to the backend', registers: [this.registry] });
  readonly leaseEvents = new P.Counter({ name: 'flannel_lease_events_total', help: 'lease events seen by the watch', labelNames: ['type'], registers: [this.registry] });
  readonly relists = new P.Counter({ name: 'flannel_watch_relists_total', help: 'full re-lists of the lease store (start, compaction, watch errors)', registers: [this.registry] });
  readonly renewals = new P.Counter({ name: 'flannel_lease_renewals_total', help: 'lease renewals', labelNames: ['result'], registers: [this.registry] });
  readonly reconciles = new P.Histogram({
    name: 'flannel_reconcile_seconds',
    help: 'time to converge the data path on the desired remote leases',
    buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2],
    registers: [this.registry],
  });
  readonly reconcileErrors = new P.Counter({ name: 'flannel_reconcile_errors_total', help: 'per-peer errors returned by the backend', registers: [this.registry] });
  private sources: MetricSources | null = null;

  /** Scrape-time metrics read from the backend and the lease. */
  bind(sources: MetricSources): void {
    this.sources = sources;
  }

  readonly selfHeals = new P.Counter({
    name: 'flannel_self_heals_total',
    help: 'reconciles that restored kernel state someone removed or changed, by what triggered them',
    labelNames: ['trigger'],
    registers: [this.registry],
  });
  /** registered on first use: absent for backends that take no kernel notifications */
  private readonly kernelSubscriberUp = new P.Gauge({
    name: 'flannel_kernel_subscriber_up',
    help: '1 while kernel change notifications are subscribed (self-healing within ms), 0 when the subscriber died or could not start (periodic check only)',
    registers: [],
  });
  readonly conditions = new P.Gauge({
    name: 'flannel_condition',
    help: 'conditions flanneld works around (also listed on /healthz): 1 while it holds, 0 once it cleared',
    labelNames: ['name'],
    registers: [this.registry],
  });

  setKernelSubscriberUp(up: boolean): void {
    if (!this.registry.getSingleMetric('flannel_kernel_subscriber_up')) this.registry.registerMetric(this.kernelSubscriberUp);
    this.kernelSubscriberUp.set(up ? 1 : 0);
  }
  readonly leaseExpiry = new P.Gauge({
    name: 'flannel_lease_expiry_timestamp_seconds',
    help: 'when our lease expires unless renewed (Unix time); absent for leases without expiry',
    registers: [this.registry],
    collect: () => {
      this.leaseExpiry.reset();
      const e = this.sources?.leaseExpiry();
      if (e) this.leaseExpiry.set(e.getTime() / 1000);
    },
  });
  readonly kernelRequests = new P.Histogram({
    name: 'flannel_kernel_request_seconds',
    help: 'netlink round trips to the kernel (a batch counts once)',
    labelNames: ['kind', 'result'],
    buckets: [0.0001, 0.0005, 0.002, 0.01, 0.05, 0.25, 1, 5],
    registers: [this.registry],
  });
  /** hand this to RtNetlink.observer */
  readonly kernelObserver: KernelObserver = (kind, seconds, ok) => this.kernelRequests.observe({ kind, result: ok ? 'ok' : 'error' }, seconds);

  // The udp backend's userspace data path.
  readonly udpPackets: Counter<string> = new P.Counter({
    name: 'flannel_udp_packets_total',
    help: 'inner packets carried by the udp data path (tun_to_udp: encapsulated; udp_to_tun: decapsulated)',
    labelNames: ['direction'],
    registers: [this.registry],
    collect: () => {
      const u = this.sources?.backend()?.udp;
      setCounter(this.udpPackets, u ? [[{ direction: 'tun_to_udp' }, u.tunToUdp.packets], [{ direction: 'udp_to_tun' }, u.udpToTun.packets]] : []);
    },
  });
  readonly udpBytes: Counter<string> = new P.Counter({
    name: 'flannel_udp_bytes_total',
    help: 'inner bytes carried by the udp data path',
    labelNames: ['direction'],
    registers: [this.registry],
    collect: () => {
      const u = this.sources?.backend()?.udp;
      setCounter(this.udpBytes, u ? [[{ direction: 'tun_to_udp' }, u.tunToUdp.bytes], [{ direction: 'udp_to_tun' }, u.udpToTun.bytes]] : []);
    },
  });
  readonly udpDrops: Counter<string> = new P.Counter({
    name: 'flannel_udp_drops_total',
    help: 'packets the udp data path dropped, by direction and reason',
    labelNames: ['direction', 'reason'],
    registers: [this.registry],
    collect: () => {
      const u = this.sources?.backend()?.udp;
      if (!u) return setCounter(this.udpDrops, []);
      const rows: Array<[Record<string, string>, number]> = [];
      for (const [reason, n] of Object.entries(u.tunToUdp.drops)) rows.push([{ direction: 'tun_to_udp', reason: camelToSnake(reason) }, n]);
      for (const [reason, n] of Object.entries(u.udpToTun.drops)) rows.push([{ direction: 'udp_to_tun', reason: camelToSnake(reason) }, n]);
      setCounter(this.udpDrops, rows);
    },
  });
  readonly udpIcmpUnreachable: Counter<string> = new P.Counter({
    name: 'flannel_udp_icmp_unreachable_sent_total',
    help: 'ICMP net-unreachable replies the udp data path sent for packets to subnets with no lease',
    registers: [this.registry],
    collect: () => {
      const u = this.sources?.backend()?.udp;
      setCounter(this.udpIcmpUnreachable, u ? [[{}, u.icmpUnreachableSent]] : []);
    },
  });

  /**
   * How long the event loop was ever held up (the kernel port runs netlink in
   * a worker so this stays small even during a 3000-request batch). Sampled
   * every 10 ms; started by start(), stopped by stop().
   */
  private loop: IntervalHistogram | null = null;
  readonly eventLoopMaxDelay = new P.Gauge({
    name: 'flannel_event_loop_max_delay_seconds',
    help: 'longest the event loop was blocked since flanneld started',
    registers: [this.registry],
    collect: () => {
      if (this.loop) this.eventLoopMaxDelay.set(this.loop.max / 1e9);
    },
  });

  startLoopMonitor(): void {
    if (this.loop) return;
    this.loop = monitorEventLoopDelay({ resolution: 10 });
    this.loop.enable();
  }

  stopLoopMonitor(): void {
    this.loop?.disable();
  }

  /** Longest event-loop block so far, in ms (0 before startLoopMonitor). */
  get eventLoopMaxDelayMs(): number {
    return this.loop ? this.loop.max / 1e6 : 0;
  }
}
