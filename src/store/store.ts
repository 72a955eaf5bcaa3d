// LeaseStore: the narrow storage port under the subnet manager.
//
// It deals in subnet-key names ("10.244.1.0-24") and raw values; the adapter
// owns the prefix and the key layout. Semantics every adapter provides (the
// contract tests in test/ run the same cases against each):
// * createIfAbsent is atomic: of N racing creators of one name exactly one wins;
// * a TTL'd entry disappears by itself when its TTL runs out and a watcher
//   sees a delete;
// * ttlSeconds null means "no TTL" (a reservation, permanent);
// * list() returns a revision R such that watch(R + 1) misses nothing;
// * revisions only grow while the store is the same store: a list whose
//   revision is lower than one seen before (or whose epoch differs) means the
//   store was wiped or restored from an older snapshot, and a watch that
//   notices it on its own ends with an error;
// * watch delivers events in order with their revision; an error ends the
//   watch (the caller re-lists and re-watches).

import { FlannelError } from '../errors.js';

export interface StoredEntry {
  /** subnet-key name, the last path element ("10.244.1.0-24") */
  readonly name: string;
  /** the full key as stored, for messages */
  readonly key: string;
  readonly value: string;
  /** true when the entry has no TTL (a reservation) */
  readonly permanent: boolean;
  /** seconds left; null when permanent or when the listing did not ask (withTTL) */
  readonly ttlSeconds: number | null;
}

export type StoreEvent =
  | { readonly type: 'put'; readonly name: string; readonly key: string; readonly value: string; readonly revision: number }
  | { readonly type: 'delete'; readonly name: string; readonly key: string; readonly revision: number };

export interface WatchHandlers {
  onEvents(events: StoreEvent[], revision: number): void;
  /** the watch is over; the caller re-lists and watches again */
  onError(err: Error): void;
}

export interface WatchHandle {
  cancel(): Promise<void>;
}

export interface LeaseStore {
  /** human name for logs: "etcd http://127.0.0.1:2379 prefix /coreos.com/network" */
  readonly description: string;
  /** the raw network config text, or null when there is none */
  getNetworkConfig(): Promise<string | null>;
  /**
   * `epoch` names the store's identity where it has one (etcd: the cluster
   * ID; local: an ID stamped into the file when it was created).
   */
  listSubnets(opts?: { withTTL?: boolean }): Promise<{ revision: number; entries: StoredEntry[]; epoch?: string }>;
  getSubnet(name: string): Promise<StoredEntry | null>;
  /** true if created, false if the name was taken */
  createSubnet(name: string, value: string, ttlSeconds: number): Promise<boolean>;
  /** unconditional write; null TTL keeps the entry permanent */
  putSubnet(name: string, value: string, ttlSeconds: number | null): Promise<void>;
  deleteSubnet(name: string): Promise<void>;
  watchSubnets(fromRevision: number, h: WatchHandlers): WatchHandle;
  close(): Promise<void>;
}

/**
 * A store operation failed. `code` is STORE_UNAVAILABLE for a retryable error
 * (the store is away, busy or restarting) and STORE_ERROR otherwise, unless
 * the adapter gives a more precise one.
 */
export class StoreError extends FlannelError {
  override name = 'StoreError';
  constructor(message: string, retryable: boolean, options?: { cause?: unknown; code?: string }) {
    super(message, { code: options?.code ?? (retryable ? 'STORE_UNAVAILABLE' : 'STORE_ERROR'), retryable, cause: options?.cause });
  }
}
