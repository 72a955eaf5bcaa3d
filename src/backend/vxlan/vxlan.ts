// VXLAN backend (spec §5): flannel.<VNI> with a permanent neighbour, a
// permanent `self` FDB entry and an onlink route per remote lease, all in the
// kernel; flanneld only programs them.
//
// Design notes
// * Device reuse: an existing compatible flannel.<VNI> is kept, so its MAC (our
//   published VtepMAC) survives restarts; an incompatible one is recreated.
// * Self-healing, which flannel lacks for VXLAN (§5.8): the daemon's netlink
//   subscriber hands us kernel notifications; damage() picks out deletions of
//   our device or of any entry a peer needs, and the daemon re-runs the
//   reconciler within milliseconds. Its periodic full reconcile is the safety
//   net (and covers lost notifications, ENOBUFS "overrun").
// * ⚠ §App. A.7: after flannel recreates a deleted device it never re-adds the
//   peers' entries. We recreate it with the same MAC (so peers' FDB/ARP entries
//   stay valid) and then reconcile everything.
// * Stop leaves all kernel state in place, so a restart drops no packets.
// * Dual-stack (EnableIPv6): a second device, flannel-v6.<VNI> (same VNI and
//   port, local = our PublicIPv6, its own MAC published as BackendV6Data),
//   addressed with the v6 subnet's network address /128, gets the same three
//   entries per dual-stack peer: permanent neighbour, `self` FDB entry to the
//   peer's PublicIPv6, onlink route. Both families share the reconcile run,
//   the self-healing and the targeted patches.
// * MTU with IPv6: the IPv6 outer header is 20 bytes longer, so flannel-v6
//   gets underlay − 70 while flannel.<VNI> keeps underlay − 50. Pods have one
//   MTU for both families, so subnet.env says underlay − 70 (1430 on a 1500
//   underlay). Real flannel writes 1450 there while its flannel-v6 device is
//   1430, so its pods' large IPv6 packets first get "Packet Too Big" and then
//   go fragmented (observed-flannel.md); ours fit. IPv4-only: − 50, as flannel.

import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { formatIPv4, formatIPv4Net, formatIPv6, ipv4NetContains, parseIPv4, parseIPv4Net, parseIPv6Net, type IPv4Net, type IPv6Net } from '../../lease/ip.js';
import { leaseId, type Lease } from '../../lease/lease.js';
import type { LeaseEvent } from '../../lease/tracker.js';
import type { KernelNet, Link } from '../../kernel/types.js';
import { AF_INET, AF_INET6 } from '../../netlink/constants.js';
import { NetlinkError } from '../../netlink/errors.js';
import type { NetlinkEvent } from '../../netlink/subscriber.js';
import { BackendError, ReconcileError, type Backend, type BackendContext, type PublishedAttrs } from '../backend.js';
import { removeOtherBackends } from '../cleanup.js';
import { desiredEntries, desiredEntries6, WantedEntries } from './desired.js';
import { normaliseMac, parseVxlanOptions, randomVtepMac, type VxlanOptions } from './options.js';
import { patchVxlan, reconcileVxlan, type PeerChange, type ReconcileResult, type RouteDumps } from './reconciler.js';
import { publishedEdgeNetworks, reconcileEdgeRoutes, selectEdgeRoutes, validateEdge, type EdgeOptions } from './edge.js';
import type { PeerEntries } from './desired.js';

export const VXLAN_OVERHEAD = 50;
/** IPv6 outer header (40 bytes) instead of IPv4's (20): flannel-v6.<VNI>'s overhead. */
export const VXLAN6_OVERHEAD = 70;

type Family = 4 | 6;

/** Peers per group in a patch: the lease events of the next group are applied while the kernel works on this one. */
const PATCH_GROUP = 256;

export interface VxlanBackendOptions {
  kernel: KernelNet;
  /** --edge-network/--edge-iface (edge.ts): this node is a gateway to these L2 segments */
  edge?: EdgeOptions | null;
}

