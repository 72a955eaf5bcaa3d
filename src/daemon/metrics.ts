// Prometheus metrics for flanneld (flannel has none). Served on /metrics next
// to /healthz when --healthz-port is set. One registry per daemon so tests and
// several daemons in one process don't collide.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class DaemonMetrics {
  readonly registry = new Registry();
  readonly ready = new Gauge({ name: 'flannel_ready', help: '1 once the lease is held and subnet.env written', registers: [this.registry] });
  readonly remoteLeases = new Gauge({ name: 'flannel_remote_leases', help: 'valid remote leases handed to the backend', registers: [this.registry] });
  readonly leaseEvents = new Counter({ name: 'flannel_lease_events_total', help: 'lease events seen by the watch', labelNames: ['type'], registers: [this.registry] });
  readonly relists = new Counter({ name: 'flannel_watch_relists_total', help: 'full re-lists of the lease store (start, compaction, watch errors)', registers: [this.registry] });
  readonly renewals = new Counter({ name: 'flannel_lease_renewals_total', help: 'lease renewals', labelNames: ['result'], registers: [this.registry] });
  readonly reconciles = new Histogram({
    name: 'flannel_reconcile_seconds',
    help: 'time to converge the data path on the desired remote leases',
    buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2],
    registers: [this.registry],
  });
  readonly reconcileErrors = new Counter({ name: 'flannel_reconcile_errors_total', help: 'per-peer errors returned by the backend', registers: [this.registry] });
  /**
   * How long the event loop was ever held up (the kernel port runs netlink in
   * a worker so this stays small even during a 3000-request batch). Sampled
   * every 10 ms; started by start(), stopped by stop().
   */
  private loop: IntervalHistogram | null = null;
  readonly eventLoopMaxDelay = new Gauge({
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
