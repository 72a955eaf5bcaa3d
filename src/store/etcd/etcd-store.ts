// etcd v3 adapter for LeaseStore (spec §3.1, §3.2, §3.5).
//
// Keys: <prefix>/config and <prefix>/subnets/<subnet-key>, path-joined so that
// duplicate or trailing slashes in --etcd-prefix do not matter.
//
// TTLs follow flannel, not etcd keep-alives: every create or renewal grants a
// fresh etcd lease and writes the key attached to it; the old etcd lease is
// left to expire on its own. That keeps the TTL other nodes see identical to
// what real flanneld writes.

import { readFileSync } from 'node:fs';
import { Etcd3, type IOptions, type Watcher } from 'etcd3';
import { joinKey } from './defaults.js';
import { StoreError, type LeaseStore, type StoreEvent, type StoredEntry, type WatchHandle, type WatchHandlers } from '../store.js';

export interface EtcdStoreOptions {
  endpoints: string[];
  prefix: string;
  keyFile?: string;
  certFile?: string;
  caFile?: string;
  username?: string;
  password?: string;
  /** per-call deadline; etcd calls never hang forever */
  callTimeoutMs?: number;
}

export { DEFAULT_ETCD_ENDPOINTS, DEFAULT_ETCD_PREFIX, joinKey } from './defaults.js';

export class EtcdStore implements LeaseStore {
  readonly description: string;
  readonly client: Etcd3;
  private readonly configKey: string;
  private readonly subnetsPrefix: string;
  private readonly watchers = new Set<Watcher>();
  /** cluster ID from the last response that carried one; a change means another cluster */
  private clusterId: string | null = null;
  /** true when TLS is off although a CA file was given; the daemon warns about it */
  readonly insecure: boolean;

