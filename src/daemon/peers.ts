// The remote leases the daemon hands its backend, kept up to date lease
// event by lease event (issue 11: the work follows what changed, not the
// number of peers).
//
// A remote lease whose subnet overlaps our own or another peer's in use is
// left out: programming both would send one subnet's traffic to two places.
// The peer already in use keeps its place (first one keeps it); a lease left
// out is warned about once, and comes in by itself when what blocked it goes.
// A whole listing (a re-list) is recomputed from scratch, the leases in use
// first, exactly as withoutConflicts does.

import { leaseId, leasesOverlap, SubnetIndex, withoutConflicts, type Lease } from '../lease/lease.js';
import type { LeaseEvent } from '../lease/tracker.js';

interface Dropped {
  readonly lease: Lease;
  readonly reason: string;
}

export class RemotePeers {
  private readonly kept = new Map<string, Lease>();
  private dropped = new Map<string, Dropped>();
  private readonly index = new SubnetIndex();
  /** kept leases as an array, built when first asked for after a change */
  private list: Lease[] | null = [];

  /** `onDropped`: a lease is newly left out, or left out for a new reason (each said once) */
  constructor(private readonly onDropped: (id: string, reason: string) => void) {}

  get size(): number {
    return this.kept.size;
  }

  /** The leases in use, in the order they came in. */
  get leases(): readonly Lease[] {
    return (this.list ??= [...this.kept.values()]);
  }

  get(id: string): Lease | undefined {
    return this.kept.get(id);
  }

  /** A whole listing (our own lease left out by the caller): recomputed, the leases in use first. */
  reset(remote: readonly Lease[], own: Lease | null): void {
    const { kept, dropped } = withoutConflicts(remote, own, new Set(this.kept.keys()));
    this.kept.clear();
    this.index.clear();
    for (const l of kept) {
      this.kept.set(leaseId(l), l);
      this.index.add(l);
    }
    const was = this.dropped;
    this.dropped = new Map();
    for (const d of dropped) {
      const id = leaseId(d.lease);
      this.dropped.set(id, d);
      if (was.get(id)?.reason !== d.reason) this.onDropped(id, d.reason);
    }
    this.list = null;
  }

  /**
   * Lease events (our own excluded by the caller), in order. Returns what
   * changed among the leases in use, for the backend: an added lease that
   * conflicts is held back (and says nothing to the backend), a removed one
   * in use may let a held-back one in (an 'added' event for it).
   */
  apply(events: readonly LeaseEvent[], own: Lease | null): LeaseEvent[] {
    const out: LeaseEvent[] = [];
    let freed = false;
    for (const e of events) {
      const id = leaseId(e.lease);
      if (e.type === 'added') {
        if (this.kept.has(id)) {
          // new attributes, same subnets: still in use
          this.kept.set(id, e.lease);
          this.list = null;
          out.push(e);
          continue;
        }
        const held = this.dropped.get(id);
        if (held) {
          this.dropped.set(id, { lease: e.lease, reason: held.reason });
          continue;
        }
        const why = this.conflict(e.lease, id, own);
        if (why !== null) this.drop(id, e.lease, why);
        else {
          this.keep(id, e.lease);
          out.push(e);
        }
      } else {
        const was = this.kept.get(id);
        if (was) {
          this.kept.delete(id);
          this.index.remove(was);
          this.list = null;
          out.push({ type: 'removed', lease: was });
          freed = true;
        } else this.dropped.delete(id);
      }
    }
    if (freed && this.dropped.size > 0) {
      for (const [id, d] of [...this.dropped]) {
        const why = this.conflict(d.lease, id, own);
        if (why === null) {
          this.dropped.delete(id);
          this.keep(id, d.lease);
          out.push({ type: 'added', lease: d.lease });
        } else if (why !== d.reason) this.drop(id, d.lease, why);
      }
    }
    return out;
  }

  private keep(id: string, l: Lease): void {
    this.kept.set(id, l);
    this.index.add(l);
    this.list = null;
  }

  private drop(id: string, l: Lease, reason: string): void {
    const was = this.dropped.get(id);
    this.dropped.set(id, { lease: l, reason });
    if (was?.reason !== reason) this.onDropped(id, reason);
  }

  /** Why `l` can't be used next to our lease and the ones in use, or null. */
  private conflict(l: Lease, id: string, own: Lease | null): string | null {
    if (own) {
      const ownId = leaseId(own);
      if (id !== ownId && leasesOverlap(l, own)) return `its subnet overlaps our own lease ${ownId}`;
    }
    const other = this.index.find(l);
    return other ? `its subnet overlaps lease ${leaseId(other)}` : null;
  }
}
