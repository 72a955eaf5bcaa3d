// Runs the real flanneld binary as a child process and watches its log lines.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { exitedAndDrained } from '../../src/testing/exited.js';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const FLANNELD = path.join(ROOT, 'dist/src/cmd/flanneld/main.js');
/**
 * How FlanneldProc starts flanneld: node flags, then the entry script. By
 * default the tsc output; FLANNELD_ENTRY picks another, relative to the repo,
 * e.g. FLANNELD_ENTRY="--max-semi-space-size=1 dist/bundle/flanneld.cjs" runs
 * the tests against the bundle as the image and the systemd unit run it.
 */
export const FLANNELD_ARGV: readonly string[] = process.env.FLANNELD_ENTRY
  ? process.env.FLANNELD_ENTRY.split(' ').filter(Boolean).map((a) => (a.startsWith('-') ? a : path.resolve(ROOT, a)))
  : [FLANNELD];
export const FLANNELCTL = path.join(ROOT, 'dist/src/cmd/flannelctl/main.js');

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export class FlanneldProc {
  readonly proc: ChildProcess;
  readonly lines: LogLine[] = [];
  readonly raw: string[] = [];
  readonly exited: Promise<number | null>;
  private waiters: Array<() => void> = [];

  constructor(args: string[], opts: { prefix?: string[]; env?: Record<string, string> | undefined } = {}) {
    const cmd = opts.prefix ? opts.prefix[0]! : process.execPath;
    const argv = opts.prefix ? [...opts.prefix.slice(1), process.execPath, ...FLANNELD_ARGV, ...args] : [...FLANNELD_ARGV, ...args];
    this.proc = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
    let buf = '';
    this.proc.stderr!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.raw.push(line);
        try {
          this.lines.push(JSON.parse(line) as LogLine);
        } catch {
          this.lines.push({ level: 50, msg: line });
        }
        for (const w of this.waiters) w();
      }
    });
    this.proc.stdout!.resume();
    this.exited = exitedAndDrained(this.proc);
  }

  get pid(): number {
    return this.proc.pid!;
  }

  async waitFor(pred: (l: LogLine) => boolean, timeoutMs = 15_000, what = 'log line'): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit) return hit;
      if (this.proc.exitCode !== null) throw new Error(`flanneld exited (${this.proc.exitCode}) before ${what}:\n${this.raw.join('\n')}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${this.raw.join('\n')}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
      this.waiters = [];
    }
  }

  waitReady(timeoutMs?: number): Promise<LogLine> {
    return this.waitFor((l) => /; ready$/.test(l.msg), timeoutMs, 'ready');
  }

  /** SIGTERM and wait; returns the exit code. Always safe to call. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill(signal);
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 8000);
      const code = await this.exited;
      clearTimeout(t);
      return code;
    }
    return this.proc.exitCode;
  }
}
