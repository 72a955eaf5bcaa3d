// Child of bench/etcd-client.ts: load one etcd client, do one range of a
// prefix against the etcd at argv[3], print one JSON line and exit. Each
// candidate is imported only here, in a fresh process.
//   node dist/bench/etcd-client-probe.js <etcd3|gateway|grpc-static|floor> <endpoint>

const [candidate, endpoint] = process.argv.slice(2) as [string, string];
const PREFIX = '/bench/network/subnets/';

async function rangeEtcd3(): Promise<number> {
  const { Etcd3 } = await import('etcd3');
  const c = new Etcd3({ hosts: endpoint });
  const kvs = await c.getAll().prefix(PREFIX).keys();
  c.close();
  return kvs.length;
}

async function rangeGateway(): Promise<number> {
  const { GatewayClient, b64, prefixEnd } = await import('../src/store/etcd/gateway-client.js');
  const c = new GatewayClient({ endpoints: [endpoint] });
  const r = await c.call<{ kvs?: unknown[] }>('kv/range', { key: b64(PREFIX), range_end: prefixEnd(PREFIX) });
  c.close();
  return r.kvs?.length ?? 0;
}

// (c) grpc-js with no .proto parsing at all: RangeRequest encoded by hand
// (what a precompiled/static protobuf module would do), the answer's kvs
// counted by walking the wire format. The lower bound of any grpc-js setup.
async function rangeGrpcStatic(): Promise<number> {
  const grpc = await import('@grpc/grpc-js');
  const bytes = (field: number, b: Buffer) => Buffer.concat([Buffer.from([(field << 3) | 2]), varint(b.length), b]);
  const end = Buffer.from(PREFIX);
  end[end.length - 1]! += 1;
  const reqBuf = Buffer.concat([bytes(1, Buffer.from(PREFIX)), bytes(2, end)]);
  const client = new grpc.Client(endpoint.replace(/^https?:\/\//, ''), grpc.credentials.createInsecure());
  const res = await new Promise<Buffer>((resolve, reject) =>
    client.makeUnaryRequest('/etcdserverpb.KV/Range', (b: Buffer) => b, (b: Buffer) => b, reqBuf, (err, r) => (err ? reject(err) : resolve(r!))),
  );
  client.close();
  let n = 0;
  for (let i = 0; i < res.length; ) {
    const [tag, a] = readVarint(res, i);
    const [len, b] = readVarint(res, a);
    if ((tag & 7) === 0) {
      i = b; // a varint field (more, count): len was its value
      continue;
    }
    if ((tag & 7) !== 2) throw new Error('unexpected wire type');
    if (tag >> 3 === 2) n++;
    i = b + len;
  }
  return n;
}

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}
function readVarint(b: Buffer, i: number): [number, number] {
  let v = 0;
  let s = 0;
  for (;;) {
    const x = b[i++]!;
    v += (x & 127) * 2 ** s;
    s += 7;
    if (x < 128) return [v, i];
  }
}

const fns: Record<string, () => Promise<number>> = { etcd3: rangeEtcd3, gateway: rangeGateway, 'grpc-static': rangeGrpcStatic, floor: () => Promise.resolve(0) };
const fn = fns[candidate];
if (!fn) throw new Error(`unknown candidate ${candidate}`);
const keys = await fn();
const ms = performance.now();
// let what the client left behind (timers, sockets) settle, as a daemon would
if (global.gc) global.gc();
process.stdout.write(JSON.stringify({ candidate, keys, ms, rss: process.memoryUsage().rss }) + '\n');
process.exit(0);
