// LeaseWatch: keeps a validated view of every lease in the store (spec §3.8).
//
// list at revision R -> deliver as a snapshot -> watch from R+1. The etcd
// client already resumes its stream from the last revision over transport
// hiccups; when a watch *ends* (cancelled by the server, e.g. compaction, which
// only surfaces as a generic "Watcher canceled") we re-list, diff against what
// we knew, and watch again from the new revision, backing off 100 ms -> 5 s.
//
// Entries that do not parse or do not fit the network are skipped with one
// warning naming the key; they never stop the watch.
//
// A re-list whose revision is lower than one already seen, or whose store
// epoch (etcd's cluster ID) changed, means the store was wiped or restored
// from an older snapshot: that snapshot is flagged `storeReset`, so the
// daemon writes its own lease again instead of taking its absence for a
// revocation. flannel has no such check and never re-registers.

import { parseSubnetKey, subnetKey, validateLease, type Lease } from '../lease/lease.js';
import { LeaseTracker, type LeaseEvent } from '../lease/tracker.js';
import type { Logger } from '../log/log.js';
import type { LeaseStore, StoreEvent, StoredEntry, WatchHandle } from '../store/store.js';
import type { NetworkConfig } from './config.js';
import { entryToLease } from './manager.js';
import { runListWatch, type ListWatchOptions } from './listwatch.js';

export interface LeaseUpdate {
  readonly events: readonly LeaseEvent[];
  /** true when this update came from a full re-list */
  readonly snapshot: boolean;
  /** every valid lease now known, own included */
  readonly leases: readonly Lease[];
  /** set on the snapshot after the store went back in time: what was seen */
  readonly storeReset?: string;
}

export type LeaseWatchOptions = ListWatchOptions;

/**
 * An update whose `leases` is read from the tracker only when asked for: a
 * watch event must not cost a copy of every lease (issue 11).
 */
export function trackedUpdate(tracker: LeaseTracker, events: readonly LeaseEvent[], snapshot: boolean, storeReset: string | null = null): LeaseUpdate {
  return {
    events,
    snapshot,
    get leases() {
      return tracker.all();
    },
    ...(storeReset !== null ? { storeReset } : {}),
  };
}

/**
 * Watch events applied in one go; a larger message (5000 leases written in
 * one etcd transaction arrive as one) is applied in slices of this many, one
 * macrotask each, so the first peers reach the kernel while the rest are
 * still being decoded (issue 11). The first slice is the first reconcile
 * run, and what arrives meanwhile waits for it to finish: 1024 keeps the
 * kernel busy through that first run (bench:control, 5000 peers: 1024 did
 * better than 256; a 1000-peer message is one run).
 */
export const WATCH_SLICE = 1024;

export class LeaseWatch {
  private readonly tracker = new LeaseTracker();
  private readonly warned = new Set<string>();
  private readonly ac = new AbortController();
  private handle: WatchHandle | null = null;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  /** number of times the watch was (re)established after a list; for tests and metrics */
  relists = 0;
  revision = 0;
  /** the highest revision seen from this store, and its epoch */
  private maxRevision = 0;
  private epoch: string | undefined;
  /** watch events received but not applied yet (see WATCH_SLICE), oldest first */
  private backlog: StoreEvent[] = [];
  private backlogAt = 0;
  private draining: NodeJS.Immediate | null = null;

  constructor(
    private readonly store: LeaseStore,
    private readonly cfg: NetworkConfig,
    private readonly log: Logger,
    private readonly onUpdate: (u: LeaseUpdate) => void,
    private readonly opts: LeaseWatchOptions = {},
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.ac.abort();
    this.wake?.();
    await this.loop;
  }

  leases(): Lease[] {
    return this.tracker.all();
  }

  private accept(e: StoredEntry | (StoreEvent & { type: 'put' })): Lease | null {
    const entry: StoredEntry = 'permanent' in e ? e : { name: e.name, key: e.key, value: e.value, permanent: false, ttlSeconds: null };
    const l = entryToLease(entry);
    const why = typeof l === 'string' ? l : validateLease(l, this.cfg);
    if (why !== null) {
      const tag = `${entry.key}\u0000${entry.value}`;
      if (!this.warned.has(tag)) {
        this.warned.add(tag);
        this.log.warn(`ignoring lease ${entry.key}: ${typeof l === 'string' ? l.replace(/^key "[^"]*": /, '') : why}`);
      }
      return null;
    }
    return l as Lease;
  }

