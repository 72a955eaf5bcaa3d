// The edge gateway (issue 12; the article's §7, "Flannel and L2 network
// connectivity"): a node with a NIC (or a bridge holding it) on an existing
// L2 segment publishes that segment in its lease, and every flannel-ts VXLAN
// node routes the segment through that node's VTEP:
//
//   192.168.50.0/24 via 10.244.X.0 dev flannel.1 onlink proto 222
//
// which works because the edge node's neighbour and FDB entries on
// flannel.1 are already there (it is an ordinary peer). The edge node itself
// forwards between flannel.1 and the segment (ip_forward, which flanneld
// relies on anyway); with --edge-masq it masquerades pod traffic leaving to
// the segment, so LAN hosts need no route back to the pod Network.
//
// Two edge nodes for one segment: both publish it, every peer picks the one
// with the lowest subnet, and a departed lease switches the route in the
// same reconcile that removes the peer's entries (a route replace: there is
// never a moment without a route). The single gateway is still a bottleneck
// per segment, as the article warns; spreading segments over edge nodes is
// the operator's way around it.
//
// Pure parts (flags, lease data, selection) and the route reconciler. What
// we own: routes on flannel.<VNI> (or, for a DirectRouting peer, on the
// external interface) marked RTPROT_FLANNEL whose destination lies outside
// the flannel Network; nothing else writes those.

import { formatIPv4, formatIPv4Net, ipv4NetContains, ipv4NetsOverlap, parseIPv4Net, type IPv4Net } from '../../lease/ip.js';
import { leaseId, type Lease } from '../../lease/lease.js';
import { showJson } from '../../lease/json.js';
import type { KernelNet, KernelOp, Route } from '../../kernel/types.js';
import { RTPROT_FLANNEL } from '../../netlink/constants.js';
import { BackendError, ReconcileError } from '../backend.js';
import type { PeerEntries } from './desired.js';
import type { ReconcileResult } from './reconciler.js';

/** One L2 segment this node is the gateway to. */
export interface EdgeSegment {
  readonly net: IPv4Net;
  /** the interface (usually a bridge holding the NIC) the segment is on */
  readonly iface: string;
}

export interface EdgeOptions {
  readonly segments: readonly EdgeSegment[];
  /** --edge-masq: masquerade pod traffic leaving to the segments */
  readonly masq: boolean;
  /** --edge-allow: the pod CIDRs that may reach the segments (and be reached from them); null = the whole Network */
  readonly allow: readonly IPv4Net[] | null;
}

/** A CIDR in canonical form ("192.168.50.0/24"), or a one-line reason it is not. */
export function parseCanonicalCidr(s: string): IPv4Net | string {
  let n: IPv4Net;
  try {
    n = parseIPv4Net(s);
  } catch (e) {
    return (e as Error).message;
  }
  const canon = formatIPv4Net(n);
  if (canon !== s) return `"${s}" has host bits set (the network is ${canon})`;
  return n;
}

/**
 * --edge-network and --edge-iface as given (each repeatable, each value may be
 * a comma list). One interface serves every network; otherwise they pair up
 * by position. Errors name the flag.
 */
export function parseEdgeFlags(networks: readonly string[], ifaces: readonly string[], masq: boolean, allowText = ''): EdgeOptions | null {
  const nets = networks.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
  const ifs = ifaces.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
  if (nets.length === 0) {
    if (ifs.length > 0) throw new BackendError('--edge-iface: needs --edge-network (the segment behind that interface)');
    if (masq) throw new BackendError('--edge-masq: needs --edge-network and --edge-iface');
    if (allowText.trim() !== '') throw new BackendError('--edge-allow: needs --edge-network and --edge-iface');
    return null;
  }
  if (ifs.length === 0) throw new BackendError('--edge-network: needs --edge-iface (the interface the segment is on)');
  if (ifs.length !== 1 && ifs.length !== nets.length) {
    throw new BackendError(`--edge-iface: give one interface, or one per --edge-network (${nets.length}); got ${ifs.length}`);
  }
  const segments: EdgeSegment[] = [];
  nets.forEach((v, i) => {
    const n = parseCanonicalCidr(v);
    if (typeof n === 'string') throw new BackendError(`--edge-network: ${n}`);
    if (n.prefix === 0) throw new BackendError(`--edge-network: ${v} is the whole address space; give the segment's network`);
    const iface = ifs.length === 1 ? ifs[0]! : ifs[i]!;
    if (!/^[^/\s]{1,15}$/.test(iface)) throw new BackendError(`--edge-iface: "${iface}" is not an interface name`);
    const other = segments.find((s) => ipv4NetsOverlap(s.net, n));
    if (other) throw new BackendError(`--edge-network: ${v} overlaps ${formatIPv4Net(other.net)}, also given`);
    segments.push({ net: n, iface });
  });
  let allow: IPv4Net[] | null = null;
  if (allowText.trim() !== '') {
    allow = [];
    for (const v of allowText.split(',').map((x) => x.trim())) {
      const n = parseCanonicalCidr(v);
      if (typeof n === 'string') throw new BackendError(`--edge-allow: ${v === '' ? 'an empty entry in the list' : n}`);
      allow.push(n);
    }
  }
  return { segments, masq, allow };
}

