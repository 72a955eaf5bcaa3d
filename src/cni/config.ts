// flannel's CNI plugin configuration (spec §11.2): decoding the network
// config from stdin, reading subnet.env, and rendering the delegate config.
// Pure apart from loadFlannelSubnetEnv's file read.

import { readFileSync } from 'node:fs';
import { formatIPv4Net, formatIPv6Net, parseIPv4Net, parseIPv6Net, type IPv4Net, type IPv6Net } from '../lease/ip.js';
import { jsonDepth, MAX_JSON_DEPTH } from '../lease/json.js';
import { DEFAULT_SUBNET_FILE, parseEnvText } from '../subnet/subnet-env.js';
import { CniError, ErrorCode } from './errors.js';
import { isObject, typeName, type JsonObject } from './json.js';

export { DEFAULT_SUBNET_FILE };
export const DEFAULT_DATA_DIR = '/var/lib/cni/flannel';

/** libcni's rule for network names and container IDs. */
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export interface FlannelNetConf {
  /** As given; libcni treats an absent/empty cniVersion as "0.1.0". */
  cniVersion: string;
  /** Whether the config carried a non-empty cniVersion (only then is it copied to the delegate). */
  hasCniVersion: boolean;
  name: string;
  type: string;
  subnetFile: string;
  dataDir: string;
  delegate: JsonObject | null;
  ipam: JsonObject | null;
  runtimeConfig: JsonObject | null;
  /** Set by the runtime for CHECK (and chained ADD/DEL); kept verbatim. */
  prevResult: unknown;
  /** The decoded object, all keys. */
  raw: JsonObject;
}

/** The config version of a raw stdin document, when it can be told (for error results). */
export function peekCniVersion(stdin: Buffer | string): string | null {
  try {
    const v: unknown = JSON.parse(stdin.toString());
    if (isObject(v) && typeof v.cniVersion === 'string') return v.cniVersion || '0.1.0';
  } catch {
    /* undecodable */
  }
  return null;
}

function decodeErr(details: string): CniError {
  return new CniError(ErrorCode.DecodingFailure, 'error decoding network configuration from stdin', details);
}

function optString(o: JsonObject, key: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw decodeErr(`field "${key}" must be a string, got ${typeName(v)}`);
  return v;
}

function optObject(o: JsonObject, key: string): JsonObject | null {
  const v = o[key];
  if (v === undefined || v === null) return null;
  if (!isObject(v)) throw decodeErr(`field "${key}" must be an object, got ${typeName(v)}`);
  return v;
}

/**
 * Decodes the network configuration the runtime wrote on stdin.
 * Malformed JSON or wrongly-typed fields → code 6; a missing or invalid
 * network name → code 7 (as libcni's skel).
 */
export function parseNetConf(stdin: Buffer | string): FlannelNetConf {
  const text = stdin.toString();
  if (text.trim() === '') throw decodeErr('stdin is empty; expected the network configuration as a JSON object');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw decodeErr(`invalid JSON: ${(e as Error).message}`);
  }
  if (!isObject(raw)) throw decodeErr(`the network configuration must be a JSON object, got ${typeName(raw)}`);
  // Fuzzing (issue 9): JSON nested thousands deep parses, but rendering and
  // saving the delegate config (stableStringify, recursive) then overflowed
  // the stack, reported as code 5 "Maximum call stack size exceeded".
  for (const [k, v] of Object.entries(raw)) {
    if (jsonDepth(v) > MAX_JSON_DEPTH) throw decodeErr(`field "${k}" is nested more than ${MAX_JSON_DEPTH} levels deep`);
  }

  const cniVersion = optString(raw, 'cniVersion') ?? '';
  const name = optString(raw, 'name') ?? '';
  const type = optString(raw, 'type') ?? '';
  const subnetFile = optString(raw, 'subnetFile') || DEFAULT_SUBNET_FILE;
  const dataDir = optString(raw, 'dataDir') || DEFAULT_DATA_DIR;
  const delegate = optObject(raw, 'delegate');
  const ipam = optObject(raw, 'ipam');
  const runtimeConfig = optObject(raw, 'runtimeConfig');

  if (name === '') throw new CniError(ErrorCode.InvalidNetworkConfig, 'missing network name', 'the network configuration needs a non-empty "name"');
  if (!NAME_RE.test(name)) throw new CniError(ErrorCode.InvalidNetworkConfig, 'invalid characters found in network name', name);

  return {
    cniVersion: cniVersion || '0.1.0',
    hasCniVersion: cniVersion !== '',
    name,
    type,
    subnetFile,
    dataDir,
    delegate,
    ipam,
    runtimeConfig,
    prevResult: raw.prevResult,
    raw,
  };
}

