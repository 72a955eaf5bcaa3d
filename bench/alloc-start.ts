// One flanneld start on the alloc backend against an etcd on loopback, for
// bench:startup and bench:etcd-client: spawn → subnet.env holding
// FLANNEL_SUBNET, then RSS after `rssWaitMs`; the process is stopped after.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type { EtcdServer } from '../test/helpers/etcd.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const rssKbOf = (pid: number) => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);

export interface AllocStart {
  etcd: EtcdServer;
  /** the command that starts flanneld (node, its flags and the entry) */
  argv: readonly string[];
  /** etcd prefix, written with the alloc config first */
  prefix: string;
  subnetFile: string;
  /** distinct per run: the last octet of 192.0.2.x */
  index: number;
  env?: NodeJS.ProcessEnv;
  rssWaitMs: number;
}

export async function allocStart(o: AllocStart): Promise<{ ms: number; rssKb: number }> {
  await o.etcd.client.put(`${o.prefix}/config`).value('{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}');
  const t0 = performance.now();
  const p = spawn(o.argv[0]!, [...o.argv.slice(1), `--etcd-endpoints=${o.etcd.endpoint}`, `--etcd-prefix=${o.prefix}`, '--iface=lo', '--iptables-forward-rules=false', `--public-ip=192.0.2.${(o.index % 250) + 1}`, `--subnet-file=${o.subnetFile}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { PATH: process.env.PATH ?? '', ...o.env },
  });
  let err = '';
  p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise((r) => p.once('exit', r));
  try {
    for (;;) {
      if (existsSync(o.subnetFile) && /^FLANNEL_SUBNET=/m.test(readFileSync(o.subnetFile, 'utf8'))) break;
      if (p.exitCode !== null || performance.now() - t0 > 30_000) throw new Error(`${o.argv.join(' ')} did not write ${o.subnetFile}: ${err}`);
      await sleep(1);
    }
    const ms = performance.now() - t0;
    await sleep(o.rssWaitMs);
    return { ms, rssKb: rssKbOf(p.pid!) };
  } finally {
    p.kill('SIGTERM');
    await exited;
  }
}
