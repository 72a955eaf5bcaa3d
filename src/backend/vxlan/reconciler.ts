// The VXLAN reconciler: converge the neighbour, FDB and route entries on
// flannel.<VNI> on a desired set of peers.
//
// Contract (see backend.ts): reading the kernel first and only sending what
// differs makes a repeat with the same input a no-op (zero requests). Adds go
// before deletes; within a peer the order is flannel's (§5.5): neighbour, FDB,
// then the route last, so the kernel never has to ARP for the onlink next hop.
// A peer whose neighbour or FDB entry failed gets no route this round; the
// error is reported and the next reconcile tries again. Nothing stops at the
// first failure: every error is returned.
//
// What we own (anything else on those devices is left alone):
//  - permanent neighbours on flannel.<VNI> with an IP inside Network;
//  - `self` FDB entries with a remote dst on flannel.<VNI> whose MAC is a
//    peer's VTEP MAC, the MAC of a neighbour we own (flannel pairs them), or
//    that this process wrote. FDB entries carry no protocol mark, so an
//    operator's entry for some other MAC (e.g. an all-zero flood entry) is
//    not ours;
//  - gateway routes into Network on flannel.<VNI> marked RTPROT_FLANNEL, and
//    ones marked RTPROT_BOOT, which is what real flannel writes: they are
//    adopted on upgrade (rewritten with our mark, or deleted when no peer
//    wants them). Routes with any other protocol are someone else's;
//  - with DirectRouting, gateway routes into Network on the external
//    interface marked RTPROT_FLANNEL. An unmarked one that matches a direct
//    peer exactly is adopted by the replace that puts our mark on it; other
//    unmarked ones are never touched.
//
// Reads are kernel-filtered dumps (one device, one table, our protocol), so a
// periodic check costs the size of our state, not the host's.

import { ipv4NetContains, ipv6NetContains, parseIPv4, parseIPv4Net, parseIPv6, parseIPv6Net, type IPv4Net, type IPv6Net } from '../../lease/ip.js';
import type { KernelNet, KernelOp, Route } from '../../kernel/types.js';
import { RTPROT_BOOT, RTPROT_FLANNEL } from '../../netlink/constants.js';
import type { PeerEntries } from './desired.js';
import { ReconcileError } from '../backend.js';
import { flat } from '../../strings.js';

export interface ReconcileTarget {
  readonly dev: number;
  readonly extDev: number;
  readonly network: IPv4Net;
  /**
   * Set for flannel-v6.<VNI>: the entries are IPv6 ones, and what we own is
   * what lies inside this network (instead of `network`).
   */
  readonly network6?: IPv6Net;
  /**
   * FDB entries (`mac|dst`) written by this process, kept across calls by
   * the caller: they stay ours even when no lease or neighbour names their
   * MAC any more.
   */
  readonly written?: Set<string>;
}

const fdbKey = (mac: string, dst: string) => flat(`${mac}|${dst}`);

export interface ReconcileResult {
  /**
   * kernel requests that succeeded (0 when already converged). A request the
   * kernel refuses is an error, not a change: otherwise one bad entry would
   * read as "restored" on every periodic check.
   */
  readonly changes: number;
  readonly errors: Error[];
}

function inNet(net: IPv4Net, cidrOrIp: string): boolean {
  const ip = cidrOrIp.includes('/') ? parseIPv4Net(cidrOrIp) : { ip: parseIPv4(cidrOrIp), prefix: 32 };
  return ipv4NetContains(net, ip.ip) && ip.prefix >= net.prefix;
}

function inNet6(net: IPv6Net, cidrOrIp: string): boolean {
  if (!cidrOrIp.includes(':')) return false;
  const ip = cidrOrIp.includes('/') ? parseIPv6Net(cidrOrIp) : { ip: parseIPv6(cidrOrIp), prefix: 128 };
  return ipv6NetContains(net, ip.ip) && ip.prefix >= net.prefix;
}

/** Is this address or prefix inside the target's network (of its family)? */
function owned(t: ReconcileTarget, cidrOrIp: string): boolean {
  if (t.network6) return inNet6(t.network6, cidrOrIp);
  return !cidrOrIp.includes(':') && inNet(t.network, cidrOrIp);
}

function describe(op: KernelOp): string {
  switch (op.op) {
    case 'replaceNeigh':
      return `neighbour ${op.neigh.ip} lladdr ${op.neigh.mac}`;
    case 'delNeigh':
      return `delete neighbour ${op.neigh.ip}`;
    case 'replaceFdb':
    case 'appendFdb':
      return `fdb ${op.fdb.mac} dst ${op.fdb.dst}`;
    case 'delFdb':
      return `delete fdb ${op.fdb.mac} dst ${op.fdb.dst}`;
    case 'replaceRoute':
      return `route ${op.route.dst} via ${op.route.gw}`;
    case 'delRoute':
      return `delete route ${op.route.dst}`;
  }
}

