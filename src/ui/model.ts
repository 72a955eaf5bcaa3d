// The topology page's data: what the server sends to the page (one JSON
// document, re-sent whole on every change) and the pure functions that build
// it from leases, lab hosts, probe results and kernel snapshots. Nothing here
// does I/O, so the unit tests run it directly.

import * as C from '../netlink/constants.js';
import { formatIPv4, formatIPv4Net } from '../lease/ip.js';
import type { Lease } from '../lease/lease.js';
import { vtepMacOf } from '../backend/vxlan/desired.js';
import { publishedEdgeNetworks } from '../backend/vxlan/edge.js';
import { addrsOf, describeRoute, neighState, type KernelSnapshot } from '../ctl/kernel-view.js';

/** present: the store has a lease; gone: it had one while we watched; none: never seen */
export type LeaseState = 'present' | 'gone' | 'none';
/** ok/fail: every/no probe answered; partial: one direction only; unknown: no probe data; down: an end has no lease */
export type TunnelState = 'ok' | 'fail' | 'partial' | 'unknown' | 'down';

export interface UiHost {
  /** stable id, used in the page's data attributes and URLs: "h1" in the lab, the public IP otherwise */
  readonly id: string;
  readonly name: string;
  readonly publicIP: string | null;
  readonly subnet: string | null;
  readonly vtepMac: string | null;
  readonly backend: string | null;
  /** segments this host serves as an edge gateway (EdgeNetworks); [] for none */
  readonly edgeNetworks: readonly string[];
  readonly lease: LeaseState;
  /** lab only: is this host's flanneld running, and where is its log */
  readonly flanneld?: { readonly state: 'running' | 'stopped'; readonly pid: number | null; readonly log: string };
  readonly pods: ReadonlyArray<{ readonly name: string; readonly ip: string | null }>;
  /** can the server read this host's kernel tables */
  readonly kernel: boolean;
}

export interface ProbeResult {
  readonly from: string;
  readonly to: string;
  /** what was pinged, e.g. "h1p1 → 10.244.2.2 (h2p1)" */
  readonly what: string;
  readonly ok: boolean;
  readonly rttMs: number | null;
  /** ISO time */
  readonly at: string;
}

export interface UiTunnel {
  /** "<a>~<b>" with a < b in host order */
  readonly id: string;
  readonly a: string;
  readonly b: string;
  readonly state: TunnelState;
  readonly probes: readonly ProbeResult[];
}

export interface UiState {
  readonly version: number;
  readonly mode: 'lab' | 'store';
  readonly title: string;
  readonly store: string;
  readonly backend: string | null;
  readonly network: string | null;
  /** the last store problem (watch failing, no config), null when fine */
  readonly storeError: string | null;
  /** a sentence on where the tunnel colours come from, or why there are none */
  readonly probeNote: string;
  readonly updatedAt: string;
  readonly hosts: readonly UiHost[];
  readonly tunnels: readonly UiTunnel[];
}

/** A host known from outside the store: a lab host. */
export interface KnownHost {
  readonly id: string;
  readonly name: string;
  readonly publicIP: string;
  readonly pods: ReadonlyArray<{ readonly name: string; readonly ip: string | null }>;
  readonly flanneld?: UiHost['flanneld'];
  readonly kernel: boolean;
}

export interface LeaseSummary {
  readonly key: string;
  readonly subnet: string;
  readonly publicIP: string;
  readonly backend: string;
  readonly vtepMac: string | null;
  readonly edgeNetworks: readonly string[];
}

export function summariseLease(l: Lease): LeaseSummary {
  const subnet = formatIPv4Net(l.subnet);
  return {
    key: subnet.replace('/', '-'),
    subnet,
    publicIP: formatIPv4(l.attrs.publicIP),
    backend: l.attrs.backendType,
    vtepMac: vtepMacOf(l),
    edgeNetworks: publishedEdgeNetworks(l).nets.map(formatIPv4Net),
  };
}

export const tunnelId = (a: string, b: string): string => `${a}~${b}`;

/** Combines the probes of both directions into one colour. */
export function tunnelState(probes: readonly ProbeResult[]): TunnelState {
  if (probes.length === 0) return 'unknown';
  const ok = probes.filter((p) => p.ok).length;
  if (ok === probes.length) return 'ok';
  if (ok === 0) return 'fail';
  return 'partial';
}

