// Build a LeaseStore from flanneld's store flags.
// Each store's client is loaded only when that store is chosen: the etcd3
// client costs about 200 ms and 30 MB at start-up, better-sqlite3 a native addon.
//
// --store etcd talks to etcd's JSON gateway over HTTP/1.1 (gateway-store.ts)
// by default: a process reaches its first range ~0.4 s sooner with ~27 MB
// less RSS than with the etcd3 (gRPC) client, and a whole flanneld writes
// subnet.env ~250 ms sooner with ~19 MB less (npm run bench:etcd-client). The etcd3 adapter stays available for
// one release with FLANNEL_ETCD_CLIENT=etcd3 (read by src/cmd, passed here as
// etcdClient).
import type { Logger } from '../log/log.js';
import type { EtcdStoreOptions } from './etcd/etcd-store.js';
import type { LeaseStore } from './store.js';

export interface StoreFlags {
  store: string;
  etcdEndpoints: string;
  etcdPrefix: string;
  etcdKeyfile: string;
  etcdCertfile: string;
  etcdCafile: string;
  etcdUsername: string;
  etcdPassword: string;
  /** which etcd client: "gateway" (default, also for "") or "etcd3" (FLANNEL_ETCD_CLIENT) */
  etcdClient?: string;
}

export const ETCD_CLIENTS = ['gateway', 'etcd3'] as const;

export async function openStore(f: StoreFlags, log: Logger): Promise<LeaseStore> {
  if (f.store.startsWith('local:')) {
    const file = f.store.slice('local:'.length);
    if (!file) throw new Error('--store local: needs a database path, e.g. local:/var/lib/flannel/leases.db');
    // --etcd-prefix still selects the network inside the file.
    const { LocalStore } = await import('./local/local-store.js');
    return LocalStore.open(file, { prefix: f.etcdPrefix });
  }
  if (f.store !== 'etcd') throw new Error(`--store: unknown store "${f.store}" (supported: etcd, local:/path/leases.db)`);
  const endpoints = f.etcdEndpoints.split(',').map((s) => s.trim()).filter(Boolean);
  if (endpoints.length === 0) throw new Error('--etcd-endpoints: no endpoints given');
  const client = f.etcdClient || 'gateway';
  if (!(ETCD_CLIENTS as readonly string[]).includes(client)) throw new Error(`FLANNEL_ETCD_CLIENT: unknown etcd client "${client}" (supported: ${ETCD_CLIENTS.join(', ')})`);
  const opts: EtcdStoreOptions = {
    endpoints,
    prefix: f.etcdPrefix,
    ...(f.etcdKeyfile ? { keyFile: f.etcdKeyfile } : {}),
    ...(f.etcdCertfile ? { certFile: f.etcdCertfile } : {}),
    ...(f.etcdCafile ? { caFile: f.etcdCafile } : {}),
    ...(f.etcdUsername ? { username: f.etcdUsername, password: f.etcdPassword } : {}),
  };
  const etcd3 = async () => new (await import('./etcd/etcd-store.js')).EtcdStore(opts);
  let store: LeaseStore & { insecure: boolean };
  try {
    if (client === 'etcd3') {
      store = await etcd3();
    } else {
      const gateway = new (await import('./etcd/gateway-store.js')).GatewayEtcdStore(opts);
      // An etcd without the /v3/ gateway (before 3.4), or one whose gateway
      // cannot dial its own server over TLS (see fallback-store.ts), gets the
      // etcd3 client, unless the gateway was asked for by name.
      store = !f.etcdClient ? new (await import('./etcd/fallback-store.js')).GatewayFallbackStore(gateway, etcd3, log) : gateway;
    }
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    // a file that cannot be read names the TLS files; anything else (a bad endpoint URL) speaks for itself
    throw new Error(err.syscall ? `etcd TLS files: ${err.message}` : err.message);
  }
  if (store.insecure && f.etcdCafile) log.warn('--etcd-cafile is ignored unless --etcd-keyfile and --etcd-certfile are set too (as in flannel)');
  return store;
}
