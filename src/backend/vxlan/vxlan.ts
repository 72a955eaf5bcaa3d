// VXLAN backend (spec §5): flannel.<VNI> with a permanent neighbour, a
// permanent `self` FDB entry and an onlink route per remote lease, all in the
// kernel; flanneld only programs them.
//
// Design notes
// * Device reuse: an existing compatible flannel.<VNI> is kept, so its MAC (our
//   published VtepMAC) survives restarts; an incompatible one is recreated.
// * Self-healing, which flannel lacks for VXLAN (§5.8): a netlink subscriber
//   reacts to deletions of our device or of any entry we own and re-runs the
//   reconciler within milliseconds; a periodic full reconcile is the safety
//   net (and covers lost notifications, ENOBUFS "overrun").
// * ⚠ §App. A.7: after flannel recreates a deleted device it never re-adds the
//   peers' entries. We recreate it with the same MAC (so peers' FDB/ARP entries
//   stay valid) and then reconcile everything.
// * Stop leaves all kernel state in place, so a restart drops no packets.

import { randomBytes } from 'node:crypto';
import { formatIPv4, ipv4NetContains, parseIPv4, parseIPv4Net, type IPv4Net } from '../../lease/ip.js';
import { leaseId, type Lease } from '../../lease/lease.js';
import type { LeaseEvent } from '../../lease/tracker.js';
import type { KernelNet, Link } from '../../kernel/types.js';
import { AF_INET } from '../../netlink/constants.js';
import { NetlinkError } from '../../netlink/errors.js';
import type { NetlinkEvent } from '../../netlink/subscriber.js';
import { BackendError, type Backend, type BackendContext, type BackendMetrics, type ChangeFeed, type PublishedAttrs } from '../backend.js';
import { removeOtherBackends } from '../cleanup.js';
import { ReconcileLoop } from '../loop.js';
import { desiredEntries } from './desired.js';
import { normaliseMac, parseVxlanOptions, randomVtepMac, type VxlanOptions } from './options.js';
import { patchVxlan, reconcileVxlan, type ReconcileResult } from './reconciler.js';

/** Up to this many lease events are applied as a targeted patch; more take a full reconcile. */
const PATCH_MAX_EVENTS = 64;

export const VXLAN_OVERHEAD = 50;

export interface VxlanBackendOptions {
  kernel: KernelNet;
  feed?: ChangeFeed;
  /** periodic full reconcile; 0 disables (default 10 s) */
  resyncMs?: number;
}

export class VxlanBackend implements Backend {
  readonly type = 'vxlan';
  readonly opts: VxlanOptions;
  readonly devName: string;
  private readonly k: KernelNet;
  private dev: Link | null = null;
  private mac = '';
  private own: Lease | null = null;
  private remote: readonly Lease[] = [];
  private closed = false;
  private readonly loop: ReconcileLoop;
  private readonly warnOnce = new Set<string>();
  /** FDB entries this process wrote (ownership, see reconciler.ts) */
  private readonly writtenFdb = new Set<string>();
  /** what the last reconcile did; tests and metrics read it */
  last: ReconcileResult = { changes: 0, errors: [] };
  reconciles = 0;
  /** targeted patches applied for a few lease events (see reconcile) */
  patches = 0;

  constructor(
    private readonly ctx: BackendContext,
    private readonly o: VxlanBackendOptions,
  ) {
    this.opts = parseVxlanOptions(ctx.config.backend.raw);
    this.devName = `flannel.${this.opts.vni}`;
    this.k = o.kernel;
    if (!ctx.config.network) throw new BackendError('vxlan: IPv4 Network is required');
    this.loop = new ReconcileLoop(async () => ({ errors: await this.runOnce(), changes: this.last.changes }), ctx.log);
  }

  metrics(): BackendMetrics {
    return { heals: this.loop.healsByTrigger };
  }

  get heals(): number {
    return this.loop.heals;
  }

  get mtu(): number {
    return (this.opts.mtu ?? this.ctx.extIface.mtu) - VXLAN_OVERHEAD;
  }

  get vtepMac(): string {
    return this.mac;
  }

  private spec(mac: string) {
    return {
      name: this.devName,
      vni: this.opts.vni,
      port: this.opts.port,
      local: formatIPv4(this.ctx.extIface.publicIP),
      linkIndex: this.ctx.extIface.index,
      learning: this.opts.learning,
      gbp: this.opts.gbp,
      mtu: this.mtu,
      mac,
    };
  }

