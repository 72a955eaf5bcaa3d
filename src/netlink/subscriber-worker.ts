// Worker side of NetlinkSubscriber (see subscriber.ts for the contract).
// The loop never sits in a native call for longer than one poll interval,
// so setting the shared stop flag always ends it: a worker blocked inside
// native recv() could not be terminated.

import { parentPort, workerData } from 'node:worker_threads';
import { NetlinkSocket } from './socket.js';
import { decodeRtnlMessage } from './rtnl.js';
import { NetlinkDecodeError, NetlinkError } from './errors.js';
import type { NlMessage } from './codec.js';
import type { WorkerInit, WorkerMessage, NetlinkEvent } from './subscriber.js';

const init = workerData as WorkerInit;
const stop = new Int32Array(init.stop);
/** Datagrams drained per wake-up before posting, bounding latency under bursts. */
const MAX_DRAIN = 512;

function post(m: WorkerMessage): void {
  parentPort!.postMessage(m);
}

function errorInfo(err: unknown): WorkerMessage & { type: 'fatal' } {
  if (err instanceof NetlinkError) {
    return { type: 'fatal', errno: err.errno, op: err.op, message: err.message };
  }
  return { type: 'fatal', errno: 0, op: 'subscriber', message: err instanceof Error ? err.message : String(err) };
}

function decodeAll(messages: NlMessage[], out: NetlinkEvent[]): void {
  for (const msg of messages) {
    try {
      const obj = decodeRtnlMessage(msg);
      if (obj) out.push({ ...obj, pid: msg.header.pid });
    } catch (err) {
      // One undecodable notification must not end the subscription; report it
      // so the owner can treat it like an overrun (re-dump) if it cares.
      if (err instanceof NetlinkDecodeError) post({ type: 'decode-error', message: err.message });
      else throw err;
    }
  }
}

function run(): void {
  let sock: NetlinkSocket;
  try {
    sock = NetlinkSocket.open({ groups: init.groups, memberships: init.memberships, rcvbuf: init.rcvbuf, ...(init.filter ? { filter: init.filter } : {}) });
  } catch (err) {
    post(errorInfo(err));
    return;
  }
  try {
    post({ type: 'ready', portId: sock.portId });
    while (Atomics.load(stop, 0) === 0) {
      const first = sock.receive(init.pollMs);
      if (first.kind === 'timeout') continue;
      if (first.kind === 'overrun') {
        post({ type: 'overrun' });
        continue;
      }
      const events: NetlinkEvent[] = [];
      decodeAll(first.messages, events);
      let overrun = false;
      for (let i = 0; i < MAX_DRAIN && Atomics.load(stop, 0) === 0; i++) {
        const more = sock.receive(0);
        if (more.kind === 'timeout') break;
        if (more.kind === 'overrun') {
          overrun = true;
          break;
        }
        decodeAll(more.messages, events);
      }
      if (events.length > 0) post({ type: 'events', events });
      if (overrun) post({ type: 'overrun' });
    }
  } catch (err) {
    post(errorInfo(err));
  } finally {
    sock.close();
  }
}

run();