/** Container IDs name the saved delegate file, so they must be path-safe. */
export function validateContainerID(id: string): void {
  if (!NAME_RE.test(id)) throw new CniError(ErrorCode.InvalidEnvironmentVariables, 'invalid characters in containerID', id);
}

/** libcni's ValidateInterfaceName. */
export function validateIfName(ifName: string): void {
  if (ifName.length > 15) throw new CniError(ErrorCode.InvalidEnvironmentVariables, 'interface name is too long', 'interface name should be less than 16 characters');
  if (ifName === '.' || ifName === '..') throw new CniError(ErrorCode.InvalidEnvironmentVariables, 'interface name is . or ..');
  if (/[/:\s]/.test(ifName)) throw new CniError(ErrorCode.InvalidEnvironmentVariables, 'interface name contains / or : or whitespace characters', ifName);
}

// ---------------------------------------------------------------------------
// subnet.env

export interface FlannelSubnetEnv {
  /** FLANNEL_NETWORK entries (comma-separated in the file), deduplicated, masked. */
  networks: IPv4Net[];
  /** FLANNEL_SUBNET, masked (10.244.1.1/24 → 10.244.1.0/24). */
  subnet: IPv4Net | null;
  ipv6Networks: IPv6Net[];
  ipv6Subnet: IPv6Net | null;
  mtu: number | null;
  ipMasq: boolean | null;
}

export interface CompleteSubnetEnv extends FlannelSubnetEnv {
  mtu: number;
  ipMasq: boolean;
}

function invalidVar(file: string, key: string, value: string, why: string): CniError {
  return new CniError(ErrorCode.InvalidSubnetFile, `${file}: invalid ${key} "${value}"`, why);
}

function parseList<T>(file: string, key: string, value: string, parse: (s: string) => T, same: (a: T, b: T) => boolean): T[] {
  const out: T[] = [];
  for (const part of value.split(',')) {
    let n: T;
    try {
      n = parse(part.trim());
    } catch (e) {
      throw invalidVar(file, key, value, (e as Error).message);
    }
    if (!out.some((x) => same(x, n))) out.push(n);
  }
  return out;
}

function parseOne<T>(file: string, key: string, value: string, parse: (s: string) => T): T {
  try {
    return parse(value.trim());
  } catch (e) {
    throw invalidVar(file, key, value, (e as Error).message);
  }
}

/**
 * Parses subnet.env text the way flannel's plugin does and checks that the
 * required variables are there: a network (v4 or v6), a subnet (v4 or v6),
 * FLANNEL_MTU and FLANNEL_IPMASQ. `file` is only used in messages.
 */
export function parseFlannelSubnetEnv(text: string, file: string): CompleteSubnetEnv {
  const env = parseEnvText(text);
  const se: FlannelSubnetEnv = { networks: [], subnet: null, ipv6Networks: [], ipv6Subnet: null, mtu: null, ipMasq: null };
  const v4same = (a: IPv4Net, b: IPv4Net) => a.ip === b.ip && a.prefix === b.prefix;
  const v6same = (a: IPv6Net, b: IPv6Net) => a.ip === b.ip && a.prefix === b.prefix;
  for (const [key, value] of env) {
    switch (key) {
      case 'FLANNEL_NETWORK':
        se.networks = parseList(file, key, value, parseIPv4Net, v4same);
        break;
      case 'FLANNEL_SUBNET':
        se.subnet = parseOne(file, key, value, parseIPv4Net);
        break;
      case 'FLANNEL_IPV6_NETWORK':
        se.ipv6Networks = parseList(file, key, value, parseIPv6Net, v6same);
        break;
      case 'FLANNEL_IPV6_SUBNET':
        se.ipv6Subnet = parseOne(file, key, value, parseIPv6Net);
        break;
      case 'FLANNEL_MTU': {
        const n = /^\d{1,10}$/.test(value) ? Number(value) : NaN;
        if (!(n <= 0xffffffff)) throw invalidVar(file, key, value, 'expected an unsigned decimal integer');
        se.mtu = n;
        break;
      }
      case 'FLANNEL_IPMASQ':
        se.ipMasq = value === 'true';
        break;
    }
  }
  const missing: string[] = [];
  if (se.networks.length === 0 && se.ipv6Networks.length === 0) missing.push('FLANNEL_NETWORK', 'FLANNEL_IPV6_NETWORK');
  if (!se.subnet && !se.ipv6Subnet) missing.push('FLANNEL_SUBNET', 'FLANNEL_IPV6_SUBNET');
  if (se.mtu === null) missing.push('FLANNEL_MTU');
  if (se.ipMasq === null) missing.push('FLANNEL_IPMASQ');
  if (missing.length) {
    throw new CniError(ErrorCode.InvalidSubnetFile, `${file} is missing ${missing.join(', ')}`, 'flanneld writes these variables; check that it runs with this --subnet-file');
  }
  return se as CompleteSubnetEnv;
}