/** What the page shows as it is given, plus what the hosts and tunnels are built from. */
export interface BuildInput extends Pick<UiState, 'mode' | 'title' | 'store' | 'backend' | 'network' | 'storeError' | 'probeNote'> {
  /** the current leases */
  readonly leases: readonly LeaseSummary[];
  /** the last lease seen per public IP, for hosts whose lease went away */
  readonly lastSeen: ReadonlyMap<string, LeaseSummary>;
  /** lab hosts, in order; empty outside the lab (then hosts are the leases) */
  readonly known: readonly KnownHost[];
  /** last probe per directed pair, keyed "<from>><to>" by host id */
  readonly probes: ReadonlyMap<string, ProbeResult>;
  /** outside the lab: the public IPs of this machine (its host's kernel is readable) */
  readonly localIPs?: ReadonlySet<string>;
}

/** Builds the page's document (without version/updatedAt, which the server stamps). */
export function buildState(i: BuildInput): Omit<UiState, 'version' | 'updatedAt'> {
  const byIP = new Map(i.leases.map((l) => [l.publicIP, l]));
  const hosts: UiHost[] = [];
  if (i.known.length > 0) {
    for (const k of i.known) {
      const l = byIP.get(k.publicIP);
      const last = l ?? i.lastSeen.get(k.publicIP) ?? null;
      hosts.push({
        id: k.id,
        name: k.name,
        publicIP: k.publicIP,
        subnet: last?.subnet ?? null,
        vtepMac: last?.vtepMac ?? null,
        backend: last?.backend ?? null,
        edgeNetworks: last?.edgeNetworks ?? [],
        lease: l ? 'present' : i.lastSeen.has(k.publicIP) ? 'gone' : 'none',
        ...(k.flanneld ? { flanneld: k.flanneld } : {}),
        pods: k.pods,
        kernel: k.kernel,
      });
    }
    // Leases of machines that are not lab hosts still show (someone joined the lab's store).
    for (const l of i.leases) if (!i.known.some((k) => k.publicIP === l.publicIP)) hosts.push(leaseHost(l, 'present', i.localIPs));
  } else {
    const ips = new Set([...i.lastSeen.keys(), ...byIP.keys()]);
    const order = [...ips].sort((a, b) => ipOrder(a) - ipOrder(b));
    for (const ip of order) {
      const l = byIP.get(ip);
      hosts.push(leaseHost(l ?? i.lastSeen.get(ip)!, l ? 'present' : 'gone', i.localIPs));
    }
  }
  const tunnels: UiTunnel[] = [];
  for (let x = 0; x < hosts.length; x++) {
    for (let y = x + 1; y < hosts.length; y++) {
      const a = hosts[x]!;
      const b = hosts[y]!;
      // Outside the lab a gone host has no tunnels; in the lab its tunnels stay, drawn as down.
      if (i.known.length === 0 && (a.lease !== 'present' || b.lease !== 'present')) continue;
      const probes = [i.probes.get(`${a.id}>${b.id}`), i.probes.get(`${b.id}>${a.id}`)].filter((p): p is ProbeResult => p !== undefined);
      const down = a.lease !== 'present' || b.lease !== 'present';
      tunnels.push({ id: tunnelId(a.id, b.id), a: a.id, b: b.id, state: down ? 'down' : tunnelState(probes), probes: down ? [] : probes });
    }
  }
  return {
    mode: i.mode,
    title: i.title,
    store: i.store,
    backend: i.backend,
    network: i.network,
    storeError: i.storeError,
    probeNote: i.probeNote,
    hosts,
    tunnels,
  };
}

function leaseHost(l: LeaseSummary, lease: LeaseState, localIPs: ReadonlySet<string> | undefined): UiHost {
  return {
    id: l.publicIP,
    name: l.publicIP,
    publicIP: l.publicIP,
    subnet: l.subnet,
    vtepMac: l.vtepMac,
    backend: l.backend,
    edgeNetworks: l.edgeNetworks,
    lease,
    pods: [],
    kernel: localIPs?.has(l.publicIP) ?? false,
  };
}

