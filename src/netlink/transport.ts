// NetlinkTransport: how requests reach the kernel. The codec builds requests
// and decodes replies; a transport only moves bytes, with deadlines.
//
// * InlineTransport runs the synchronous NetlinkSocket on the calling thread.
//   Fine for short-lived CLIs and tests.
// * AsyncTransport runs the socket on the calling thread too, but every call
//   that may wait in the kernel (sendto, poll, a dump's recv) runs on a libuv
//   thread-pool thread (koffi .async; socket.ts), so the event loop is never
//   blocked by the kernel, and no worker isolate (~10 MB RSS) is needed. The
//   daemon uses it (issue 11). Decoding and encoding stay on this thread, in
//   slices between the kernel waits (a batch: one datagram of <= 256 requests).
// * WorkerTransport owns the socket in a worker thread, so a slow kernel
//   (rtnl_lock contention, a 3000-request batch) never blocks the daemon's
//   event loop: health endpoints, the store watch and timers keep running.
//   Requests are handled one at a time, in the order they were made, exactly
//   as on the inline socket; every wait inside the worker keeps its deadline.
//   One worker serves all of a thread's WorkerTransports (thread.ts).

import { parseMessages, type NlMessage } from './codec.js';
import { NetlinkError } from './errors.js';
import type { NetlinkRequest } from './requests.js';
import { NetlinkSocket, type BatchOptions, type BatchReply, type DumpOptions, type NetlinkSocketOptions, type RequestOptions } from './socket.js';
import { NetlinkThread, type ErrorWire, type WorkerCall, type WorkerReply } from './thread.js';

export type { ErrorWire } from './thread.js';

export interface NetlinkTransport {
  /** port id of the request socket (0 until the worker reported it) */
  portId(): number;
  request(req: NetlinkRequest, opts?: RequestOptions): Promise<NlMessage[]>;
  dump(req: NetlinkRequest, opts?: DumpOptions): Promise<NlMessage[]>;
  batch(reqs: readonly NetlinkRequest[], opts?: BatchOptions): Promise<BatchReply[]>;
  close(): void;
}

export class InlineTransport implements NetlinkTransport {
  constructor(readonly socket: NetlinkSocket) {}
  portId(): number {
    return this.socket.portId;
  }
  async request(req: NetlinkRequest, opts?: RequestOptions): Promise<NlMessage[]> {
    return this.socket.request(req, opts);
  }
  async dump(req: NetlinkRequest, opts?: DumpOptions): Promise<NlMessage[]> {
    return this.socket.dump(req, opts);
  }
  async batch(reqs: readonly NetlinkRequest[], opts?: BatchOptions): Promise<BatchReply[]> {
    return this.socket.batch(reqs, opts);
  }
  close(): void {
    this.socket.close();
  }
}

/**
 * The socket on this thread, its kernel waits on the libuv thread pool.
 * Requests are handled one at a time, in the order they were made; close()
 * lets the queued ones finish, then closes the socket.
 */
export class AsyncTransport implements NetlinkTransport {
  private tail: Promise<unknown> = Promise.resolve();
  private queued = 0;
  private closed = false;
  private readonly sock: NetlinkSocket | null;
  private readonly openError: Error | null;

  constructor(socket: NetlinkSocket | Error) {
    this.sock = socket instanceof NetlinkSocket ? socket : null;
    this.openError = socket instanceof NetlinkSocket ? null : socket;
  }

  /** Opens the socket now (bind does not wait); as with WorkerTransport, an open failure is every request's error. */
  static open(opts: NetlinkSocketOptions = {}): AsyncTransport {
    try {
      return new AsyncTransport(NetlinkSocket.open(opts));
    } catch (e) {
      return new AsyncTransport(e instanceof Error ? e : new Error(String(e)));
    }
  }

  get socket(): NetlinkSocket {
    if (!this.sock) throw this.openError!;
    return this.sock;
  }

  portId(): number {
    return this.sock?.portId ?? 0;
  }

  /** Requests queued or waiting for the kernel; for tests and metrics. */
  get inFlight(): number {
    return this.queued;
  }

