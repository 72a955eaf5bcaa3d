// The subnet manager: flannel's lease policy over any LeaseStore
// (spec §3.5, §3.6, §3.7).
//
// Deliberate differences from flannel, each a ⚠ in the spec:
// * A lost creation race is retried (flannel exits 1, §3.6 step 5).
// * A lease whose value does not decode still occupies its subnet (flannel
//   skips it, then fails to create the subnet it thought was free). When it
//   sits on the subnet our subnet.env names, it is ours: we reclaim it.
// * A reservation (a key without TTL) stays permanent when reused (§3.7:
//   flannel's v3 code silently turns it into a 24 h lease; the docs say it
//   stays).

import { formatIPv4, formatIPv4Net, formatIPv6Net, ipv4NetsOverlap, ipv6NetsOverlap, type IPv4Net, type IPv6Net } from '../lease/ip.js';
import {
  decodeLeaseAttrs,
  encodeLeaseAttrs,
  LeaseDataError,
  parseSubnetKey,
  subnetKey,
  validateLease,
  type Lease,
  type LeaseAttrs,
} from '../lease/lease.js';
import type { Logger } from '../log/log.js';
import type { LeaseStore, StoredEntry } from '../store/store.js';
import { compatible, freeSubnets, freeSubnets6, pick, type Random } from './allocator.js';
import { ConfigError, parseNetworkConfig, type NetworkConfig } from './config.js';
import { FlannelError } from '../errors.js';
import { realClock, type Clock } from '../clock.js';

export const LEASE_TTL_SECONDS = 24 * 60 * 60;

export class SubnetError extends FlannelError {
  static override readonly defaultCode: string = 'SUBNET';
  override name = 'SubnetError';
}

export interface PreviousSubnets {
  subnet: IPv4Net | null;
  subnet6: IPv6Net | null;
}

export interface AcquireRequest {
  attrs: LeaseAttrs;
  previous?: PreviousSubnets;
}

/** The lease this node holds, with where it came from. */
export interface HeldLease extends Lease {
  readonly how: 'reused-by-public-ip' | 'reused-previous' | 'allocated' | 'node-pod-cidr';
}

export interface SubnetManagerOptions {
  log: Logger;
  random?: Random;
  /** creation races before giving up; generous, each round re-reads the store */
  maxRaceRetries?: number;
  /** what lease expirations are computed from (default: the real clock) */
  clock?: Clock;
}

/** Decode one stored entry into a Lease; a reason string when it does not parse. */
export function entryToLease(e: StoredEntry): Lease | string {
  const sn = parseSubnetKey(e.name);
  if (!sn) return `key ${JSON.stringify(e.key)} is not a subnet key`;
  try {
    const attrs = decodeLeaseAttrs(e.value);
    const expiration = e.permanent ? null : e.ttlSeconds === null ? new Date(NaN) : new Date(Date.now() + e.ttlSeconds * 1000);
    return { subnet: sn.subnet, subnet6: sn.subnet6, attrs, expiration };
  } catch (err) {
    if (err instanceof LeaseDataError) return `key ${JSON.stringify(e.key)}: ${err.message}`;
    throw err;
  }
}

/** A stored entry that does not decode; `subnets` is what its key names (null: not a subnet key). */
interface Garbled {
  readonly entry: StoredEntry;
  readonly subnets: { subnet: IPv4Net; subnet6: IPv6Net | null } | null;
  readonly why: string;
}

export class SubnetManager {
  private readonly log: Logger;
  private readonly random: Random;
  private readonly clock: Clock;
  private readonly maxRaceRetries: number;

  constructor(
    readonly store: LeaseStore,
    o: SubnetManagerOptions,
  ) {
    this.log = o.log;
    this.random = o.random ?? Math.random;
    this.clock = o.clock ?? realClock;
    this.maxRaceRetries = o.maxRaceRetries ?? 100;
  }

  /** Read and validate the network config from the store. */
  async getNetworkConfig(): Promise<NetworkConfig> {
    const text = await this.store.getNetworkConfig();
    if (text === null) {
      throw new ConfigError(`no network config in ${this.store.description} (did you create it with the etcd v3 API?)`, { code: 'CONFIG_MISSING', retryable: true });
    }
    return parseNetworkConfig(text);
  }

