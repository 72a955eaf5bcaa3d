// The run loop shared by kernel-programming backends: reconciles run one at a
// time; "kicks" (a kernel notification that someone deleted our state, a
// netlink overrun, the periodic safety net) are debounced by a few ms and
// coalesced, so a burst of notifications costs one extra run.

import { RateLimitedLog, type Logger } from '../log/log.js';
import type { ChangeFeed } from './backend.js';
import type { NetlinkEvent } from '../netlink/subscriber.js';

export interface LoopRun {
  errors: Error[];
  /** kernel changes the run made; > 0 on a kick means something was restored */
  changes: number;
}

export class ReconcileLoop {
  private chain: Promise<unknown> = Promise.resolve();
  private pending = false;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly errLog = new RateLimitedLog(10_000);
  /** kicked runs that changed something: self-healing at work */
  heals = 0;

  constructor(
    private readonly run: () => Promise<LoopRun>,
    private readonly log: Logger,
  ) {}

  /** Queue a run behind the current one and wait for its errors. */
  enqueue(): Promise<Error[]> {
    const p = this.chain.then(async () => (this.closed ? [] : (await this.run()).errors));
    this.chain = p.catch(() => undefined);
    return p;
  }

  kick(why: string): void {
    if (this.closed || this.pending) return;
    this.pending = true;
    setTimeout(() => {
      this.pending = false;
      if (this.closed) return;
      const p = this.chain.then(async () => (this.closed ? null : this.run()));
      this.chain = p.catch(() => undefined);
      void p.then((r) => {
        if (!r) return;
        if (r.changes > 0) {
          this.heals++;
          this.log.info(`restored ${r.changes} kernel entr${r.changes === 1 ? 'y' : 'ies'} (${why})`);
        }
        for (const e of r.errors) if (this.errLog.allow(e.message)) this.log.warn(`reconcile: ${e.message}`);
      });
    }, 5);
  }

  /** Subscribe to kernel changes and start the periodic safety net. */
  async start(feed: ChangeFeed | undefined, onEvent: (e: NetlinkEvent) => void, periodMs: number): Promise<void> {
    await feed?.start(onEvent, () => this.kick('netlink overrun'));
    if (periodMs > 0) {
      this.timer = setInterval(() => this.kick('periodic check'), periodMs);
      this.timer.unref();
    }
  }

  async close(feed: ChangeFeed | undefined): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await feed?.stop();
    await this.chain;
  }
}