  private enqueue<T>(run: (s: NetlinkSocket) => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error('netlink transport is closed'));
    const sock = this.sock;
    if (!sock) return Promise.reject(this.openError!);
    this.queued++;
    const p = this.tail.then(() => run(sock));
    this.tail = p.then(
      () => void this.queued--,
      () => void this.queued--,
    );
    return p;
  }

  request(req: NetlinkRequest, opts?: RequestOptions): Promise<NlMessage[]> {
    return this.enqueue((s) => s.requestAsync(req, opts));
  }
  dump(req: NetlinkRequest, opts?: DumpOptions): Promise<NlMessage[]> {
    return this.enqueue((s) => s.dumpAsync(req, opts));
  }
  batch(reqs: readonly NetlinkRequest[], opts?: BatchOptions): Promise<BatchReply[]> {
    return this.enqueue((s) => s.batchAsync(reqs, opts));
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    // after the queued requests: none of them may find its fd closed (or reused)
    void this.tail.then(() => this.sock?.close());
  }
}

// ------------------------------------------------------------ wire format

export function errorToWire(err: unknown): ErrorWire {
  if (err instanceof NetlinkError) {
    return {
      netlink: true,
      errno: err.errno,
      op: err.op,
      ...(err.extAck !== undefined ? { extAck: err.extAck } : {}),
      ...(err.extAckOffset !== undefined ? { extAckOffset: err.extAckOffset } : {}),
      message: err.message,
    };
  }
  return { netlink: false, errno: 0, op: '', message: err instanceof Error ? err.message : String(err) };
}

export function errorFromWire(w: ErrorWire): Error {
  if (!w.netlink) return new Error(w.message);
  const e = new NetlinkError({ errno: w.errno, op: w.op, ...(w.extAck !== undefined ? { extAck: w.extAck } : {}), ...(w.extAckOffset !== undefined ? { extAckOffset: w.extAckOffset } : {}) });
  // keep the exact text (it may carry a detail, e.g. a timeout's)
  Object.defineProperty(e, 'message', { value: w.message });
  return e;
}

/** Structured clone turns Buffers into Uint8Arrays; make them Buffers again, without copying. */
export function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** An exact-size copy of the body, so structured clone does not copy a pooled Buffer's whole backing store. */
function compactReq(r: NetlinkRequest): NetlinkRequest {
  const out: NetlinkRequest = { ...r, body: new Uint8Array(r.body) as Buffer };
  if (r.unfilteredBody) out.unfilteredBody = new Uint8Array(r.unfilteredBody) as Buffer;
  return out;
}

/**
 * Messages re-encoded back to back (each 4-byte aligned) in one ArrayBuffer
 * that the worker transfers instead of cloning: structured clone of a dump of
 * thousands of messages (an object and a typed array each) cost the main
 * thread more than the kernel round trip; parsing one buffer is cheap, and
 * the payloads stay views on it.
 */
export function packMessages(ms: readonly NlMessage[]): ArrayBuffer {
  let size = 0;
  for (const m of ms) size += (16 + m.payload.length + 3) & ~3;
  const ab = new ArrayBuffer(size);
  const out = Buffer.from(ab);
  let off = 0;
  for (const m of ms) {
    out.writeUInt32LE(16 + m.payload.length, off);
    out.writeUInt16LE(m.header.type, off + 4);
    out.writeUInt16LE(m.header.flags, off + 6);
    out.writeUInt32LE(m.header.seq >>> 0, off + 8);
    out.writeUInt32LE(m.header.pid >>> 0, off + 12);
    m.payload.copy(out, off + 16);
    off += (16 + m.payload.length + 3) & ~3;
  }
  return ab;
}

export function unpackMessages(ab: ArrayBuffer): NlMessage[] {
  return parseMessages(Buffer.from(ab));
}

function reviveMessages(ms: NlMessage[]): NlMessage[] {
  for (const m of ms) m.payload = asBuffer(m.payload);
  return ms;
}

// ------------------------------------------------------------ worker side

/** Requests per message to the worker in WorkerTransport.batch. */
const BATCH_SLICE = 1024;

/**
 * A request socket in the shared netlink worker (thread.ts), which it shares
 * with the other WorkerTransports of this thread.
 */