export class VxlanBackend implements Backend {
  readonly type = 'vxlan';
  readonly opts: VxlanOptions;
  readonly devName: string;
  /** flannel-v6.<VNI> with EnableIPv6, else null */
  readonly devName6: string | null;
  private readonly k: KernelNet;
  private dev: Link | null = null;
  private mac = '';
  private dev6: Link | null = null;
  private mac6 = '';
  private own: Lease | null = null;
  private remote: readonly Lease[] = [];
  /** the remote leases by id, kept per lease event (a full run rebuilds it) */
  private readonly leases = new Map<string, Lease>();
  /** what each peer wants on flannel.<VNI> / flannel-v6.<VNI>, with counts by key (damage and patches look up here) */
  private readonly want4 = new WantedEntries();
  private readonly want6 = new WantedEntries();
  /** remote leases that publish EdgeNetworks, by id */
  private readonly edgePublishers = new Map<string, Lease>();
  private closed = false;
  private readonly warnOnce = new Set<string>();
  /** FDB entries this process wrote (ownership, see reconciler.ts) */
  private readonly writtenFdb = new Set<string>();
  /** what the last reconcile did; tests and metrics read it */
  last: ReconcileResult = { changes: 0, errors: [] };
  reconciles = 0;
  /** the last patch did not finish: what peers want may be ahead of the kernel */
  private unsure = false;
  /** targeted patches applied for a few lease events (see reconcile) */
  patches = 0;
  /** kernel changes the last reconcile (full or patch) made */
  lastChanges = 0;
  /** edge segments routed through a peer, dst -> the chosen peer's lease id (edge.ts) */
  edgeVia = new Map<string, string>();
  /** the edge routes the last edge reconcile put in place without errors (null: unknown) */
  private edgeKey: string | null = null;
  /** what prepare() published (the base for a republish) */
  private published: PublishedAttrs | null = null;
  /** our segments currently published (their interface up, with carrier and an address in the segment) */
  edgeLive: string[] = [];
  /** our segments' interfaces by index, and whether each was usable when last looked at */
  private readonly edgeIfaces = new Map<number, { name: string; usable: boolean }>();

  constructor(
    private readonly ctx: BackendContext,
    private readonly o: VxlanBackendOptions,
  ) {
    this.opts = parseVxlanOptions(ctx.config.backend.raw);
    this.devName = `flannel.${this.opts.vni}`;
    this.devName6 = ctx.config.enableIPv6 ? `flannel-v6.${this.opts.vni}` : null;
    this.k = o.kernel;
    if (!ctx.config.network) throw new BackendError('vxlan: IPv4 Network is required');
    if (this.devName6 && ctx.extIface.publicIPv6 === undefined) throw new BackendError(`vxlan: EnableIPv6 needs a public IPv6 address (none on ${ctx.extIface.name}; give --public-ipv6)`);
    if (o.edge) validateEdge(o.edge, ctx.config.network, ctx.extIface.publicIP);
  }

  /** FLANNEL_MTU: what fits both families' tunnels (see the MTU note at the top). */
  get mtu(): number {
    return this.devMtu(this.devName6 ? 6 : 4);
  }

  private devMtu(family: Family): number {
    return (this.opts.mtu ?? this.ctx.extIface.mtu) - (family === 6 ? VXLAN6_OVERHEAD : VXLAN_OVERHEAD);
  }

  get vtepMac6(): string {
    return this.mac6;
  }

  get vtepMac(): string {
    return this.mac;
  }

  private spec(mac: string, family: Family = 4) {
    return {
      name: family === 6 ? this.devName6! : this.devName,
      vni: this.opts.vni,
      port: this.opts.port,
      local: family === 6 ? formatIPv6(this.ctx.extIface.publicIPv6!) : formatIPv4(this.ctx.extIface.publicIP),
      linkIndex: this.ctx.extIface.index,
      learning: this.opts.learning,
      gbp: this.opts.gbp,
      mtu: this.devMtu(family),
      mac,
    };
  }

