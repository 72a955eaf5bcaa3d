// The shared netlink worker (thread.ts tells why and how): the request
// sockets of WorkerTransport, one thread. It never returns to its event loop;
// it waits in poll() on the eventfd the main thread writes after posting a
// call, always with a timeout, and every request keeps its own deadline
// (NetlinkSocket), so nothing here waits on the kernel without a bound.

import { readSync } from 'node:fs';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import * as C from './constants.js';
import type { NlMessage } from './codec.js';
import { libc, syscallError } from './libc.js';
import type { NetlinkRequest } from './requests.js';
import { NetlinkSocket } from './socket.js';
import { AWAKE, SLEEPING, type ThreadCall, type ThreadInit, type ThreadMessage, type WorkerCall, type WorkerReply } from './thread.js';
import { asBuffer, errorToWire, packMessages } from './transport.js';

const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
const EINTR = 4;
/** poll() timeout: only a lost wake-up could need it. */
const IDLE_POLL_MS = 1000;

const port = parentPort!;
const state = new Int32Array((workerData as ThreadInit).state);
const lib = libc();
const wakeFd = lib.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
// thrown: the worker's 'error' event fails every channel with this message
if (wakeFd < 0) throw syscallError(lib, 'eventfd');
const counter = Buffer.alloc(8);

interface RequestChannel {
  sock: NetlinkSocket | null;
  /** an open failure is every request's error, as it would be on an inline socket */
  openError: unknown;
}
const channels = new Map<number, RequestChannel>();
/** struct pollfd: the eventfd */
const pollFds = Buffer.alloc(8);
pollFds.writeInt32LE(wakeFd, 0);
pollFds.writeInt16LE(C.POLLIN, 4);

function post(m: ThreadMessage, transfer: ArrayBuffer[] = []): void {
  port.postMessage(m, transfer);
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
    if (!chan) throw new Error('netlink transport is closed');
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
        channels.set(m.ch, { sock, openError: null });
        post({ type: 'ready', ch: m.ch, portId: sock.portId });
      } catch (e) {
        channels.set(m.ch, { sock: null, openError: e });
      }
      return true;
    case 'call':
      serve(m.ch, m.call);
      return true;
    case 'close': {
      const chan = channels.get(m.ch);
      channels.delete(m.ch);
      chan?.sock?.close();
      post({ type: 'closed', ch: m.ch });
      return true;
    }
    case 'exit':
      return false;
  }
}

/** One poll() on the eventfd. */
function pollOnce(timeoutMs: number): void {
  const n = lib.poll(pollFds, 1, timeoutMs);
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
}

function run(): void {
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
        pollOnce(IDLE_POLL_MS);
        Atomics.store(state, 0, AWAKE);
        continue;
      }
      Atomics.store(state, 0, AWAKE);
    }
    if (!handle(got.message as ThreadCall)) break;
  }
  for (const chan of channels.values()) chan.sock?.close();
  channels.clear();
  // The eventfd stays open: the main thread closes it once this thread has exited.
}

run();
