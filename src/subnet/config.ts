// net-conf.json: parsing, defaulting and validation (spec §2).
//
// Compatibility notes:
// * Keys match case-insensitively, as Go's encoding/json does ("network" works);
//   when the same field appears twice under different spellings the last wins.
//   Unknown keys are ignored.
// * CIDRs are masked to the network address (10.1.2.3/16 -> 10.1.0.0/16).
// * ⚠ spec §2.2 / App. A.1: flannel's code picks "udp" when "Backend" is absent,
//   while its docs promise "vxlan". We do the documented thing (vxlan) and the
//   daemon logs a warning, because a real flanneld reading the same config would
//   run udp and the two could not talk. Set Backend.Type explicitly in a mixed
//   cluster.
// * Every error names the field and the offending value in one line.

import {
  AddrError,
  formatIPv4,
  formatIPv4Net,
  formatIPv6,
  formatIPv6Net,
  ipv4NetContains,
  ipv4NetSize,
  ipv6NetContains,
  mask6Of,
  maskOf,
  parseIPv4,
  parseIPv4Net,
  parseIPv6,
  parseIPv6Net,
  type IPv4Net,
  type IPv6Net,
} from '../lease/ip.js';
import { foldKeys, jsonDepth, MAX_JSON_DEPTH, parseJsonObject, showJson } from '../lease/json.js';
import { FlannelError } from '../errors.js';

export { foldKeys };

export class ConfigError extends FlannelError {
  static override readonly defaultCode: string = 'CONFIG_INVALID';
  override name = 'ConfigError';
}

export interface BackendConfig {
  /** lower-cased backend type */
  readonly type: string;
  /** the whole Backend object as given, handed to the backend to parse its options */
  readonly raw: Record<string, unknown>;
  /** true when the Backend key was absent and the default was used */
  readonly defaulted: boolean;
}

export interface NetworkConfig {
  readonly enableIPv4: boolean;
  readonly enableIPv6: boolean;
  readonly enableNFTables: boolean;
  readonly network: IPv4Net | null;
  readonly subnetLen: number;
  readonly subnetMin: number;
  readonly subnetMax: number;
  readonly ipv6Network: IPv6Net | null;
  readonly ipv6SubnetLen: number;
  readonly ipv6SubnetMin: bigint;
  readonly ipv6SubnetMax: bigint;
  readonly backend: BackendConfig;
}

export const DEFAULT_BACKEND = 'vxlan';

const FIELDS = [
  'Network',
  'IPv6Network',
  'EnableIPv4',
  'EnableIPv6',
  'EnableNFTables',
  'SubnetLen',
  'SubnetMin',
  'SubnetMax',
  'IPv6SubnetLen',
  'IPv6SubnetMin',
  'IPv6SubnetMax',
  'Backend',
] as const;
type Field = (typeof FIELDS)[number];

// showJson, not JSON.stringify: a value nested thousands deep made the
// message itself throw a RangeError, and a huge one made it huge (fuzzing,
// issue 9).
const show = (v: unknown): string => showJson(v);

function str(f: Partial<Record<Field, unknown>>, name: Field): string | undefined {
  const v = f[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new ConfigError(`${name}: expected a string, got ${show(v)}`);
  return v;
}

function bool(f: Partial<Record<Field, unknown>>, name: Field, dflt: boolean): boolean {
  const v = f[name];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw new ConfigError(`${name}: expected true or false, got ${show(v)}`);
  return v;
}

function uint(f: Partial<Record<Field, unknown>>, name: Field): number {
  const v = f[name];
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw new ConfigError(`${name}: expected a non-negative integer, got ${show(v)}`);
  }
  return v;
}

