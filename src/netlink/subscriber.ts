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
//    stops at once, and the worker closes the socket as soon as it is not
//    inside a request (see stop()).
//
// The socket is read in the shared netlink worker (thread.ts), the one
// WorkerTransport uses too: it waits in poll() on its notification sockets
// and a wake-up eventfd, with a timeout.

import * as C from './constants.js';
import { NetlinkError } from './errors.js';
import type { RtnlObject } from './rtnl.js';
import type { SockFilterInsn } from './filter.js';
import { NetlinkThread, type SubscribeInit } from './thread.js';

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
  /** Longest time the worker stays in poll() without looking for calls (it is woken for each), and the longest stop() waits. Default 200 ms. */
  pollIntervalMs?: number;
  /** A socket filter: notifications it drops never reach the worker (filter.ts). */
  filter?: readonly SockFilterInsn[];
}

const EPROTO = 71;

export class NetlinkSubscriber {
  /** Port id of the notification socket. */
  readonly portId: number;
  private readonly thread: NetlinkThread;
  private readonly ch: number;
  private readonly pollMs: number;
  private readonly life: Life;
  private stopped: Promise<void> | null = null;

  private constructor(thread: NetlinkThread, ch: number, portId: number, pollMs: number, life: Life) {
    this.thread = thread;
    this.ch = ch;
    this.portId = portId;
    this.pollMs = pollMs;
    this.life = life;
  }

  static start(opts: SubscriberOptions): Promise<NetlinkSubscriber> {
    const groups = opts.groups ?? ['link', 'neigh', 'route'];
    const init: SubscribeInit = {
      groups: groups.reduce((acc, g) => acc | GROUP_BITS[g], 0),
      memberships: [],
      rcvbuf: opts.rcvbuf ?? 8 << 20,
      pollMs: opts.pollIntervalMs ?? 200,
      ...(opts.filter ? { filter: opts.filter } : {}),
    };
    return new Promise<NetlinkSubscriber>((resolve, reject) => {
      const life: Life = { stopping: false, ended: false, held: true, onEnded: null };
      let sub: NetlinkSubscriber | undefined;
      // The subscription is over for good: no more events, and the worker
      // need not stay up for it.
      const end = (): void => {
        if (life.ended) return;
        life.ended = true;
        if (life.held) thread.unhold();
        thread.close(ch);
        life.onEnded?.();
      };
      const fail = (err: NetlinkError): void => {
        const quiet = life.stopping;
        end();
        if (!sub) reject(err);
        else if (!quiet) opts.onError?.(err);
      };
      const { thread, ch } = NetlinkThread.attach({
        onMessage: (m) => {
          if (life.stopping || life.ended) {
            if (m.type === 'closed' || m.type === 'fatal') end();
            return;
          }
          switch (m.type) {
            case 'ready':
              sub = new NetlinkSubscriber(thread, ch, m.portId, init.pollMs, life);
              resolve(sub);
              break;
            case 'events':
              for (const e of m.events) opts.onEvent(e);
              break;
            case 'overrun':
              opts.onOverrun?.();
              break;
            case 'decode-error':
              opts.onDecodeError?.(m.message);
              break;
            case 'fatal':
              fail(new NetlinkError({ errno: m.errno || EPROTO, op: m.op, detail: m.errno ? undefined : m.message }));
              break;
            case 'closed': // not asked for: cannot happen
              fail(new NetlinkError({ errno: EPROTO, op: 'netlink worker', detail: 'subscription closed unexpectedly' }));
              break;
          }
        },
        onDead: (err) => fail(new NetlinkError({ errno: EPROTO, op: 'netlink worker', detail: err.message })),
      });
      // a subscription keeps the process alive until unref() (as it did with a worker of its own)
      thread.hold();
      thread.post({ type: 'subscribe', ch, init });
    });
  }

  /**
   * Stops delivery at once and closes the socket. Resolves when the worker
   * has closed it, which is at once unless the worker is in the middle of a
   * long request for a WorkerTransport; then after one poll interval at most
   * (the socket is closed as soon as that request ends). Safe to call more
   * than once.
   */
  stop(): Promise<void> {
    if (this.stopped) return this.stopped;
    this.life.stopping = true;
    if (this.life.ended) return (this.stopped = Promise.resolve());
    this.stopped = new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.pollMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.life.onEnded = done;
    });
    // 'closed' (or the worker's death) comes back through the channel and ends the subscription
    this.thread.close(this.ch);
    return this.stopped;
  }

  /** Lets the process exit while subscribed (default: the subscription keeps it alive). */
  unref(): void {
    if (!this.life.held || this.life.ended) return;
    this.life.held = false;
    this.thread.unhold();
  }

  ref(): void {
    if (this.life.held || this.life.ended) return;
    this.life.held = true;
    this.thread.hold();
  }
}

/** A subscription's state, shared by the instance and the channel's handlers. */
interface Life {
  /** stop() was called: nothing more is delivered */
  stopping: boolean;
  /** the socket is closed or the worker is gone */
  ended: boolean;
  /** counted in the worker's keep-alive (see unref()) */
  held: boolean;
  onEnded: (() => void) | null;
}