/** Checks against the network config and the node's underlay (at start-up, before anything is published). */
export function validateEdge(o: EdgeOptions, network: IPv4Net, publicIP: number): void {
  for (const s of o.segments) {
    const c = formatIPv4Net(s.net);
    if (ipv4NetsOverlap(s.net, network)) throw new BackendError(`--edge-network: ${c} overlaps the flannel Network ${formatIPv4Net(network)}`);
    if (ipv4NetContains(s.net, publicIP)) throw new BackendError(`--edge-network: ${c} contains this node's public IP ${formatIPv4(publicIP)} (the underlay cannot be an edge segment)`);
  }
  for (const a of o.allow ?? []) {
    if (!ipv4NetContains(network, a.ip) || a.prefix < network.prefix) throw new BackendError(`--edge-allow: ${formatIPv4Net(a)} is not inside the flannel Network ${formatIPv4Net(network)}`);
  }
}

/** The segments a lease publishes; entries that are not canonical IPv4 CIDRs are reported, not used. */
export function publishedEdgeNetworks(l: Lease): { nets: IPv4Net[]; bad: string[] } {
  const raw = l.attrs.edgeNetworks;
  if (raw === undefined || raw === null) return { nets: [], bad: [] };
  if (!Array.isArray(raw)) return { nets: [], bad: [`EdgeNetworks: expected a list of CIDRs, got ${showJson(raw)}`] };
  const nets: IPv4Net[] = [];
  const bad: string[] = [];
  for (const v of raw as unknown[]) {
    if (typeof v !== 'string') {
      bad.push(`EdgeNetworks: ${showJson(v)} is not a CIDR string`);
      continue;
    }
    const n = parseCanonicalCidr(v);
    if (typeof n === 'string') bad.push(`EdgeNetworks: ${n}`);
    else if (n.prefix === 0) bad.push(`EdgeNetworks: ${v} is the whole address space`);
    else nets.push(n);
  }
  return { nets, bad };
}

export interface EdgeRoute {
  /** "192.168.50.0/24" */
  readonly dst: string;
  /** the edge node chosen for it */
  readonly via: PeerEntries;
  /** every usable edge node for the segment, chosen one first */
  readonly candidates: readonly string[];
}

export interface EdgeContext {
  readonly network: IPv4Net;
  /** our own segments (we reach them directly: no route through a peer) */
  readonly own: readonly IPv4Net[];
  /** addresses an edge network must never capture (our public IP; peers' are added from the leases) */
  readonly publicIPs: readonly number[];
}

/**
 * Which segments to route and through whom. Only peers the VXLAN half
 * programs (`peers`, by lease id) can carry a segment. For each segment the
 * lowest subnet among its publishers wins (deterministic on every node; the
 * others stand by). A published segment is ignored, with a reason, when it
 * overlaps the flannel Network, contains a node's public IP (the tunnel
 * would route into itself) or overlaps one of ours; one identical to ours is
 * skipped silently (we are an edge node for it too).
 */
