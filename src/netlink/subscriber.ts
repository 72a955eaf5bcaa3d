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
//  - `stop()` always completes within about one poll interval: the socket is
//    read in a worker thread that polls with a timeout and checks a shared
//    stop flag between polls.

import { Worker } from 'node:worker_threads';
import * as C from './constants.js';
import { NetlinkError } from './errors.js';
import type { RtnlObject } from './rtnl.js';
import type { SockFilterInsn } from './filter.js';

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
  /** Longest time the worker stays in poll() before re-checking the stop flag. Default 200 ms. */
  pollIntervalMs?: number;
  /** A socket filter: notifications it drops never reach the worker (filter.ts). */
  filter?: readonly SockFilterInsn[];
}

/** @internal Worker protocol. */
export interface WorkerInit {
  groups: number;
  memberships: number[];
  rcvbuf: number;
  pollMs: number;
  stop: SharedArrayBuffer;
  filter?: readonly SockFilterInsn[];
}

/** @internal Worker protocol. */
export type WorkerMessage =
  | { type: 'ready'; portId: number }
  | { type: 'events'; events: NetlinkEvent[] }
  | { type: 'overrun' }
  | { type: 'decode-error'; message: string }
  | { type: 'fatal'; errno: number; op: string; message: string };

const EPROTO = 71;

export class NetlinkSubscriber {
  /** Port id of the notification socket. */
  readonly portId: number;
  private readonly worker: Worker;
  private readonly stopFlag: Int32Array;
  private readonly exited: Promise<void>;
  private readonly pollMs: number;
  private stopping = false;

  private constructor(worker: Worker, stopFlag: Int32Array, portId: number, exited: Promise<void>, pollMs: number) {
    this.worker = worker;
    this.stopFlag = stopFlag;
    this.portId = portId;
    this.exited = exited;
    this.pollMs = pollMs;
  }

  static start(opts: SubscriberOptions): Promise<NetlinkSubscriber> {
    const groups = opts.groups ?? ['link', 'neigh', 'route'];
    const stopBuf = new SharedArrayBuffer(4);
    const init: WorkerInit = {
      groups: groups.reduce((acc, g) => acc | GROUP_BITS[g], 0),
      memberships: [],
      rcvbuf: opts.rcvbuf ?? 8 << 20,
      pollMs: opts.pollIntervalMs ?? 200,
      stop: stopBuf,
      ...(opts.filter ? { filter: opts.filter } : {}),
    };
    const worker = new Worker(new URL('./subscriber-worker.js', import.meta.url), {
      workerData: init,
      // a small young generation, as the request worker's (WORKER_LIMITS in transport.ts)
      resourceLimits: { maxYoungGenerationSizeMb: 4 },
    });
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));

    return new Promise<NetlinkSubscriber>((resolve, reject) => {
      let sub: NetlinkSubscriber | undefined;
      const fail = (err: NetlinkError): void => {
        if (!sub) reject(err);
        else if (!sub.stopping) opts.onError?.(err);
      };
      worker.on('message', (m: WorkerMessage) => {
        switch (m.type) {
          case 'ready':
            sub = new NetlinkSubscriber(worker, new Int32Array(stopBuf), m.portId, exited, init.pollMs);
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
        }
      });
      worker.on('error', (err) => fail(new NetlinkError({ errno: EPROTO, op: 'subscriber worker', detail: err.message })));
      worker.on('exit', (code) => {
        if (!sub) reject(new NetlinkError({ errno: EPROTO, op: 'subscriber worker', detail: `exited (${code}) before ready` }));
        else if (!sub.stopping) fail(new NetlinkError({ errno: EPROTO, op: 'subscriber worker', detail: `exited unexpectedly (${code})` }));
      });
    });
  }

  /** Stops delivery and closes the socket. Safe to call more than once. */
  async stop(): Promise<void> {
    this.stopping = true;
    Atomics.store(this.stopFlag, 0, 1);
    this.worker.removeAllListeners('message');
    // The worker sees the flag within one poll interval; terminate() is only a
    // backstop for a worker that is somehow not looping (it cannot interrupt
    // a native call, but then neither could anything else).
    const backstop = setTimeout(() => void this.worker.terminate(), this.pollMs * 5 + 2000);
    try {
      await this.exited;
    } finally {
      clearTimeout(backstop);
    }
  }

  /** Lets the process exit while subscribed (default: the subscription keeps it alive). */
  unref(): void {
    this.worker.unref();
  }

  ref(): void {
    this.worker.ref();
  }
}
