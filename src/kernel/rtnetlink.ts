// KernelNet over rtnetlink. This is the only code in the project that changes
// host networking; it never shells out. Each method is one request (or one
// dump) on the socket it was given, so it acts on that socket's network
// namespace.

import * as C from '../netlink/constants.js';
import { NetlinkError } from '../netlink/errors.js';
import { NetlinkSocket, type NetlinkSocketOptions } from '../netlink/socket.js';
import { AsyncTransport, InlineTransport, WorkerTransport, type NetlinkTransport } from '../netlink/transport.js';
import { decodeAddr, decodeLink, decodeNeighOrFdb, decodeRoute, isFdbEntry } from '../netlink/rtnl.js';
import * as R from '../netlink/requests.js';
import type { NetlinkRequest } from '../netlink/requests.js';
import type { NlMessage } from '../netlink/codec.js';
import { isAlreadyDone, vxlanMismatches, type Effect } from './idempotency.js';
import { readSysctl, writeSysctl } from './sysctl.js';
import { openTun } from './tun.js';
import type {
  Addr,
  AddrFilter,
  BatchFailure,
  BatchResult,
  FdbEntry,
  FdbSpec,
  HostPort,
  IpFamily,
  KernelNet,
  KernelOp,
  Link,
  Neigh,
  NeighKey,
  NeighSpec,
  Route,
  RouteFilter,
  RouteSpec,
  TunDevice,
  TunSpec,
  VxlanCreateSpec,
} from './types.js';

const EEXIST = 17;

const af = (f: IpFamily): number => (f === 6 ? C.AF_INET6 : C.AF_INET);

function neighReq(n: NeighSpec): NetlinkRequest {
  return R.newNeighRequest({ ifindex: n.ifindex, ip: n.ip, mac: n.mac, permanent: n.permanent ?? true }, 'replace');
}

function fdbSpec(f: FdbSpec): R.FdbSpec {
  return { ifindex: f.ifindex, mac: f.mac, dst: f.dst, self: f.self ?? true, permanent: f.permanent ?? true };
}

/** `adding`: a route we write gets our protocol mark unless the caller chose one. */
function routeSpec(r: RouteSpec, adding = false): R.RouteSpec {
  const out: R.RouteSpec = { dst: r.dst };
  if (r.protocol !== undefined) out.protocol = r.protocol;
  else if (adding) out.protocol = C.RTPROT_FLANNEL;
  if (r.gw !== undefined) out.gw = r.gw;
  if (r.oif !== undefined) out.oif = r.oif;
  if (r.onlink) out.onlink = true;
  if (r.table !== undefined) out.table = r.table;
  if (r.priority !== undefined) out.priority = r.priority;
  if (r.type !== undefined) out.type = r.type;
  return out;
}

/** Request and idempotency class of a batch step. */
function opRequest(op: KernelOp): { req: NetlinkRequest; effect: Effect } {
  switch (op.op) {
    case 'replaceNeigh':
      return { req: neighReq(op.neigh), effect: 'replace' };
    case 'delNeigh':
      return { req: R.delNeighRequest(op.neigh), effect: 'delete' };
    case 'replaceFdb':
      return { req: R.newFdbRequest(fdbSpec(op.fdb), 'replace'), effect: 'replace' };
    case 'appendFdb':
      return { req: R.newFdbRequest(fdbSpec(op.fdb), 'append'), effect: 'add' };
    case 'delFdb':
      return { req: R.delFdbRequest(fdbSpec(op.fdb)), effect: 'delete' };
    case 'replaceRoute':
      return { req: R.newRouteRequest(routeSpec(op.route, true), 'replace'), effect: 'replace' };
    case 'delRoute':
      return { req: R.delRouteRequest(routeSpec(op.route)), effect: 'delete' };
  }
}

const ENOENT = 2;
const ENODEV = 19;

/** A data message the kernel already filtered (strict dump checking honoured the request's filter). */
function kernelFiltered(m: NlMessage): boolean {
  return (m.header.flags & C.NLM_F_DUMP_FILTERED) !== 0;
}

/** What the list* dumps cost; the benchmark and tests read it. */
export interface DumpStats {
  dumps: number;
  /** data messages the kernel sent */
  received: number;
  /** of those, ones the kernel marked NLM_F_DUMP_FILTERED */
  kernelFiltered: number;
  /** entries returned to callers after our own filtering */
  kept: number;
}

