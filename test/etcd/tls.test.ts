// --etcd-keyfile/--etcd-certfile/--etcd-cafile against an etcd that requires
// client certificates (spec §3.1: TLS only when both key and cert are set).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { makeTlsFiles, startEtcd, type EtcdServer, type EtcdTls } from '../helpers/etcd.js';
import { FlanneldProc } from '../helpers/flanneld.js';

let dir: string;
let tls: EtcdTls;
let etcd: EtcdServer;
const procs: FlanneldProc[] = [];

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'fts-tls-'));
  tls = makeTlsFiles(dir);
  etcd = await startEtcd('127.0.0.1', tls);
  await etcd.client.put('/coreos.com/network/config').value('{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}');
});

after(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  await etcd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const run = (args: string[], client: string) => {
  const p = new FlanneldProc(['--iface=lo', '--public-ip=192.0.2.77', '--iptables-forward-rules=false', `--subnet-file=${path.join(dir, 'subnet.env')}`, ...args], { env: { FLANNEL_ETCD_CLIENT: client } });
  procs.push(p);
  return p;
};

// both etcd clients: the JSON gateway (the default) and etcd3 (FLANNEL_ETCD_CLIENT=etcd3)
for (const client of ['gateway', 'etcd3']) {
  test(`with a client certificate flanneld takes a lease over TLS (${client})`, async () => {
    const p = run([`--etcd-endpoints=${etcd.endpoint}`, `--etcd-keyfile=${tls.clientKey}`, `--etcd-certfile=${tls.clientCert}`, `--etcd-cafile=${tls.caFile}`], client);
    await p.waitReady();
    assert.match(readFileSync(path.join(dir, 'subnet.env'), 'utf8'), /FLANNEL_SUBNET=10\.244\./);
    const kvs = await etcd.client.getAll().prefix('/coreos.com/network/subnets/').strings();
    assert.deepEqual(Object.values(kvs), ['{"PublicIP":"192.0.2.77","PublicIPv6":null}']);
    assert.equal(await p.stop(), 0);
  });

  test(`a CA file alone is ignored (as in flannel): no TLS, so the TLS-only etcd is unreachable and flanneld keeps retrying (${client})`, async () => {
    const p = run([`--etcd-endpoints=${etcd.endpoint.replace('https', 'http')}`, `--etcd-cafile=${tls.caFile}`], client);
    await p.waitFor((l) => /--etcd-cafile is ignored/.test(l.msg));
    await p.waitFor((l) => /couldn't fetch network config/.test(l.msg), 20_000);
    assert.equal(await p.stop(), 0);
  });
}

test('a server certificate without clientAuth (the gateway cannot dial its own etcd): the default client falls back to etcd3 and takes a lease', { timeout: 60_000 }, async () => {
  const dir2 = mkdtempSync(path.join(tmpdir(), 'fts-tls2-'));
  const tls2 = makeTlsFiles(dir2, { serverAuthOnly: true });
  const etcd2 = await startEtcd('127.0.0.1', tls2);
  try {
    await etcd2.client.put('/coreos.com/network/config').value('{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}');
    const p = run([`--etcd-endpoints=${etcd2.endpoint}`, `--etcd-keyfile=${tls2.clientKey}`, `--etcd-certfile=${tls2.clientCert}`, `--etcd-cafile=${tls2.caFile}`], '');
    await p.waitReady();
    assert.ok(p.lines.some((l) => /JSON gateway cannot reach etcd's own gRPC port over TLS .*Using the etcd3 gRPC client instead/.test(l.msg)), p.raw.join('\n'));
    const kvs = await etcd2.client.getAll().prefix('/coreos.com/network/subnets/').strings();
    assert.deepEqual(Object.values(kvs), ['{"PublicIP":"192.0.2.77","PublicIPv6":null}']);
    assert.equal(await p.stop(), 0);
  } finally {
    await etcd2.stop();
    rmSync(dir2, { recursive: true, force: true });
  }
});