function ipOrder(ip: string): number {
  const p = ip.split('.').map(Number);
  return p.length === 4 && p.every((n) => Number.isInteger(n)) ? ((p[0]! * 256 + p[1]!) * 256 + p[2]!) * 256 + p[3]! : 0;
}

// ------------------------------------------------------------ kernel tables

export interface KernelTables {
  readonly host: string;
  readonly available: true;
  /** where they were read, e.g. "netns ftslab-h1" */
  readonly source: string;
  readonly readAt: string;
  readonly device: {
    readonly name: string;
    readonly kind: string;
    readonly mac: string | null;
    readonly addrs: readonly string[];
    readonly mtu: number | null;
    readonly up: boolean;
    readonly vxlan: { readonly vni: number; readonly port: number; readonly local: string | null; readonly learning: boolean } | null;
  } | null;
  /** why there is no device (host-gw has none) */
  readonly deviceNote: string | null;
  readonly neigh: ReadonlyArray<{ readonly ip: string; readonly mac: string | null; readonly state: string }>;
  readonly fdb: ReadonlyArray<{ readonly mac: string; readonly dst: string | null; readonly flags: string }>;
  readonly routes: ReadonlyArray<{ readonly text: string; readonly flannel: boolean }>;
}

export interface KernelUnavailable {
  readonly host: string;
  readonly available: false;
  readonly reason: string;
}

/**
 * The flannel part of one host's kernel: its flannel device (flannel.<VNI>
 * for vxlan, flannel0 for udp, none for host-gw), the neighbours and FDB
 * entries on it, and the main table's routes with the flannel ones marked
 * (those on the device, or for host-gw those via a peer's public IP).
 */
export function kernelTables(
  host: string,
  source: string,
  s: KernelSnapshot,
  backend: string | null,
  peerIPs: ReadonlySet<string>,
  now = new Date(),
): KernelTables {
  const dev =
    backend === 'udp'
      ? s.links.find((l) => l.name === 'flannel0')
      : backend === 'host-gw'
        ? undefined
        : (s.links.find((l) => l.kind === 'vxlan' && /^flannel\.\d+$/.test(l.name)) ?? s.links.find((l) => /^flannel\.\d+$/.test(l.name)));
  const device = dev
    ? {
        name: dev.name,
        kind: dev.kind ?? '',
        mac: dev.kind === 'tun' ? null : (dev.mac ?? null),
        addrs: addrsOf(s, dev.index).filter((a) => a.family === C.AF_INET).map((a) => a.cidr),
        mtu: dev.mtu ?? null,
        up: dev.up,
        vxlan: dev.vxlan ? { vni: dev.vxlan.vni, port: dev.vxlan.port, local: dev.vxlan.local ?? null, learning: dev.vxlan.learning } : null,
      }
    : null;
  const deviceNote = dev
    ? null
    : backend === 'host-gw'
      ? "host-gw has no device: each peer's subnet is routed via the peer's public IP"
      : `no ${backend === 'udp' ? 'flannel0' : 'flannel.<VNI>'} device on this host`;
  const neigh = dev
    ? s.neighs
        .filter((n) => n.ifindex === dev.index && n.family === C.AF_INET)
        .map((n) => ({ ip: n.ip, mac: n.mac ?? null, state: neighState(n) }))
        .sort((a, b) => ipOrder(a.ip) - ipOrder(b.ip))
    : [];
  const fdb = dev
    ? s.fdb
        .filter((f) => f.ifindex === dev.index)
        .map((f) => ({ mac: f.mac, dst: f.dst ?? null, flags: [f.self ? 'self' : '', f.master ? 'master' : '', f.permanent ? 'permanent' : ''].filter(Boolean).join(' ') }))
        .sort((a, b) => ipOrder(a.dst ?? '') - ipOrder(b.dst ?? ''))
    : [];
  const routes = s.routes
    .filter((r) => r.family === C.AF_INET && r.table === C.RT_TABLE_MAIN)
    .map((r) => ({
      text: describeRoute(s, r),
      flannel: (dev !== undefined && r.oif === dev.index) || (backend === 'host-gw' && r.gateway !== undefined && peerIPs.has(r.gateway)),
    }));
  return { host, available: true, source, readAt: now.toISOString(), device, deviceNote, neigh, fdb, routes };
}
