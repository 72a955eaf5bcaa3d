// UDP backend (spec §6): a TUN device `flannel0` carrying the whole flannel
// Network, and a userspace forwarder that sends each inner IPv4 packet, bare,
// as one UDP datagram to the peer owning the destination subnet — wire
// compatible with flannel's C proxy, so mixed clusters work.
//
// Design notes
// * Lease: only PublicIP (backendType ''), exactly what flannel publishes for
//   udp. Remote leases are not filtered by backend type (flannel doesn't).
// * Kernel state goes through the kernel port (KernelNet & HostPort: the TUN
//   device itself, its sysctls, and rtnetlink): MTU = external MTU − 28, address =
//   own subnet's network address /32, link up, one route for the Network via
//   the device. The TUN exists only while our fd is open, so stopping (or
//   crashing) removes the device and its route; this mode is not
//   zero-downtime, like flannel's.
// * The forwarder runs in two worker threads (worker.ts), one per direction,
//   never on the main event loop. Route changes are posted to the tx worker as
//   a whole new table; the data path never pauses for them.
// * Offloads (on by default, invisible on the wire): the TUN hands out TSO
//   super-packets that the tx worker cuts into MSS-sized segments and sends
//   with UDP GSO; the rx worker receives GRO trains and merges TCP segments
//   into TSO writes. Each datagram is still one complete inner packet.
// * If the TUN device disappears (someone deleted flannel0) the workers report
//   it; the backend asks the daemon for a reconcile (ctx.kick), and that run
//   rebuilds device, address, route and data path. A rebuild that fails is
//   tried again by the next run (the daemon's periodic check). The backend
//   runs no timers of its own: this host's addresses are re-read by every
//   reconcile, the periodic check included.
// * ⚠ Local deviations (nothing changes on the wire), see README.md: ICMP
//   requests to an unleased subnet get net-unreachable (flannel answers no
//   ICMP at all); flannel0 gets accept_local=1 so that error actually reaches
//   local senders (flannel's is dropped as a martian), and the rx worker
//   drops tunnelled packets claiming a local source in exchange;
//   disable_ipv6=1 on flannel0.

import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads';
import { formatIPv4, formatIPv4Net, ipv4NetContains, parseIPv4, unusablePublicIPv4, type IPv4Net } from '../../lease/ip.js';
import { leaseId, type Lease } from '../../lease/lease.js';
import type { HostPort, KernelNet, TunDevice } from '../../kernel/types.js';
import type { LeaseEvent } from '../../lease/tracker.js';
import { BackendError, ReconcileError, type Backend, type BackendContext, type BackendMetrics, type PublishedAttrs } from '../backend.js';
import { removeOtherBackends } from '../cleanup.js';
import { COUNTER_SLOTS, readStats, type UdpStats } from './counters.js';
import { openUdpSocket, type UdpSocket } from './device.js';
import * as N from './native.js';
import { parseUdpOptions, type UdpOptions } from './options.js';
import { encodeRoutes, type RouteEntry } from './packet.js';
import { CTRL_GEN, CTRL_LOCALS_GEN, CTRL_STOP, type LocalsUpdate, type RouteUpdate, type WorkerInit, type WorkerReport } from './worker.js';

export type { UdpStats } from './counters.js';

/** IPv4 (20) + UDP (8) */
export const UDP_OVERHEAD = 28;
export const TUN_TEMPLATE = 'flannel%d';

export interface UdpBackendOptions {
  /** rtnetlink, plus the TUN device and its sysctls (RtNetlink is both) */
  kernel: KernelNet & HostPort;
  /**
   * TSO/GSO/GRO offloads in the data path (default true). They change only
   * how many packets each system call moves, never what goes on the wire.
   */
  offload?: boolean;
  /** Longest a worker sits in poll() before re-checking the stop flag (default 100 ms). */
  pollMs?: number;
  /** TUN reads per tx batch and datagrams per recvmmsg (default 64). */
  batch?: number | undefined;
  /** SO_RCVBUF and SO_SNDBUF of the UDP socket (default 4 MiB; root may exceed rmem_max). */
  socketBufferBytes?: number | undefined;
  /** Device name or template (default `flannel%d`, which the kernel makes flannel0). */
  deviceName?: string;
}

