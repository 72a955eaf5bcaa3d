// What the store says: the network config and every lease, read once with a
// deadline (flannelctl never hangs on an unreachable store), plus this
// node's own view (subnet.env) and which lease is "this node".

import { existsSync, readFileSync } from 'node:fs';
import { FlannelError } from '../errors.js';
import { formatIPv4, formatIPv4Net, ipv4NetContains, parseIPv4, parseIPv4Net, type IPv4Net } from '../lease/ip.js';
import { validateLease, type Lease } from '../lease/lease.js';
import { vtepMacOf } from '../backend/vxlan/desired.js';
import { publishedEdgeNetworks } from '../backend/vxlan/edge.js';
import { parseVxlanOptions, type VxlanOptions } from '../backend/vxlan/options.js';
import { ConfigError, parseNetworkConfig, type NetworkConfig } from '../subnet/config.js';
import { entryToLease } from '../subnet/manager.js';
import { parseEnvText } from '../subnet/subnet-env.js';
import type { LeaseStore } from '../store/store.js';

/** VXLAN's default UDP port on Linux (the kernel's, and flannel's). */
export const VXLAN_DEFAULT_PORT = 8472;
/** IPv4 outer headers: Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8. */
export const VXLAN_OVERHEAD = 50;

export interface LeaseInfo {
  /** store key name, "10.244.1.0-24" */
  readonly key: string;
  /** "10.244.1.0/24" */
  readonly subnet: string;
  readonly net: IPv4Net;
  /** the subnet's network address: a VXLAN peer's VTEP address and onlink next hop */
  readonly gw: string;
  readonly publicIP: string;
  /** "" for udp/alloc leases */
  readonly backend: string;
  /** normalised VtepMAC, null when absent or malformed */
  readonly vtepMac: string | null;
  /** the L2 segments the node routes to as an edge gateway (EdgeNetworks), canonical CIDRs; [] for none */
  readonly edgeNetworks: string[];
  readonly permanent: boolean;
  /** seconds left; null for a reservation or when unknown */
  readonly ttlSeconds: number | null;
  readonly lease: Lease;
}

export interface ClusterView {
  /** "etcd http://... prefix /coreos.com/network" */
  readonly store: string;
  readonly elapsedMs: number;
  readonly configText: string | null;
  readonly config: NetworkConfig | null;
  /** why the config is unusable (missing or invalid) */
  readonly configError: string | null;
  readonly leases: LeaseInfo[];
  /** entries that do not parse or do not fit the network */
  readonly invalid: Array<{ key: string; reason: string }>;
}

export class StoreUnreachable extends FlannelError {
  override name = 'StoreUnreachable';
  constructor(
    readonly store: string,
    readonly reason: string,
    readonly elapsedMs: number,
  ) {
    super(`cannot read ${store}: ${reason}`, { code: 'STORE_UNAVAILABLE', retryable: true });
  }
}

/** Resolves like p, or rejects with `what timed out after N ms`. The timer never keeps the process alive. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`${what}: no answer within ${(ms / 1000).toFixed(1)} s`)), ms);
    t.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

export function subnetOfKey(l: Lease): string {
  return formatIPv4Net(l.subnet);
}

/** Reads config and leases; throws StoreUnreachable when the store does not answer within timeoutMs. */
export async function readCluster(store: LeaseStore, timeoutMs: number): Promise<ClusterView> {
  const t0 = Date.now();
  let configText: string | null;
  let listed: Awaited<ReturnType<LeaseStore['listSubnets']>>;
  try {
    [configText, listed] = await withTimeout(Promise.all([store.getNetworkConfig(), store.listSubnets({ withTTL: true })]), timeoutMs, store.description);
  } catch (e) {
    throw new StoreUnreachable(store.description, oneLine((e as Error).message), Date.now() - t0);
  }
  let config: NetworkConfig | null = null;
  let configError: string | null = null;
  if (configText === null) configError = 'no network config in the store (<prefix>/config is missing)';
  else {
    try {
      config = parseNetworkConfig(configText);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      configError = e.message;
    }
  }
  const leases: LeaseInfo[] = [];
  const invalid: ClusterView['invalid'] = [];
  for (const e of listed.entries) {
    const l = entryToLease(e);
    if (typeof l === 'string') {
      invalid.push({ key: e.name, reason: l });
      continue;
    }
    const why = config ? validateLease(l, config) : null;
    if (why) {
      invalid.push({ key: e.name, reason: why });
      continue;
    }
    leases.push({
      key: e.name,
      subnet: formatIPv4Net(l.subnet),
      net: l.subnet,
      gw: formatIPv4(l.subnet.ip),
      publicIP: formatIPv4(l.attrs.publicIP),
      backend: l.attrs.backendType,
      vtepMac: vtepMacOf(l),
      edgeNetworks: publishedEdgeNetworks(l).nets.map(formatIPv4Net),
      permanent: e.permanent,
      ttlSeconds: e.ttlSeconds,
      lease: l,
    });
  }
  leases.sort((a, b) => a.net.ip - b.net.ip);
  return { store: store.description, elapsedMs: Date.now() - t0, configText, config, configError, leases, invalid };
}