  /**
   * Parse every stored entry. An entry whose value (or key) does not decode
   * is returned in `garbled`, with the subnet its key names, if any: that
   * subnet stays occupied. A key that names no subnet occupies nothing.
   */
  private parseEntries(entries: readonly StoredEntry[]): { leases: Array<{ entry: StoredEntry; lease: Lease }>; garbled: Garbled[] } {
    const leases: Array<{ entry: StoredEntry; lease: Lease }> = [];
    const garbled: Garbled[] = [];
    for (const entry of entries) {
      const l = entryToLease(entry);
      if (typeof l !== 'string') leases.push({ entry, lease: l });
      else garbled.push({ entry, subnets: parseSubnetKey(entry.name), why: l });
    }
    return { leases, garbled };
  }

  /** Warn about each undecodable entry once per acquisition (`warned`), not once per retry. */
  private warnGarbled(garbled: readonly Garbled[], warned: Set<string>): void {
    for (const g of garbled) {
      const tag = `${g.entry.key}\u0000${g.entry.value}`;
      if (warned.has(tag)) continue;
      warned.add(tag);
      this.log.warn(`skipping lease: ${g.why}${g.subnets ? '; its subnet stays taken' : ''}`);
    }
  }

  async acquireLease(cfg: NetworkConfig, req: AcquireRequest): Promise<HeldLease> {
    const warned = new Set<string>();
    for (let attempt = 0; attempt <= this.maxRaceRetries; attempt++) {
      const got = await this.tryAcquire(cfg, req, warned);
      if (got) return got;
      // Lost a creation race: someone took the subnet between our read and
      // our create. Back off a little (jittered) and try again on fresh data.
      this.log.debug('subnet creation race lost, retrying', { attempt });
      await sleep(5 + this.random() * 20 * Math.min(attempt + 1, 10));
    }
    throw new SubnetError(`gave up acquiring a subnet after ${this.maxRaceRetries} lost creation races`);
  }

