// The host-networking API the daemon and backends program against. The real
// implementation (RtNetlink) talks rtnetlink; tests can supply an in-memory
// fake with the same shape. Methods are async so either kind fits, even
// though the rtnetlink one completes synchronously.
//
// Shared contract for every implementation:
//  - IPv4 addresses are dotted quads, prefixes 'a.b.c.d/len', MACs lower-case
//    colon hex; interfaces are identified by ifindex.
//  - Idempotent outcomes are successes (see idempotency.ts): deleting what is
//    already gone, adding an identical address, creating a VXLAN device that
//    already exists with the same parameters.
//  - Everything else rejects with NetlinkError (errno/code preserved).

import type { NetlinkError } from '../netlink/errors.js';
import type * as R from '../netlink/requests.js';
import type { Addr, FdbEntry, Link, Neigh, Route, VxlanInfo } from '../netlink/rtnl.js';

export type { Addr, FdbEntry, Link, Neigh, Route, VxlanInfo };

export interface VxlanCreateSpec {
  name: string;
  vni: number;
  /** UDP destination port; 0 or undefined leaves the kernel default (8472). */
  port?: number;
  /** Local VTEP address (IFLA_VXLAN_LOCAL). */
  local?: string;
  /** Underlay interface index (IFLA_VXLAN_LINK). */
  linkIndex?: number;
  /** Source-MAC learning. Default false: flannel programs FDB entries itself. */
  learning?: boolean;
  /** Group Based Policy extension. Default false. */
  gbp?: boolean;
  mtu?: number;
  mac?: string;
}

/** A permanent (by default) IPv4 neighbour; the codec's NeighSpec without raw NUD state. */
export type NeighSpec = Pick<R.NeighSpec, 'ifindex' | 'ip' | 'mac' | 'permanent'>;

export type NeighKey = Pick<R.NeighSpec, 'ifindex' | 'ip'>;

/** A VXLAN `self` FDB entry towards a remote VTEP (dst required here). */
export type FdbSpec = Pick<R.FdbSpec, 'ifindex' | 'mac' | 'self' | 'permanent'> & { dst: string };

/**
 * An IPv4 route as backends need it: the codec's RouteSpec without
 * scope/prefsrc tuning. `protocol`: routes we add default to RTPROT_FLANNEL
 * (our ownership mark); a delete without it matches any protocol.
 */
export type RouteSpec = Pick<R.RouteSpec, 'dst' | 'gw' | 'oif' | 'onlink' | 'table' | 'priority' | 'protocol'> & { type?: 'unicast' | 'blackhole' };

/** Which addresses listAddrs returns: IPv4 (the default), IPv6, or both. */
export interface AddrFilter {
  family?: 4 | 6 | 'all';
}
/** Address family of a listing: 4 (the default everywhere) or 6. */
export type IpFamily = 4 | 6;

/** What listRoutes returns; the kernel applies these itself where it can (strict dump checking). */
export interface RouteFilter {
  /** Table to list; default RT_TABLE_MAIN, 'all' for every table. */
  table?: number | 'all';
  oif?: number;
  /** IPv4 routes (default) or IPv6 routes. */
  family?: IpFamily;
  /** Only routes with this rtm_protocol (e.g. RTPROT_FLANNEL). */
  protocol?: number;
}

/** One step of a batch. */
export type KernelOp =
  | { op: 'replaceNeigh'; neigh: NeighSpec }
  | { op: 'delNeigh'; neigh: NeighKey }
  | { op: 'replaceFdb'; fdb: FdbSpec }
  | { op: 'appendFdb'; fdb: FdbSpec }
  | { op: 'delFdb'; fdb: FdbSpec }
  | { op: 'replaceRoute'; route: RouteSpec }
  | { op: 'delRoute'; route: RouteSpec };

export interface BatchFailure {
  /** Position in the submitted list. */
  index: number;
  op: KernelOp;
  error: NetlinkError;
}

