// A Clock that only moves when a test says so. Timers fire in time order
// (ties in the order they were set) while advance() walks the clock forward;
// between two timers it lets pending promise chains and I/O callbacks run, so
// "the renewal fired, wrote the store, and set the next timer" happens inside
// one advance().
import { sleepOn, type Clock, type ClockTimer } from '../clock.js';

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
}

export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private readonly timers = new Set<Pending>();

  constructor(start: number = Date.UTC(2026, 0, 1)) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    const p: Pending = { at: this.t + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.add(p);
    return p as unknown as ClockTimer;
  }

  clearTimeout(t: ClockTimer | null | undefined): void {
    if (t) this.timers.delete(t as unknown as Pending);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(this, ms, signal);
  }

  /** timers waiting to fire */
  get pending(): number {
    return this.timers.size;
  }

  /** when the next timer fires (null when none is set) */
  get nextAt(): number | null {
    return this.next()?.at ?? null;
  }

  private next(): Pending | undefined {
    let best: Pending | undefined;
    for (const p of this.timers) if (!best || p.at < best.at || (p.at === best.at && p.seq < best.seq)) best = p;
    return best;
  }

  /**
   * Move the clock forward by `ms`, firing every timer that falls due on the
   * way (including ones those timers set), each at its own time; settles
   * after each one.
   */
  async advance(ms: number): Promise<void> {
    const until = this.t + ms;
    await settle();
    for (let p = this.next(); p && p.at <= until; p = this.next()) {
      this.timers.delete(p);
      this.t = Math.max(this.t, p.at);
      p.fn();
      await settle();
    }
    this.t = until;
  }

  /** Move to the next timer and fire it (and any due at the same instant); false when none is set. */
  async fireNext(): Promise<boolean> {
    const p = this.next();
    if (!p) return false;
    await this.advance(p.at - this.t);
    return true;
  }
}

/** Let queued promise callbacks and already-due I/O callbacks run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
}
