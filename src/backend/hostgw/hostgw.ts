// host-gw backend (spec §7): a route to each peer subnet via the peer's public
// IP on the external interface. No encapsulation, so peers must share an L2
// segment with us; a peer that does not is refused with a clear error.
//
// Dual-stack (EnableIPv6): likewise a route to each peer's IPv6 subnet via its
// PublicIPv6 (spec §7.1), for peers that have both.
//
// Routes are reconciled declaratively (adds before deletes, repeat = no-op)
// and restored within milliseconds when someone deletes one (damage() picks
// route deletions out of the daemon's kernel notifications), with the
// daemon's periodic check as the safety net (flannel: 10 s).

import {
  formatIPv4,
  formatIPv4Net,
  formatIPv6,
  formatIPv6Net,
  ipv4NetContains,
  ipv6NetContains,
  parseIPv4,
  parseIPv4Net,
  parseIPv6Net,
  type IPv4Net,
  type IPv6Net,
} from '../../lease/ip.js';
import { leaseId, type Lease } from '../../lease/lease.js';
import type { KernelNet, KernelOp } from '../../kernel/types.js';
import { RTPROT_FLANNEL } from '../../netlink/constants.js';
import type { NetlinkEvent } from '../../netlink/subscriber.js';
import { BackendError, ReconcileError, type Backend, type BackendContext, type PublishedAttrs } from '../backend.js';
import { removeOtherBackends } from '../cleanup.js';

export interface HostGwOptions {
  kernel: KernelNet;
}

export class HostGwBackend implements Backend {
  readonly type = 'host-gw';
  private readonly k: KernelNet;
  private remote: readonly Lease[] = [];
  private closed = false;
  private active = false;
  private readonly warned = new Set<string>();
  last = { changes: 0 };
  /** kernel changes the last reconcile made */
  get lastChanges(): number {
    return this.last.changes;
  }

  constructor(
    private readonly ctx: BackendContext,
    private readonly o: HostGwOptions,
  ) {
    this.k = o.kernel;
    if (!ctx.config.network) throw new BackendError('host-gw: IPv4 Network is required');
  }

  async prepare(): Promise<PublishedAttrs> {
    const e = this.ctx.extIface;
    if (e.publicIP !== e.ifaceAddr) {
      throw new BackendError(
        `host-gw: the public IP ${formatIPv4(e.publicIP)} differs from ${e.name}'s address ${formatIPv4(e.ifaceAddr)} (probably you're on a NAT); host-gw needs direct L2 reachability`,
      );
    }
    if (this.ctx.config.enableIPv6 && (e.publicIPv6 === undefined || e.publicIPv6 !== e.ifaceAddr6)) {
      throw new BackendError(
        `host-gw: the public IPv6 ${e.publicIPv6 === undefined ? '(none)' : formatIPv6(e.publicIPv6)} is not ${e.name}'s IPv6 address ${e.ifaceAddr6 === undefined ? '(none)' : formatIPv6(e.ifaceAddr6)}; host-gw needs direct L2 reachability`,
      );
    }
    return { backendType: 'host-gw' };
  }

  async activate(): Promise<{ mtu: number }> {
    await removeOtherBackends(this.k, 'host-gw', this.ctx.config.network!, this.ctx.extIface.index, this.ctx.log);
    this.active = true;
    return { mtu: this.ctx.extIface.mtu };
  }

  damage(ev: NetlinkEvent): string | null {
    // Our own deletions are not damage to repair.
    const own = this.k.ownPortId?.() ?? 0;
    if (own !== 0 && ev.pid === own) return null;
    return ev.kind === 'route' && ev.action === 'del' && ev.route.oif === this.ctx.extIface.index ? 'route deleted' : null;
  }

  async reconcile(remote: readonly Lease[]): Promise<Error[]> {
    this.remote = remote;
    return this.runOnce();
  }

