// Giving memory back after a burst.
//
// V8 grows its old generation up to a limit before it runs a full collection,
// and keeps pages it has touched. A burst of thousands of lease events (a
// 5000-lease transaction, a re-list of a big cluster) leaves ~20 MB of
// garbage (the decoded watch message, netlink requests, intermediate arrays)
// that, on an otherwise quiet daemon, nothing ever collects: measured with
// bench:control, the heap held 37 MB of which 15 MB was live, and RSS stayed
// at the burst's peak for as long as the daemon ran. Full collections once
// the burst is over return those pages (V8 unmaps them on a helper thread
// shortly after); see heapCompactor().
//
// HeapTrimmer counts the lease changes the daemon handled and, once at least
// `afterLeases` of them have gone by and the daemon has been quiet for
// `quietMs`, shrinks the heap once. A steady trickle (churn) never goes
// quiet, and V8's own collections keep up with it there; a daemon that
// handled fewer changes never pays for a collection at all.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { mallocTrim } from '../netlink/libc.js';
import type { Clock, ClockTimer } from '../clock.js';

/**
 * A function that shrinks the heap, or null when this runtime does not allow
 * it. Node has no API for a collection: the `gc` global of --expose-gc is
 * used when the process was started with that flag; otherwise the flag is set
 * now and the function taken from a fresh context (the same isolate, so it
 * collects the daemon's heap).
 *
 * It runs two full collections. The first frees the garbage but leaves the
 * survivors scattered over the pages the burst touched (measured: heap total
 * 35.7 MB with 15 MB in use after 5000 leases); the second moves them off the
 * fragmented pages, which are then given back (heap total down to about what
 * is in use). Then glibc's malloc_trim() gives back the C heap's free pages
 * (HTTP/2 and netlink buffers of the burst), when koffi is already loaded
 * (every backend that programs the kernel loads it; the alloc backend does
 * not, and is not made to for this). Measured after 5000 leases with
 * bench:control: RSS 93 MB with none of this, 74.5 MB after the two
 * collections, 68.5 MB with malloc_trim too. With --max-semi-space-size=1 and
 * ~15 MB live, it takes some tens of milliseconds, once per burst.
 */
export function heapCompactor(): (() => void) | null {
  const gc = exposedGc();
  return gc
    ? () => {
        gc();
        gc();
        mallocTrim({ onlyIfLoaded: true });
      }
    : null;
}

function exposedGc(): (() => void) | null {
  const g = (globalThis as { gc?: unknown }).gc;
  if (typeof g === 'function') return g as () => void;
  try {
    setFlagsFromString('--expose-gc');
    const f: unknown = runInNewContext('typeof gc === "function" ? gc : undefined');
    return typeof f === 'function' ? (f as () => void) : null;
  } catch {
    return null;
  }
}

export interface HeapTrimOptions {
  clock: Clock;
  /** shrinks the heap (heapCompactor(), or a recorder in tests) */
  collect: () => void;
  /** lease changes handled before a trim is worth it (default 1000) */
  afterLeases?: number;
  /** how long the daemon must have been quiet (default 1000 ms) */
  quietMs?: number;
  /** told after each trim: heap used before and after, and how long it took */
  onTrim?: (r: { heapBefore: number; heapAfter: number; ms: number; leases: number }) => void;
}

export class HeapTrimmer {
  private pending = 0;
  private timer: ClockTimer | null = null;
  private closed = false;
  private readonly afterLeases: number;
  private readonly quietMs: number;

  constructor(private readonly o: HeapTrimOptions) {
    this.afterLeases = o.afterLeases ?? 1000;
    this.quietMs = o.quietMs ?? 1000;
  }

  /** `n` lease changes were handled (events, or the size of a listing). */
  handled(n: number): void {
    if (this.closed) return;
    this.pending += n;
    if (this.pending >= this.afterLeases) this.rearm();
  }

  /** A trim once it is quiet, whatever was handled (after start-up: loading the modules leaves garbage too). */
  soon(): void {
    if (!this.closed) this.rearm();
  }

  /** Some work happened (a reconcile ran): a trim due waits until it is quiet again. */
  busy(): void {
    if (this.timer) this.rearm();
  }

  close(): void {
    this.closed = true;
    this.o.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private rearm(): void {
    this.o.clock.clearTimeout(this.timer);
    this.timer = this.o.clock.setTimeout(() => this.trim(), this.quietMs);
  }

  private trim(): void {
    this.timer = null;
    if (this.closed) return;
    const leases = this.pending;
    this.pending = 0;
    const heapBefore = process.memoryUsage().heapUsed;
    const t0 = performance.now();
    this.o.collect();
    this.o.onTrim?.({ heapBefore, heapAfter: process.memoryUsage().heapUsed, ms: performance.now() - t0, leases });
  }
}