/** Requests per applyBatch call (the socket sends 256 per datagram). */
const SLICE_OPS = 768;
/** Peers per step of the add pipeline (up to 2 L2 requests and 1 route each). */
const SLICE_PEERS = 256;

/**
 * Sends batches and keeps the account: successful requests, and every
 * failure as an error naming the entry. Large lists go in slices, the next
 * one queued while the kernel works on the current one, so the netlink
 * worker never waits for this thread to hand it the next slice (issue 11).
 */
class Batches {
  private changes = 0;
  private readonly errors: Error[] = [];
  constructor(
    private readonly k: KernelNet,
    private readonly t: ReconcileTarget,
  ) {}

  /** Indexes of the ops that failed. In order: slice n+1 is sent while slice n's answers come back. */
  async run(ops: readonly KernelOp[]): Promise<Set<number>> {
    const failed = new Set<number>();
    if (ops.length === 0) return failed;
    const slices: Array<Promise<Set<number>>> = [];
    for (let i = 0; i < ops.length; i += SLICE_OPS) {
      // at most two slices in flight: the worker's queue holds the next one, no more
      if (slices.length >= 2) await slices[slices.length - 2];
      const from = i;
      slices.push(inFlight(this.one(ops.slice(from, from + SLICE_OPS)).then((f) => new Set([...f].map((j) => j + from)))));
    }
    for (const f of await Promise.all(slices)) for (const j of f) failed.add(j);
    return failed;
  }

  private async one(ops: readonly KernelOp[]): Promise<Set<number>> {
    const failed = new Set<number>();
    const res = await this.k.applyBatch(ops);
    this.changes += res.succeeded;
    for (const f of res.failures) {
      failed.add(f.index);
      this.errors.push(new ReconcileError(`${describe(f.op)} on dev #${this.t.dev}: ${f.error.message}`, { cause: f.error }));
    }
    const w = this.t.written;
    if (w) {
      ops.forEach((op, i) => {
        if (failed.has(i)) return;
        if (op.op === 'replaceFdb' || op.op === 'appendFdb') w.add(fdbKey(op.fdb.mac, op.fdb.dst));
        else if (op.op === 'delFdb') w.delete(fdbKey(op.fdb.mac, op.fdb.dst));
      });
    }
    return failed;
  }

  /**
   * Adds for many peers: each step's neighbours and FDB entries, then the
   * routes of the peers whose L2 entries are in place (flannel's order: the
   * kernel never has to ARP for an onlink next hop). The next step's L2
   * entries are queued before this step's routes, so the kernel always has
   * work while this thread reads answers and builds requests.
   */
  async addPeers(steps: Iterable<AddStep>): Promise<void> {
    const routes: Array<Promise<Set<number>>> = [];
    const it = steps[Symbol.iterator]();
    let cur = it.next();
    let curL2 = cur.done ? null : inFlight(this.run(cur.value.l2));
    while (!cur.done) {
      // the next step is built (and its L2 entries queued) while the kernel works on this one's
      const next = it.next();
      const nextL2 = next.done ? null : inFlight(this.run(next.value.l2));
      const step = cur.value;
      const failed = await curL2!;
      const bad = new Set([...failed].map((j) => step.l2Owner[j]!));
      routes.push(inFlight(this.run(bad.size === 0 ? step.routes : step.routes.filter((_, j) => !bad.has(step.routeOwner[j]!)))));
      cur = next;
      curL2 = nextL2;
    }
    await Promise.all(routes);
  }

  result(): ReconcileResult {
    return { changes: this.changes, errors: this.errors };
  }
}

/**
 * A request in flight while the caller awaits another one: if the transport
 * fails, the caller throws from the one it awaits, and this one's rejection
 * must not go unhandled (it would end the process).
 */
function inFlight<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

/** Some peers' additions: L2 entries and routes, each op tagged with its peer's id. */
interface AddStep {
  readonly l2: KernelOp[];
  readonly l2Owner: string[];
  readonly routes: KernelOp[];
  readonly routeOwner: string[];
}

/** Collects add ops into steps of SLICE_PEERS peers. */
class AddSteps {
  readonly steps: AddStep[] = [];
  private cur: AddStep | null = null;
  private peers = 0;
  /** starts the next peer's ops */
  peer(): void {
    if (!this.cur || this.peers >= SLICE_PEERS) {
      this.cur = { l2: [], l2Owner: [], routes: [], routeOwner: [] };
      this.steps.push(this.cur);
      this.peers = 0;
    }
    this.peers++;
  }
  l2(id: string, op: KernelOp): void {
    this.cur!.l2.push(op);
    this.cur!.l2Owner.push(id);
  }
  route(id: string, op: KernelOp): void {
    this.cur!.routes.push(op);
    this.cur!.routeOwner.push(id);
  }
}

