// The list-then-watch loop every lease feed runs (the etcd/local LeaseWatch
// and the Kubernetes node informer): list, hand over the snapshot, watch
// until the watch ends, then list again and diff. A failed list is retried
// with backoff (100 ms doubling to 5 s by default, logged at most once per
// 5 s); a watch that ran and ended starts the backoff afresh.

import { RateLimitedLog, type Logger } from '../log/log.js';
import { sleep } from './manager.js';

export interface ListWatchOptions {
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** every failed list and every ended watch, with the line the log gets (which is rate-limited) */
  onTrouble?: (line: string) => void;
}

export interface ListWatchSteps {
  /** what is being listed, for messages ("leases", "nodes") */
  readonly what: string;
  /** list and deliver the snapshot; resolves with the watch to run next */
  list(): Promise<() => Promise<string>>;
}

/** Runs until `signal` aborts. */
export async function runListWatch(steps: ListWatchSteps, log: Logger, signal: AbortSignal, opts: ListWatchOptions = {}): Promise<void> {
  const min = opts.backoffMinMs ?? 100;
  const max = opts.backoffMaxMs ?? 5000;
  const errLog = new RateLimitedLog(5000);
  let backoff = min;
  while (!signal.aborted) {
    try {
      const watch = await steps.list();
      if (signal.aborted) break;
      const ended = await watch();
      if (signal.aborted) break;
      const line = `${steps.what} watch ended (${ended}); listing ${steps.what} again`;
      opts.onTrouble?.(line);
      log.warn(line);
      backoff = min;
    } catch (e) {
      if (signal.aborted) break;
      const line = `listing ${steps.what} failed, retrying: ${(e as Error).message}`;
      opts.onTrouble?.(line);
      if (errLog.allow('list')) log.warn(line);
    }
    await sleep(backoff, signal);
    backoff = Math.min(backoff * 2, max);
  }
}