  private emit(events: LeaseEvent[], snapshot: boolean, storeReset: string | null = null): void {
    if (events.length === 0 && !snapshot) return;
    try {
      this.onUpdate(trackedUpdate(this.tracker, events, snapshot, storeReset));
    } catch (e) {
      // A consumer bug must not kill the watch.
      this.log.error(`lease update handler failed: ${(e as Error).message}`);
    }
  }

  private run(): Promise<void> {
    return runListWatch(
      {
        what: 'leases',
        list: async () => {
          const { revision, entries, epoch } = await this.store.listSubnets();
          const leases = entries.map((e) => this.accept(e)).filter((l): l is Lease => l !== null);
          const reset = this.resetSeen(revision, epoch);
          this.revision = revision;
          this.maxRevision = reset === null ? Math.max(this.maxRevision, revision) : revision;
          this.epoch = epoch;
          this.relists++;
          this.emit(this.tracker.snapshot(leases), true, reset);
          return async () => (await this.watchFrom(revision + 1)).message;
        },
      },
      this.log,
      this.ac.signal,
      this.opts,
    );
  }

  /** Applies events[from, to) and hands what changed to the daemon. */
  private apply(events: readonly StoreEvent[], from: number, to: number): void {
    const out: LeaseEvent[] = [];
    for (let i = from; i < to; i++) {
      const ev = events[i]!;
      if (ev.type === 'put') {
        const l = this.accept(ev);
        if (l) for (const e of this.tracker.put(l)) out.push(e);
      } else {
        const sn = parseSubnetKey(ev.name);
        if (sn) for (const e of this.tracker.remove(subnetKey(sn.subnet, sn.subnet6))) out.push(e);
      }
    }
    this.emit(out, false);
  }

  /** One slice of the backlog now, the next one after whatever else is waiting (the netlink worker's answers). */
  private drain(): void {
    this.draining = null;
    if (this.ac.signal.aborted) return this.dropBacklog();
    const to = Math.min(this.backlog.length, this.backlogAt + WATCH_SLICE);
    const from = this.backlogAt;
    this.backlogAt = to;
    if (to >= this.backlog.length) {
      const events = this.backlog;
      this.backlog = [];
      this.backlogAt = 0;
      this.apply(events, from, to);
      return;
    }
    this.apply(this.backlog, from, to);
    this.draining = setImmediate(() => this.drain());
  }

  private dropBacklog(): void {
    if (this.draining) clearImmediate(this.draining);
    this.draining = null;
    this.backlog = [];
    this.backlogAt = 0;
  }

  /** Did the store go back in time since the last list? A one-line account, or null. */
  private resetSeen(revision: number, epoch: string | undefined): string | null {
    if (this.relists === 0) return null;
    if (epoch !== undefined && this.epoch !== undefined && epoch !== this.epoch) return `its ID changed from ${this.epoch} to ${epoch}`;
    if (revision < this.maxRevision) return `its revision went back from ${this.maxRevision} to ${revision}`;
    return null;
  }

  /** Watch until the store reports an error (returned) or we are stopped. */
  private watchFrom(rev: number): Promise<Error> {
    return new Promise<Error>((resolve) => {
      const finish = (err: Error) => {
        // what this watch delivered and we did not apply yet is found by the re-list that follows
        this.dropBacklog();
        this.wake = null;
        const h = this.handle;
        this.handle = null;
        void (h ? h.cancel() : Promise.resolve()).finally(() => resolve(err));
      };
      this.wake = () => finish(new Error('stopped'));
      this.handle = this.store.watchSubnets(rev, {
        onEvents: (events, revision) => {
          this.revision = revision;
          this.maxRevision = Math.max(this.maxRevision, revision);
          if (this.backlog.length === 0 && events.length <= WATCH_SLICE) {
            this.apply(events, 0, events.length);
            return;
          }
          for (const ev of events) this.backlog.push(ev);
          if (!this.draining) this.drain();
        },
        onError: (err) => finish(err),
      });
    });
  }
}
