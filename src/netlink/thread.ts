// The netlink worker thread, shared: every WorkerTransport (request socket)
// of this thread runs its socket in ONE worker (netlink-worker.ts). A worker
// costs an isolate (~10 MB of RSS) and a koffi load (~20 ms); flanneld no
// longer starts one (issue 11): it uses AsyncTransport and the main-thread
// NetlinkSubscriber, whose kernel waits run on the libuv thread pool. The
// worker remains for callers that want every byte of netlink work (decoding
// included) off their thread, and as the reference the tests and benchmarks
// compare against.
//
// How the worker waits: it blocks in poll() on an eventfd, with a timeout.
// The main thread posts a call with postMessage and then, if the worker said
// it is about to sleep (a shared flag), adds 1 to the eventfd with
// fs.writeSync: the main thread needs no koffi for this and never waits (the
// eventfd is non-blocking and its counter cannot fill). The worker takes
// calls synchronously with receiveMessageOnPort and handles them one at a
// time, in order, with the synchronous NetlinkSocket.
//
// Why an eventfd rather than a pipe: one fd, and a write can never block or
// fail on a full buffer.
//
// Lifetime: the worker is started by the first open channel and told to exit
// when the last one closes; the next open starts a new one. It keeps the
// process alive only while a request is in flight. The eventfd is closed by
// the main thread after the worker exited, so the main thread never writes to
// an fd number that the worker has closed and something else may have reused.

