// Running commands for the lab and the test harness: argv arrays run without
// a shell, output captured, non-zero exits reported rather than thrown by
// run(), thrown (with the command and stderr) by sh().
import { execFile } from 'node:child_process';
import { FlannelError } from '../errors.js';

export interface ShOptions {
  /** Extra environment variables (merged over process.env). */
  env?: Record<string, string>;
  /** Kill the command after this many ms (default 30 s). */
  timeoutMs?: number;
  /** Kill the command when this is aborted (it then resolves as killed by SIGKILL). */
  signal?: AbortSignal;
}

export interface RunResult {
  /** Exit code, or null when killed by a signal (e.g. timeout). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Error thrown by sh(): carries the command, exit status and output. */
export class ShError extends FlannelError {
  constructor(
    readonly cmd: string,
    readonly result: RunResult,
  ) {
    const status = result.code !== null ? `exit ${result.code}` : `signal ${result.signal ?? '?'}`;
    super(`command failed (${status}): ${cmd}\n${result.stderr.trim() || result.stdout.trim()}`, { code: 'COMMAND_FAILED' });
    this.name = 'ShError';
  }
}

function describe(cmd: string[] | string): string {
  return typeof cmd === 'string' ? cmd : cmd.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/**
 * Runs a command and resolves with its exit status and output; never rejects
 * because of a non-zero exit (only if the executable cannot be spawned at all
 * is that reported as code 127 with the error in stderr). An argv array is run
 * directly (no shell); a string is run with `/bin/sh -c`.
 */
export function run(cmd: string[] | string, opts: ShOptions = {}): Promise<RunResult> {
  const [file, args] = typeof cmd === 'string' ? ['/bin/sh', ['-c', cmd]] : [cmd[0]!, cmd.slice(1)];
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      {
        env: opts.env ? { ...process.env, ...opts.env } : process.env,
        timeout: opts.timeoutMs ?? 30_000,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024,
        encoding: 'utf8',
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
      (err, stdout, stderr) => {
        if (!err) return resolve({ code: 0, signal: null, stdout, stderr });
        const e = err as NodeJS.ErrnoException & { code?: number | string; signal?: NodeJS.Signals | null };
        if (e.name === 'AbortError') return resolve({ code: null, signal: 'SIGKILL', stdout: stdout ?? '', stderr: `${stderr ?? ''}${file}: interrupted` });
        if (typeof e.code === 'string') {
          // spawn failure (ENOENT, EACCES, ...)
          return resolve({ code: 127, signal: null, stdout: '', stderr: `${file}: ${e.message}` });
        }
        resolve({ code: typeof e.code === 'number' ? e.code : null, signal: e.signal ?? null, stdout, stderr });
      },
    );
  });
}

/** Runs a command (see run()) and returns its stdout; throws ShError on failure. */
export async function sh(cmd: string[] | string, opts: ShOptions = {}): Promise<string> {
  const r = await run(cmd, opts);
  if (r.code !== 0) throw new ShError(describe(cmd), r);
  return r.stdout;
}

/** Runs fn over items with at most `limit` calls in flight; results keep input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