  /** Create flannel.<VNI>, or reuse a compatible one (keeping its MAC). */
  private async ensureDevice(preferMac: string | null): Promise<Link> {
    const existing = await this.k.getLinkByName(this.devName);
    // An existing device's MAC wins (peers already point at it); then the MAC
    // an earlier run published (kube mode, spec §5.2); then a fresh one.
    let stored = normaliseMac(this.ctx.storedVtepMac);
    if (stored && (parseInt(stored.slice(0, 2), 16) & 1) === 1) stored = null; // a multicast MAC can't be a VTEP's
    const mac = preferMac ?? (existing?.kind === 'vxlan' && existing.mac ? existing.mac : stored ?? randomVtepMac((n) => randomBytes(n)));
    try {
      return await this.k.createVxlan(this.spec(mac));
    } catch (e) {
      if (!(e instanceof NetlinkError) || e.code !== 'EEXIST' || !existing) throw e;
      this.ctx.log.warn(`${this.devName} exists but is incompatible (${e.message}); recreating it`);
      await this.k.deleteLink(existing.index);
      return await this.k.createVxlan(this.spec(mac));
    }
  }

  async prepare(): Promise<PublishedAttrs> {
    this.dev = await this.ensureDevice(null);
    this.mac = this.dev.mac ?? '';
    this.ctx.log.info(`using ${this.devName} (index ${this.dev.index}, VTEP MAC ${this.mac}, MTU ${this.mtu})`);
    return { backendType: 'vxlan', backendData: { VNI: this.opts.vni, VtepMAC: this.mac } };
  }

  /**
   * Address = the subnet's network address /32, and no other IPv4 address
   * but link-local ones. An old /32 left from an earlier subnet (one outside
   * today's Network, after the Network was changed) would otherwise stay and
   * could become the source address of traffic to peers (flannel keeps it too).
   */
  private async configureDevice(own: Lease): Promise<void> {
    const dev = this.dev!;
    const want = `${formatIPv4(own.subnet.ip)}/32`;
    const addrs = await this.k.listAddrs(dev.index);
    if (!addrs.some((a) => a.cidr === want)) await this.k.addAddr(dev.index, want);
    for (const a of addrs) {
      if (a.family === AF_INET && a.cidr !== want && !linkLocal(a.cidr)) {
        this.ctx.log.info(`removing stale address ${a.cidr} from ${this.devName}`);
        await this.k.delAddr(dev.index, a.cidr);
      }
    }
    if (!dev.up) await this.k.setLinkUp(dev.index);
    const now = await this.k.getLinkByIndex(dev.index);
    if (now?.mac && now.mac !== this.mac) throw new BackendError(`${this.devName} has MAC ${now.mac}, expected ${this.mac}`);
    if (now) this.dev = now;
  }

  async activate(own: Lease): Promise<{ mtu: number }> {
    this.own = own;
    // A stale flannel0 (udp) would route the whole Network; host-gw's gateway
    // routes are removed by the reconciler (it owns gateway routes into Network).
    await removeOtherBackends(this.k, 'vxlan', this.ctx.config.network!, this.ctx.extIface.index, this.ctx.log);
    await this.configureDevice(own);
    await this.loop.start(this.o.feed, (e) => this.onKernelEvent(e), this.o.resyncMs ?? 10_000);
    return { mtu: this.mtu };
  }

  async reconcile(remote: readonly Lease[], events: readonly LeaseEvent[] = []): Promise<Error[]> {
    const before = this.remote;
    this.remote = remote;
    // A few peers came or went: write just their entries (3 requests for a
    // new peer) instead of re-reading the kernel for all of them. A changed
    // peer (its lease was already known), the first run, a re-list or a
    // burst take the full path; the periodic check covers everything anyway.
    if (events.length > 0 && events.length <= PATCH_MAX_EVENTS && this.reconciles > 0 && this.dev) {
      const known = new Set(before.map(leaseId));
      if (events.every((e) => e.type === 'removed' || !known.has(leaseId(e.lease)))) {
        return this.loop.enqueueTask(() => this.patchOnce(events));
      }
    }
    return this.loop.enqueue();
  }

