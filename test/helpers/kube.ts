// Test glue for a real kube-apiserver (src/lab/kubeapi.ts).
//
//   const bin = await kubeApiserverBinary();          // null → skip, loudly
//   test('…', { skip: kubeSkipReason(bin) }, async () => {
//     const k = await startKube({ binary: bin! });
//     after(() => k.stop());
//     …
//   });
//
// The binary comes from scripts/build-kube-apiserver.sh, which builds it once
// per machine (10–15 min cold, then cached) and serialises concurrent callers.
// Without Go (and no cached binary) the kube tests are skipped, each with a
// message that says why; on this project's machines Go is present and they run.
//
// A dying test process takes its apiserver and etcd with it: every PID the
// launcher reports is SIGKILLed, and its state dir removed, from a process
// 'exit' hook (and on SIGINT/SIGTERM/SIGHUP), as test/helpers/etcd.ts does
// for etcd.

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { startKubeApi, type KubeApi, type KubeProcess } from '../../src/lab/kubeapi.js';
import { ROOT } from './flanneld.js';

export const BUILD_SCRIPT = path.join(ROOT, 'scripts/build-kube-apiserver.sh');
/** Exit status of the build script when `go` is missing. */
const NO_GO = 3;

let binary: Promise<string | null> | undefined;

/**
 * The kube-apiserver binary's path, building it first if needed (allow up to
 * 40 min: a cold build takes 10–15). Null, with a loud message on stderr, when
 * it cannot be built because Go is not installed; any other failure throws.
 */
export function kubeApiserverBinary(): Promise<string | null> {
  return (binary ??= new Promise((resolve, reject) => {
    const child = execFile('bash', [BUILD_SCRIPT], { timeout: 40 * 60_000, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout.trim().split('\n').pop()!);
      if ((err as { code?: unknown }).code === NO_GO) {
        process.stderr.write(
          '\n' +
            '##########################################################################\n' +
            '## SKIPPING the Kubernetes tests: kube-apiserver is not built and `go`   ##\n' +
            '## is not installed. Install Go, then: bash scripts/build-kube-apiserver.sh\n' +
            '##########################################################################\n\n',
        );
        return resolve(null);
      }
      reject(new Error(`${BUILD_SCRIPT} failed (${err.message}):\n${stderr.trim().split('\n').slice(-20).join('\n')}`));
    });
    // Show build progress (it can take minutes) without buffering it away.
    child.stderr?.on('data', (d: string) => process.stderr.write(d));
  }));
}

/** The `skip` option for a kube test: false when the binary is there, else why not. */
export function kubeSkipReason(bin: string | null): false | string {
  return bin ? false : 'SKIPPED: kube-apiserver unavailable (Go is not installed; see scripts/build-kube-apiserver.sh)';
}

export interface KubeHarness {
  api: KubeApi;
  /** Admin credentials (system:masters), reachable from this process. */
  kc: KubeConfig;
  core: CoreV1Api;
  /** Temp state dir; removed by stop(). */
  dir: string;
  /** Stops the apiserver and etcd and removes the dir. Idempotent. */
  stop(): Promise<void>;
}

export interface StartKubeOptions {
  /** Run etcd and the apiserver inside this (existing) network namespace; its lo must be up. */
  ns?: string;
  /** Address to listen on; default 127.0.0.1. In a namespace, an address it owns. */
  bindIP?: string;
  /** Default: kubeApiserverBinary(). */
  binary?: string;
}

// Every process any harness in this test process started and has not seen
// stop, and their state dirs.
const live = new Map<number, string>(); // pid → mark
const liveDirs = new Set<string>();
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let hooked = false;

function reapAll(): void {
  for (const [pid, mark] of live) {
    try {
      // Guard against PID reuse: only a process whose command line has our mark.
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(mark)) process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  live.clear();
  for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  liveDirs.clear();
}

function onSignal(sig: NodeJS.Signals): void {
  reapAll();
  process.removeListener(sig, onSignal);
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', reapAll);
  for (const s of SIGNALS) process.on(s, onSignal);
}

/** Starts a throwaway etcd + kube-apiserver; see KubeHarness. */
export async function startKube(o: StartKubeOptions = {}): Promise<KubeHarness> {
  const bin = o.binary ?? (await kubeApiserverBinary());
  if (!bin) throw new Error('kube-apiserver is not available (Go is not installed); gate the test with kubeSkipReason()');
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-kube-'));
  const mine: KubeProcess[] = [];
  hook();
  liveDirs.add(dir);
  let api: KubeApi;
  try {
    api = await startKubeApi({
      dir,
      binary: bin,
      ...(o.bindIP ? { bindIP: o.bindIP } : {}),
      ...(o.ns ? { netns: o.ns } : {}),
      onProcess: (p) => {
        mine.push(p);
        live.set(p.pid, p.mark);
      },
    });
  } catch (e) {
    for (const p of mine) live.delete(p.pid);
    liveDirs.delete(dir);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  let stopping: Promise<void> | undefined;
  return {
    api,
    kc: api.kc,
    core: api.core,
    dir,
    stop: () =>
      (stopping ??= (async () => {
        try {
          await api.stop();
        } finally {
          for (const p of mine) live.delete(p.pid);
          liveDirs.delete(dir);
          rmSync(dir, { recursive: true, force: true });
        }
      })()),
  };
}

let flanneldBin: Promise<string | null> | undefined;

/**
 * The real flanneld (Go), built by scripts/build-flanneld.sh from the Go
 * module proxy and cached outside the repo; null (with a loud line) when Go
 * is missing. Used only to prove interoperability.
 */
export function realFlanneldBinary(): Promise<string | null> {
  return (flanneldBin ??= new Promise((resolve, reject) => {
    const script = path.join(ROOT, 'scripts/build-flanneld.sh');
    const child = execFile('bash', [script], { timeout: 30 * 60_000, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout.trim().split('\n').pop()!);
      if ((err as { code?: unknown }).code === NO_GO) {
        process.stderr.write('\n## SKIPPING the real-flannel interop test: `go` is not installed, so real flanneld cannot be built ##\n\n');
        return resolve(null);
      }
      reject(new Error(`${script} failed (${err.message}):\n${stderr.trim().split('\n').slice(-20).join('\n')}`));
    });
    child.stderr?.on('data', (d: string) => {
      for (const l of d.split('\n')) if (/^build-flanneld:/.test(l)) process.stderr.write(l + '\n');
    });
  }));
}
