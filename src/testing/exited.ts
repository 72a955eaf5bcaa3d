import type { ChildProcess } from 'node:child_process';

/**
 * Resolves with the exit code (null if killed by a signal, or never started)
 * once the process has exited AND its stdout/stderr are read to the end.
 * Node emits 'exit' before the pipes are drained, so a caller that reads the
 * output right after 'exit' can miss the last lines (ping's summary, written
 * on SIGINT, was lost this way). 'close' comes after both; if something else
 * keeps a pipe open (a grandchild), it is waited for at most drainMs.
 */
export function exitedAndDrained(p: ChildProcess, drainMs = 2000): Promise<number | null> {
  return new Promise((resolve) => {
    let code: number | null = null;
    let timer: NodeJS.Timeout | undefined;
    const done = () => {
      if (timer) clearTimeout(timer);
      resolve(code);
    };
    p.once('close', (c: number | null) => {
      code = c;
      done();
    });
    p.once('exit', (c) => {
      code = c;
      timer = setTimeout(done, drainMs);
    });
    p.once('error', () => done()); // spawn failure: no 'exit' follows
  });
}
