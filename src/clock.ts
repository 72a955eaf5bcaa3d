// Time as a port: what reads the time or waits takes a Clock, so tests run
// leases, renewals and retries on a manual clock (src/testing/manual-clock.ts)
// instead of sleeping through them.

/** A pending timer; opaque to callers. */
export interface ClockTimer {
  readonly __clockTimer?: never;
}

export interface Clock {
  /** milliseconds since the Unix epoch, as Date.now() */
  now(): number;
  /** run `fn` once after `ms`; never keeps the process alive */
  setTimeout(fn: () => void, ms: number): ClockTimer;
  clearTimeout(t: ClockTimer | null | undefined): void;
  /**
   * Resolves after `ms`, or at once when `signal` aborts (never rejects).
   * Unlike a timer, a sleep someone awaits keeps the process alive.
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Node's timers caps delays at 2^31-1 ms (~24.8 days); longer ones would fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

class RealClock implements Clock {
  now(): number {
    return Date.now();
  }
  setTimeout(fn: () => void, ms: number): ClockTimer {
    const t = setTimeout(fn, Math.min(Math.max(0, ms), MAX_TIMER_MS));
    t.unref();
    return t as unknown as ClockTimer;
  }
  clearTimeout(t: ClockTimer | null | undefined): void {
    if (t) clearTimeout(t as unknown as NodeJS.Timeout);
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const done = (): void => {
        clearTimeout(t);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, Math.min(Math.max(0, ms), MAX_TIMER_MS));
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}

export const realClock: Clock = new RealClock();

/** `sleep` built on a clock's setTimeout (the manual clock's). */
export function sleepOn(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      clock.clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = clock.setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
