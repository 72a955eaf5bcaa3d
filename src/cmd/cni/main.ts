#!/usr/bin/env node
// flannel: the CNI plugin executable. The only file that reads the
// environment and stdin, writes stdout and sets the exit status; the plugin
// itself is src/cni/plugin.ts.
//
// A runtime starts the plugin for every pod ADD and DEL, so its start-up is
// on the pod's critical path (issue 11). stdin and stdout are therefore read
// and written with plain fd calls: process.stdin/process.stdout on a pipe
// would build stream objects (and load node:net), ~4 ms per call for a few
// hundred bytes each way. The streams remain the fallback for a non-blocking
// descriptor (EAGAIN).
import { fstatSync, readSync, writeSync } from 'node:fs';
import { runPlugin } from '../../cni/plugin.js';

const errno = (e: unknown): string | undefined => (e as NodeJS.ErrnoException).code;

async function readStdinStream(chunks: Buffer[]): Promise<Buffer> {
  try {
    for await (const c of process.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  } catch {
    /* closed or unreadable stdin reads as empty */
  }
  return Buffer.concat(chunks);
}

/** A terminal (or /dev/null, or no stdin at all) reads as empty, as the streams would not block on it. */
function stdinIsDevice(): boolean {
  try {
    return fstatSync(0).isCharacterDevice();
  } catch {
    return true;
  }
}

async function readStdin(): Promise<Buffer> {
  if (stdinIsDevice()) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  const buf = Buffer.allocUnsafe(64 * 1024);
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (e) {
      const code = errno(e);
      if (code === 'EAGAIN') return readStdinStream(chunks);
      if (code === 'EINTR') continue;
      // closed (EBADF), a terminal or a directory (EISDIR...): no config, as before
      return Buffer.concat(chunks);
    }
    if (n === 0) return Buffer.concat(chunks);
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
}

function writeStdout(text: string): void {
  const data = Buffer.from(text);
  let off = 0;
  while (off < data.length) {
    try {
      off += writeSync(1, data, off, data.length - off);
    } catch (e) {
      const code = errno(e);
      if (code === 'EINTR') continue;
      if (code === 'EAGAIN') {
        process.stdout.write(data.subarray(off));
        return;
      }
      throw e;
    }
  }
}

async function main(): Promise<void> {
  const stdin = await readStdin();
  const out = await runPlugin({ env: process.env, stdin, stderr: (t) => process.stderr.write(t) });
  if (out.stdout) writeStdout(out.stdout);
  process.exitCode = out.exitCode;
}

main().catch((e: unknown) => {
  // runPlugin turns every error into a CNI error; this is the last resort.
  const msg = e instanceof Error ? e.message : String(e);
  process.stdout.write(JSON.stringify({ cniVersion: '1.0.0', code: 5, msg: 'flannel plugin internal error', details: msg }) + '\n');
  process.exitCode = 1;
});