export function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

// ------------------------------------------------------------ subnet.env

export interface SubnetFile {
  readonly path: string;
  /** FLANNEL_NETWORK */
  readonly network: IPv4Net | null;
  /** FLANNEL_SUBNET as written: the gateway address with the prefix, "10.244.1.1/24" */
  readonly subnetRaw: string | null;
  /** FLANNEL_SUBNET masked: the lease's subnet */
  readonly subnet: IPv4Net | null;
  readonly mtu: number | null;
}

/** null when the file does not exist; throws only on unreadable files. */
export function readSubnetFile(path: string): SubnetFile | null {
  if (!existsSync(path)) return null;
  const env = parseEnvText(readFileSync(path, 'utf8'));
  const cidr = (v: string | undefined): IPv4Net | null => {
    if (!v) return null;
    try {
      return parseIPv4Net(v.split(',')[0]!.trim());
    } catch {
      return null;
    }
  };
  const mtu = Number(env.get('FLANNEL_MTU'));
  return {
    path,
    network: cidr(env.get('FLANNEL_NETWORK')),
    subnetRaw: env.get('FLANNEL_SUBNET') ?? null,
    subnet: cidr(env.get('FLANNEL_SUBNET')),
    mtu: Number.isInteger(mtu) && mtu > 0 ? mtu : null,
  };
}

// ------------------------------------------------------------ this node

export interface SelfMatch {
  readonly lease: LeaseInfo;
  /** how it was recognised, for messages */
  readonly by: string;
}

/**
 * Which lease is this node's: the one subnet.env names, else the one whose
 * PublicIP is an address of this host, else the one whose network address
 * sits on the VTEP.
 */
export function findSelf(leases: readonly LeaseInfo[], o: { subnetFile: SubnetFile | null; localIPs: ReadonlySet<string>; vtepIPs?: ReadonlySet<string> }): SelfMatch | null {
  const sn = o.subnetFile?.subnet;
  if (sn) {
    const l = leases.find((x) => x.net.ip === sn.ip && x.net.prefix === sn.prefix);
    if (l) return { lease: l, by: `FLANNEL_SUBNET in ${o.subnetFile!.path}` };
  }
  const byIP = leases.filter((x) => o.localIPs.has(x.publicIP));
  if (byIP.length === 1) return { lease: byIP[0]!, by: `public IP ${byIP[0]!.publicIP} is an address of this host` };
  if (o.vtepIPs) {
    const l = leases.find((x) => o.vtepIPs!.has(x.gw));
    if (l) return { lease: l, by: `VTEP address ${l.gw}` };
  }
  return null;
}

/** The lease (if any) whose subnet holds ip. */
export function leaseFor(leases: readonly LeaseInfo[], ip: string): LeaseInfo | undefined {
  const n = parseIPv4(ip);
  return leases.find((l) => ipv4NetContains(l.net, n));
}

export interface VxlanSettings extends VxlanOptions {
  readonly device: string;
  /** the port actually used (8472 when the config leaves it 0) */
  readonly udpPort: number;
}

export function vxlanSettings(config: NetworkConfig): VxlanSettings | null {
  if (config.backend.type !== 'vxlan') return null;
  try {
    const o = parseVxlanOptions(config.backend.raw);
    return { ...o, device: `flannel.${o.vni}`, udpPort: o.port || VXLAN_DEFAULT_PORT };
  } catch {
    return null;
  }
}
