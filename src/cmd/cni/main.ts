#!/usr/bin/env node
// flannel: the CNI plugin executable. The only file that reads the
// environment and stdin, writes stdout and sets the exit status; the plugin
// itself is src/cni/plugin.ts.
import { runPlugin } from '../../cni/plugin.js';

async function readStdin(): Promise<Buffer> {
  if (process.stdin.isTTY) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  try {
    for await (const c of process.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  } catch {
    /* closed or unreadable stdin reads as empty */
  }
  return Buffer.concat(chunks);
}

async function main(): Promise<void> {
  const stdin = await readStdin();
  const out = await runPlugin({ env: process.env, stdin, stderr: (t) => process.stderr.write(t) });
  if (out.stdout) process.stdout.write(out.stdout);
  process.exitCode = out.exitCode;
}

main().catch((e: unknown) => {
  // runPlugin turns every error into a CNI error; this is the last resort.
  const msg = e instanceof Error ? e.message : String(e);
  process.stdout.write(JSON.stringify({ cniVersion: '1.0.0', code: 5, msg: 'flannel plugin internal error', details: msg }) + '\n');
  process.exitCode = 1;
});
