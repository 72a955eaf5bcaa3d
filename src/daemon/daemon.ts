// The flanneld lifecycle (spec §0):
//   config -> external interface -> backend.prepare -> lease -> backend.activate
//   -> subnet.env (ready) -> watch leases -> reconcile / renew -> stop.
//
// The daemon owns the one reconcile queue (reconcile.ts): lease events, kernel
// notifications the backend calls damage, the periodic check and a backend's
// own kicks all go through it. Time comes from a Clock, so tests drive
// renewals and retries without sleeping.
//
// Stop never releases the lease or tears down kernel state, so a restart is
// seamless. The daemon never calls process.exit; run() resolves to an exit
// status that src/cmd/flanneld turns into one.

import { formatIPv4 } from '../lease/ip.js';
import { leaseId, sameAttrs, subnetKey, type Lease, type LeaseAttrs } from '../lease/lease.js';
import { RateLimitedLog, type Logger } from '../log/log.js';
import type { Backend, BackendRegistry, ChangeFeed, PublishedAttrs } from '../backend/backend.js';
import { realClock, type Clock, type ClockTimer } from '../clock.js';
import type { NetlinkEvent } from '../netlink/subscriber.js';
import { ConfigError, describeConfig, parseNetworkConfig, type NetworkConfig } from '../subnet/config.js';
import type { HeldLease } from '../subnet/manager.js';
import { StoreLeaseSource, type LeaseFeed, type LeaseSource } from '../subnet/source.js';
import { readPreviousSubnets, writeSubnetEnv } from '../subnet/subnet-env.js';
import type { LeaseUpdate } from '../subnet/watch.js';
import type { LeaseEvent } from '../lease/tracker.js';
import { StoreError, type LeaseStore } from '../store/store.js';
import { DaemonMetrics } from './metrics.js';
import { describeIface, selectExternalInterface, type HostView, type IfaceOptions } from './iface.js';
import { ReconcileQueue } from './reconcile.js';
import { RemotePeers } from './peers.js';
import { HeapTrimmer } from './heap.js';
import { describePublicIPv6, ownLeaseAttrs, refuseUnsupportedIPv6 } from './dualstack.js';

/** Host firewall rules that go with the lease (iptables masquerade / forward). */
export interface TrafficRules {
  setup(config: NetworkConfig, own: Lease): Promise<void>;
  close(): void;
}

export interface DaemonOptions {
  /** leases as keys in a store (etcd, local); give this or `leases` */
  store?: LeaseStore;
  /** any other lease source (Kubernetes mode); wins over `store` */
  leases?: LeaseSource;
  backends: BackendRegistry;
  log: Logger;
  host: HostView;
  iface: IfaceOptions;
  subnetFile: string;
  ipMasq: boolean;
  /** minutes before expiry to renew (1..1439) */
  renewMarginMinutes: number;
  /** when set, the network config comes from this text (a --net-config-path file) instead of the store */
  configText?: string;
  /** how long to wait before retrying a failed renewal (flannel: 1 min) */
  renewRetryMs?: number;
  /** how often to re-fetch a missing config (flannel: 1 s) */
  configRetryMs?: number;
  /**
   * The periodic check: a full reconcile every so often (default 10 s, as
   * flannel's host-gw), the safety net under lease events and kernel
   * notifications; 0 disables it.
   */
  resyncMs?: number;
  /** kernel change notifications, for a backend that can tell damage (backend.damage) */
  feed?: ChangeFeed;
  /** time and timers (default: the real clock) */
  clock?: Clock;
  /** installed after the lease, before subnet.env (flannel's order, spec §9.6) */
  traffic?: TrafficRules;
  /** called once, right after subnet.env is first written (systemd READY=1) */
  onReady?: () => void;
  /** how long to wait before retrying a failed complete() (kube: the node condition) */
  completeRetryMs?: number;
  /** the daemon's metrics (default: a DaemonMetrics that loads prom-client) */
  metrics?: DaemonMetrics;
  /**
   * Shrinks the heap (heap.ts heapCompactor()). When given, it runs
   * once the daemon is quiet after a burst of lease changes, so the burst's
   * garbage does not stay in RSS for the life of the daemon.
   */
  collectGarbage?: () => void;
}

export interface DaemonExit {
  readonly code: number;
  readonly reason: string;
}

export type DaemonState = 'starting' | 'ready' | 'stopping' | 'stopped';

/** Something wrong that flanneld works around but an operator should know (shown on /healthz). */
export interface Condition {
  readonly name: string;
  readonly message: string;
}

