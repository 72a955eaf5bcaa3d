// LeaseTracker: the set of known leases, turned into Added/Removed events.
// Pure. Snapshots (after a re-list) are diffed against what is known; unlike
// flannel (§3.8) a lease whose attributes changed between snapshots is
// reported as Added again, so a peer whose VTEP MAC changed while our watch
// was down is still reprogrammed.

import { leaseId, sameAttrs, type Lease } from './lease.js';

export type LeaseEvent =
  | { readonly type: 'added'; readonly lease: Lease }
  /** carries the stored lease, so backends know the old MAC / public IP */
  | { readonly type: 'removed'; readonly lease: Lease };

export class LeaseTracker {
  private readonly known = new Map<string, Lease>();

  snapshot(leases: readonly Lease[]): LeaseEvent[] {
    const events: LeaseEvent[] = [];
    const next = new Map(leases.map((l) => [leaseId(l), l]));
    for (const [id, old] of this.known) {
      if (!next.has(id)) {
        this.known.delete(id);
        events.push({ type: 'removed', lease: old });
      }
    }
    for (const [id, l] of next) events.push(...this.put(l, id));
    return events;
  }

  put(l: Lease, id = leaseId(l)): LeaseEvent[] {
    const old = this.known.get(id);
    this.known.set(id, l);
    if (old && sameAttrs(old.attrs, l.attrs)) return [];
    return [{ type: 'added', lease: l }];
  }

  remove(id: string): LeaseEvent[] {
    const old = this.known.get(id);
    if (!old) return [];
    this.known.delete(id);
    return [{ type: 'removed', lease: old }];
  }

  get(id: string): Lease | undefined {
    return this.known.get(id);
  }

  all(): Lease[] {
    return [...this.known.values()];
  }
}