export function selectEdgeRoutes(remote: readonly Lease[], peers: readonly PeerEntries[], ctx: EdgeContext): { routes: EdgeRoute[]; skipped: Array<{ id: string; reason: string }> } {
  const byId = new Map(peers.map((p) => [p.id, p]));
  const publicIPs = [...ctx.publicIPs, ...remote.map((l) => l.attrs.publicIP)];
  const skipped: Array<{ id: string; reason: string }> = [];
  const bySegment = new Map<string, Array<{ lease: Lease; peer: PeerEntries }>>();
  for (const l of remote) {
    if (l.attrs.edgeNetworks === undefined) continue;
    const id = leaseId(l);
    const { nets, bad } = publishedEdgeNetworks(l);
    for (const b of bad) skipped.push({ id, reason: b });
    const peer = byId.get(id);
    for (const n of nets) {
      const c = formatIPv4Net(n);
      if (ipv4NetsOverlap(n, ctx.network)) {
        skipped.push({ id, reason: `edge network ${c} overlaps the flannel Network ${formatIPv4Net(ctx.network)}` });
        continue;
      }
      const ip = publicIPs.find((a) => ipv4NetContains(n, a));
      if (ip !== undefined) {
        skipped.push({ id, reason: `edge network ${c} contains the public IP ${formatIPv4(ip)}` });
        continue;
      }
      const mine = ctx.own.find((o) => ipv4NetsOverlap(o, n));
      if (mine) {
        if (formatIPv4Net(mine) !== c) skipped.push({ id, reason: `edge network ${c} overlaps our own edge network ${formatIPv4Net(mine)}` });
        continue;
      }
      if (!peer) continue; // its VXLAN entries are left out (reported by desiredEntries)
      const list = bySegment.get(c) ?? [];
      list.push({ lease: l, peer });
      bySegment.set(c, list);
    }
  }
  const routes: EdgeRoute[] = [];
  for (const [dst, list] of bySegment) {
    list.sort((a, b) => a.lease.subnet.ip - b.lease.subnet.ip || a.lease.subnet.prefix - b.lease.subnet.prefix);
    routes.push({ dst, via: list[0]!.peer, candidates: list.map((x) => x.peer.id) });
  }
  routes.sort((a, b) => (a.dst < b.dst ? -1 : a.dst > b.dst ? 1 : 0));
  return { routes, skipped };
}

export interface EdgeTarget {
  readonly dev: number;
  readonly extDev: number;
  readonly network: IPv4Net;
}

function routeOp(t: EdgeTarget, r: EdgeRoute): KernelOp {
  const p = r.via;
  return p.direct ? { op: 'replaceRoute', route: { dst: r.dst, gw: p.publicIP, oif: t.extDev } } : { op: 'replaceRoute', route: { dst: r.dst, gw: p.gw, oif: t.dev, onlink: true } };
}

/**
 * Converge our edge routes: read (filtered dumps of our protocol on the two
 * devices), replace what differs (a replace switches the next hop of a
 * failed-over segment in one request), then delete what no segment wants.
 * A repeat with the same input sends nothing.
 */
export async function reconcileEdgeRoutes(k: KernelNet, t: EdgeTarget, want: readonly EdgeRoute[], dumps?: { readonly dev: readonly Route[]; readonly ext: readonly Route[] }): Promise<ReconcileResult> {
  // A full run hands in the dumps it just read (routes outside the Network are
  // not touched by the VXLAN reconciler, so they are still current): no second read.
  const [onDev, onExt] = dumps ? [dumps.dev, dumps.ext] : await Promise.all([k.listRoutes({ oif: t.dev, protocol: RTPROT_FLANNEL }), k.listRoutes({ oif: t.extDev, protocol: RTPROT_FLANNEL })]);
  const outside = (dst: string) => {
    const n = parseIPv4Net(dst);
    return !(ipv4NetContains(t.network, n.ip) && n.prefix >= t.network.prefix);
  };
  const ours = [...onDev, ...onExt].filter((r) => r.protocol === RTPROT_FLANNEL && r.gateway !== undefined && (r.oif === t.dev || r.oif === t.extDev) && !r.dst.includes(':') && outside(r.dst));
  const ops: KernelOp[] = [];
  const wanted = new Map(want.map((r) => [r.dst, r]));
  for (const r of want) {
    const op = routeOp(t, r);
    if (op.op !== 'replaceRoute') continue;
    const have = ours.find((x) => x.dst === r.dst && x.oif === op.route.oif && x.gateway === op.route.gw && (op.route.onlink !== true || x.onlink));
    if (!have) ops.push(op);
  }
  for (const x of ours) {
    const w = wanted.get(x.dst);
    const keep = w && routeOp(t, w).op === 'replaceRoute' && (routeOp(t, w) as { route: { oif?: number } }).route.oif === x.oif;
    if (!keep) ops.push({ op: 'delRoute', route: { dst: x.dst, gw: x.gateway!, oif: x.oif!, protocol: RTPROT_FLANNEL } });
  }
  const errors: Error[] = [];
  if (ops.length === 0) return { changes: 0, errors };
  const res = await k.applyBatch(ops);
  for (const f of res.failures) {
    const o = f.op;
    const what = o.op === 'replaceRoute' ? `edge route ${o.route.dst} via ${o.route.gw}` : o.op === 'delRoute' ? `delete edge route ${o.route.dst}` : o.op;
    errors.push(new ReconcileError(`${what}: ${f.error.message}`, { cause: f.error }));
  }
  return { changes: res.succeeded, errors };
}