import { closeSync, writeSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { NlMessage } from './codec.js';
import type { NetlinkRequest } from './requests.js';
import type { BatchOptions, DumpOptions, NetlinkSocketOptions, RequestOptions } from './socket.js';

// ------------------------------------------------------------ wire format

/** A NetlinkError as it crosses the thread boundary. */
export interface ErrorWire {
  netlink: boolean;
  errno: number;
  op: string;
  extAck?: string;
  extAckOffset?: number;
  message: string;
}

/** One request on a request channel. */
export type WorkerCall =
  | { id: number; kind: 'request' | 'dump'; req: NetlinkRequest; opts?: RequestOptions | DumpOptions }
  | { id: number; kind: 'batch'; reqs: NetlinkRequest[]; opts?: BatchOptions };

/** Its answer. */
export type WorkerReply =
  | { id: number; ok: true; messages: NlMessage[] }
  /** a dump's or request's messages packed back to back in wire format, in one transferred buffer (see packMessages) */
  | { id: number; ok: true; packed: ArrayBuffer }
  | { id: number; ok: true; replies: Array<{ ok: true; messages: NlMessage[] } | { ok: false; error: ErrorWire }> }
  | { id: number; ok: false; error: ErrorWire };

/** Main thread → worker. `ch` names a transport's socket. */
export type ThreadCall =
  | { type: 'open'; ch: number; opts: Omit<NetlinkSocketOptions, 'libc'> }
  | { type: 'call'; ch: number; call: WorkerCall }
  | { type: 'close'; ch: number }
  | { type: 'exit' };

/** Worker → main thread. */
export type ThreadMessage =
  | { type: 'up'; wakeFd: number }
  /** a socket is open and bound */
  | { type: 'ready'; ch: number; portId: number }
  | { type: 'reply'; ch: number; reply: WorkerReply }
  /** the channel's socket is closed (answer to 'close') */
  | { type: 'closed'; ch: number };

export interface ThreadInit {
  /** Int32 [0]: the worker's state, AWAKE or SLEEPING (see NetlinkThread.wake) */
  state: SharedArrayBuffer;
}

export const AWAKE = 0;
export const SLEEPING = 1;

/**
 * The netlink worker's young generation: V8's default (up to 3 x 16 MB on
 * 64-bit) grows to its maximum during a batch of thousands of requests and its
 * pages stay committed afterwards, so the worker would hold tens of MB of RSS
 * after one 5000-peer burst. Objects outlive the young generation only for a
 * request's lifetime, so a small one costs a few more scavenges and no pauses
 * worth measuring (bench:control, issue 11).
 */
export const WORKER_LIMITS = { maxYoungGenerationSizeMb: 4 } as const;

// ------------------------------------------------------------ main side

/** What a channel's owner hears from the worker. */
export interface ChannelOwner {
  onMessage(m: Exclude<ThreadMessage, { type: 'up' }>): void;
  /** The worker failed or exited; nothing more will come. */
  onDead(err: Error): void;
}

const WAKE = new Uint8Array(new BigUint64Array([1n]).buffer);

let current: NetlinkThread | null = null;

export class NetlinkThread {
  private readonly worker: Worker;
  private readonly state: Int32Array;
  private readonly owners = new Map<number, ChannelOwner>();
  private nextCh = 1;
  /** channels opened and not yet closed by their owner */
  private readonly openChs = new Set<number>();
  /** reasons to keep the process alive (requests in flight) */
  private holds = 0;
  private wakeFd = -1;
  private dead: Error | null = null;

  private constructor() {
    const state = new SharedArrayBuffer(4);
    this.state = new Int32Array(state);
    this.worker = new Worker(new URL('./netlink-worker.js', import.meta.url), { workerData: { state } satisfies ThreadInit, resourceLimits: WORKER_LIMITS });
    this.worker.unref();
    this.worker.on('message', (m: ThreadMessage) => this.onMessage(m));
    this.worker.on('error', (e) => this.die(new Error(`netlink worker failed: ${e.message}`)));
    process.on('exit', this.onProcessExit);
    this.worker.on('exit', (code) => {
      process.off('exit', this.onProcessExit);
      this.die(new Error(`netlink worker exited (code ${code})`));
      // Only now: the worker can no longer be polling it, and we write it no more.
      if (this.wakeFd >= 0) {
        try {
          closeSync(this.wakeFd);
        } catch {
          // already gone; nothing to do
        }
        this.wakeFd = -1;
      }
    });
  }

  /**
   * The process is exiting: Node then stops the worker, but cannot interrupt
   * it inside poll(), so the exit would wait for the poll timeout. Wake it.
   */
  private readonly onProcessExit = (): void => {
    if (this.wakeFd < 0 || this.dead) return;
    this.worker.postMessage({ type: 'exit' } satisfies ThreadCall);
    try {
      writeSync(this.wakeFd, WAKE);
    } catch {
      // the poll timeout ends it
    }
  };

  /** Opens a channel on the shared worker (starting one if none runs); the caller then posts 'open' on it. */
  static attach(owner: ChannelOwner): { thread: NetlinkThread; ch: number } {
    current ??= new NetlinkThread();
    const ch = current.nextCh++;
    current.owners.set(ch, owner);
    current.openChs.add(ch);
    return { thread: current, ch };
  }

  /** The running shared worker's thread id, if one runs (tests). */
  static get threadId(): number | null {
    return current ? current.worker.threadId : null;
  }

  post(m: ThreadCall, transfer: ArrayBuffer[] = []): void {
    if (this.dead) return;
    this.worker.postMessage(m, transfer);
    this.wake();
  }

  /**
   * Wakes the worker if it is (about to be) asleep in poll(). The worker sets
   * SLEEPING, then looks at its port once more, then polls; we post first and
   * then look at the flag, so either it sees the message or we see SLEEPING.
   * Before the worker reported its eventfd nothing is written: it looks at
   * its port before it first sleeps, and we wake it once when the fd comes.
   */
  private wake(): void {
    if (this.wakeFd < 0) return;
    if (Atomics.exchange(this.state, 0, AWAKE) !== SLEEPING) return;
    try {
      writeSync(this.wakeFd, WAKE);
    } catch {
      // cannot happen with an open eventfd; at worst the worker's poll timeout picks the call up
    }
  }

  /**
   * The owner is done with channel `ch`: its socket is closed after the
   * calls already posted. The worker exits once no channel is open.
   */
  close(ch: number): void {
    if (!this.openChs.delete(ch)) return;
    this.post({ type: 'close', ch });
    if (this.openChs.size === 0) {
      this.post({ type: 'exit' });
      if (current === this) current = null;
    }
  }

  hold(): void {
    if (this.holds++ === 0) this.worker.ref();
  }

  unhold(): void {
    if (--this.holds === 0) this.worker.unref();
  }

  private onMessage(m: ThreadMessage): void {
    if (m.type === 'up') {
      this.wakeFd = m.wakeFd;
      // calls posted before now did not wake it (see wake())
      this.wake();
      return;
    }
    const owner = this.owners.get(m.ch);
    if (m.type === 'closed') this.owners.delete(m.ch);
    owner?.onMessage(m);
  }

  private die(err: Error): void {
    if (current === this) current = null;
    if (this.dead) return;
    this.dead = err;
    const owners = [...this.owners.values()];
    this.owners.clear();
    for (const o of owners) o.onDead(err);
  }
}
