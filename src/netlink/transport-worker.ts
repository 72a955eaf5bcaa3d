// Worker side of WorkerTransport: one NetlinkSocket, requests served in order.
import { parentPort, workerData } from 'node:worker_threads';
import { asBuffer, errorToWire, packMessages, type WorkerCall, type WorkerReply } from './transport.js';
import { NetlinkSocket, type NetlinkSocketOptions } from './socket.js';
import type { NetlinkRequest } from './requests.js';
import type { NlMessage } from './codec.js';

let sock: NetlinkSocket | null = null;
let openError: unknown = null;
try {
  sock = NetlinkSocket.open(workerData as NetlinkSocketOptions);
} catch (e) {
  openError = e;
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

if (sock) parentPort!.postMessage({ id: 0, ready: true, portId: sock.portId } satisfies WorkerReply);

parentPort!.on('message', (c: WorkerCall) => {
  if (c.kind === 'close') {
    sock?.close();
    parentPort!.close();
    return;
  }
  let reply: WorkerReply;
  let transfer: ArrayBuffer[] = [];
  try {
    if (!sock) throw openError;
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
  parentPort!.postMessage(reply, transfer);
});