/** Parse net-conf.json text; throws ConfigError with one clear line. */
export function parseNetworkConfig(text: string): NetworkConfig {
  const doc = parseJsonObject(text, 'network config', (m) => new ConfigError(m));
  const f = foldKeys(doc, FIELDS);
  const enableIPv4 = bool(f, 'EnableIPv4', true);
  const enableIPv6 = bool(f, 'EnableIPv6', false);
  const enableNFTables = bool(f, 'EnableNFTables', false);
  if (!enableIPv4 && !enableIPv6) throw new ConfigError('EnableIPv4 and EnableIPv6 are both false: nothing to do');

  const backend = parseBackend(f.Backend);

  let network: IPv4Net | null = null;
  let subnetLen = 0;
  let subnetMin = 0;
  let subnetMax = 0;
  if (enableIPv4) {
    const n = str(f, 'Network');
    if (!n) throw new ConfigError('Network: missing; please define a correct Network parameter, e.g. "10.244.0.0/16"');
    network = cidr4('Network', n);
    subnetLen = uint(f, 'SubnetLen');
    if (subnetLen > 0) {
      if (subnetLen > 30) throw new ConfigError(`SubnetLen: ${subnetLen} is invalid; SubnetLen must be less than /31`);
      if (subnetLen < network.prefix + 2) {
        throw new ConfigError(
          `SubnetLen: ${subnetLen} is invalid for Network ${formatIPv4Net(network)}; the network must be able to accommodate at least four subnets (SubnetLen >= ${network.prefix + 2})`,
        );
      }
    } else if (network.prefix > 28) {
      throw new ConfigError(`Network: ${formatIPv4Net(network)} is too small; minimum useful network prefix is /28`);
    } else {
      subnetLen = network.prefix <= 22 ? 24 : network.prefix + 2;
    }
    const size = ipv4NetSize(subnetLen);
    const min = str(f, 'SubnetMin');
    const max = str(f, 'SubnetMax');
    subnetMin = min && min !== '0.0.0.0' ? ip4('SubnetMin', min) : network.ip + size;
    subnetMax = max && max !== '0.0.0.0' ? ip4('SubnetMax', max) : network.ip + ipv4NetSize(network.prefix) - size;
    for (const [name, v] of [['SubnetMin', subnetMin], ['SubnetMax', subnetMax]] as const) {
      if (!ipv4NetContains(network, v)) {
        throw new ConfigError(`${name}: ${formatIPv4(v)} is not within Network ${formatIPv4Net(network)}`);
      }
      if (((v & ~maskOf(subnetLen)) >>> 0) !== 0) {
        throw new ConfigError(`${name}: ${formatIPv4(v)} is not on a SubnetLen boundary (/${subnetLen})`);
      }
    }
    // flannel does not check Min <= Max; an inverted range simply has no candidates.
    // We say so up front instead of failing later with "out of subnets".
    if (subnetMin > subnetMax) {
      throw new ConfigError(`SubnetMin: ${formatIPv4(subnetMin)} is greater than SubnetMax ${formatIPv4(subnetMax)}`);
    }
  }

  let ipv6Network: IPv6Net | null = null;
  let ipv6SubnetLen = 0;
  let ipv6SubnetMin = 0n;
  let ipv6SubnetMax = 0n;
  if (enableIPv6) {
    const n = str(f, 'IPv6Network');
    if (!n) throw new ConfigError('IPv6Network: missing; it is required when EnableIPv6 is true');
    ipv6Network = cidr6('IPv6Network', n);
    ipv6SubnetLen = uint(f, 'IPv6SubnetLen');
    if (ipv6SubnetLen > 0) {
      if (ipv6SubnetLen > 126) throw new ConfigError(`IPv6SubnetLen: ${ipv6SubnetLen} is invalid; it must be less than /127`);
      if (ipv6SubnetLen < ipv6Network.prefix + 2) {
        throw new ConfigError(
          `IPv6SubnetLen: ${ipv6SubnetLen} is invalid for IPv6Network ${formatIPv6Net(ipv6Network)}; the network must be able to accommodate at least four subnets`,
        );
      }
    } else if (ipv6Network.prefix > 124) {
      throw new ConfigError(`IPv6Network: ${formatIPv6Net(ipv6Network)} is too small; minimum useful network prefix is /124`);
    } else {
      ipv6SubnetLen = ipv6Network.prefix <= 62 ? 64 : ipv6Network.prefix + 2;
    }
    const size = 1n << BigInt(128 - ipv6SubnetLen);
    const min = str(f, 'IPv6SubnetMin');
    const max = str(f, 'IPv6SubnetMax');
    ipv6SubnetMin = min && min !== '::' ? ip6('IPv6SubnetMin', min) : ipv6Network.ip + size;
    ipv6SubnetMax = max && max !== '::' ? ip6('IPv6SubnetMax', max) : ipv6Network.ip + (1n << BigInt(128 - ipv6Network.prefix)) - size;
    for (const [name, v] of [['IPv6SubnetMin', ipv6SubnetMin], ['IPv6SubnetMax', ipv6SubnetMax]] as const) {
      if (!ipv6NetContains(ipv6Network, v)) {
        throw new ConfigError(`${name}: ${formatIPv6(v)} is not within IPv6Network ${formatIPv6Net(ipv6Network)}`);
      }
      if ((v & ~mask6Of(ipv6SubnetLen)) !== 0n) {
        throw new ConfigError(`${name}: ${formatIPv6(v)} is not on an IPv6SubnetLen boundary (/${ipv6SubnetLen})`);
      }
    }
    // As for IPv4 above (found by fuzzing: an inverted IPv6 range was accepted).
    if (ipv6SubnetMin > ipv6SubnetMax) {
      throw new ConfigError(`IPv6SubnetMin: ${formatIPv6(ipv6SubnetMin)} is greater than IPv6SubnetMax ${formatIPv6(ipv6SubnetMax)}`);
    }
  }

  return {
    enableIPv4,
    enableIPv6,
    enableNFTables,
    network,
    subnetLen,
    subnetMin,
    subnetMax,
    ipv6Network,
    ipv6SubnetLen,
    ipv6SubnetMin,
    ipv6SubnetMax,
    backend,
  };
}

