// The gateway adapter, falling back to the etcd3 (gRPC) adapter when etcd's
// JSON gateway cannot work on this cluster. Two such clusters exist:
//
// * etcd before 3.4 serves the gateway under /v3alpha or /v3beta only, so
//   every /v3/ call answers HTTP 404 "404 page not found"; gRPC (real
//   flanneld, etcdctl) works. Switched on the first such answer.
//
// * Under TLS, etcd's JSON gateway is a gRPC client of its own server, and it
//   presents the server's certificate as its client certificate. Under
//   --client-cert-auth a server certificate made for serverAuth only is
//   refused, so every gateway call answers {"code":14,"message":"connection
//   closed"} (or, depending on when the server drops the handshake, "… write:
//   broken pipe" / "connection reset") while gRPC clients work. etcd's docs
//   and kubeadm issue server certificates good for both, but not every
//   cluster has them.
//
// flannel-ts must stay a drop-in, so in either case it switches to the etcd3
// adapter, once, and says so. FLANNEL_ETCD_CLIENT=gateway (or etcd3) skips
// the try.

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

/** no /v3/ gateway at all: etcd before 3.4 (gateway-client.ts words this answer) */
export function isGatewayMissing(e: unknown): boolean {
  let c: unknown = e;
  while (c instanceof StoreError) c = c.cause;
  return c instanceof GatewayError && c.kind === 'protocol' && !c.retryable && /HTTP 404|answered 404/.test(c.message);
}

export class GatewayFallbackStore implements LeaseStore {
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
      if (s !== this.gateway) throw e;
      if (isGatewaySelfDialFailure(e)) return fn(await this.switchToEtcd3(this.tlsReason((e as Error).message)));
      if (isGatewayMissing(e)) {
        return fn(await this.switchToEtcd3(`etcd answers HTTP 404 for its v3 JSON gateway (/v3/…), which etcd 3.4 and later serve: an older etcd. Using the etcd3 gRPC client instead (slower start, more memory); FLANNEL_ETCD_CLIENT=etcd3 skips this try.`));
      }
      throw e;
    }
  }

  private tlsReason(why: string): string {
    return (
      `etcd's JSON gateway cannot reach etcd's own gRPC port over TLS (${why}): etcd presents its server certificate to itself, ` +
      'and under --client-cert-auth that certificate needs the clientAuth usage too. Using the etcd3 gRPC client instead ' +
      '(slower start, more memory); FLANNEL_ETCD_CLIENT=etcd3 skips this try.'
    );
  }

  private switchToEtcd3(warning: string): Promise<LeaseStore> {
    if (!this.etcd3) {
      this.log.warn(warning);
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
