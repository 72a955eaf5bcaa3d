import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { GatewayClient, type WatchResult } from './gateway-client.js';

/** A fake gateway whose /v3/watch answers with `chunks`, written one by one. */
async function fakeGateway(chunks: readonly string[]): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      // one piece every 2 ms; the stream stays open, as etcd's does
      chunks.forEach((c, i) => setTimeout(() => res.write(c), 2 * i));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

test('watch stream: a message in many pieces, several in one piece, and a last one without its newline each arrive once, whole', async () => {
  const msg = (rev: number, n: number) => JSON.stringify({ result: { header: { revision: String(rev) }, events: Array.from({ length: n }, (_, i) => ({ kv: { key: Buffer.from(`/k/${rev}/${i}`).toString('base64') } })) } });
  const big = msg(2, 2000); // ~70 kB, written in 997-byte pieces
  const pieces: string[] = [];
  for (let i = 0; i < big.length; i += 997) pieces.push(big.slice(i, i + 997));
  pieces[pieces.length - 1] += '\n';
  const gw = await fakeGateway([msg(1, 1) + '\n', ...pieces, msg(3, 1) + '\n' + msg(4, 2) + '\n', msg(5, 1)]);
  const client = new GatewayClient({ endpoints: [gw.url] });
  const got: WatchResult[] = [];
  let ended: unknown = null;
  const w = client.watch({ key: 'x' }, (r) => got.push(r), (e) => (ended = e));
  try {
    const deadline = Date.now() + 5000;
    while (got.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(ended, null);
    assert.deepEqual(got.map((r) => [r.header?.revision, r.events?.length]), [['1', 1], ['2', 2000], ['3', 1], ['4', 2], ['5', 1]]);
    assert.equal(Buffer.from(got[1]!.events![1999]!.kv!.key!, 'base64').toString(), '/k/2/1999');
  } finally {
    w.cancel();
    client.close();
    await gw.close();
  }
});