  /** Create flannel.<VNI> (or flannel-v6.<VNI>), or reuse a compatible one (keeping its MAC). */
  private async ensureDevice(preferMac: string | null, family: Family = 4): Promise<Link> {
    const name = family === 6 ? this.devName6! : this.devName;
    const existing = await this.k.getLinkByName(name);
    // An existing device's MAC wins (peers already point at it); then the MAC
    // an earlier run published (kube mode, spec §5.2: backend-data, or
    // backend-v6-data for flannel-v6.<VNI>); then a fresh one.
    let stored = normaliseMac(family === 4 ? this.ctx.storedVtepMac : this.ctx.storedVtepMac6);
    if (stored && (parseInt(stored.slice(0, 2), 16) & 1) === 1) stored = null; // a multicast MAC can't be a VTEP's
    const mac = preferMac ?? (existing?.kind === 'vxlan' && existing.mac ? existing.mac : stored ?? randomVtepMac((n) => randomBytes(n)));
    try {
      return await this.k.createVxlan(this.spec(mac, family));
    } catch (e) {
      if (!(e instanceof NetlinkError) || e.code !== 'EEXIST' || !existing) throw e;
      this.ctx.log.warn(`${name} exists but is incompatible (${e.message}); recreating it`);
      await this.k.deleteLink(existing.index);
      return await this.k.createVxlan(this.spec(mac, family));
    }
  }

  async prepare(): Promise<PublishedAttrs> {
    this.dev = await this.ensureDevice(null);
    this.mac = this.dev.mac ?? '';
    this.ctx.log.info(`using ${this.devName} (index ${this.dev.index}, VTEP MAC ${this.mac}, MTU ${this.devMtu(4)})`);
    const attrs = { backendType: 'vxlan', backendData: { VNI: this.opts.vni, VtepMAC: this.mac }, ...(await this.edgeAttrs()) };
    this.published = attrs;
    if (!this.devName6) return attrs;
    this.dev6 = await this.ensureDevice(null, 6);
    this.mac6 = this.dev6.mac ?? '';
    this.ctx.log.info(`using ${this.devName6} (index ${this.dev6.index}, VTEP MAC ${this.mac6}, MTU ${this.devMtu(6)}); subnet.env MTU ${this.mtu} so that both families fit`);
    this.published = { ...attrs, backendV6Data: { VNI: this.opts.vni, VtepMAC: this.mac6 } };
    return this.published;
  }

  /**
   * --edge-network: each segment's interface must exist and hold an address
   * in the segment (the article's "address on the bridge"), so that the
   * kernel's connected route takes the segment's traffic out of it. Then the
   * segments go into our lease as EdgeNetworks.
   */
  private async edgeAttrs(): Promise<{ edgeNetworks?: string[] }> {
    const e = this.o.edge;
    if (!e) return {};
    for (const s of e.segments) {
      const c = formatIPv4Net(s.net);
      const link = await this.k.getLinkByName(s.iface);
      if (!link) throw new BackendError(`--edge-iface: no interface "${s.iface}" (for --edge-network ${c})`);
      const addrs = await this.k.listAddrs(link.index);
      if (!addrs.some((a) => a.family === AF_INET && ipv4NetContains(s.net, parseIPv4(a.cidr.split('/')[0]!)))) {
        throw new BackendError(`--edge-iface: ${s.iface} has no IPv4 address in --edge-network ${c}; give it one (e.g. the segment's gateway address)`);
      }
      this.ctx.log.info(`edge gateway: ${c} via ${s.iface} (published in our lease as EdgeNetworks)${e.masq ? '; pod traffic to it is masqueraded' : '; hosts there need a route to the pod Network via this node'}`);
    }
    this.edgeLive = await this.liveEdgeNetworks();
    for (const s of e.segments) {
      const c = formatIPv4Net(s.net);
      if (!this.edgeLive.includes(c)) this.ctx.log.warn(`edge network ${c}: ${s.iface} is down or has no carrier; not published until it is up`);
    }
    return { edgeNetworks: this.edgeLive };
  }

  /**
   * Our segments whose interface is up, has carrier and holds an address in
   * the segment: only those are published, so that a broken link to the LAN
   * moves peers to another edge node (they follow our lease).
   */
  private async liveEdgeNetworks(): Promise<string[]> {
    const live: string[] = [];
    for (const s of this.o.edge?.segments ?? []) {
      const link = await this.k.getLinkByName(s.iface);
      let usable = !!link && link.up && link.lowerUp;
      if (usable) {
        const addrs = await this.k.listAddrs(link!.index);
        usable = addrs.some((a) => a.family === AF_INET && ipv4NetContains(s.net, parseIPv4(a.cidr.split('/')[0]!)));
      }
      if (link) this.edgeIfaces.set(link.index, { name: s.iface, usable: link.up && link.lowerUp });
      if (usable) live.push(formatIPv4Net(s.net));
    }
    return live;
  }