/** One peer's entries before and after some lease events (either may be absent: it came, or it went). */
export interface PeerChange {
  readonly before?: PeerEntries | undefined;
  readonly after?: PeerEntries | undefined;
}

/** What the peers want once the change is applied (WantedEntries in desired.ts). */
export interface StillWanted {
  hasGw(gw: string): boolean;
  hasFdb(mac: string, dst: string): boolean;
  hasDst(dst: string): boolean;
}

/**
 * The targeted path for lease events: write the entries of the peers that
 * appeared or changed and delete those no peer wants any more, without
 * reading the kernel first. Work follows what changed (3 requests for a new
 * peer, one pipelined batch of 3N for N), not the number of peers; the
 * periodic full reconcile still checks everything. A changed peer gets only
 * the entries that differ (a new VTEP MAC: its neighbour and FDB entry, and
 * the old FDB entry goes). Entries a remaining peer also uses are not
 * deleted. Same order as the full path: neighbours and FDB entries, then the
 * routes of the peers whose L2 entries are in place; on the way out, routes
 * first.
 *
 * `changes` comes in groups and is read lazily, one group per step of the
 * add pipeline: the caller may work out the next group while the kernel
 * works on this one. `still` is asked only after the last group.
 */
export async function patchVxlan(k: KernelNet, t: ReconcileTarget, changes: Iterable<readonly PeerChange[]>, still: StillWanted): Promise<ReconcileResult> {
  const b = new Batches(k, t);
  const gone: PeerEntries[] = [];
  function* steps(): Generator<AddStep> {
    for (const group of changes) {
      const adds = new AddSteps();
      for (const { before: o, after: p } of group) {
        if (o) gone.push(o);
        if (!p) continue;
        adds.peer();
        const wasTunnelled = o !== undefined && !o.direct;
        if (!p.direct) {
          if (!wasTunnelled || o.gw !== p.gw || o.mac !== p.mac) adds.l2(p.id, { op: 'replaceNeigh', neigh: { ifindex: t.dev, ip: p.gw, mac: p.mac, permanent: true } });
          if (!wasTunnelled || o.mac !== p.mac || o.publicIP !== p.publicIP) adds.l2(p.id, { op: 'replaceFdb', fdb: { ifindex: t.dev, mac: p.mac, dst: p.publicIP, self: true, permanent: true } });
        }
        if (!o || o.dst !== p.dst || o.direct !== p.direct || (p.direct ? o.publicIP !== p.publicIP : o.gw !== p.gw)) {
          adds.route(p.id, p.direct ? { op: 'replaceRoute', route: { dst: p.dst, gw: p.publicIP, oif: t.extDev } } : { op: 'replaceRoute', route: { dst: p.dst, gw: p.gw, oif: t.dev, onlink: true } });
        }
      }
      yield* adds.steps;
    }
  }
  await b.addPeers(steps());
  const del: KernelOp[] = [];
  const proto = RTPROT_FLANNEL; // only our own route for that subnet, never a foreign one with the same dst
  for (const o of gone) {
    if (still.hasDst(o.dst)) continue;
    del.push(o.direct ? { op: 'delRoute', route: { dst: o.dst, gw: o.publicIP, oif: t.extDev, protocol: proto } } : { op: 'delRoute', route: { dst: o.dst, gw: o.gw, oif: t.dev, protocol: proto } });
  }
  for (const o of gone) {
    if (o.direct) continue;
    if (!still.hasFdb(o.mac, o.publicIP)) del.push({ op: 'delFdb', fdb: { ifindex: t.dev, mac: o.mac, dst: o.publicIP, self: true } });
    if (!still.hasGw(o.gw)) del.push({ op: 'delNeigh', neigh: { ifindex: t.dev, ip: o.gw } });
  }
  await b.run(del);
  return b.result();
}

/** The route dumps a full reconcile read (before its changes), for the edge routes' check to reuse. */
export interface RouteDumps {
  /** every route on the device */
  dev: Route[];
  /** our routes (RTPROT_FLANNEL) on the external interface */
  ext: Route[];
}

