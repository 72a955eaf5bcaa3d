// An etcd older than 3.4 has no JSON gateway under /v3/ (3.2 serves
// /v3alpha, 3.3 /v3alpha and /v3beta): every /v3/ call answers HTTP 404
// "404 page not found", while gRPC works. Real flanneld speaks gRPC, so it
// works there; flannel-ts's default client must notice and switch to etcd3.
//
// Debian's etcd is 3.4, so the old one is modelled by a proxy in front of
// it: gRPC connections (an HTTP/2 preface) pass through to the real etcd,
// HTTP/1.1 requests get etcd 3.3's answer to a /v3/ path.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startEtcd, type EtcdServer } from '../helpers/etcd.js';
import { FlanneldProc } from '../helpers/flanneld.js';

const H2_PREFACE = 'PRI * HTTP/2.0';
let dir: string;
let etcd: EtcdServer;
let proxy: net.Server;
let proxyUrl: string;
let http1Requests = 0;
const procs: FlanneldProc[] = [];

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'fts-oldetcd-'));
  etcd = await startEtcd('127.0.0.1');
  await etcd.client.put('/coreos.com/network/config').value('{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}');
  const upstream = new URL(etcd.endpoint);
  proxy = net.createServer((c) => {
    c.once('data', (first) => {
      if (first.toString('latin1').startsWith(H2_PREFACE)) {
        const u = net.connect(Number(upstream.port), upstream.hostname, () => {
          u.write(first);
          c.pipe(u).pipe(c);
        });
        u.on('error', () => c.destroy());
        c.on('error', () => u.destroy());
        return;
      }
      http1Requests++;
      const body = '404 page not found\n';
      c.end(`HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    });
    c.on('error', () => undefined);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
});

after(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  await new Promise((r) => proxy?.close(r));
  await etcd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const run = (client: string) => {
  const p = new FlanneldProc(['--iface=lo', '--public-ip=192.0.2.78', '--iptables-forward-rules=false', `--subnet-file=${path.join(dir, 'subnet.env')}`, `--etcd-endpoints=${proxyUrl}`], { env: { FLANNEL_ETCD_CLIENT: client } });
  procs.push(p);
  return p;
};

test('etcd before 3.4 (no /v3/ gateway): the default client says so once, switches to etcd3 and takes a lease', { timeout: 60_000 }, async () => {
  const p = run('');
  await p.waitReady();
  assert.ok(http1Requests > 0, 'the gateway was tried first');
  assert.equal(p.lines.filter((l) => /answers HTTP 404 for its v3 JSON gateway .*an older etcd\. Using the etcd3 gRPC client instead/.test(l.msg)).length, 1, p.raw.join('\n'));
  assert.match(readFileSync(path.join(dir, 'subnet.env'), 'utf8'), /FLANNEL_SUBNET=10\.244\./);
  const kvs = await etcd.client.getAll().prefix('/coreos.com/network/subnets/').strings();
  assert.deepEqual(Object.values(kvs), ['{"PublicIP":"192.0.2.78","PublicIPv6":null}']);
  assert.equal(await p.stop(), 0);
  await etcd.client.delete().prefix('/coreos.com/network/subnets/');
});

test('FLANNEL_ETCD_CLIENT=gateway against etcd before 3.4: one clear line naming the version needed, no fallback', { timeout: 60_000 }, async () => {
  const p = run('gateway');
  await p.waitFor((l) => /no etcd v3 JSON gateway|answered 404/.test(l.msg), 20_000);
  assert.ok(!p.lines.some((l) => /Using the etcd3 gRPC client/.test(l.msg)));
  await p.stop('SIGKILL');
});
