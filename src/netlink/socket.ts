// NETLINK_ROUTE transport: one socket, synchronous request/ack, dumps and
// pipelined batches. Every wait is a poll() with a deadline, so no call can
// hang forever; replies are matched by sequence number, so a late reply to a
// request that timed out is recognised and dropped rather than mistaken for
// the answer to the next one.
//
// Each operation is written once, as a generator that yields the calls which
// may wait in the kernel (sendto: rtnetlink handles the request inside it and
// may wait for rtnl_lock; poll; a dump's recv, inside which the kernel fills
// the next part). Two drivers run them: a synchronous one (request(), dump(),
// batch(): the calling thread blocks, for CLIs, tests and the netlink worker)
// and an asynchronous one (requestAsync(), ...: those calls run on a libuv
// thread-pool thread with koffi's .async, so the main thread's event loop
// never waits in the kernel; AsyncTransport). Everything else (recv of acks
// with MSG_DONTWAIT, encoding, decoding) runs inline in both.

import * as C from './constants.js';
import { decodeDone, decodeNlMsgErr, parseMessages, type NlMessage } from './codec.js';
import { NetlinkError, errnoNumber } from './errors.js';
import { isDumpRequest, serializeRequest, type NetlinkRequest } from './requests.js';
import { addressOf, libc, type Libc } from './libc.js';
import { encodeFilter, type SockFilterInsn } from './filter.js';

const EINTR = 4;
const EAGAIN = errnoNumber('EAGAIN') ?? 11;
const ENOBUFS = errnoNumber('ENOBUFS') ?? 105;
const EMSGSIZE = errnoNumber('EMSGSIZE') ?? 90;
const ETIMEDOUT = errnoNumber('ETIMEDOUT') ?? 110;
const EBADF = errnoNumber('EBADF') ?? 9;
const EPROTO = errnoNumber('EPROTO') ?? 71;

/**
 * Receive buffer size. The kernel caps a dump skb at 32 KiB (or one larger
 * message); recv() with MSG_TRUNC reports the real size, so a datagram that
 * does not fit is detected instead of silently cut.
 */
const RECV_BUF_SIZE = 64 * 1024;
/** netlink_sendmsg rejects datagrams larger than sk_sndbuf - 32; stay well below the default. */
const MAX_BATCH_DATAGRAM = 32 * 1024;

export interface NetlinkSocketOptions {
  /** Legacy RTMGRP_* bitmask to bind to (notification sockets). Default 0. */
  groups?: number;
  /** Extra RTNLGRP_* group numbers joined with NETLINK_ADD_MEMBERSHIP. */
  memberships?: readonly number[];
  /**
   * SO_RCVBUF in bytes. SO_RCVBUFFORCE is tried first (root may exceed
   * net.core.rmem_max), plain SO_RCVBUF is the fallback. Default 1 MiB, which
   * holds the ACKs of a full batch chunk.
   */
  rcvbuf?: number;
  /** Default deadline for request()/dump(); batch() scales it. Default 5000 ms. */
  timeoutMs?: number;
  /**
   * Ask for NETLINK_GET_STRICT_CHK (default true): the kernel then validates
   * dump requests strictly and honours their filters (device, table,
   * protocol), so a dump returns only what was asked for. Kernels before
   * 4.20 refuse the option; the socket then sends each dump's unfiltered
   * form and callers filter the replies. false forces that older path.
   */
  strictCheck?: boolean;
  /**
   * A classic BPF program attached before binding (SO_ATTACH_FILTER): what
   * it drops never reaches the socket (notification sockets; filter.ts).
   */
  filter?: readonly SockFilterInsn[];
  /** Replaces the libc binding; only tests use this, to script kernel replies. */
  libc?: Libc;
}

export interface RequestOptions {
  timeoutMs?: number;
}

export interface DumpOptions extends RequestOptions {
  /** Retries when the kernel flags NLM_F_DUMP_INTR (table changed mid-dump). Default 5. */
  maxRetries?: number;
}

