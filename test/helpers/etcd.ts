// Starts a real etcd-server (Debian's etcd) on loopback for a test file, on
// free ports, with its own data dir; stop() kills it by pid and removes the
// data dir. Tests fail with a clear message if etcd is not installed.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
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

export async function startEtcd(bind = '127.0.0.1'): Promise<EtcdServer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-etcd-'));
  const cport = await freePort(bind);
  const pport = await freePort(bind);
  const client = `http://${bind}:${cport}`;
  const peer = `http://${bind}:${pport}`;
  const proc: ChildProcess = spawn(
    'etcd',
    [
      '--name', 'fts', '--data-dir', dir,
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `fts=${peer}`, '--log-level', 'error', '--logger', 'zap',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const spawnErr = new Promise<never>((_, reject) =>
    proc.once('error', (e) => reject(new Error(`cannot start etcd (install Debian's etcd-server): ${e.message}`))),
  );
  const c = new Etcd3({ hosts: client });
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