export interface SkippedLease {
  id: string;
  reason: string;
}

/**
 * The route table the data path should have: remote subnet -> the peer's
 * public IP. Leases whose public IP cannot be a tunnel endpoint, that are
 * outside the Network, or that are our own subnet are skipped with a reason.
 */
export function desiredRoutes(remote: readonly Lease[], network: IPv4Net, own: IPv4Net | null): { entries: RouteEntry[]; skipped: SkippedLease[] } {
  const bySubnet = new Map<string, RouteEntry>();
  const skipped: SkippedLease[] = [];
  for (const l of remote) {
    const id = leaseId(l);
    const why = unusablePublicIPv4(l.attrs.publicIP);
    if (why) {
      skipped.push({ id, reason: `PublicIP ${formatIPv4(l.attrs.publicIP)} is ${why}` });
      continue;
    }
    if (!ipv4NetContains(network, l.subnet.ip) || l.subnet.prefix < network.prefix) {
      skipped.push({ id, reason: `subnet ${formatIPv4Net(l.subnet)} is outside Network ${formatIPv4Net(network)}` });
      continue;
    }
    if (own && own.ip === l.subnet.ip && own.prefix === l.subnet.prefix) {
      skipped.push({ id, reason: 'it is our own subnet' });
      continue;
    }
    bySubnet.set(formatIPv4Net(l.subnet), { net: l.subnet.ip, prefix: l.subnet.prefix, peer: l.attrs.publicIP });
  }
  const entries = [...bySubnet.values()].sort((a, b) => a.net - b.net || a.prefix - b.prefix);
  return { entries, skipped };
}

function routesKey(entries: readonly RouteEntry[]): string {
  return entries.map((e) => `${e.net}/${e.prefix}>${e.peer}`).join(',');
}

interface DataPath {
  tun: TunDevice;
  sock: UdpSocket;
  index: number;
  /** the tx worker checksums with the Wasm SIMD kernel */
  simd: boolean;
  workers: Worker[];
  exited: Promise<void>[];
  /** route tables to the tx worker */
  txPort: MessagePort;
  /** this host's addresses to the rx worker */
  rxPort: MessagePort;
  ctrl: Int32Array;
}

export class UdpBackend implements Backend {
  readonly type = 'udp';
  readonly opts: UdpOptions;
  private readonly k: KernelNet & HostPort;
  private readonly network: IPv4Net;
  private readonly offload: boolean;
  private readonly pollMs: number;
  private readonly batch: number;
  private readonly template: string;
  private own: Lease | null = null;
  private dp: DataPath | null = null;
  private readonly counters = new SharedArrayBuffer(COUNTER_SLOTS * 8);
  private entries: RouteEntry[] = [];
  private postedKey: string | null = null;
  private gen = 0;
  private localsKey: string | null = null;
  private closed = false;
  /** why the data path is down (null while it runs) */
  private failure: string | null = null;
  /** kernel changes the last reconcile made: 1 when it rebuilt the data path */
  lastChanges = 0;
  private readonly warnOnce = new Set<string>();
  /** how many times the data path was rebuilt after losing the device */
  recoveries = 0;

  constructor(
    private readonly ctx: BackendContext,
    private readonly o: UdpBackendOptions,
  ) {
    this.opts = parseUdpOptions(ctx.config.backend.raw);
    if (!ctx.config.network) throw new BackendError('udp: IPv4 Network is required (the UDP backend is IPv4 only)');
    this.network = ctx.config.network;
    this.k = o.kernel;
    this.offload = o.offload ?? true;
    this.pollMs = o.pollMs ?? 100;
    this.batch = o.batch ?? 64;
    this.template = o.deviceName ?? TUN_TEMPLATE;
    if (this.mtu < 68) throw new BackendError(`udp: external interface MTU ${ctx.extIface.mtu} leaves ${this.mtu} for flannel0 (minimum 68)`);
  }