  private async runOnce(): Promise<Error[]> {
    if (this.closed || !this.active) return [];
    const ext = this.ctx.extIface.index;
    const net = this.ctx.config.network!;
    const errors: Error[] = [];
    const onLink: IPv4Net[] = (await this.k.listAddrs(ext)).map((a) => parseIPv4Net(a.cidr));
    const want = new Map<string, string>();
    for (const l of this.remote) {
      const id = leaseId(l);
      if (l.attrs.backendType !== 'host-gw') {
        this.warnOnce(id, `ignoring lease ${id}: backend type "${l.attrs.backendType || '(none)'}" is not host-gw`);
        continue;
      }
      if (!onLink.some((n) => ipv4NetContains(n, l.attrs.publicIP))) {
        errors.push(new ReconcileError(`refusing lease ${id}: its public IP ${formatIPv4(l.attrs.publicIP)} is not on ${this.ctx.extIface.name}'s L2 subnet; host-gw cannot reach it without encapsulation (use vxlan)`, { code: 'PEER_NOT_ON_LINK' }));
        continue;
      }
      want.set(formatIPv4Net(l.subnet), formatIPv4(l.attrs.publicIP));
    }
    // Ours: gateway routes into Network on the external interface marked
    // RTPROT_FLANNEL (the kernel filters the dump, so a host with a full BGP
    // table on that interface costs nothing here). An unmarked route that
    // matches a lease exactly (real flannel's, proto boot) is adopted by the
    // replace below, which puts our mark on it; other unmarked routes are
    // never touched.
    const routes = (await this.k.listRoutes({ oif: ext, protocol: RTPROT_FLANNEL })).filter((r) => r.oif === ext && r.gateway && r.protocol === RTPROT_FLANNEL && inNet(net, r.dst));
    const ops: KernelOp[] = [];
    for (const [dst, gw] of want) {
      const r = routes.find((x) => x.dst === dst);
      if (!r || r.gateway !== gw) ops.push({ op: 'replaceRoute', route: { dst, gw, oif: ext } });
    }
    for (const r of routes) if (!want.has(r.dst)) ops.push({ op: 'delRoute', route: { dst: r.dst, gw: r.gateway!, oif: ext, protocol: RTPROT_FLANNEL } });
    if (this.ctx.config.enableIPv6) ops.push(...(await this.ops6(errors)));
    this.last = { changes: ops.length };
    if (ops.length) {
      const res = await this.k.applyBatch(ops);
      this.last = { changes: res.succeeded };
      for (const f of res.failures) errors.push(new ReconcileError(`${f.op.op} ${'route' in f.op ? f.op.route.dst : ''}: ${f.error.message}`, { cause: f.error }));
    }
    return errors;
  }

  /** The IPv6 routes: each dual-stack host-gw peer's v6 subnet via its PublicIPv6 on the external interface. */
  private async ops6(errors: Error[]): Promise<KernelOp[]> {
    const ext = this.ctx.extIface.index;
    const net6 = this.ctx.config.ipv6Network!;
    const onLink: IPv6Net[] = (await this.k.listAddrs(ext, { family: 6 })).filter((a) => !/^fe[89ab][0-9a-f]:/i.test(a.cidr)).map((a) => parseIPv6Net(a.cidr));
    const want = new Map<string, string>();
    for (const l of this.remote) {
      if (l.attrs.backendType !== 'host-gw' || !l.subnet6) continue; // other types: warned above; v4-only peers: nothing to do
      const id = leaseId(l);
      const pub = l.attrs.publicIPv6;
      if (pub === null) {
        this.warnOnce(`${id}:v6`, `lease ${id} has an IPv6 subnet but PublicIPv6 is null; no IPv6 route`);
        continue;
      }
      if (!onLink.some((n) => ipv6NetContains(n, pub))) {
        errors.push(new Error(`refusing the IPv6 half of lease ${id}: its public IPv6 ${formatIPv6(pub)} is not on ${this.ctx.extIface.name}'s L2 subnet; host-gw cannot reach it without encapsulation (use vxlan)`));
        continue;
      }
      want.set(formatIPv6Net(l.subnet6), formatIPv6(pub));
    }
    const routes = (await this.k.listRoutes({ oif: ext, family: 6 })).filter((r) => r.oif === ext && r.gateway && inNet6(net6, r.dst));
    const ops: KernelOp[] = [];
    for (const [dst, gw] of want) {
      const r = routes.find((x) => x.dst === dst);
      if (!r || r.gateway !== gw) ops.push({ op: 'replaceRoute', route: { dst, gw, oif: ext } });
    }
    for (const r of routes) if (!want.has(r.dst)) ops.push({ op: 'delRoute', route: { dst: r.dst, gw: r.gateway!, oif: ext } });
    return ops;
  }

  private warnOnce(key: string, msg: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.ctx.log.warn(msg);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

function inNet(net: IPv4Net, cidr: string): boolean {
  const [ip, len] = cidr.split('/');
  return ipv4NetContains(net, parseIPv4(ip!)) && Number(len) >= net.prefix;
}

function inNet6(net: IPv6Net, cidr: string): boolean {
  if (!cidr.includes(':')) return false;
  const n = parseIPv6Net(cidr);
  return ipv6NetContains(net, n.ip) && n.prefix >= net.prefix;
}
