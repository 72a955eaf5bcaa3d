// Test helper (not part of the product): many lease contenders in one process,
// each with its own etcd client and the daemon's real lease code
// (StoreLeaseSource -> SubnetManager -> EtcdStore). Run inside a namespace
// that reaches etcd:
//
//   FTS_LEASE_RACER='{"endpoints":[…],"count":30,"firstIndex":1,"goFile":"/tmp/…/go"}' node lease-racer.js
//
// Every contender reads the network config; once all have, the process
// prints "ready" on stderr and they wait for goFile to exist (so all of them
// race at once), then each acquires a lease with its own public IP
// 198.18.<i / 250>.<i % 250 + 1>. One JSON line per contender goes to stdout:
// {"index","publicIP","subnet"} or {"index","publicIP","error","errorName"},
// plus the creation races it lost. Without FTS_LEASE_RACER it does nothing
// (node --test loads every file under dist/test).

import { existsSync } from 'node:fs';
import { parseIPv4, formatIPv4Net } from '../../src/lease/ip.js';
import type { Logger } from '../../src/log/log.js';
import { EtcdStore } from '../../src/store/etcd/etcd-store.js';
import { StoreLeaseSource } from '../../src/subnet/source.js';

export interface RacerSpec {
  endpoints: string[];
  count: number;
  firstIndex: number;
  /** the start signal: the contenders ask once this file exists */
  goFile: string;
}

export interface RacerResult {
  index: number;
  publicIP: string;
  subnet?: string;
  error?: string;
  errorName?: string;
  lostRaces: number;
  /** how long the acquisition took */
  ms: number;
  /** epoch ms when it started asking and when it had its answer */
  askedAt: number;
  doneAt: number;
}

export function racerIP(i: number): string {
  return `198.18.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}

class CountingLogger implements Logger {
  lostRaces = 0;
  debug(msg: string): void {
    if (/race lost/.test(msg)) this.lostRaces++;
  }
  info(): void {}
  warn(): void {}
  error(): void {}
  child(): Logger {
    return this;
  }
}

async function contender(spec: RacerSpec, index: number, ready: () => Promise<void>): Promise<RacerResult> {
  const publicIP = racerIP(index);
  const store = new EtcdStore({ endpoints: spec.endpoints, prefix: '/coreos.com/network' });
  const log = new CountingLogger();
  const source = new StoreLeaseSource(store, log);
  try {
    const cfg = await source.getNetworkConfig();
    await ready();
    const t0 = Date.now();
    try {
      const mac = `0a:18:00:00:${(index >> 8).toString(16).padStart(2, '0')}:${(index & 255).toString(16).padStart(2, '0')}`;
      const lease = await source.acquire(cfg, { attrs: { publicIP: parseIPv4(publicIP), publicIPv6: null, backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: mac } } });
      return { index, publicIP, subnet: formatIPv4Net(lease.subnet), lostRaces: log.lostRaces, ms: Date.now() - t0, askedAt: t0, doneAt: Date.now() };
    } catch (e) {
      const err = e as Error;
      return { index, publicIP, error: err.message, errorName: err.name, lostRaces: log.lostRaces, ms: Date.now() - t0, askedAt: t0, doneAt: Date.now() };
    }
  } finally {
    await store.close();
  }
}

async function main(spec: RacerSpec): Promise<void> {
  const idx = Array.from({ length: spec.count }, (_, k) => spec.firstIndex + k);
  let waiting = 0;
  let go: Promise<void> | null = null;
  const ready = (): Promise<void> => {
    if (++waiting === spec.count) process.stderr.write('ready\n');
    go ??= (async () => {
      while (!existsSync(spec.goFile)) await new Promise((r) => setTimeout(r, 5));
    })();
    return go;
  };
  const results = await Promise.all(idx.map((i) => contender(spec, i, ready)));
  for (const r of results) process.stdout.write(JSON.stringify(r) + '\n');
}

const raw = process.env.FTS_LEASE_RACER;
if (raw) {
  main(JSON.parse(raw) as RacerSpec).catch((e: unknown) => {
    process.stderr.write(`lease racer crashed: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 2;
  });
}
