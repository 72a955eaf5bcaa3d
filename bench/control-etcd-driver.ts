// Runs inside the underlay namespace for bench/control.ts (the bench process in
// the root namespace cannot reach 192.0.2.1). It keeps one etcd3 client open
// and takes commands over HTTP on a unix socket in the shared filesystem, so
// no process start or connection set-up falls inside a measurement: every
// reply carries wall-clock timestamps taken right before the etcd request was
// sent (t0) and when etcd acknowledged it (t1).
//
//   node control-etcd-driver.js <etcd endpoint> <socket path>
//
// POST /config            put <prefix>/config
// POST /wipe              delete every lease key, revoke the bench's etcd lease
// POST /txn {from,count}  put `count` peers (indices from `from` up, skipping
//                         keys that already exist) in ONE etcd txn; the reply
//                         also says when the driver's own watches of the
//                         prefix had all of the txn's events: etcd's part of
//                         "txn -> routes", which every watcher pays — over
//                         gRPC (`delivered`, the etcd3 client, as flanneld's
//                         Go client) and over etcd's JSON gateway
//                         (`deliveredGateway`, flannel-ts's own GatewayClient,
//                         as flannel-ts's default client)
// POST /put {index}       one put           POST /del {index}  one delete
// POST /churn {add,del}   separate puts and deletes, all in flight at once
//
// Every key gets a 24 h etcd lease, as flannel's do (one lease, granted
// before the timed request, shared by the bench's keys).
import { Etcd3, type IRequestOp } from 'etcd3';
import { GatewayClient } from '../src/store/etcd/gateway-client.js';
import http from 'node:http';
import { rmSync } from 'node:fs';
import { NETWORK_CONFIG, PREFIX, SUBNETS, peer, wallNow } from './control-peers.js';

const [endpoint, socketPath] = process.argv.slice(2);
if (!endpoint || !socketPath) throw new Error('usage: control-etcd-driver <endpoint> <socket>');
const client = new Etcd3({ hosts: endpoint });
const kv = client.kv;
const prefixEnd = (p: string): Buffer => {
  const b = Buffer.from(p);
  b[b.length - 1]! += 1;
  return b;
};

/** The driver's own watches of the lease prefix: wall time at which each revision's events arrived, by client. */
const seenAt = { grpc: new Map<string, number>(), gateway: new Map<string, number>() };
const seenWaiters = new Set<() => void>();
const seen = (via: keyof typeof seenAt, revisions: Iterable<string | undefined>) => {
  const t = wallNow();
  for (const r of revisions) if (r !== undefined) seenAt[via].set(r, t);
  for (const f of seenWaiters) f();
};
const gateway = new GatewayClient({ endpoints: [endpoint] });
let watching: Promise<unknown> | undefined;
function watchOnce(): Promise<unknown> {
  return (watching ??= (async () => {
    const w = await client.watch().prefix(SUBNETS).create();
    w.on('data', (res) => seen('grpc', res.events.map((e) => e.kv.mod_revision)));
    await new Promise<void>((created, failed) => {
      gateway.watch(
        { key: Buffer.from(SUBNETS).toString('base64'), range_end: prefixEnd(SUBNETS).toString('base64') },
        (r) => {
          if (r.created) created();
          seen('gateway', (r.events ?? []).map((e) => e.kv?.mod_revision));
        },
        (err) => failed(err ?? new Error('gateway watch ended')),
      );
    });
  })());
}
async function delivered(via: keyof typeof seenAt, revision: string, timeoutMs = 10_000): Promise<number | null> {
  const deadline = Date.now() + timeoutMs;
  while (!seenAt[via].has(revision)) {
    if (Date.now() > deadline) return null;
    await new Promise<void>((r) => {
      const t = setTimeout(done, 50);
      function done() {
        clearTimeout(t);
        seenWaiters.delete(done);
        r();
      }
      seenWaiters.add(done);
    });
  }
  return seenAt[via].get(revision)!;
}

