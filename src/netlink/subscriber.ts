// Kernel change notifications (links, neighbours/FDB, routes, addresses).
//
// Contract:
//  - `NetlinkSubscriber.start()` resolves once the notification socket is
//    bound: every change made after that is delivered (or signalled as an
//    overrun).
//  - Events arrive on the main thread through `onEvent`, decoded, in kernel
//    order. `pid` is the netlink port id of the socket whose request caused
//    the change (compare with NetlinkSocket.portId to skip your own), 0 for
//    changes the kernel made by itself.
//  - `onOverrun` means the kernel dropped notifications (ENOBUFS): the
//    listener's view is stale and must be rebuilt by re-dumping and
//    reconciling. The subscription itself continues.
//  - `onError` means the subscription has ended for good (socket failure).
//  - `stop()` always completes within about one poll interval: delivery
//    stops at once, and the socket is closed when the wait in progress ends.
//
// The socket lives on this thread; the wait does not: a loop of poll()s,
// each bounded by the poll interval, runs on a libuv thread-pool thread
// (koffi .async, NetlinkSocket.waitReadable), and when the socket is readable
// this thread reads it with MSG_DONTWAIT until it is empty (at most
// MAX_DRAIN datagrams, then it polls again), decodes and delivers. The cost:
// while subscribed, one of the pool's threads (UV_THREADPOOL_SIZE, 4 by
// default, shared with fs, dns.lookup and the request socket's waits) is
// nearly always in poll(); each interval without news costs one wake-up.
// The kernel socket filter (filter.ts) keeps uninteresting notifications
// from waking it at all.
//
// The poll() also watches an eventfd of the subscription's, which stop() and
// process exit write: a pool thread inside poll() cannot be interrupted, and
// Node's exit waits for the pool's threads, so without it process.exit()
// would wait out the poll interval.

import { closeSync, writeSync } from 'node:fs';
import * as C from './constants.js';
import { NetlinkDecodeError, NetlinkError } from './errors.js';
import { libc } from './libc.js';
import { decodeRtnlMessage, type RtnlObject } from './rtnl.js';
import type { SockFilterInsn } from './filter.js';
import { NetlinkSocket } from './socket.js';

export type NetlinkEvent = RtnlObject & {
  /** nlmsg_pid of the notification: port id of the requester, 0 for the kernel. */
  pid: number;
};

export type SubscriberGroup = 'link' | 'neigh' | 'route' | 'route6' | 'addr';

const GROUP_BITS: Record<SubscriberGroup, number> = {
  link: C.RTMGRP_LINK,
  // RTNLGRP_NEIGH carries both IP neighbours and AF_BRIDGE FDB entries.
  neigh: C.RTMGRP_NEIGH,
  route: C.RTMGRP_IPV4_ROUTE,
  route6: C.RTMGRP_IPV6_ROUTE,
  addr: C.RTMGRP_IPV4_IFADDR,
};

export interface SubscriberOptions {
  /** Default ['link', 'neigh', 'route']. */
  groups?: readonly SubscriberGroup[];
  onEvent: (event: NetlinkEvent) => void;
  /** Notifications were lost; re-dump and reconcile. */
  onOverrun?: () => void;
  /** A notification could not be decoded (it was skipped). */
  onDecodeError?: (message: string) => void;
  /** The subscription ended because of an error; no more events will come. */
  onError?: (err: NetlinkError) => void;
  /** Kernel receive buffer; default 8 MiB (SO_RCVBUFFORCE, falling back to SO_RCVBUF). */
  rcvbuf?: number;
  /** Longest single poll() on the thread pool, and the longest stop() waits. Default 200 ms. */
  pollIntervalMs?: number;
  /** A socket filter: notifications it drops never reach the socket (filter.ts). */
  filter?: readonly SockFilterInsn[];
}

const EPROTO = 71;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
const WAKE = new Uint8Array(new BigUint64Array([1n]).buffer);
/** Datagrams read per wake-up before polling again, bounding one turn of this thread under bursts. */
const MAX_DRAIN = 512;