  /** On a full run: a segment whose interface failed or came back is withdrawn from / put back into our lease. */
  private async checkEdgeLive(): Promise<void> {
    if (!this.o.edge || !this.published) return;
    const live = await this.liveEdgeNetworks();
    if (live.join(',') === this.edgeLive.join(',')) return;
    for (const c of this.edgeLive) if (!live.includes(c)) this.ctx.log.warn(`edge network ${c}: its interface is down, has no carrier or lost its address; withdrawing it from our lease`);
    for (const c of live) if (!this.edgeLive.includes(c)) this.ctx.log.info(`edge network ${c}: its interface is usable again; publishing it in our lease`);
    this.edgeLive = live;
    this.published = { ...this.published, edgeNetworks: live };
    this.ctx.republish?.(this.published);
  }

  /**
   * Edge segments published by peers: one route each, through the chosen
   * edge node (edge.ts). `remote` holds at least every lease that publishes
   * a segment; the public IPs a segment must not capture are every peer's.
   */
  private async reconcileEdge(remote: readonly Lease[], peers: readonly PeerEntries[], patch = false, dumps?: RouteDumps): Promise<ReconcileResult> {
    const publicIPs = [this.ctx.extIface.publicIP, this.ctx.extIface.ifaceAddr];
    if (remote.length < this.leases.size) for (const l of this.leases.values()) publicIPs.push(l.attrs.publicIP);
    const { routes, skipped } = selectEdgeRoutes(remote, peers, {
      network: this.ctx.config.network!,
      own: this.o.edge?.segments.map((s) => s.net) ?? [],
      publicIPs,
    });
    this.warnSkipped(skipped);
    // A patch for a peer that changes no segment's choice reads nothing (the
    // periodic full run checks the routes anyway).
    const key = routes.map((x) => `${x.dst}>${x.via.gw}>${x.via.direct ? x.via.publicIP : ''}`).join(',');
    if (patch && key === this.edgeKey) return { changes: 0, errors: [] };
    const r = await reconcileEdgeRoutes(this.k, { dev: this.dev!.index, extDev: this.ctx.extIface.index, network: this.ctx.config.network! }, routes, dumps);
    const via = new Map(routes.map((x) => [x.dst, x.via.id]));
    for (const [dst, id] of via) {
      const was = this.edgeVia.get(dst);
      if (was !== id) this.ctx.log.info(`edge network ${dst}: via ${id}${was ? ` (was ${was})` : ''}`);
    }
    for (const [dst, was] of this.edgeVia) if (!via.has(dst)) this.ctx.log.info(`edge network ${dst}: no edge node left (was ${was}); route removed`);
    this.edgeVia = via;
    this.edgeKey = r.errors.length === 0 ? key : null;
    return r;
  }