let leaseId: string | undefined;
async function lease(): Promise<string> {
  if (leaseId === undefined) leaseId = (await client.leaseClient.leaseGrant({ TTL: 86400 })).ID;
  return leaseId;
}

const putOp = (i: number, id: string): IRequestOp => {
  const p = peer(i);
  return { request_put: { key: Buffer.from(p.key), value: Buffer.from(p.value), lease: id } };
};

async function existingKeys(): Promise<Set<string>> {
  const r = await kv.range({ key: Buffer.from(SUBNETS), range_end: prefixEnd(SUBNETS), keys_only: true });
  return new Set(r.kvs.map((x) => x.key.toString()));
}

type Body = Record<string, unknown>;
const handlers: Record<string, (b: Body) => Promise<unknown>> = {
  async config() {
    await kv.put({ key: Buffer.from(`${PREFIX}/config`), value: Buffer.from(NETWORK_CONFIG) });
    return {};
  },
  async wipe() {
    const r = await kv.deleteRange({ key: Buffer.from(SUBNETS), range_end: prefixEnd(SUBNETS) });
    if (leaseId !== undefined) {
      await client.leaseClient.leaseRevoke({ ID: leaseId }).catch(() => undefined);
      leaseId = undefined;
    }
    return { deleted: Number(r.deleted) };
  },
  async txn(b) {
    const from = Number(b.from);
    const count = Number(b.count);
    const have = await existingKeys();
    const indices: number[] = [];
    for (let i = from; indices.length < count; i++) if (!have.has(peer(i).key)) indices.push(i);
    const id = await lease();
    await watchOnce();
    const success = indices.map((i) => putOp(i, id));
    const t0 = wallNow();
    const r = await kv.txn({ compare: [], success, failure: [] });
    const t1 = wallNow();
    if (!r.succeeded) throw new Error('txn did not succeed');
    const [at, atGateway] = await Promise.all([delivered('grpc', r.header.revision), delivered('gateway', r.header.revision)]);
    seenAt.grpc.clear();
    seenAt.gateway.clear();
    return { t0, t1, indices, revision: r.header.revision, delivered: at, deliveredGateway: atGateway };
  },
  async put(b) {
    const p = peer(Number(b.index));
    const id = await lease();
    const t0 = wallNow();
    await kv.put({ key: Buffer.from(p.key), value: Buffer.from(p.value), lease: id });
    return { t0, t1: wallNow() };
  },
  async del(b) {
    const p = peer(Number(b.index));
    const t0 = wallNow();
    const r = await kv.deleteRange({ key: Buffer.from(p.key) });
    return { t0, t1: wallNow(), deleted: Number(r.deleted) };
  },
  async churn(b) {
    const add = (b.add as number[]) ?? [];
    const del = (b.del as number[]) ?? [];
    const id = await lease();
    const t0 = wallNow();
    await Promise.all([
      ...add.map((i) => {
        const p = peer(i);
        return kv.put({ key: Buffer.from(p.key), value: Buffer.from(p.value), lease: id });
      }),
      ...del.map((i) => kv.deleteRange({ key: Buffer.from(peer(i).key) })),
    ]);
    return { t0, t1: wallNow() };
  },
};

rmSync(socketPath, { force: true });
const server = http.createServer((req, res) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (d: string) => (body += d));
  req.on('end', () => {
    const h = handlers[(req.url ?? '/').slice(1)];
    const reply = (code: number, obj: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(obj));
    };
    if (!h) return reply(404, { error: `no such command ${req.url}` });
    h(body ? (JSON.parse(body) as Body) : {}).then(
      (r) => reply(200, r),
      (e: unknown) => reply(500, { error: e instanceof Error ? e.message : String(e) }),
    );
  });
});
server.listen(socketPath, () => process.stdout.write('ready\n'));
const stop = () => {
  server.close();
  client.close();
  gateway.close();
  rmSync(socketPath, { force: true });
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
