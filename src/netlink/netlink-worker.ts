// The shared netlink worker (thread.ts tells why and how): request sockets
// for WorkerTransport, notification sockets for NetlinkSubscriber, one
// thread. It never returns to its event loop; it waits in poll() on the
// notification sockets and the eventfd the main thread writes after posting
// a call, always with a timeout, and every request keeps its own deadline
// (NetlinkSocket), so nothing here waits on the kernel without a bound.

import { readSync } from 'node:fs';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import * as C from './constants.js';
import type { NlMessage } from './codec.js';
import { NetlinkDecodeError, NetlinkError } from './errors.js';
import { libc, syscallError } from './libc.js';
import type { NetlinkRequest } from './requests.js';
import { decodeRtnlMessage } from './rtnl.js';
import { NetlinkSocket } from './socket.js';
import type { NetlinkEvent } from './subscriber.js';
import { AWAKE, SLEEPING, type ThreadCall, type ThreadInit, type ThreadMessage, type WorkerCall, type WorkerReply } from './thread.js';
import { asBuffer, errorToWire, packMessages } from './transport.js';

const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
const EINTR = 4;
/** Datagrams drained from one notification socket per wake-up before posting, bounding latency under bursts. */
const MAX_DRAIN = 512;
/** poll() timeout with no subscription: only a lost wake-up could need it. */
const IDLE_POLL_MS = 1000;

const port = parentPort!;
const state = new Int32Array((workerData as ThreadInit).state);
const lib = libc();
const wakeFd = lib.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
// thrown: the worker's 'error' event fails every channel with this message
if (wakeFd < 0) throw syscallError(lib, 'eventfd');
const counter = Buffer.alloc(8);

interface RequestChannel {
  kind: 'request';
  sock: NetlinkSocket | null;
  /** an open failure is every request's error, as it would be on an inline socket */
  openError: unknown;
}
interface Subscription {
  kind: 'subscription';
  ch: number;
  sock: NetlinkSocket;
  pollMs: number;
}
const channels = new Map<number, RequestChannel | Subscription>();
let subs: Subscription[] = [];
/** struct pollfd[]: the eventfd, then each subscription's socket */
let pollFds = Buffer.alloc(0);
let pollMs = IDLE_POLL_MS;

function post(m: ThreadMessage, transfer: ArrayBuffer[] = []): void {
  port.postMessage(m, transfer);
}

function subscriptionsChanged(): void {
  subs = [...channels.values()].filter((c): c is Subscription => c.kind === 'subscription');
  pollFds = Buffer.alloc(8 * (1 + subs.length));
  [wakeFd, ...subs.map((s) => s.sock.fd)].forEach((fd, i) => {
    pollFds.writeInt32LE(fd, 8 * i);
    pollFds.writeInt16LE(C.POLLIN, 8 * i + 4);
  });
  pollMs = subs.length === 0 ? IDLE_POLL_MS : Math.min(...subs.map((s) => s.pollMs));
}

function fatal(ch: number, err: unknown): ThreadMessage {
  if (err instanceof NetlinkError) return { type: 'fatal', ch, errno: err.errno, op: err.op, message: err.message };
  return { type: 'fatal', ch, errno: 0, op: 'subscriber', message: err instanceof Error ? err.message : String(err) };
}

function revive(r: NetlinkRequest): NetlinkRequest {
  const out: NetlinkRequest = { ...r, body: asBuffer(r.body) };
  if (r.unfilteredBody) out.unfilteredBody = asBuffer(r.unfilteredBody);
  return out;
}

/**
 * Exact-size copies of the payloads: a Buffer is a view on a larger buffer
 * (our 64 KiB receive buffer, Node's pool), and structured clone would copy
 * the whole backing store for every message.
 */
function compact(ms: NlMessage[]): NlMessage[] {
  return ms.map((m) => ({ header: m.header, payload: new Uint8Array(m.payload) as Buffer }));
}

function serve(ch: number, c: WorkerCall): void {
  const chan = channels.get(ch);
  let reply: WorkerReply;
  let transfer: ArrayBuffer[] = [];
  try {
    if (chan?.kind !== 'request') throw new Error('netlink transport is closed');
    if (!chan.sock) throw chan.openError;
    const sock = chan.sock;
    if (c.kind === 'batch') {
      const rs = sock.batch(c.reqs.map(revive), c.opts);
      reply = { id: c.id, ok: true, replies: rs.map((r) => (r.ok ? { ok: true as const, messages: compact(r.messages) } : { ok: false as const, error: errorToWire(r.error) })) };
    } else {
      const ms = c.kind === 'dump' ? sock.dump(revive(c.req), c.opts) : sock.request(revive(c.req), c.opts);
      const packed = packMessages(ms);
      reply = { id: c.id, ok: true, packed };
      transfer = [packed];
    }
  } catch (e) {
    reply = { id: c.id, ok: false, error: errorToWire(e) };
  }
  post({ type: 'reply', ch, reply }, transfer);
}

