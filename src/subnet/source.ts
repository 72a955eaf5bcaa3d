// LeaseSource: where the daemon's lease comes from and where it learns about
// its peers. flannel calls this the subnet manager (spec §0 steps 4, 10, 12,
// 18, 20). Two implementations:
// * StoreLeaseSource: leases as keys in a LeaseStore (etcd, the local SQLite
//   store), with TTLs, renewal and revocation;
// * KubeSubnetManager (src/store/kube): the node's podCIDR is the lease and
//   the Node objects' annotations are the peers' leases.

import { realClock, type Clock } from '../clock.js';
import { subnetKey, type Lease } from '../lease/lease.js';
import type { Logger } from '../log/log.js';
import type { LeaseStore } from '../store/store.js';
import type { NetworkConfig } from './config.js';
import { SubnetManager, type AcquireRequest, type HeldLease } from './manager.js';
import { LeaseWatch, type LeaseUpdate, type LeaseWatchOptions } from './watch.js';

export interface LeaseFeed {
  start(): void;
  stop(): Promise<void>;
}

/** What a source remembers about this node from an earlier run, or from the operator. */
export interface StoredNodeInfo {
  /** overrides --public-ip (kube: the node-public-ip annotation) */
  readonly publicIP: string | null;
  readonly publicIPv6: string | null;
  /** the VTEP MAC a previous run published (kube: from backend-data) */
  readonly vtepMac: string | null;
  /** dual-stack: flannel-v6.<VNI>'s MAC a previous run published (kube: from backend-v6-data) */
  readonly vtepMac6?: string | null;
}

export interface LeaseSource {
  /** for logs: "etcd http://… prefix /coreos.com/network", "kubernetes https://…" */
  readonly description: string;
  /**
   * What losing our own lease means. 'revoked': someone deleted our key, so
   * shut down (etcd; a key that merely expired is re-acquired). 'ignored':
   * Kubernetes mode, where a deleted Node object changes nothing (as flannel).
   */
  readonly ownLoss: 'revoked' | 'ignored';
  /** the network config when it lives in the source (etcd); kube reads it from a file */
  getNetworkConfig(): Promise<NetworkConfig>;
  storedNodeInfo(): Promise<StoredNodeInfo>;
  acquire(cfg: NetworkConfig, req: AcquireRequest): Promise<HeldLease>;
  renew(lease: Lease): Promise<Lease>;
  /** the stored expiry of our lease now: a date, null for no TTL, undefined when the entry is gone */
  storedExpiration(lease: Lease): Promise<Date | null | undefined>;
  /** after subnet.env is written (kube: the NetworkUnavailable condition) */
  complete(lease: Lease): Promise<void>;
  watch(cfg: NetworkConfig, log: Logger, onUpdate: (u: LeaseUpdate) => void, opts?: LeaseWatchOptions): LeaseFeed;
  /** stop any waiting or retrying (the daemon is shutting down) */
  close(): Promise<void>;
}

/** Leases kept in a LeaseStore (etcd or the local store). */
export class StoreLeaseSource implements LeaseSource {
  readonly ownLoss = 'revoked' as const;
  readonly manager: SubnetManager;

  constructor(
    readonly store: LeaseStore,
    log: Logger,
    private readonly clock: Clock = realClock,
  ) {
    this.manager = new SubnetManager(store, { log, clock });
  }

  get description(): string {
    return this.store.description;
  }

  getNetworkConfig(): Promise<NetworkConfig> {
    return this.manager.getNetworkConfig();
  }

  async storedNodeInfo(): Promise<StoredNodeInfo> {
    return { publicIP: null, publicIPv6: null, vtepMac: null };
  }

  acquire(cfg: NetworkConfig, req: AcquireRequest): Promise<HeldLease> {
    return this.manager.acquireLease(cfg, req);
  }

  renew(lease: Lease): Promise<Lease> {
    return this.manager.renewLease(lease);
  }

  async storedExpiration(lease: Lease): Promise<Date | null | undefined> {
    const e = await this.store.getSubnet(subnetKey(lease.subnet, lease.subnet6));
    if (!e) return undefined;
    return e.permanent ? null : new Date(this.clock.now() + (e.ttlSeconds ?? 0) * 1000);
  }

  async complete(): Promise<void> {
    /* renewal is driven by the daemon's timer */
  }

  watch(cfg: NetworkConfig, log: Logger, onUpdate: (u: LeaseUpdate) => void, opts?: LeaseWatchOptions): LeaseFeed {
    return new LeaseWatch(this.store, cfg, log, onUpdate, opts);
  }

  async close(): Promise<void> {
    /* the store is closed by whoever opened it */
  }
}