export class NetlinkSubscriber {
  /** Port id of the notification socket. */
  readonly portId: number;
  private readonly sock: NetlinkSocket;
  private readonly opts: SubscriberOptions;
  private readonly pollMs: number;
  private stopping = false;
  /** counted in the process' keep-alive (see unref()) */
  private held = true;
  private readonly ended: Promise<void>;
  /** eventfd that ends the poll in progress (stop(), process exit); closed with the socket */
  private readonly wakeFd: number;

  private constructor(sock: NetlinkSocket, wakeFd: number, opts: SubscriberOptions) {
    this.sock = sock;
    this.wakeFd = wakeFd;
    this.portId = sock.portId;
    this.opts = opts;
    this.pollMs = Math.max(1, opts.pollIntervalMs ?? 200);
    this.ended = this.run();
  }

  static start(opts: SubscriberOptions): Promise<NetlinkSubscriber> {
    const groups = opts.groups ?? ['link', 'neigh', 'route'];
    try {
      // socket, filter, bind: none of them waits
      const sock = NetlinkSocket.open({
        groups: groups.reduce((acc, g) => acc | GROUP_BITS[g], 0),
        rcvbuf: opts.rcvbuf ?? 8 << 20,
        ...(opts.filter ? { filter: opts.filter } : {}),
      });
      // best effort: without it, stop() and exit wait for the poll interval
      const wakeFd = libc().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      return Promise.resolve(new NetlinkSubscriber(sock, wakeFd, opts));
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private readonly onProcessExit = (): void => this.wake();

  private wake(): void {
    if (this.wakeFd < 0) return;
    try {
      writeSync(this.wakeFd, WAKE);
    } catch {
      // cannot happen with an open eventfd; the poll interval ends the wait
    }
  }

  private async run(): Promise<void> {
    process.on('exit', this.onProcessExit);
    try {
      while (!this.stopping) {
        // A pending pool call keeps the process alive; unref'd, the next
        // poll starts from an unref'd timer, so an otherwise idle process
        // exits within one poll interval.
        if (!this.held) await new Promise<void>((r) => setTimeout(r, 0).unref());
        if (this.stopping) break;
        const readable = await this.sock.waitReadable(this.pollMs, this.wakeFd);
        if (this.stopping) break;
        if (readable) this.drain();
      }
    } catch (err) {
      if (!this.stopping) {
        this.stopping = true;
        const e = err instanceof NetlinkError ? err : new NetlinkError({ errno: EPROTO, op: 'netlink subscriber', detail: err instanceof Error ? err.message : String(err) });
        this.opts.onError?.(e);
      }
    } finally {
      process.off('exit', this.onProcessExit);
      // only now: no pool thread is polling the fds any more
      this.sock.close();
      if (this.wakeFd >= 0) closeSync(this.wakeFd);
    }
  }

  /** Reads and delivers what the socket has queued (at most MAX_DRAIN datagrams). */
  private drain(): void {
    for (let i = 0; i < MAX_DRAIN && !this.stopping; i++) {
      const r = this.sock.receive(0);
      if (r.kind === 'timeout') return;
      if (r.kind === 'overrun') {
        this.opts.onOverrun?.();
        continue;
      }
      for (const msg of r.messages) {
        if (this.stopping) return;
        let obj: RtnlObject | null | undefined;
        try {
          obj = decodeRtnlMessage(msg);
        } catch (err) {
          // One undecodable notification must not end the subscription; report it
          // so the owner can treat it like an overrun (re-dump) if it cares.
          if (!(err instanceof NetlinkDecodeError)) throw err;
          this.opts.onDecodeError?.(err.message);
          continue;
        }
        if (obj) this.opts.onEvent({ ...obj, pid: msg.header.pid });
      }
    }
  }

  /**
   * Stops delivery at once and closes the socket. Resolves when it is closed,
   * which is when the poll() in progress on the thread pool returns: at once
   * (the eventfd wakes it), within one poll interval at worst. Safe to call
   * more than once.
   */
  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.wake();
    }
    return this.ended;
  }

  /** Lets the process exit while subscribed (default: the subscription keeps it alive); it exits within one poll interval of becoming idle. */
  unref(): void {
    this.held = false;
  }

  ref(): void {
    this.held = true;
  }
}