/** `read`: told what the route dumps returned (the edge check reads the same routes). */
export async function reconcileVxlan(k: KernelNet, t: ReconcileTarget, peers: readonly PeerEntries[], read?: (dumps: RouteDumps) => void): Promise<ReconcileResult> {
  const family = t.network6 ? 6 : 4;
  const [neighs, fdbs, routes, extRoutes] = await Promise.all([
    k.listNeighs(t.dev, family),
    k.listFdb(t.dev),
    k.listRoutes({ oif: t.dev, family }),
    k.listRoutes({ oif: t.extDev, family, protocol: RTPROT_FLANNEL }),
  ]);
  read?.({ dev: routes, ext: extRoutes });
  const ourNeighs = neighs.filter((n) => n.ifindex === t.dev && n.permanent && owned(t, n.ip));
  const macs = new Set<string>();
  for (const p of peers) if (!p.direct && p.mac) macs.add(p.mac);
  for (const n of ourNeighs) if (n.mac) macs.add(n.mac);
  const ourFdbs = fdbs.filter((f) => f.ifindex === t.dev && f.self && f.dst !== undefined && (macs.has(f.mac) || t.written?.has(fdbKey(f.mac, f.dst)) === true));
  const ourRoutes = routes.filter(
    (r) => r.oif === t.dev && r.gateway !== undefined && (r.protocol === RTPROT_FLANNEL || r.protocol === RTPROT_BOOT) && owned(t, r.dst),
  );
  const ourDirect = extRoutes.filter((r) => r.oif === t.extDev && r.gateway !== undefined && r.protocol === RTPROT_FLANNEL && owned(t, r.dst));

  // Lookups by key (first entry wins, as a linear search would): with 1000
  // peers a scan per peer would cost millions of comparisons per check.
  const byKey = <T>(xs: readonly T[], key: (x: T) => string): Map<string, T> => {
    const m = new Map<string, T>();
    for (const x of xs) if (!m.has(key(x))) m.set(key(x), x);
    return m;
  };
  const neighByIp = byKey(ourNeighs, (n) => n.ip);
  const fdbByKey = byKey(ourFdbs, (f) => fdbKey(f.mac, f.dst!));
  const routeByDst = byKey(ourRoutes, (r) => r.dst);
  const directByDst = byKey(ourDirect, (r) => r.dst);

  const b = new Batches(k, t);

  // 1. neighbour + FDB entries for every tunnelled peer that needs them, and
  // 2. its route, sent only once its L2 entries are in place (Batches.addPeers)
  const adds = new AddSteps();
  for (const p of peers) {
    adds.peer();
    if (p.direct) {
      const r = directByDst.get(p.dst);
      if (!r || r.gateway !== p.publicIP) adds.route(p.id, { op: 'replaceRoute', route: { dst: p.dst, gw: p.publicIP, oif: t.extDev } });
      // a tunnelled route for the same subnet would win over nothing but confuses users: drop it below
      continue;
    }
    const n = neighByIp.get(p.gw);
    if (!n || n.mac !== p.mac) adds.l2(p.id, { op: 'replaceNeigh', neigh: { ifindex: t.dev, ip: p.gw, mac: p.mac, permanent: true } });
    const f = fdbByKey.get(fdbKey(p.mac, p.publicIP));
    if (!f || !f.permanent) adds.l2(p.id, { op: 'replaceFdb', fdb: { ifindex: t.dev, mac: p.mac, dst: p.publicIP, self: true, permanent: true } });
    const r = routeByDst.get(p.dst);
    // an RTPROT_BOOT route (real flannel's) is rewritten with our mark: adopted
    if (!r || r.gateway !== p.gw || !r.onlink || r.protocol !== RTPROT_FLANNEL) adds.route(p.id, { op: 'replaceRoute', route: { dst: p.dst, gw: p.gw, oif: t.dev, onlink: true } });
  }
  await b.addPeers(adds.steps);

  // 3. deletes: whatever we own that no peer wants (routes first, then L2)
  const want = new Map(peers.map((p) => [p.dst, p]));
  const del: KernelOp[] = [];
  for (const r of ourRoutes) {
    const p = want.get(r.dst);
    // the protocol in the request keeps a foreign route to the same dst safe
    if (!p || p.direct) del.push({ op: 'delRoute', route: { dst: r.dst, gw: r.gateway!, oif: t.dev, protocol: r.protocol } });
  }
  for (const r of ourDirect) {
    const p = want.get(r.dst);
    if (!p || !p.direct) del.push({ op: 'delRoute', route: { dst: r.dst, gw: r.gateway!, oif: t.extDev, protocol: r.protocol } });
  }
  const tunnelled = peers.filter((p) => !p.direct);
  const wantFdb = new Set(tunnelled.map((p) => fdbKey(p.mac, p.publicIP)));
  const wantGw = new Set(tunnelled.map((p) => p.gw));
  for (const f of ourFdbs) {
    if (!wantFdb.has(fdbKey(f.mac, f.dst!))) {
      del.push({ op: 'delFdb', fdb: { ifindex: t.dev, mac: f.mac, dst: f.dst!, self: true } });
    }
  }
  for (const n of ourNeighs) {
    if (!wantGw.has(n.ip)) del.push({ op: 'delNeigh', neigh: { ifindex: t.dev, ip: n.ip } });
  }
  await b.run(del);
  return b.result();
}
