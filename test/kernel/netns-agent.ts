// Test helper: runs KernelNet calls on behalf of a test process, from inside
// a network namespace (`ip netns exec <ns> node netns-agent.js`). Everything
// it changes therefore lives in that namespace. Protocol: one JSON object per
// line on stdin ({id, method, params}) and one per line on stdout
// ({id, result} or {id, error}). Not part of the product.

import { createInterface } from 'node:readline';
import { RtNetlink } from '../../src/kernel/rtnetlink.js';
import { NetlinkSocket } from '../../src/netlink/socket.js';
import { NetlinkSubscriber, type NetlinkEvent } from '../../src/netlink/subscriber.js';
import { NetlinkError } from '../../src/netlink/errors.js';
import * as C from '../../src/netlink/constants.js';
import * as R from '../../src/netlink/requests.js';
import type { KernelNet } from '../../src/kernel/types.js';

export interface AgentError {
  name: string;
  message: string;
  errno?: number;
  code?: string;
  op?: string;
  extAck?: string;
}

export interface EventPattern {
  kind: NetlinkEvent['kind'];
  action: 'new' | 'del';
  /** Shallow match against the event's object (link/neigh/fdb/route/addr). */
  match: Record<string, unknown>;
}

// --worker: KernelNet calls go through the worker-thread socket the daemon
// uses; the raw socket probes below always use an inline one.
const inline = RtNetlink.open();
const kernel = process.argv.includes('--worker') ? RtNetlink.openInWorker() : process.argv.includes('--async') ? RtNetlink.openAsync() : inline;
let subscriber: NetlinkSubscriber | undefined;
const events: NetlinkEvent[] = [];
let overruns = 0;
const waiters: Array<{ pattern: EventPattern; resolve: (e: NetlinkEvent) => void }> = [];

function objectOf(e: NetlinkEvent): Record<string, unknown> {
  switch (e.kind) {
    case 'link':
      return e.link as unknown as Record<string, unknown>;
    case 'addr':
      return e.addr as unknown as Record<string, unknown>;
    case 'route':
      return e.route as unknown as Record<string, unknown>;
    case 'neigh':
      return e.neigh as unknown as Record<string, unknown>;
    case 'fdb':
      return e.fdb as unknown as Record<string, unknown>;
  }
}

function matches(e: NetlinkEvent, p: EventPattern): boolean {
  if (e.kind !== p.kind || e.action !== p.action) return false;
  const obj = objectOf(e);
  return Object.entries(p.match).every(([k, v]) => obj[k] === v);
}

function onEvent(e: NetlinkEvent): void {
  events.push(e);
  for (let i = waiters.length - 1; i >= 0; i--) {
    if (matches(e, waiters[i]!.pattern)) {
      waiters[i]!.resolve(e);
      waiters.splice(i, 1);
    }
  }
}

const KERNEL_METHODS = new Set<keyof KernelNet>([
  'listLinks',
  'getLinkByName',
  'getLinkByIndex',
  'createVxlan',
  'deleteLink',
  'setLinkUp',
  'setLinkDown',
  'setMtu',
  'setLinkAddress',
  'listAddrs',
  'addAddr',
  'delAddr',
  'listRoutes',
  'replaceRoute',
  'delRoute',
  'listNeighs',
  'replaceNeigh',
  'delNeigh',
  'listFdb',
  'replaceFdb',
  'appendFdb',
  'delFdb',
  'applyBatch',
]);

async function call(method: string, params: unknown[]): Promise<unknown> {
  if (KERNEL_METHODS.has(method as keyof KernelNet)) {
    const fn = (kernel as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[method]!;
    return fn.apply(kernel, params);
  }
  switch (method) {
    case 'portId':
      return inline.socket.portId;
    case 'subscribe': {
      events.length = 0;
      subscriber = await NetlinkSubscriber.start({
        groups: ['link', 'neigh', 'route'],
        onEvent,
        onOverrun: () => void overruns++,
      });
      return { portId: subscriber.portId };
    }
    case 'waitEvent': {
      const [pattern, timeoutMs] = params as [EventPattern, number];
      const seen = events.find((e) => matches(e, pattern));
      if (seen) return seen;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${pattern.kind} ${pattern.action} event matching ${JSON.stringify(pattern.match)} within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          pattern,
          resolve: (e) => {
            clearTimeout(timer);
            resolve(e);
          },
        });
      });
    }
    case 'unsubscribe': {
      const started = performance.now();
      await subscriber?.stop();
      subscriber = undefined;
      return { stopMs: performance.now() - started, overruns, events: events.length };
    }
    case 'overrunProbe': {
      // A listener socket with a tiny buffer that nobody reads while many
      // neighbour changes happen must report ENOBUFS as an overrun result.
      const [ifindex, count] = params as [number, number];
      const listener = NetlinkSocket.open({ groups: C.RTMGRP_NEIGH, rcvbuf: 4096 });
      try {
        const reqs: R.NetlinkRequest[] = [];
        for (let i = 0; i < count; i++) {
          reqs.push(R.newNeighRequest({ ifindex, ip: `198.19.${i >> 8}.${i & 255}`, mac: '02:00:00:00:00:99' }));
        }
        inline.socket.batch(reqs);
        const kinds: string[] = [];
        for (let i = 0; i < 10000; i++) {
          const r = listener.receive(0);
          kinds.push(r.kind);
          if (r.kind !== 'messages') break;
        }
        for (let i = 0; i < count; i++) reqs[i] = R.delNeighRequest({ ifindex, ip: `198.19.${i >> 8}.${i & 255}` });
        inline.socket.batch(reqs);
        return { sawOverrun: kinds.includes('overrun'), receives: kinds.length };
      } finally {
        listener.close();
      }
    }
    default:
      throw new Error(`unknown method ${method}`);
  }
}

function serializeError(err: unknown): AgentError {
  if (err instanceof NetlinkError) {
    return {
      name: err.name,
      message: err.message,
      errno: err.errno,
      code: err.code,
      op: err.op,
      ...(err.extAck !== undefined ? { extAck: err.extAck } : {}),
    };
  }
  if (err instanceof Error) return { name: err.name, message: err.message };
  return { name: 'Error', message: String(err) };
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const { id, method, params } = JSON.parse(line) as { id: number; method: string; params: unknown[] };
  if (method === 'exit') {
    void (async () => {
      await subscriber?.stop();
      kernel.close();
      process.stdout.write(JSON.stringify({ id, result: null }) + '\n', () => process.exit(0));
    })();
    return;
  }
  call(method, params ?? []).then(
    (result) => process.stdout.write(JSON.stringify({ id, result: result ?? null }) + '\n'),
    (err: unknown) => process.stdout.write(JSON.stringify({ id, error: serializeError(err) }) + '\n'),
  );
});
rl.on('close', () => {
  void subscriber?.stop().finally(() => process.exit(0));
  if (!subscriber) process.exit(0);
});
process.stdout.write(JSON.stringify({ id: 0, result: 'ready' }) + '\n');