  private async tryAcquire(cfg: NetworkConfig, req: AcquireRequest, warned: Set<string>): Promise<HeldLease | null> {
    const { entries } = await this.store.listSubnets({ withTTL: true });
    const { leases, garbled } = this.parseEntries(entries);
    const value = encodeLeaseAttrs(req.attrs);

    // 1. Reuse the lease that already carries our public IP.
    const mine = leases.find((l) => l.lease.attrs.publicIP === req.attrs.publicIP && req.attrs.publicIP !== 0);
    if (mine) {
      const { lease, entry } = mine;
      if (compatible(cfg, lease.subnet, lease.subnet6)) {
        const ttl = entry.permanent ? null : LEASE_TTL_SECONDS;
        await this.store.putSubnet(entry.name, value, ttl);
        this.log.info(`found lease ${entry.name} for public IP ${formatIPv4(req.attrs.publicIP)}, reusing it${ttl === null ? ' (reservation, kept permanent)' : ''}`);
        return { ...lease, attrs: req.attrs, expiration: ttl === null ? null : this.expiresIn(ttl), how: 'reused-by-public-ip' };
      }
      this.log.warn(`lease ${entry.name} for public IP ${formatIPv4(req.attrs.publicIP)} does not fit the current config; deleting it`);
      await this.store.deleteSubnet(entry.name);
      leases.splice(leases.indexOf(mine), 1);
    }

    const occupied = garbled.flatMap((g) => (g.subnets ? [g.subnets] : []));
    const taken4 = [...leases.map((l) => l.lease.subnet), ...occupied.map((o) => o.subnet)];
    const taken6 = [...leases.map((l) => l.lease.subnet6), ...occupied.map((o) => o.subnet6)].filter((n): n is IPv6Net => n !== null);

    // 2. Reuse the subnet we had last time (from subnet.env), if it is free and fits.
    const prev = req.previous;
    const prev4 = prev?.subnet ?? null;
    const prev6 = prev4 && cfg.enableIPv6 ? (prev?.subnet6 ?? null) : null;
    // Our own key holding garbage (someone wrote over it): subnet.env says the
    // subnet is ours, so take it back. Delete, then create-if-absent: a real
    // lease that appears there in between is never overwritten.
    const ours = prev4 && compatible(cfg, prev4, prev6) ? garbled.find((g) => g.entry.name === subnetKey(prev4, prev6)) : undefined;
    this.warnGarbled(
      garbled.filter((g) => g !== ours),
      warned,
    );
    if (prev4 && ours) {
      await this.store.deleteSubnet(ours.entry.name);
      if (!(await this.store.createSubnet(ours.entry.name, value, LEASE_TTL_SECONDS))) return null;
      this.log.warn(`lease ${ours.entry.key} held data that does not decode (${ours.why.replace(/^key "[^"]*": /, '')}); it is our previous subnet (from subnet.env), so it was reclaimed`);
      return { subnet: prev4, subnet6: prev6, attrs: req.attrs, expiration: this.expiresIn(LEASE_TTL_SECONDS), how: 'reused-previous' };
    }
    if (prev4) {
      const free4 = !taken4.some((t) => ipv4NetsOverlap(t, prev4));
      const free6 = prev6 === null || !taken6.some((t) => ipv6NetsOverlap(t, prev6));
      if (!compatible(cfg, prev4, prev6)) {
        this.log.info(`previous subnet ${formatIPv4Net(prev4)} does not fit the current config; ignoring it`);
      } else if (free4 && free6) {
        const name = subnetKey(prev4, prev6);
        if (await this.store.createSubnet(name, value, LEASE_TTL_SECONDS)) {
          this.log.info(`reusing previous subnet ${name}`);
          return { subnet: prev4, subnet6: prev6, attrs: req.attrs, expiration: this.expiresIn(LEASE_TTL_SECONDS), how: 'reused-previous' };
        }
        return null;
      }
    }

    // 3. Allocate a free one at random.
    const subnet = cfg.enableIPv4 ? pick(freeSubnets(cfg, taken4), this.random) : null;
    if (cfg.enableIPv4 && !subnet) {
      // Names the Network (found by the subnet-race fault test, test/faults):
      // with several flannel networks in one etcd the bare range was ambiguous.
      throw new SubnetError(
        `out of subnets in Network ${cfg.network ? formatIPv4Net(cfg.network) : '?'}: no free /${cfg.subnetLen} between SubnetMin ${formatIPv4(cfg.subnetMin)} and SubnetMax ${formatIPv4(cfg.subnetMax)} (${taken4.length} leases)`,
      );
    }
    let subnet6: IPv6Net | null = null;
    if (cfg.enableIPv6) {
      subnet6 = pick(freeSubnets6(cfg, taken6), this.random);
      if (!subnet6) throw new SubnetError(`out of IPv6 subnets in ${formatIPv6Net(cfg.ipv6Network!)}`);
    }
    if (!subnet) throw new SubnetError('IPv6-only networks are not supported with this subnet manager (as in flannel\'s etcd mode)');
    const name = subnetKey(subnet, subnet6);
    if (await this.store.createSubnet(name, value, LEASE_TTL_SECONDS)) {
      this.log.info(`allocated subnet ${name}`);
      return { subnet, subnet6, attrs: req.attrs, expiration: this.expiresIn(LEASE_TTL_SECONDS), how: 'allocated' };
    }
    return null;
  }

  /** Re-write our lease with a fresh 24 h TTL (a reservation stays permanent). */
  async renewLease(lease: Lease): Promise<Lease> {
    const name = subnetKey(lease.subnet, lease.subnet6);
    const ttl = lease.expiration === null ? null : LEASE_TTL_SECONDS;
    await this.store.putSubnet(name, encodeLeaseAttrs(lease.attrs), ttl);
    return { ...lease, expiration: ttl === null ? null : this.expiresIn(ttl) };
  }

  private expiresIn(seconds: number): Date {
    return new Date(this.clock.now() + seconds * 1000);
  }

  /** Validate a lease read from the store against the config; one-line reason or null. */
  static check(l: Lease, cfg: NetworkConfig): string | null {
    return validateLease(l, cfg);
  }
}


export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