  /** TUN MTU: external MTU minus the outer IPv4 and UDP headers. */
  get mtu(): number {
    return this.ctx.extIface.mtu - UDP_OVERHEAD;
  }

  /** The TUN device's name once active (flannel0 normally). */
  get deviceName(): string | null {
    return this.dp?.tun.name ?? null;
  }

  get deviceIndex(): number | null {
    return this.dp?.index ?? null;
  }

  /** Which offloads the running data path uses (and whether checksums run in Wasm SIMD). */
  get offloads(): { tso: boolean; gso: boolean; gro: boolean; simdChecksum: boolean } {
    const dp = this.dp;
    return { tso: dp?.tun.tso ?? false, gso: dp?.sock.gso ?? false, gro: dp?.sock.gro ?? false, simdChecksum: dp?.simd ?? false };
  }

  async prepare(): Promise<PublishedAttrs> {
    // Only PublicIP/PublicIPv6 in the lease, exactly as flannel's udp backend.
    return { backendType: '' };
  }

  async activate(own: Lease): Promise<{ mtu: number }> {
    if (this.closed) throw new BackendError('udp: backend is closed');
    if (!ipv4NetContains(this.network, own.subnet.ip)) {
      throw new BackendError(`udp: own subnet ${formatIPv4Net(own.subnet)} is outside Network ${formatIPv4Net(this.network)}`);
    }
    this.own = own;
    // A host switching from vxlan/host-gw: drop flannel.<VNI> and host-gw routes first.
    await removeOtherBackends(this.k, 'udp', this.network, this.ctx.extIface.index, this.ctx.log);
    this.dp = await this.start(own);
    this.postRoutes(true);
    await this.refreshLocals(true);
    const { tun, sock, index } = this.dp;
    this.ctx.log.info(
      `using ${tun.name} (index ${index}, MTU ${this.mtu}, address ${formatIPv4(own.subnet.ip)}/32); UDP ${formatIPv4(this.ctx.extIface.ifaceAddr)}:${this.opts.port}; offloads tso=${tun.tso} gso=${sock.gso} gro=${sock.gro} simd-checksum=${this.dp.simd}`,
    );
    return { mtu: this.mtu };
  }

