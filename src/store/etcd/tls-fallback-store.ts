// The gateway adapter with TLS, falling back to the etcd3 (gRPC) adapter when
// etcd's gateway cannot work on this cluster.
//
// etcd's JSON gateway is a gRPC client of its own server, and it presents the
// server's certificate as its client certificate. Under --client-cert-auth a
// server certificate made for serverAuth only is refused, so every gateway
// call answers {"code":14,"message":"connection closed"} (or, depending on
// when the server drops the handshake, "… write: broken pipe" / "connection
// reset") while gRPC clients
// (real flanneld, etcdctl) work. etcd's docs and kubeadm issue server
// certificates good for both, but not every cluster has them; flannel-ts must
// stay a drop-in, so on that answer it switches to the etcd3 adapter, once,
// and says so.

import type { Logger } from '../../log/log.js';
import { StoreError, type LeaseStore, type StoredEntry, type WatchHandle, type WatchHandlers } from '../store.js';
import { GatewayError, GrpcCode } from './gateway-client.js';
import type { GatewayEtcdStore } from './gateway-store.js';

/** the gateway's own gRPC connection to its server failed (as opposed to etcd being down: that is a connection error here) */
export function isGatewaySelfDialFailure(e: unknown): boolean {
  let c: unknown = e;
  while (c instanceof StoreError) c = c.cause;
  return c instanceof GatewayError && c.kind === 'server' && c.code === GrpcCode.Unavailable && /connection closed|bad certificate|handshake|transport|broken pipe|connection reset/i.test(c.message);
}

export class TlsFallbackStore implements LeaseStore {
  readonly description: string;
  readonly insecure: boolean;
  private etcd3: Promise<LeaseStore> | null = null;
  private using: LeaseStore;

  constructor(
    private readonly gateway: GatewayEtcdStore,
    private readonly makeEtcd3: () => Promise<LeaseStore>,
    private readonly log: Logger,
  ) {
    this.description = gateway.description;
    this.insecure = gateway.insecure;
    this.using = gateway;
  }

  private async run<T>(fn: (s: LeaseStore) => Promise<T>): Promise<T> {
    const s = this.using;
    try {
      return await fn(s);
    } catch (e) {
      if (s !== this.gateway || !isGatewaySelfDialFailure(e)) throw e;
      return fn(await this.switchToEtcd3((e as Error).message));
    }
  }

  private switchToEtcd3(why: string): Promise<LeaseStore> {
    if (!this.etcd3) {
      this.log.warn(
        `etcd's JSON gateway cannot reach etcd's own gRPC port over TLS (${why}): etcd presents its server certificate to itself, ` +
          'and under --client-cert-auth that certificate needs the clientAuth usage too. Using the etcd3 gRPC client instead ' +
          '(slower start, more memory); FLANNEL_ETCD_CLIENT=etcd3 skips this try.',
      );
      this.etcd3 = this.makeEtcd3().then((s) => {
        this.using = s;
        return s;
      });
    }
    return this.etcd3;
  }

  getNetworkConfig(): Promise<string | null> {
    return this.run((s) => s.getNetworkConfig());
  }
  listSubnets(opts?: { withTTL?: boolean }): Promise<{ revision: number; entries: StoredEntry[]; epoch?: string }> {
    return this.run((s) => s.listSubnets(opts));
  }
  getSubnet(name: string): Promise<StoredEntry | null> {
    return this.run((s) => s.getSubnet(name));
  }
  createSubnet(name: string, value: string, ttlSeconds: number): Promise<boolean> {
    return this.run((s) => s.createSubnet(name, value, ttlSeconds));
  }
  putSubnet(name: string, value: string, ttlSeconds: number | null): Promise<void> {
    return this.run((s) => s.putSubnet(name, value, ttlSeconds));
  }
  deleteSubnet(name: string): Promise<void> {
    return this.run((s) => s.deleteSubnet(name));
  }
  /** A watch follows a listing, which has made the choice already. */
  watchSubnets(fromRevision: number, h: WatchHandlers): WatchHandle {
    return this.using.watchSubnets(fromRevision, h);
  }
  async close(): Promise<void> {
    await this.gateway.close();
    if (this.etcd3) await (await this.etcd3).close();
  }
}