export interface BatchOptions {
  /** Deadline for the whole batch. Default: 5000 ms + 2 ms per request. */
  timeoutMs?: number;
  /** Requests per sendto() (further capped at 32 KiB). Default 256. */
  chunkSize?: number;
}

export type BatchReply = { ok: true; messages: NlMessage[] } | { ok: false; error: NetlinkError };

export type ReceiveResult =
  | { kind: 'messages'; messages: NlMessage[] }
  | { kind: 'timeout' }
  /** The kernel dropped messages for us (ENOBUFS): state must be re-read. */
  | { kind: 'overrun' };

/** A call that may wait in the kernel; the driver performs it and hands back its outcome. */
type Blocking =
  | { call: 'sendto'; buf: Buffer }
  /** recv(MSG_DONTWAIT | MSG_TRUNC) into recvBuf; `dump`: a dump may be running, so the kernel may fill its next part inside this call */
  | { call: 'recv'; dump: boolean }
  | { call: 'poll'; timeoutMs: number };

/** A call's return value and, when it is negative, errno. */
interface Outcome {
  ret: number;
  errno: number;
  /** poll: the driver waited less than asked (ASYNC_POLL_SLICE_MS), so 0 is not yet a timeout */
  sliced?: boolean;
}

type Steps<T> = Generator<Blocking, T, Outcome>;

/**
 * The longest single poll() of the async driver: a wait occupies one of the
 * libuv pool's threads (4 by default, shared with fs and dns), so a long
 * deadline is waited out in slices.
 */
const ASYNC_POLL_SLICE_MS = 200;

function sockaddrNl(pid: number, groups: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16LE(C.AF_NETLINK, 0);
  b.writeUInt32LE(pid >>> 0, 4);
  b.writeUInt32LE(groups >>> 0, 8);
  return b;
}

function intOpt(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v, 0);
  return b;
}

export class NetlinkSocket {
  readonly fd: number;
  /** Port id the kernel assigned at bind(); notifications we cause carry it as nlmsg_pid. */
  readonly portId: number;
  /** NETLINK_GET_STRICT_CHK is on: filtered dumps are sent as such (see NetlinkSocketOptions.strictCheck). */
  readonly strictCheck: boolean;
  private readonly lib: Libc;
  private readonly timeoutMs: number;
  private readonly recvBuf = Buffer.alloc(RECV_BUF_SIZE);
  private readonly pollFd = Buffer.alloc(8);
  private readonly dst = sockaddrNl(0, 0);
  private seq: number;
  private closed = false;

  private constructor(lib: Libc, fd: number, portId: number, timeoutMs: number, strictCheck: boolean) {
    this.lib = lib;
    this.fd = fd;
    this.portId = portId;
    this.strictCheck = strictCheck;
    this.timeoutMs = timeoutMs;
    // Start away from 0 so replies from a previous process' socket (same
    // port id after reuse) are unlikely to match.
    this.seq = (Date.now() ^ (process.pid << 16)) >>> 0;
  }

