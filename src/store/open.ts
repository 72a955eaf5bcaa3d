// Build a LeaseStore from flanneld's store flags.
// Each store's client is loaded only when that store is chosen: the etcd
// client costs about 200 ms and 30 MB at start-up, better-sqlite3 a native addon.
import type { Logger } from '../log/log.js';
import type { EtcdStore } from './etcd/etcd-store.js';
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
}

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
  const { EtcdStore } = await import('./etcd/etcd-store.js');
  let store: EtcdStore;
  try {
    store = new EtcdStore({
      endpoints,
      prefix: f.etcdPrefix,
      ...(f.etcdKeyfile ? { keyFile: f.etcdKeyfile } : {}),
      ...(f.etcdCertfile ? { certFile: f.etcdCertfile } : {}),
      ...(f.etcdCafile ? { caFile: f.etcdCafile } : {}),
      ...(f.etcdUsername ? { username: f.etcdUsername, password: f.etcdPassword } : {}),
    });
  } catch (e) {
    throw new Error(`etcd TLS files: ${(e as Error).message}`);
  }
  if (store.insecure && f.etcdCafile) log.warn('--etcd-cafile is ignored unless --etcd-keyfile and --etcd-certfile are set too (as in flannel)');
  return store;
}