/** The condition for a kernel notification subscriber that died or could not start. */
export const KERNEL_NOTIFICATIONS_DOWN = 'KernelNotificationsDown';

export class Daemon {
  private readonly log: Logger;
  readonly source: LeaseSource;
  state: DaemonState = 'starting';
  lease: HeldLease | null = null;
  config: NetworkConfig | null = null;
  private backend: Backend | null = null;
  private watch: LeaseFeed | null = null;
  private completeTimer: ClockTimer | null = null;
  private ownLossWarned = false;
  /** the remote leases in use (overlapping ones left out, each warned about once), kept per lease event */
  private readonly peers = new RemotePeers((id, reason) => this.log.warn(`ignoring lease ${id}: ${reason}`));
  /** a re-registration after a store reset is running */
  private reregistering = false;
  /** aborted at shutdown: ends waits between retries */
  private readonly stopping = new AbortController();
  private readonly clock: Clock;
  private readonly heapTrim: HeapTrimmer | null;
  private renewTimer: ClockTimer | null = null;
  private checkTimer: ClockTimer | null = null;
  private finish: ((e: DaemonExit) => void) | null = null;
  private readonly queue: ReconcileQueue;
  private readonly errLog: RateLimitedLog;
  /** the kernel notification feed is subscribed (null: not used) */
  private feedUp: boolean | null = null;
  private feedStarting: Promise<void> | null = null;
  /** the last kernel subscription trouble logged (each new one is logged once) */
  private feedTrouble: string | null = null;
  private readonly conds = new Map<string, string>();
  /** remote leases handed to the backend */
  get remote(): readonly Lease[] {
    return this.peers.leases;
  }
  readonly metrics: DaemonMetrics;

  constructor(private readonly o: DaemonOptions) {
    this.metrics = o.metrics ?? new DaemonMetrics();
    this.log = o.log;
    this.clock = o.clock ?? realClock;
    this.errLog = new RateLimitedLog(10_000, () => this.clock.now());
    this.queue = new ReconcileQueue({
      clock: this.clock,
      log: this.log,
      run: async (events) => {
        const b = this.backend;
        if (!b || this.state === 'stopping') return { errors: [], changes: 0 };
        const errors = await b.reconcile(this.remote, events);
        return { errors, changes: b.lastChanges ?? 0 };
      },
      onRun: (r) => {
        this.heapTrim?.busy();
        this.metrics.reconciles.observe(r.seconds);
        this.metrics.reconcileErrors.inc(r.errors.length);
        for (const why of r.healed ? [r.kicks[0]!] : []) this.metrics.selfHeals.inc({ trigger: why });
        this.log.debug('reconciled', { peers: this.remote.length, events: r.events, kicks: r.kicks.join(','), ms: Number((r.seconds * 1000).toFixed(1)) });
      },
    });
    this.heapTrim = o.collectGarbage
      ? new HeapTrimmer({
          clock: this.clock,
          collect: o.collectGarbage,
          onTrim: (t) => this.log.debug(`collected the garbage of ${t.leases} lease changes: heap ${mib(t.heapBefore)} -> ${mib(t.heapAfter)} MiB in ${t.ms.toFixed(1)} ms`),
        })
      : null;
    if (o.leases) this.source = o.leases;
    else if (o.store) this.source = new StoreLeaseSource(o.store, o.log.child('subnet'), o.clock ?? realClock);
    else throw new Error('Daemon: either store or leases is required');
  }

  get ready(): boolean {
    return this.state === 'ready';
  }

