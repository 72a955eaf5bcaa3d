// MemoryStore: an in-memory LeaseStore for fast unit tests of the subnet
// policy. It keeps the contract of src/store/store.ts (atomic create, TTL
// expiry seen as delete, revisions, ordered watch) but is not a replacement
// for the real etcd tests under test/etcd.

import type { LeaseStore, StoreEvent, StoredEntry, WatchHandle, WatchHandlers } from '../store/store.js';

interface Item {
  value: string;
  expiresAt: number | null;
  timer: NodeJS.Timeout | null;
}

export class MemoryStore implements LeaseStore {
  readonly description = 'memory';
  config: string | null;
  private revision = 1;
  private readonly items = new Map<string, Item>();
  private readonly log: StoreEvent[] = [];
  private readonly watchers = new Set<{ h: WatchHandlers; from: number }>();
  /** revisions below this are "compacted": watching from them fails */
  compactedBelow = 0;
  /** when set, the next createSubnet calls see this many spurious conflicts (to test retry) */
  injectCreateConflicts = 0;

  constructor(config: string | null = null) {
    this.config = config;
  }

  async getNetworkConfig(): Promise<string | null> {
    return this.config;
  }

  private entry(name: string, it: Item): StoredEntry {
    return {
      name,
      key: '/memory/subnets/' + name,
      value: it.value,
      permanent: it.expiresAt === null,
      ttlSeconds: it.expiresAt === null ? null : Math.max(0, Math.ceil((it.expiresAt - Date.now()) / 1000)),
    };
  }

  async listSubnets(): Promise<{ revision: number; entries: StoredEntry[] }> {
    return { revision: this.revision, entries: [...this.items].map(([n, it]) => this.entry(n, it)) };
  }

  async getSubnet(name: string): Promise<StoredEntry | null> {
    const it = this.items.get(name);
    return it ? this.entry(name, it) : null;
  }

  async createSubnet(name: string, value: string, ttlSeconds: number): Promise<boolean> {
    if (this.injectCreateConflicts > 0) {
      this.injectCreateConflicts--;
      return false;
    }
    if (this.items.has(name)) return false;
    this.write(name, value, ttlSeconds);
    return true;
  }

  async putSubnet(name: string, value: string, ttlSeconds: number | null): Promise<void> {
    this.write(name, value, ttlSeconds);
  }

  async deleteSubnet(name: string): Promise<void> {
    this.remove(name);
  }

  private write(name: string, value: string, ttlSeconds: number | null): void {
    const old = this.items.get(name);
    if (old?.timer) clearTimeout(old.timer);
    const it: Item = { value, expiresAt: ttlSeconds === null ? null : Date.now() + ttlSeconds * 1000, timer: null };
    if (ttlSeconds !== null) {
      it.timer = setTimeout(() => this.remove(name), ttlSeconds * 1000);
      it.timer.unref();
    }
    this.items.set(name, it);
    this.emit({ type: 'put', name, key: '/memory/subnets/' + name, value, revision: ++this.revision });
  }

  private remove(name: string): void {
    const it = this.items.get(name);
    if (!it) return;
    if (it.timer) clearTimeout(it.timer);
    this.items.delete(name);
    this.emit({ type: 'delete', name, key: '/memory/subnets/' + name, revision: ++this.revision });
  }

  private emit(e: StoreEvent): void {
    this.log.push(e);
    for (const w of this.watchers) queueMicrotask(() => this.watchers.has(w) && w.h.onEvents([e], e.revision));
  }

  /** Drop history below the current revision, failing watchers that still need it. */
  compact(): void {
    this.compactedBelow = this.revision;
  }

  /** End every watch with an error, as a lost connection would. */
  breakWatches(): void {
    for (const w of [...this.watchers]) {
      this.watchers.delete(w);
      w.h.onError(new Error('watch broken by test'));
    }
  }

  /**
   * Lose everything, config included, as an etcd wiped and restarted empty
   * does: entries, history and revisions start over. Watches end with an
   * error, as the etcd adapter's do when it sees the revision go back.
   */
  wipe(): void {
    for (const it of this.items.values()) if (it.timer) clearTimeout(it.timer);
    this.items.clear();
    this.log.length = 0;
    this.revision = 1;
    this.compactedBelow = 0;
    this.config = null;
    for (const w of [...this.watchers]) {
      this.watchers.delete(w);
      w.h.onError(new Error('the store revision went back'));
    }
  }

  watchSubnets(fromRevision: number, h: WatchHandlers): WatchHandle {
    const w = { h, from: fromRevision };
    if (fromRevision < this.compactedBelow) {
      queueMicrotask(() => h.onError(new Error(`required revision ${fromRevision} has been compacted`)));
      return { cancel: async () => undefined };
    }
    const backlog = this.log.filter((e) => e.revision >= fromRevision);
    this.watchers.add(w);
    if (backlog.length) queueMicrotask(() => this.watchers.has(w) && h.onEvents(backlog, this.revision));
    return { cancel: async () => void this.watchers.delete(w) };
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  async close(): Promise<void> {
    for (const it of this.items.values()) if (it.timer) clearTimeout(it.timer);
    this.watchers.clear();
  }
}