  /** Opens and binds a NETLINK_ROUTE socket. Throws NetlinkError on failure. */
  static open(opts: NetlinkSocketOptions = {}): NetlinkSocket {
    const lib = opts.libc ?? libc();
    const fd = lib.socket(C.AF_NETLINK, C.SOCK_RAW | C.SOCK_CLOEXEC, C.NETLINK_ROUTE);
    if (fd < 0) throw new NetlinkError({ errno: lib.errno(), op: 'socket(AF_NETLINK, NETLINK_ROUTE)' });
    try {
      const rcvbuf = opts.rcvbuf ?? 1 << 20;
      if (lib.setsockopt(fd, C.SOL_SOCKET, C.SO_RCVBUFFORCE, intOpt(rcvbuf), 4) < 0) {
        if (lib.setsockopt(fd, C.SOL_SOCKET, C.SO_RCVBUF, intOpt(rcvbuf), 4) < 0) {
          throw new NetlinkError({ errno: lib.errno(), op: `setsockopt(SO_RCVBUF, ${rcvbuf})` });
        }
      }
      // Extended ack gives the kernel's reason text; CAP_ACK keeps error
      // replies from echoing the whole request (batches stay small). Both
      // are best-effort: old kernels lack them and still work.
      lib.setsockopt(fd, C.SOL_NETLINK, C.NETLINK_EXT_ACK, intOpt(1), 4);
      lib.setsockopt(fd, C.SOL_NETLINK, C.NETLINK_CAP_ACK, intOpt(1), 4);
      // Strict dump checking (Linux >= 4.20); ENOPROTOOPT on older kernels.
      const strict = opts.strictCheck !== false && lib.setsockopt(fd, C.SOL_NETLINK, C.NETLINK_GET_STRICT_CHK, intOpt(1), 4) === 0;
      if (opts.filter) {
        // struct sock_fprog { unsigned short len; struct sock_filter *filter; }; the kernel copies the program
        const prog = encodeFilter(opts.filter);
        const fprog = Buffer.alloc(16);
        fprog.writeUInt16LE(opts.filter.length, 0);
        fprog.writeBigUInt64LE(addressOf(prog), 8);
        if (lib.setsockopt(fd, C.SOL_SOCKET, C.SO_ATTACH_FILTER, fprog, 16) < 0) {
          throw new NetlinkError({ errno: lib.errno(), op: 'setsockopt(SO_ATTACH_FILTER)' });
        }
      }

      if (lib.bind(fd, sockaddrNl(0, opts.groups ?? 0), 12) < 0) {
        throw new NetlinkError({ errno: lib.errno(), op: `bind(netlink, groups 0x${(opts.groups ?? 0).toString(16)})` });
      }
      for (const group of opts.memberships ?? []) {
        if (lib.setsockopt(fd, C.SOL_NETLINK, C.NETLINK_ADD_MEMBERSHIP, intOpt(group), 4) < 0) {
          throw new NetlinkError({ errno: lib.errno(), op: `setsockopt(NETLINK_ADD_MEMBERSHIP, ${group})` });
        }
      }
      const addr = Buffer.alloc(12);
      const len = Buffer.alloc(4);
      len.writeUInt32LE(12, 0);
      if (lib.getsockname(fd, addr, len) < 0) {
        throw new NetlinkError({ errno: lib.errno(), op: 'getsockname(netlink)' });
      }
      return new NetlinkSocket(lib, fd, addr.readUInt32LE(4), opts.timeoutMs ?? 5000, strict);
    } catch (err) {
      lib.close(fd);
      throw err;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.lib.close(this.fd);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0;
    if (this.seq === 0) this.seq = 1;
    return this.seq;
  }

  private checkOpen(op: string): void {
    if (this.closed) throw new NetlinkError({ errno: EBADF, op, detail: 'socket is closed' });
  }

  // ---------------------------------------------------------------- drivers

  /** Runs an operation on this thread, blocking in the kernel as needed. */
  private runSync<T>(steps: Steps<T>): T {
    let r = steps.next();
    while (!r.done) r = steps.next(this.callSync(r.value));
    return r.value;
  }

  private callSync(b: Blocking): Outcome {
    let ret: number;
    if (b.call === 'sendto') ret = this.lib.sendto(this.fd, b.buf, b.buf.length, 0, this.dst, 12);
    else if (b.call === 'recv') ret = this.lib.recv(this.fd, this.recvBuf, this.recvBuf.length, C.MSG_DONTWAIT | C.MSG_TRUNC);
    else ret = this.lib.poll(this.pollFd, 1, b.timeoutMs);
    return { ret, errno: ret < 0 ? this.lib.errno() : 0 };
  }

  /**
   * Runs an operation with its kernel waits on the libuv thread pool. Only
   * one operation may run on a socket at a time (the buffers are the
   * socket's): AsyncTransport queues them.
   */
  private async runAsync<T>(steps: Steps<T>): Promise<T> {
    let r = steps.next();
    while (!r.done) r = steps.next(await this.callAsync(r.value));
    return r.value;
  }

  private async callAsync(b: Blocking): Promise<Outcome> {
    const lib = this.lib;
    if (b.call === 'sendto') {
      if (!lib.sendtoAsync) return this.callSync(b);
      const ret = await lib.sendtoAsync(this.fd, b.buf, b.buf.length, 0, this.dst, 12);
      if (ret >= 0 || this.closed) return { ret, errno: ret < 0 ? EBADF : 0 };
      // The pool thread's errno is out of reach, so send once more here, with
      // MSG_DONTWAIT, to learn it. Safe because a failed sendto() to the
      // kernel delivered nothing: netlink_sendmsg() fails only before the
      // message reaches rtnetlink (bad address, EMSGSIZE, allocation or copy
      // failure, EPERM, EINTR while waiting for buffer space), while once
      // netlink_unicast_kernel() has handed it to rtnetlink_rcv() it returns
      // the length, whatever the requests' outcome (errors come as acks). So
      // the request is processed at most once: by this retry, if the cause
      // was transient (then it succeeds and may wait for rtnl_lock on this
      // thread, a rare case), or not at all.
      return this.callSync(b);
    }
    if (b.call === 'recv') {
      // Acks and replies to a non-dump request are queued before sendto()
      // returns; reading them never waits. A dump's recv may (next part).
      if (!b.dump || !lib.recvAsync) return this.callSync(b);
      const ret = await lib.recvAsync(this.fd, this.recvBuf, this.recvBuf.length, C.MSG_DONTWAIT | C.MSG_TRUNC);
      if (ret >= 0 || this.closed) return { ret, errno: ret < 0 ? EBADF : 0 };
      // errno again: ask once more here. EAGAIN (nothing queued) repeats,
      // and so does any lasting error. A one-time error (sk_err, i.e. an
      // ENOBUFS overrun, which a request socket's dump practically never
      // sees) was consumed by the first call: it then reads as EAGAIN and
      // the dump ends in a timeout instead of an overrun; both are errors.
      return this.callSync(b);
    }
    if (!lib.pollAsync) return this.callSync(b);
    const sliced = b.timeoutMs > ASYNC_POLL_SLICE_MS;
    const ret = await lib.pollAsync(this.pollFd, 1, sliced ? ASYNC_POLL_SLICE_MS : b.timeoutMs);
    // -1 on a pool thread: EINTR (a signal) is the only failure a valid pollfd can see; poll again
    return ret < 0 ? { ret, errno: EINTR } : { ret, errno: 0, sliced };
  }

  // ------------------------------------------------------------- primitives

  private *send(buf: Buffer, op: string): Steps<void> {
    for (;;) {
      const { ret: n, errno } = yield { call: 'sendto', buf };
      if (n === buf.length) return;
      if (n < 0) {
        if (errno === EINTR) continue;
        throw new NetlinkError({ errno, op: `${op}: sendto` });
      }
      throw new NetlinkError({ errno: EMSGSIZE, op: `${op}: sendto`, detail: `short send ${n}/${buf.length}` });
    }
  }

  /**
   * Waits until `deadline` (Date.now() ms) for one datagram. Returns a copy
   * of it, 'timeout', or 'overrun' when the kernel reports ENOBUFS (it had to
   * drop messages for this socket). With `deadline` in the past this is a
   * non-blocking read. `dump`: a dump is running (see Blocking).
   */
  private *recvDatagram(deadline: number, op: string, dump = false): Steps<Buffer | 'timeout' | 'overrun'> {
    for (;;) {
      // Try first: in the common case the answer is already queued, which
      // saves the poll() call.
      const { ret: n, errno } = yield { call: 'recv', dump };
      if (n >= 0) {
        if (n > this.recvBuf.length) {
          throw new NetlinkError({
            errno: EMSGSIZE,
            op: `${op}: recv`,
            detail: `datagram of ${n} bytes exceeds the ${this.recvBuf.length}-byte buffer`,
          });
        }
        return Buffer.from(this.recvBuf.subarray(0, n));
      }
      if (errno === EINTR) continue;
      if (errno === ENOBUFS) return 'overrun';
      if (errno !== EAGAIN) throw new NetlinkError({ errno, op: `${op}: recv` });

      // wait until readable or the deadline passes (the async driver waits in slices)
      for (;;) {
        const remaining = deadline - Date.now();
        if (remaining <= 0) return 'timeout';
        this.pollFd.writeInt32LE(this.fd, 0);
        this.pollFd.writeInt16LE(C.POLLIN, 4);
        this.pollFd.writeInt16LE(0, 6);
        const { ret: r, errno: perr, sliced } = yield { call: 'poll', timeoutMs: Math.min(remaining, 0x7fffffff) };
        if (r < 0) {
          if (perr === EINTR) continue;
          throw new NetlinkError({ errno: perr, op: `${op}: poll` });
        }
        if (r === 0) {
          if (sliced) continue;
          return 'timeout';
        }
        const revents = this.pollFd.readInt16LE(6);
        if (revents & C.POLLNVAL) throw new NetlinkError({ errno: EBADF, op: `${op}: poll` });
        // POLLIN or POLLERR (pending ENOBUFS): back to recv, which reports it.
        break;
      }
    }
  }

  private timeoutError(op: string, ms: number): NetlinkError {
    return new NetlinkError({ errno: ETIMEDOUT, op, detail: `no answer from the kernel within ${ms} ms` });
  }

  private overrunError(op: string): NetlinkError {
    return new NetlinkError({
      errno: ENOBUFS,
      op,
      detail: 'socket receive buffer overrun; replies were lost and the outcome is unknown',
    });
  }

  /**
   * Sends one request with NLM_F_ACK and waits for its ACK. Returns the
   * messages that preceded the ACK (e.g. the RTM_NEWLINK answering a
   * get-link). A negative ACK throws NetlinkError with the kernel's errno
   * and extended-ack text.
   */
  request(req: NetlinkRequest, opts: RequestOptions = {}): NlMessage[] {
    return this.runSync(this.requestSteps(req, opts));
  }

  /** request() with the kernel waits on the libuv thread pool (see runAsync). */
  requestAsync(req: NetlinkRequest, opts: RequestOptions = {}): Promise<NlMessage[]> {
    return this.runAsync(this.requestSteps(req, opts));
  }

  private *requestSteps(req: NetlinkRequest, opts: RequestOptions): Steps<NlMessage[]> {
    this.checkOpen(req.op);
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const deadline = Date.now() + timeoutMs;
    const seq = this.nextSeq();
    const flags = req.flags | C.NLM_F_REQUEST | C.NLM_F_ACK;
    yield* this.send(serializeRequest({ ...req, flags }, seq), req.op);
    const replies: NlMessage[] = [];
    for (;;) {
      const dg = yield* this.recvDatagram(deadline, req.op);
      if (dg === 'timeout') throw this.timeoutError(req.op, timeoutMs);
      if (dg === 'overrun') throw this.overrunError(req.op);
      for (const msg of parseMessages(dg)) {
        if (msg.header.seq !== seq) continue;
        if (msg.header.type === C.NLMSG_ERROR) {
          const e = decodeNlMsgErr(msg);
          if (e.errno === 0) return replies;
          throw new NetlinkError({ errno: e.errno, op: req.op, extAck: e.extAck, extAckOffset: e.extAckOffset });
        }
        if (msg.header.type === C.NLMSG_DONE) return replies;
        replies.push(msg);
      }
    }
  }

  /**
   * Runs a dump (RTM_GET* with NLM_F_DUMP) to NLMSG_DONE and returns all
   * data messages. A filtered request is sent in its unfiltered form when
   * strict checking is off; data messages the kernel filtered carry
   * NLM_F_DUMP_FILTERED in their header flags. If the kernel marks the dump inconsistent
   * (NLM_F_DUMP_INTR: the table changed while being walked), it is re-run
   * up to `maxRetries` times; after that the error is EINTR.
   */
  dump(req: NetlinkRequest, opts: DumpOptions = {}): NlMessage[] {
    return this.runSync(this.dumpSteps(req, opts));
  }

  /** dump() with the kernel waits (sendto, and each recv: the kernel fills the next part inside it) on the libuv thread pool. */
  dumpAsync(req: NetlinkRequest, opts: DumpOptions = {}): Promise<NlMessage[]> {
    return this.runAsync(this.dumpSteps(req, opts));
  }

  private *dumpSteps(req: NetlinkRequest, opts: DumpOptions): Steps<NlMessage[]> {
    this.checkOpen(req.op);
    if (!isDumpRequest(req)) {
      throw new TypeError(`${req.op}: not a dump request (RTM_GET* with NLM_F_DUMP)`);
    }
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const maxRetries = opts.maxRetries ?? 5;
    if (!this.strictCheck && req.unfilteredBody) req = { ...req, body: req.unfilteredBody };
    for (let attempt = 0; attempt <= maxRetries; attempt++) {
      const deadline = Date.now() + timeoutMs;
      const seq = this.nextSeq();
      const flags = (req.flags | C.NLM_F_REQUEST) & ~C.NLM_F_ACK;
      yield* this.send(serializeRequest({ ...req, flags }, seq), req.op);
      const out: NlMessage[] = [];
      let interrupted = false;
      let done = false;
      while (!done) {
        const dg = yield* this.recvDatagram(deadline, req.op, true);
        if (dg === 'timeout') throw this.timeoutError(req.op, timeoutMs);
        if (dg === 'overrun') throw this.overrunError(req.op);
        for (const msg of parseMessages(dg)) {
          if (msg.header.seq !== seq) continue;
          if (msg.header.flags & C.NLM_F_DUMP_INTR) interrupted = true;
          if (msg.header.type === C.NLMSG_DONE) {
            const d = decodeDone(msg);
            if (d.errno !== 0) {
              throw new NetlinkError({ errno: d.errno, op: req.op, extAck: d.extAck, extAckOffset: d.extAckOffset });
            }
            done = true;
            break;
          }
          if (msg.header.type === C.NLMSG_ERROR) {
            const e = decodeNlMsgErr(msg);
            if (e.errno !== 0) {
              throw new NetlinkError({ errno: e.errno, op: req.op, extAck: e.extAck, extAckOffset: e.extAckOffset });
            }
            continue;
          }
          if (msg.header.type === C.NLMSG_NOOP) continue;
          out.push(msg);
        }
      }
      if (!interrupted) return out;
    }
    throw new NetlinkError({
      errno: EINTR,
      op: req.op,
      detail: `dump was interrupted by concurrent changes ${maxRetries + 1} times`,
    });
  }

  /**
   * Pipelines many requests: they are packed back-to-back into datagrams of
   * up to `chunkSize` messages, each with NLM_F_ACK and its own sequence
   * number. The kernel handles a datagram's messages in order, acking each
   * and continuing past failures, so one sendto() and a burst of recv()s
   * replace a round trip per request. Returns one reply per request, in
   * order; failures are values, not exceptions, so one bad entry does not
   * hide the others' outcome. Only transport failures (socket closed, send
   * error, malformed reply) throw.
   */
  batch(reqs: readonly NetlinkRequest[], opts: BatchOptions = {}): BatchReply[] {
    return this.runSync(this.batchSteps(reqs, opts));
  }

  /** batch() with each sendto() (and any wait for acks) on the libuv thread pool. */
  batchAsync(reqs: readonly NetlinkRequest[], opts: BatchOptions = {}): Promise<BatchReply[]> {
    return this.runAsync(this.batchSteps(reqs, opts));
  }

  private *batchSteps(reqs: readonly NetlinkRequest[], opts: BatchOptions): Steps<BatchReply[]> {
    this.checkOpen('batch');
    const results: (BatchReply | undefined)[] = new Array(reqs.length);
    const timeoutMs = opts.timeoutMs ?? 5000 + 2 * reqs.length;
    const deadline = Date.now() + timeoutMs;
    const chunkSize = Math.max(1, opts.chunkSize ?? 256);

    let next = 0;
    while (next < reqs.length) {
      // Build one datagram.
      const parts: Buffer[] = [];
      const pending = new Map<number, number>(); // seq -> request index
      const gathered = new Map<number, NlMessage[]>();
      let bytes = 0;
      while (next < reqs.length && pending.size < chunkSize) {
        const req = reqs[next]!;
        const seq = this.nextSeq();
        const wire = serializeRequest({ ...req, flags: req.flags | C.NLM_F_REQUEST | C.NLM_F_ACK }, seq);
        if (parts.length > 0 && bytes + wire.length > MAX_BATCH_DATAGRAM) break;
        parts.push(wire);
        bytes += wire.length;
        pending.set(seq, next);
        next++;
      }
      yield* this.send(parts.length === 1 ? parts[0]! : Buffer.concat(parts), `batch of ${parts.length} requests`);

      let overrun = false;
      while (pending.size > 0) {
        // After an overrun the surviving ACKs are already queued (the kernel
        // processed the datagram inside sendto), so drain without waiting.
        const dg = yield* this.recvDatagram(overrun ? 0 : deadline, 'batch');
        if (dg === 'overrun') {
          overrun = true;
          continue;
        }
        if (dg === 'timeout') {
          for (const [, idx] of pending) {
            results[idx] = {
              ok: false,
              error: overrun ? this.overrunError(reqs[idx]!.op) : this.timeoutError(reqs[idx]!.op, timeoutMs),
            };
          }
          pending.clear();
          break;
        }
        for (const msg of parseMessages(dg)) {
          const idx = pending.get(msg.header.seq);
          if (idx === undefined) continue;
          if (msg.header.type === C.NLMSG_ERROR) {
            const e = decodeNlMsgErr(msg);
            const req = reqs[idx]!;
            results[idx] =
              e.errno === 0
                ? { ok: true, messages: gathered.get(msg.header.seq) ?? [] }
                : {
                    ok: false,
                    error: new NetlinkError({ errno: e.errno, op: req.op, extAck: e.extAck, extAckOffset: e.extAckOffset }),
                  };
            pending.delete(msg.header.seq);
          } else {
            let list = gathered.get(msg.header.seq);
            if (!list) gathered.set(msg.header.seq, (list = []));
            list.push(msg);
          }
        }
      }
    }
    return results.map(
      (r, i) =>
        r ?? { ok: false, error: new NetlinkError({ errno: EPROTO, op: reqs[i]!.op, detail: 'no reply recorded' }) },
    );
  }

  /**
   * One receive for notification listeners: waits up to `timeoutMs` for a
   * datagram. Overruns are reported as a result, not thrown, because for a
   * listener they are an expected signal to re-dump.
   */
  receive(timeoutMs: number): ReceiveResult {
    this.checkOpen('receive');
    const dg = this.runSync(this.recvDatagram(Date.now() + timeoutMs, 'receive'));
    if (dg === 'timeout' || dg === 'overrun') return { kind: dg };
    return { kind: 'messages', messages: parseMessages(dg) };
  }

  /**
   * Waits up to `timeoutMs` (one poll() on a libuv pool thread, which it
   * occupies meanwhile) until the socket is readable or has an error queued,
   * or `wakeFd` (an eventfd, -1 for none) is readable: what the socket has
   * queued is then read with receive(0). For notification listeners on the
   * main thread (NetlinkSubscriber). True if the socket is ready.
   */
  async waitReadable(timeoutMs: number, wakeFd = -1): Promise<boolean> {
    this.checkOpen('poll');
    const n = wakeFd >= 0 ? 2 : 1;
    const fds = Buffer.alloc(8 * n);
    fds.writeInt32LE(this.fd, 0);
    fds.writeInt16LE(C.POLLIN, 4);
    if (wakeFd >= 0) {
      fds.writeInt32LE(wakeFd, 8);
      fds.writeInt16LE(C.POLLIN, 12);
    }
    const r = this.lib.pollAsync ? await this.lib.pollAsync(fds, n, timeoutMs) : this.lib.poll(fds, n, timeoutMs);
    if (r <= 0) return false; // timeout, or EINTR on the pool thread (the caller polls again)
    if (fds.readInt16LE(6) & C.POLLNVAL) throw new NetlinkError({ errno: EBADF, op: 'poll' });
    return fds.readInt16LE(6) !== 0;
  }
}
