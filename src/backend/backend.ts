// The backend seam. A backend publishes its lease attributes, sets up the
// local data path once the lease is known, and is then handed the desired set
// of remote leases over and over (reconcile). The daemon owns the lifecycle;
// backends never talk to the store.
//
// Contract for reconcile(): safe to repeat with the same input (no changes the
// second time), adds before it deletes, keeps going past a failure for one
// peer and returns every error it met. Leases reaching a backend have been
// validated against the network config and exclude our own.

import type { Lease } from '../lease/lease.js';
import type { LeaseEvent } from '../lease/tracker.js';
import type { Logger } from '../log/log.js';
import type { NetworkConfig } from '../subnet/config.js';
import type { NetlinkEvent } from '../netlink/subscriber.js';
import type { UdpStats } from './udp/counters.js';

/** The underlay interface the daemon chose (daemon/iface.ts selects it). */
export interface ExternalInterface {
  readonly name: string;
  readonly index: number;
  readonly mtu: number;
  /** the interface's own IPv4 address (what the data path binds to) */
  readonly ifaceAddr: number;
  /** the address advertised to peers (--public-ip or ifaceAddr) */
  readonly publicIP: number;
  /** with EnableIPv6: the interface's global IPv6 address, if it has one */
  readonly ifaceAddr6?: bigint;
  /** with EnableIPv6: the IPv6 address advertised to peers (--public-ipv6 or ifaceAddr6) */
  readonly publicIPv6?: bigint;
}

export interface BackendContext {
  readonly config: NetworkConfig;
  readonly extIface: ExternalInterface;
  readonly log: Logger;
  /** the VTEP MAC an earlier run published (kube mode: read back from backend-data) */
  readonly storedVtepMac?: string;
}

/** What goes into our lease besides PublicIP(v6). */
export interface PublishedAttrs {
  readonly backendType: string;
  readonly backendData?: unknown;
  readonly backendV6Data?: unknown;
}

/** What a backend counts, read when /metrics is scraped. */
export interface BackendMetrics {
  /** self-healing: runs that restored kernel state, by what triggered them ("neigh deleted", "device deleted", ...) */
  readonly heals?: Readonly<Record<string, number>>;
  /** the udp backend's userspace data path */
  readonly udp?: UdpStats;
}

export interface Backend {
  readonly type: string;
  /** Called before the lease is acquired (vxlan creates its device here to learn its MAC). */
  prepare(): Promise<PublishedAttrs>;
  /** Called once our lease is known; returns the MTU for subnet.env. */
  activate(own: Lease): Promise<{ mtu: number }>;
  /** Converge the data path on the remote leases; `events` says what changed since last time. */
  reconcile(remote: readonly Lease[], events: readonly LeaseEvent[]): Promise<Error[]>;
  /** Stop background work. Kernel state is left in place (zero-downtime restarts). */
  close(): Promise<void>;
  /** Counters for /metrics (optional). */
  metrics?(): BackendMetrics;
}

export class BackendError extends Error {
  override name = 'BackendError';
}

export type BackendFactory = (ctx: BackendContext) => Backend;

export class BackendRegistry {
  private readonly factories = new Map<string, BackendFactory>();
  register(type: string, f: BackendFactory): this {
    this.factories.set(type.toLowerCase(), f);
    return this;
  }
  create(ctx: BackendContext): Backend {
    const t = ctx.config.backend.type;
    const f = this.factories.get(t);
    if (!f) throw new BackendError(`Backend.Type: unknown backend type "${t}" (available: ${this.types().join(', ')})`);
    return f(ctx);
  }
  types(): string[] {
    return [...this.factories.keys()].sort();
  }
}

/** Kernel change notifications, injectable so tests can run without a subscriber. */
export interface ChangeFeed {
  start(onEvent: (e: NetlinkEvent) => void, onOverrun: () => void): Promise<void>;
  stop(): Promise<void>;
}
