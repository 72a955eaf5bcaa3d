// Runs a test file's body inside a throw-away network namespace. The outer
// process (the one `node --test` started, in the root namespace) creates a
// namespace with a unique per-run prefix, re-runs the same file inside it with
// `ip netns exec` and an environment variable naming the namespace, and
// deletes the namespace afterwards whatever happened (`after` hook). The
// inner process checks that it really is in that namespace before touching
// anything, so its `ip link add`/`del` and rtnetlink calls can only reach it.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { exitedAndDrained } from '../../src/testing/exited.js';
import { reapStaleNamespaces, sh, shOk } from '../helpers/netns-sync.js';

/** The namespace this process was started in by runInPrivateNetns, or null in the outer process. */
export function innerNetns(envVar: string): string | null {
  const ns = process.env[envVar];
  if (!ns) return null;
  // Refuse to run anywhere but in that namespace (never the root one).
  const here = statSync('/proc/self/ns/net').ino;
  const there = statSync(`/run/netns/${ns}`).ino;
  if (here !== there) throw new Error(`${envVar}=${ns} but this process is not in that network namespace`);
  return ns;
}

/**
 * Outer side: one test that runs `file` inside a fresh namespace and passes
 * when the inner run passes. The inner run's report is printed as diagnostics.
 */
export function runInPrivateNetns(opts: { title: string; prefix: string; envVar: string; file: string; skip: string | false; timeoutMs?: number }): void {
  const ns = `${opts.prefix}${process.pid}-${randomBytes(3).toString('hex')}`;
  let created = false;
  after(() => {
    if (created) shOk('ip', ['netns', 'del', ns]);
    if (created) assert.ok(!sh('ip', ['netns', 'list']).includes(ns), `namespace ${ns} must be gone`);
  });
  test(opts.title, { skip: opts.skip, timeout: opts.timeoutMs ?? 300_000 }, async (t) => {
    reapStaleNamespaces(opts.prefix);
    sh('ip', ['netns', 'add', ns]);
    created = true;
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const env: NodeJS.ProcessEnv = { ...process.env, [opts.envVar]: ns };
    // node --test marks its children; the inner run must report as a plain script
    delete env.NODE_TEST_CONTEXT;
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--test-reporter=spec', opts.file], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await exitedAndDrained(child);
    for (const line of out.split('\n')) if (line.trim()) t.diagnostic(line);
    assert.equal(code, 0, `inner run in ${ns} failed:\n${out}`);
  });
}
