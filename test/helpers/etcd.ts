// Starts a real etcd-server (Debian's etcd) on loopback for a test file, on
// free ports, with its own data dir; stop() kills it by pid and removes the
// data dir. Tests fail with a clear message if etcd is not installed.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Etcd3 } from 'etcd3';

export interface EtcdServer {
  endpoint: string;
  pid: number;
  client: Etcd3;
  stop(): Promise<void>;
}

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface EtcdTls {
  certFile: string;
  keyFile: string;
  caFile: string;
  /** client certificate and key the harness itself uses */
  clientCert: string;
  clientKey: string;
}

export async function startEtcd(bind = '127.0.0.1', tls?: EtcdTls, extraArgs: string[] = []): Promise<EtcdServer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-etcd-'));
  const cport = await freePort(bind);
  const pport = await freePort(bind);
  const client = `${tls ? 'https' : 'http'}://${bind}:${cport}`;
  const peer = `http://${bind}:${pport}`;
  const proc: ChildProcess = spawn(
    'etcd',
    [
      '--name', 'fts', '--data-dir', dir,
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `fts=${peer}`, '--log-level', 'error', '--logger', 'zap',
      ...(tls ? ['--cert-file', tls.certFile, '--key-file', tls.keyFile, '--trusted-ca-file', tls.caFile, '--client-cert-auth'] : []),
      ...extraArgs,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  // If the test process dies without running its after() hooks, take etcd with it.
  const reap = () => proc.kill('SIGKILL');
  process.once('exit', reap);
  void exited.then(() => process.off('exit', reap));
  const spawnErr = new Promise<never>((_, reject) =>
    proc.once('error', (e) => reject(new Error(`cannot start etcd (install Debian's etcd-server): ${e.message}`))),
  );
  const c = new Etcd3({
    hosts: client,
    ...(tls ? { credentials: { rootCertificate: readFileSync(tls.caFile), privateKey: readFileSync(tls.clientKey), certChain: readFileSync(tls.clientCert) } } : {}),
  });
  const stop = async () => {
    c.close();
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 20_000;
  try {
    for (;;) {
      try {
        await Promise.race([c.get('/health-probe').string(), spawnErr]);
        break;
      } catch (e) {
        if ((e as Error).message.startsWith('cannot start etcd') || proc.exitCode !== null) throw new Error(`etcd failed to start: ${(e as Error).message} ${stderr}`);
        if (Date.now() > deadline) throw new Error(`etcd did not become ready: ${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { endpoint: client, pid: proc.pid!, client: c, stop };
}

/**
 * A throwaway CA with a server certificate for 127.0.0.1 and a client certificate (openssl).
 * The server certificate is good for client auth too, as etcd's docs and
 * kubeadm make it: etcd's JSON gateway dials etcd's own gRPC port with the
 * server certificate, so under --client-cert-auth a serverAuth-only
 * certificate breaks the gateway ("connection closed", code 14) while gRPC
 * clients still work. `serverAuthOnly` makes such a certificate.
 */
export function makeTlsFiles(dir: string, opts: { serverAuthOnly?: boolean } = {}): EtcdTls {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=fts-test-ca');
  const serverExt = `subjectAltName=IP:127.0.0.1\nextendedKeyUsage=${opts.serverAuthOnly ? 'serverAuth' : 'serverAuth,clientAuth'}`;
  for (const [name, ext] of [['server', serverExt], ['client', 'extendedKeyUsage=clientAuth']] as const) {
    run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=fts-${name}`);
    writeFileSync(path.join(dir, `${name}.ext`), ext + '\n');
    run('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`);
  }
  const f = (n: string) => path.join(dir, n);
  return { certFile: f('server.crt'), keyFile: f('server.key'), caFile: f('ca.crt'), clientCert: f('client.crt'), clientKey: f('client.key') };
}