/** Told how long each kernel round trip took (metrics). */
export type KernelObserver = (kind: 'request' | 'dump' | 'batch', seconds: number, ok: boolean) => void;

export class RtNetlink implements KernelNet, HostPort {
  private readonly sock: NetlinkTransport;
  /** set by whoever exports metrics; called after every round trip */
  observer: KernelObserver | null = null;
  readonly dumpStats: DumpStats = { dumps: 0, received: 0, kernelFiltered: 0, kept: 0 };

  constructor(transport: NetlinkTransport | NetlinkSocket) {
    const t = transport instanceof NetlinkSocket ? new InlineTransport(transport) : transport;
    // Time every round trip at one place, whatever the call.
    const timed =
      <A extends unknown[], R>(kind: 'request' | 'dump' | 'batch', f: (...a: A) => Promise<R>) =>
      async (...a: A): Promise<R> => {
        const t0 = performance.now();
        let ok = false;
        try {
          const r = await f(...a);
          ok = true;
          return r;
        } finally {
          this.observer?.(kind, (performance.now() - t0) / 1000, ok);
        }
      };
    this.sock = {
      portId: () => t.portId(),
      request: timed('request', t.request.bind(t)),
      dump: timed('dump', t.dump.bind(t)),
      batch: timed('batch', t.batch.bind(t)),
      close: () => t.close(),
    };
    this.inner = t;
  }

  private readonly inner: NetlinkTransport;

  /**
   * Opens a private request socket in the calling process' network namespace,
   * used on the calling thread (each call blocks it until the kernel answers).
   * For CLIs and tests; the daemon uses openAsync().
   */
  static open(opts?: NetlinkSocketOptions): RtNetlink {
    return new RtNetlink(NetlinkSocket.open(opts));
  }

  /**
   * The same, with the socket in a worker thread: the caller's event loop is
   * never blocked by the kernel (flanneld: health, store watch and timers keep
   * running during a 3000-request batch or under rtnl_lock contention).
   * A failure to open the socket is the first request's error.
   */
  static openInWorker(opts?: NetlinkSocketOptions): RtNetlink {
    return new RtNetlink(WorkerTransport.open(opts));
  }

  /**
   * The socket on this thread, every call that may wait in the kernel on the
   * libuv thread pool (AsyncTransport): the event loop is not blocked by the
   * kernel either, and no worker isolate is started. The daemon uses this.
   * A failure to open the socket is the first request's error.
   */
  static openAsync(opts?: NetlinkSocketOptions): RtNetlink {
    return new RtNetlink(AsyncTransport.open(opts));
  }

  /** The underlying socket when it runs on this thread (its portId identifies our own changes in notifications). */
  get socket(): NetlinkSocket {
    if (this.inner instanceof InlineTransport || this.inner instanceof AsyncTransport) return this.inner.socket;
    throw new Error('this RtNetlink runs its socket in a worker thread');
  }

  close(): void {
    this.sock.close();
  }

  ownPortId(): number {
    return this.sock.portId();
  }

  /** Runs a request; errors in `effect`'s benign set resolve as success. */
  private async exec(req: NetlinkRequest, effect: Effect): Promise<void> {
    try {
      await this.sock.request(req);
    } catch (err) {
      if (err instanceof NetlinkError && isAlreadyDone(effect, err)) return;
      throw err;
    }
  }

  // ------------------------------------------------------------- links

  async listLinks(): Promise<Link[]> {
    return (await this.sock.dump(R.dumpLinksRequest())).map(decodeLink);
  }

  async getLinkByName(name: string): Promise<Link | undefined> {
    return this.getLink({ name });
  }

  async getLinkByIndex(index: number): Promise<Link | undefined> {
    return this.getLink({ index });
  }

  private async getLink(by: { name: string } | { index: number }): Promise<Link | undefined> {
    try {
      const replies = await this.sock.request(R.getLinkRequest(by));
      const msg = replies.find((m) => m.header.type === C.RTM_NEWLINK);
      return msg ? decodeLink(msg) : undefined;
    } catch (err) {
      if (err instanceof NetlinkError && err.code === 'ENODEV') return undefined;
      throw err;
    }
  }