  /** Opens the device and socket, programs the kernel, starts the workers. */
  private async start(own: Lease): Promise<DataPath> {
    const lib = N.libc();
    const tun = await this.openDevice();
    let sock: UdpSocket | null = null;
    let workers: Worker[] = [];
    const ctrl = new Int32Array(new SharedArrayBuffer(12));
    try {
      await this.deviceSysctls(tun.name);
      const index = await this.configureDevice(tun.name, own);
      sock = openUdpSocket(lib, {
        addr: this.ctx.extIface.ifaceAddr,
        port: this.opts.port,
        offload: this.offload,
        bufBytes: this.o.socketBufferBytes ?? 4 << 20,
      });
      const txChan = new MessageChannel();
      const rxChan = new MessageChannel();
      const base: Omit<WorkerInit, 'role' | 'gso' | 'coalesce' | 'updates'> = {
        tunFd: tun.fd,
        udpFd: sock.fd,
        port: this.opts.port,
        tunAddr: own.subnet.ip,
        ctrl: ctrl.buffer as SharedArrayBuffer,
        counters: this.counters,
        pollMs: this.pollMs,
        batch: this.batch,
      };
      const tx = this.spawn({ ...base, role: 'tx', gso: tun.tso && sock.gso, coalesce: false, updates: txChan.port2 }, [txChan.port2]);
      const rx = this.spawn({ ...base, role: 'rx', gso: false, coalesce: this.offload, updates: rxChan.port2 }, [rxChan.port2]);
      workers = [tx.worker, rx.worker];
      // allSettled, so a second failure is not left as an unhandled rejection.
      const started = await Promise.allSettled([tx.ready, rx.ready]);
      for (const r of started) if (r.status === 'rejected') throw r.reason;
      const simd = (started[0] as PromiseFulfilledResult<boolean>).value;
      const dp: DataPath = { tun, sock, index, simd, workers, exited: [tx.exited, rx.exited], txPort: txChan.port1, rxPort: rxChan.port1, ctrl };
      for (const [role, w] of [['tx', tx.worker], ['rx', rx.worker]] as const) {
        w.on('message', (m: WorkerReport) => this.onReport(dp, m));
        // A worker that dies without saying why (it reports its own errors
        // as 'fatal' first) still takes the data path down: rebuild it.
        w.on('exit', (code) => {
          if (Atomics.load(ctrl, CTRL_STOP) === 0) this.onReport(dp, { type: 'fatal', errno: 0, message: `${role} worker exited (${code})` });
        });
        w.on('error', (err) => this.onReport(dp, { type: 'fatal', errno: 0, message: `${role} worker failed: ${err.message}` }));
      }
      return dp;
    } catch (e) {
      Atomics.store(ctrl, CTRL_STOP, 1);
      await Promise.all(workers.map((w) => w.terminate()));
      if (sock) lib.close(sock.fd);
      tun.close();
      throw e instanceof BackendError ? e : new BackendError(`udp: ${(e as Error).message}`);
    }
  }