  private async patchOnce(events: readonly LeaseEvent[]): Promise<{ errors: Error[]; changes: number }> {
    if (this.closed || !this.dev) return { errors: [], changes: 0 };
    const direct = await this.directNets();
    const added = desiredEntries(events.filter((e) => e.type === 'added').map((e) => e.lease), direct);
    const removed = desiredEntries(events.filter((e) => e.type === 'removed').map((e) => e.lease), direct);
    for (const s of added.skipped) {
      const key = `${s.id}:${s.reason}`;
      if (!this.warnOnce.has(key)) {
        this.warnOnce.add(key);
        this.ctx.log.warn(`ignoring lease ${s.id}: ${s.reason}`);
      }
    }
    const keep = desiredEntries(this.remote, direct).peers.filter((p) => !added.peers.some((a) => a.id === p.id));
    const r = await patchVxlan(this.k, { dev: this.dev.index, extDev: this.ctx.extIface.index, network: this.ctx.config.network!, written: this.writtenFdb }, added.peers, removed.peers, keep);
    this.patches++;
    return { errors: r.errors, changes: r.changes };
  }

  private onKernelEvent(e: NetlinkEvent): void {
    if (this.closed || !this.dev) return;
    // Our own deletions (a targeted patch removing a peer) are not damage to repair.
    const own = this.k.ownPortId?.() ?? 0;
    if (own !== 0 && e.pid === own) return;
    const dev = this.dev.index;
    if (e.kind === 'link' && e.action === 'del' && (e.link.index === dev || e.link.name === this.devName)) {
      this.ctx.log.warn(`${this.devName} was deleted; recreating it`);
      this.loop.kick('device deleted');
      return;
    }
    if (e.action !== 'del') return;
    // Only the loss of an entry a peer needs is damage. Neighbour deletions
    // reach us with pid 0 even when our own patch removed a departed peer, so
    // the port id alone can't tell; what we want can.
    const w = this.wanted();
    if (
      (e.kind === 'neigh' && e.neigh.ifindex === dev && w.gws.has(e.neigh.ip)) ||
      (e.kind === 'fdb' && e.fdb.ifindex === dev && w.fdb.has(`${e.fdb.mac}|${e.fdb.dst ?? ''}`)) ||
      (e.kind === 'route' && (e.route.oif === dev || e.route.oif === this.ctx.extIface.index) && w.dsts.has(e.route.dst))
    ) {
      this.loop.kick(`${e.kind} deleted`);
    }
  }

  private wantedCache: { remote: readonly Lease[]; gws: Set<string>; fdb: Set<string>; dsts: Set<string> } | null = null;

  /** The entries the current peers need, by key (recomputed when the peer set changes). */
  private wanted(): { gws: Set<string>; fdb: Set<string>; dsts: Set<string> } {
    if (this.wantedCache?.remote === this.remote) return this.wantedCache;
    // DirectRouting doesn't change which subnets we route, only how; "direct" is irrelevant here.
    const peers = desiredEntries(this.remote, null).peers;
    this.wantedCache = {
      remote: this.remote,
      gws: new Set(peers.map((p) => p.gw)),
      fdb: new Set(peers.map((p) => `${p.mac}|${p.publicIP}`)),
      dsts: new Set(peers.map((p) => p.dst)),
    };
    return this.wantedCache;
  }

  private async directNets(): Promise<IPv4Net[] | null> {
    if (!this.opts.directRouting) return null;
    const addrs = await this.k.listAddrs(this.ctx.extIface.index);
    return addrs.map((a) => parseIPv4Net(a.cidr));
  }

  private async runOnce(): Promise<Error[]> {
    if (this.closed || !this.own) return [];
    const errors: Error[] = [];
    // The device may be gone (deleted by someone): bring it back with the same MAC.
    const dev = await this.k.getLinkByName(this.devName);
    if (!dev || dev.kind !== 'vxlan' || dev.index !== this.dev?.index || !dev.up) {
      try {
        this.dev = await this.ensureDevice(this.mac);
        await this.configureDevice(this.own);
      } catch (e) {
        const errors = [new Error(`cannot restore ${this.devName}: ${(e as Error).message}`)];
        this.last = { changes: 0, errors };
        return errors;
      }
    }
    const { peers, skipped } = desiredEntries(this.remote, await this.directNets());
    for (const s of skipped) {
      const key = `${s.id}:${s.reason}`;
      if (!this.warnOnce.has(key)) {
        this.warnOnce.add(key);
        this.ctx.log.warn(`ignoring lease ${s.id}: ${s.reason}`);
      }
    }
    this.last = await reconcileVxlan(this.k, { dev: this.dev!.index, extDev: this.ctx.extIface.index, network: this.ctx.config.network!, written: this.writtenFdb }, peers);
    this.reconciles++;
    errors.push(...this.last.errors);
    return errors;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.loop.close(this.o.feed);
  }
}

const LINK_LOCAL = parseIPv4Net('169.254.0.0/16');

function linkLocal(cidr: string): boolean {
  return ipv4NetContains(LINK_LOCAL, parseIPv4(cidr.split('/')[0]!));
}