  /** Runs until `signal` aborts (exit 0), the lease is revoked (exit 0) or a fatal error (exit 1). */
  async run(signal: AbortSignal): Promise<DaemonExit> {
    const done = new Promise<DaemonExit>((resolve) => (this.finish = resolve));
    const onAbort = () => this.finish?.({ code: 0, reason: 'signal' });
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const started = await Promise.race([this.start(signal), done]);
      const exit = started ?? (await done);
      return exit;
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      this.log.error(msg);
      return { code: 1, reason: msg };
    } finally {
      signal.removeEventListener('abort', onAbort);
      await this.shutdown();
    }
  }

  private async start(signal: AbortSignal): Promise<undefined | DaemonExit> {
    const cfg = await this.fetchConfig(signal);
    if (!cfg) return { code: 0, reason: 'signal' };
    this.config = cfg;
    if (cfg.backend.defaulted) {
      this.log.warn(
        'network config has no "Backend"; using "vxlan" as flannel documents. Note: real flanneld picks "udp" for this config, so set Backend.Type explicitly in a mixed cluster',
      );
    }
    this.log.info(`network config: ${describeConfig(cfg)}`);
    refuseUnsupportedIPv6(cfg);

    // The source may remember things about this node: an operator's
    // node-public-ip annotation overrides --public-ip (spec §0 step 10), and a
    // VTEP MAC published by an earlier run is reused when the device is new.
    const stored = await this.source.storedNodeInfo();
    if (signal.aborted) return { code: 0, reason: 'signal' };
    let ifaceOpts = this.o.iface;
    if (stored.publicIP) {
      this.log.info(`using public IP ${stored.publicIP} stored for this node (overrides --public-ip)`);
      ifaceOpts = { ...ifaceOpts, publicIP: stored.publicIP };
    }
    if (cfg.enableIPv6) {
      ifaceOpts = { ...ifaceOpts, ipv6: true };
      if (stored.publicIPv6) {
        this.log.info(`using public IPv6 ${stored.publicIPv6} stored for this node (overrides --public-ipv6)`);
        ifaceOpts = { ...ifaceOpts, publicIPv6: stored.publicIPv6 };
      }
    }
    const ext = await selectExternalInterface(this.o.host, ifaceOpts);
    this.log.info(`using interface ${describeIface(ext)}`);

    this.backend = this.o.backends.create({
      config: cfg,
      extIface: ext,
      log: this.log.child(cfg.backend.type),
      ...(stored.vtepMac ? { storedVtepMac: stored.vtepMac } : {}),
      ...(stored.vtepMac6 ? { storedVtepMac6: stored.vtepMac6 } : {}),
      kick: (why) => this.queue.kick(why),
      republish: (attrs) => this.republish(attrs),
    });
    const published = await this.backend.prepare();
    if (signal.aborted) return { code: 0, reason: 'signal' };

    const previous = readPreviousSubnets(this.o.subnetFile);
    this.lease = await this.source.acquire(cfg, {
      attrs: ownLeaseAttrs(cfg, ext, published),
      previous,
    });
    this.log.info(`acquired lease ${subnetKey(this.lease.subnet, this.lease.subnet6)} (${this.lease.how}) for public IP ${formatIPv4(ext.publicIP)}${describePublicIPv6(this.lease.attrs)}`);
    if (signal.aborted) return { code: 0, reason: 'signal' };

    const { mtu } = await this.backend.activate(this.lease);
    if (signal.aborted) return { code: 0, reason: 'signal' };
    await this.o.traffic?.setup(cfg, this.lease);
    if (signal.aborted) return { code: 0, reason: 'signal' };
    try {
      writeSubnetEnv(this.o.subnetFile, {
        network: cfg.network,
        subnet: this.lease.subnet,
        ipv6Network: cfg.ipv6Network,
        ipv6Subnet: this.lease.subnet6,
        mtu,
        ipMasq: this.o.ipMasq,
      });
      this.state = 'ready';
      this.metrics.ready.set(1);
      this.log.info(`wrote ${this.o.subnetFile}; ready`);
      try {
        this.o.onReady?.();
      } catch (e) {
        this.log.warn(`ready notification failed: ${(e as Error).message}`);
      }
    } catch (e) {
      // As flannel: a write failure is a warning; we stay not-ready.
      this.log.warn(`could not write ${this.o.subnetFile}: ${(e as Error).message}`);
    }

    // Subscribed before the first reconcile: damage done after it is seen.
    await this.startFeed();
    if (signal.aborted) return { code: 0, reason: 'signal' };
    this.watch = this.source.watch(cfg, this.log.child('watch'), (u) => this.onLeases(u));
    this.watch.start();
    this.heapTrim?.soon();
    void this.complete();
    this.scheduleRenew();
    this.scheduleCheck();
    return undefined;
  }

  // ------------------------------------------------------------ reconcile

  /** Wait until every queued reconcile has run (tests use it). */
  async settled(): Promise<void> {
    await this.queue.settled();
  }

  /** Kicked runs (kernel damage, the periodic check, a backend's request) that restored something, by trigger. */
  get heals(): Readonly<Record<string, number>> {
    return this.queue.heals;
  }

  /** The periodic check: a full reconcile, and another try at a kernel subscription that is down. */
  private scheduleCheck(): void {
    const every = this.o.resyncMs ?? 10_000;
    if (every <= 0) return;
    this.checkTimer = this.clock.setTimeout(() => {
      if (this.state === 'stopping' || this.state === 'stopped') return;
      if (this.feedUp === false) void this.startFeed();
      this.queue.kick('periodic check');
      this.scheduleCheck();
    }, every);
  }

  /** What the daemon works around but an operator should know about (empty when all is well). */
  conditions(): Condition[] {
    return [...this.conds].map(([name, message]) => ({ name, message }));
  }

  private setCondition(name: string, message: string | null): void {
    if (message === null) {
      if (this.conds.delete(name)) this.metrics.conditions.set({ name }, 0);
    } else {
      this.conds.set(name, message);
      this.metrics.conditions.set({ name }, 1);
    }
  }

  /**
   * Subscribe to kernel notifications when the backend can tell damage. A
   * subscription that cannot start or dies later is not fatal: damage is
   * then repaired by the periodic check only, which is a condition on
   * /healthz and flannel_kernel_subscriber_up 0 until a later check gets a
   * new subscription.
   */
  private async startFeed(): Promise<void> {
    const feed = this.o.feed;
    const b = this.backend;
    if (!feed || !b?.damage || this.feedStarting || this.state === 'stopping' || this.state === 'stopped') return;
    this.feedStarting = this.subscribe(feed);
    try {
      await this.feedStarting;
    } finally {
      this.feedStarting = null;
    }
  }

  private async subscribe(feed: ChangeFeed): Promise<void> {
    const wasDown = this.feedUp === false;
    try {
      await feed.start(
        (e) => this.onKernelEvent(e),
        () => this.queue.kick('netlink overrun'),
        (err) => this.feedDown(`the kernel notification subscriber died: ${err.message}`),
      );
      this.feedUp = true;
      this.metrics.setKernelSubscriberUp(true);
      this.setCondition(KERNEL_NOTIFICATIONS_DOWN, null);
      this.feedTrouble = null;
      if (wasDown) {
        this.log.info('kernel notifications are back');
        // What happened while we were deaf is found by a full pass.
        this.queue.kick('netlink resubscribed');
      }
    } catch (e) {
      this.feedDown(`cannot subscribe to kernel notifications: ${(e as Error).message}`);
    }
  }

  private feedDown(why: string): void {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    this.feedUp = false;
    this.metrics.setKernelSubscriberUp(false);
    const every = this.o.resyncMs ?? 10_000;
    const fallback = every > 0 ? `damage to the data path is repaired by the periodic check only (every ${every / 1000} s)` : 'damage to the data path is not repaired (no periodic check)';
    this.setCondition(KERNEL_NOTIFICATIONS_DOWN, `${why}; ${fallback}`);
    if (why !== this.feedTrouble) this.log.warn(`${why}; ${fallback}; retrying with every check`);
    this.feedTrouble = why;
    // Notifications may have been lost on the way down.
    this.queue.kick('netlink subscriber lost');
  }

  private onKernelEvent(e: NetlinkEvent): void {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    const why = this.backend?.damage?.(e);
    if (why) this.queue.kick(why);
  }

  private async fetchConfig(signal: AbortSignal): Promise<NetworkConfig | null> {
    if (this.o.configText !== undefined) return parseNetworkConfig(this.o.configText);
    const log = new RateLimitedLog(30_000, () => this.clock.now());
    while (!signal.aborted) {
      try {
        return await this.source.getNetworkConfig();
      } catch (e) {
        // Present but invalid: that won't fix itself; say which field and stop.
        if (e instanceof ConfigError && e.code !== 'CONFIG_MISSING') throw e;
        if (log.allow('cfg')) this.log.warn(`couldn't fetch network config: ${(e as Error).message}; retrying every ${this.o.configRetryMs ?? 1000} ms`);
      }
      await this.clock.sleep(this.o.configRetryMs ?? 1000, signal);
    }
    return null;
  }

  private onLeases(u: LeaseUpdate): void {
    const own = this.lease ? leaseId(this.lease) : null;
    if (u.snapshot) this.metrics.relists.inc();
    this.heapTrim?.handled(u.snapshot ? u.leases.length : u.events.length);
    if (u.storeReset !== undefined) void this.storeWasReset(u.storeReset);
    const ownEvents: LeaseEvent[] = [];
    const others: LeaseEvent[] = [];
    let added = 0;
    for (const e of u.events) {
      if (e.type === 'added') added++;
      (own !== null && leaseId(e.lease) === own ? ownEvents : others).push(e);
    }
    if (added > 0) this.metrics.leaseEvents.inc({ type: 'added' }, added);
    if (u.events.length > added) this.metrics.leaseEvents.inc({ type: 'removed' }, u.events.length - added);
    for (const e of ownEvents) {
      if (this.source.ownLoss === 'ignored') {
        if (e.type === 'removed' && !this.ownLossWarned) {
          this.ownLossWarned = true;
          this.log.warn(`our own lease ${leaseId(e.lease)} disappeared from ${this.source.description}; keeping the data path as it is`);
        } else if (e.type === 'added') this.ownLossWarned = false;
      } else if (e.type === 'removed') {
        // After a wipe our key is gone because the store forgot it, not because anyone revoked it.
        if (u.storeReset === undefined) void this.ownLeaseGone();
      } else void this.ownLeaseWritten();
    }
    // A listing diffs against what the watch knew before; the first one knew
    // nothing, so a key deleted between our acquiring it and that listing
    // shows up only as its absence. (flannel watches from the revision it
    // acquired at, so it sees the delete itself.)
    if (u.snapshot && own !== null && u.storeReset === undefined && this.source.ownLoss !== 'ignored' && !ownEvents.some((e) => e.type === 'removed') && !u.leases.some((l) => leaseId(l) === own)) {
      void this.ownLeaseGone();
    }
    // Leases whose subnet overlaps ours or another peer's are left out (the
    // peer in use keeps its place; peers.ts). Watch events are applied one by
    // one, so an update costs what changed, not the number of peers; only
    // what changed among the peers in use goes to the backend. A listing
    // (start-up, a re-list) is taken whole, and the backend checks everything.
    if (u.snapshot) {
      this.peers.reset(
        u.leases.filter((l) => leaseId(l) !== own),
        this.lease,
      );
      this.queue.push([]);
    } else {
      const changed = this.peers.apply(others, this.lease);
      if (changed.length > 0) this.queue.push(changed);
    }
    this.metrics.remoteLeases.set(this.peers.size);
  }

  // ------------------------------------------------------------ renewal

  private scheduleRenew(delayMs?: number): void {
    this.clock.clearTimeout(this.renewTimer);
    this.renewTimer = null;
    const lease = this.lease;
    if (!lease || lease.expiration === null || this.state === 'stopping') return;
    const at = lease.expiration.getTime() - this.o.renewMarginMinutes * 60_000;
    const wait = delayMs ?? Math.max(0, at - this.clock.now());
    this.renewTimer = this.clock.setTimeout(() => void this.renew(), wait);
  }

  private async renew(): Promise<void> {
    if (!this.lease) return;
    try {
      const renewed = await this.source.renew(this.lease);
      this.lease = { ...this.lease, expiration: renewed.expiration };
      this.metrics.renewals.inc({ result: 'ok' });
      this.log.info(`renewed lease ${leaseId(this.lease)}, expires ${this.lease.expiration?.toISOString() ?? 'never'}`);
      this.scheduleRenew();
    } catch (e) {
      this.metrics.renewals.inc({ result: 'error' });
      const retry = this.o.renewRetryMs ?? 60_000;
      if (this.errLog.allow('renew')) this.log.warn(`lease renewal failed: ${(e as Error).message}; trying again in ${retry / 1000} s`);
      this.scheduleRenew(retry);
    }
  }

  /** Someone (maybe us) wrote our key: restart the renewal timer from its real TTL. */
  private async ownLeaseWritten(): Promise<void> {
    if (!this.lease) return;
    try {
      const expiration = await this.source.storedExpiration(this.lease);
      if (expiration === undefined || !this.lease) return;
      this.lease = { ...this.lease, expiration };
      this.scheduleRenew();
    } catch {
      /* the periodic renewal still runs */
    }
  }

  /**
   * Our key is gone. If it simply ran out (we could not renew in time, e.g. a
   * long etcd outage) we take a lease again, preferring the same subnet, and
   * leave the data path alone. If it was deleted while still valid, the lease
   * was revoked: shut down cleanly, as flannel does.
   */
  private async ownLeaseGone(): Promise<void> {
    const lease = this.lease;
    if (!lease || !this.config || this.state === 'stopping') return;
    const expired = lease.expiration !== null && this.clock.now() >= lease.expiration.getTime() - 5000;
    if (!expired) {
      this.log.warn(`lease ${leaseId(lease)} has been revoked. Shutting down daemon.`);
      this.finish?.({ code: 0, reason: 'lease revoked' });
      return;
    }
    this.log.warn(`lease ${leaseId(lease)} expired before it could be renewed; acquiring again`);
    await this.reacquire(lease);
  }

  /**
   * The store went back in time (etcd wiped, or restored from an older
   * snapshot; the local store's file replaced): it no longer knows our
   * lease, or knows an old version of it. Write it again through the normal
   * acquisition, which keeps our subnet when the store lets us and refuses to
   * overwrite a subnet that someone else holds there.
   */
  private async storeWasReset(reason: string): Promise<void> {
    const lease = this.lease;
    if (!lease || !this.config || this.state === 'stopping' || this.reregistering) return;
    this.log.warn(`${this.source.description} went back in time (${reason}): it was wiped or restored from an older snapshot; registering our lease ${leaseId(lease)} again`);
    this.reregistering = true;
    try {
      await this.reacquire(lease);
    } finally {
      this.reregistering = false;
    }
  }

  private republishing: Promise<void> = Promise.resolve();

  /** The backend's published attributes changed: write our lease again with them (one at a time). */
  private republish(published: PublishedAttrs): void {
    this.republishing = this.republishing.then(async () => {
      const lease = this.lease;
      if (!lease || this.state === 'stopping' || this.state === 'stopped') return;
      const attrs: LeaseAttrs = { publicIP: lease.attrs.publicIP, publicIPv6: lease.attrs.publicIPv6, ...published };
      if (sameAttrs(attrs, lease.attrs)) return;
      this.log.info(`publishing changed attributes in our lease ${leaseId(lease)}`);
      await this.reacquire({ ...lease, attrs });
    }).catch((e: unknown) => this.log.error(`publishing changed attributes failed: ${e instanceof Error ? e.message : String(e)}`));
  }

  /** Take our subnet again; anything else (a different subnet, an error that won't pass) ends the daemon. */
  private async reacquire(lease: HeldLease): Promise<void> {
    let wait = 1000;
    for (;;) {
      if (!this.config || this.state === 'stopping' || this.state === 'stopped') return;
      try {
        const again = await this.source.acquire(this.config, {
          attrs: lease.attrs,
          previous: { subnet: lease.subnet, subnet6: lease.subnet6 },
        });
        if (leaseId(again) !== leaseId(lease)) {
          this.log.error(`re-acquired a different subnet ${leaseId(again)} (was ${leaseId(lease)}); restarting is needed to move the data path`);
          this.finish?.({ code: 1, reason: 'subnet changed' });
          return;
        }
        this.lease = again;
        this.scheduleRenew();
        return;
      } catch (e) {
        // A store that is still coming back (a restarted etcd) is worth waiting for.
        if (e instanceof StoreError && e.retryable) {
          if (this.errLog.allow('reacquire')) this.log.warn(`could not re-acquire lease yet: ${e.message}; retrying`);
          await this.clock.sleep(wait, this.stopping.signal);
          wait = Math.min(wait * 2, 30_000);
          continue;
        }
        this.log.error(`could not re-acquire lease: ${(e as Error).message}`);
        this.finish?.({ code: 1, reason: 'lease lost' });
        return;
      }
    }
  }

  /** The source's last start-up step (kube: the node condition); retried until it works. */
  private async complete(): Promise<void> {
    const lease = this.lease;
    if (!lease || this.state === 'stopping' || this.state === 'stopped') return;
    try {
      await this.source.complete(lease);
    } catch (e) {
      const retry = this.o.completeRetryMs ?? 10_000;
      if (this.errLog.allow('complete')) this.log.warn(`${(e as Error).message}; trying again in ${retry / 1000} s`);
      this.completeTimer = this.clock.setTimeout(() => void this.complete(), retry);
    }
  }

  private async shutdown(): Promise<void> {
    this.state = 'stopping';
    this.stopping.abort();
    this.metrics.ready.set(0);
    this.clock.clearTimeout(this.completeTimer);
    this.clock.clearTimeout(this.renewTimer);
    this.clock.clearTimeout(this.checkTimer);
    this.heapTrim?.close();
    await this.watch?.stop();
    await this.source.close();
    await this.queue.close();
    await this.feedStarting;
    if (this.feedUp !== null) await this.o.feed?.stop();
    await this.backend?.close();
    this.o.traffic?.close();
    this.state = 'stopped';
  }
}

const mib = (bytes: number) => (bytes / 1048576).toFixed(1);
