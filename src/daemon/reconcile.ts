// The daemon's one reconcile queue. Everything that can call for a reconcile
// ends up here: lease events from the store (push), and kicks — a kernel
// notification that someone damaged our state, a netlink overrun, the
// periodic check, a backend whose data path broke.
//
// * One run at a time, and at most one waiting behind it: whatever arrives
//   while a run is in progress is merged into the waiting run, so a burst of
//   1000 lease events costs two runs, not 1000.
// * Kicks are debounced by a few ms (a deleted device brings a link, a route
//   and neighbour notifications in separate messages: one run repairs all).
// * A run with only lease events passes them on (the backend may patch just
//   those peers); a run that was kicked, or asked for with no events (a
//   re-list), is a full pass with no events.
// * A kicked run that changed kernel state healed damage: it is counted by
//   what kicked it and said once in the log.
// * An error is logged when it first shows up, not again while every run
//   keeps reporting it (a peer the kernel keeps refusing would otherwise
//   put the same warning in the log every periodic check, forever).

import type { LeaseEvent } from '../lease/tracker.js';
import type { Logger } from '../log/log.js';
import type { Clock, ClockTimer } from '../clock.js';

export interface RunResult {
  errors: Error[];
  /** kernel changes the run made */
  changes: number;
}

export interface RunReport extends RunResult {
  seconds: number;
  /** lease events handed to the backend */
  events: number;
  /** what kicked the run; empty for a run asked for by lease events alone */
  kicks: readonly string[];
  /** errors the run before did not report */
  fresh: string[];
  /** the run restored state someone removed: counted under `kicks[0]` */
  healed: boolean;
}

export interface ReconcileQueueOptions {
  /** one reconcile; `events` is [] for a full pass */
  run(events: readonly LeaseEvent[]): Promise<RunResult>;
  log: Logger;
  clock: Clock;
  /** called after every run that completed */
  onRun?(r: RunReport): void;
  /** debounce for kicks (default 5 ms) */
  kickDelayMs?: number;
}

export class ReconcileQueue {
  private chain: Promise<void> = Promise.resolve();
  private queued = false;
  private events: LeaseEvent[] = [];
  /** a full pass was asked for (push([]) or a kick) */
  private full = false;
  private kicks: string[] = [];
  private kickTimer: ClockTimer | null = null;
  private closed = false;
  /** error messages the last run reported */
  private standing = new Set<string>();
  /** kicked runs that changed something, by what kicked them */
  readonly heals: Record<string, number> = {};
  runs = 0;

  constructor(private readonly o: ReconcileQueueOptions) {}

  /** Lease events (possibly none: then a full pass) for the next run. */
  push(events: readonly LeaseEvent[]): void {
    if (this.closed) return;
    if (events.length === 0) this.full = true;
    else this.events.push(...events);
    this.schedule();
  }

  /** Ask for a full pass soon, saying why ("neigh deleted", "periodic check"). */
  kick(why: string): void {
    if (this.closed) return;
    if (!this.kicks.includes(why)) this.kicks.push(why);
    if (this.kickTimer) return;
    this.kickTimer = this.o.clock.setTimeout(() => {
      this.kickTimer = null;
      this.schedule();
    }, this.o.kickDelayMs ?? 5);
  }

  /** Resolves once every run queued so far has finished. */
  async settled(): Promise<void> {
    for (let c = this.chain; ; c = this.chain) {
      await c;
      if (c === this.chain) return;
    }
  }

  /** No more runs; waits for the one in progress. */
  async close(): Promise<void> {
    this.closed = true;
    this.o.clock.clearTimeout(this.kickTimer);
    this.kickTimer = null;
    await this.chain;
  }

  private schedule(): void {
    if (this.queued) return;
    this.queued = true;
    this.chain = this.chain.then(() => this.runOne());
  }

  private async runOne(): Promise<void> {
    this.queued = false;
    if (this.closed) return;
    const kicks = this.kicks;
    const leaseEvents = this.events;
    const full = this.full || kicks.length > 0;
    this.kicks = [];
    this.events = [];
    this.full = false;
    const events = full ? [] : leaseEvents;
    const t0 = performance.now();
    let r: RunResult;
    try {
      r = await this.o.run(events);
    } catch (e) {
      this.o.log.error(`reconcile failed: ${(e as Error).message}`);
      return;
    }
    this.runs++;
    const now = new Set(r.errors.map((e) => e.message));
    const fresh = [...now].filter((m) => !this.standing.has(m));
    this.standing = now;
    // With lease events merged in, the changes may be theirs: not counted as a heal.
    const healed = kicks.length > 0 && leaseEvents.length === 0 && r.changes > 0;
    if (healed) {
      const why = kicks[0]!;
      this.heals[why] = (this.heals[why] ?? 0) + 1;
      this.o.log.info(`restored ${r.changes} kernel entr${r.changes === 1 ? 'y' : 'ies'} (${kicks.join(', ')})`);
    }
    for (const m of fresh) this.o.log.warn(`reconcile: ${m}`);
    try {
      this.o.onRun?.({ ...r, seconds: (performance.now() - t0) / 1000, events: events.length, kicks, fresh, healed });
    } catch (e) {
      this.o.log.error(`reconcile report failed: ${(e as Error).message}`);
    }
  }
}