  async createVxlan(spec: VxlanCreateSpec): Promise<Link> {
    const req = R.newVxlanRequest(
      {
        name: spec.name,
        vni: spec.vni,
        ...(spec.port ? { port: spec.port } : {}),
        ...(spec.local !== undefined ? { local: spec.local } : {}),
        ...(spec.linkIndex !== undefined ? { linkIndex: spec.linkIndex } : {}),
        learning: spec.learning ?? false,
        gbp: spec.gbp ?? false,
        ...(spec.mtu !== undefined ? { mtu: spec.mtu } : {}),
        ...(spec.mac !== undefined ? { mac: spec.mac } : {}),
      },
      'create',
    );
    try {
      await this.sock.request(req);
    } catch (err) {
      if (!(err instanceof NetlinkError) || err.errno !== EEXIST) throw err;
      const existing = await this.getLink({ name: spec.name });
      if (!existing) throw err; // vanished in between; let the caller retry
      const diff = vxlanMismatches(existing, spec);
      if (diff.length > 0) {
        throw new NetlinkError({
          errno: EEXIST,
          op: req.op,
          detail: `existing ${spec.name} (#${existing.index}) differs: ${diff.join(', ')}`,
        });
      }
      const change: R.LinkChange = { index: existing.index };
      if (spec.mtu !== undefined && existing.mtu !== spec.mtu) change.mtu = spec.mtu;
      if (spec.mac !== undefined && existing.mac !== spec.mac.toLowerCase()) change.mac = spec.mac;
      if (change.mtu === undefined && change.mac === undefined) return existing;
      await this.sock.request(R.setLinkRequest(change));
    }
    const link = await this.getLink({ name: spec.name });
    if (!link) {
      throw new NetlinkError({ errno: 19, op: req.op, detail: `${spec.name} disappeared right after creation` });
    }
    return link;
  }

  async deleteLink(index: number): Promise<void> {
    await this.exec(R.delLinkRequest(index), 'delete');
  }

  async setLinkUp(index: number): Promise<void> {
    await this.exec(R.setLinkRequest({ index, up: true }), 'replace');
  }

  async setLinkDown(index: number): Promise<void> {
    await this.exec(R.setLinkRequest({ index, up: false }), 'replace');
  }

  async setMtu(index: number, mtu: number): Promise<void> {
    await this.exec(R.setLinkRequest({ index, mtu }), 'replace');
  }

  async setLinkAddress(index: number, mac: string): Promise<void> {
    await this.exec(R.setLinkRequest({ index, mac }), 'replace');
  }

  // ---------------------------------------------------------- addresses

  async listAddrs(index?: number, filter: AddrFilter = {}): Promise<Addr[]> {
    const family = filter.family === 6 ? C.AF_INET6 : filter.family === 'all' ? C.AF_UNSPEC : C.AF_INET;
    const all = (await this.sock.dump(R.dumpAddrsRequest(family))).map(decodeAddr);
    return index === undefined ? all : all.filter((a) => a.index === index);
  }

  async addAddr(index: number, cidr: string): Promise<void> {
    await this.exec(R.newAddrRequest({ index, cidr }, 'create'), 'add');
  }

  async delAddr(index: number, cidr: string): Promise<void> {
    await this.exec(R.delAddrRequest({ index, cidr }), 'delete');
  }

  // ------------------------------------------------------------- routes

  /**
   * Runs a dump that may be filtered by the kernel; `keep` re-applies the
   * filter to replies the kernel did not mark NLM_F_DUMP_FILTERED (no strict
   * checking, or a dump type that filters without saying so). `empty` lists
   * the errors that mean "nothing matches" for this filter.
   */
  private async filteredDump<T>(req: NetlinkRequest, decode: (m: NlMessage) => T | undefined, keep: (x: T) => boolean, empty: readonly number[] = []): Promise<T[]> {
    let msgs: NlMessage[];
    try {
      msgs = await this.sock.dump(req);
    } catch (err) {
      if (err instanceof NetlinkError && empty.includes(err.errno)) return [];
      throw err;
    }
    const st = this.dumpStats;
    st.dumps++;
    st.received += msgs.length;
    const out: T[] = [];
    for (const m of msgs) {
      const x = decode(m);
      if (x === undefined) continue;
      if (kernelFiltered(m)) st.kernelFiltered++;
      else if (!keep(x)) continue;
      out.push(x);
    }
    st.kept += out.length;
    return out;
  }

