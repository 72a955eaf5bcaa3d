// host-gw backend (spec §7): a route to each peer subnet via the peer's public
// IP on the external interface. No encapsulation, so peers must share an L2
// segment with us; a peer that does not is refused with a clear error.
//
// Routes are reconciled declaratively (adds before deletes, repeat = no-op)
// and restored within milliseconds when someone deletes one (route
// notifications), with a periodic check as the safety net (flannel: 10 s).

import { formatIPv4, formatIPv4Net, ipv4NetContains, parseIPv4, parseIPv4Net, type IPv4Net } from '../../lease/ip.js';
import { leaseId, type Lease } from '../../lease/lease.js';
import type { KernelNet, KernelOp } from '../../kernel/types.js';
import { RTPROT_FLANNEL } from '../../netlink/constants.js';
import type { NetlinkEvent } from '../../netlink/subscriber.js';
import { BackendError, type Backend, type BackendContext, type BackendMetrics, type ChangeFeed, type PublishedAttrs } from '../backend.js';
import { removeOtherBackends } from '../cleanup.js';
import { ReconcileLoop } from '../loop.js';

export interface HostGwOptions {
  kernel: KernelNet;
  feed?: ChangeFeed;
  resyncMs?: number;
}

export class HostGwBackend implements Backend {
  readonly type = 'host-gw';
  private readonly k: KernelNet;
  private remote: readonly Lease[] = [];
  private closed = false;
  private active = false;
  private readonly loop: ReconcileLoop;
  private readonly warned = new Set<string>();
  last = { changes: 0 };

  constructor(
    private readonly ctx: BackendContext,
    private readonly o: HostGwOptions,
  ) {
    this.k = o.kernel;
    if (!ctx.config.network) throw new BackendError('host-gw: IPv4 Network is required');
    this.loop = new ReconcileLoop(async () => ({ errors: await this.runOnce(), changes: this.last.changes }), ctx.log);
  }

  metrics(): BackendMetrics {
    return { heals: this.loop.healsByTrigger };
  }

  async prepare(): Promise<PublishedAttrs> {
    const e = this.ctx.extIface;
    if (e.publicIP !== e.ifaceAddr) {
      throw new BackendError(
        `host-gw: the public IP ${formatIPv4(e.publicIP)} differs from ${e.name}'s address ${formatIPv4(e.ifaceAddr)} (probably you're on a NAT); host-gw needs direct L2 reachability`,
      );
    }
    return { backendType: 'host-gw' };
  }

  async activate(): Promise<{ mtu: number }> {
    await removeOtherBackends(this.k, 'host-gw', this.ctx.config.network!, this.ctx.extIface.index, this.ctx.log);
    this.active = true;
    await this.loop.start(this.o.feed, (ev) => this.onKernelEvent(ev), this.o.resyncMs ?? 10_000);
    return { mtu: this.ctx.extIface.mtu };
  }

  private onKernelEvent(ev: NetlinkEvent): void {
    // Our own deletions are not damage to repair.
    const own = this.k.ownPortId?.() ?? 0;
    if (own !== 0 && ev.pid === own) return;
    if (ev.kind === 'route' && ev.action === 'del' && ev.route.oif === this.ctx.extIface.index) this.loop.kick('route deleted');
  }

  async reconcile(remote: readonly Lease[]): Promise<Error[]> {
    this.remote = remote;
    return this.loop.enqueue();
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
        errors.push(new Error(`refusing lease ${id}: its public IP ${formatIPv4(l.attrs.publicIP)} is not on ${this.ctx.extIface.name}'s L2 subnet; host-gw cannot reach it without encapsulation (use vxlan)`));
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
    this.last = { changes: ops.length };
    if (ops.length) {
      const res = await this.k.applyBatch(ops);
      for (const f of res.failures) errors.push(new Error(`${f.op.op} ${'route' in f.op ? f.op.route.dst : ''}: ${f.error.message}`));
    }
    return errors;
  }

  private warnOnce(key: string, msg: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.ctx.log.warn(msg);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.loop.close(this.o.feed);
  }
}

function inNet(net: IPv4Net, cidr: string): boolean {
  const [ip, len] = cidr.split('/');
  return ipv4NetContains(net, parseIPv4(ip!)) && Number(len) >= net.prefix;
}