  constructor(o: EtcdStoreOptions) {
    const opts: IOptions = {
      hosts: o.endpoints,
      dialTimeout: 5000,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + (o.callTimeoutMs ?? 10000) }),
    };
    // flannel uses TLS only when both key and cert are given; a CA file alone is ignored.
    this.insecure = !(o.keyFile && o.certFile);
    if (o.keyFile && o.certFile) {
      opts.credentials = {
        privateKey: readFileSync(o.keyFile),
        certChain: readFileSync(o.certFile),
        rootCertificate: o.caFile ? readFileSync(o.caFile) : Buffer.alloc(0),
      };
      opts.hosts = o.endpoints.map((e) => e.replace(/^http:\/\//, 'https://'));
    }
    if (o.username) opts.auth = { username: o.username, password: o.password ?? '' };
    this.client = new Etcd3(opts);
    this.configKey = joinKey(o.prefix, 'config');
    // flannel watches "<prefix>/subnets" without a trailing slash; we list and
    // watch with the slash so "<prefix>/subnetsX" can never leak in.
    this.subnetsPrefix = joinKey(o.prefix, 'subnets') + '/';
    this.description = `etcd ${o.endpoints.join(',')} prefix ${joinKey(o.prefix)}`;
  }

  private keyOf(name: string): string {
    return this.subnetsPrefix + name;
  }

  private nameOf(key: string): string {
    return key.startsWith(this.subnetsPrefix) ? key.slice(this.subnetsPrefix.length) : key;
  }

  async getNetworkConfig(): Promise<string | null> {
    return wrap('get ' + this.configKey, () => this.client.get(this.configKey).string());
  }

  private async ttlOf(leaseId: string): Promise<number | null> {
    if (!leaseId || leaseId === '0') return null;
    const r = await this.client.leaseClient.leaseTimeToLive({ ID: leaseId });
    const ttl = Number(r.TTL);
    // -1: the lease is gone (the key is about to disappear); report 0 left.
    return ttl < 0 ? 0 : ttl;
  }

  async listSubnets(opts: { withTTL?: boolean } = {}): Promise<{ revision: number; entries: StoredEntry[]; epoch: string }> {
    return wrap('list ' + this.subnetsPrefix, async () => {
      const res = await this.client.getAll().prefix(this.subnetsPrefix).exec();
      const revision = Number(res.header.revision);
      const epoch = String(res.header.cluster_id);
      this.clusterId = epoch;
      const ttlByLease = new Map<string, number | null>();
      if (opts.withTTL) {
        const ids = [...new Set(res.kvs.map((kv) => String(kv.lease)).filter((id) => id !== '0'))];
        await Promise.all(ids.map(async (id) => ttlByLease.set(id, await this.ttlOf(id))));
      }
      const entries = res.kvs.map((kv) => {
        const key = kv.key.toString();
        const lease = String(kv.lease);
        const permanent = lease === '0';
        const ttlSeconds = opts.withTTL && !permanent ? (ttlByLease.get(lease) ?? null) : null;
        return { name: this.nameOf(key), key, value: kv.value.toString(), permanent, ttlSeconds };
      });
      return { revision, entries, epoch };
    });
  }

  async getSubnet(name: string): Promise<StoredEntry | null> {
    const key = this.keyOf(name);
    return wrap('get ' + key, async () => {
      const res = await this.client.get(key).exec();
      const kv = res.kvs[0];
      if (!kv) return null;
      const lease = String(kv.lease);
      return { name, key, value: kv.value.toString(), permanent: lease === '0', ttlSeconds: await this.ttlOf(lease) };
    });
  }

  async createSubnet(name: string, value: string, ttlSeconds: number): Promise<boolean> {
    const key = this.keyOf(name);
    return wrap('create ' + key, async () => {
      const grant = await this.client.leaseClient.leaseGrant({ TTL: ttlSeconds });
      const res = await this.client
        .if(key, 'Version', '==', 0)
        .then(this.client.put(key).value(value).lease(grant.ID))
        .commit();
      if (!res.succeeded) {
        // Lost the race: give the unused etcd lease back right away.
        await this.client.leaseClient.leaseRevoke({ ID: grant.ID }).catch(() => undefined);
      }
      return res.succeeded;
    });
  }

  async putSubnet(name: string, value: string, ttlSeconds: number | null): Promise<void> {
    const key = this.keyOf(name);
    await wrap('put ' + key, async () => {
      const put = this.client.put(key).value(value);
      if (ttlSeconds !== null) {
        const grant = await this.client.leaseClient.leaseGrant({ TTL: ttlSeconds });
        put.lease(grant.ID);
      }
      await put.exec();
    });
  }

  async deleteSubnet(name: string): Promise<void> {
    const key = this.keyOf(name);
    await wrap('delete ' + key, () => this.client.delete().key(key).exec());
  }

  watchSubnets(fromRevision: number, h: WatchHandlers): WatchHandle {
    let watcher: Watcher | null = null;
    let cancelled = false;
    let failed = false;
    /** the server cancelled the watcher itself (e.g. compaction): it is gone from the client's books */
    let serverEnded = false;
    // The highest revision this watch has seen. When etcd is wiped (or
    // restored from an older snapshot) and restarted, the client reconnects
    // and resumes from its old revision, which the new store will not reach
    // for a long time: the watch would wait in silence. etcd keeps its cluster
    // ID across a wipe (it is derived from the member names, peer URLs and
    // token), so the revision going back is the signal; a changed cluster ID
    // means another cluster altogether. Either ends this watch, and the caller
    // re-lists and sees what happened.
    let seen = fromRevision - 1;
    /** where the client resumes the stream after a reconnection: one past the last revision delivered */
    let resumeFrom = fromRevision;
    const fail = (err: Error) => {
      if (cancelled || failed) return;
      failed = true;
      h.onError(err);
    };
    const onConnected = (res: { header: { revision: string; cluster_id: string } }) => {
      const revision = Number(res.header.revision);
      const cluster = String(res.header.cluster_id);
      if (this.clusterId !== null && cluster !== this.clusterId) {
        fail(new StoreError(`etcd watch of ${this.subnetsPrefix}: the cluster ID changed from ${this.clusterId} to ${cluster} (another etcd cluster)`, true));
      } else if (revision < seen) {
        fail(new StoreError(`etcd watch of ${this.subnetsPrefix}: the store revision went back from ${seen} to ${revision} (etcd wiped or restored from an older snapshot?)`, true));
      }
      seen = Math.max(seen, revision);
    };
    const ready = this.client
      .watch()
      .prefix(this.subnetsPrefix)
      .startRevision(String(fromRevision))
      .create()
      .then((w) => {
        watcher = w;
        this.watchers.add(w);
        if (cancelled) return w.cancel();
        // Every reconnection of the stream brings a fresh "created" response.
        w.on('connected', onConnected);
        w.on('data', (res) => {
          if (cancelled || failed) return;
          const revision = Number(res.header.revision);
          seen = Math.max(seen, revision);
          resumeFrom = Math.max(resumeFrom, revision + 1);
          const events: StoreEvent[] = res.events.map((e) => {
            const key = e.kv.key.toString();
            const rev = Number(e.kv.mod_revision);
            return e.type === 'Put'
              ? { type: 'put', name: this.nameOf(key), key, value: e.kv.value.toString(), revision: rev }
              : { type: 'delete', name: this.nameOf(key), key, revision: rev };
          });
          if (events.length > 0) h.onEvents(events, revision);
        });
        // Any error ends this watch and the caller re-lists. A compacted start
        // revision only shows up as "Watcher canceled: " with an empty reason
        // (etcd sends compact_revision, which the client drops), so ask etcd
        // for the reason before reporting it.
        w.on('error', (err) => {
          this.watchers.delete(w);
          serverEnded = true;
          void this.cancelReason(err, resumeFrom).then((why) => fail(new StoreError(`etcd watch of ${this.subnetsPrefix} ended: ${why}`, true, { cause: err })));
        });
        return undefined;
      })
      .catch((err: Error) => fail(new StoreError(`etcd watch of ${this.subnetsPrefix} failed: ${err.message}`, true, { cause: err })));
    return {
      cancel: async () => {
        cancelled = true;
        await ready;
        if (watcher) {
          this.watchers.delete(watcher);
          // A watcher the server already cancelled (e.g. compaction) is gone
          // from the client's books; cancelling it again would wait forever.
          // Bounded: a cancel racing a server-side cancellation must not hang shutdown.
          if (!serverEnded) await Promise.race([watcher.cancel().catch(() => undefined), new Promise((r) => setTimeout(r, 2000).unref())]);
        }
      },
    };
  }

  /**
   * Found by the compaction fault test (test/faults/compaction.test.ts): a
   * watch cancelled because etcd compacted the revision it resumes from was
   * logged as "Watcher canceled: " with nothing after it. When etcd gives no
   * reason, read the prefix at that revision: etcd answers "required revision
   * has been compacted" exactly when that is what happened.
   */
  private async cancelReason(err: Error, resumeFrom: number): Promise<string> {
    if (!/^Watcher canceled:\s*$/.test(err.message)) return err.message;
    try {
      await this.client.getAll().prefix(this.subnetsPrefix).revision(String(resumeFrom)).limit(1).exec();
      return 'etcd cancelled the watch without giving a reason';
    } catch (e) {
      const m = (e as Error).message;
      if (/compacted/.test(m)) return `etcd compacted its history past revision ${resumeFrom}, where this watch was to resume`;
      return `etcd cancelled the watch without giving a reason (reading revision ${resumeFrom} failed too: ${m})`;
    }
  }

  async close(): Promise<void> {
    // client.close() hangs while a watcher is active: cancel them first.
    await Promise.all([...this.watchers].map((w) => w.cancel().catch(() => undefined)));
    this.watchers.clear();
    this.client.close();
  }
}

async function wrap<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof StoreError) throw e;
    const err = e as Error;
    throw new StoreError(`etcd: ${what}: ${err.message}`, true, { cause: err });
  }
}
