// The backend seam. A backend publishes its lease attributes, sets up the
// local data path once the lease is known, and is then handed the desired set
// of remote leases over and over (reconcile). The daemon owns the lifecycle
// and the one reconcile queue: lease events, kernel notifications and the
// periodic check all end up there, and it never runs two reconciles at once.
// Backends never talk to the store and run no timers or loops of their own
// for reconciling; a backend that needs a run (its data path broke) asks the
// daemon through `ctx.kick`.
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
import { NetlinkError } from '../netlink/errors.js';
import { FlannelError, findCause, isRetryable, rootCode } from '../errors.js';

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
  /** dual-stack: flannel-v6.<VNI>'s MAC an earlier run published (kube mode: from backend-v6-data) */
  readonly storedVtepMac6?: string;
  /**
   * Ask the daemon for a full reconcile soon, saying why ("data path
   * stopped"). Kicks are coalesced; the daemon counts a kicked run that
   * changed something as a self-heal under `why`.
   */
  readonly kick?: (why: string) => void;
  /**
   * What the backend publishes changed at runtime (vxlan: an edge segment's
   * interface went down or came back): the daemon writes our lease again with
   * these attributes (after PublicIP/PublicIPv6), so peers follow.
   */
  readonly republish?: (attrs: PublishedAttrs) => void;
}

/** What goes into our lease besides PublicIP(v6). */
export interface PublishedAttrs {
  readonly backendType: string;
  readonly backendData?: unknown;
  readonly backendV6Data?: unknown;
  /** vxlan with --edge-network: the segments this node is a gateway to (lease "EdgeNetworks") */
  readonly edgeNetworks?: readonly string[];
}

/** What a backend counts, read when /metrics is scraped (self-heals are the daemon's). */
export interface BackendMetrics {
  /** the udp backend's userspace data path */
  readonly udp?: UdpStats;
}

export interface Backend {
  readonly type: string;
  /** Called before the lease is acquired (vxlan creates its device here to learn its MAC). */
  prepare(): Promise<PublishedAttrs>;
  /** Called once our lease is known; returns the MTU for subnet.env. */
  activate(own: Lease): Promise<{ mtu: number }>;
  /**
   * Converge the data path on the remote leases. `events` says what changed
   * since the last call (a backend may apply just those, as a targeted
   * patch); empty means "check everything". Never called twice at once.
   */
  reconcile(remote: readonly Lease[], events: readonly LeaseEvent[]): Promise<Error[]>;
  /** kernel entries the last reconcile() changed; a kicked run that changed something healed damage */
  readonly lastChanges?: number;
  /**
   * Is this kernel notification damage to state the backend owns (our device
   * deleted, a neighbour a peer needs removed)? What happened ("neigh
   * deleted"), and the daemon queues a full reconcile; null to ignore it. A
   * backend without it gets no kernel notifications.
   */
  damage?(e: NetlinkEvent): string | null;
  /** Stop background work. Kernel state is left in place (zero-downtime restarts). */
  close(): Promise<void>;
  /** Counters for /metrics (optional). */
  metrics?(): BackendMetrics;
}

export class BackendError extends FlannelError {
  static override readonly defaultCode: string = 'BACKEND';
  override name = 'BackendError';
}

/**
 * One thing a reconcile could not do. `cause` is the error that stopped it (a
 * NetlinkError keeps the kernel's errno), and `code` is the cause's code when
 * it has one ("EEXIST", "ENETUNREACH"), so callers can tell errors apart
 * without reading their text.
 */
export class ReconcileError extends FlannelError {
  static override readonly defaultCode: string = 'RECONCILE';
  override name = 'ReconcileError';
  constructor(message: string, options: { cause?: unknown; code?: string } = {}) {
    super(message, { code: options.code ?? rootCode(options.cause), retryable: isRetryable(findCause(options.cause, FlannelError)), cause: options.cause });
  }

  /** the kernel's errno when a netlink request failed it */
  get errno(): number | undefined {
    return findCause(this, NetlinkError)?.errno;
  }
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
  /**
   * Resolves once subscribed (rejects if that fails). `onOverrun`: the kernel
   * dropped notifications, the subscription goes on. `onLost`: the
   * subscription ended for good (its worker died); start() may be called
   * again.
   */
  start(onEvent: (e: NetlinkEvent) => void, onOverrun: () => void, onLost: (err: Error) => void): Promise<void>;
  stop(): Promise<void>;
}