function parseBackend(v: unknown): BackendConfig {
  if (v === undefined || v === null) return { type: DEFAULT_BACKEND, raw: { Type: DEFAULT_BACKEND }, defaulted: true };
  if (typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(`Backend: expected an object, got ${show(v)}`);
  // The Backend object is handed on whole, to be walked and printed again.
  if (jsonDepth(v) > MAX_JSON_DEPTH) throw new ConfigError(`Backend: nested more than ${MAX_JSON_DEPTH} levels deep`);
  const raw = v as Record<string, unknown>;
  const t = foldKeys(raw, ['Type']).Type;
  if (t === undefined || t === null || t === '') {
    throw new ConfigError(`Backend: ${show(v)} has no Type; set e.g. {"Type":"vxlan"}`);
  }
  if (typeof t !== 'string') throw new ConfigError(`Backend.Type: expected a string, got ${show(t)}`);
  return { type: t.toLowerCase(), raw, defaulted: false };
}

function cidr4(name: string, v: string): IPv4Net {
  if (v.includes(':')) throw new ConfigError(`${name}: ${show(v)} is not an IPv4 CIDR (invalid IPv4 CIDR format)`);
  try {
    return parseIPv4Net(v);
  } catch (e) {
    throw new ConfigError(`${name}: ${show(v)} is not a valid IPv4 CIDR`);
  }
}

function cidr6(name: string, v: string): IPv6Net {
  try {
    return parseIPv6Net(v);
  } catch (e) {
    throw new ConfigError(`${name}: ${show(v)} is not a valid IPv6 CIDR`);
  }
}

function ip4(name: string, v: string): number {
  try {
    return parseIPv4(v);
  } catch (e) {
    if (e instanceof AddrError) throw new ConfigError(`${name}: ${show(v)} is not a valid IPv4 address`);
    throw e;
  }
}

function ip6(name: string, v: string): bigint {
  try {
    return parseIPv6(v);
  } catch (e) {
    if (e instanceof AddrError) throw new ConfigError(`${name}: ${show(v)} is not a valid IPv6 address`);
    throw e;
  }
}

/** Known backend types; the daemon checks the chosen one against its registry. */
export function describeConfig(c: NetworkConfig): string {
  const parts: string[] = [];
  if (c.network) parts.push(`Network=${formatIPv4Net(c.network)} SubnetLen=${c.subnetLen} SubnetMin=${formatIPv4(c.subnetMin)} SubnetMax=${formatIPv4(c.subnetMax)}`);
  if (c.ipv6Network) parts.push(`IPv6Network=${formatIPv6Net(c.ipv6Network)} IPv6SubnetLen=${c.ipv6SubnetLen}`);
  parts.push(`Backend=${c.backend.type}`);
  return parts.join(' ');
}