export interface BatchResult {
  total: number;
  /** Includes idempotent outcomes (e.g. deleting an absent entry). */
  succeeded: number;
  failures: BatchFailure[];
  durationMs: number;
}

export interface KernelNet {
  /**
   * The netlink port id our requests carry (0 while unknown). Kernel
   * notifications caused by our own requests carry it as their pid, so a
   * backend can tell its own deletions from someone else's.
   */
  ownPortId?(): number;
  listLinks(): Promise<Link[]>;
  /** undefined when no such device. */
  getLinkByName(name: string): Promise<Link | undefined>;
  getLinkByIndex(index: number): Promise<Link | undefined>;
  /**
   * Creates a VXLAN device (down). If one with that name exists with the
   * same VXLAN parameters (vni, port, local, underlay, learning, gbp) it is
   * reused, with mtu/mac brought in line; if it differs, rejects with EEXIST
   * so the caller can decide to delete and recreate.
   */
  createVxlan(spec: VxlanCreateSpec): Promise<Link>;
  deleteLink(index: number): Promise<void>;
  setLinkUp(index: number): Promise<void>;
  setLinkDown(index: number): Promise<void>;
  setMtu(index: number, mtu: number): Promise<void>;
  setLinkAddress(index: number, mac: string): Promise<void>;

  /** Addresses of one interface or all: IPv4 unless `filter.family` says otherwise. */
  listAddrs(index?: number, filter?: AddrFilter): Promise<Addr[]>;
  addAddr(index: number, cidr: string): Promise<void>;
  delAddr(index: number, cidr: string): Promise<void>;

  listRoutes(filter?: RouteFilter): Promise<Route[]>;
  replaceRoute(route: RouteSpec): Promise<void>;
  delRoute(route: RouteSpec): Promise<void>;

  /** IPv4 (default) or IPv6 neighbours, of one interface or all. */
  listNeighs(index?: number, family?: IpFamily): Promise<Neigh[]>;
  replaceNeigh(neigh: NeighSpec): Promise<void>;
  delNeigh(neigh: NeighKey): Promise<void>;

  /** Bridge/VXLAN FDB entries, of one interface or all. */
  listFdb(index?: number): Promise<FdbEntry[]>;
  replaceFdb(fdb: FdbSpec): Promise<void>;
  appendFdb(fdb: FdbSpec): Promise<void>;
  /** Removes the entry for mac -> dst. */
  delFdb(fdb: FdbSpec): Promise<void>;

  /**
   * Applies many neighbour/FDB/route changes at once. Never rejects for
   * per-item kernel errors; they are listed in `failures`.
   */
  applyBatch(ops: readonly KernelOp[]): Promise<BatchResult>;
}

export interface TunSpec {
  /** name or template (`flannel%d`) */
  name: string;
  /** ask the kernel for TSO super-packets and checksum offload */
  offload: boolean;
}

/** An open TUN device; it exists (unless persistent) while the fd is open. */
export interface TunDevice {
  readonly fd: number;
  /** the name the kernel gave it (flannel0 normally) */
  readonly name: string;
  /** TUNSETOFFLOAD(CSUM|TSO4) succeeded: reads may return TSO super-packets with partial checksums */
  readonly tso: boolean;
  /** Closes the fd (idempotent). */
  close(): void;
}

/**
 * The host outside rtnetlink: sysctls and TUN devices. Same network namespace
 * as the KernelNet it comes with (RtNetlink implements both), so everything a
 * backend does to the host goes through one port that tests can fake.
 */
export interface HostPort {
  /** /proc/sys/<key>, key with slashes ('net/ipv4/ip_forward'); null when absent. */
  getSysctl(key: string): Promise<string | null>;
  /** Rejects when the sysctl is absent or cannot be written. */
  setSysctl(key: string, value: string): Promise<void>;
  /** Opens (creating if needed) a TUN device; rejects with SyscallError (errno preserved, EBUSY when in use). */
  openTun(spec: TunSpec): Promise<TunDevice>;
}
