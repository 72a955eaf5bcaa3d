// IPv6 and dual-stack policy for the daemon (spec §0 step 8, §3.4, §5.4):
// which configs are run and which are refused at start-up (one line each),
// and the IPv6 half of the lease we publish. Kept apart from daemon.ts so the
// start-up sequence there only gains a few calls.

import { formatIPv6 } from '../lease/ip.js';
import type { LeaseAttrs } from '../lease/lease.js';
import type { ExternalInterface, PublishedAttrs } from '../backend/backend.js';
import { ConfigError, type NetworkConfig } from '../subnet/config.js';

/** Backends with an IPv6 data path (alloc only leases subnets, so it has nothing to refuse). */
const IPV6_BACKENDS = new Set(['vxlan', 'host-gw', 'alloc']);

/** Throws a one-line ConfigError for an IPv6 mode flannel-ts does not run. */
export function refuseUnsupportedIPv6(cfg: NetworkConfig): void {
  if (!cfg.enableIPv4) {
    // Leases are keyed by their IPv4 subnet (flannel's etcd mode degenerates
    // to "0.0.0.0-0&..." keys here, spec §3.6); not supported yet.
    throw new ConfigError('EnableIPv4: false (IPv6-only) is not supported yet by flannel-ts; use dual-stack (EnableIPv4 and EnableIPv6)');
  }
  if (cfg.enableIPv6 && !IPV6_BACKENDS.has(cfg.backend.type)) {
    throw new ConfigError(`EnableIPv6: the ${cfg.backend.type} backend has no IPv6 support (as in flannel); use vxlan or host-gw`);
  }
}

/** Our lease's attributes: PublicIP(v6) and what the backend publishes. */
export function ownLeaseAttrs(cfg: NetworkConfig, ext: ExternalInterface, published: PublishedAttrs): LeaseAttrs {
  const publicIPv6 = cfg.enableIPv6 ? (ext.publicIPv6 ?? null) : null;
  if (cfg.enableIPv6 && publicIPv6 === null) throw new ConfigError(`EnableIPv6: no public IPv6 address on ${ext.name}; give --public-ipv6`);
  // Real flannel rejects a whole vxlan lease (v4 included) whose key has an
  // IPv6 part but whose value lacks BackendV6Data; never publish one.
  if (cfg.enableIPv6 && published.backendType === 'vxlan' && published.backendV6Data === undefined) {
    throw new Error('vxlan backend published no BackendV6Data for a dual-stack lease (bug)');
  }
  return { publicIP: ext.publicIP, publicIPv6, ...published };
}

export function describePublicIPv6(a: LeaseAttrs): string {
  return a.publicIPv6 === null ? '' : ` and public IPv6 ${formatIPv6(a.publicIPv6)}`;
}