  /**
   * Can the lease events that touched these leases (before and after) change
   * the edge routes? Only when a lease publishes segments, or some lease's
   * public IP lies in a published segment (which then can't be used).
   */
  private edgeAffected(touched: Iterable<Lease | undefined>): boolean {
    if (this.edgePublishers.size === 0) {
      for (const l of touched) if (l?.attrs.edgeNetworks !== undefined) return true;
      return this.edgeVia.size > 0;
    }
    const nets = [...this.edgePublishers.values()].flatMap((l) => publishedEdgeNetworks(l).nets);
    for (const l of touched) {
      if (!l) continue;
      if (l.attrs.edgeNetworks !== undefined) return true;
      if (nets.some((n) => ipv4NetContains(n, l.attrs.publicIP))) return true;
    }
    return false;
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

  /**
   * flannel-v6.<VNI>: the v6 subnet's network address /128 and no other
   * IPv6 address but link-local ones (the kernel's fe80::/64 stays); router
   * advertisements off (flannel sets accept_ra=0, errors ignored).
   */
  private async configureDevice6(own: Lease): Promise<void> {
    const dev = this.dev6!;
    if (!own.subnet6) throw new BackendError(`${this.devName6}: EnableIPv6 is set but our lease ${leaseId(own)} has no IPv6 subnet`);
    const want = `${formatIPv6(own.subnet6.ip)}/128`;
    const addrs = await this.k.listAddrs(dev.index, { family: 6 });
    if (!addrs.some((a) => a.family === AF_INET6 && a.cidr === want)) await this.k.addAddr(dev.index, want);
    for (const a of addrs) {
      if (a.family === AF_INET6 && a.cidr !== want && !linkLocal6(a.cidr)) {
        this.ctx.log.info(`removing stale address ${a.cidr} from ${this.devName6}`);
        await this.k.delAddr(dev.index, a.cidr);
      }
    }
    try {
      writeFileSync(`/proc/sys/net/ipv6/conf/${this.devName6}/accept_ra`, '0');
    } catch {
      /* as flannel: ignored */
    }
    if (!dev.up) await this.k.setLinkUp(dev.index);
    const now = await this.k.getLinkByIndex(dev.index);
    if (now?.mac && now.mac !== this.mac6) throw new BackendError(`${this.devName6} has MAC ${now.mac}, expected ${this.mac6}`);
    if (now) this.dev6 = now;
  }

  async activate(own: Lease): Promise<{ mtu: number }> {
    this.own = own;
    // A stale flannel0 (udp) would route the whole Network; host-gw's gateway
    // routes are removed by the reconciler (it owns gateway routes into Network).
    await removeOtherBackends(this.k, 'vxlan', this.ctx.config.network!, this.ctx.extIface.index, this.ctx.log);
    await this.configureDevice(own);
    if (this.dev6) await this.configureDevice6(own);
    return { mtu: this.mtu };
  }

  async reconcile(remote: readonly Lease[], events: readonly LeaseEvent[] = []): Promise<Error[]> {
    this.remote = remote;
    // Peers came, went or changed: write just their entries (3 requests for a
    // new peer, one batch for a burst) instead of re-reading the kernel for
    // all of them. The first run and a run with no events (a re-list, a kick,
    // the periodic check) take the full path.
    if (events.length > 0 && this.reconciles > 0 && this.dev && !this.closed && !this.unsure) {
      // A patch that throws (the netlink transport failed) has applied its
      // events to what peers want but maybe not to the kernel: the next run
      // is a full one.
      this.unsure = true;
      const r = await this.patchOnce(events);
      if (r) {
        this.unsure = false;
        this.lastChanges = r.changes;
        return r.errors;
      }
    }
    const errors = await this.runOnce();
    this.lastChanges = this.last.changes;
    return errors;
  }

  /**
   * The targeted path: the events are applied to what each peer wants, and
   * only the peers they touched reach the kernel. They are applied a group
   * at a time as the kernel asks for more (patchVxlan's pipeline), so a
   * burst of thousands starts reaching the kernel at once. Null when the
   * events do not add up to `this.remote` (then a full run sorts it out).
   */
  private async patchOnce(events: readonly LeaseEvent[]): Promise<{ errors: Error[]; changes: number } | null> {
    const direct = await this.directNets();
    const direct6 = this.dev6 ? await this.directNets6() : null;
    // what each touched lease ends up as (its last event), in order of first appearance
    const last = new Map<string, LeaseEvent>();
    for (const e of events) last.set(leaseId(e.lease), e);
    /** the touched leases, before and after */
    const seen: Array<Lease | undefined> = [];
    const changes6: PeerChange[] = [];
    const self = this;
    function* groups(): Generator<PeerChange[]> {
      let group: PeerChange[] = [];
      for (const [id, e] of last) {
        const was = { lease: self.leases.get(id), p4: self.want4.get(id), p6: self.want6.get(id) };
        if (e.type === 'removed') self.forget(id);
        else self.learn(id, e.lease, direct, direct6);
        seen.push(was.lease, self.leases.get(id));
        const p4 = self.want4.get(id);
        if (!samePeer(was.p4, p4)) group.push({ before: was.p4, after: p4 });
        const p6 = self.want6.get(id);
        if (!samePeer(was.p6, p6)) changes6.push({ before: was.p6, after: p6 });
        if (group.length >= PATCH_GROUP) {
          yield group;
          group = [];
        }
      }
      if (group.length > 0) yield group;
    }
    const errors: Error[] = [];
    let changes = 0;
    const r = await patchVxlan(this.k, { dev: this.dev!.index, extDev: this.ctx.extIface.index, network: this.ctx.config.network!, written: this.writtenFdb }, groups(), this.want4);
    errors.push(...r.errors);
    changes += r.changes;
    if (this.leases.size !== this.remote.length) return null;
    // a departed edge node's segments switch to the standby in this same run
    if (this.edgeAffected(seen)) {
      const publishers = [...this.edgePublishers.values()];
      const re = await this.reconcileEdge(publishers, publishers.flatMap((l) => this.want4.get(leaseId(l)) ?? []), true);
      errors.push(...re.errors);
      changes += re.changes;
    }
    if (this.dev6 && changes6.length > 0) {
      const r6 = await patchVxlan(this.k, this.target6(), [changes6], this.want6);
      errors.push(...r6.errors);
      changes += r6.changes;
    }
    this.patches++;
    return { errors, changes };
  }

  /** A lease came or changed: what it wants now. */
  private learn(id: string, l: Lease, direct: IPv4Net[] | null, direct6: IPv6Net[] | null): void {
    this.leases.set(id, l);
    if (l.attrs.edgeNetworks !== undefined) this.edgePublishers.set(id, l);
    else this.edgePublishers.delete(id);
    const d4 = desiredEntries([l], direct);
    this.warnSkipped(d4.skipped);
    this.want4.set(id, d4.peers[0]);
    if (this.dev6) {
      const d6 = desiredEntries6([l], direct6);
      this.warnSkipped(d6.skipped);
      this.want6.set(id, d6.peers[0]);
    }
  }

  private forget(id: string): void {
    this.leases.delete(id);
    this.edgePublishers.delete(id);
    this.want4.delete(id);
    this.want6.delete(id);
  }

  damage(e: NetlinkEvent): string | null {
    if (this.closed || !this.dev) return null;
    // Our own deletions (a targeted patch removing a peer) are not damage to repair.
    const own = this.k.ownPortId?.() ?? 0;
    if (own !== 0 && e.pid === own) return null;
    const dev = this.dev.index;
    const dev6 = this.dev6?.index ?? -1;
    if (e.kind === 'link' && e.action === 'del' && (e.link.index === dev || e.link.name === this.devName || e.link.index === dev6 || e.link.name === this.devName6)) {
      this.ctx.log.warn(`${e.link.name || this.devName} was deleted; recreating it`);
      return 'device deleted';
    }
    // one of our edge segments' interfaces changed state: a full run re-checks what we publish
    if (e.kind === 'link' && this.edgeIfaces.has(e.link.index)) {
      const was = this.edgeIfaces.get(e.link.index)!;
      const usable = e.action !== 'del' && e.link.up && e.link.lowerUp;
      if (usable !== was.usable) {
        this.edgeIfaces.set(e.link.index, { ...was, usable });
        return `edge interface ${was.name} ${usable ? 'up' : 'down'}`;
      }
      return null;
    }
    if (e.action !== 'del') return null;
    // Only the loss of an entry a peer needs is damage. Neighbour deletions
    // reach us with pid 0 even when our own patch removed a departed peer, so
    // the port id alone can't tell; what we want can (one lookup each: the
    // wanted entries are kept per lease event).
    const w4 = this.want4;
    const w6 = this.want6;
    if (
      (e.kind === 'neigh' && (e.neigh.ifindex === dev || e.neigh.ifindex === dev6) && (w4.hasGw(e.neigh.ip) || w6.hasGw(e.neigh.ip))) ||
      (e.kind === 'fdb' && (e.fdb.ifindex === dev || e.fdb.ifindex === dev6) && (w4.hasFdb(e.fdb.mac, e.fdb.dst ?? '') || w6.hasFdb(e.fdb.mac, e.fdb.dst ?? ''))) ||
      (e.kind === 'route' && (e.route.oif === dev || e.route.oif === dev6 || e.route.oif === this.ctx.extIface.index) && (w4.hasDst(e.route.dst) || w6.hasDst(e.route.dst) || this.edgeVia.has(e.route.dst)))
    ) {
      return `${e.kind} deleted`;
    }
    return null;
  }

  private async directNets(): Promise<IPv4Net[] | null> {
    if (!this.opts.directRouting) return null;
    const addrs = await this.k.listAddrs(this.ctx.extIface.index);
    return addrs.map((a) => parseIPv4Net(a.cidr));
  }

  /** DirectRouting for IPv6: peers whose PublicIPv6 is on one of our external interface's (global) IPv6 subnets. */
  private async directNets6(): Promise<IPv6Net[] | null> {
    if (!this.opts.directRouting) return null;
    const addrs = await this.k.listAddrs(this.ctx.extIface.index, { family: 6 });
    return addrs.filter((a) => !linkLocal6(a.cidr)).map((a) => parseIPv6Net(a.cidr));
  }

  private target6() {
    return { dev: this.dev6!.index, extDev: this.ctx.extIface.index, network: this.ctx.config.network!, network6: this.ctx.config.ipv6Network!, written: this.writtenFdb };
  }

  private warnSkipped(skipped: ReadonlyArray<{ id: string; reason: string }>): void {
    for (const s of skipped) {
      const key = `${s.id}:${s.reason}`;
      if (!this.warnOnce.has(key)) {
        this.warnOnce.add(key);
        this.ctx.log.warn(`ignoring lease ${s.id}: ${s.reason}`);
      }
    }
  }

  /** The IPv6 half of a full run: flannel-v6.<VNI> back if it went, then its entries. */
  private async runOnce6(): Promise<ReconcileResult> {
    const dev = await this.k.getLinkByName(this.devName6!);
    if (!dev || dev.kind !== 'vxlan' || dev.index !== this.dev6?.index || !dev.up) {
      try {
        this.dev6 = await this.ensureDevice(this.mac6, 6);
        await this.configureDevice6(this.own!);
      } catch (e) {
        return { changes: 0, errors: [new Error(`cannot restore ${this.devName6}: ${(e as Error).message}`)] };
      }
    }
    const { peers, skipped } = desiredEntries6(this.remote, await this.directNets6());
    this.warnSkipped(skipped);
    this.want6.reset(peers);
    return reconcileVxlan(this.k, this.target6(), peers);
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
        const errors = [new ReconcileError(`cannot restore ${this.devName}: ${(e as Error).message}`, { cause: e })];
        this.last = { changes: 0, errors };
        return errors;
      }
    }
    // Everything afresh: what each peer wants (DirectRouting may have changed
    // with our addresses), the leases by id, the edge publishers.
    const { peers, skipped } = desiredEntries(this.remote, await this.directNets());
    this.warnSkipped(skipped);
    this.leases.clear();
    this.edgePublishers.clear();
    for (const l of this.remote) {
      const id = leaseId(l);
      this.leases.set(id, l);
      if (l.attrs.edgeNetworks !== undefined) this.edgePublishers.set(id, l);
    }
    this.want4.reset(peers);
    if (!this.devName6) this.want6.reset([]);
    let dumps: RouteDumps | undefined;
    this.last = await reconcileVxlan(this.k, { dev: this.dev!.index, extDev: this.ctx.extIface.index, network: this.ctx.config.network!, written: this.writtenFdb }, peers, (d) => (dumps = d));
    const re = await this.reconcileEdge(this.remote, peers, false, dumps);
    this.last = { changes: this.last.changes + re.changes, errors: [...this.last.errors, ...re.errors] };
    await this.checkEdgeLive();
    if (this.devName6) {
      const r6 = await this.runOnce6();
      this.last = { changes: this.last.changes + r6.changes, errors: [...this.last.errors, ...r6.errors] };
    }
    this.reconciles++;
    this.unsure = false;
    errors.push(...this.last.errors);
    return errors;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** Same entries (both absent counts as the same). */
function samePeer(a: PeerEntries | undefined, b: PeerEntries | undefined): boolean {
  if (!a || !b) return a === b;
  return a.dst === b.dst && a.gw === b.gw && a.mac === b.mac && a.publicIP === b.publicIP && a.direct === b.direct;
}

const LINK_LOCAL = parseIPv4Net('169.254.0.0/16');

function linkLocal(cidr: string): boolean {
  return ipv4NetContains(LINK_LOCAL, parseIPv4(cidr.split('/')[0]!));
}

/** fe80::/10 */
function linkLocal6(cidr: string): boolean {
  return /^fe[89ab][0-9a-f]:/i.test(cidr);
}
