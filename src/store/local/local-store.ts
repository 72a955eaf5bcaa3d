// LocalStore: an embedded, single-machine LeaseStore on one SQLite file.
//
// Several flanneld processes on the same machine (e.g. one per network
// namespace, all seeing the same filesystem) share leases through one database
// file. SQLite does the locking: WAL journal (readers never block the writer),
// a busy timeout (writers queue instead of failing with SQLITE_BUSY) and
// BEGIN IMMEDIATE for every write (a write transaction takes the write lock up
// front, so it can never fail half-way with SQLITE_BUSY_SNAPSHOT).
//
// Layout, as in etcd: <prefix>/config and <prefix>/subnets/<name> in table kv,
// so one file can hold several networks. Every change appends a row to events;
// its AUTOINCREMENT rowid is the global revision, like etcd's. Watches poll
// events by revision (one rowid range query per tick). TTLs are absolute
// wall-clock deadlines (expires_at, ms since the epoch); expired rows are
// swept inside write transactions and by the watch poller, each sweep deleting
// the rows and appending their delete events in one IMMEDIATE transaction, so
// exactly one process records each expiry. Reads ignore expired rows that are
// not swept yet, so an expired lease is gone for everybody at its deadline.
//
// The events table is pruned (keep the newest retainEvents events, or those
// younger than retainMs); watching from a pruned revision fails with a
// "compacted" error, as etcd does, and the caller re-lists.
//
// Wiping the store (removing the file, or moving an older copy over it) is
// the local form of an etcd wipe: an open connection would keep reading the
// old, unlinked file forever. Every operation and every watch tick checks
// that the path still names the file we opened; when it does not, the store
// opens the path again (creating it if it is gone) and ends every watch, so
// the caller re-lists and sees the new store: a lower revision, and another
// store ID (a random number stamped into each new file, the "epoch").