export class WorkerTransport implements NetlinkTransport {
  private readonly thread: NetlinkThread;
  private readonly ch: number;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private dead: Error | null = null;
  private closed = false;
  private port = 0;

  private constructor(opts: NetlinkSocketOptions) {
    const { libc: _ignored, ...init } = opts;
    const { thread, ch } = NetlinkThread.attach({
      onMessage: (m) => {
        if (m.type === 'ready') this.port = m.portId;
        else if (m.type === 'reply') this.onReply(m.reply);
      },
      onDead: (e) => this.fail(e),
    });
    this.thread = thread;
    this.ch = ch;
    thread.post({ type: 'open', ch, opts: init });
  }

  /** Opens the socket in the shared worker (starting it if needed); an open failure is the first request's error. */
  static open(opts: NetlinkSocketOptions = {}): WorkerTransport {
    return new WorkerTransport(opts);
  }

  portId(): number {
    return this.port;
  }

  /** Requests waiting for the kernel; for tests and metrics. */
  get inFlight(): number {
    return this.pending.size;
  }

  private fail(e: Error): void {
    if (this.closed && this.pending.size === 0) return;
    this.dead ??= e;
    if (this.pending.size > 0) this.thread.unhold();
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  private onReply(m: WorkerReply): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    // only pending requests keep the process alive
    if (this.pending.size === 0) this.thread.unhold();
    if (!m.ok) return p.reject(errorFromWire(m.error));
    if ('packed' in m) return p.resolve(unpackMessages(m.packed));
    if ('messages' in m) return p.resolve(reviveMessages(m.messages));
    p.resolve(
      m.replies.map((r): BatchReply => (r.ok ? { ok: true, messages: reviveMessages(r.messages) } : { ok: false, error: errorFromWire(r.error) as NetlinkError })),
    );
  }

  private call<T>(c: WorkerCall): Promise<T> {
    if (this.closed) return Promise.reject(new Error('netlink transport is closed'));
    if (this.dead) return Promise.reject(this.dead);
    return new Promise<T>((resolve, reject) => {
      this.pending.set(c.id, { resolve: resolve as (v: unknown) => void, reject });
      if (this.pending.size === 1) this.thread.hold();
      this.thread.post({ type: 'call', ch: this.ch, call: c });
    });
  }

  request(req: NetlinkRequest, opts?: RequestOptions): Promise<NlMessage[]> {
    return this.call({ id: this.nextId++, kind: 'request', req: compactReq(req), ...(opts ? { opts } : {}) });
  }
  dump(req: NetlinkRequest, opts?: DumpOptions): Promise<NlMessage[]> {
    return this.call({ id: this.nextId++, kind: 'dump', req: compactReq(req), ...(opts ? { opts } : {}) });
  }
  /**
   * A large batch goes to the worker in slices of BATCH_SLICE requests, one
   * after the other, with the whole batch's deadline: a 15000-request batch
   * (5000 new peers) as one message would be cloned whole into both isolates
   * and its replies whole back, a peak of tens of MB that each heap then keeps.
   * The socket sends at most 256 requests per datagram anyway.
   */
  async batch(reqs: readonly NetlinkRequest[], opts?: BatchOptions): Promise<BatchReply[]> {
    const one = (part: readonly NetlinkRequest[], o?: BatchOptions) =>
      this.call<BatchReply[]>({ id: this.nextId++, kind: 'batch', reqs: part.map(compactReq), ...(o ? { opts: o } : {}) });
    if (reqs.length <= BATCH_SLICE) return one(reqs, opts);
    const deadline = Date.now() + (opts?.timeoutMs ?? 5000 + 2 * reqs.length);
    const out: BatchReply[] = [];
    for (let i = 0; i < reqs.length; i += BATCH_SLICE) {
      const replies = await one(reqs.slice(i, i + BATCH_SLICE), { ...opts, timeoutMs: Math.max(1, deadline - Date.now()) });
      for (const r of replies) out.push(r);
    }
    return out;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Queued requests finish first; then the worker closes the socket (and
    // exits if nothing else uses it).
    this.thread.close(this.ch);
  }
}