/**
 * Reads and parses subnet.env. A file that does not exist yet is "try again
 * later" (code 11: flanneld writes it once it holds a lease); other read
 * errors are I/O failures (code 5); bad content is code 100.
 */
export function loadFlannelSubnetEnv(file: string): CompleteSubnetEnv {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') {
      throw new CniError(ErrorCode.TryAgainLater, `subnet file ${file} does not exist`, 'flanneld has not written it yet: is flanneld running on this node?');
    }
    throw new CniError(ErrorCode.IOFailure, `failed to read subnet file ${file}`, err.message);
  }
  return parseFlannelSubnetEnv(text, file);
}

// ---------------------------------------------------------------------------
// Delegate config

function invalidConf(msg: string, details = ''): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, msg, details);
}

/** Checks the user's `delegate` dictionary (before flannel adds its keys). */
export function validateDelegate(d: JsonObject): void {
  if ('type' in d) {
    if (typeof d.type !== 'string') throw invalidConf("'delegate' dictionary, if present, must have (string) 'type' field", `got ${typeName(d.type)}`);
    if (d.type === '' || d.type.includes('/')) throw invalidConf(`invalid delegate plugin name "${d.type}"`, 'the delegate type must be a plugin file name (no "/")');
  }
  if ('name' in d) throw invalidConf("'delegate' dictionary must not have 'name' field, it'll be set by flannel");
  if ('ipam' in d) throw invalidConf("'delegate' dictionary must not have 'ipam' field, it'll be set by flannel");
}

/** User `ipam.routes` (validated: an array of objects with a string `dst`). */
function userRoutes(ipam: JsonObject | null): JsonObject[] {
  if (!ipam || !('routes' in ipam) || ipam.routes === null) return [];
  const r = ipam.routes;
  if (!Array.isArray(r)) throw invalidConf('failed to parse ipam.routes', `expected an array, got ${typeName(r)}`);
  return r.map((x, i) => {
    if (!isObject(x) || typeof x.dst !== 'string') throw invalidConf('failed to parse ipam.routes', `route ${i} must be an object with a string "dst"`);
    return { ...x };
  });
}

/** The delegate's `ipam`: the user's with type defaulting to host-local and flannel's ranges/routes. */
export function buildDelegateIPAM(conf: Pick<FlannelNetConf, 'ipam'>, env: FlannelSubnetEnv): JsonObject {
  const ipam: JsonObject = { ...(conf.ipam ?? {}) };
  if (!('type' in ipam)) ipam.type = 'host-local';
  const ranges: JsonObject[][] = [];
  if (env.subnet) ranges.push([{ subnet: formatIPv4Net(env.subnet) }]);
  if (env.ipv6Subnet) ranges.push([{ subnet: formatIPv6Net(env.ipv6Subnet) }]);
  ipam.ranges = ranges;
  const routes = userRoutes(conf.ipam);
  for (const n of env.networks) routes.push({ dst: formatIPv4Net(n) });
  for (const n of env.ipv6Networks) routes.push({ dst: formatIPv6Net(n) });
  ipam.routes = routes;
  return ipam;
}

/**
 * Renders the config ADD hands to the delegate plugin (flannel's
 * cmdAdd/doCmdAdd): the user's `delegate` keys pass through, flannel fills
 * name, type, ipMasq, mtu, isGateway (bridge), cniVersion, runtimeConfig, ipam.
 */
export function buildDelegateConf(conf: FlannelNetConf, env: CompleteSubnetEnv): JsonObject {
  const d: JsonObject = { ...(conf.delegate ?? {}) };
  validateDelegate(d);
  if (conf.runtimeConfig) d.runtimeConfig = conf.runtimeConfig;
  d.name = conf.name;
  if (!('type' in d)) d.type = 'bridge';
  // If flanneld does not masquerade, the bridge should.
  if (!('ipMasq' in d)) d.ipMasq = !env.ipMasq;
  if (!('mtu' in d)) d.mtu = env.mtu;
  if (d.type === 'bridge' && !('isGateway' in d)) d.isGateway = true;
  if (conf.hasCniVersion) d.cniVersion = conf.cniVersion;
  d.ipam = buildDelegateIPAM(conf, env);
  return d;
}