import { randomInt } from 'node:crypto';
import { mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { StoreError, type LeaseStore, type StoreEvent, type StoredEntry, type WatchHandle, type WatchHandlers } from '../store.js';

export interface LocalStoreOptions {
  /** key prefix of the network, as --etcd-prefix; default /coreos.com/network */
  prefix?: string;
  /** watch poll interval; default 50 ms */
  pollMs?: number;
  /** how long a writer waits for the lock before failing with SQLITE_BUSY; default 5000 ms */
  busyTimeoutMs?: number;
  /** events kept regardless of age; default 10000 */
  retainEvents?: number;
  /** events younger than this are kept regardless of count; default one hour */
  retainMs?: number;
}

export const DEFAULT_LOCAL_PREFIX = '/coreos.com/network';

/** application_id stamped into our files ("FLNL"), to refuse other apps' databases */
const APPLICATION_ID = 0x464c4e4c;
const SCHEMA_VERSION = 1;
/** most events one watch tick delivers in one batch */
const BATCH = 1000;
/** prune the events table once every this many revisions */
const PRUNE_EVERY = 256;

// Same as etcd-store's joinKey; kept here so the local store does not load etcd3.
function joinKey(...parts: string[]): string {
  return path.posix.join('/', ...parts).replace(/\/+$/, '') || '/';
}

interface KvRow {
  key: string;
  value: string;
  expires_at: number | null;
}

interface EventRow {
  rev: number;
  type: 'put' | 'delete';
  key: string;
  value: string | null;
}

interface Watcher {
  next: number;
  h: WatchHandlers;
  done: boolean;
}

const RETRYABLE = new Set(['SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_IOERR', 'SQLITE_PROTOCOL', 'SQLITE_FULL', 'SQLITE_INTERRUPT']);

function sqliteCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

export class LocalStore implements LeaseStore {
  readonly description: string;
  readonly path: string;
  readonly prefix: string;
  readonly pollMs: number;
  private db: Database.Database;
  /** the opened file's identity (device, inode) and the store ID stamped in it */
  private ident: FileIdent;
  private readonly opts: LocalStoreOptions;
  private readonly configKey: string;
  private readonly subnetsPrefix: string;
  /** exclusive upper bound of the subnets key range: the prefix with its trailing "/" bumped to "0" */
  private readonly subnetsEnd: string;
  private readonly retainEvents: number;
  private readonly retainMs: number;
  private readonly watchers = new Set<Watcher>();
  private timer: NodeJS.Timeout | null = null;
  private kick: NodeJS.Immediate | null = null;
  private closed = false;
  private q: ReturnType<LocalStore['prepare']>;

  private constructor(file: string, opened: { db: Database.Database; ident: FileIdent }, o: LocalStoreOptions) {
    this.path = file;
    this.db = opened.db;
    this.ident = opened.ident;
    this.opts = o;
    this.prefix = joinKey(o.prefix ?? DEFAULT_LOCAL_PREFIX);
    this.pollMs = Math.max(1, o.pollMs ?? 50);
    this.retainEvents = Math.max(1, o.retainEvents ?? 10000);
    this.retainMs = Math.max(0, o.retainMs ?? 3600_000);
    this.configKey = joinKey(this.prefix, 'config');
    this.subnetsPrefix = joinKey(this.prefix, 'subnets') + '/';
    this.subnetsEnd = this.subnetsPrefix.slice(0, -1) + '0';
    this.description = `local ${file} prefix ${this.prefix}`;
    this.q = this.prepare();
  }

  /**
   * Open (creating the file and its directories if missing) the lease database at file.
   * Throws StoreError with a one-line message when the file cannot be used.
   */
  static open(file: string, opts: LocalStoreOptions = {}): LocalStore {
    const abs = path.resolve(file);
    return new LocalStore(abs, LocalStore.openFile(abs, opts), opts);
  }

  private static openFile(abs: string, opts: LocalStoreOptions): { db: Database.Database; ident: FileIdent } {
    const fail = (what: string, e: unknown): StoreError => {
      const code = sqliteCode(e);
      let msg = oneLine((e as Error)?.message ?? String(e));
      if (code === 'SQLITE_NOTADB') msg = 'the file is not an SQLite database';
      else if (code === 'SQLITE_CORRUPT') msg = `the database is corrupt (${msg})`;
      return new StoreError(`local store ${abs}: ${what}: ${msg}${code ? ` [${code}]` : ''}`, code !== undefined && RETRYABLE.has(code), { cause: e });
    };
    try {
      mkdirSync(path.dirname(abs), { recursive: true });
    } catch (e) {
      throw fail('cannot create directory ' + path.dirname(abs), e);
    }
    let db: Database.Database;
    try {
      db = new Database(abs, { timeout: opts.busyTimeoutMs ?? 5000 });
    } catch (e) {
      throw fail('open', e);
    }
    try {
      db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`);
      // The first read of the file header: a non-SQLite file fails here (SQLITE_NOTADB).
      db.pragma('schema_version', { simple: true });
      setWal(db, opts.busyTimeoutMs ?? 5000);
      // WAL + NORMAL: no corruption on power loss, at worst the last commits are lost.
      db.pragma('synchronous = NORMAL');
      db.transaction(() => initSchema(db)).immediate();
      const storeId = db.prepare(`SELECT v FROM meta WHERE k = 'store_id'`).pluck().get() as number;
      // Stat after the open: the file exists now, and it is the one the connection holds.
      const st = statSync(abs);
      return { db, ident: { dev: st.dev, ino: st.ino, storeId: String(storeId) } };
    } catch (e) {
      try {
        db.close();
      } catch {
        /* already failing */
      }
      throw e instanceof StoreError ? new StoreError(`local store ${abs}: ${e.message}`, false, { cause: e }) : fail('open', e);
    }
  }

  /**
   * Is the path still the file we opened? If not (removed, or another file
   * moved over it), open the path again and end every watch: their revisions
   * belong to the old file. Returns true when it reopened.
   */
  private followFile(): boolean {
    const st = statSync(this.path, { throwIfNoEntry: false });
    if (st && st.dev === this.ident.dev && st.ino === this.ident.ino) return false;
    const opened = LocalStore.openFile(this.path, this.opts);
    try {
      this.db.close();
    } catch {
      /* the old file is gone anyway */
    }
    const was = this.ident.storeId;
    this.db = opened.db;
    this.ident = opened.ident;
    this.q = this.prepare();
    const why = `the file was ${st ? 'replaced' : 'removed'} (store ID ${was} -> ${opened.ident.storeId})`;
    for (const w of [...this.watchers]) this.fail(w, new StoreError(`local store ${this.path}: ${why}; watch of ${this.subnetsPrefix} ended`, true));
    return true;
  }

  /** the ID stamped into the file when it was created (the store's "epoch") */
  get storeId(): string {
    return this.ident.storeId;
  }

  private prepare() {
    const db = this.db;
    return {
      head: db.prepare<[], { seq: number }>(`SELECT seq FROM sqlite_sequence WHERE name = 'events'`),
      compactedBelow: db.prepare<[], { v: number }>(`SELECT v FROM meta WHERE k = 'compacted_below'`),
      setCompactedBelow: db.prepare<[number]>(`INSERT INTO meta (k, v) VALUES ('compacted_below', ?) ON CONFLICT (k) DO UPDATE SET v = max(v, excluded.v)`),
      get: db.prepare<[string, number], KvRow>(`SELECT key, value, expires_at FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)`),
      exists: db.prepare<[string], { one: number }>(`SELECT 1 AS one FROM kv WHERE key = ?`),
      list: db.prepare<[string, string, number], KvRow>(
        `SELECT key, value, expires_at FROM kv WHERE key >= ? AND key < ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY key`,
      ),
      anyExpired: db.prepare<[number], { one: number }>(`SELECT 1 AS one FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT 1`),
      expired: db.prepare<[number], { key: string }>(`SELECT key FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at, key`),
      delete: db.prepare<[string]>(`DELETE FROM kv WHERE key = ?`),
      upsert: db.prepare<[string, string, number | null, number]>(
        `INSERT INTO kv (key, value, expires_at, mod_rev) VALUES (?, ?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, mod_rev = excluded.mod_rev`,
      ),
      event: db.prepare<[string, string, string | null, number]>(`INSERT INTO events (type, key, value, at) VALUES (?, ?, ?, ?)`),
      events: db.prepare<[number, string, string, number], EventRow>(
        `SELECT rev, type, key, value FROM events WHERE rev >= ? AND key >= ? AND key < ? ORDER BY rev LIMIT ?`,
      ),
      pruneCutoff: db.prepare<[number, number], { cutoff: number | null }>(`SELECT max(rev) AS cutoff FROM events WHERE rev <= ? AND at < ?`),
      prune: db.prepare<[number]>(`DELETE FROM events WHERE rev < ?`),
    };
  }

  // ---- plumbing ---------------------------------------------------------

  private wrap<T>(what: string, fn: () => T): T {
    if (this.closed) throw new StoreError(`local store ${this.path}: ${what}: the store is closed`, false);
    try {
      this.followFile();
      return fn();
    } catch (e) {
      if (e instanceof StoreError) throw e;
      const code = sqliteCode(e);
      const msg = code === 'SQLITE_NOTADB' ? 'the file is not an SQLite database' : oneLine((e as Error)?.message ?? String(e));
      throw new StoreError(`local store ${this.path}: ${what}: ${msg}${code ? ` [${code}]` : ''}`, code !== undefined && RETRYABLE.has(code), {
        cause: e,
      });
    }
  }

  /** run fn in a BEGIN IMMEDIATE transaction, expired rows swept first */
  private write<T>(what: string, fn: (now: number) => T): T {
    return this.wrap(what, () =>
      this.db
        .transaction(() => {
          const now = Date.now();
          this.sweepLocked(now);
          return fn(now);
        })
        .immediate(),
    );
  }

  /** run fn in a read transaction (one consistent snapshot) */
  private read<T>(what: string, fn: (now: number) => T): T {
    return this.wrap(what, () => this.db.transaction(() => fn(Date.now())).deferred());
  }

  private headLocked(): number {
    return this.q.head.get()?.seq ?? 0;
  }

  private compactedBelowLocked(): number {
    return this.q.compactedBelow.get()?.v ?? 0;
  }

  /** append an event; returns its revision */
  private appendLocked(type: 'put' | 'delete', key: string, value: string | null, now: number): number {
    const rev = Number(this.q.event.run(type, key, value, now).lastInsertRowid);
    if (rev % PRUNE_EVERY === 0) this.pruneLocked(rev, now);
    return rev;
  }

  private pruneLocked(head: number, now: number): void {
    const cutoff = this.q.pruneCutoff.get(head - this.retainEvents, now - this.retainMs)?.cutoff;
    if (cutoff == null) return;
    this.q.prune.run(cutoff + 1);
    this.q.setCompactedBelow.run(cutoff + 1);
  }

  /** delete every expired row and record its delete event; inside a write transaction */
  private sweepLocked(now: number): number {
    if (!this.q.anyExpired.get(now)) return 0;
    const keys = this.q.expired.all(now);
    for (const { key } of keys) {
      this.q.delete.run(key);
      this.appendLocked('delete', key, null, now);
    }
    return keys.length;
  }

  private keyOf(name: string): string {
    return this.subnetsPrefix + name;
  }

  private nameOf(key: string): string {
    return key.startsWith(this.subnetsPrefix) ? key.slice(this.subnetsPrefix.length) : key;
  }

  private entry(r: KvRow, now: number, withTTL: boolean): StoredEntry {
    const permanent = r.expires_at === null;
    const ttlSeconds = withTTL && r.expires_at !== null ? Math.max(0, Math.ceil((r.expires_at - now) / 1000)) : null;
    return { name: this.nameOf(r.key), key: r.key, value: r.value, permanent, ttlSeconds };
  }

  private expiresAt(what: string, ttlSeconds: number | null, now: number): number | null {
    if (ttlSeconds === null) return null;
    if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) {
      throw new StoreError(`local store ${this.path}: ${what}: TTL must be a positive number of seconds, got ${ttlSeconds}`, false);
    }
    return now + Math.round(ttlSeconds * 1000);
  }

  // ---- LeaseStore -------------------------------------------------------

  async getNetworkConfig(): Promise<string | null> {
    return this.read('get ' + this.configKey, (now) => this.q.get.get(this.configKey, now)?.value ?? null);
  }

  /** write the network config (permanent), as `etcdctl put <prefix>/config` would */
  async setNetworkConfig(text: string): Promise<void> {
    this.write('put ' + this.configKey, (now) => {
      const rev = this.appendLocked('put', this.configKey, text, now);
      this.q.upsert.run(this.configKey, text, null, rev);
    });
  }

  async listSubnets(opts: { withTTL?: boolean } = {}): Promise<{ revision: number; entries: StoredEntry[]; epoch: string }> {
    return this.read('list ' + this.subnetsPrefix, (now) => {
      const revision = this.headLocked();
      const rows = this.q.list.all(this.subnetsPrefix, this.subnetsEnd, now);
      return { revision, entries: rows.map((r) => this.entry(r, now, opts.withTTL === true)), epoch: this.ident.storeId };
    });
  }

  async getSubnet(name: string): Promise<StoredEntry | null> {
    const key = this.keyOf(name);
    return this.read('get ' + key, (now) => {
      const r = this.q.get.get(key, now);
      return r ? this.entry(r, now, true) : null;
    });
  }

  async createSubnet(name: string, value: string, ttlSeconds: number): Promise<boolean> {
    const key = this.keyOf(name);
    return this.write('create ' + key, (now) => {
      const exp = this.expiresAt('create ' + key, ttlSeconds, now);
      // Expired rows were swept just now, so an expired lease counts as absent.
      if (this.q.exists.get(key)) return false;
      const rev = this.appendLocked('put', key, value, now);
      this.q.upsert.run(key, value, exp, rev);
      return true;
    });
  }

  async putSubnet(name: string, value: string, ttlSeconds: number | null): Promise<void> {
    const key = this.keyOf(name);
    this.write('put ' + key, (now) => {
      const exp = this.expiresAt('put ' + key, ttlSeconds, now);
      const rev = this.appendLocked('put', key, value, now);
      this.q.upsert.run(key, value, exp, rev);
    });
  }

  async deleteSubnet(name: string): Promise<void> {
    const key = this.keyOf(name);
    this.write('delete ' + key, (now) => {
      // Like etcd: deleting a missing key is no change and no event.
      if (this.q.delete.run(key).changes > 0) this.appendLocked('delete', key, null, now);
    });
  }

  /** the current global revision (the last event's) */
  revision(): number {
    return this.read('revision', () => this.headLocked());
  }

  /**
   * Drop history below `revision` (default: the current revision), as etcd's
   * compact: watching from an older revision then fails with "compacted".
   * Returns the oldest revision still watchable.
   */
  compact(revision?: number): number {
    return this.wrap('compact', () =>
      this.db
        .transaction(() => {
          const below = Math.min(revision ?? this.headLocked(), this.headLocked() + 1);
          if (below > this.compactedBelowLocked()) {
            this.q.prune.run(below);
            this.q.setCompactedBelow.run(below);
          }
          return this.compactedBelowLocked();
        })
        .immediate(),
    );
  }

  /** sweep expired entries now (the poller and every write do it too); returns how many went */
  sweepExpired(): number {
    return this.wrap('expire', () => this.db.transaction(() => this.sweepLocked(Date.now())).immediate());
  }

  watchSubnets(fromRevision: number, h: WatchHandlers): WatchHandle {
    const w: Watcher = { next: fromRevision, h, done: false };
    if (this.closed) {
      queueMicrotask(() => h.onError(new StoreError(`local store ${this.path}: watch of ${this.subnetsPrefix}: the store is closed`, false)));
      return { cancel: async () => undefined };
    }
    if (fromRevision <= 0) {
      // etcd's "from now"
      try {
        w.next = this.revision() + 1;
      } catch (e) {
        queueMicrotask(() => h.onError(e as Error));
        return { cancel: async () => undefined };
      }
    }
    this.watchers.add(w);
    this.startPoller();
    // First look right away: a backlog or a compacted start shows up without waiting a tick.
    this.kick ??= setImmediate(() => {
      this.kick = null;
      this.poll();
    });
    return {
      cancel: async () => {
        w.done = true;
        this.watchers.delete(w);
        if (this.watchers.size === 0) this.stopPoller();
      },
    };
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  private startPoller(): void {
    // Not unref'd: like etcd's watch stream, an active watch keeps the process
    // alive (flanneld relies on that); cancel() and close() clear it.
    this.timer ??= setInterval(() => this.poll(), this.pollMs);
  }

  private stopPoller(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.kick) clearImmediate(this.kick);
    this.kick = null;
  }

  private fail(w: Watcher, err: Error): void {
    if (w.done) return;
    w.done = true;
    this.watchers.delete(w);
    if (this.watchers.size === 0) this.stopPoller();
    deliver(() => w.h.onError(err));
  }

  /** one watch tick: sweep expired rows, then hand each watcher its new events */
  private poll(): void {
    if (this.closed || this.watchers.size === 0) return this.stopPoller();
    let again = false;
    try {
      // Cheap check in a read; the IMMEDIATE sweep only when something did expire.
      const now = Date.now();
      if (this.wrap('expire', () => this.q.anyExpired.get(now))) this.sweepExpired();
    } catch (e) {
      for (const w of [...this.watchers]) this.fail(w, this.watchError(e));
      return;
    }
    for (const w of [...this.watchers]) {
      if (w.done) continue;
      let batch: { events: StoreEvent[]; revision: number } | { compacted: number } | { back: number };
      try {
        batch = this.read('watch ' + this.subnetsPrefix, () => {
          const compactedBelow = this.compactedBelowLocked();
          if (w.next < compactedBelow) return { compacted: compactedBelow };
          const head = this.headLocked();
          // Revisions never go back in one file; if they did, it was rewritten under us.
          if (head < w.next - 1) return { back: head };
          const rows = this.q.events.all(w.next, this.subnetsPrefix, this.subnetsEnd, BATCH);
          // A full batch may have more behind it: report the last row's revision and come back.
          const revision = rows.length === BATCH ? rows[rows.length - 1]!.rev : head;
          const events = rows.map((r): StoreEvent =>
            r.type === 'put'
              ? { type: 'put', name: this.nameOf(r.key), key: r.key, value: r.value ?? '', revision: r.rev }
              : { type: 'delete', name: this.nameOf(r.key), key: r.key, revision: r.rev },
          );
          return { events, revision };
        });
      } catch (e) {
        this.fail(w, this.watchError(e));
        continue;
      }
      if ('back' in batch) {
        this.fail(w, new StoreError(`local store ${this.path}: watch of ${this.subnetsPrefix}: the store revision went back from ${w.next - 1} to ${batch.back}`, true));
        continue;
      }
      if ('compacted' in batch) {
        this.fail(
          w,
          new StoreError(
            `local store ${this.path}: watch of ${this.subnetsPrefix} from revision ${w.next}: required revision has been compacted (oldest kept is ${batch.compacted})`,
            true,
          ),
        );
        continue;
      }
      if (batch.revision >= w.next) w.next = batch.revision + 1;
      if (batch.events.length === BATCH) again = true;
      if (batch.events.length > 0) {
        const { events, revision } = batch;
        deliver(() => !w.done && w.h.onEvents(events, revision));
      }
    }
    if (again && this.watchers.size > 0) {
      this.kick ??= setImmediate(() => {
        this.kick = null;
        this.poll();
      });
    }
  }

  private watchError(e: unknown): Error {
    const err = e as Error;
    return new StoreError(`${err.message} (watch of ${this.subnetsPrefix} ended)`, e instanceof StoreError ? e.retryable : true, { cause: e });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const w of this.watchers) w.done = true;
    this.watchers.clear();
    this.stopPoller();
    this.closed = true;
    try {
      this.db.close();
    } catch (e) {
      throw new StoreError(`local store ${this.path}: close: ${oneLine((e as Error).message)}`, false, { cause: e });
    }
  }
}

/** call a handler; an exception in it must not stop the poller for the other watchers */
function deliver(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    queueMicrotask(() => {
      throw e;
    });
  }
}

/** switch to WAL (persistent in the file) unless it already is; retries while another opener holds the lock */
function setWal(db: Database.Database, timeoutMs: number): void {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal') return;
      const mode = String(db.pragma('journal_mode = WAL', { simple: true })).toLowerCase();
      if (mode === 'wal') return;
      throw new StoreError(`cannot switch to WAL journal mode (got "${mode}"); is the file on a filesystem without shared memory?`, false);
    } catch (e) {
      const code = sqliteCode(e);
      if ((code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') && Date.now() < deadline) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
        continue;
      }
      throw e;
    }
  }
}

interface FileIdent {
  readonly dev: number;
  readonly ino: number;
  readonly storeId: string;
}

function initSchema(db: Database.Database): void {
  createSchema(db);
  // A file from before store IDs existed gets one now; a new file gets its own.
  db.prepare(`INSERT INTO meta (k, v) VALUES ('store_id', ?) ON CONFLICT (k) DO NOTHING`).run(randomInt(1, 2 ** 48));
}

function createSchema(db: Database.Database): void {
  const appId = Number(db.pragma('application_id', { simple: true }));
  const version = Number(db.pragma('user_version', { simple: true }));
  const tables = Number(db.prepare(`SELECT count(*) AS n FROM sqlite_master`).pluck().get());
  if (appId !== APPLICATION_ID) {
    if (tables > 0 || appId !== 0) throw new StoreError('the file is an SQLite database, but not a flannel-ts lease store', false);
  } else if (version > SCHEMA_VERSION) {
    throw new StoreError(`the lease store has schema version ${version}, newer than this flannel-ts understands (${SCHEMA_VERSION})`, false);
  }
  if (appId === APPLICATION_ID && version === SCHEMA_VERSION) return;
  db.exec(`
    CREATE TABLE IF NOT EXISTS kv (
      key        TEXT PRIMARY KEY,
      value      TEXT NOT NULL,
      expires_at INTEGER,            -- ms since the epoch; NULL = permanent
      mod_rev    INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS kv_expires_at ON kv (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE IF NOT EXISTS events (
      rev   INTEGER PRIMARY KEY AUTOINCREMENT,
      type  TEXT NOT NULL CHECK (type IN ('put', 'delete')),
      key   TEXT NOT NULL,
      value TEXT,
      at    INTEGER NOT NULL         -- ms since the epoch, for pruning by age
    );
    CREATE TABLE IF NOT EXISTS meta (
      k TEXT PRIMARY KEY,
      v INTEGER NOT NULL
    );
  `);
  db.pragma(`application_id = ${APPLICATION_ID}`);
  db.pragma(`user_version = ${SCHEMA_VERSION}`);
}
