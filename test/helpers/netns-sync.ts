// Synchronous iproute2 helpers for the privileged kernel tests (test/kernel)
// and the benchmarks that build their own private network namespace
// (bench/reconcile.ts). No node:test here, so a plain script may import it.
// (The async, multi-host harness is netns.ts.)

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** Runs a command and returns its stdout; throws (with its stderr) when it fails. */
export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs a command, output discarded: whether it succeeded. */
export function shOk(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Removes namespaces `<prefix><pid>-<hex>` left by earlier runs whose process is gone. */
export function reapStaleNamespaces(prefix: string): void {
  for (const line of sh('ip', ['netns', 'list']).split('\n')) {
    const name = line.split(' ')[0] ?? '';
    if (!name.startsWith(prefix)) continue;
    const m = /^(\d+)-[0-9a-f]+$/.exec(name.slice(prefix.length));
    if (!m) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch {
      shOk('ip', ['netns', 'del', name]);
    }
  }
}

/** `ip -batch` of many commands (much faster than one process each), in the current namespace. */
export function ipBatch(lines: string[]): void {
  const dir = mkdtempSync(path.join(tmpdir(), 'fts-ipbatch-'));
  try {
    const f = path.join(dir, 'cmds');
    writeFileSync(f, lines.join('\n') + '\n');
    sh('ip', ['-batch', f]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * In the current (private) namespace: an underlay veth pair ul0/ul0p and a
 * "noise" pair noise0/noise0p, all up, with the given addresses on ul0 and
 * noise0. The caller loads noise0 with other software's entries (ipBatch).
 */
export function addUnderlayAndNoise(underlayCidr: string, noiseCidr: string): void {
  sh('ip', ['link', 'add', 'ul0', 'type', 'veth', 'peer', 'name', 'ul0p']);
  sh('ip', ['link', 'add', 'noise0', 'type', 'veth', 'peer', 'name', 'noise0p']);
  for (const d of ['ul0', 'ul0p', 'noise0', 'noise0p']) sh('ip', ['link', 'set', d, 'up']);
  sh('ip', ['addr', 'add', underlayCidr, 'dev', 'ul0']);
  sh('ip', ['addr', 'add', noiseCidr, 'dev', 'noise0']);
}