/** Handles one call; false for 'exit'. */
function handle(m: ThreadCall): boolean {
  switch (m.type) {
    case 'open':
      try {
        const sock = NetlinkSocket.open(m.opts);
        channels.set(m.ch, { kind: 'request', sock, openError: null });
        post({ type: 'ready', ch: m.ch, portId: sock.portId });
      } catch (e) {
        channels.set(m.ch, { kind: 'request', sock: null, openError: e });
      }
      return true;
    case 'subscribe':
      try {
        const sock = NetlinkSocket.open({ groups: m.init.groups, memberships: m.init.memberships, rcvbuf: m.init.rcvbuf, ...(m.init.filter ? { filter: m.init.filter } : {}) });
        channels.set(m.ch, { kind: 'subscription', ch: m.ch, sock, pollMs: m.init.pollMs });
        subscriptionsChanged();
        post({ type: 'ready', ch: m.ch, portId: sock.portId });
      } catch (e) {
        post(fatal(m.ch, e));
      }
      return true;
    case 'call':
      serve(m.ch, m.call);
      return true;
    case 'close': {
      const chan = channels.get(m.ch);
      channels.delete(m.ch);
      chan?.sock?.close();
      if (chan?.kind === 'subscription') subscriptionsChanged();
      post({ type: 'closed', ch: m.ch });
      return true;
    }
    case 'exit':
      return false;
  }
}

function decodeAll(ch: number, messages: NlMessage[], out: NetlinkEvent[]): void {
  for (const msg of messages) {
    try {
      const obj = decodeRtnlMessage(msg);
      if (obj) out.push({ ...obj, pid: msg.header.pid });
    } catch (err) {
      // One undecodable notification must not end the subscription; report it
      // so the owner can treat it like an overrun (re-dump) if it cares.
      if (err instanceof NetlinkDecodeError) post({ type: 'decode-error', ch, message: err.message });
      else throw err;
    }
  }
}

/** Forwards what one notification socket has queued (at most MAX_DRAIN datagrams). */
function drain(sub: Subscription): void {
  try {
    const events: NetlinkEvent[] = [];
    let overrun = false;
    for (let i = 0; i < MAX_DRAIN; i++) {
      const r = sub.sock.receive(0);
      if (r.kind === 'timeout') break;
      if (r.kind === 'overrun') {
        overrun = true;
        break;
      }
      decodeAll(sub.ch, r.messages, events);
    }
    if (events.length > 0) post({ type: 'events', ch: sub.ch, events });
    if (overrun) post({ type: 'overrun', ch: sub.ch });
  } catch (err) {
    // the subscription ends; the others go on
    post(fatal(sub.ch, err));
    channels.delete(sub.ch);
    sub.sock.close();
    subscriptionsChanged();
  }
}

/** One poll() on the eventfd and the notification sockets; forwards what is readable. */
function pollOnce(timeoutMs: number): void {
  const n = lib.poll(pollFds, 1 + subs.length, timeoutMs);
  if (n < 0) {
    if (lib.errno() === EINTR) return;
    throw syscallError(lib, 'poll');
  }
  if (n === 0) return;
  if (pollFds.readInt16LE(6) !== 0) {
    try {
      readSync(wakeFd, counter); // resets the counter
    } catch {
      // EAGAIN: someone else's read got it first; nothing to reset
    }
  }
  const ready = subs.filter((_, i) => pollFds.readInt16LE(8 * (i + 1) + 6) !== 0);
  for (const sub of ready) if (channels.get(sub.ch) === sub) drain(sub);
}

function run(): void {
  subscriptionsChanged();
  post({ type: 'up', wakeFd });
  for (;;) {
    let got = receiveMessageOnPort(port);
    if (!got) {
      // Tell the main thread to wake us, then look once more: a call posted
      // before the flag was set is seen here, one posted after it finds the
      // flag set and writes the eventfd (thread.ts, wake()).
      Atomics.store(state, 0, SLEEPING);
      got = receiveMessageOnPort(port);
      if (!got) {
        pollOnce(pollMs);
        Atomics.store(state, 0, AWAKE);
        continue;
      }
      Atomics.store(state, 0, AWAKE);
    }
    if (!handle(got.message as ThreadCall)) break;
    // notifications that came in meanwhile go out before the next call, in kernel order
    if (subs.length > 0) pollOnce(0);
  }
  for (const chan of channels.values()) chan.sock?.close();
  channels.clear();
  // The eventfd stays open: the main thread closes it once this thread has exited.
}

run();