  private spawn(init: WorkerInit, transfer: MessagePort[] = []): { worker: Worker; ready: Promise<boolean>; exited: Promise<void> } {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: init, transferList: transfer });
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    const ready = new Promise<boolean>((resolve, reject) => {
      const timer = setTimeout(() => reject(new BackendError(`udp: ${init.role} worker did not start within 10 s`)), 10_000);
      const onMsg = (m: WorkerReport): void => {
        if (m.type === 'ready') {
          clearTimeout(timer);
          worker.off('message', onMsg);
          resolve(m.simd);
        } else if (m.type === 'fatal') {
          clearTimeout(timer);
          reject(new BackendError(`udp: ${m.message}`));
        }
      };
      worker.on('message', onMsg);
      worker.once('error', (err) => {
        clearTimeout(timer);
        reject(new BackendError(`udp: ${init.role} worker failed: ${err.message}`));
      });
      worker.once('exit', (code) => {
        clearTimeout(timer);
        reject(new BackendError(`udp: ${init.role} worker exited (${code}) before it was ready`));
      });
    });
    return { worker, ready, exited };
  }

  /**
   * Creates the TUN. A flannel0 already present is either a persistent TUN
   * (made by an admin or another tool), which we attach to, or in use by a
   * live process (another flanneld): then we refuse rather than run two data
   * paths for one Network. Anything else called flannel0 is left alone and
   * the kernel picks the next free name.
   */
  private async openDevice(): Promise<TunDevice> {
    if (!this.template.includes('%d')) return this.k.openTun({ name: this.template, offload: this.offload });
    const first = this.template.replace('%d', '0');
    const existing = await this.k.getLinkByName(first);
    if (existing?.kind === 'tun') {
      try {
        const tun = await this.k.openTun({ name: first, offload: this.offload });
        this.ctx.log.warn(`${first} already existed (a persistent TUN device); attached to it`);
        return tun;
      } catch (e) {
        if (e instanceof N.SyscallError && e.errno === N.EBUSY) {
          throw new BackendError(`udp: ${first} exists and is in use by another process (is another flanneld running?)`);
        }
        throw new BackendError(`udp: ${first} exists and cannot be attached to: ${(e as Error).message}`);
      }
    }
    if (existing) this.ctx.log.warn(`${first} exists and is not a TUN device (${existing.kind ?? 'no kind'}); leaving it alone`);
    try {
      return await this.k.openTun({ name: this.template, offload: this.offload });
    } catch (e) {
      throw new BackendError(`udp: cannot create the TUN device: ${(e as Error).message}`);
    }
  }

  /** MTU, address (own subnet's network address /32; stale Network addresses go), up, Network route. */
  private async configureDevice(name: string, own: Lease): Promise<number> {
    const link = await this.k.getLinkByName(name);
    if (!link) throw new BackendError(`udp: ${name} vanished right after it was created`);
    if (link.mtu !== this.mtu) await this.k.setMtu(link.index, this.mtu);
    const want = `${formatIPv4(own.subnet.ip)}/32`;
    const addrs = await this.k.listAddrs(link.index);
    if (!addrs.some((a) => a.cidr === want)) await this.k.addAddr(link.index, want);
    for (const a of addrs) {
      if (a.cidr !== want && ipv4NetContains(this.network, parseIPv4(a.cidr.split('/')[0]!))) await this.k.delAddr(link.index, a.cidr);
    }
    if (!link.up) await this.k.setLinkUp(link.index);
    await this.k.replaceRoute({ dst: formatIPv4Net(this.network), oif: link.index });
    return link.index;
  }

  private onReport(dp: DataPath, m: WorkerReport): void {
    if (m.type === 'warn') {
      this.ctx.log.warn(`data path: ${m.message}`);
      return;
    }
    if (m.type !== 'fatal' || this.closed || dp !== this.dp) return;
    this.ctx.log.error(`data path stopped: ${m.message}`);
    this.failure = m.message;
    this.ctx.kick?.('data path stopped');
  }

  /** Tears the data path down and builds it again (device, kernel state, workers, routes); true when it runs again. */
  private async recover(): Promise<boolean> {
    if (this.closed || !this.own) return false;
    const old = this.dp;
    this.dp = null;
    if (old) await this.teardown(old);
    try {
      this.dp = await this.start(this.own);
      this.postedKey = null;
      this.postRoutes(true);
      await this.refreshLocals(true);
      this.failure = null;
      this.recoveries++;
      this.ctx.log.info(`data path restored on ${this.dp.tun.name}`);
      return true;
    } catch (e) {
      const again = this.failure === (e as Error).message;
      this.failure = (e as Error).message;
      if (!again) this.ctx.log.error(`cannot restore the data path: ${this.failure}; trying again with every reconcile`);
      return false;
    }
  }

  async reconcile(remote: readonly Lease[], _events: readonly LeaseEvent[] = []): Promise<Error[]> {
    this.lastChanges = 0;
    // The data path stopped (a worker reported it) or an earlier rebuild failed.
    if (this.own && !this.closed && (this.failure !== null || !this.dp) && (await this.recover())) this.lastChanges = 1;
    const { entries, skipped } = desiredRoutes(remote, this.network, this.own?.subnet ?? null);
    for (const s of skipped) {
      const key = `${s.id}:${s.reason}`;
      if (!this.warnOnce.has(key)) {
        this.warnOnce.add(key);
        this.ctx.log.warn(`ignoring lease ${s.id}: ${s.reason}`);
      }
    }
    this.logChanges(this.entries, entries);
    this.entries = entries;
    this.postRoutes(false);
    if (this.own && !this.dp) return [new ReconcileError(`udp data path is down: ${this.failure ?? 'not running'}`, { code: 'DATA_PATH_DOWN' })];
    try {
      await this.refreshLocals(false);
    } catch (e) {
      return [new ReconcileError(`udp: cannot list local addresses: ${(e as Error).message}`, { cause: e })];
    }
    return [];
  }

  private logChanges(before: readonly RouteEntry[], after: readonly RouteEntry[]): void {
    const fmt = (e: RouteEntry) => `${formatIPv4Net({ ip: e.net, prefix: e.prefix })} -> ${formatIPv4(e.peer)}:${this.opts.port}`;
    const a = new Set(before.map(fmt));
    const b = new Set(after.map(fmt));
    for (const x of b) if (!a.has(x)) this.ctx.log.info(`route ${x} added`);
    for (const x of a) if (!b.has(x)) this.ctx.log.info(`route ${x} removed`);
  }

  /** Hands the current table to the tx worker if it differs from what it has. */
  private postRoutes(force: boolean): void {
    const dp = this.dp;
    if (!dp) return;
    const key = routesKey(this.entries);
    if (!force && key === this.postedKey) return;
    const update: RouteUpdate = { gen: ++this.gen, routes: encodeRoutes(this.entries) };
    dp.txPort.postMessage(update);
    Atomics.store(dp.ctrl, CTRL_GEN, update.gen);
    this.postedKey = key;
  }

  /**
   * Two per-device sysctls, through the kernel port (per network namespace,
   * like everything else we touch), set before the link comes up:
   * - accept_local=1: our ICMP net-unreachable comes from the TUN address, a
   *   local address, and with the default the kernel drops it as a martian, so
   *   it never reaches the sender (flannel's C proxy has exactly this
   *   problem). The rx worker drops tunnelled packets claiming a local
   *   source instead (see refreshLocals).
   * - disable_ipv6=1: the data path is IPv4 only; this keeps the kernel's
   *   IPv6 router solicitations and MLD reports off flannel0.
   */
  private async deviceSysctls(dev: string): Promise<void> {
    try {
      await this.k.setSysctl(`net/ipv4/conf/${dev}/accept_local`, '1');
    } catch (e) {
      this.ctx.log.warn(`cannot set accept_local on ${dev} (${(e as Error).message}); ICMP net-unreachable will not reach local senders`);
    }
    try {
      await this.k.setSysctl(`net/ipv6/conf/${dev}/disable_ipv6`, '1');
    } catch {
      // IPv6 disabled or absent: nothing to silence
    }
  }

  /**
   * Tells the rx worker this host's IPv4 addresses. With accept_local on
   * flannel0, an inner packet claiming one of them as its source would now be
   * accepted by the kernel; the worker drops those instead, which keeps the
   * kernel's usual protection against a peer impersonating this host.
   */
  private async refreshLocals(force: boolean): Promise<void> {
    const dp = this.dp;
    if (!dp || !this.own) return;
    const addrs = new Set<number>([this.own.subnet.ip]);
    for (const a of await this.k.listAddrs()) addrs.add(parseIPv4(a.cidr.split('/')[0]!));
    const sorted = [...addrs].sort((x, y) => x - y);
    const key = sorted.join(',');
    if (!force && key === this.localsKey) return;
    if (dp !== this.dp) return;
    const update: LocalsUpdate = { gen: ++this.gen, addrs: Uint32Array.from(sorted) };
    dp.rxPort.postMessage(update);
    Atomics.store(dp.ctrl, CTRL_LOCALS_GEN, update.gen);
    this.localsKey = key;
  }

  /** Counters of the data path (cumulative over recoveries). */
  stats(): UdpStats {
    return readStats(new Float64Array(this.counters), this.entries.length);
  }

  metrics(): BackendMetrics {
    return { udp: this.stats() };
  }

  private async teardown(dp: DataPath): Promise<void> {
    Atomics.store(dp.ctrl, CTRL_STOP, 1);
    const backstop = setTimeout(() => {
      for (const w of dp.workers) void w.terminate();
    }, this.pollMs * 5 + 2000);
    try {
      await Promise.all(dp.exited);
    } finally {
      clearTimeout(backstop);
    }
    dp.txPort.close();
    dp.rxPort.close();
    N.libc().close(dp.sock.fd);
    dp.tun.close(); // a non-persistent TUN (and its address and route) goes away here
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const dp = this.dp;
    this.dp = null;
    if (dp) await this.teardown(dp);
  }
}
