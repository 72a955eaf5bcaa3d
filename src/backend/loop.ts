// The run loop shared by kernel-programming backends: reconciles run one at a
// time; "kicks" (a kernel notification that someone deleted our state, a
// netlink overrun, the periodic safety net) are debounced by a few ms and
// coalesced, so a burst of notifications costs one extra run.
//
// A kicked run logs an error when it first shows up, not again while every
// run keeps reporting it: a peer the kernel keeps refusing must not put the
// same warning in the log every periodic check, forever.

import type { Logger } from '../log/log.js';
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
  /** error messages the last run reported */
  private standing = new Set<string>();
  /** kicked runs that changed something: self-healing at work */
  heals = 0;
  /** the same, by what kicked the run ("neigh deleted", "device deleted", "netlink overrun", ...) */
  readonly healsByTrigger: Record<string, number> = {};

  constructor(
    private readonly run: () => Promise<LoopRun>,
    private readonly log: Logger,
  ) {}

  /** Queue a run behind the current one and wait for its errors. */
  enqueue(): Promise<Error[]> {
    const p = this.chain.then(async () => (this.closed ? [] : (await this.tracked()).run.errors));
    this.chain = p.catch(() => undefined);
    return p;
  }

  /**
   * Queue a one-off task (a targeted patch for a few lease events) behind the
   * current run, serialised like a full run; its errors are returned to the
   * caller, who logs them.
   */
  enqueueTask(task: () => Promise<LoopRun>): Promise<Error[]> {
    const p = this.chain.then(async () => (this.closed ? [] : (await task()).errors));
    this.chain = p.catch(() => undefined);
    return p;
  }

  kick(why: string): void {
    if (this.closed || this.pending) return;
    this.pending = true;
    setTimeout(() => {
      this.pending = false;
      if (this.closed) return;
      const p = this.chain.then(async () => (this.closed ? null : this.tracked()));
      this.chain = p.catch(() => undefined);
      void p.then((t) => {
        if (!t) return;
        const r = t.run;
        if (r.changes > 0) {
          this.heals++;
          this.healsByTrigger[why] = (this.healsByTrigger[why] ?? 0) + 1;
          this.log.info(`restored ${r.changes} kernel entr${r.changes === 1 ? 'y' : 'ies'} (${why})`);
        }
        for (const m of t.fresh) this.log.warn(`reconcile: ${m}`);
      });
    }, 5);
  }

  /** One run; `fresh` are the errors the run before did not report. */
  private async tracked(): Promise<{ run: LoopRun; fresh: string[] }> {
    const run = await this.run();
    const now = new Set(run.errors.map((e) => e.message));
    const fresh = [...now].filter((m) => !this.standing.has(m));
    this.standing = now;
    return { run, fresh };
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