  async listRoutes(filter: RouteFilter = {}): Promise<Route[]> {
    const table = filter.table ?? C.RT_TABLE_MAIN;
    const f: R.RouteDumpFilter = {};
    if (table !== 'all') f.table = table;
    if (filter.oif !== undefined) f.oif = filter.oif;
    if (filter.protocol !== undefined) f.protocol = filter.protocol;
    // A table that does not exist yet (ENOENT) or a device that does not (ENODEV) holds no routes.
    return this.filteredDump(
      R.dumpRoutesRequest(af(filter.family ?? 4), f),
      decodeRoute,
      (r) => (table === 'all' || r.table === table) && (filter.oif === undefined || r.oif === filter.oif) && (filter.protocol === undefined || r.protocol === filter.protocol),
      [ENOENT, ENODEV],
    );
  }

  async replaceRoute(route: RouteSpec): Promise<void> {
    await this.exec(R.newRouteRequest(routeSpec(route, true), 'replace'), 'replace');
  }

  async delRoute(route: RouteSpec): Promise<void> {
    await this.exec(R.delRouteRequest(routeSpec(route)), 'delete');
  }

  // --------------------------------------------------------- neighbours

  async listNeighs(index?: number, family: IpFamily = 4): Promise<Neigh[]> {
    return this.filteredDump(
      R.dumpNeighsRequest(af(family), index),
      (m) => {
        const n = decodeNeighOrFdb(m);
        return isFdbEntry(n) ? undefined : n;
      },
      (n) => index === undefined || n.ifindex === index,
      [ENODEV],
    );
  }

  async replaceNeigh(neigh: NeighSpec): Promise<void> {
    await this.exec(neighReq(neigh), 'replace');
  }

  async delNeigh(neigh: NeighKey): Promise<void> {
    await this.exec(R.delNeighRequest(neigh), 'delete');
  }

  // ---------------------------------------------------------------- fdb

  async listFdb(index?: number): Promise<FdbEntry[]> {
    // The kernel walks only the given device under strict checking but never
    // marks FDB replies as filtered, so the ifindex check always runs (cheap
    // on what is left).
    return this.filteredDump(
      R.dumpFdbRequest(index),
      (m) => {
        const f = decodeNeighOrFdb(m);
        return isFdbEntry(f) && (index === undefined || f.ifindex === index) ? f : undefined;
      },
      () => true,
      [ENODEV],
    );
  }

  /** Whether dumps are filtered by the kernel (NETLINK_GET_STRICT_CHK on the request socket); unknown (undefined) for a worker socket. */
  get strictDumps(): boolean | undefined {
    if (this.inner instanceof InlineTransport) return this.inner.socket.strictCheck;
    if (this.inner instanceof AsyncTransport) {
      try {
        return this.inner.socket.strictCheck;
      } catch {
        return undefined; // the socket failed to open
      }
    }
    return undefined;
  }

  async replaceFdb(fdb: FdbSpec): Promise<void> {
    await this.exec(R.newFdbRequest(fdbSpec(fdb), 'replace'), 'replace');
  }

  async appendFdb(fdb: FdbSpec): Promise<void> {
    await this.exec(R.newFdbRequest(fdbSpec(fdb), 'append'), 'add');
  }

  async delFdb(fdb: FdbSpec): Promise<void> {
    await this.exec(R.delFdbRequest(fdbSpec(fdb)), 'delete');
  }

  // -------------------------------------------------------------- batch

  async applyBatch(ops: readonly KernelOp[]): Promise<BatchResult> {
    const started = performance.now();
    // Build every request first so a malformed spec (caller bug) throws
    // before anything is sent.
    const planned = ops.map(opRequest);
    const replies = await this.sock.batch(planned.map((p) => p.req));
    const failures: BatchFailure[] = [];
    replies.forEach((reply, i) => {
      if (reply.ok || isAlreadyDone(planned[i]!.effect, reply.error)) return;
      failures.push({ index: i, op: ops[i]!, error: reply.error });
    });
    return {
      total: ops.length,
      succeeded: ops.length - failures.length,
      failures,
      durationMs: performance.now() - started,
    };
  }

  // ------------------------------------------- host port (not rtnetlink)
  // Sysctls and TUN devices act on this process's network namespace, which
  // is the socket's: the socket is opened by this process (or its worker).

  async getSysctl(key: string): Promise<string | null> {
    return readSysctl(key);
  }

  async setSysctl(key: string, value: string): Promise<void> {
    writeSysctl(key, value);
  }

  async openTun(spec: TunSpec): Promise<TunDevice> {
    return openTun(spec);
  }
}
